//! [`SqliteStore`]: the default record store, one SQLite database file.
//!
//! SQLite runs in WAL journal mode with `synchronous = NORMAL`: a commit is not fsynced,
//! because Weft's own WAL is the durability boundary — every change is durable there
//! before it is acknowledged, and the store only ever runs behind it. After a power loss
//! the store may lose its last commits, together with the checkpoint written in the same
//! transaction, so recovery replays the WAL from an older checkpoint: merging is
//! idempotent, so replaying records the store already holds changes nothing. The one
//! place the store must be durable is before WAL segments are deleted:
//! [`RecordStore::sync`] runs a full SQLite checkpoint, which fsyncs the database file.
//! See docs/storage.md.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};
use weft_core::codec::Writer;
use weft_core::crdt::VersionHash;
use weft_core::hlc::Hlc;
use weft_core::key::{CollectionName, PartitionId, RecordKey};

use super::encoding::{
    decode_checkpoint, decode_clock, decode_record, decode_record_hlc, decode_version, encode_checkpoint, encode_clock,
    encode_record_into, encode_version,
};
use super::{RecordStore, StoreError, StoredRecord, WriteBatch};
use crate::wal::WalPosition;

/// The schema version this build writes.
const FORMAT_VERSION: u32 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    partition INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    version BLOB NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_by_seq ON records (collection, partition, seq);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
";

