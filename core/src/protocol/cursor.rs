//! Sync cursors: how far a replica has read a collection's change logs.

use std::collections::BTreeMap;

use crate::codec::{DecodeError, Reader, Writer};
use crate::key::{PARTITION_COUNT, PartitionId};

/// Identity of a change log (a server node's incarnation). A cursor from another log
/// cannot be used; the replica reconciles by merkle instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LogId(pub u64);

/// Per-partition sequence numbers seen, tagged with the log they came from. Sparse:
/// partitions never seen are absent (sequence 0).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// The log the sequence numbers belong to.
    pub log: LogId,
    /// Highest sequence number seen per partition.
    pub seqs: BTreeMap<PartitionId, u64>,
}

impl Cursor {
    /// An empty cursor on `log`.
    pub fn new(log: LogId) -> Cursor {
        Cursor { log, seqs: BTreeMap::new() }
    }

    /// The highest sequence number seen in `partition`.
    pub fn seq(&self, partition: PartitionId) -> u64 {
        self.seqs.get(&partition).copied().unwrap_or(0)
    }

    /// Advances `partition` to `seq` (never backwards).
    pub fn advance(&mut self, partition: PartitionId, seq: u64) {
        let slot = self.seqs.entry(partition).or_insert(0);
        *slot = (*slot).max(seq);
    }

    /// Takes in a newer cursor: the same log advances per partition, another log replaces.
    pub fn merge(&mut self, other: &Cursor) {
        if other.log != self.log {
            *self = other.clone();
            return;
        }
        for (partition, seq) in &other.seqs {
            self.advance(*partition, *seq);
        }
    }

    /// Appends the wire form: `[log, [partition, seq, partition, seq, ...]]`.
    pub fn encode(&self, writer: &mut Writer) {
        writer.array_len(2);
        writer.uint(self.log.0);
        writer.array_len(self.seqs.len() * 2);
        for (partition, seq) in &self.seqs {
            writer.uint(partition.get() as u64);
            writer.uint(*seq);
        }
    }

    /// Reads the wire form.
    pub fn decode(reader: &mut Reader<'_>) -> Result<Cursor, DecodeError> {
        let len = reader.record(2, "cursor")?;
        let log = LogId(reader.u64("cursor log")?);
        let at = reader.position();
        let n = reader.array_max(2 * PARTITION_COUNT as usize, "cursor seqs")?;
        if n % 2 != 0 {
            return Err(DecodeError::Invalid { at, what: "cursor seqs", reason: "odd number of entries".to_owned() });
        }
        let mut seqs = BTreeMap::new();
        for _ in 0..n / 2 {
            let at = reader.position();
            let number = reader.u16("cursor partition")?;
            let partition = PartitionId::new(number).ok_or_else(|| DecodeError::Invalid {
                at,
                what: "cursor partition",
                reason: format!("partition {number} out of range"),
            })?;
            seqs.insert(partition, reader.u64("cursor seq")?);
        }
        reader.leave();
        reader.skip_extra(len - 2)?;
        Ok(Cursor { log, seqs })
    }
}
