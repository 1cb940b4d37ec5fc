//! The write-ahead log on the simulated disk ([`weft_storage::sim::SimDisk`]), against a
//! plain model: records appended, some waited for (acknowledged), power lost at random
//! moments — unsynced sectors kept or lost independently, out of order — and `fdatasync`
//! failing at random. After every power loss the log must reopen by itself and hold a
//! prefix of what was appended that contains every acknowledged record; after a failed
//! sync nothing more may be acknowledged until the log is reopened.
//!
//! Seeds: `WEFT_POWER_SEEDS` (default 300) from `WEFT_POWER_SEED_BASE` (default 0); a
//! failure names its seed, and `WEFT_POWER_SEED_BASE=<seed> WEFT_POWER_SEEDS=1` replays it.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly on bad setup")]

use std::path::Path;
use std::sync::Arc;

use weft_storage::sim::{DiskFaults, SimDisk, SimRng};
use weft_storage::wal::{Receipt, Scheduling, Wal, WalConfig, WalError};

fn payload(n: u64, rng: &mut SimRng) -> Vec<u8> {
    // Sizes around the sector size, so records straddle sectors and groups span several.
    let len = 1 + rng.below(1400) as usize;
    let mut bytes = format!("record {n:08} ").into_bytes();
    bytes.resize(len.max(bytes.len()), b'a' + (n % 26) as u8);
    bytes
}

fn open(disk: &SimDisk, segment_bytes: u64) -> Result<(Wal, Vec<Vec<u8>>), WalError> {
    let config = WalConfig {
        segment_bytes,
        group_bytes_max: 4096,
        disk: Arc::new(disk.process()),
        scheduling: Scheduling::Caller,
        ..WalConfig::default()
    };
    let mut records = Vec::new();
    let (wal, recovery) = Wal::open(Path::new("/sim/wal"), config, None, |_, bytes| records.push(bytes.to_vec()))?;
    if std::env::var("WEFT_POWER_TRACE").is_ok() {
        eprintln!("opened: {} records, {recovery:?}", records.len());
    }
    Ok((wal, records))
}

/// Opening syncs too, and may meet an injected failure: that is a failed start (named),
/// and the next start tries again.
fn open_retrying(disk: &SimDisk, segment_bytes: u64, seed: u64) -> (Wal, Vec<Vec<u8>>) {
    let mut attempts = 0;
    loop {
        match open(disk, segment_bytes) {
            Ok(opened) => return opened,
            Err(error) if attempts < 20 && error.to_string().contains("simulated fdatasync failure") => {
                if std::env::var("WEFT_POWER_TRACE").is_ok() {
                    eprintln!("open failed: {error}");
                }
                attempts += 1
            }
            Err(error) => panic!("seed {seed}: open: {error}"),
        }
    }
}

