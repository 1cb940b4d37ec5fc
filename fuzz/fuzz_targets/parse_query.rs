//! The query entry points a remote caller reaches: SQL text (`POST /v1/query`, the
//! WebSocket `Query` message) and the JSON query model. Any input must give a query or
//! an error — never a panic, and never a stack overflow on the parser thread's stack.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_core::query::{Query, SQL_PARSE_STACK_BYTES, parse_sql};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let text = text.to_owned();
    // The server parses on a thread with this stack; so does the fuzzer.
    let parsed = std::thread::Builder::new()
        .stack_size(SQL_PARSE_STACK_BYTES)
        .spawn(move || {
            let _ = parse_sql(&text);
            if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                let _ = Query::from_json(&json);
            }
        })
        .map(|thread| thread.join());
    if let Ok(Err(panic)) = parsed {
        std::panic::resume_unwind(panic);
    }
});
