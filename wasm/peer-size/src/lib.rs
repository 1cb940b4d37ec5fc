//! The smallest useful automerge client surface (a map document: put, merge, save,
//! load), so the bundle-size comparison counts what an app would ship.
#![allow(missing_docs)]

use automerge::transaction::Transactable;
use automerge::{AutoCommit, ROOT};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
pub struct Doc(AutoCommit);

#[wasm_bindgen]
impl Doc {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Doc {
        Doc(AutoCommit::new())
    }

    pub fn put(&mut self, key: &str, value: &str) -> Result<(), JsError> {
        self.0.put(ROOT, key, value).map_err(|e| JsError::new(&e.to_string()))
    }

    pub fn merge(&mut self, other: &mut Doc) -> Result<(), JsError> {
        self.0.merge(&mut other.0).map(|_| ()).map_err(|e| JsError::new(&e.to_string()))
    }

    pub fn save(&mut self) -> Vec<u8> {
        self.0.save()
    }

    pub fn load(bytes: &[u8]) -> Result<Doc, JsError> {
        AutoCommit::load(bytes).map(Doc).map_err(|e| JsError::new(&e.to_string()))
    }
}
