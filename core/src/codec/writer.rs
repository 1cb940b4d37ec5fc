//! MessagePack writer producing the canonical encoding: every integer in its shortest
//! form, every float as float64, lengths in their shortest form.

/// An append-only MessagePack encoder over a `Vec<u8>`.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Writer {
        Writer { buf: Vec::new() }
    }

    /// An empty writer with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Writer {
        Writer { buf: Vec::with_capacity(capacity) }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Number of bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Empties the writer, keeping its buffer (to encode many small values in a row).
    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Consumes the writer, returning its bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Writes nil.
    pub fn nil(&mut self) {
        self.buf.push(0xc0);
    }

    /// Writes a boolean.
    pub fn bool(&mut self, value: bool) {
        self.buf.push(if value { 0xc3 } else { 0xc2 });
    }

    /// Writes an unsigned integer in its shortest form.
    pub fn uint(&mut self, value: u64) {
        if value < 0x80 {
            self.buf.push(value as u8);
        } else if value <= u8::MAX as u64 {
            self.buf.extend_from_slice(&[0xcc, value as u8]);
        } else if value <= u16::MAX as u64 {
            self.buf.push(0xcd);
            self.buf.extend_from_slice(&(value as u16).to_be_bytes());
        } else if value <= u32::MAX as u64 {
            self.buf.push(0xce);
            self.buf.extend_from_slice(&(value as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// Writes a signed integer in its shortest form (non-negative values as unsigned).
    pub fn int(&mut self, value: i64) {
        if value >= 0 {
            self.uint(value as u64);
        } else if value >= -32 {
            self.buf.push(value as i8 as u8);
        } else if value >= i8::MIN as i64 {
            self.buf.extend_from_slice(&[0xd0, value as i8 as u8]);
        } else if value >= i16::MIN as i64 {
            self.buf.push(0xd1);
            self.buf.extend_from_slice(&(value as i16).to_be_bytes());
        } else if value >= i32::MIN as i64 {
            self.buf.push(0xd2);
            self.buf.extend_from_slice(&(value as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend_from_slice(&value.to_be_bytes());
        }
    }

    /// Writes a float64 (always 9 bytes, so the encoding does not depend on the value).
    pub fn f64(&mut self, value: f64) {
        self.buf.push(0xcb);
        self.buf.extend_from_slice(&value.to_bits().to_be_bytes());
    }

    /// Writes a UTF-8 string.
    pub fn str(&mut self, value: &str) {
        let len = value.len();
        if len < 32 {
            self.buf.push(0xa0 | len as u8);
        } else if len <= u8::MAX as usize {
            self.buf.extend_from_slice(&[0xd9, len as u8]);
        } else if len <= u16::MAX as usize {
            self.buf.push(0xda);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xdb);
            self.buf.extend_from_slice(&len_u32(len).to_be_bytes());
        }
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// Writes a byte string.
    pub fn bin(&mut self, value: &[u8]) {
        let len = value.len();
        if len <= u8::MAX as usize {
            self.buf.extend_from_slice(&[0xc4, len as u8]);
        } else if len <= u16::MAX as usize {
            self.buf.push(0xc5);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xc6);
            self.buf.extend_from_slice(&len_u32(len).to_be_bytes());
        }
        self.buf.extend_from_slice(value);
    }

    /// Writes an array header; `len` values must follow.
    pub fn array_len(&mut self, len: usize) {
        if len < 16 {
            self.buf.push(0x90 | len as u8);
        } else if len <= u16::MAX as usize {
            self.buf.push(0xdc);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xdd);
            self.buf.extend_from_slice(&len_u32(len).to_be_bytes());
        }
    }

    /// Writes a map header; `len` key/value pairs must follow.
    pub fn map_len(&mut self, len: usize) {
        if len < 16 {
            self.buf.push(0x80 | len as u8);
        } else if len <= u16::MAX as usize {
            self.buf.push(0xde);
            self.buf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.buf.push(0xdf);
            self.buf.extend_from_slice(&len_u32(len).to_be_bytes());
        }
    }
}

/// MessagePack cannot express lengths beyond `u32::MAX`; nothing we encode comes close
/// (frames are limited far below), so reaching it is a bug, not bad input.
fn len_u32(len: usize) -> u32 {
    assert!(len <= u32::MAX as usize, "MessagePack length {len} exceeds u32");
    len as u32
}
