//! The binary encoding shared by WAL payloads and checkpoint snapshots.
//!
//! Integers are little-endian, lengths are unsigned LEB128 varints, strings are a length and UTF-8 bytes.
//! Nothing here trusts its input: every read checks the bytes are there and says what was malformed, so a
//! damaged snapshot or record is an error, never a panic or a huge allocation.

use crate::error::{Error, Result};

/// Appends encoded values to a byte vector.
#[derive(Default)]
pub struct Encoder {
    pub buf: Vec<u8>,
}

impl Encoder {
    /// An encoder writing into `buf`.
    pub fn new(buf: Vec<u8>) -> Self {
        Encoder { buf }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    /// An unsigned LEB128 varint.
    pub fn var(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    /// A signed varint (zigzag).
    pub fn svar(&mut self, v: i64) {
        self.var(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn bytes(&mut self, v: &[u8]) {
        self.var(v.len() as u64);
        self.buf.extend_from_slice(v);
    }

    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }

    pub fn bool(&mut self, v: bool) {
        self.u8(v as u8);
    }
}

/// Reads encoded values from a byte slice.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Decoder<'a> {
    /// A decoder over `buf`; `what` names the structure in error messages.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Decoder { buf, pos: 0, what }
    }

    /// A decoder over `buf` that starts at byte `pos` (so error messages give offsets into all of `buf`).
    pub fn at(buf: &'a [u8], pos: usize, what: &'static str) -> Self {
        Decoder { buf, pos: pos.min(buf.len()), what }
    }

    /// The current byte offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// An error saying the structure is malformed.
    pub fn malformed(&self, why: impl std::fmt::Display) -> Error {
        Error::corrupted(format!("malformed {} at byte {}: {why}", self.what, self.pos))
    }

    /// The next `n` bytes, raw.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.malformed(format!("needs {n} more bytes, has {}", self.remaining())));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    pub fn var(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= ((b & 0x7F) as u64) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.malformed("varint longer than 10 bytes"))
    }

    pub fn svar(&mut self) -> Result<i64> {
        let v = self.var()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    /// A length that must fit in what is left of the input (each element takes at least one byte).
    pub fn count(&mut self) -> Result<usize> {
        let n = self.var()?;
        if n > self.remaining() as u64 {
            return Err(self.malformed(format!("length {n} exceeds the {} bytes left", self.remaining())));
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.count()?;
        self.take(n)
    }

    pub fn str(&mut self) -> Result<&'a str> {
        let b = self.bytes()?;
        std::str::from_utf8(b).map_err(|e| self.malformed(e))
    }

    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(self.malformed(format!("bad boolean {b}"))),
        }
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.malformed(format!("{} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut e = Encoder::default();
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            e.var(v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            e.svar(v);
        }
        e.str("héllo");
        e.u32(7);
        let mut d = Decoder::new(&e.buf, "test");
        for v in [0u64, 1, 127, 128, 300, u64::MAX] {
            assert_eq!(d.var().unwrap(), v);
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(d.svar().unwrap(), v);
        }
        assert_eq!(d.str().unwrap(), "héllo");
        assert_eq!(d.u32().unwrap(), 7);
        d.finish().unwrap();
    }

    #[test]
    fn truncated_input_is_an_error() {
        let mut e = Encoder::default();
        e.str("hello");
        let mut d = Decoder::new(&e.buf[..3], "test");
        assert!(d.str().is_err());
        let mut d = Decoder::new(&[0xFF; 20], "test");
        assert!(d.var().is_err());
    }
}
