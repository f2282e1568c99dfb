//! S3 XML bodies: response writers and request parsers. Pure code, no IO.
//!
//! # Writers
//! Each writer takes a plain input struct (owned strings, documented fields)
//! and returns the whole document as a `String`, starting with the XML
//! declaration and with the `http://s3.amazonaws.com/doc/2006-03-01/`
//! namespace on the root element, as S3 sends them. They are hand-written
//! rather than driven by quick-xml's `Writer`: the shapes are fixed and small,
//! a `String` with one up-front capacity is all the state needed, and doing
//! the escaping ourselves lets us handle what `quick_xml::escape` does not
//! (control characters, below).
//!
//! Element order follows S3's own responses (e.g. `Name, Prefix, KeyCount,
//! MaxKeys, IsTruncated, Contents...`); SDKs do not depend on order, but diffing
//! against S3 is easier. Timestamps are ISO 8601 UTC with milliseconds
//! (`2009-10-12T17:50:30.000Z`), formatted here from unix milliseconds.
//!
//! ## Keys that XML 1.0 cannot carry
//! S3 keys are any UTF-8 up to 1024 bytes, so they may hold control characters
//! that XML 1.0 forbids even as character references (U+0000..U+0008, U+000B,
//! U+000C, U+000E..U+001F, U+FFFE, U+FFFF). We write every C0 control as a
//! character reference (`&#x1;`; `&#9;`, `&#10;`, `&#13;` for tab, LF, CR,
//! which XML 1.0 allows and which keeps CR from being folded into LF by line-end
//! normalization). That is lossless and what lenient parsers (quick-xml, most
//! SDKs' readers) accept, but strict XML 1.0 parsers (expat, Java) reject the
//! whole document; replacing the characters (Go's encoding/xml writes U+FFFD)
//! would instead hand the client a key that does not exist. S3's documented
//! answer for such keys is `encoding-type=url`, which the list writers support
//! and which botocore requests by default. U+0000 is the one character no
//! parser accepts in any form; the gateway should refuse it in keys at write
//! time.
//!
//! ## `encoding-type=url`
//! With [`KeyEncoding::Url`], the list writers URL-encode exactly the fields S3
//! does: `Key`, `Prefix`, `Delimiter`, `StartAfter` (v2), `Marker` and
//! `NextMarker` (v1), `KeyMarker` and `NextKeyMarker` (uploads), and
//! `CommonPrefixes/Prefix`. Opaque tokens (`ContinuationToken`, `UploadId`)
//! are not encoded. The encoding is form-style, as S3 (measured) and MinIO
//! (`s3URLEncode`) write it: UTF-8 bytes percent-encoded with upper-case hex,
//! except `A-Z a-z 0-9 - _ . / *`, and space as `+` (so a literal `+` is
//! `%2B`).
//!
//! # Parsers
//! `CompleteMultipartUpload`, `Delete` and `CreateBucketConfiguration` bodies
//! are read with quick-xml's pull reader through one small walker that tracks
//! the element path and hands each element's text to the parser when it
//! closes. So parsers are order-independent, ignore namespaces (local names
//! only) and unknown elements (newer SDKs add fields), and allocate nothing per
//! element beyond what they keep. Every parser has a body byte limit and a
//! count limit; `<!DOCTYPE>` is refused, so no entity but the five predefined
//! ones and character references can appear. Any failure is an [`XmlError`],
//! which `S3Error::from` turns into `MalformedXML`, as S3 answers.

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::error::{S3Error, S3ErrorCode};

/// The namespace S3 puts on its response roots.
pub const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";
const XML_DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

pub const STORAGE_CLASS_STANDARD: &str = "STANDARD";

/// Parts in one CompleteMultipartUpload, and the highest part number (S3: 1..=10000).
pub const COMPLETE_MULTIPART_PARTS_MAX: usize = 10_000;
pub const PART_NUMBER_MAX: u32 = 10_000;
/// A CompleteMultipartUpload body. A part with an ETag and all five checksums,
/// pretty-printed, is about 450 bytes; 10 000 of them fit with room for
/// namespaces and indentation.
pub const COMPLETE_MULTIPART_BODY_BYTES_MAX: usize = 8 << 20;
/// Keys in one DeleteObjects request (S3: 1000; more is MalformedXML).
pub const DELETE_OBJECTS_COUNT_MAX: usize = 1000;
/// A DeleteObjects body: 1000 objects of 1024-byte keys with heavy escaping
/// (`&amp;` is 5 bytes per key byte) and a version id each.
pub const DELETE_OBJECTS_BODY_BYTES_MAX: usize = 6 << 20;
/// A CreateBucketConfiguration body (a region name and a few optional fields).
pub const CREATE_BUCKET_BODY_BYTES_MAX: usize = 64 << 10;
/// Element nesting in any request body; ours are three deep, unknown
/// extensions may add a few levels.
pub const XML_DEPTH_MAX: usize = 16;

const _: () = assert!(COMPLETE_MULTIPART_PARTS_MAX == PART_NUMBER_MAX as usize);
// The smallest well-formed part, `<Part><PartNumber>1</PartNumber><ETag>"x"</ETag></Part>`, is
// 50 bytes: the byte limit must not be what stops a valid maximal request.
const _: () = assert!(COMPLETE_MULTIPART_BODY_BYTES_MAX >= COMPLETE_MULTIPART_PARTS_MAX * 450);
const _: () = assert!(DELETE_OBJECTS_BODY_BYTES_MAX >= DELETE_OBJECTS_COUNT_MAX * (5 * 1024 + 256));

// ---------------------------------------------------------------------------
// Escaping, URL encoding, timestamps
// ---------------------------------------------------------------------------

/// Appends `s` escaped for XML element content: the five predefined entities,
/// and every C0 control character as a character reference (see module docs).
pub fn escape_text(out: &mut String, s: &str) {
    let mut clean_from = 0;
    for (i, c) in s.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&apos;",
            '\t' => "&#9;",
            '\n' => "&#10;",
            '\r' => "&#13;",
            c if c < ' ' || c == '\u{FFFE}' || c == '\u{FFFF}' => "",
            _ => continue,
        };
        out.push_str(&s[clean_from..i]);
        if replacement.is_empty() {
            let _ = write!(out, "&#x{:X};", u32::from(c));
        } else {
            out.push_str(replacement);
        }
        clean_from = i + c.len_utf8();
    }
    out.push_str(&s[clean_from..]);
}

/// URL-encodes a key or prefix the way S3 does for `encoding-type=url`.
pub fn url_encode_name(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'/' | b'*' => out.push(char::from(b)),
            // `%20`, as RGW and the ceph suite expect (botocore unquotes either).
            _ => {
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xF)]));
            }
        }
    }
    out
}

/// Formats unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn format_timestamp_ms(unix_ms: i64) -> String {
    let mut out = String::with_capacity(24);
    push_timestamp(&mut out, unix_ms);
    out
}

fn push_timestamp(out: &mut String, unix_ms: i64) {
    const MS_PER_DAY: i64 = 86_400_000;
    let days = unix_ms.div_euclid(MS_PER_DAY);
    let ms_of_day = unix_ms.rem_euclid(MS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute) = (ms_of_day / 3_600_000, ms_of_day / 60_000 % 60);
    let (second, milli) = (ms_of_day / 1000 % 60, ms_of_day % 1000);
    // ISO 8601 wants a sign outside 0000..=9999; timestamps come from our clock, so this is only for completeness.
    if year < 0 {
        out.push('-');
    }
    let _ = write!(out, "{:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z", year.unsigned_abs());
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month 1..=12, day 1..=31).
/// Howard Hinnant's `civil_from_days`: eras of 400 years (146 097 days), with
/// the year starting on March 1 so the leap day is the last day of the year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // shift the epoch to 0000-03-01
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097); // [0, 146096]
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_index = (5 * day_of_year + 2) / 153; // [0, 11], March = 0
    let day = day_of_year - (153 * month_index + 2) / 5 + 1; // [1, 31]
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 }; // [1, 12]
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    // Both are in range by construction; the casts cannot truncate.
    (year, month as u32, day as u32)
}

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------

/// How list responses write names: as-is, or URL-encoded (`encoding-type=url`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyEncoding {
    #[default]
    Plain,
    Url,
}

impl KeyEncoding {
    /// From the `encoding-type` query parameter. Absent or empty is plain (as
    /// MinIO); `url` in any case is URL; anything else is InvalidArgument.
    pub fn from_query(value: Option<&str>) -> Result<KeyEncoding, S3Error> {
        match value {
            None | Some("") => Ok(KeyEncoding::Plain),
            Some(v) if v.eq_ignore_ascii_case("url") => Ok(KeyEncoding::Url),
            Some(v) => {
                Err(S3Error::invalid_argument("Invalid Encoding Method specified in Request", "encoding-type", v))
            }
        }
    }
}

/// An owner or initiator: `<ID>` and `<DisplayName>`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub display_name: String,
}

/// Additional checksums (base64 of the raw digest, as in the `x-amz-checksum-*`
/// headers; multipart composites carry their `-N` suffix). `None` is omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checksums {
    pub crc32: Option<String>,
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

/// One bucket in ListBuckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketEntry {
    pub name: String,
    pub creation_date_ms: i64,
}

/// ListBuckets (`GET /`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListBucketsOutput {
    pub owner: Owner,
    pub buckets: Vec<BucketEntry>,
    /// Set when the listing was cut at `max-buckets`: pass back as `continuation-token`.
    pub continuation_token: Option<String>,
    /// Echo of the `prefix` parameter, if given.
    pub prefix: Option<String>,
}

/// One object in ListObjects v1/v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub key: String,
    pub last_modified_ms: i64,
    /// As sent in the `ETag` header, i.e. already quoted: `"9b2cf535f27731c974343645a3985328"`.
    pub etag: String,
    pub size: u64,
    pub storage_class: &'static str,
    /// Written in v1 when `Some`, in v2 only with `fetch-owner=true`.
    pub owner: Option<Owner>,
    /// `CRC32`, `CRC32C`, `CRC64NVME`, `SHA1` or `SHA256` when the object has an additional checksum.
    pub checksum_algorithm: Option<&'static str>,
    /// `FULL_OBJECT` or `COMPOSITE`, alongside `checksum_algorithm`.
    pub checksum_type: Option<&'static str>,
}