/// One seed; returns the power losses it survived.
fn run(seed: u64) -> u64 {
    let mut rng = SimRng::new(seed);
    let faults = DiskFaults { sync_fail_per_mille: [0, 0, 20, 100][rng.below(4) as usize] };
    let disk = SimDisk::new(rng.fork(), faults);
    let segment_bytes = [2048, 8192, 1 << 20][rng.below(3) as usize];
    // The model: every record appended (in order), and how many of them were acked.
    let mut appended: Vec<Vec<u8>> = Vec::new();
    let mut acked = 0usize;
    let (mut wal, _) = open_retrying(&disk, segment_bytes, seed);
    let mut pending: Vec<(usize, Receipt)> = Vec::new();
    let mut poisoned = false;
    for _ in 0..300 {
        match rng.below(10) {
            0..=5 => {
                let record = payload(appended.len() as u64, &mut rng);
                match wal.append(&record) {
                    Ok(receipt) => {
                        assert!(!poisoned, "seed {seed}: an append succeeded after a failed sync");
                        appended.push(record);
                        pending.push((appended.len(), receipt));
                    }
                    Err(WalError::Failed(_)) => assert!(poisoned, "seed {seed}: log failed without a failed sync"),
                    Err(error) => panic!("seed {seed}: append: {error}"),
                }
            }
            6..=7 => {
                if let Some((count, receipt)) = pending.pop() {
                    pending.clear();
                    let outcome = wal.wait_durable(receipt);
                    if std::env::var("WEFT_POWER_TRACE").is_ok() {
                        eprintln!("wait for {count}: {outcome:?} {:?}", disk.stats());
                    }
                    match outcome {
                        Ok(_) => {
                            assert!(!poisoned, "seed {seed}: acknowledged after a failed sync");
                            acked = acked.max(count);
                        }
                        // The sync failed: nothing of this group may count as durable.
                        Err(WalError::Failed(_)) => poisoned = true,
                        Err(error) => panic!("seed {seed}: wait: {error}"),
                    }
                }
            }
            _ => {
                if std::env::var("WEFT_POWER_TRACE").is_ok() {
                    eprintln!("power loss: appended {} acked {acked} stats {:?}", appended.len(), disk.stats());
                }
                disk.power_loss();
                if std::env::var("WEFT_POWER_TRACE").is_ok() {
                    use weft_storage::wal::Disk;
                    eprintln!("after: {:?} files {:?}", disk.stats(), disk.list(Path::new("/sim/wal")));
                }
                drop(wal);
                let (reopened, records) = open_retrying(&disk, segment_bytes, seed);
                assert!(
                    records.len() >= acked,
                    "seed {seed}: {} records after power loss, {acked} were acknowledged",
                    records.len()
                );
                assert!(
                    records.len() <= appended.len() && records[..] == appended[..records.len()],
                    "seed {seed}: the log after power loss is not a prefix of what was appended"
                );
                // What survived is the new truth: unacknowledged records may be gone.
                appended.truncate(records.len());
                acked = records.len();
                pending.clear();
                poisoned = false;
                wal = reopened;
            }
        }
    }
    disk.stats().power_losses
}

#[test]
fn acknowledged_records_survive_every_power_loss_and_a_failed_sync_poisons_the_log() {
    let seeds: u64 = std::env::var("WEFT_POWER_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let base: u64 = std::env::var("WEFT_POWER_SEED_BASE").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut losses = 0;
    for seed in base..base + seeds {
        losses += run(seed);
    }
    assert!(losses > seeds * 10, "only {losses} power losses over {seeds} seeds");
}

#[test]
fn a_hole_of_lost_sectors_before_valid_records_is_a_torn_tail_kept_aside() {
    let disk = SimDisk::new(SimRng::new(7), DiskFaults::default());
    let (wal, _) = open(&disk, 1 << 20).unwrap();
    let first = wal.append_durable(b"acknowledged").unwrap();
    // One group of three 1 KiB records, written but not synced; then the power goes and
    // only the last sectors of it reach the disk (simulated by hand: zero the middle).
    let records: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'x' + i; 1000]).collect();
    for record in &records {
        let _ = wal.append(record).unwrap();
    }
    wal.sync_pending().unwrap();
    drop(wal);
    let path = Path::new("/sim/wal/00000000000000000001.wal");
    let mut bytes = disk.contents(path).unwrap();
    let hole = (first.end.offset as usize).div_ceil(512) * 512;
    bytes[hole..hole + 512].fill(0);
    let rewritten = SimDisk::new(SimRng::new(8), DiskFaults::default());
    {
        use weft_storage::wal::Disk;
        rewritten.create_dir_all(Path::new("/sim/wal")).unwrap();
        rewritten.write_new(path, &bytes).unwrap();
        rewritten.sync_dir(Path::new("/sim/wal")).unwrap();
    }
    let (_, recovered) = open(&rewritten, 1 << 20).unwrap();
    assert_eq!(recovered, vec![b"acknowledged".to_vec()]);
    let kept = rewritten
        .contents(Path::new(&format!("/sim/wal/damaged/00000000000000000001.wal.torn-from-{}", first.end.offset)));
    assert!(
        kept.is_some_and(|kept| kept.len() == bytes.len() - first.end.offset as usize),
        "the cut bytes are kept aside"
    );
}
