//! HTTP `Range` requests (RFC 9110 §14) as S3 serves them: parsing, resolution against an
//! object's size, `Content-Range` values and `multipart/byteranges` framing.
//!
//! Pure code, no IO. The caller reads the object; this module only says which bytes to send
//! and what to frame them with.
//!
//! # Trade-offs and S3 behaviour
//! - **Invalid means ignored.** Anything syntactically wrong (`bytes=abc`, `bytes=10-5`,
//!   `bytes= -1`, `foo=0-1`, `bytes=,`) makes [`parse_range`] return `None`, and the caller
//!   serves the whole object with 200. That is what RFC 9110 §14.2 allows and what AWS S3
//!   does (checked against the AWS-verified table in versitygw's `GetObject_with_range`
//!   integration test and ceph/s3-tests `test_ranged_request_*`).
//! - **Unsatisfiable means 416.** A syntactically valid set of which no range overlaps the
//!   object (`bytes=100-110` on 100 bytes, `bytes=-0`, `bytes=0-` on an empty object) resolves
//!   to [`Unsatisfiable`]; S3 answers `416 InvalidRange` with `Content-Range: bytes */size`.
//! - **Every range on an empty object is a 416**, including a suffix range. Here we deviate
//!   from AWS, which answers `bytes=-5` on a 0-byte object with 200 and the empty body:
//!   expressing that would need an `Ok` with no range in it, which every caller would have to
//!   special-case or index an empty vector. [`RangeSpec::resolve`] instead guarantees a
//!   non-empty `Ok` and sends this rare request down the 416 path (`Content-Range: bytes */0`).
//! - **Huge numbers saturate** at `u64::MAX` instead of failing to parse: no object is that
//!   large, so a saturated first-pos is exactly as unsatisfiable as the real one, a saturated
//!   last-pos clamps to the end just like the real one, and a saturated suffix length selects
//!   the whole object just like the real one. `bytes=18446744073709551615-` is therefore a 416.
//! - **Multiple ranges.** AWS S3 ignores a multi-range header and sends the whole object with
//!   200 (same versitygw table: `bytes=0-0,1-2` → 200). RFC 9110 allows
//!   `multipart/byteranges`, which this module supports; whether the gateway uses it or
//!   follows S3 is the caller's policy ([`RangeSpec::is_multiple`]). When ranges are served as
//!   multipart, resolution drops unsatisfiable members and, if any two requested ranges overlap
//!   or touch, sorts and coalesces the whole set (RFC 9110 §14.3 permits coalescing). Without
//!   that, `bytes=0-,0-,0-,…` would make us send the object 64 times for one request. Ranges
//!   that neither overlap nor touch keep the client's order.
//! - **Limits.** At most [`RANGE_HEADER_BYTES_MAX`] bytes of header and [`RANGE_COUNT_MAX`]
//!   ranges; beyond that the header is ignored (served as 200), which RFC 9110 §14.2 permits.

use std::fmt::Write as _;

/// Longest `Range` header value we parse. Longer values are ignored (whole object served).
pub const RANGE_HEADER_BYTES_MAX: usize = 4096;
/// Most ranges accepted in one header. More are ignored (whole object served).
pub const RANGE_COUNT_MAX: usize = 64;
/// RFC 2046 §5.1.1: a multipart boundary is 1 to 70 characters.
pub const MULTIPART_BOUNDARY_BYTES_MAX: usize = 70;
/// Longest `Content-Type` we put in each part's header.
pub const MULTIPART_CONTENT_TYPE_BYTES_MAX: usize = 1024;

// A header that fits the byte limit can hold at most ~2000 two-byte ranges ("0,"), so the
// count limit is the one that bounds work in practice.
const _: () = assert!(RANGE_COUNT_MAX * 2 <= RANGE_HEADER_BYTES_MAX);

/// One `range-spec` as written by the client, before the object size is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeItem {
    /// `first-last`: both inclusive; `first <= last` (checked by the parser).
    FromTo { first: u64, last: u64 },
    /// `first-`: from `first` to the end.
    From { first: u64 },
    /// `-len`: the last `len` bytes.
    Suffix { len: u64 },
}

