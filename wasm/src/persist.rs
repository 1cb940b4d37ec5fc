//! What the host stores: whole record states (one entry per record, keyed
//! `collection/key`), unacknowledged local changes, and the sync cursors. Entries are
//! the protocol's own encodings, so a stored record is exactly a change that recreates
//! it; lists cross the boundary packed as `[u32 little-endian length][bytes]...`.

use weft_core::change::Change;
use weft_core::codec::{DecodeError, DecodeLimits, Reader, Writer};
use weft_core::key::CollectionName;
use weft_core::protocol::Cursor;
use weft_core::replica::Collection;

use crate::session::SessionError;

/// Encodes a change (or a whole record state) for storage.
pub fn encode_change(change: &Change) -> Vec<u8> {
    let mut writer = Writer::new();
    change.encode(&mut writer);
    writer.into_bytes()
}

/// Decodes a stored change.
pub fn decode_change(bytes: &[u8], limits: &DecodeLimits) -> Result<Change, DecodeError> {
    let mut reader = Reader::new(bytes, limits)?;
    let change = Change::decode(&mut reader)?;
    reader.finish()?;
    Ok(change)
}

/// Splits a packed list into its items.
pub fn unpack(packed: &[u8]) -> Result<Vec<&[u8]>, SessionError> {
    let mut items = Vec::new();
    let mut at = 0usize;
    while at < packed.len() {
        let header = packed
            .get(at..at + 4)
            .ok_or_else(|| SessionError::Stored(format!("packed list: truncated length at byte {at}")))?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let item = packed.get(at + 4..at + 4 + len).ok_or_else(|| {
            SessionError::Stored(format!("packed list: item at byte {at} claims {len} bytes, past the end"))
        })?;
        items.push(item);
        at += 4 + len;
    }
    Ok(items)
}

/// Packs items into one list (the inverse of [`unpack`]).
pub fn pack<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        out.extend_from_slice(&(item.len() as u32).to_le_bytes());
        out.extend_from_slice(item);
    }
    out
}

/// The merge of the stored copy `a` of a record with the writer's own copy `b`. When
/// either is a "forgotten" marker (first byte 0xff) the writer's copy wins: it is the
/// latest word on whether the record is in this replica's view.
pub fn merge_stored(a: &[u8], b: &[u8]) -> Result<Vec<u8>, SessionError> {
    if a.first() == Some(&0xff) || b.first() == Some(&0xff) {
        return Ok(b.to_vec());
    }
    let limits = DecodeLimits::default();
    let first = decode_change(a, &limits)?;
    let second = decode_change(b, &limits)?;
    if first.collection != second.collection || first.key != second.key {
        return Err(SessionError::Stored(format!(
            "cannot merge stored records of different keys: {}/{} and {}/{}",
            first.collection, first.key, second.collection, second.key
        )));
    }
    let mut scratch = Collection::new(first.collection.clone());
    let key = first.key.clone();
    scratch.apply(key.clone(), first.state);
    scratch.apply(key.clone(), second.state);
    scratch
        .record_change(&key)
        .map(|change| encode_change(&change))
        .ok_or_else(|| SessionError::Stored(format!("stored record {}/{key} is empty", first.collection)))
}

/// Encodes cursors: `[[collection, cursor], ...]`.
pub fn encode_cursors<'a>(cursors: impl ExactSizeIterator<Item = (&'a CollectionName, &'a Cursor)>) -> Vec<u8> {
    let mut writer = Writer::new();
    writer.array_len(cursors.len());
    for (collection, cursor) in cursors {
        writer.array_len(2);
        writer.str(collection.as_str());
        cursor.encode(&mut writer);
    }
    writer.into_bytes()
}

/// Decodes cursors written by [`encode_cursors`].
pub fn decode_cursors(bytes: &[u8]) -> Result<Vec<(CollectionName, Cursor)>, SessionError> {
    let limits = DecodeLimits::default();
    let mut reader = Reader::new(bytes, &limits)?;
    let count = reader.array("cursors")?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = reader.record(2, "cursor entry")?;
        let name = reader.str("cursor collection")?;
        let collection = CollectionName::new(name).map_err(|e| SessionError::Stored(format!("cursor: {e}")))?;
        let cursor = Cursor::decode(&mut reader)?;
        reader.skip_extra(len - 2)?;
        reader.leave();
        out.push((collection, cursor));
    }
    reader.leave();
    reader.finish()?;
    Ok(out)
}

/// The merge of two stored cursor sets (per collection, each partition's furthest seq).
pub fn merge_cursors(a: &[u8], b: &[u8]) -> Result<Vec<u8>, SessionError> {
    let mut merged: std::collections::BTreeMap<CollectionName, Cursor> = decode_cursors(a)?.into_iter().collect();
    for (collection, cursor) in decode_cursors(b)? {
        match merged.get_mut(&collection) {
            Some(existing) => existing.merge(&cursor),
            None => {
                merged.insert(collection, cursor);
            }
        }
    }
    Ok(encode_cursors(merged.iter()))
}
