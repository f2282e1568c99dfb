//! Conditional requests (RFC 9110 §13) as S3 evaluates them: GET/HEAD preconditions,
//! `If-Range`, conditional PUT (`If-None-Match: *`, `If-Match`), and CopyObject's
//! `x-amz-copy-source-if-*` headers.
//!
//! Pure code, no IO: inputs are raw header strings plus the object's ETag and Last-Modified.
//!
//! # Behaviour and where it comes from
//! - **Order** is RFC 9110 §13.2.2, which is also what S3 does (ceph/s3-tests
//!   `test_get_object_if*`, and versitygw's `GetObject_conditional_reads`, a 100-row truth
//!   table checked against AWS, reproduced in the tests below):
//!   1. `If-Match` present and false → 412. Otherwise, if `If-Match` is absent,
//!      `If-Unmodified-Since` false → 412.
//!   2. `If-None-Match` present and false → 304 (GET/HEAD). Otherwise, if `If-None-Match` is
//!      absent, `If-Modified-Since` false → 304.
//!
//!   Hence S3's documented pairs: If-Match true + If-Unmodified-Since false → 200;
//!   If-None-Match false + If-Modified-Since true → 304.
//! - **ETag comparison ignores quotes.** S3 clients routinely send ETags without quotes
//!   (`IfMatch=etag.strip('"')` in both test suites) and S3 matches them. Quoted tags follow
//!   RFC 9110 §8.8.3: `If-Match` uses the strong comparison (a `W/` tag never matches; S3
//!   ETags are always strong), `If-None-Match` the weak one (`W/"x"` matches `"x"`). Lists
//!   (`"a", "b"`) and `*` work as in the RFC; a quoted tag may contain commas.
//! - **Dates**: IMF-fixdate, RFC 850 and asctime, as `httpdate` parses them. An unparsable
//!   date is ignored (RFC 9110 §13.1.3/§13.1.4). An `If-Modified-Since` later than the
//!   server's clock is ignored too (RFC 9110 §13.1.3), which is why evaluation takes `now_s`;
//!   AWS copies despite a future `x-amz-copy-source-if-modified-since`, consistent with this.
//!   Comparisons are in whole seconds, the resolution of HTTP dates.
//! - **Conditional PUT** (PutObject, CompleteMultipartUpload): `If-Match` against a missing
//!   object is `404 NoSuchKey`, not 412 (AWS, and ceph/s3-tests `test_put_object_if_match`);
//!   a wrong ETag is 412. `If-None-Match: *` against an existing object is 412. AWS accepts
//!   only `*` in a PUT's `If-None-Match` (501 otherwise); we also accept ETag lists with RFC
//!   semantics, as RGW does, since that is a strict superset and ceph/s3-tests expects it.
//! - **CopyObject source conditions** evaluate like GET but every failure is 412 (AWS
//!   CopyObject docs; ceph `test_copy_object_ifnonematch_good`).
//! - **Limits**: an ETag list longer than [`ETAG_LIST_BYTES_MAX`] or with more than
//!   [`ETAG_LIST_COUNT_MAX`] tags is treated as matching nothing. For `If-Match` that fails
//!   (safe: no read or write happens); for a GET's `If-None-Match` it proceeds (a full read is
//!   harmless); for a PUT's `If-None-Match` it fails, because a write must never proceed on a
//!   condition we did not evaluate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Longest `If-Match`/`If-None-Match` value we evaluate.
pub const ETAG_LIST_BYTES_MAX: usize = 8 * 1024;
/// Most entity tags in one `If-Match`/`If-None-Match` list.
pub const ETAG_LIST_COUNT_MAX: usize = 64;

/// Outcome of GET/HEAD precondition evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Serve the object (200/206).
    Proceed,
    /// 304 Not Modified (S3 sends ETag and Last-Modified, no body).
    NotModified,
    /// 412 `PreconditionFailed`.
    PreconditionFailed,
}

/// A precondition failed: 412 `PreconditionFailed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("At least one of the pre-conditions you specified did not hold")]
pub struct PreconditionFailed;