/// A parsed, syntactically valid `Range: bytes=...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSpec {
    /// Invariant: 1..=RANGE_COUNT_MAX items, in the client's order.
    items: Vec<RangeItem>,
}

/// A resolved range: `start..=end_inclusive`, always inside the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end_inclusive: u64,
}

impl ByteRange {
    /// Number of bytes in the range (never zero: a resolved range holds at least one byte).
    pub fn len(&self) -> u64 {
        debug_assert!(self.start <= self.end_inclusive);
        // Cannot overflow: end_inclusive < size <= u64::MAX.
        self.end_inclusive - self.start + 1
    }

    /// Always false; here so clippy's `len_without_is_empty` is satisfied honestly.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// No requested range overlaps the object: answer 416 `InvalidRange` with
/// `Content-Range: bytes */size` ([`unsatisfied_content_range`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The requested range is not satisfiable")]
pub struct Unsatisfiable;

/// Parse a `Range` header value. `None` means "ignore the header and serve the whole object":
/// non-`bytes` unit, syntax error, `last < first`, too long, or too many ranges.
pub fn parse_range(header: &str) -> Option<RangeSpec> {
    if header.len() > RANGE_HEADER_BYTES_MAX {
        return None;
    }
    // Field values arrive trimmed from a conforming HTTP parser; trim anyway so the result
    // does not depend on the parser.
    let header = header.trim_matches(is_ows);
    let (unit, set) = header.split_once('=')?;
    // Range units are case-insensitive (RFC 9110 §14.1). No whitespace around '=' is allowed.
    if !unit.eq_ignore_ascii_case("bytes") {
        return None;
    }
    // OWS is allowed around list separators only; whitespace before the first range
    // ("bytes= -1") is a syntax error, and AWS ignores such a header. (Trailing whitespace
    // went with the trim above.)
    if set.starts_with(is_ows) {
        return None;
    }
    let mut items = Vec::new();
    // RFC 9110 §5.6.1.2: recipients accept empty list elements ("bytes=0-1,,2-3"), but the
    // list needs at least one real element.
    for element in set.split(',') {
        let element = element.trim_matches(is_ows);
        if element.is_empty() {
            continue;
        }
        if items.len() == RANGE_COUNT_MAX {
            return None;
        }
        items.push(parse_item(element)?);
    }
    if items.is_empty() {
        return None;
    }
    Some(RangeSpec { items })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn parse_item(element: &str) -> Option<RangeItem> {
    let (first, last) = element.split_once('-')?;
    match (first.is_empty(), last.is_empty()) {
        (true, true) => None,
        (true, false) => Some(RangeItem::Suffix { len: parse_digits(last)? }),
        (false, true) => Some(RangeItem::From { first: parse_digits(first)? }),
        (false, false) => {
            let first = parse_digits(first)?;
            let last = parse_digits(last)?;
            // RFC 9110 §14.1.1: an int-range with last < first is invalid; AWS ignores it.
            if last < first {
                return None;
            }
            Some(RangeItem::FromTo { first, last })
        }
    }
}

/// `1*DIGIT`, saturating at `u64::MAX` (see module docs for why that is exact here).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut value: u64 = 0;
    for b in s.bytes() {
        value = value.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(value)
}

impl RangeSpec {
    /// The ranges as the client wrote them.
    pub fn items(&self) -> &[RangeItem] {
        &self.items
    }

    /// True when the client asked for more than one range. AWS S3 ignores such headers and
    /// serves the whole object; see the module docs.
    pub fn is_multiple(&self) -> bool {
        self.items.len() > 1
    }

    /// Resolve against an object of `size` bytes.
    ///
    /// - `Ok(ranges)`, never empty, each range inside the object: send 206 (one range: plain
    ///   body with `Content-Range`; several: `multipart/byteranges`).
    /// - `Err(Unsatisfiable)`: send 416. Always the case for an empty object (module docs).
    pub fn resolve(&self, size: u64) -> Result<Vec<ByteRange>, Unsatisfiable> {
        if size == 0 {
            // No byte to select, and Content-Range cannot express an empty range.
            return Err(Unsatisfiable);
        }
        let last_byte = size - 1;
        let mut ranges: Vec<ByteRange> = self
            .items
            .iter()
            .filter_map(|item| match *item {
                RangeItem::FromTo { first, last } => {
                    (first < size).then(|| ByteRange { start: first, end_inclusive: last.min(last_byte) })
                }
                RangeItem::From { first } => {
                    (first < size).then_some(ByteRange { start: first, end_inclusive: last_byte })
                }
                RangeItem::Suffix { len } => {
                    (len > 0).then(|| ByteRange { start: size - len.min(size), end_inclusive: last_byte })
                }
            })
            .collect();
        if ranges.is_empty() {
            return Err(Unsatisfiable);
        }
        debug_assert!(ranges.iter().all(|r| r.start <= r.end_inclusive && r.end_inclusive < size));
        if ranges.len() > 1 && any_overlap_or_adjacent(&ranges) {
            ranges = coalesce(ranges);
        }
        Ok(ranges)
    }
}

/// O(n²) over at most RANGE_COUNT_MAX ranges: 2016 comparisons in the worst case, cheaper than
/// sorting a copy.
fn any_overlap_or_adjacent(ranges: &[ByteRange]) -> bool {
    ranges.iter().enumerate().any(|(i, a)| {
        ranges[i + 1..]
            .iter()
            .any(|b| a.start <= b.end_inclusive.saturating_add(1) && b.start <= a.end_inclusive.saturating_add(1))
    })
}

fn coalesce(mut ranges: Vec<ByteRange>) -> Vec<ByteRange> {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(prev) if r.start <= prev.end_inclusive.saturating_add(1) => {
                prev.end_inclusive = prev.end_inclusive.max(r.end_inclusive);
            }
            _ => merged.push(r),
        }
    }
    merged
}