/// ListObjectsV2 (`GET /bucket?list-type=2`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListObjectsV2Output {
    pub name: String,
    /// The `prefix` parameter; empty when absent (S3 always writes `<Prefix>`).
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub continuation_token: Option<String>,
    /// Set when truncated. Opaque and written verbatim: keep it XML- and URL-safe (e.g. base64url).
    pub next_continuation_token: Option<String>,
    pub start_after: Option<String>,
    pub encoding: KeyEncoding,
    pub fetch_owner: bool,
    pub contents: Vec<ObjectEntry>,
    /// Each ends with the delimiter, in lexicographic order, merged by the caller with `contents`.
    pub common_prefixes: Vec<String>,
}

/// ListObjects v1 (`GET /bucket`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListObjectsV1Output {
    pub name: String,
    pub prefix: String,
    /// The `marker` parameter; empty when absent (S3 always writes `<Marker>`).
    pub marker: String,
    /// S3 sets it only when a delimiter was given and the listing is truncated
    /// (without a delimiter the client continues from the last key). Written when `Some`.
    pub next_marker: Option<String>,
    pub delimiter: Option<String>,
    pub max_keys: u32,
    pub is_truncated: bool,
    pub encoding: KeyEncoding,
    /// Entries' `owner` is always written in v1: set it.
    pub contents: Vec<ObjectEntry>,
    pub common_prefixes: Vec<String>,
}

/// CompleteMultipartUpload's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompleteMultipartUploadOutput {
    /// A URL for the object (key percent-encoded by the caller), e.g. `http://host/bucket/key`.
    pub location: String,
    pub bucket: String,
    pub key: String,
    /// Quoted: `"3858f62230ac3c915f300c664312c11f-9"`.
    pub etag: String,
    pub checksums: Checksums,
    pub checksum_type: Option<&'static str>,
}

/// One part in ListParts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartEntry {
    pub part_number: u32,
    pub last_modified_ms: i64,
    /// Quoted.
    pub etag: String,
    pub size: u64,
    pub checksums: Checksums,
}

/// ListParts (`GET /bucket/key?uploadId=...`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPartsOutput {
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    /// The `part-number-marker` parameter, 0 when absent (S3 writes 0).
    pub part_number_marker: u32,
    /// The last part number listed; written when `Some`.
    pub next_part_number_marker: Option<u32>,
    pub max_parts: u32,
    pub is_truncated: bool,
    pub parts: Vec<PartEntry>,
    pub initiator: Owner,
    pub owner: Owner,
    pub storage_class: &'static str,
    pub checksum_algorithm: Option<&'static str>,
    pub checksum_type: Option<&'static str>,
}

/// One upload in ListMultipartUploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadEntry {
    pub key: String,
    pub upload_id: String,
    pub initiated_ms: i64,
    pub storage_class: &'static str,
    pub owner: Owner,
    pub initiator: Owner,
    pub checksum_algorithm: Option<&'static str>,
}

/// ListMultipartUploads (`GET /bucket?uploads`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListMultipartUploadsOutput {
    pub bucket: String,
    /// Parameters echoed back; empty when absent (S3 always writes both).
    pub key_marker: String,
    pub upload_id_marker: String,
    /// Set when truncated.
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_uploads: u32,
    pub is_truncated: bool,
    pub encoding: KeyEncoding,
    pub uploads: Vec<UploadEntry>,
    pub common_prefixes: Vec<String>,
}

/// A key DeleteObjects removed (or found absent, which S3 also reports as deleted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeletedEntry {
    pub key: String,
    pub version_id: Option<String>,
}

/// A key DeleteObjects could not remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteErrorEntry {
    pub key: String,
    pub version_id: Option<String>,
    pub code: S3ErrorCode,
    pub message: String,
}

impl DeleteErrorEntry {
    pub fn from_error(key: String, version_id: Option<String>, error: &S3Error) -> DeleteErrorEntry {
        DeleteErrorEntry { key, version_id, code: error.code, message: error.message.clone() }
    }
}

/// DeleteObjects' answer. With `quiet`, `<Deleted>` entries are left out and
/// only errors are reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResultOutput {
    pub quiet: bool,
    pub deleted: Vec<DeletedEntry>,
    pub errors: Vec<DeleteErrorEntry>,
}

/// A document under construction.
struct Doc {
    out: String,
}

impl Doc {
    /// The declaration and `<root xmlns="...">`.
    fn new(root: &str, capacity: usize) -> Doc {
        let mut out = String::with_capacity(capacity + 128);
        out.push_str(XML_DECL);
        out.push('<');
        out.push_str(root);
        out.push_str(" xmlns=\"");
        out.push_str(S3_XMLNS);
        out.push_str("\">");
        Doc { out }
    }

    fn finish(mut self, root: &str) -> String {
        self.close(root);
        self.out
    }

    fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn text(&mut self, name: &str, value: &str) {
        self.open(name);
        escape_text(&mut self.out, value);
        self.close(name);
    }

    fn opt_text(&mut self, name: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.text(name, value);
        }
    }

    /// A key-like field: URL-encoded under `encoding-type=url`, else escaped.
    fn name_text(&mut self, name: &str, value: &str, encoding: KeyEncoding) {
        match encoding {
            KeyEncoding::Plain => self.text(name, value),
            // The encoded form is pure ASCII without XML specials: no escaping needed.
            KeyEncoding::Url => {
                self.open(name);
                self.out.push_str(&url_encode_name(value));
                self.close(name);
            }
        }
    }

    fn opt_name_text(&mut self, name: &str, value: Option<&str>, encoding: KeyEncoding) {
        if let Some(value) = value {
            self.name_text(name, value, encoding);
        }
    }

    fn number(&mut self, name: &str, value: impl std::fmt::Display) {
        self.open(name);
        let _ = write!(self.out, "{value}");
        self.close(name);
    }

    fn boolean(&mut self, name: &str, value: bool) {
        self.text(name, if value { "true" } else { "false" });
    }

    fn timestamp(&mut self, name: &str, unix_ms: i64) {
        self.open(name);
        push_timestamp(&mut self.out, unix_ms);
        self.close(name);
    }

    fn owner(&mut self, name: &str, owner: &Owner) {
        self.open(name);
        self.text("ID", &owner.id);
        self.text("DisplayName", &owner.display_name);
        self.close(name);
    }

    fn checksums(&mut self, checksums: &Checksums) {
        self.opt_text("ChecksumCRC32", checksums.crc32.as_deref());
        self.opt_text("ChecksumCRC32C", checksums.crc32c.as_deref());
        self.opt_text("ChecksumCRC64NVME", checksums.crc64nvme.as_deref());
        self.opt_text("ChecksumSHA1", checksums.sha1.as_deref());
        self.opt_text("ChecksumSHA256", checksums.sha256.as_deref());
    }

    fn encoding_type(&mut self, encoding: KeyEncoding) {
        if encoding == KeyEncoding::Url {
            self.text("EncodingType", "url");
        }
    }

    fn common_prefixes(&mut self, prefixes: &[String], encoding: KeyEncoding) {
        for prefix in prefixes {
            self.open("CommonPrefixes");
            self.name_text("Prefix", prefix, encoding);
            self.close("CommonPrefixes");
        }
    }

    fn object(&mut self, entry: &ObjectEntry, encoding: KeyEncoding, with_owner: bool) {
        self.open("Contents");
        self.name_text("Key", &entry.key, encoding);
        self.timestamp("LastModified", entry.last_modified_ms);
        self.text("ETag", &entry.etag);
        self.opt_text("ChecksumAlgorithm", entry.checksum_algorithm);
        self.opt_text("ChecksumType", entry.checksum_type);
        self.number("Size", entry.size);
        if let (true, Some(owner)) = (with_owner, &entry.owner) {
            self.owner("Owner", owner);
        }
        self.text("StorageClass", entry.storage_class);
        self.close("Contents");
    }
}

/// Rough per-entry size, for the initial capacity (a `Contents` is ~250 bytes plus its key).
fn capacity_for(entries: usize, names_bytes: usize) -> usize {
    entries.saturating_mul(256).saturating_add(names_bytes.saturating_mul(2))
}

/// `ListAllMyBucketsResult`.
pub fn list_buckets(output: &ListBucketsOutput) -> String {
    let names: usize = output.buckets.iter().map(|b| b.name.len()).sum();
    let mut doc = Doc::new("ListAllMyBucketsResult", capacity_for(output.buckets.len(), names) / 2);
    doc.owner("Owner", &output.owner);
    doc.open("Buckets");
    for bucket in &output.buckets {
        doc.open("Bucket");
        doc.text("Name", &bucket.name);
        doc.timestamp("CreationDate", bucket.creation_date_ms);
        doc.close("Bucket");
    }
    doc.close("Buckets");
    doc.opt_text("ContinuationToken", output.continuation_token.as_deref());
    doc.opt_text("Prefix", output.prefix.as_deref());
    doc.finish("ListAllMyBucketsResult")
}

/// GetBucketLocation's `LocationConstraint`: empty for `us-east-1` (and for an
/// empty region), as S3 answers for its original region.
pub fn location_constraint(region: &str) -> String {
    let mut out = String::with_capacity(128 + region.len());
    out.push_str(XML_DECL);
    out.push_str("<LocationConstraint xmlns=\"");
    out.push_str(S3_XMLNS);
    if region.is_empty() || region == "us-east-1" {
        out.push_str("\"/>");
    } else {
        out.push_str("\">");
        escape_text(&mut out, region);
        out.push_str("</LocationConstraint>");
    }
    out
}