/// Why a conditional PUT must not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PutFailed {
    /// 412 `PreconditionFailed`.
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// 404 `NoSuchKey`: `If-Match` on an object that does not exist.
    #[error("The specified key does not exist.")]
    NoSuchKey,
}

/// Read preconditions as raw header values (`None` = header absent). For CopyObject, fill it
/// from the `x-amz-copy-source-if-*` headers ([`ReadPreconditions::copy_source_from_headers`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadPreconditions<'a> {
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub if_modified_since: Option<&'a str>,
    pub if_unmodified_since: Option<&'a str>,
}

impl<'a> ReadPreconditions<'a> {
    /// `If-Match`, `If-None-Match`, `If-Modified-Since`, `If-Unmodified-Since`.
    pub fn from_headers(headers: &'a http::HeaderMap) -> Self {
        Self {
            if_match: header_str(headers, "if-match"),
            if_none_match: header_str(headers, "if-none-match"),
            if_modified_since: header_str(headers, "if-modified-since"),
            if_unmodified_since: header_str(headers, "if-unmodified-since"),
        }
    }

    /// The `x-amz-copy-source-if-*` headers of CopyObject / UploadPartCopy.
    pub fn copy_source_from_headers(headers: &'a http::HeaderMap) -> Self {
        Self {
            if_match: header_str(headers, "x-amz-copy-source-if-match"),
            if_none_match: header_str(headers, "x-amz-copy-source-if-none-match"),
            if_modified_since: header_str(headers, "x-amz-copy-source-if-modified-since"),
            if_unmodified_since: header_str(headers, "x-amz-copy-source-if-unmodified-since"),
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// GET/HEAD evaluation. `etag` as stored (quoted or not), `last_modified_s` and `now_s`
    /// in Unix seconds.
    pub fn evaluate(&self, etag: &str, last_modified_s: u64, now_s: u64) -> Decision {
        // Step 1: If-Match, or else If-Unmodified-Since.
        if let Some(v) = self.if_match {
            if !EtagList::parse(v).matches_strong(etag) {
                return Decision::PreconditionFailed;
            }
        } else if let Some(ius) = self.if_unmodified_since.and_then(parse_http_date) {
            if last_modified_s > ius {
                return Decision::PreconditionFailed;
            }
        }
        // Step 2: If-None-Match, or else If-Modified-Since.
        if let Some(v) = self.if_none_match {
            if EtagList::parse(v).matches_weak(etag) {
                return Decision::NotModified;
            }
        } else if let Some(ims) = self.if_modified_since.and_then(parse_http_date) {
            if ims <= now_s && last_modified_s <= ims {
                return Decision::NotModified;
            }
        }
        Decision::Proceed
    }

    /// CopyObject source evaluation: as [`Self::evaluate`], but every failure is a 412.
    pub fn evaluate_copy_source(&self, etag: &str, last_modified_s: u64, now_s: u64) -> Result<(), PreconditionFailed> {
        match self.evaluate(etag, last_modified_s, now_s) {
            Decision::Proceed => Ok(()),
            Decision::NotModified | Decision::PreconditionFailed => Err(PreconditionFailed),
        }
    }
}

/// Stands in for a header value that is not visible ASCII: it parses as an invalid ETag list
/// (If-Match fails, a PUT's If-None-Match fails, a GET's If-None-Match is inert) and as no
/// date (ignored).
const UNPARSABLE_HEADER: &str = "\u{0}";

/// First value of a header. Later values of a header split over several lines are not read:
/// for If-Match that can only fail a request, for If-None-Match only send a full body.
fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|v| v.to_str().unwrap_or(UNPARSABLE_HEADER))
}

/// `If-Range` (RFC 9110 §13.1.5): true when the Range header may be honoured, false when the
/// whole object must be sent with 200. An entity tag must match strongly; a date must equal
/// Last-Modified exactly. Unquoted values that are not dates are taken as ETags (S3 clients
/// strip quotes).
pub fn if_range_allows(if_range: &str, etag: &str, last_modified_s: u64) -> bool {
    let v = if_range.trim();
    if let Some(date) = parse_http_date(v) {
        return date == last_modified_s;
    }
    if v.len() > ETAG_LIST_BYTES_MAX {
        return false;
    }
    match parse_one_tag(v) {
        Some((tag, rest)) if rest.trim().is_empty() => !tag.weak && tag.opaque == unquote(etag),
        _ => false,
    }
}