/// `Content-Range` for a 206: `bytes first-last/size`.
pub fn content_range(r: &ByteRange, size: u64) -> String {
    debug_assert!(r.start <= r.end_inclusive && r.end_inclusive < size);
    format!("bytes {}-{}/{}", r.start, r.end_inclusive, size)
}

/// `Content-Range` for a 416: `bytes */size`.
pub fn unsatisfied_content_range(size: u64) -> String {
    format!("bytes */{size}")
}

/// Why a `multipart/byteranges` body could not be framed. All are caller bugs or corrupt
/// metadata, never client input: the boundary comes from our RNG, the content type from the
/// object's stored metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("multipart/byteranges needs at least one range")]
    NoRanges,
    #[error("multipart boundary must be 1..={MULTIPART_BOUNDARY_BYTES_MAX} characters of [0-9A-Za-z'()+_,-./:=?]")]
    InvalidBoundary,
    #[error("content type is too long or contains control characters")]
    InvalidContentType,
    #[error("range {start}-{end_inclusive} does not fit an object of {size} bytes")]
    RangeOutOfBounds { start: u64, end_inclusive: u64, size: u64 },
    #[error("multipart/byteranges body length overflows u64")]
    LengthOverflow,
}

/// One part of a `multipart/byteranges` body: send `header`, then the object bytes of `range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartPart {
    pub range: ByteRange,
    /// Delimiter and part headers, ending with the empty line before the data.
    pub header: Vec<u8>,
}

/// Framing for a `multipart/byteranges` response (RFC 9110 §14.6): everything except the
/// object data, so the caller can send `Content-Length` up front and stream each range.
///
/// Body layout: `part[0].header, data[0], part[1].header, data[1], ..., closing_delimiter()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartByteranges {
    parts: Vec<MultipartPart>,
    closing: Vec<u8>,
    content_type: String,
    total_len: u64,
}