/// `ListBucketResult` for ListObjectsV2. `KeyCount` is written as
/// `contents.len() + common_prefixes.len()`, as S3 counts it.
pub fn list_objects_v2(output: &ListObjectsV2Output) -> String {
    let names: usize = output.contents.iter().map(|e| e.key.len()).sum();
    let mut doc =
        Doc::new("ListBucketResult", capacity_for(output.contents.len() + output.common_prefixes.len(), names));
    let enc = output.encoding;
    doc.text("Name", &output.name);
    doc.name_text("Prefix", &output.prefix, enc);
    doc.opt_text("ContinuationToken", output.continuation_token.as_deref());
    doc.opt_text("NextContinuationToken", output.next_continuation_token.as_deref());
    doc.number("KeyCount", output.contents.len() + output.common_prefixes.len());
    doc.number("MaxKeys", output.max_keys);
    doc.opt_name_text("Delimiter", output.delimiter.as_deref(), enc);
    doc.encoding_type(enc);
    doc.boolean("IsTruncated", output.is_truncated);
    doc.opt_name_text("StartAfter", output.start_after.as_deref(), enc);
    for entry in &output.contents {
        doc.object(entry, enc, output.fetch_owner);
    }
    doc.common_prefixes(&output.common_prefixes, enc);
    doc.finish("ListBucketResult")
}

/// `ListBucketResult` for ListObjects v1 (no `KeyCount`; owners always written).
pub fn list_objects_v1(output: &ListObjectsV1Output) -> String {
    let names: usize = output.contents.iter().map(|e| e.key.len()).sum();
    let mut doc =
        Doc::new("ListBucketResult", capacity_for(output.contents.len() + output.common_prefixes.len(), names));
    let enc = output.encoding;
    doc.text("Name", &output.name);
    // v1 sends Prefix as given: botocore does not decode it in v1 responses
    // (only Delimiter, Marker, NextMarker and the listed names), as RGW has it.
    doc.name_text("Prefix", &output.prefix, KeyEncoding::Plain);
    doc.name_text("Marker", &output.marker, enc);
    doc.opt_name_text("NextMarker", output.next_marker.as_deref(), enc);
    doc.number("MaxKeys", output.max_keys);
    doc.opt_name_text("Delimiter", output.delimiter.as_deref(), enc);
    doc.encoding_type(enc);
    doc.boolean("IsTruncated", output.is_truncated);
    for entry in &output.contents {
        doc.object(entry, enc, true);
    }
    doc.common_prefixes(&output.common_prefixes, enc);
    doc.finish("ListBucketResult")
}

/// `InitiateMultipartUploadResult`.
pub fn initiate_multipart_upload(bucket: &str, key: &str, upload_id: &str) -> String {
    let mut doc = Doc::new("InitiateMultipartUploadResult", bucket.len() + key.len() + upload_id.len() + 64);
    doc.text("Bucket", bucket);
    doc.text("Key", key);
    doc.text("UploadId", upload_id);
    doc.finish("InitiateMultipartUploadResult")
}

/// `CompleteMultipartUploadResult`.
pub fn complete_multipart_upload(output: &CompleteMultipartUploadOutput) -> String {
    let mut doc = Doc::new("CompleteMultipartUploadResult", output.location.len() + output.key.len() + 256);
    doc.text("Location", &output.location);
    doc.text("Bucket", &output.bucket);
    doc.text("Key", &output.key);
    doc.text("ETag", &output.etag);
    doc.checksums(&output.checksums);
    doc.opt_text("ChecksumType", output.checksum_type);
    doc.finish("CompleteMultipartUploadResult")
}

/// `ListPartsResult`.
pub fn list_parts(output: &ListPartsOutput) -> String {
    let mut doc = Doc::new("ListPartsResult", capacity_for(output.parts.len(), output.key.len()));
    doc.text("Bucket", &output.bucket);
    doc.text("Key", &output.key);
    doc.text("UploadId", &output.upload_id);
    doc.number("PartNumberMarker", output.part_number_marker);
    if let Some(next) = output.next_part_number_marker {
        doc.number("NextPartNumberMarker", next);
    }
    doc.number("MaxParts", output.max_parts);
    doc.boolean("IsTruncated", output.is_truncated);
    for part in &output.parts {
        doc.open("Part");
        doc.number("PartNumber", part.part_number);
        doc.timestamp("LastModified", part.last_modified_ms);
        doc.text("ETag", &part.etag);
        doc.number("Size", part.size);
        doc.checksums(&part.checksums);
        doc.close("Part");
    }
    doc.owner("Initiator", &output.initiator);
    doc.owner("Owner", &output.owner);
    doc.text("StorageClass", output.storage_class);
    doc.opt_text("ChecksumAlgorithm", output.checksum_algorithm);
    doc.opt_text("ChecksumType", output.checksum_type);
    doc.finish("ListPartsResult")
}

/// `ListMultipartUploadsResult`.
pub fn list_multipart_uploads(output: &ListMultipartUploadsOutput) -> String {
    let names: usize = output.uploads.iter().map(|u| u.key.len() + u.upload_id.len()).sum();
    let mut doc = Doc::new(
        "ListMultipartUploadsResult",
        capacity_for(output.uploads.len() + output.common_prefixes.len(), names),
    );
    let enc = output.encoding;
    doc.text("Bucket", &output.bucket);
    doc.name_text("KeyMarker", &output.key_marker, enc);
    doc.text("UploadIdMarker", &output.upload_id_marker);
    doc.opt_name_text("NextKeyMarker", output.next_key_marker.as_deref(), enc);
    doc.opt_text("NextUploadIdMarker", output.next_upload_id_marker.as_deref());
    doc.name_text("Prefix", &output.prefix, enc);
    doc.opt_name_text("Delimiter", output.delimiter.as_deref(), enc);
    doc.number("MaxUploads", output.max_uploads);
    doc.encoding_type(enc);
    doc.boolean("IsTruncated", output.is_truncated);
    for upload in &output.uploads {
        doc.open("Upload");
        doc.name_text("Key", &upload.key, enc);
        doc.text("UploadId", &upload.upload_id);
        doc.owner("Initiator", &upload.initiator);
        doc.owner("Owner", &upload.owner);
        doc.text("StorageClass", upload.storage_class);
        doc.timestamp("Initiated", upload.initiated_ms);
        doc.opt_text("ChecksumAlgorithm", upload.checksum_algorithm);
        doc.close("Upload");
    }
    doc.common_prefixes(&output.common_prefixes, enc);
    doc.finish("ListMultipartUploadsResult")
}

fn copy_result(root: &str, etag: &str, last_modified_ms: i64, checksums: &Checksums) -> String {
    let mut doc = Doc::new(root, 256);
    doc.timestamp("LastModified", last_modified_ms);
    doc.text("ETag", etag);
    doc.checksums(checksums);
    doc.finish(root)
}

/// `CopyObjectResult` (`etag` quoted).
pub fn copy_object_result(etag: &str, last_modified_ms: i64, checksums: &Checksums) -> String {
    copy_result("CopyObjectResult", etag, last_modified_ms, checksums)
}

/// `CopyPartResult` for UploadPartCopy (`etag` quoted).
pub fn copy_part_result(etag: &str, last_modified_ms: i64, checksums: &Checksums) -> String {
    copy_result("CopyPartResult", etag, last_modified_ms, checksums)
}

/// `DeleteResult` for DeleteObjects.
pub fn delete_result(output: &DeleteResultOutput) -> String {
    let deleted = if output.quiet { 0 } else { output.deleted.len() };
    let names: usize = output.errors.iter().map(|e| e.key.len() + e.message.len()).sum();
    let mut doc = Doc::new("DeleteResult", capacity_for(deleted + output.errors.len(), names));
    if !output.quiet {
        for entry in &output.deleted {
            doc.open("Deleted");
            doc.text("Key", &entry.key);
            doc.opt_text("VersionId", entry.version_id.as_deref());
            doc.close("Deleted");
        }
    }
    for entry in &output.errors {
        doc.open("Error");
        doc.text("Key", &entry.key);
        doc.opt_text("VersionId", entry.version_id.as_deref());
        doc.text("Code", entry.code.as_str());
        doc.text("Message", &entry.message);
        doc.close("Error");
    }
    doc.finish("DeleteResult")
}

// ---------------------------------------------------------------------------
// Parsers
// ---------------------------------------------------------------------------