/// Conditional PUT (PutObject, CompleteMultipartUpload, CopyObject destination).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PutCondition {
    if_match: Option<OwnedEtagList>,
    if_none_match: Option<OwnedEtagList>,
}

/// Build from raw `If-Match` / `If-None-Match` values. Parsed eagerly so the check can run
/// later, at commit time, without the request headers.
pub fn put_precondition(if_match: Option<&str>, if_none_match: Option<&str>) -> PutCondition {
    PutCondition {
        if_match: if_match.map(OwnedEtagList::parse),
        if_none_match: if_none_match.map(OwnedEtagList::parse),
    }
}

impl PutCondition {
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        put_precondition(header_str(headers, "if-match"), header_str(headers, "if-none-match"))
    }

    /// True when the request carried no condition (the common case: skip the lookup).
    pub fn is_unconditional(&self) -> bool {
        self.if_match.is_none() && self.if_none_match.is_none()
    }

    /// `current`: the ETag of the object the write would replace, `None` if there is none.
    /// Must be called under the same lock/sequence point as the commit, or the check races.
    pub fn check(&self, current: Option<&str>) -> Result<(), PutFailed> {
        if let Some(list) = &self.if_match {
            let Some(etag) = current else { return Err(PutFailed::NoSuchKey) };
            if !list.as_list().matches_strong(etag) {
                return Err(PutFailed::PreconditionFailed);
            }
        }
        if let Some(list) = &self.if_none_match {
            let list = list.as_list();
            if list == EtagList::Invalid || current.is_some_and(|etag| list.matches_weak(etag)) {
                return Err(PutFailed::PreconditionFailed);
            }
        }
        Ok(())
    }
}

/// Parse an HTTP date (IMF-fixdate, RFC 850, asctime) into Unix seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s.trim()).ok()?;
    t.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs())
}

/// Format Unix seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), for
/// `Last-Modified` and friends. `httpdate` covers years up to 9999; later times are clamped.
pub fn fmt_http_date(unix_s: u64) -> String {
    // 253402300799 = 9999-12-31T23:59:59Z, the last instant httpdate can format.
    const HTTP_DATE_SECONDS_MAX: u64 = 253_402_300_799;
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(unix_s.min(HTTP_DATE_SECONDS_MAX)))
}

/// Format a `SystemTime` as an IMF-fixdate; times before 1970 print as the epoch.
pub fn fmt_system_time(t: SystemTime) -> String {
    fmt_http_date(t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

fn unquote(etag: &str) -> &str {
    let e = etag.trim();
    e.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(e)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag<'a> {
    weak: bool,
    /// Without quotes.
    opaque: &'a str,
}

/// A parsed `If-Match`/`If-None-Match` value, borrowing from the header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EtagList<'a> {
    Any,
    Tags(Vec<Tag<'a>>),
    /// Over the limits or malformed: matches nothing.
    Invalid,
}

impl<'a> EtagList<'a> {
    fn parse(v: &'a str) -> Self {
        if v.len() > ETAG_LIST_BYTES_MAX {
            return Self::Invalid;
        }
        let mut rest = v;
        let mut tags = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', '\t', ',']);
            if rest.is_empty() {
                break;
            }
            if tags.len() == ETAG_LIST_COUNT_MAX {
                return Self::Invalid;
            }
            let Some((tag, after)) = parse_one_tag(rest) else { return Self::Invalid };
            // "*" is only meaningful alone, but anywhere in a list it can only mean "any".
            if !tag.weak && tag.opaque == "*" && !rest.starts_with('"') {
                return Self::Any;
            }
            tags.push(tag);
            let after = after.trim_start_matches([' ', '\t']);
            if !(after.is_empty() || after.starts_with(',')) {
                return Self::Invalid;
            }
            rest = after;
        }
        Self::Tags(tags)
    }

    /// Strong comparison (If-Match, If-Range): weak tags never match.
    fn matches_strong(&self, etag: &str) -> bool {
        let etag = unquote(etag);
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| !t.weak && t.opaque == etag),
            Self::Invalid => false,
        }
    }

    /// Weak comparison (If-None-Match): `W/"x"` matches `"x"`.
    fn matches_weak(&self, etag: &str) -> bool {
        let etag = unquote(etag);
        match self {
            Self::Any => true,
            Self::Tags(tags) => tags.iter().any(|t| t.opaque == etag),
            Self::Invalid => false,
        }
    }
}

