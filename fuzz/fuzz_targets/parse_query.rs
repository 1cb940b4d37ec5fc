//! The query entry points a remote caller reaches: SQL text (`POST /v1/query`, the
//! WebSocket `Query` message) and the JSON query model. Any input must give a query or
//! an error — never a panic, and never a stack overflow on a parser thread's stack.

#![no_main]

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use weft_core::query::{Query, SQL_PARSE_STACK_BYTES, parse_sql};

/// One long-lived parser thread with the stack the server gives its parser threads
/// (a thread per input would spend most of the run creating threads).
fn parser() -> &'static Mutex<(Sender<String>, Receiver<()>)> {
    static PARSER: OnceLock<Mutex<(Sender<String>, Receiver<()>)>> = OnceLock::new();
    PARSER.get_or_init(|| {
        let (inputs, received) = channel::<String>();
        let (done, finished) = channel::<()>();
        std::thread::Builder::new()
            .stack_size(SQL_PARSE_STACK_BYTES)
            .spawn(move || {
                for text in received {
                    let _ = parse_sql(&text);
                    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) {
                        let _ = Query::from_json(&json);
                    }
                    // A panic above ends the thread and the fuzzer sees the closed channel.
                    let _ = done.send(());
                }
            })
            .expect("parser thread");
        Mutex::new((inputs, finished))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parser = parser().lock().expect("parser lock");
    parser.0.send(text.to_owned()).expect("parser thread alive");
    parser.1.recv().expect("the parser panicked on this input");
});
