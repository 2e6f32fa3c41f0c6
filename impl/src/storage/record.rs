//! Record framing: `[u32 LE length][u32 LE crc32c(length bytes ‖ payload)][payload]`.
//!
//! The checksum covers the length so that a damaged length is caught as surely as a damaged
//! payload; without it a flipped length bit would silently re-frame everything after it.
//! Parsing works on an in-memory segment and checks every length against both the configured
//! maximum and the bytes actually present before slicing, so a garbage length can never cause
//! an allocation.

use std::fmt;
use std::ops::Range;

/// Bytes of framing before each payload.
pub(crate) const HEADER_BYTES: usize = 8;

/// Upper bound on bytes hashed while looking for a valid record after a damaged one (see
/// [`search_valid_record`]): about 0.4 s of hardware crc32c. Zeros and structured payloads cost
/// next to nothing; only several MiB of incompressible bytes after the damage (a large record
/// of random data, torn) can exhaust it, because every offset whose garbage length happens to
/// fit must be hashed.
pub(crate) const SEARCH_HASH_BYTES_MAX: u64 = 4 << 30;

pub(crate) fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload)
}

/// Appends one framed record. The caller has checked `payload.len()` against the maximum, which
/// fits a `u32`.
pub(crate) fn encode_into(buf: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let len_bytes = len.to_le_bytes();
    buf.extend_from_slice(&len_bytes);
    buf.extend_from_slice(&checksum(len_bytes, payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

pub(crate) fn framed_len(payload_len: usize) -> u64 {
    HEADER_BYTES as u64 + payload_len as u64
}

/// Why the record at some offset is not a valid record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Fewer than [`HEADER_BYTES`] bytes remain.
    PartialHeader { available: usize },
    /// The length exceeds the configured maximum: no writer could have produced it.
    LengthTooLarge { len: u32, max: u32 },
    /// The record would extend past the end of the file.
    PastEnd { len: u32, available: usize },
    BadChecksum {
        len: u32,
        stored: u32,
        computed: u32,
    },
}

impl Damage {
    /// Whether the damaged record runs to the end of the file (or past it): what a write cut
    /// short looks like when nothing else can be learnt.
    pub(crate) fn reaches_end(&self, offset: usize, file_len: usize) -> bool {
        match self {
            Damage::PartialHeader { .. } | Damage::PastEnd { .. } => true,
            Damage::LengthTooLarge { .. } => false,
            Damage::BadChecksum { len, .. } => offset + HEADER_BYTES + *len as usize == file_len,
        }
    }
}

impl fmt::Display for Damage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Damage::PartialHeader { available } => {
                write!(f, "partial record header ({available} of 8 bytes)")
            }
            Damage::LengthTooLarge { len, max } => {
                write!(f, "record length {len} exceeds record_bytes_max {max}")
            }
            Damage::PastEnd { len, available } => write!(
                f,
                "record length {len} extends past the end of the file ({available} payload bytes present)"
            ),
            Damage::BadChecksum {
                stored, computed, ..
            } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
        }
    }
}

/// The records of one segment up to the first damaged one.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Payload byte ranges of the valid records, in order.
    pub(crate) payloads: Vec<Range<usize>>,
    /// Offset just past the last valid record.
    pub(crate) valid_len: usize,
    /// The first damaged record, at `valid_len`.
    pub(crate) damage: Option<Damage>,
}

/// Parses one record at `offset`: `Ok(payload range)` or why it is not a record.
pub(crate) fn parse_at(buf: &[u8], offset: usize, max: u32) -> Result<Range<usize>, Damage> {
    let rest = buf.get(offset..).unwrap_or(&[]);
    let (Some(len_bytes), Some(crc_bytes)) = (word(rest, 0), word(rest, 4)) else {
        return Err(Damage::PartialHeader {
            available: rest.len(),
        });
    };
    let len = u32::from_le_bytes(len_bytes);
    let available = rest.len() - HEADER_BYTES;
    if len > max {
        return Err(Damage::LengthTooLarge { len, max });
    }
    let payload = match rest.get(HEADER_BYTES..HEADER_BYTES + len as usize) {
        Some(payload) => payload,
        None => return Err(Damage::PastEnd { len, available }),
    };
    let stored = u32::from_le_bytes(crc_bytes);
    let computed = checksum(len_bytes, payload);
    if stored != computed {
        return Err(Damage::BadChecksum {
            len,
            stored,
            computed,
        });
    }
    let start = offset + HEADER_BYTES;
    Ok(start..start + len as usize)
}

fn word(bytes: &[u8], at: usize) -> Option<[u8; 4]> {
    bytes.get(at..at + 4)?.try_into().ok()
}