/// One entity tag at the start of `s`: `W/"..."`, `"..."`, or (S3 leniency) a bare token up
/// to the next comma or whitespace. Returns the tag and the unparsed rest.
fn parse_one_tag(s: &str) -> Option<(Tag<'_>, &str)> {
    let (weak, s) = match s.strip_prefix("W/") {
        Some(r) => (true, r),
        None => (false, s),
    };
    if let Some(quoted) = s.strip_prefix('"') {
        let end = quoted.find('"')?;
        let opaque = &quoted[..end];
        // etagc excludes DQUOTE, controls and space (RFC 9110 §8.8.3).
        if opaque.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return None;
        }
        return Some((Tag { weak, opaque }, &quoted[end + 1..]));
    }
    if weak {
        // W/ must be followed by a quoted string.
        return None;
    }
    let end = s.find([',', ' ', '\t']).unwrap_or(s.len());
    let opaque = &s[..end];
    if opaque.is_empty() || opaque.bytes().any(|b| b.is_ascii_control() || b == b'"') {
        return None;
    }
    Some((Tag { weak: false, opaque }, &s[end..]))
}

/// Owned form of [`EtagList`], for [`PutCondition`], which outlives the request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum OwnedEtagList {
    Any,
    Tags(Vec<(bool, String)>),
    Invalid,
}

impl OwnedEtagList {
    fn parse(v: &str) -> Self {
        match EtagList::parse(v) {
            EtagList::Any => Self::Any,
            EtagList::Invalid => Self::Invalid,
            EtagList::Tags(t) => Self::Tags(t.into_iter().map(|t| (t.weak, t.opaque.to_owned())).collect()),
        }
    }

