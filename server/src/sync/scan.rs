//! Filtering a slice of documents on every core: the full scan of a one-shot query.
//! It lives here, not in weft-core, because the core starts no threads (it also runs in
//! browsers, where threads need extra setup, and under the deterministic simulation).

use weft_core::key::RecordKey;
use weft_core::query::Predicate;
use weft_core::value::Document;

/// Below this many records one thread is faster than starting others.
pub const PARALLEL_SCAN_MIN: usize = 50_000;

/// The records of `records` that `predicate` matches, in their order.
pub fn filter_records<'a>(
    records: &'a [(RecordKey, Document)],
    predicate: &Predicate,
) -> Vec<&'a (RecordKey, Document)> {
    let threads = threads();
    if threads <= 1 || records.len() < PARALLEL_SCAN_MIN {
        return records.iter().filter(|(_, document)| predicate.matches(document)).collect();
    }
    let chunk = records.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = records
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().filter(|(_, d)| predicate.matches(d)).collect::<Vec<_>>()))
            .collect();
        // A panicking predicate is a bug; surface it on the caller's thread.
        parts
            .into_iter()
            .flat_map(|part| part.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_core::query::FieldPath;
    use weft_core::value::Value;

    #[test]
    fn parallel_and_sequential_filters_agree_and_keep_order() {
        let records: Vec<(RecordKey, Document)> = (0..120_000)
            .map(|i| {
                (RecordKey::new(format!("k{i:06}")).unwrap(), Document::from([("n".to_string(), Value::Int(i % 7))]))
            })
            .collect();
        let predicate = Predicate::Eq(FieldPath::field("n"), Value::Int(3));
        let parallel = filter_records(&records, &predicate);
        let sequential: Vec<_> = records.iter().filter(|(_, d)| predicate.matches(d)).collect();
        assert_eq!(parallel.len(), sequential.len());
        assert!(parallel.iter().zip(&sequential).all(|(a, b)| a.0 == b.0));
    }
}
