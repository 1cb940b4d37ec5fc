//! Bounded MessagePack reader: every length is checked against the bytes that remain and
//! against [`DecodeLimits`] before anything is allocated, and nesting is counted, so
//! hostile input becomes a [`DecodeError`], never a panic or an unbounded allocation.

use super::{DecodeError, DecodeLimits};

/// A cursor over one frame of MessagePack bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
    limits: &'a DecodeLimits,
}

/// The kind of the next value, as far as callers need to branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// nil
    Nil,
    /// true / false
    Bool,
    /// any integer format
    Int,
    /// float32 / float64
    Float,
    /// any string format
    Str,
    /// any bin format
    Bin,
    /// any array format
    Array,
    /// any map format
    Map,
    /// ext types and the reserved byte 0xc1, which Weft never writes
    Unsupported,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; fails at once when the frame exceeds the size limit.
    pub fn new(buf: &'a [u8], limits: &'a DecodeLimits) -> Result<Reader<'a>, DecodeError> {
        if buf.len() > limits.frame_bytes_max {
            return Err(DecodeError::FrameTooLarge { size: buf.len(), max: limits.frame_bytes_max });
        }
        Ok(Reader { buf, pos: 0, depth: 0, limits })
    }

    /// The limits this reader enforces.
    pub fn limits(&self) -> &'a DecodeLimits {
        self.limits
    }

    /// Byte offset of the next value.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.pos != self.buf.len() {
            return Err(DecodeError::TrailingBytes { at: self.pos, count: self.buf.len() - self.pos });
        }
        Ok(())
    }

    /// The kind of the next value, without consuming it.
    pub fn peek_kind(&self, what: &'static str) -> Result<Kind, DecodeError> {
        let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated { at: self.pos, what })?;
        Ok(match byte {
            0x00..=0x7f | 0xe0..=0xff | 0xcc..=0xd3 => Kind::Int,
            0x80..=0x8f | 0xde | 0xdf => Kind::Map,
            0x90..=0x9f | 0xdc | 0xdd => Kind::Array,
            0xa0..=0xbf | 0xd9..=0xdb => Kind::Str,
            0xc0 => Kind::Nil,
            0xc2 | 0xc3 => Kind::Bool,
            0xc4..=0xc6 => Kind::Bin,
            0xca | 0xcb => Kind::Float,
            _ => Kind::Unsupported,
        })
    }

    /// Consumes a nil if one is next; returns whether it did.
    pub fn take_nil(&mut self) -> bool {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let byte = *self.buf.get(self.pos).ok_or(DecodeError::Truncated { at: self.pos, what })?;
        self.pos += 1;
        Ok(byte)
    }

    fn bytes(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if len > self.remaining() {
            return Err(DecodeError::Truncated { at: self.pos, what });
        }
        let out = &self.buf[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn be<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn unexpected(&self, at: usize, expected: &'static str, what: &'static str) -> DecodeError {
        DecodeError::UnexpectedType { at, what, expected, found: self.buf.get(at).copied().unwrap_or(0) }
    }

    /// Reads a boolean.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let at = self.pos;
        match self.byte(what)? {
            0xc2 => Ok(false),
            0xc3 => Ok(true),
            _ => Err(self.unexpected(at, "bool", what)),
        }
    }

    /// Reads any integer format as an `i128` (covers both `u64` and `i64`).
    fn integer(&mut self, what: &'static str) -> Result<i128, DecodeError> {
        let at = self.pos;
        let marker = self.byte(what)?;
        Ok(match marker {
            0x00..=0x7f => marker as i128,
            0xe0..=0xff => marker as i8 as i128,
            0xcc => self.be::<1>(what)?[0] as i128,
            0xcd => u16::from_be_bytes(self.be(what)?) as i128,
            0xce => u32::from_be_bytes(self.be(what)?) as i128,
            0xcf => u64::from_be_bytes(self.be(what)?) as i128,
            0xd0 => self.be::<1>(what)?[0] as i8 as i128,
            0xd1 => i16::from_be_bytes(self.be(what)?) as i128,
            0xd2 => i32::from_be_bytes(self.be(what)?) as i128,
            0xd3 => i64::from_be_bytes(self.be(what)?) as i128,
            _ => return Err(self.unexpected(at, "integer", what)),
        })
    }

    /// Reads an unsigned integer no greater than `max`.
    pub fn uint_max(&mut self, max: u64, what: &'static str) -> Result<u64, DecodeError> {
        let at = self.pos;
        let value = self.integer(what)?;
        if value < 0 || value > max as i128 {
            return Err(DecodeError::IntegerOutOfRange { at, what });
        }
        Ok(value as u64)
    }

    /// Reads a `u64`.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        self.uint_max(u64::MAX, what)
    }

    /// Reads a `u32`.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(self.uint_max(u32::MAX as u64, what)? as u32)
    }

    /// Reads a `u16`.
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(self.uint_max(u16::MAX as u64, what)? as u16)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.uint_max(u8::MAX as u64, what)? as u8)
    }

    /// Reads an `i64`.
    pub fn i64(&mut self, what: &'static str) -> Result<i64, DecodeError> {
        let at = self.pos;
        let value = self.integer(what)?;
        i64::try_from(value).map_err(|_| DecodeError::IntegerOutOfRange { at, what })
    }

    /// Reads a float (float32 is widened).
    pub fn f64(&mut self, what: &'static str) -> Result<f64, DecodeError> {
        let at = self.pos;
        match self.byte(what)? {
            0xca => Ok(f32::from_bits(u32::from_be_bytes(self.be(what)?)) as f64),
            0xcb => Ok(f64::from_bits(u64::from_be_bytes(self.be(what)?))),
            _ => Err(self.unexpected(at, "float", what)),
        }
    }

    /// Reads a UTF-8 string of at most `max_bytes` bytes, borrowed from the frame.
    pub fn str_max(&mut self, max_bytes: usize, what: &'static str) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let len = match self.byte(what)? {
            marker @ 0xa0..=0xbf => (marker & 0x1f) as usize,
            0xd9 => self.be::<1>(what)?[0] as usize,
            0xda => u16::from_be_bytes(self.be(what)?) as usize,
            0xdb => u32::from_be_bytes(self.be(what)?) as usize,
            _ => return Err(self.unexpected(at, "string", what)),
        };
        if len > max_bytes {
            return Err(DecodeError::TooLong { at, what, len, max: max_bytes });
        }
        let bytes = self.bytes(len, what)?;
        std::str::from_utf8(bytes).map_err(|_| DecodeError::InvalidUtf8 { at, what })
    }

    /// Reads a UTF-8 string within the general string limit.
    pub fn str(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        self.str_max(self.limits.string_bytes_max, what)
    }

    /// Reads a byte string of at most `max_bytes` bytes, borrowed from the frame.
    pub fn bin_max(&mut self, max_bytes: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = match self.byte(what)? {
            0xc4 => self.be::<1>(what)?[0] as usize,
            0xc5 => u16::from_be_bytes(self.be(what)?) as usize,
            0xc6 => u32::from_be_bytes(self.be(what)?) as usize,
            _ => return Err(self.unexpected(at, "bin", what)),
        };
        if len > max_bytes {
            return Err(DecodeError::TooLong { at, what, len, max: max_bytes });
        }
        self.bytes(len, what)
    }

    /// Reads a byte string within the general string limit.
    pub fn bin(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        self.bin_max(self.limits.string_bytes_max, what)
    }

    fn container_len(&mut self, map: bool, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = match (self.byte(what)?, map) {
            (marker @ 0x90..=0x9f, false) => (marker & 0x0f) as usize,
            (0xdc, false) | (0xde, true) => u16::from_be_bytes(self.be(what)?) as usize,
            (0xdd, false) | (0xdf, true) => u32::from_be_bytes(self.be(what)?) as usize,
            (marker @ 0x80..=0x8f, true) => (marker & 0x0f) as usize,
            _ => return Err(self.unexpected(at, if map { "map" } else { "array" }, what)),
        };
        // Every element takes at least one byte (a map entry two): a length beyond what
        // remains is a lie, refused before anyone allocates for it.
        let min_bytes = if map { len.saturating_mul(2) } else { len };
        if min_bytes > self.remaining() {
            return Err(DecodeError::Truncated { at, what });
        }
        Ok(len)
    }

    /// Reads an array header, entering one nesting level (pair with [`Reader::leave`]).
    pub fn array(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        self.enter(what)?;
        self.container_len(false, what)
    }

    /// Reads an array header whose length must be at most `max` (batch limits).
    pub fn array_max(&mut self, max: usize, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = self.array(what)?;
        if len > max {
            return Err(DecodeError::BatchTooLarge { at, what, len, max });
        }
        Ok(len)
    }

    /// Reads a map header, entering one nesting level (pair with [`Reader::leave`]).
    pub fn map(&mut self, what: &'static str) -> Result<usize, DecodeError> {
        self.enter(what)?;
        self.container_len(true, what)
    }

    /// Reads an array header that must hold at least `min` elements; returns the count.
    /// Extra trailing elements are allowed (fields added by later protocol revisions) and
    /// must be skipped by the caller with [`Reader::skip_extra`].
    pub fn record(&mut self, min: usize, what: &'static str) -> Result<usize, DecodeError> {
        let at = self.pos;
        let len = self.array(what)?;
        if len < min {
            return Err(DecodeError::Invalid {
                at,
                what,
                reason: format!("expected at least {min} elements, found {len}"),
            });
        }
        Ok(len)
    }

    /// Skips the `extra` trailing elements of a record and leaves its nesting level.
    pub fn skip_extra(&mut self, extra: usize) -> Result<(), DecodeError> {
        for _ in 0..extra {
            self.skip()?;
        }
        self.leave();
        Ok(())
    }

    fn enter(&mut self, what: &'static str) -> Result<(), DecodeError> {
        if self.depth >= self.limits.depth_max {
            return Err(DecodeError::TooDeep { at: self.pos, what, max: self.limits.depth_max });
        }
        self.depth += 1;
        Ok(())
    }

    /// Leaves the nesting level entered by [`Reader::array`] or [`Reader::map`].
    pub fn leave(&mut self) {
        debug_assert!(self.depth > 0, "leave without enter");
        self.depth = self.depth.saturating_sub(1);
    }

    /// Skips one value of any kind (bounded by the depth limit).
    pub fn skip(&mut self) -> Result<(), DecodeError> {
        const WHAT: &str = "skipped value";
        match self.peek_kind(WHAT)? {
            Kind::Nil | Kind::Bool => {
                self.pos += 1;
            }
            Kind::Int => {
                self.integer(WHAT)?;
            }
            Kind::Float => {
                self.f64(WHAT)?;
            }
            Kind::Str => {
                let at = self.pos;
                let len = match self.byte(WHAT)? {
                    marker @ 0xa0..=0xbf => (marker & 0x1f) as usize,
                    0xd9 => self.be::<1>(WHAT)?[0] as usize,
                    0xda => u16::from_be_bytes(self.be(WHAT)?) as usize,
                    _ => u32::from_be_bytes(self.be(WHAT)?) as usize,
                };
                self.bytes(len, WHAT).map_err(|_| DecodeError::Truncated { at, what: WHAT })?;
            }
            Kind::Bin => {
                self.bin_max(usize::MAX, WHAT)?;
            }
            Kind::Array => {
                let len = self.array(WHAT)?;
                for _ in 0..len {
                    self.skip()?;
                }
                self.leave();
            }
            Kind::Map => {
                let len = self.map(WHAT)?;
                for _ in 0..len.saturating_mul(2) {
                    self.skip()?;
                }
                self.leave();
            }
            Kind::Unsupported => return Err(self.unexpected(self.pos, "a supported MessagePack type", WHAT)),
        }
        Ok(())
    }
}