/// A record store in one SQLite database file.
#[derive(Debug)]
pub struct SqliteStore {
    /// Commits and syncs (one flush at a time).
    writer: Mutex<Connection>,
    /// Reads, on their own connection: in WAL mode they see the last commit and never
    /// wait for a flush in progress, so writers that miss the cache are not stalled by
    /// the flusher.
    reader: Mutex<Connection>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let error = |source| StoreError::Sqlite { path: path.display().to_string(), source };
        let connection = Connection::open(path).map_err(error)?;
        connection.execute_batch("PRAGMA busy_timeout = 10000;").map_err(error)?;
        connection
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; \
                 PRAGMA mmap_size = 1073741824;",
            )
            .map_err(error)?;
        connection.execute_batch(SCHEMA).map_err(error)?;
        let reader = Connection::open(path).map_err(error)?;
        reader
            .execute_batch("PRAGMA busy_timeout = 10000; PRAGMA cache_size = -65536; PRAGMA mmap_size = 1073741824;")
            .map_err(error)?;
        let store =
            SqliteStore { writer: Mutex::new(connection), reader: Mutex::new(reader), path: path.to_path_buf() };
        match store.meta("format_version")? {
            None => {
                store
                    .writer()
                    .execute(
                        "INSERT INTO meta (name, value) VALUES ('format_version', ?1)",
                        params![FORMAT_VERSION.to_le_bytes().to_vec()],
                    )
                    .map_err(error)?;
            }
            Some(bytes) => {
                let found = bytes.as_slice().try_into().map(u32::from_le_bytes).unwrap_or(u32::MAX);
                if found > FORMAT_VERSION {
                    return Err(StoreError::FutureVersion { found, supported: FORMAT_VERSION });
                }
            }
        }
        Ok(store)
    }

    fn error(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite { path: self.path.display().to_string(), source }
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        // SQLite rolls back a transaction interrupted by a panic; the handle stays usable.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.reader()
            .query_row("SELECT value FROM meta WHERE name = ?1", params![name], |row| row.get::<_, Vec<u8>>(0))
            .optional()
            .map_err(self.error())
    }

    /// Runs a `SELECT key, seq, version, state ...` on the read connection.
    fn records(
        &self,
        sql: &str,
        parameters: impl rusqlite::Params,
        collection: &CollectionName,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError> {
        let connection = self.reader();
        let mut statement = connection.prepare_cached(sql).map_err(self.error())?;
        let rows = statement
            .query_map(parameters, |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(self.error())?;
        let mut out = Vec::new();
        for row in rows {
            let (key, seq, version, state) = row.map_err(self.error())?;
            let record = stored(collection.as_str(), &key, seq, &version, &state)?;
            let key = RecordKey::new(key.clone()).map_err(|error| corrupt(collection.as_str(), &key, error))?;
            out.push((key, record));
        }
        Ok(out)
    }

    /// Overwrites the stored checkpoint bytes (fault-injection tests only).
    #[doc(hidden)]
    pub fn write_raw_checkpoint(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.writer()
            .execute("INSERT OR REPLACE INTO meta (name, value) VALUES ('checkpoint', ?1)", params![bytes])
            .map_err(|source| StoreError::Sqlite { path: self.path.display().to_string(), source })?;
        Ok(())
    }
}

fn corrupt(collection: &str, key: &str, reason: impl ToString) -> StoreError {
    StoreError::CorruptRecord { collection: collection.to_owned(), key: key.to_owned(), reason: reason.to_string() }
}

fn stored(collection: &str, key: &str, seq: i64, version: &[u8], state: &[u8]) -> Result<StoredRecord, StoreError> {
    let version = decode_version(version).ok_or_else(|| corrupt(collection, key, "version is not 16 bytes"))?;
    let state = decode_record(state).map_err(|error| corrupt(collection, key, error))?;
    Ok(StoredRecord { seq: seq as u64, version, state })
}

impl RecordStore for SqliteStore {
    fn checkpoint(&self) -> Result<Option<WalPosition>, StoreError> {
        match self.meta("checkpoint")? {
            None => Ok(None),
            Some(bytes) => decode_checkpoint(&bytes).map(Some).map_err(StoreError::CorruptCheckpoint),
        }
    }

    fn max_hlc(&self) -> Result<Option<Hlc>, StoreError> {
        if let Some(bytes) = self.meta("max_hlc")?
            && let Ok(hlc) = decode_clock(&bytes)
        {
            return Ok(Some(hlc));
        }
        // A store from before the clock was kept, or a damaged row: every stored state
        // starts with its greatest HLC, so read just that of each record.
        let connection = self.reader();
        let mut statement = connection.prepare("SELECT collection, key, state FROM records").map_err(self.error())?;
        let mut rows = statement.query([]).map_err(self.error())?;
        let mut max: Option<Hlc> = None;
        while let Some(row) = rows.next().map_err(self.error())? {
            let state: Vec<u8> = row.get(2).map_err(self.error())?;
            match decode_record_hlc(&state) {
                Ok(hlc) => max = max.max(Some(hlc)),
                Err(reason) => {
                    let collection: String = row.get(0).map_err(self.error())?;
                    let key: String = row.get(1).map_err(self.error())?;
                    return Err(corrupt(&collection, &key, reason));
                }
            }
        }
        Ok(max)
    }

    fn read(&self, collection: &CollectionName, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        let connection = self.reader();
        let row = connection
            .prepare_cached("SELECT seq, version, state FROM records WHERE collection = ?1 AND key = ?2")
            .and_then(|mut statement| {
                statement
                    .query_row(params![collection.as_str(), key.as_str()], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?, row.get::<_, Vec<u8>>(2)?))
                    })
                    .optional()
            })
            .map_err(self.error())?;
        row.map(|(seq, version, state)| stored(collection.as_str(), key.as_str(), seq, &version, &state)).transpose()
    }

    fn commit(&self, batch: &WriteBatch<'_>) -> Result<(), StoreError> {
        let path = self.path.display().to_string();
        let error = |source| StoreError::Sqlite { path: path.clone(), source };
        let mut connection = self.writer();
        let transaction = connection.transaction().map_err(error)?;
        {
            let mut upsert = transaction
                .prepare_cached(
                    "INSERT INTO records (collection, key, partition, seq, version, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (collection, key) DO UPDATE
                     SET seq = excluded.seq, version = excluded.version, state = excluded.state",
                )
                .map_err(error)?;
            let mut writer = Writer::with_capacity(4096);
            for &(collection, key, record) in &batch.records {
                writer.clear();
                encode_record_into(&record.state, &mut writer);
                upsert
                    .execute(params![
                        collection.as_str(),
                        key.as_str(),
                        key.hash().partition.get(),
                        record.seq as i64,
                        &encode_version(record.version)[..],
                        writer.as_bytes(),
                    ])
                    .map_err(error)?;
            }
            if let Some(checkpoint) = batch.checkpoint {
                transaction
                    .execute(
                        "INSERT OR REPLACE INTO meta (name, value) VALUES ('checkpoint', ?1)",
                        params![encode_checkpoint(checkpoint).to_vec()],
                    )
                    .map_err(error)?;
            }
            if let Some(hlc) = batch.max_hlc {
                transaction
                    .execute(
                        "INSERT OR REPLACE INTO meta (name, value) VALUES ('max_hlc', ?1)",
                        params![encode_clock(hlc).to_vec()],
                    )
                    .map_err(error)?;
            }
        }
        transaction.commit().map_err(error)
    }

    fn scan(
        &self,
        collection: &CollectionName,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError> {
        let after = after.map_or("", RecordKey::as_str);
        self.records(
            "SELECT key, seq, version, state FROM records WHERE collection = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            params![collection.as_str(), after, limit.min(i64::MAX as usize) as i64],
            collection,
        )
    }

    fn changes_since(
        &self,
        collection: &CollectionName,
        partition: PartitionId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<(RecordKey, StoredRecord)>, StoreError> {
        self.records(
            "SELECT key, seq, version, state FROM records \
             WHERE collection = ?1 AND partition = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
            params![collection.as_str(), partition.get(), after_seq as i64, limit.min(i64::MAX as usize) as i64],
            collection,
        )
    }

    fn for_each_version(
        &self,
        visit: &mut dyn FnMut(&CollectionName, &RecordKey, VersionHash, u64),
    ) -> Result<(), StoreError> {
        let connection = self.reader();
        let mut statement =
            connection.prepare("SELECT collection, key, version, seq FROM records").map_err(self.error())?;
        let mut rows = statement.query([]).map_err(self.error())?;
        while let Some(row) = rows.next().map_err(self.error())? {
            let collection: String = row.get(0).map_err(self.error())?;
            let key: String = row.get(1).map_err(self.error())?;
            let version: Vec<u8> = row.get(2).map_err(self.error())?;
            let seq: i64 = row.get(3).map_err(self.error())?;
            let name = CollectionName::new(collection.clone()).map_err(|e| corrupt(&collection, &key, e))?;
            let record_key = RecordKey::new(key.clone()).map_err(|e| corrupt(&collection, &key, e))?;
            let version =
                decode_version(&version).ok_or_else(|| corrupt(&collection, &key, "version is not 16 bytes"))?;
            visit(&name, &record_key, version, seq as u64);
        }
        Ok(())
    }

    fn sync(&self) -> Result<(), StoreError> {
        // A FULL checkpoint copies SQLite's own WAL into the database file and, with
        // synchronous = NORMAL, fsyncs it. The first column is 1 if it could not finish
        // (a reader in the way): then the store is not durable yet and that is an error.
        let busy: i64 =
            self.writer().query_row("PRAGMA wal_checkpoint(FULL)", [], |row| row.get(0)).map_err(self.error())?;
        if busy != 0 {
            return Err(StoreError::Sqlite {
                path: self.path.display().to_string(),
                source: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some("wal_checkpoint(FULL) could not complete".to_owned()),
                ),
            });
        }
        Ok(())
    }
}
