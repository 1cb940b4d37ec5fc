//! [`SimDisk`]: a disk with a page cache that can lose power.
//!
//! Each file has what the process sees (the page cache) and what is on the platter.
//! `sync_data` makes the two equal; a directory sync makes new names durable. On
//! [`SimDisk::power_loss`] every file keeps its durable bytes, and of the bytes written
//! since its last sync each sector independently reached the platter or not (sectors are
//! atomic: all new or all old), so a later sector can survive an earlier one — writes
//! reordered before a sync. Space appended but lost reads as zeros when the file's size
//! reached the disk. A file whose name was never made durable disappears. `sync_data`
//! fails at the configured rate, and after a failure the unsynced bytes stay in doubt,
//! as on Linux.
//!
//! A power loss or a crash ends the process that used the disk: every view of the disk
//! taken before it ([`SimDisk::process`]) and every file it opened fails from then on,
//! so a dropped engine cannot write after its own death. The restarted process takes a
//! new view.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::SimRng;
use crate::wal::{Disk, DiskFile, SECTOR_BYTES};

/// Faults the disk injects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskFaults {
    /// Chance, per mille, that one `sync_data` fails.
    pub sync_fail_per_mille: u32,
}

/// What the disk did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// Successful data syncs.
    pub syncs: u64,
    /// Syncs that failed (injected).
    pub failed_syncs: u64,
    /// Power losses.
    pub power_losses: u64,
    /// Unsynced sectors that reached the platter at a power loss.
    pub sectors_kept: u64,
    /// Unsynced sectors lost at a power loss.
    pub sectors_lost: u64,
    /// Files lost at a power loss because their name was never synced.
    pub files_lost: u64,
}

#[derive(Clone, Debug, Default)]
struct SimFile {
    /// What reads see (the page cache).
    cached: Vec<u8>,
    /// What survives a power loss for certain.
    durable: Vec<u8>,
    /// Whether the file's name survives a power loss.
    name_durable: bool,
}

#[derive(Debug)]
struct State {
    files: BTreeMap<PathBuf, SimFile>,
    dirs: BTreeSet<PathBuf>,
    /// Files removed or renamed away whose directory was not synced since: a power loss
    /// brings them back.
    unlinked: Vec<(PathBuf, SimFile)>,
    rng: SimRng,
    faults: DiskFaults,
    stats: DiskStats,
    /// Bumped by every power loss; handles of an older epoch are dead.
    epoch: u64,
}

/// A simulated disk, as one process sees it (cheap to clone: clones are the same disk
/// and the same process).
#[derive(Clone, Debug)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    /// The process this view belongs to.
    epoch: u64,
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("simulated disk: no file {}", path.display()))
}