impl MultipartByteranges {
    /// `boundary`: random, chosen by the caller (e.g. 32 hex digits from the per-core RNG), so
    /// that it cannot occur in the object data by anything but chance. `content_type`: the
    /// object's type, repeated in each part; `None` omits the part `Content-Type`.
    pub fn new(
        ranges: &[ByteRange],
        size: u64,
        content_type: Option<&str>,
        boundary: &str,
    ) -> Result<Self, MultipartError> {
        if ranges.is_empty() {
            return Err(MultipartError::NoRanges);
        }
        if !is_valid_boundary(boundary) {
            return Err(MultipartError::InvalidBoundary);
        }
        if let Some(ct) = content_type {
            // Stored metadata passed header validation at PUT time; check again because a CR
            // or LF here would let object metadata inject part headers.
            if ct.len() > MULTIPART_CONTENT_TYPE_BYTES_MAX || ct.bytes().any(|b| b.is_ascii_control()) {
                return Err(MultipartError::InvalidContentType);
            }
        }
        let mut parts = Vec::with_capacity(ranges.len());
        let mut total_len: u64 = 0;
        for (i, r) in ranges.iter().enumerate() {
            if r.start > r.end_inclusive || r.end_inclusive >= size {
                return Err(MultipartError::RangeOutOfBounds { start: r.start, end_inclusive: r.end_inclusive, size });
            }
            let mut header = String::with_capacity(128 + boundary.len());
            // The CRLF before every delimiter but the first belongs to the delimiter
            // (RFC 2046 §5.1.1), so data bytes are sent exactly as stored.
            if i > 0 {
                header.push_str("\r\n");
            }
            // Writing to a String cannot fail.
            let _ = write!(header, "--{boundary}\r\n");
            if let Some(ct) = content_type {
                let _ = write!(header, "Content-Type: {ct}\r\n");
            }
            let _ = write!(header, "Content-Range: {}\r\n\r\n", content_range(r, size));
            total_len = total_len
                .checked_add(header.len() as u64)
                .and_then(|t| t.checked_add(r.len()))
                .ok_or(MultipartError::LengthOverflow)?;
            parts.push(MultipartPart { range: *r, header: header.into_bytes() });
        }
        let closing = format!("\r\n--{boundary}--\r\n").into_bytes();
        total_len = total_len.checked_add(closing.len() as u64).ok_or(MultipartError::LengthOverflow)?;
        Ok(Self { parts, closing, content_type: format!("multipart/byteranges; boundary={boundary}"), total_len })
    }

    /// The parts in body order.
    pub fn parts(&self) -> &[MultipartPart] {
        &self.parts
    }

    /// Sent after the last part's data.
    pub fn closing_delimiter(&self) -> &[u8] {
        &self.closing
    }

    /// Value of the response `Content-Type` header.
    pub fn content_type(&self) -> &str {
        &self.content_type
    }

    /// Exact body length: all part headers, all range data, the closing delimiter.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }
}

