//! Log sequence numbers: byte positions in the write-ahead log.
//!
//! An LSN is the offset of a byte in the one endless stream that the WAL segment files cut into pieces.
//! It prints and parses as PostgreSQL's does: the high and low 32 bits in upper-case hex, `0/16B3748`.

use std::fmt;
use std::str::FromStr;

/// A byte position in the write-ahead log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The invalid LSN, `0/0`, which PostgreSQL uses for "none".
    pub const INVALID: Lsn = Lsn(0);

    /// The segment number holding this position, for a segment size in bytes.
    pub fn segment(self, segment_size: u64) -> u64 {
        self.0 / segment_size
    }

    /// The offset of this position inside its segment.
    pub fn segment_offset(self, segment_size: u64) -> u64 {
        self.0 % segment_size
    }

    /// The first position of this position's segment.
    pub fn segment_start(self, segment_size: u64) -> Lsn {
        Lsn(self.0 - self.0 % segment_size)
    }

    /// This position moved forward by `n` bytes.
    pub fn plus(self, n: u64) -> Lsn {
        Lsn(self.0 + n)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("invalid input syntax for type pg_lsn: \"{s}\"");
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
            return Err(bad());
        }
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn(((hi as u64) << 32) | lo as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_and_parses_as_postgres() {
        assert_eq!(Lsn(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn(0x1_0000_0000).to_string(), "1/0");
        assert_eq!("0/16B3748".parse::<Lsn>().unwrap(), Lsn(0x16B3748));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert_eq!("a/b".parse::<Lsn>().unwrap(), Lsn(0xA_0000_000B));
        for bad in ["", "/", "0/", "/0", "0/0/0", "x/1", "123456789/0", "0 /1"] {
            assert!(bad.parse::<Lsn>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn segments() {
        let size = 16 << 20;
        let lsn = Lsn(0x3_0100_0010);
        assert_eq!(lsn.segment(size), 0x3_0100_0010 / size);
        assert_eq!(lsn.segment_offset(size), 0x10);
        assert_eq!(lsn.segment_start(size), Lsn(0x3_0100_0000));
    }
}
