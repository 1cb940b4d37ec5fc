//! The IO seam under the log: every file operation of the WAL goes through [`Disk`], so
//! the same code runs on the real file system ([`RealDisk`]) and on a simulated disk
//! that can lose power ([`crate::sim::SimDisk`]). `kill -9` keeps the page cache, so it
//! cannot show a missing `fdatasync`, a torn sector or a failed sync; the simulated disk
//! can.
//!
//! The contract a `Disk` keeps is the one the WAL relies on (and which Linux file systems
//! give with `fdatasync` and a directory `fsync`): bytes written are durable only once
//! [`DiskFile::sync_data`] returned `Ok`; a new file's name is durable only once
//! [`Disk::sync_dir`] returned for its directory; anything else may be lost, and an
//! unsynced write may reach the platter in part, sector by sector, in any order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// A file open for appending.
pub trait DiskFile: Send {
    /// Appends `bytes` (into the page cache: not durable yet).
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync`). After an error the state of
    /// the unsynced bytes is unknown: the caller must not retry as if they were safe.
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The file-system operations the WAL uses.
pub trait Disk: Send + Sync + std::fmt::Debug {
    /// Creates `dir` and its parents (durable before return).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the plain files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The length of the file at `path`.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates a new, empty file (an error if it exists) open for appending.
    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Opens an existing file for appending.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>>;
    /// Writes a whole new file and syncs it (the `damaged/` copies recovery keeps).
    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()>;
    /// Cuts the file at `path` to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Syncs the file at `path` (data and metadata).
    fn sync_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file (durable once its directories are synced).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file (durable once its directory is synced).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the names in `dir` durable (`fsync` of the directory).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The operating system's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealDisk;

struct RealFile(File);

impl DiskFile for RealFile {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write_all(bytes)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Disk for RealDisk {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn create_new(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(RealFile(OpenOptions::new().create_new(true).append(true).open(path)?)))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn DiskFile>> {
        Ok(Box::new(RealFile(OpenOptions::new().append(true).open(path)?)))
    }

    fn write_new(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut file = OpenOptions::new().create_new(true).write(true).open(path)?;
        file.write_all(bytes)?;
        file.sync_all()
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
