//! Sealed page cursors: a `next` that continues a listing without naming a row the caller
//! may not read.
//!
//! A listing skips rows the caller cannot read. When a page stops early (its scan budget
//! ran out among unreadable rows), the position it stopped at is the key of a row the
//! caller must not learn; every `next` is therefore handed out sealed — encrypted and
//! authenticated with keys this process draws at start — and opened again when passed
//! back as `after`. A sealed cursor is valid until the server restarts; a stale or
//! altered one is refused by name. (Its length shows the length of the key it holds.)
//!
//! Construction: a random 16-byte nonce; the key XOR-ed with a BLAKE3 keyed XOF stream
//! over the nonce (encryption key); a 16-byte BLAKE3 keyed MAC over nonce and ciphertext
//! (a second key). Text form: `s1.` + base64url(nonce ‖ ciphertext ‖ tag).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use weft_core::key::RecordKey;

/// The prefix that marks a sealed cursor: an `after` starting with it is read as a
/// cursor, anything else as a key (a key that itself starts with it can be continued
/// from with the cursor a page returned, not named directly).
const PREFIX: &str = "s1.";
const NONCE: usize = 16;
const TAG: usize = 16;

/// Seals and opens page cursors with keys drawn at start-up.
pub struct CursorSeal {
    encryption: [u8; 32],
    authentication: [u8; 32],
}

impl std::fmt::Debug for CursorSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorSeal(..)")
    }
}

/// Where a listing starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// At the beginning.
    First,
    /// After this key (the caller named it, or it came sealed from this server).
    After(RecordKey),
}

impl CursorSeal {
    /// Fresh keys from the operating system's random source.
    pub fn random() -> Result<CursorSeal, getrandom::Error> {
        let mut encryption = [0u8; 32];
        let mut authentication = [0u8; 32];
        getrandom::fill(&mut encryption)?;
        getrandom::fill(&mut authentication)?;
        Ok(CursorSeal { encryption, authentication })
    }

    fn keystream(&self, nonce: &[u8], out: &mut [u8]) {
        let mut hasher = blake3::Hasher::new_keyed(&self.encryption);
        hasher.update(nonce);
        hasher.finalize_xof().fill(out);
    }

    fn tag(&self, nonce_and_ciphertext: &[u8]) -> [u8; TAG] {
        let hash = blake3::keyed_hash(&self.authentication, nonce_and_ciphertext);
        let mut tag = [0u8; TAG];
        tag.copy_from_slice(&hash.as_bytes()[..TAG]);
        tag
    }

    /// The sealed text of `key`.
    pub fn seal(&self, key: &RecordKey) -> String {
        let plain = key.as_str().as_bytes();
        let mut bytes = vec![0u8; NONCE + plain.len()];
        // A nonce that repeats only leaks that two cursors name keys with equal bytes
        // where both have them; it comes from the OS, and a failure falls back to a hash
        // of the key and the time (never an error for the caller).
        if getrandom::fill(&mut bytes[..NONCE]).is_err() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let fallback = blake3::hash(&[plain, &now.as_nanos().to_le_bytes()].concat());
            bytes[..NONCE].copy_from_slice(&fallback.as_bytes()[..NONCE]);
        }
        let (nonce, body) = bytes.split_at_mut(NONCE);
        self.keystream(nonce, body);
        for (out, byte) in body.iter_mut().zip(plain) {
            *out ^= byte;
        }
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Opens a sealed cursor; `None` if it was not sealed by this process or was altered.
    pub fn open(&self, text: &str) -> Option<RecordKey> {
        let bytes = URL_SAFE_NO_PAD.decode(text.strip_prefix(PREFIX)?).ok()?;
        if bytes.len() < NONCE + TAG {
            return None;
        }
        let (sealed, tag) = bytes.split_at(bytes.len() - TAG);
        // Compared in full whatever the first difference (no early exit on a MAC).
        let expected = self.tag(sealed);
        if expected.iter().zip(tag).fold(0u8, |diff, (a, b)| diff | (a ^ b)) != 0 {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE);
        let mut plain = vec![0u8; body.len()];
        self.keystream(nonce, &mut plain);
        for (out, byte) in plain.iter_mut().zip(body) {
            *out ^= byte;
        }
        RecordKey::new(String::from_utf8(plain).ok()?).ok()
    }

    /// Reads an `after` parameter: a sealed cursor from this server, or a plain key.
    pub fn start(&self, after: Option<&str>) -> Result<Start, String> {
        let Some(after) = after else { return Ok(Start::First) };
        if after.starts_with(PREFIX) {
            return self.open(after).map(Start::After).ok_or_else(|| {
                "`after` is a page cursor this server did not issue or that was altered (cursors last until the \
                 server restarts; start the listing again)"
                    .to_owned()
            });
        }
        RecordKey::new(after).map(Start::After).map_err(|error| format!("`after`: {error}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test setup")]

    use super::*;

    #[test]
    fn sealed_cursors_round_trip_hide_the_key_and_refuse_tampering() {
        let seal = CursorSeal::random().unwrap();
        let key = RecordKey::new("bob-secret-row").unwrap();
        let sealed = seal.seal(&key);
        assert!(!sealed.contains("bob"), "{sealed}");
        assert_eq!(seal.open(&sealed), Some(key.clone()));
        assert_ne!(seal.seal(&key), sealed, "a fresh nonce per cursor");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 5;
        altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(seal.open(&String::from_utf8(altered).unwrap()), None);
        assert_eq!(CursorSeal::random().unwrap().open(&sealed), None, "another process's cursor");
        assert!(seal.start(Some("s1.garbage")).is_err());
        assert_eq!(seal.start(Some("k1")).unwrap(), Start::After(RecordKey::new("k1").unwrap()));
    }
}