impl SimDisk {
    /// An empty disk whose faults and power-loss outcomes are drawn from `rng`.
    pub fn new(rng: SimRng, faults: DiskFaults) -> SimDisk {
        let state = State {
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            unlinked: Vec::new(),
            rng,
            faults,
            stats: DiskStats::default(),
            epoch: 0,
        };
        SimDisk { state: Arc::new(Mutex::new(state)), epoch: 0 }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The disk for the process running now (after a power loss or crash, the restarted
    /// one).
    pub fn process(&self) -> SimDisk {
        SimDisk { state: Arc::clone(&self.state), epoch: self.lock().epoch }
    }

    /// The state, if this view's process is still alive.
    fn live(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = self.lock();
        if state.epoch != self.epoch {
            return Err(io::Error::other("simulated disk: this process died (power loss or crash)"));
        }
        Ok(state)
    }

    /// Kills the process without losing power: the page cache stays (a `kill -9`).
    pub fn crash(&self) {
        self.lock().epoch += 1;
    }

    /// Changes the faults injected from now on.
    pub fn set_faults(&self, faults: DiskFaults) {
        self.lock().faults = faults;
    }

    /// What the disk did so far.
    pub fn stats(&self) -> DiskStats {
        self.lock().stats
    }

    /// Cuts the power: every file falls back to what reached the platter (see the module
    /// comment), and every open handle dies.
    pub fn power_loss(&self) {
        let mut state = self.lock();
        let state = &mut *state;
        state.epoch += 1;
        state.stats.power_losses += 1;
        for (path, file) in state.unlinked.drain(..) {
            state.files.entry(path).or_insert(file);
        }
        // How much of the unsynced data reaches the platter differs from one power loss
        // to the next: none, some, most or all of it.
        let keep_per_mille = [0, 300, 700, 1000][state.rng.below(4) as usize];
        let mut lost_files = Vec::new();
        for (path, file) in &mut state.files {
            if !file.name_durable {
                lost_files.push(path.clone());
                continue;
            }
            let durable_len = file.durable.len();
            let mut surviving = file.durable.clone();
            let first = durable_len / SECTOR_BYTES;
            let last = file.cached.len().div_ceil(SECTOR_BYTES);
            for sector in first..last {
                let from = (sector * SECTOR_BYTES).max(durable_len);
                let to = ((sector + 1) * SECTOR_BYTES).min(file.cached.len());
                if state.rng.chance(keep_per_mille) {
                    if surviving.len() < to {
                        surviving.resize(to, 0);
                    }
                    surviving[from..to].copy_from_slice(&file.cached[from..to]);
                    state.stats.sectors_kept += 1;
                } else {
                    state.stats.sectors_lost += 1;
                }
            }
            // The file's size may have reached the disk although its data did not.
            if file.cached.len() > surviving.len() && state.rng.chance(300) {
                surviving.resize(file.cached.len(), 0);
            }
            file.durable = surviving.clone();
            file.cached = surviving;
        }
        for path in lost_files {
            state.files.remove(&path);
            state.stats.files_lost += 1;
        }
    }

    /// The content the process sees of the file at `path`, for checks.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|file| file.cached.clone())
    }
}

struct SimHandle {
    disk: SimDisk,
    path: PathBuf,
    epoch: u64,
}

impl SimHandle {
    fn with_file<T>(&self, act: impl FnOnce(&mut State, &Path) -> io::Result<T>) -> io::Result<T> {
        let mut state = self.disk.lock();
        if state.epoch != self.epoch {
            return Err(io::Error::other("simulated disk: the power went out since this file was opened"));
        }
        act(&mut state, &self.path)
    }
}

impl DiskFile for SimHandle {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.with_file(|state, path| {
            state.files.get_mut(path).ok_or_else(|| not_found(path))?.cached.extend_from_slice(bytes);
            Ok(())
        })
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.with_file(sync)
    }
}

fn sync(state: &mut State, path: &Path) -> io::Result<()> {
    if state.rng.chance(state.faults.sync_fail_per_mille) {
        state.stats.failed_syncs += 1;
        return Err(io::Error::other(format!("simulated fdatasync failure on {}", path.display())));
    }
    let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
    file.durable.clone_from(&file.cached);
    state.stats.syncs += 1;
    Ok(())
}

impl Disk for SimDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.live()?;
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .files
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        self.live()?.files.get(path).map(|file| file.cached.len() as u64).ok_or_else(|| not_found(path))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.live()?.files.get(path).map(|file| file.cached.clone()).ok_or_else(|| not_found(path))
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let mut state = self.live()?;
        if state.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        state.files.insert(path.to_path_buf(), SimFile::default());
        Ok(Box::new(SimHandle { disk: self.clone(), path: path.to_path_buf(), epoch: self.epoch }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        let state = self.live()?;
        if !state.files.contains_key(path) {
            return Err(not_found(path));
        }
        Ok(Box::new(SimHandle { disk: self.clone(), path: path.to_path_buf(), epoch: self.epoch }))
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.live()?;
        if state.files.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
        }
        let file = SimFile { cached: bytes.to_vec(), durable: Vec::new(), name_durable: false };
        state.files.insert(path.to_path_buf(), file);
        sync(&mut state, path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.live()?;
        let file = state.files.get_mut(path).ok_or_else(|| not_found(path))?;
        let len = usize::try_from(len).map_err(io::Error::other)?;
        file.cached.resize(len, 0);
        sync(&mut state, path)
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        sync(&mut *self.live()?, path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        let file = state.files.remove(from).ok_or_else(|| not_found(from))?;
        state.unlinked.push((from.to_path_buf(), file.clone()));
        state.files.insert(to.to_path_buf(), SimFile { name_durable: false, ..file });
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        let file = state.files.remove(path).ok_or_else(|| not_found(path))?;
        state.unlinked.push((path.to_path_buf(), file));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.live()?;
        for (path, file) in &mut state.files {
            if path.parent() == Some(dir) {
                file.name_durable = true;
            }
        }
        state.unlinked.retain(|(path, _)| path.parent() != Some(dir));
        Ok(())
    }
}
