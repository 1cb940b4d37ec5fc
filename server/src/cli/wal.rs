//! `weft wal verify|repair --data-dir DIR`.

use std::path::Path;

use weft_storage::wal::{self, WalError};

use crate::serve::WAL_DIR;

/// Checks the WAL without changing it; returns a report for the terminal.
pub fn verify(data_dir: &Path) -> Result<String, WalError> {
    let dir = data_dir.join(WAL_DIR);
    let report = wal::verify(&dir)?;
    let mut out = format!(
        "WAL {}: {} segment(s), {} valid record(s), {} payload bytes, ends at {}\n",
        dir.display(),
        report.segments,
        report.records,
        report.payload_bytes,
        report.end
    );
    match report.torn_tail {
        Some(torn) => out.push_str(&format!(
            "torn tail at {} ({} bytes, {:?}): the next start truncates it; nothing acknowledged is lost\n",
            torn.at, torn.bytes, torn.kind
        )),
        None => out.push_str("no damage found\n"),
    }
    Ok(out)
}

/// Keeps every valid record before the first damage and moves the rest aside.
pub fn repair(data_dir: &Path) -> Result<String, WalError> {
    let dir = data_dir.join(WAL_DIR);
    let report = wal::repair(&dir)?;
    let mut out = match report.truncated_at {
        Some(at) => format!("WAL {}: valid log now ends at {at}\n", dir.display()),
        None => format!("WAL {}: nothing needed repair\n", dir.display()),
    };
    for path in &report.moved_aside {
        out.push_str(&format!("moved aside (kept, not deleted): {}\n", path.display()));
    }
    Ok(out)
}