/// Why a request body was refused. All of these are `MalformedXML` to the
/// client (`impl From<XmlError> for S3Error`); the detail is for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("request body is {body_bytes} bytes, over the {body_bytes_max}-byte limit")]
    TooLarge { body_bytes: usize, body_bytes_max: usize },
    #[error("request body is empty")]
    Empty,
    #[error("request body is not UTF-8")]
    NotUtf8,
    #[error("XML is not well-formed: {0}")]
    Syntax(String),
    #[error("DOCTYPE declarations are not accepted")]
    Doctype,
    #[error("root element is <{found}>, expected <{expected}>")]
    UnexpectedRoot { expected: &'static str, found: String },
    #[error("elements nest deeper than {depth_max}")]
    TooDeep { depth_max: usize },
    #[error("more than {count_max} <{element}> elements")]
    TooMany { element: &'static str, count_max: usize },
    #[error("missing <{0}>")]
    Missing(&'static str),
    #[error("<{0}> given twice")]
    Duplicate(&'static str),
    #[error("<{element}> has an invalid value")]
    InvalidValue { element: &'static str },
}

/// One part listed in CompleteMultipartUpload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompletedPart {
    pub part_number: u32,
    /// Normalized by [`normalize_etag`]: surrounding whitespace and one pair of
    /// double quotes removed (clients send `"abc"`, `&quot;abc&quot;` or `abc`).
    /// Compare with the stored part ETag normalized the same way.
    pub etag: String,
    /// The part checksums the client sent (base64, trimmed), to check against the stored ones.
    pub checksums: Checksums,
}

/// One object named in a DeleteObjects request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectIdentifier {
    /// Exactly as sent (not trimmed: keys may start or end with spaces). May be
    /// empty: S3 answers that key with a per-key `UserKeyMustBeSpecified` error.
    pub key: String,
    pub version_id: Option<String>,
    /// Conditional delete (`ETag`, `LastModifiedTime`, `Size` per object, 2024 API).
    /// The caller must honour these or refuse the key: ignoring them would delete
    /// what the client asked to keep.
    pub etag: Option<String>,
    pub last_modified_time: Option<String>,
    pub size: Option<u64>,
}

/// A parsed DeleteObjects body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteRequest {
    pub quiet: bool,
    pub objects: Vec<ObjectIdentifier>,
}

/// Strips surrounding whitespace and one pair of double quotes from an ETag.
pub fn normalize_etag(etag: &str) -> &str {
    let etag = etag.trim();
    etag.strip_prefix('"').and_then(|e| e.strip_suffix('"')).unwrap_or(etag)
}

/// What the walker reports: an element opened, or closed with its own text
/// (the concatenated text and CDATA directly inside it, unescaped; empty when
/// the element has child elements).
enum Step<'a> {
    Open { depth: usize, name: &'a str },
    Close { depth: usize, name: &'a str, text: &'a str },
}

struct OpenElement {
    name: String,
    text: String,
    has_child: bool,
}

/// Reads `body` as a single `root` element (depth 1) and reports each element
/// to `visit`. Enforces the byte limit, UTF-8, no DOCTYPE, one root, depth.
fn walk(
    body: &[u8],
    body_bytes_max: usize,
    root: &'static str,
    mut visit: impl FnMut(Step<'_>) -> Result<(), XmlError>,
) -> Result<(), XmlError> {
    if body.len() > body_bytes_max {
        return Err(XmlError::TooLarge { body_bytes: body.len(), body_bytes_max });
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let source = std::str::from_utf8(body).map_err(|_| XmlError::NotUtf8)?;
    if source.trim().is_empty() {
        return Err(XmlError::Empty);
    }
    // Defaults: end names checked, text not trimmed (keys keep their spaces).
    let mut reader = Reader::from_str(source);
    let mut stack: Vec<OpenElement> = Vec::new();
    let mut root_seen = false;
    let mut first_event = true;
    loop {
        let event = reader.read_event().map_err(|e| XmlError::Syntax(e.to_string()))?;
        let is_first = std::mem::replace(&mut first_event, false);
        match event {
            Event::Start(start) => open_element(&start, root, &mut stack, &mut root_seen, &mut visit)?,
            Event::Empty(start) => {
                open_element(&start, root, &mut stack, &mut root_seen, &mut visit)?;
                close_element(&mut stack, &mut visit)?;
            }
            Event::End(_) => close_element(&mut stack, &mut visit)?,
            Event::Text(text) => {
                let text = text.unescape().map_err(|e| XmlError::Syntax(e.to_string()))?;
                push_text(&mut stack, &text)?;
            }
            Event::CData(cdata) => {
                let raw = cdata.into_inner();
                let text = std::str::from_utf8(&raw).map_err(|_| XmlError::NotUtf8)?;
                if stack.is_empty() {
                    return Err(XmlError::Syntax("CDATA outside the root element".to_owned()));
                }
                push_text(&mut stack, text)?;
            }
            // The declaration is only legal as the very first thing in the document.
            Event::Decl(_) if is_first => {}
            Event::Decl(_) => return Err(XmlError::Syntax("XML declaration not at the start".to_owned())),
            // No DTD means no entity definitions: only the predefined five and character references resolve.
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(XmlError::Syntax(format!("<{}> is not closed", open.name)));
    }
    if !root_seen {
        return Err(XmlError::Missing(root));
    }
    Ok(())
}

fn open_element(
    start: &BytesStart<'_>,
    root: &'static str,
    stack: &mut Vec<OpenElement>,
    root_seen: &mut bool,
    visit: &mut impl FnMut(Step<'_>) -> Result<(), XmlError>,
) -> Result<(), XmlError> {
    let local = start.local_name();
    let name = std::str::from_utf8(local.as_ref()).map_err(|_| XmlError::NotUtf8)?;
    match stack.last_mut() {
        Some(parent) => parent.has_child = true,
        None if *root_seen => return Err(XmlError::Syntax("more than one root element".to_owned())),
        None if name != root => return Err(XmlError::UnexpectedRoot { expected: root, found: name.to_owned() }),
        None => *root_seen = true,
    }
    if stack.len() >= XML_DEPTH_MAX {
        return Err(XmlError::TooDeep { depth_max: XML_DEPTH_MAX });
    }
    stack.push(OpenElement { name: name.to_owned(), text: String::new(), has_child: false });
    visit(Step::Open { depth: stack.len(), name })
}

fn close_element(
    stack: &mut Vec<OpenElement>,
    visit: &mut impl FnMut(Step<'_>) -> Result<(), XmlError>,
) -> Result<(), XmlError> {
    let depth = stack.len();
    // quick-xml already refuses an end tag without its start (allow_unmatched_ends is off).
    let element = stack.pop().ok_or_else(|| XmlError::Syntax("unmatched end tag".to_owned()))?;
    let text = if element.has_child { "" } else { element.text.as_str() };
    visit(Step::Close { depth, name: &element.name, text })
}

fn push_text(stack: &mut [OpenElement], text: &str) -> Result<(), XmlError> {
    match stack.last_mut() {
        // Text of elements with children (indentation) is never used: don't keep it.
        Some(top) if !top.has_child => top.text.push_str(text),
        Some(_) => {}
        None if text.trim().is_empty() => {}
        None => return Err(XmlError::Syntax("text outside the root element".to_owned())),
    }
    Ok(())
}

fn set_once<T>(slot: &mut Option<T>, element: &'static str, value: T) -> Result<(), XmlError> {
    if slot.is_some() {
        return Err(XmlError::Duplicate(element));
    }
    *slot = Some(value);
    Ok(())
}

fn parse_number<T: std::str::FromStr>(element: &'static str, text: &str) -> Result<T, XmlError> {
    text.trim().parse().map_err(|_| XmlError::InvalidValue { element })
}

fn set_checksum(checksums: &mut Checksums, name: &str, text: &str) -> Result<bool, XmlError> {
    let (slot, element) = match name {
        "ChecksumCRC32" => (&mut checksums.crc32, "ChecksumCRC32"),
        "ChecksumCRC32C" => (&mut checksums.crc32c, "ChecksumCRC32C"),
        "ChecksumCRC64NVME" => (&mut checksums.crc64nvme, "ChecksumCRC64NVME"),
        "ChecksumSHA1" => (&mut checksums.sha1, "ChecksumSHA1"),
        "ChecksumSHA256" => (&mut checksums.sha256, "ChecksumSHA256"),
        _ => return Ok(false),
    };
    set_once(slot, element, text.trim().to_owned())?;
    Ok(true)
}

#[derive(Default)]
struct PartFields {
    part_number: Option<u32>,
    etag: Option<String>,
    checksums: Checksums,
}

/// Parses a CompleteMultipartUpload body: at least one and at most
/// [`COMPLETE_MULTIPART_PARTS_MAX`] `<Part>`s, each with `PartNumber` and
/// `ETag`. Part numbers are returned as sent; check them with [`check_part_order`].
pub fn parse_complete_multipart_upload(body: &[u8]) -> Result<Vec<CompletedPart>, XmlError> {
    let mut parts: Vec<CompletedPart> = Vec::new();
    let mut current: Option<PartFields> = None;
    walk(body, COMPLETE_MULTIPART_BODY_BYTES_MAX, "CompleteMultipartUpload", |step| {
        match step {
            Step::Open { depth: 2, name: "Part" } => {
                if parts.len() >= COMPLETE_MULTIPART_PARTS_MAX {
                    return Err(XmlError::TooMany { element: "Part", count_max: COMPLETE_MULTIPART_PARTS_MAX });
                }
                current = Some(PartFields::default());
            }
            Step::Close { depth: 3, name, text } => {
                if let Some(part) = current.as_mut() {
                    match name {
                        "PartNumber" => {
                            set_once(&mut part.part_number, "PartNumber", parse_number("PartNumber", text)?)?
                        }
                        "ETag" => set_once(&mut part.etag, "ETag", normalize_etag(text).to_owned())?,
                        // `Checksum*` are recorded; anything else is tolerated (newer SDKs add fields).
                        _ => _ = set_checksum(&mut part.checksums, name, text)?,
                    }
                }
            }
            Step::Close { depth: 2, name: "Part", .. } => {
                let fields = current.take().unwrap_or_default();
                parts.push(CompletedPart {
                    part_number: fields.part_number.ok_or(XmlError::Missing("PartNumber"))?,
                    etag: fields.etag.ok_or(XmlError::Missing("ETag"))?,
                    checksums: fields.checksums,
                });
            }
            _ => {}
        }
        Ok(())
    })?;
    if parts.is_empty() {
        return Err(XmlError::Missing("Part"));
    }
    Ok(parts)
}

/// S3's rules on the part list: numbers in 1..=10000 (`InvalidArgument`), strictly
/// ascending, so no duplicates (`InvalidPartOrder`).
pub fn check_part_order(parts: &[CompletedPart]) -> Result<(), S3Error> {
    let mut previous = 0;
    for part in parts {
        if part.part_number == 0 || part.part_number > PART_NUMBER_MAX {
            return Err(S3Error::invalid_argument(
                format!("Part number must be an integer between 1 and {PART_NUMBER_MAX}, inclusive"),
                "partNumber",
                &part.part_number.to_string(),
            ));
        }
        if part.part_number <= previous {
            return Err(S3Error::new(S3ErrorCode::InvalidPartOrder));
        }
        previous = part.part_number;
    }
    Ok(())
}

fn parse_bool(element: &'static str, text: &str) -> Result<bool, XmlError> {
    match text.trim() {
        t if t.eq_ignore_ascii_case("true") || t == "1" => Ok(true),
        t if t.eq_ignore_ascii_case("false") || t == "0" => Ok(false),
        _ => Err(XmlError::InvalidValue { element }),
    }
}

#[derive(Default)]
struct ObjectFields {
    key: Option<String>,
    version_id: Option<String>,
    etag: Option<String>,
    last_modified_time: Option<String>,
    size: Option<u64>,
}

/// Parses a DeleteObjects body: optional `<Quiet>`, then one to
/// [`DELETE_OBJECTS_COUNT_MAX`] `<Object>`s, each with a `<Key>`.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, XmlError> {
    let mut quiet: Option<bool> = None;
    let mut objects: Vec<ObjectIdentifier> = Vec::new();
    let mut current: Option<ObjectFields> = None;
    walk(body, DELETE_OBJECTS_BODY_BYTES_MAX, "Delete", |step| {
        match step {
            Step::Open { depth: 2, name: "Object" } => {
                if objects.len() >= DELETE_OBJECTS_COUNT_MAX {
                    return Err(XmlError::TooMany { element: "Object", count_max: DELETE_OBJECTS_COUNT_MAX });
                }
                current = Some(ObjectFields::default());
            }
            Step::Close { depth: 2, name: "Quiet", text } => set_once(&mut quiet, "Quiet", parse_bool("Quiet", text)?)?,
            Step::Close { depth: 3, name, text } => {
                if let Some(object) = current.as_mut() {
                    match name {
                        "Key" => set_once(&mut object.key, "Key", text.to_owned())?,
                        "VersionId" => set_once(&mut object.version_id, "VersionId", text.trim().to_owned())?,
                        "ETag" => set_once(&mut object.etag, "ETag", normalize_etag(text).to_owned())?,
                        "LastModifiedTime" => {
                            set_once(&mut object.last_modified_time, "LastModifiedTime", text.trim().to_owned())?
                        }
                        "Size" => set_once(&mut object.size, "Size", parse_number("Size", text)?)?,
                        _ => {}
                    }
                }
            }
            Step::Close { depth: 2, name: "Object", .. } => {
                let fields = current.take().unwrap_or_default();
                objects.push(ObjectIdentifier {
                    key: fields.key.ok_or(XmlError::Missing("Key"))?,
                    version_id: fields.version_id,
                    etag: fields.etag,
                    last_modified_time: fields.last_modified_time,
                    size: fields.size,
                });
            }
            _ => {}
        }
        Ok(())
    })?;
    if objects.is_empty() {
        return Err(XmlError::Missing("Object"));
    }
    Ok(DeleteRequest { quiet: quiet.unwrap_or(false), objects })
}

/// Parses a CreateBucket body: the `LocationConstraint` if one is given. An
/// empty body, or an empty `<LocationConstraint/>`, is `None` (S3's default
/// region); comparing with our region is the caller's job.
pub fn parse_create_bucket_configuration(body: &[u8]) -> Result<Option<String>, XmlError> {
    let mut location: Option<String> = None;
    let walked = walk(body, CREATE_BUCKET_BODY_BYTES_MAX, "CreateBucketConfiguration", |step| {
        if let Step::Close { depth: 2, name: "LocationConstraint", text } = step {
            set_once(&mut location, "LocationConstraint", text.trim().to_owned())?;
        }
        Ok(())
    });
    match walked {
        Err(XmlError::Empty) => Ok(None),
        Err(e) => Err(e),
        Ok(()) => Ok(location.filter(|l| !l.is_empty())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: &str = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"";

    fn owner() -> Owner {
        Owner {
            id: "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a".into(),
            display_name: "webfile".into(),
        }
    }

    /// Collects `(element path, text)` for every leaf, with a real XML reader,
    /// to check documents semantically rather than byte by byte.
    fn leaves(xml: &str) -> Vec<(String, String)> {
        let mut reader = Reader::from_str(xml);
        let mut path: Vec<String> = Vec::new();
        let mut out = Vec::new();
        let mut text = String::new();
        loop {
            match reader.read_event().expect("well-formed") {
                Event::Start(s) => {
                    path.push(String::from_utf8(s.local_name().as_ref().to_vec()).expect("utf8"));
                    text.clear();
                }
                Event::Empty(s) => {
                    let name = String::from_utf8(s.local_name().as_ref().to_vec()).expect("utf8");
                    out.push((format!("{}/{name}", path.join("/")), String::new()));
                }
                Event::Text(t) => text.push_str(&t.unescape().expect("refs")),
                Event::End(_) => {
                    let joined = path.join("/");
                    if !text.is_empty() || !out.iter().any(|(p, _)| p.starts_with(&format!("{joined}/"))) {
                        out.push((joined, std::mem::take(&mut text)));
                    }
                    text.clear();
                    path.pop();
                }
                Event::Eof => break,
                _ => {}
            }
        }
        out
    }

    fn leaf<'a>(leaves: &'a [(String, String)], path: &str) -> Vec<&'a str> {
        leaves.iter().filter(|(p, _)| p == path).map(|(_, t)| t.as_str()).collect()
    }

    // -- timestamps ---------------------------------------------------------

    #[test]
    fn timestamps_known_values() {
        assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp_ms(1_255_369_830_000), "2009-10-12T17:50:30.000Z");
        assert_eq!(format_timestamp_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_timestamp_ms(951_868_799_999), "2000-02-29T23:59:59.999Z");
        assert_eq!(format_timestamp_ms(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
        assert_eq!(format_timestamp_ms(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(format_timestamp_ms(253_402_300_799_999), "9999-12-31T23:59:59.999Z");
        assert_eq!(format_timestamp_ms(-62_167_219_200_000), "0000-01-01T00:00:00.000Z");
        assert_eq!(format_timestamp_ms(-62_167_219_200_001), "-0001-12-31T23:59:59.999Z");
        // Extremes must not panic.
        let _ = format_timestamp_ms(i64::MAX);
        let _ = format_timestamp_ms(i64::MIN);
    }

    #[test]
    fn timestamps_agree_with_httpdate_over_four_centuries() {
        // A prime stride visits every month, leap years and century rules (1900, 2000, 2100).
        let mut secs: u64 = 0;
        while secs < 253_402_300_799 {
            let http = httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
            let parsed: httpdate::HttpDate = http.parse().expect("own output");
            let ours = format_timestamp_ms(secs as i64 * 1000 + 7);
            let st: std::time::SystemTime = parsed.into();
            assert_eq!(st, std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
            // Compare fields: httpdate is "Sun, 06 Nov 1994 08:49:37 GMT".
            let parts: Vec<&str> = http.split([' ', ':']).collect();
            let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
                .iter()
                .position(|m| *m == parts[2])
                .expect("month")
                + 1;
            let expected = format!("{}-{month:02}-{}T{}:{}:{}.007Z", parts[3], parts[1], parts[4], parts[5], parts[6]);
            assert_eq!(ours, expected, "secs={secs}");
            secs += 86_399 * 37 + 13;
        }
    }

    // -- escaping and URL encoding -------------------------------------------

    #[test]
    fn escape_specials_and_controls() {
        let mut out = String::new();
        escape_text(&mut out, "a<b>&\"c'\t\n\r\u{1}\u{1F}\u{7F}\u{FFFF}é😀");
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&apos;&#9;&#10;&#13;&#x1;&#x1F;\u{7F}&#xFFFF;é😀");
        let mut out = String::new();
        escape_text(&mut out, "plain/key.txt");
        assert_eq!(out, "plain/key.txt");
    }

    #[test]
    fn url_encoding_matches_s3() {
        // Spaces as %20, as RGW answers and the ceph suite checks (S3 itself was
        // measured sending `+`; botocore unquotes either).
        assert_eq!(url_encode_name("a b.txt"), "a%20b.txt");
        assert_eq!(url_encode_name("a+b.txt"), "a%2Bb.txt");
        assert_eq!(url_encode_name("100%.csv"), "100%25.csv");
        assert_eq!(url_encode_name("한글/x.txt"), "%ED%95%9C%EA%B8%80/x.txt");
        assert_eq!(url_encode_name("run books/"), "run%20books/");
        // Java URLEncoder / MinIO rules for the rest.
        assert_eq!(url_encode_name("A-z_0.9/*~"), "A-z_0.9/*%7E");
        assert_eq!(url_encode_name("<&>\"'\u{1}\r\n"), "%3C%26%3E%22%27%01%0D%0A");
        assert_eq!(url_encode_name(""), "");
    }

    #[test]
    fn key_encoding_from_query() {
        assert_eq!(KeyEncoding::from_query(None).expect("ok"), KeyEncoding::Plain);
        assert_eq!(KeyEncoding::from_query(Some("")).expect("ok"), KeyEncoding::Plain);
        assert_eq!(KeyEncoding::from_query(Some("url")).expect("ok"), KeyEncoding::Url);
        assert_eq!(KeyEncoding::from_query(Some("URL")).expect("ok"), KeyEncoding::Url);
        let err = KeyEncoding::from_query(Some("base64")).expect_err("invalid");
        assert_eq!(err.code, S3ErrorCode::InvalidArgument);
        assert!(err.to_xml("r").contains("<ArgumentName>encoding-type</ArgumentName>"));
    }

    // -- writers --------------------------------------------------------------

    #[test]
    fn list_buckets_document() {
        let xml = list_buckets(&ListBucketsOutput {
            owner: owner(),
            buckets: vec![
                BucketEntry { name: "quotes".into(), creation_date_ms: 1_138_985_109_000 },
                BucketEntry { name: "samples".into(), creation_date_ms: 1_138_984_918_000 },
            ],
            continuation_token: None,
            prefix: None,
        });
        assert_eq!(
            xml,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListAllMyBucketsResult {NS}><Owner>\
                 <ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>\
                 <DisplayName>webfile</DisplayName></Owner><Buckets>\
                 <Bucket><Name>quotes</Name><CreationDate>2006-02-03T16:45:09.000Z</CreationDate></Bucket>\
                 <Bucket><Name>samples</Name><CreationDate>2006-02-03T16:41:58.000Z</CreationDate></Bucket>\
                 </Buckets></ListAllMyBucketsResult>"
            )
        );
        let empty = list_buckets(&ListBucketsOutput {
            owner: owner(),
            continuation_token: Some("tok".into()),
            prefix: Some("p".into()),
            ..Default::default()
        });
        assert!(empty.contains("<Buckets></Buckets><ContinuationToken>tok</ContinuationToken><Prefix>p</Prefix>"));
    }

    #[test]
    fn location_constraint_documents() {
        assert_eq!(
            location_constraint("us-east-1"),
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><LocationConstraint {NS}/>")
        );
        assert_eq!(location_constraint(""), location_constraint("us-east-1"));
        assert_eq!(
            location_constraint("eu-west-1"),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><LocationConstraint {NS}>eu-west-1</LocationConstraint>"
            )
        );
    }

    fn object(key: &str) -> ObjectEntry {
        ObjectEntry {
            key: key.into(),
            last_modified_ms: 1_255_369_830_000,
            etag: "\"fba9dede5f27731c9771645a39863328\"".into(),
            size: 434_234,
            storage_class: STORAGE_CLASS_STANDARD,
            owner: Some(owner()),
            checksum_algorithm: None,
            checksum_type: None,
        }
    }

    #[test]
    fn list_objects_v2_matches_the_documented_example() {
        let xml = list_objects_v2(&ListObjectsV2Output {
            name: "bucket".into(),
            max_keys: 1000,
            contents: vec![object("my-image.jpg")],
            ..Default::default()
        });
        assert_eq!(
            xml,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult {NS}><Name>bucket</Name>\
                 <Prefix></Prefix><KeyCount>1</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>\
                 <Contents><Key>my-image.jpg</Key><LastModified>2009-10-12T17:50:30.000Z</LastModified>\
                 <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag><Size>434234</Size>\
                 <StorageClass>STANDARD</StorageClass></Contents></ListBucketResult>"
            )
        );
        let l = leaves(&xml);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/ETag"), ["\"fba9dede5f27731c9771645a39863328\""]);
    }

    #[test]
    fn list_objects_v2_all_fields_and_fetch_owner() {
        let mut entry = object("photos/a.jpg");
        entry.checksum_algorithm = Some("CRC32");
        entry.checksum_type = Some("FULL_OBJECT");
        let output = ListObjectsV2Output {
            name: "b".into(),
            prefix: "photos/".into(),
            delimiter: Some("/".into()),
            max_keys: 2,
            is_truncated: true,
            continuation_token: Some("c1".into()),
            next_continuation_token: Some("c2".into()),
            start_after: Some("photos/0".into()),
            encoding: KeyEncoding::Plain,
            fetch_owner: true,
            contents: vec![entry],
            common_prefixes: vec!["photos/2006/".into()],
        };
        let l = leaves(&list_objects_v2(&output));
        assert_eq!(leaf(&l, "ListBucketResult/KeyCount"), ["2"]);
        assert_eq!(leaf(&l, "ListBucketResult/IsTruncated"), ["true"]);
        assert_eq!(leaf(&l, "ListBucketResult/ContinuationToken"), ["c1"]);
        assert_eq!(leaf(&l, "ListBucketResult/NextContinuationToken"), ["c2"]);
        assert_eq!(leaf(&l, "ListBucketResult/StartAfter"), ["photos/0"]);
        assert_eq!(leaf(&l, "ListBucketResult/Delimiter"), ["/"]);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/Owner/DisplayName"), ["webfile"]);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/ChecksumAlgorithm"), ["CRC32"]);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/ChecksumType"), ["FULL_OBJECT"]);
        assert_eq!(leaf(&l, "ListBucketResult/CommonPrefixes/Prefix"), ["photos/2006/"]);
        assert!(leaf(&l, "ListBucketResult/EncodingType").is_empty());
        assert!(leaf(&l, "ListBucketResult/Marker").is_empty());

        let without_owner = list_objects_v2(&ListObjectsV2Output { fetch_owner: false, ..output });
        assert!(!without_owner.contains("<Owner>"));
    }

    #[test]
    fn list_objects_v2_url_encoding_covers_the_s3_fields_only() {
        let output = ListObjectsV2Output {
            name: "my bucket".into(),
            prefix: "run books/".into(),
            delimiter: Some(" ".into()),
            max_keys: 10,
            is_truncated: true,
            continuation_token: Some("a b".into()),
            next_continuation_token: Some("c+d".into()),
            start_after: Some("a+b".into()),
            encoding: KeyEncoding::Url,
            fetch_owner: false,
            contents: vec![object("run books/a b+c%.txt"), object("\u{1}ctl")],
            common_prefixes: vec!["run books/한글/".into()],
        };
        let l = leaves(&list_objects_v2(&output));
        assert_eq!(leaf(&l, "ListBucketResult/Name"), ["my bucket"]);
        assert_eq!(leaf(&l, "ListBucketResult/Prefix"), ["run%20books/"]);
        assert_eq!(leaf(&l, "ListBucketResult/Delimiter"), ["%20"]);
        assert_eq!(leaf(&l, "ListBucketResult/StartAfter"), ["a%2Bb"]);
        assert_eq!(leaf(&l, "ListBucketResult/ContinuationToken"), ["a b"]);
        assert_eq!(leaf(&l, "ListBucketResult/NextContinuationToken"), ["c+d"]);
        assert_eq!(leaf(&l, "ListBucketResult/EncodingType"), ["url"]);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/Key"), ["run%20books/a%20b%2Bc%25.txt", "%01ctl"]);
        assert_eq!(leaf(&l, "ListBucketResult/CommonPrefixes/Prefix"), ["run%20books/%ED%95%9C%EA%B8%80/"]);
    }

    #[test]
    fn list_objects_plain_keys_with_specials_and_controls_round_trip() {
        let keys = ["a&b<c>\"d'e", "tab\tnl\ncr\r", "bell\u{7}", " lead and trail ", "é/😀"];
        let output = ListObjectsV2Output {
            name: "b".into(),
            max_keys: 1000,
            contents: keys.iter().map(|k| object(k)).collect(),
            ..Default::default()
        };
        let xml = list_objects_v2(&output);
        assert!(xml.contains("<Key>tab&#9;nl&#10;cr&#13;</Key>"));
        assert!(xml.contains("<Key>bell&#x7;</Key>"));
        let l = leaves(&xml);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/Key"), keys);
    }

    #[test]
    fn list_objects_v1_marker_next_marker_and_owner() {
        let output = ListObjectsV1Output {
            name: "b".into(),
            prefix: "".into(),
            marker: "a b".into(),
            next_marker: Some("photos/".into()),
            delimiter: Some("/".into()),
            max_keys: 1,
            is_truncated: true,
            encoding: KeyEncoding::Url,
            contents: vec![object("k 1")],
            common_prefixes: vec![],
        };
        let xml = list_objects_v1(&output);
        let l = leaves(&xml);
        assert_eq!(leaf(&l, "ListBucketResult/Marker"), ["a%20b"]);
        assert_eq!(leaf(&l, "ListBucketResult/NextMarker"), ["photos/"]);
        assert_eq!(leaf(&l, "ListBucketResult/Prefix"), [""]);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/Key"), ["k%201"]);
        assert_eq!(leaf(&l, "ListBucketResult/Contents/Owner/ID"), [owner().id.as_str()]);
        assert!(leaf(&l, "ListBucketResult/KeyCount").is_empty());
        let plain = list_objects_v1(&ListObjectsV1Output { next_marker: None, encoding: KeyEncoding::Plain, ..output });
        assert!(plain.contains("<Marker>a b</Marker>"));
        assert!(!plain.contains("NextMarker"));
        assert!(!plain.contains("EncodingType"));
    }

    #[test]
    fn multipart_documents() {
        assert_eq!(
            initiate_multipart_upload("example-bucket", "example-object", "VXBsb2FkIElE"),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><InitiateMultipartUploadResult {NS}>\
                 <Bucket>example-bucket</Bucket><Key>example-object</Key><UploadId>VXBsb2FkIElE</UploadId>\
                 </InitiateMultipartUploadResult>"
            )
        );
        let xml = complete_multipart_upload(&CompleteMultipartUploadOutput {
            location: "http://Example-Bucket.s3.amazonaws.com/Example-Object".into(),
            bucket: "Example-Bucket".into(),
            key: "Example-Object".into(),
            etag: "\"3858f62230ac3c915f300c664312c11f-9\"".into(),
            checksums: Checksums { crc32: Some("AAAAAA==-9".into()), ..Default::default() },
            checksum_type: Some("COMPOSITE"),
        });
        assert_eq!(
            xml,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUploadResult {NS}>\
                 <Location>http://Example-Bucket.s3.amazonaws.com/Example-Object</Location>\
                 <Bucket>Example-Bucket</Bucket><Key>Example-Object</Key>\
                 <ETag>&quot;3858f62230ac3c915f300c664312c11f-9&quot;</ETag>\
                 <ChecksumCRC32>AAAAAA==-9</ChecksumCRC32><ChecksumType>COMPOSITE</ChecksumType>\
                 </CompleteMultipartUploadResult>"
            )
        );
    }

    #[test]
    fn list_parts_document() {
        let part = |n: u32| PartEntry {
            part_number: n,
            last_modified_ms: 1_289_422_114_000,
            etag: "\"7778aef83f66abc1fa1e8477f296d394\"".into(),
            size: 10_485_760,
            checksums: Checksums { sha256: Some("x/y=".into()), ..Default::default() },
        };
        let xml = list_parts(&ListPartsOutput {
            bucket: "example-bucket".into(),
            key: "example-object".into(),
            upload_id: "XXBsb2FkIElE".into(),
            part_number_marker: 1,
            next_part_number_marker: Some(3),
            max_parts: 2,
            is_truncated: true,
            parts: vec![part(2), part(3)],
            initiator: owner(),
            owner: owner(),
            storage_class: STORAGE_CLASS_STANDARD,
            checksum_algorithm: Some("SHA256"),
            checksum_type: None,
        });
        let l = leaves(&xml);
        assert_eq!(leaf(&l, "ListPartsResult/PartNumberMarker"), ["1"]);
        assert_eq!(leaf(&l, "ListPartsResult/NextPartNumberMarker"), ["3"]);
        assert_eq!(leaf(&l, "ListPartsResult/MaxParts"), ["2"]);
        assert_eq!(leaf(&l, "ListPartsResult/Part/PartNumber"), ["2", "3"]);
        assert_eq!(leaf(&l, "ListPartsResult/Part/LastModified"), ["2010-11-10T20:48:34.000Z"; 2]);
        assert_eq!(leaf(&l, "ListPartsResult/Part/Size"), ["10485760"; 2]);
        assert_eq!(leaf(&l, "ListPartsResult/Part/ChecksumSHA256"), ["x/y="; 2]);
        assert_eq!(leaf(&l, "ListPartsResult/Initiator/DisplayName"), ["webfile"]);
        assert_eq!(leaf(&l, "ListPartsResult/StorageClass"), ["STANDARD"]);
        assert_eq!(leaf(&l, "ListPartsResult/ChecksumAlgorithm"), ["SHA256"]);
        assert!(xml.starts_with(&format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListPartsResult {NS}>")));
    }

    #[test]
    fn list_multipart_uploads_document() {
        let upload = |key: &str| UploadEntry {
            key: key.into(),
            upload_id: "XMgbGlrZQ".into(),
            initiated_ms: 1_289_422_113_000,
            storage_class: STORAGE_CLASS_STANDARD,
            owner: owner(),
            initiator: owner(),
            checksum_algorithm: None,
        };
        let output = ListMultipartUploadsOutput {
            bucket: "bucket".into(),
            key_marker: "".into(),
            upload_id_marker: "".into(),
            next_key_marker: Some("my movie.m2ts".into()),
            next_upload_id_marker: Some("YW55IGlk".into()),
            prefix: "".into(),
            delimiter: Some("/".into()),
            max_uploads: 3,
            is_truncated: true,
            encoding: KeyEncoding::Url,
            uploads: vec![upload("my divisor"), upload("my movie.m2ts")],
            common_prefixes: vec!["photos 2006/".into()],
        };
        let l = leaves(&list_multipart_uploads(&output));
        let root = "ListMultipartUploadsResult";
        assert_eq!(leaf(&l, &format!("{root}/Bucket")), ["bucket"]);
        assert_eq!(leaf(&l, &format!("{root}/KeyMarker")), [""]);
        assert_eq!(leaf(&l, &format!("{root}/UploadIdMarker")), [""]);
        assert_eq!(leaf(&l, &format!("{root}/NextKeyMarker")), ["my%20movie.m2ts"]);
        assert_eq!(leaf(&l, &format!("{root}/NextUploadIdMarker")), ["YW55IGlk"]);
        assert_eq!(leaf(&l, &format!("{root}/MaxUploads")), ["3"]);
        assert_eq!(leaf(&l, &format!("{root}/EncodingType")), ["url"]);
        assert_eq!(leaf(&l, &format!("{root}/Upload/Key")), ["my%20divisor", "my%20movie.m2ts"]);
        assert_eq!(leaf(&l, &format!("{root}/Upload/Initiated")), ["2010-11-10T20:48:33.000Z"; 2]);
        assert_eq!(leaf(&l, &format!("{root}/Upload/Owner/ID")).len(), 2);
        assert_eq!(leaf(&l, &format!("{root}/CommonPrefixes/Prefix")), ["photos%202006/"]);
    }

    #[test]
    fn copy_documents() {
        let checksums = Checksums { crc32c: Some("yZRlqg==".into()), ..Default::default() };
        assert_eq!(
            copy_object_result("\"9b2cf535f27731c974343645a3985328\"", 1_256_769_120_000, &Checksums::default()),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CopyObjectResult {NS}>\
                 <LastModified>2009-10-28T22:32:00.000Z</LastModified>\
                 <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyObjectResult>"
            )
        );
        let part = copy_part_result("\"e\"", 0, &checksums);
        assert!(part.contains(&format!("<CopyPartResult {NS}>")));
        assert!(part.ends_with("<ChecksumCRC32C>yZRlqg==</ChecksumCRC32C></CopyPartResult>"));
    }

    #[test]
    fn delete_result_verbose_and_quiet() {
        let output = DeleteResultOutput {
            quiet: false,
            deleted: vec![DeletedEntry { key: "sample1.txt".into(), version_id: None }],
            errors: vec![DeleteErrorEntry::from_error(
                "sample2.txt".into(),
                None,
                &S3Error::new(S3ErrorCode::AccessDenied),
            )],
        };
        assert_eq!(
            delete_result(&output),
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><DeleteResult {NS}>\
                 <Deleted><Key>sample1.txt</Key></Deleted>\
                 <Error><Key>sample2.txt</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>\
                 </DeleteResult>"
            )
        );
        let quiet = delete_result(&DeleteResultOutput { quiet: true, ..output.clone() });
        assert!(!quiet.contains("<Deleted>"));
        assert!(quiet.contains("<Error><Key>sample2.txt</Key>"));
        let versioned = delete_result(&DeleteResultOutput {
            quiet: false,
            deleted: vec![DeletedEntry { key: "k&".into(), version_id: Some("v1".into()) }],
            errors: vec![],
        });
        assert!(versioned.contains("<Deleted><Key>k&amp;</Key><VersionId>v1</VersionId></Deleted>"));
        assert!(delete_result(&DeleteResultOutput::default()).ends_with(&format!("<DeleteResult {NS}></DeleteResult>")));
    }

    // -- parsers --------------------------------------------------------------

    #[test]
    fn complete_multipart_upload_documented_example() {
        let body = br#"<CompleteMultipartUpload>
  <Part>
    <PartNumber>1</PartNumber>
    <ETag>"a54357aff0632cce46d942af68356b38"</ETag>
  </Part>
  <Part>
    <PartNumber>2</PartNumber>
    <ETag>"0c78aef83f66abc1fa1e8477f296d394"</ETag>
  </Part>
  <Part>
    <PartNumber>3</PartNumber>
    <ETag>"acbd18db4cc2f85cedef654fccc4a4d8"</ETag>
  </Part>
</CompleteMultipartUpload>"#;
        let parts = parse_complete_multipart_upload(body).expect("valid");
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].part_number, 1);
        assert_eq!(parts[0].etag, "a54357aff0632cce46d942af68356b38");
        assert_eq!(parts[2].etag, "acbd18db4cc2f85cedef654fccc4a4d8");
        assert_eq!(check_part_order(&parts), Ok(()));
    }

    #[test]
    fn complete_multipart_upload_tolerates_namespaces_order_escapes_and_extensions() {
        let body = format!(
            "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- sdk --><s3:CompleteMultipartUpload \
             xmlns:s3=\"{S3_XMLNS}\"><s3:Part><s3:ETag>&quot;e1&quot;</s3:ETag><s3:ChecksumCRC32> AAAAAA== \
             </s3:ChecksumCRC32><s3:Unknown><Nested>1</Nested></s3:Unknown><s3:PartNumber> 7 </s3:PartNumber>\
             <s3:ChecksumCRC64NVME>n</s3:ChecksumCRC64NVME><s3:ChecksumSHA1>s1</s3:ChecksumSHA1>\
             <s3:ChecksumSHA256>s2</s3:ChecksumSHA256><s3:ChecksumCRC32C>c</s3:ChecksumCRC32C></s3:Part>\
             <Part><PartNumber>9</PartNumber><ETag><![CDATA[e2]]></ETag></Part></s3:CompleteMultipartUpload>"
        );
        let parts = parse_complete_multipart_upload(body.as_bytes()).expect("valid");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].part_number, 7);
        assert_eq!(parts[0].etag, "e1");
        assert_eq!(
            parts[0].checksums,
            Checksums {
                crc32: Some("AAAAAA==".into()),
                crc32c: Some("c".into()),
                crc64nvme: Some("n".into()),
                sha1: Some("s1".into()),
                sha256: Some("s2".into()),
            }
        );
        assert_eq!(parts[1], CompletedPart { part_number: 9, etag: "e2".into(), checksums: Checksums::default() });
    }

    #[test]
    fn complete_multipart_upload_rejects_bad_bodies() {
        let bad: &[(&[u8], XmlError)] = &[
            (b"", XmlError::Empty),
            (b"  \n ", XmlError::Empty),
            (b"<CompleteMultipartUpload></CompleteMultipartUpload>", XmlError::Missing("Part")),
            (b"<CompleteMultipartUpload/>", XmlError::Missing("Part")),
            (
                b"<Delete><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></Delete>",
                XmlError::UnexpectedRoot { expected: "CompleteMultipartUpload", found: "Delete".into() },
            ),
            (b"<CompleteMultipartUpload><Part><ETag>e</ETag></Part></CompleteMultipartUpload>", XmlError::Missing("PartNumber")),
            (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>", XmlError::Missing("ETag")),
            (
                b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
                XmlError::InvalidValue { element: "PartNumber" },
            ),
            (
                b"<CompleteMultipartUpload><Part><PartNumber>-1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
                XmlError::InvalidValue { element: "PartNumber" },
            ),
            (
                b"<CompleteMultipartUpload><Part><PartNumber>4294967296</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
                XmlError::InvalidValue { element: "PartNumber" },
            ),
            (
                b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
                XmlError::Duplicate("PartNumber"),
            ),
            (b"\xff\xfe<", XmlError::NotUtf8),
            (
                b"<!DOCTYPE x [<!ENTITY a \"aaaa\">]><CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&a;</ETag></Part></CompleteMultipartUpload>",
                XmlError::Doctype,
            ),
        ];
        for (body, expected) in bad {
            assert_eq!(
                parse_complete_multipart_upload(body).as_ref(),
                Err(expected),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let syntax: &[&[u8]] = &[
            b"<CompleteMultipartUpload><Part>",
            b"<CompleteMultipartUpload></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&bogus;</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&#0;</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload><Extra/>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>junk",
            b"junk<CompleteMultipartUpload/>",
            b"<CompleteMultipartUpload><?xml version=\"1.0\"?></CompleteMultipartUpload>",
            b"not xml at all",
        ];
        for body in syntax {
            let result = parse_complete_multipart_upload(body);
            assert!(matches!(result, Err(XmlError::Syntax(_))), "{} gave {result:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn complete_multipart_upload_limits() {
        let mut body = String::from("<CompleteMultipartUpload>");
        for n in 1..=COMPLETE_MULTIPART_PARTS_MAX {
            let _ = write!(body, "<Part><PartNumber>{n}</PartNumber><ETag>\"{n:032x}\"</ETag></Part>");
        }
        body.push_str("</CompleteMultipartUpload>");
        let parts = parse_complete_multipart_upload(body.as_bytes()).expect("10000 parts are allowed");
        assert_eq!(parts.len(), COMPLETE_MULTIPART_PARTS_MAX);
        assert_eq!(check_part_order(&parts), Ok(()));

        let over = body.replace(
            "</CompleteMultipartUpload>",
            "<Part><PartNumber>10001</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>",
        );
        assert_eq!(
            parse_complete_multipart_upload(over.as_bytes()),
            Err(XmlError::TooMany { element: "Part", count_max: COMPLETE_MULTIPART_PARTS_MAX })
        );

        let huge = vec![b' '; COMPLETE_MULTIPART_BODY_BYTES_MAX + 1];
        assert_eq!(
            parse_complete_multipart_upload(&huge),
            Err(XmlError::TooLarge {
                body_bytes: COMPLETE_MULTIPART_BODY_BYTES_MAX + 1,
                body_bytes_max: COMPLETE_MULTIPART_BODY_BYTES_MAX
            })
        );

        let deep = format!(
            "<CompleteMultipartUpload>{}{}</CompleteMultipartUpload>",
            "<a>".repeat(XML_DEPTH_MAX),
            "</a>".repeat(XML_DEPTH_MAX)
        );
        assert_eq!(
            parse_complete_multipart_upload(deep.as_bytes()),
            Err(XmlError::TooDeep { depth_max: XML_DEPTH_MAX })
        );
    }

    #[test]
    fn part_order_rules() {
        let parts = |numbers: &[u32]| -> Vec<CompletedPart> {
            numbers.iter().map(|&n| CompletedPart { part_number: n, ..Default::default() }).collect()
        };
        assert_eq!(check_part_order(&parts(&[1, 2, 5, 10_000])), Ok(()));
        assert_eq!(check_part_order(&parts(&[2, 1])).map_err(|e| e.code), Err(S3ErrorCode::InvalidPartOrder));
        assert_eq!(check_part_order(&parts(&[1, 1])).map_err(|e| e.code), Err(S3ErrorCode::InvalidPartOrder));
        assert_eq!(check_part_order(&parts(&[0])).map_err(|e| e.code), Err(S3ErrorCode::InvalidArgument));
        assert_eq!(check_part_order(&parts(&[1, 10_001])).map_err(|e| e.code), Err(S3ErrorCode::InvalidArgument));
    }

    #[test]
    fn normalize_etag_forms() {
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("  \"abc-3\" \n"), "abc-3");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(normalize_etag("\""), "\"");
        assert_eq!(normalize_etag("\"\""), "");
        assert_eq!(normalize_etag("\"\"abc\"\""), "\"abc\"");
    }

    #[test]
    fn delete_documented_example_and_variants() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
    <Quiet>true</Quiet>
    <Object>
         <Key>Key</Key>
         <VersionId>Version</VersionId>
    </Object>
    <Object>
         <Key>Key</Key>
    </Object>
</Delete>"#;
        let request = parse_delete(body).expect("valid");
        assert!(request.quiet);
        assert_eq!(
            request.objects,
            [
                ObjectIdentifier { key: "Key".into(), version_id: Some("Version".into()), ..Default::default() },
                ObjectIdentifier { key: "Key".into(), ..Default::default() },
            ]
        );

        // Keys keep spaces, escapes and character references; Quiet after Objects; conditions parsed.
        let body = "<Delete><Object><Size>5</Size><Key> a&amp;b&#13;&#x1;&lt;c&gt; </Key><ETag>\"e\"</ETag>\
                    <LastModifiedTime>2024-01-01T00:00:00Z</LastModifiedTime></Object>\
                    <Object><Key></Key></Object><Object><Key><![CDATA[x<y]]></Key></Object><Quiet>False</Quiet></Delete>";
        let request = parse_delete(body.as_bytes()).expect("valid");
        assert!(!request.quiet);
        assert_eq!(request.objects[0].key, " a&b\r\u{1}<c> ");
        assert_eq!(request.objects[0].etag.as_deref(), Some("e"));
        assert_eq!(request.objects[0].size, Some(5));
        assert_eq!(request.objects[0].last_modified_time.as_deref(), Some("2024-01-01T00:00:00Z"));
        assert_eq!(request.objects[1].key, "");
        assert_eq!(request.objects[2].key, "x<y");

        let no_quiet = parse_delete(b"<Delete><Object><Key>k</Key></Object></Delete>").expect("valid");
        assert!(!no_quiet.quiet);
    }

    #[test]
    fn delete_rejects_bad_bodies_and_enforces_limits() {
        let bad: &[(&[u8], XmlError)] = &[
            (b"", XmlError::Empty),
            (b"<Delete></Delete>", XmlError::Missing("Object")),
            (b"<Delete><Quiet>true</Quiet></Delete>", XmlError::Missing("Object")),
            (b"<Delete><Object><VersionId>v</VersionId></Object></Delete>", XmlError::Missing("Key")),
            (b"<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>", XmlError::Duplicate("Key")),
            (
                b"<Delete><Quiet>yes</Quiet><Object><Key>a</Key></Object></Delete>",
                XmlError::InvalidValue { element: "Quiet" },
            ),
            (
                b"<Delete><Object><Key>a</Key><Size>-1</Size></Object></Delete>",
                XmlError::InvalidValue { element: "Size" },
            ),
            (
                b"<Remove><Object><Key>a</Key></Object></Remove>",
                XmlError::UnexpectedRoot { expected: "Delete", found: "Remove".into() },
            ),
        ];
        for (body, expected) in bad {
            assert_eq!(parse_delete(body).as_ref(), Err(expected), "{}", String::from_utf8_lossy(body));
        }

        let body = |count: usize| {
            let mut body = String::from("<Delete>");
            for i in 0..count {
                let _ = write!(body, "<Object><Key>key-{i}</Key></Object>");
            }
            body.push_str("</Delete>");
            body
        };
        assert_eq!(parse_delete(body(DELETE_OBJECTS_COUNT_MAX).as_bytes()).expect("1000 ok").objects.len(), 1000);
        assert_eq!(
            parse_delete(body(DELETE_OBJECTS_COUNT_MAX + 1).as_bytes()),
            Err(XmlError::TooMany { element: "Object", count_max: DELETE_OBJECTS_COUNT_MAX })
        );
        // 1000 maximal keys, every byte escaped, fit the byte limit.
        let key = "&amp;".repeat(1024);
        let mut heavy = String::from("<Delete>");
        for _ in 0..DELETE_OBJECTS_COUNT_MAX {
            let _ = write!(heavy, "<Object><Key>{key}</Key><VersionId>{}</VersionId></Object>", "v".repeat(128));
        }
        heavy.push_str("</Delete>");
        assert!(heavy.len() <= DELETE_OBJECTS_BODY_BYTES_MAX);
        assert_eq!(parse_delete(heavy.as_bytes()).expect("fits").objects[999].key.len(), 1024);
    }

    #[test]
    fn create_bucket_configuration() {
        assert_eq!(parse_create_bucket_configuration(b""), Ok(None));
        assert_eq!(parse_create_bucket_configuration(b" \r\n"), Ok(None));
        let body = format!(
            "<CreateBucketConfiguration xmlns=\"{S3_XMLNS}\">\n  <LocationConstraint>eu-west-1</LocationConstraint>\n\
             </CreateBucketConfiguration>"
        );
        assert_eq!(parse_create_bucket_configuration(body.as_bytes()), Ok(Some("eu-west-1".into())));
        assert_eq!(
            parse_create_bucket_configuration(
                b"<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>"
            ),
            Ok(None)
        );
        assert_eq!(parse_create_bucket_configuration(b"<CreateBucketConfiguration/>"), Ok(None));
        // Newer fields (Location, Bucket) are ignored.
        assert_eq!(
            parse_create_bucket_configuration(
                b"<CreateBucketConfiguration><Location><Name>x</Name><Type>AvailabilityZone</Type></Location>\
                  <LocationConstraint> us-west-2 </LocationConstraint></CreateBucketConfiguration>"
            ),
            Ok(Some("us-west-2".into()))
        );
        assert!(matches!(parse_create_bucket_configuration(b"<Other/>"), Err(XmlError::UnexpectedRoot { .. })));
        assert!(matches!(parse_create_bucket_configuration(b"<CreateBucketConfiguration>"), Err(XmlError::Syntax(_))));
        assert!(matches!(
            parse_create_bucket_configuration(&vec![b' '; CREATE_BUCKET_BODY_BYTES_MAX + 1]),
            Err(XmlError::TooLarge { .. })
        ));
    }

    #[test]
    fn parsers_never_panic_on_truncations_and_byte_flips() {
        // Cheap deterministic fuzz: every prefix and a set of single-byte corruptions of valid bodies.
        let bodies: [&[u8]; 3] = [
            b"<?xml version=\"1.0\"?><CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;e&quot;</ETag></Part></CompleteMultipartUpload>",
            b"<Delete><Quiet>true</Quiet><Object><Key>a&amp;b</Key><VersionId>v</VersionId></Object></Delete>",
            b"<CreateBucketConfiguration><LocationConstraint>eu</LocationConstraint></CreateBucketConfiguration>",
        ];
        let flips = [b'<', b'>', b'&', b'/', b'"', b';', 0u8, 0xFF, b'!', b'?', b'['];
        for body in bodies {
            for end in 0..body.len() {
                let _ = parse_complete_multipart_upload(&body[..end]);
                let _ = parse_delete(&body[..end]);
                let _ = parse_create_bucket_configuration(&body[..end]);
            }
            for i in 0..body.len() {
                for flip in flips {
                    let mut corrupt = body.to_vec();
                    corrupt[i] = flip;
                    let _ = parse_complete_multipart_upload(&corrupt);
                    let _ = parse_delete(&corrupt);
                    let _ = parse_create_bucket_configuration(&corrupt);
                }
            }
        }
    }
}