    fn as_list(&self) -> EtagList<'_> {
        match self {
            Self::Any => EtagList::Any,
            Self::Invalid => EtagList::Invalid,
            Self::Tags(t) => EtagList::Tags(t.iter().map(|(weak, o)| Tag { weak: *weak, opaque: o }).collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETAG: &str = "\"37b51d194a7513e45b56f6524f2d51f2\"";
    const ETAG_BARE: &str = "37b51d194a7513e45b56f6524f2d51f2";
    // Object written at LM; BEFORE is three days earlier, AFTER one second later, NOW later.
    const LM: u64 = 1_700_000_000;
    const BEFORE: u64 = LM - 3 * 86_400;
    const AFTER: u64 = LM + 1;
    const NOW: u64 = LM + 2;

    fn date(s: u64) -> String {
        fmt_http_date(s)
    }

    fn eval(im: Option<&str>, inm: Option<&str>, ims: Option<u64>, ius: Option<u64>) -> Decision {
        let ims = ims.map(date);
        let ius = ius.map(date);
        let p = ReadPreconditions {
            if_match: im,
            if_none_match: inm,
            if_modified_since: ims.as_deref(),
            if_unmodified_since: ius.as_deref(),
        };
        p.evaluate(ETAG, LM, NOW)
    }

    /// versitygw `GetObject_conditional_reads`: each row is (If-Match, If-None-Match) crossed
    /// with every (If-Modified-Since, If-Unmodified-Since) in the order below.
    #[test]
    fn aws_truth_table() {
        use Decision::{NotModified as M, PreconditionFailed as F, Proceed as P};
        let dates: [(Option<u64>, Option<u64>); 9] = [
            (Some(BEFORE), Some(BEFORE)),
            (Some(BEFORE), Some(AFTER)),
            (Some(BEFORE), None),
            (Some(AFTER), Some(BEFORE)),
            (Some(AFTER), Some(AFTER)),
            (Some(AFTER), None),
            (None, Some(BEFORE)),
            (None, Some(AFTER)),
            (None, None),
        ];
        let bad = Some("invalid_etag");
        let rows: [(Option<&str>, Option<&str>, [Decision; 9]); 11] = [
            (bad, bad, [F; 9]),
            (bad, Some(ETAG), [F; 9]),
            (bad, None, [F; 9]),
            (Some(ETAG), bad, [P; 9]),
            (Some(ETAG), Some(ETAG), [M; 9]),
            (Some(ETAG), None, [P, P, P, M, M, M, P, P, P]),
            (None, bad, [F, P, P, F, P, P, F, P, P]),
            (None, Some(ETAG), [F, M, M, F, M, M, F, M, M]),
            (None, None, [F, P, P, F, M, M, F, P, P]),
            (Some(ETAG_BARE), Some(ETAG_BARE), [M; 9]),
            (None, Some(ETAG_BARE), [F, M, M, F, M, M, F, M, M]),
        ];
        for (im, inm, want) in rows {
            for ((ims, ius), want) in dates.iter().zip(want) {
                assert_eq!(eval(im, inm, *ims, *ius), want, "im={im:?} inm={inm:?} ims={ims:?} ius={ius:?}");
            }
        }
        // Asterisk rows.
        assert_eq!(eval(Some("*"), None, None, None), P);
        assert_eq!(eval(Some("*"), None, Some(AFTER), None), M);
        assert_eq!(eval(Some("*"), bad, None, None), P);
        assert_eq!(eval(Some("*"), Some(ETAG), None, None), M);
        assert_eq!(eval(Some("*"), Some("*"), None, None), M);
        assert_eq!(eval(Some("*"), Some("*"), None, Some(BEFORE)), M);
        assert_eq!(eval(None, Some("*"), None, None), M);
        assert_eq!(eval(None, Some("*"), Some(BEFORE), None), M);
        assert_eq!(eval(None, Some("*"), None, Some(AFTER)), M);
        assert_eq!(eval(None, Some("*"), None, Some(BEFORE)), F);
        assert_eq!(eval(bad, Some("*"), None, None), F);
    }

    #[test]
    fn ceph_s3_tests_get() {
        assert_eq!(eval(Some(ETAG), None, None, None), Decision::Proceed);
        assert_eq!(eval(Some("\"ABCORZ\""), None, None, None), Decision::PreconditionFailed);
        assert_eq!(eval(None, Some(ETAG), None, None), Decision::NotModified);
        assert_eq!(eval(None, Some("ABCORZ"), None, None), Decision::Proceed);
        let p = |ims: Option<&str>, ius: Option<&str>| {
            ReadPreconditions { if_modified_since: ims, if_unmodified_since: ius, ..Default::default() }
                .evaluate(ETAG, LM, NOW)
        };
        assert_eq!(p(Some("Sat, 29 Oct 1994 19:43:31 GMT"), None), Decision::Proceed);
        assert_eq!(p(Some(&date(LM + 1)), None), Decision::NotModified);
        assert_eq!(p(None, Some("Sat, 29 Oct 1994 19:43:31 GMT")), Decision::PreconditionFailed);
        assert_eq!(p(None, Some("Fri, 29 Oct 2100 19:43:31 GMT")), Decision::Proceed);
    }

    #[test]
    fn date_edges() {
        let p = |ims: Option<&str>, ius: Option<&str>| {
            ReadPreconditions { if_modified_since: ims, if_unmodified_since: ius, ..Default::default() }
                .evaluate(ETAG, LM, NOW)
        };
        // Equal seconds: not modified since, and unmodified since.
        assert_eq!(p(Some(&date(LM)), None), Decision::NotModified);
        assert_eq!(p(None, Some(&date(LM))), Decision::Proceed);
        assert_eq!(p(Some(&date(LM - 1)), None), Decision::Proceed);
        assert_eq!(p(None, Some(&date(LM - 1))), Decision::PreconditionFailed);
        // A future If-Modified-Since is invalid and ignored.
        assert_eq!(p(Some(&date(NOW + 1)), None), Decision::Proceed);
        // Garbage dates are ignored.
        for g in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "99999999999999999999",
            "\u{0}",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(p(Some(g), Some(g)), Decision::Proceed, "{g:?}");
        }
        // The three formats httpdate accepts.
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784111777));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), Some(784111777));
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), Some(784111777));
        assert_eq!(fmt_http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fmt_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(fmt_http_date(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(fmt_system_time(UNIX_EPOCH - Duration::from_secs(5)), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn etag_lists() {
        let m = |v: &str, e: &str| EtagList::parse(v).matches_strong(e);
        let w = |v: &str, e: &str| EtagList::parse(v).matches_weak(e);
        assert!(m("\"a\", \"b\"", "\"b\""));
        assert!(m("\"a\",\"b\"", "b"));
        assert!(m("a, b", "\"b\""));
        assert!(!m("\"a\", \"b\"", "\"c\""));
        assert!(m("\"x,y\", \"z\"", "\"x,y\""));
        assert!(m("*", "\"anything\""));
        assert!(m("\"a\", *", "\"q\""));
        assert!(m(" \"abc-3\" ", "\"abc-3\""));
        // Strong vs weak.
        assert!(!m("W/\"a\"", "\"a\""));
        assert!(w("W/\"a\"", "\"a\""));
        assert!(w("\"b\", W/\"a\"", "a"));
        // A quoted "*" is an ordinary tag.
        assert!(!m("\"*\"", "\"a\""));
        // Case-sensitive, octet comparison.
        assert!(!m("\"ABC\"", "\"abc\""));
        // Malformed → matches nothing.
        for bad in ["\"unterminated", "W/a", "\"a\" junk", "\"a b\"", "a\"b", "\"a\"\"b\""] {
            assert!(!m(bad, "\"a\"") && !w(bad, "\"a\""), "{bad:?}");
        }
        // Empty lists match nothing.
        assert!(!m("", "\"a\"") && !m(" , ,", "\"a\""));
        // Limits.
        let many = vec!["\"x\""; ETAG_LIST_COUNT_MAX].join(",") + ",\"a\"";
        assert_eq!(EtagList::parse(&many), EtagList::Invalid);
        let ok = vec!["\"x\""; ETAG_LIST_COUNT_MAX - 1].join(",") + ",\"a\"";
        assert!(m(&ok, "a"));
        let long = format!("\"{}\"", "a".repeat(ETAG_LIST_BYTES_MAX));
        assert!(!m(&long, &long));
    }

    #[test]
    fn if_range() {
        assert!(if_range_allows(ETAG, ETAG, LM));
        assert!(if_range_allows(ETAG_BARE, ETAG, LM));
        assert!(!if_range_allows("\"other\"", ETAG, LM));
        assert!(!if_range_allows(&format!("W/{ETAG}"), ETAG, LM));
        assert!(if_range_allows(&date(LM), ETAG, LM));
        assert!(!if_range_allows(&date(LM - 1), ETAG, LM));
        assert!(!if_range_allows(&date(LM + 1), ETAG, LM));
        assert!(!if_range_allows("", ETAG, LM));
        assert!(!if_range_allows("\"a\", \"b\"", "\"a\"", LM));
        assert!(!if_range_allows("*", ETAG, LM));
    }

    /// ceph/s3-tests `test_put_object_if_match` and the older `test_put_object_if*` tests.
    #[test]
    fn put_conditions() {
        let c = |im: Option<&str>, inm: Option<&str>, cur: Option<&str>| put_precondition(im, inm).check(cur);
        let pf = Err(PutFailed::PreconditionFailed);
        assert!(put_precondition(None, None).is_unconditional());
        assert_eq!(c(None, None, None), Ok(()));
        assert_eq!(c(None, Some("*"), None), Ok(()));
        assert_eq!(c(None, Some("*"), Some(ETAG)), pf);
        assert_eq!(c(None, Some(ETAG), Some(ETAG)), pf);
        assert_eq!(c(None, Some(ETAG_BARE), Some(ETAG)), pf);
        assert_eq!(c(None, Some("badetag"), Some(ETAG)), Ok(()));
        assert_eq!(c(None, Some(ETAG), None), Ok(()));
        assert_eq!(c(Some(ETAG), None, Some(ETAG)), Ok(()));
        assert_eq!(c(Some(ETAG_BARE), None, Some(ETAG)), Ok(()));
        assert_eq!(c(Some("*"), None, Some(ETAG)), Ok(()));
        assert_eq!(c(Some("\"ABCORZ\""), None, Some(ETAG)), pf);
        assert_eq!(c(Some("badetag"), None, Some(ETAG)), pf);
        assert_eq!(c(Some("*"), None, None), Err(PutFailed::NoSuchKey));
        assert_eq!(c(Some("badetag"), None, None), Err(PutFailed::NoSuchKey));
        // Both headers: both must hold.
        assert_eq!(c(Some(ETAG), Some("*"), Some(ETAG)), pf);
        assert_eq!(c(Some(ETAG), Some("\"other\""), Some(ETAG)), Ok(()));
        // An unevaluable If-None-Match never lets a write through.
        let long = "x".repeat(ETAG_LIST_BYTES_MAX + 1);
        assert_eq!(c(None, Some(&long), None), pf);
        assert_eq!(c(None, Some("\"unterminated"), Some(ETAG)), pf);
        assert_eq!(c(Some(&long), None, Some(ETAG)), pf);
    }

    #[test]
    fn copy_source_conditions_fail_with_412() {
        let p = ReadPreconditions { if_none_match: Some(ETAG), ..Default::default() };
        assert_eq!(p.evaluate_copy_source(ETAG, LM, NOW), Err(PreconditionFailed));
        let p = ReadPreconditions { if_match: Some("ABCORZ"), ..Default::default() };
        assert_eq!(p.evaluate_copy_source(ETAG, LM, NOW), Err(PreconditionFailed));
        let p = ReadPreconditions { if_none_match: Some("ABCORZ"), ..Default::default() };
        assert_eq!(p.evaluate_copy_source(ETAG, LM, NOW), Ok(()));
        let d = date(AFTER);
        let p = ReadPreconditions { if_modified_since: Some(&d), ..Default::default() };
        assert_eq!(p.evaluate_copy_source(ETAG, LM, NOW), Err(PreconditionFailed));
    }

    #[test]
    fn from_headers() {
        let mut h = http::HeaderMap::new();
        assert!(ReadPreconditions::from_headers(&h).is_empty());
        assert!(PutCondition::from_headers(&h).is_unconditional());
        h.insert("if-match", http::HeaderValue::from_static("\"a\""));
        h.insert("x-amz-copy-source-if-none-match", http::HeaderValue::from_static("\"b\""));
        h.insert("if-none-match", http::HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        let r = ReadPreconditions::from_headers(&h);
        assert_eq!(r.if_match, Some("\"a\""));
        assert_eq!(r.if_none_match, Some(UNPARSABLE_HEADER));
        let c = ReadPreconditions::copy_source_from_headers(&h);
        assert_eq!(c, ReadPreconditions { if_none_match: Some("\"b\""), ..Default::default() });
        // Unreadable If-None-Match: inert for GET, fatal for PUT.
        assert_eq!(r.if_match, Some("\"a\""));
        assert_eq!(ReadPreconditions { if_match: None, ..r }.evaluate(ETAG, LM, NOW), Decision::Proceed);
        let mut only_inm = http::HeaderMap::new();
        only_inm.insert("if-none-match", http::HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert_eq!(PutCondition::from_headers(&only_inm).check(None), Err(PutFailed::PreconditionFailed));
        // Unreadable If-Match fails rather than being ignored.
        let mut h = http::HeaderMap::new();
        h.insert("if-match", http::HeaderValue::from_bytes(b"\"\xff\"").unwrap());
        assert_eq!(ReadPreconditions::from_headers(&h).evaluate("\"\u{ff}\"", LM, NOW), Decision::PreconditionFailed);
    }
}