/// RFC 2046 §5.1.1 `bchars` without space (a trailing space would be dropped by some parsers,
/// and a space forces quoting of the parameter, which we avoid).
fn is_valid_boundary(b: &str) -> bool {
    (1..=MULTIPART_BOUNDARY_BYTES_MAX).contains(&b.len())
        && b.bytes().all(|c| c.is_ascii_alphanumeric() || b"'()+_,-./:=?".contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(start: u64, end_inclusive: u64) -> ByteRange {
        ByteRange { start, end_inclusive }
    }

    fn resolve(header: &str, size: u64) -> Option<Result<Vec<ByteRange>, Unsatisfiable>> {
        parse_range(header).map(|s| s.resolve(size))
    }

    #[test]
    fn parses_the_three_forms() {
        let s = parse_range("bytes=0-499, 500-, -200").unwrap();
        assert_eq!(
            s.items(),
            &[
                RangeItem::FromTo { first: 0, last: 499 },
                RangeItem::From { first: 500 },
                RangeItem::Suffix { len: 200 }
            ]
        );
        assert!(s.is_multiple());
        assert!(!parse_range("bytes=0-0").unwrap().is_multiple());
    }

    #[test]
    fn unit_is_case_insensitive_and_leading_zeros_are_fine() {
        assert_eq!(parse_range("Bytes=00-01").unwrap().items(), &[RangeItem::FromTo { first: 0, last: 1 }]);
    }

    /// The table AWS S3 answers on a 100-byte object (versitygw `GetObject_with_range`).
    #[test]
    fn aws_table_on_100_bytes() {
        let ignored = [
            "bytes=,",
            "bytes= -1",
            "bytes=--1",
            "bytes=0 -1",
            "bytes=0--1",
            "bytes=10-5",
            "bytes=abc",
            "bytes=a-z",
            "foo=0-1",
            "bytes=abc-xyz",
            "bytes=100-x",
            "bytes=102-0",
            "bytes=-",
            "bytes",
            "",
            "=0-1",
            "bytes=0-1;",
            "bytes=+1-2",
            "bytes=0x10-20",
            "bytes=1-2-3",
        ];
        for h in ignored {
            assert_eq!(parse_range(h), None, "{h:?} must be ignored");
        }
        let ok = [
            ("bytes=00-01", br(0, 1)),
            ("bytes=-1", br(99, 99)),
            ("bytes=-2", br(98, 99)),
            ("bytes=-10", br(90, 99)),
            ("bytes=-100", br(0, 99)),
            ("bytes=-101", br(0, 99)),
            ("bytes=0-0", br(0, 0)),
            ("bytes=0-99", br(0, 99)),
            ("bytes=0-100", br(0, 99)),
            ("bytes=0-999999", br(0, 99)),
            ("bytes=1-99", br(1, 99)),
            ("bytes=50-99", br(50, 99)),
            ("bytes=50-", br(50, 99)),
            ("bytes=0-", br(0, 99)),
            ("bytes=99-99", br(99, 99)),
        ];
        for (h, want) in ok {
            assert_eq!(resolve(h, 100), Some(Ok(vec![want])), "{h}");
        }
        for h in ["bytes=-0", "bytes=100-100", "bytes=100-110", "bytes=100-"] {
            assert_eq!(resolve(h, 100), Some(Err(Unsatisfiable)), "{h}");
        }
    }

    #[test]
    fn ceph_s3_tests_ranges() {
        // test_ranged_request_response_code / _skip_leading_bytes / _return_trailing_bytes
        let r = resolve("bytes=4-7", 11).unwrap().unwrap();
        assert_eq!(content_range(&r[0], 11), "bytes 4-7/11");
        let r = resolve("bytes=4-", 11).unwrap().unwrap();
        assert_eq!(content_range(&r[0], 11), "bytes 4-10/11");
        let r = resolve("bytes=-7", 11).unwrap().unwrap();
        assert_eq!(content_range(&r[0], 11), "bytes 4-10/11");
        // test_ranged_big_request_response_code
        let r = resolve("bytes=3145728-5242880", 8 * 1024 * 1024).unwrap().unwrap();
        assert_eq!(content_range(&r[0], 8388608), "bytes 3145728-5242880/8388608");
        // test_ranged_request_invalid_range / _empty_object
        assert_eq!(resolve("bytes=40-50", 11), Some(Err(Unsatisfiable)));
        assert_eq!(resolve("bytes=40-50", 0), Some(Err(Unsatisfiable)));
    }

    #[test]
    fn empty_object() {
        assert_eq!(resolve("bytes=0-", 0), Some(Err(Unsatisfiable)));
        assert_eq!(resolve("bytes=0-0", 0), Some(Err(Unsatisfiable)));
        assert_eq!(resolve("bytes=-0", 0), Some(Err(Unsatisfiable)));
        // AWS would send a plain 200 here; we send 416 so that Ok is never empty.
        assert_eq!(resolve("bytes=-5", 0), Some(Err(Unsatisfiable)));
        assert_eq!(resolve("bytes=-5,0-", 0), Some(Err(Unsatisfiable)));
        assert_eq!(unsatisfied_content_range(0), "bytes */0");
    }

    #[test]
    fn huge_numbers_saturate_instead_of_failing() {
        assert_eq!(resolve("bytes=18446744073709551615-", 100), Some(Err(Unsatisfiable)));
        assert_eq!(resolve("bytes=99999999999999999999999999-", 100), Some(Err(Unsatisfiable)));
        assert_eq!(resolve("bytes=0-99999999999999999999999999", 100), Some(Ok(vec![br(0, 99)])));
        assert_eq!(resolve("bytes=-99999999999999999999999999", 100), Some(Ok(vec![br(0, 99)])));
        assert_eq!(
            resolve("bytes=18446744073709551614-18446744073709551615", u64::MAX),
            Some(Ok(vec![br(u64::MAX - 1, u64::MAX - 1)]))
        );
        assert_eq!(resolve("bytes=-18446744073709551615", u64::MAX), Some(Ok(vec![br(0, u64::MAX - 1)])));
        // Saturated first and last compare equal: still a valid (and unsatisfiable) range.
        assert_eq!(resolve("bytes=99999999999999999999999-88888888888888888888888", 10), Some(Err(Unsatisfiable)));
    }

    #[test]
    fn limits() {
        let many = format!("bytes={}", vec!["0-0"; RANGE_COUNT_MAX].join(","));
        assert_eq!(parse_range(&many).unwrap().items().len(), RANGE_COUNT_MAX);
        let too_many = format!("bytes={}", vec!["0-0"; RANGE_COUNT_MAX + 1].join(","));
        assert_eq!(parse_range(&too_many), None);
        let long = format!("bytes=0-{}", "9".repeat(RANGE_HEADER_BYTES_MAX));
        assert_eq!(parse_range(&long), None);
        // Empty elements do not count against the limit but are bounded by the length limit.
        let commas = format!("bytes=0-0{}", ",".repeat(RANGE_HEADER_BYTES_MAX - 9));
        assert_eq!(parse_range(&commas).unwrap().items().len(), 1);
    }

    #[test]
    fn list_whitespace_and_empty_elements() {
        let s = parse_range("bytes=0-1 ,\t2-3,, ,4-5").unwrap();
        assert_eq!(s.items().len(), 3);
        assert_eq!(parse_range(" bytes=0-1 ").unwrap().items().len(), 1);
        assert_eq!(parse_range("bytes=0-1 "), Some(RangeSpec { items: vec![RangeItem::FromTo { first: 0, last: 1 }] }));
        assert_eq!(parse_range("bytes =0-1"), None);
        assert_eq!(parse_range("bytes=0-1, "), parse_range("bytes=0-1"));
        assert_eq!(parse_range("bytes=,0-1"), parse_range("bytes=0-1"));
    }

    #[test]
    fn garbage_never_panics() {
        for h in ["bytes=\u{0}-1", "bytes=１-2", "bytes=ß", "bytes==", "bytes=-\u{ffff}", "bytes=0-1\r\n", "\u{7f}"] {
            let _ = parse_range(h).map(|s| s.resolve(10));
        }
        assert_eq!(parse_range("bytes=１-2"), None);
    }

    #[test]
    fn multiple_ranges_keep_order_unless_they_overlap() {
        assert_eq!(resolve("bytes=50-59,0-9", 100), Some(Ok(vec![br(50, 59), br(0, 9)])));
        // Unsatisfiable members are dropped.
        assert_eq!(resolve("bytes=200-300,0-9", 100), Some(Ok(vec![br(0, 9)])));
        // Overlap → sorted and merged; adjacency merges too.
        assert_eq!(resolve("bytes=50-59,0-9,5-20", 100), Some(Ok(vec![br(0, 20), br(50, 59)])));
        assert_eq!(resolve("bytes=0-9,10-19", 100), Some(Ok(vec![br(0, 19)])));
        // The amplification case collapses to one range.
        let amp = format!("bytes={}", vec!["0-"; RANGE_COUNT_MAX].join(","));
        assert_eq!(resolve(&amp, 100), Some(Ok(vec![br(0, 99)])));
        assert_eq!(resolve("bytes=-10,95-", 100), Some(Ok(vec![br(90, 99)])));
    }

    /// Seeded generator of near-miss headers; checks the invariants callers rely on.
    #[test]
    fn generated_headers_keep_invariants() {
        let seed: u64 = 0x5eed_0f7e_55e7_a000;
        let mut x = seed;
        let mut next = move || {
            // xorshift64*: deterministic, no dependency.
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let atoms = [
            "0",
            "1",
            "9",
            "10",
            "99",
            "100",
            "18446744073709551615",
            "99999999999999999999",
            "-",
            ",",
            " ",
            "=",
            "a",
            "bytes",
            "",
        ];
        for case in 0..20_000 {
            let mut h = String::from(if next() % 8 == 0 { "Bytes=" } else { "bytes=" });
            // Mostly well-shaped items ("a-b", "a-", "-b"), sometimes a random atom.
            for i in 0..1 + next() % 4 {
                if i > 0 {
                    h.push_str([",", ", ", ",,"][(next() % 3) as usize]);
                }
                let mut atom = || atoms[(next() % atoms.len() as u64) as usize];
                let (a, b, c) = (atom(), atom(), atom());
                match next() % 4 {
                    0 => h.push_str(a),
                    1 => h.push_str(&format!("{a}-")),
                    2 => h.push_str(&format!("-{a}")),
                    _ => h.push_str(&format!("{b}-{c}")),
                }
            }
            let size = [0, 1, 2, 99, 100, 101, u64::MAX][(next() % 7) as usize];
            let Some(spec) = parse_range(&h) else { continue };
            assert!((1..=RANGE_COUNT_MAX).contains(&spec.items().len()), "seed {seed:#x} case {case}: {h:?}");
            if let Ok(ranges) = spec.resolve(size) {
                assert!(!ranges.is_empty(), "seed {seed:#x} case {case}: {h:?} size {size}");
                for r in &ranges {
                    assert!(r.start <= r.end_inclusive && r.end_inclusive < size, "seed {seed:#x} case {case}: {h:?}");
                }
                let total = ranges.iter().fold(0u64, |a, r| a.saturating_add(r.len()));
                assert!(ranges.len() == 1 || total <= size, "coalescing bounds the body: {h:?}");
                assert!(MultipartByteranges::new(&ranges, size, Some("a/b"), "x").is_ok() || size > u64::MAX / 2);
            }
        }
    }

    #[test]
    fn multipart_framing() {
        let data: Vec<u8> = (0..100u8).collect();
        let ranges = [br(0, 1), br(98, 99)];
        let m = MultipartByteranges::new(&ranges, 100, Some("text/plain"), "3d6b6a416f9b5").unwrap();
        assert_eq!(m.content_type(), "multipart/byteranges; boundary=3d6b6a416f9b5");
        let mut body = Vec::new();
        for p in m.parts() {
            body.extend_from_slice(&p.header);
            body.extend_from_slice(&data[p.range.start as usize..=p.range.end_inclusive as usize]);
        }
        body.extend_from_slice(m.closing_delimiter());
        let mut want = Vec::new();
        want.extend_from_slice(b"--3d6b6a416f9b5\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/100\r\n\r\n");
        want.extend_from_slice(&[0, 1]);
        want.extend_from_slice(
            b"\r\n--3d6b6a416f9b5\r\nContent-Type: text/plain\r\nContent-Range: bytes 98-99/100\r\n\r\n",
        );
        want.extend_from_slice(&[98, 99]);
        want.extend_from_slice(b"\r\n--3d6b6a416f9b5--\r\n");
        assert_eq!(body, want);
        assert_eq!(m.total_len(), want.len() as u64);

        let no_ct = MultipartByteranges::new(&[br(5, 5)], 10, None, "b").unwrap();
        assert_eq!(no_ct.parts()[0].header, b"--b\r\nContent-Range: bytes 5-5/10\r\n\r\n");
    }

    #[test]
    fn multipart_rejects_bad_inputs() {
        let r = [br(0, 0)];
        assert_eq!(MultipartByteranges::new(&[], 1, None, "b"), Err(MultipartError::NoRanges));
        for b in ["", "has space", "crlf\r\n", &"x".repeat(MULTIPART_BOUNDARY_BYTES_MAX + 1), "quote\""] {
            assert_eq!(MultipartByteranges::new(&r, 1, None, b), Err(MultipartError::InvalidBoundary), "{b:?}");
        }
        assert!(MultipartByteranges::new(&r, 1, None, &"x".repeat(MULTIPART_BOUNDARY_BYTES_MAX)).is_ok());
        assert_eq!(
            MultipartByteranges::new(&r, 1, Some("text/plain\r\nX-Evil: 1"), "b"),
            Err(MultipartError::InvalidContentType)
        );
        assert!(matches!(
            MultipartByteranges::new(&[br(0, 1)], 1, None, "b"),
            Err(MultipartError::RangeOutOfBounds { .. })
        ));
        assert!(matches!(
            MultipartByteranges::new(&[br(2, 1)], 9, None, "b"),
            Err(MultipartError::RangeOutOfBounds { .. })
        ));
        let whole = [br(0, u64::MAX - 1), br(0, u64::MAX - 1)];
        assert_eq!(MultipartByteranges::new(&whole, u64::MAX, None, "b"), Err(MultipartError::LengthOverflow));
    }
}
