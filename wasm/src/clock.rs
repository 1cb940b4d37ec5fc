//! Where the replica's physical time comes from: `Date.now()` in a JavaScript host
//! (`SystemTime` panics on wasm32-unknown-unknown), the system clock in native tests.

use weft_core::hlc::ClockSource;

/// The host's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostClock;

#[cfg(target_arch = "wasm32")]
mod host {
    use wasm_bindgen::prelude::*;

    #[wasm_bindgen]
    extern "C" {
        #[wasm_bindgen(js_namespace = Date, js_name = now)]
        pub fn date_now() -> f64;
    }
}

impl ClockSource for HostClock {
    #[cfg(target_arch = "wasm32")]
    fn now_ms(&self) -> u64 {
        host::date_now() as u64
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn now_ms(&self) -> u64 {
        weft_core::hlc::SystemClock.now_ms()
    }
}