/// Parses records from the start of `buf` until the end or the first damaged record.
pub(crate) fn scan(buf: &[u8], max: u32) -> Scan {
    let mut payloads = Vec::new();
    let mut offset = 0;
    while offset < buf.len() {
        match parse_at(buf, offset, max) {
            Ok(payload) => {
                offset = payload.end;
                payloads.push(payload);
            }
            Err(damage) => {
                return Scan {
                    payloads,
                    valid_len: offset,
                    damage: Some(damage),
                }
            }
        }
    }
    Scan {
        payloads,
        valid_len: offset,
        damage: None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Search {
    /// A valid record starts at this offset.
    Found(usize),
    NotFound,
    /// The hashing budget was spent before the search finished.
    Inconclusive,
}

/// Looks for any valid record starting after `damaged_at`: the evidence that tells corruption in
/// the middle of the log (valid records follow the damage) from a torn tail (nothing valid
/// follows). Every byte position is a candidate because a damaged length hides where the next
/// record really starts. Zero-filled tails never match (the crc of four zero length bytes is not
/// zero), so they cost one 4-byte hash per position. At most `hash_bytes_max` bytes are hashed.
pub(crate) fn search_valid_record(
    buf: &[u8],
    damaged_at: usize,
    max: u32,
    hash_bytes_max: u64,
) -> Search {
    let mut hashed: u64 = 0;
    let last_start = buf.len().saturating_sub(HEADER_BYTES);
    for offset in damaged_at + 1..=last_start {
        let Some(len_bytes) = buf.get(offset..).and_then(|rest| word(rest, 0)) else {
            break;
        };
        let len = u32::from_le_bytes(len_bytes);
        let fits = len <= max && offset + HEADER_BYTES + len as usize <= buf.len();
        if !fits {
            continue;
        }
        hashed += framed_len(len as usize);
        if hashed > hash_bytes_max {
            return Search::Inconclusive;
        }
        if parse_at(buf, offset, max).is_ok() {
            return Search::Found(offset);
        }
    }
    Search::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for payload in payloads {
            encode_into(&mut buf, payload);
        }
        buf
    }

    #[test]
    fn records_round_trip_including_empty_payloads() {
        let buf = framed(&[b"abc", b"", b"hello"]);
        let scan = scan(&buf, 1024);
        assert_eq!(scan.damage, None);
        assert_eq!(scan.valid_len, buf.len());
        let payloads: Vec<&[u8]> = scan.payloads.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(payloads, vec![&b"abc"[..], b"", b"hello"]);
    }

    #[test]
    fn checksum_covers_the_length() {
        let mut buf = framed(&[b"abcdef"]);
        buf[0] = 5; // the payload is still there, only the length changed
        assert!(matches!(
            parse_at(&buf, 0, 1024),
            Err(Damage::BadChecksum { .. })
        ));
    }

    #[test]
    fn zero_filled_bytes_are_never_a_record() {
        let buf = vec![0u8; 4096];
        assert!(matches!(
            parse_at(&buf, 0, 1024),
            Err(Damage::BadChecksum { .. })
        ));
        assert_eq!(
            search_valid_record(&buf, 0, 1024, SEARCH_HASH_BYTES_MAX),
            Search::NotFound
        );
    }

    #[test]
    fn garbage_length_is_rejected_before_any_slicing() {
        let buf = [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0, 1, 2, 3];
        assert_eq!(
            parse_at(&buf, 0, 1 << 20),
            Err(Damage::LengthTooLarge {
                len: 0x7fff_ffff,
                max: 1 << 20
            })
        );
        assert_eq!(
            parse_at(&buf, 0, u32::MAX),
            Err(Damage::PastEnd {
                len: 0x7fff_ffff,
                available: 3
            })
        );
    }

    #[test]
    fn search_finds_the_record_hidden_by_a_damaged_length() {
        let mut buf = framed(&[b"first record", b"second"]);
        buf[1] = 0x40; // length now claims 16 KiB
        assert!(parse_at(&buf, 0, 1 << 20).is_err());
        assert_eq!(
            search_valid_record(&buf, 0, 1 << 20, SEARCH_HASH_BYTES_MAX),
            Search::Found(HEADER_BYTES + 12)
        );
    }

    #[test]
    fn search_gives_up_past_its_hashing_budget() {
        // Every fourth offset claims a 16-byte record that fits but fails its checksum.
        let buf: Vec<u8> = (0..4096).map(|i| if i % 4 == 0 { 16 } else { 0 }).collect();
        assert_eq!(
            search_valid_record(&buf, 0, 1024, 1 << 20),
            Search::NotFound
        );
        assert_eq!(
            search_valid_record(&buf, 0, 1024, 100),
            Search::Inconclusive
        );
    }
}
