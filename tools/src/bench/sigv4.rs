//! A small AWS Signature Version 4 signer (header auth) for the load generator.
//!
//! Written here rather than taken from the gateway: tools talk to the server over plain
//! HTTP only. It signs what the bench sends and nothing more: the caller passes the
//! canonical URI and query already encoded ([`uri_encode`]) and the signed headers
//! already lower-case and sorted. The signing key is derived once per day and kept;
//! scratch strings are reused, so signing a request allocates nothing once warm: one
//! SHA-256 of the canonical request and one HMAC of the string to sign.
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
pub const SERVICE: &str = "s3";
/// `x-amz-content-sha256` for a body that is sent but not hashed.
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// SHA-256 of the empty string, the payload hash of a request without a body.
pub const EMPTY_PAYLOAD_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// `YYYYMMDDTHHMMSSZ`.
pub const AMZ_DATE_BYTES: usize = 16;

/// What is signed of one request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path, already encoded ([`uri_encode`]).
    pub canonical_uri: &'a str,
    /// Query, already encoded and sorted by name.
    pub canonical_query: &'a str,
    /// The signed headers: lower-case names, sorted by name, values as sent; they
    /// include `host`, `x-amz-date` (whose value is `amz_date`) and, for S3,
    /// `x-amz-content-sha256` (whose value is `payload_hash`).
    pub headers: &'a [(&'a str, &'a str)],
    pub payload_hash: &'a str,
    pub amz_date: &'a [u8; AMZ_DATE_BYTES],
}

/// Signs requests for one set of credentials.
pub struct Signer {
    access_key: String,
    secret_key: String,
    region: String,
    /// The `YYYYMMDD` the cached key was derived for.
    key_day: [u8; 8],
    key: [u8; 32],
    canonical: String,
    string_to_sign: String,
}

impl Signer {
    pub fn new(access_key: &str, secret_key: &str, region: &str) -> Signer {
        Signer {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            key_day: [0; 8],
            key: [0; 32],
            canonical: String::with_capacity(1024),
            string_to_sign: String::with_capacity(256),
        }
    }

    fn signing_key(&mut self, day: &[u8; 8]) -> [u8; 32] {
        if &self.key_day != day {
            let day_str = std::str::from_utf8(day).expect("amz date is ASCII");
            let mut k = hmac(format!("AWS4{}", self.secret_key).as_bytes(), day_str.as_bytes());
            k = hmac(&k, self.region.as_bytes());
            k = hmac(&k, SERVICE.as_bytes());
            self.key = hmac(&k, b"aws4_request");
            self.key_day = *day;
        }
        self.key
    }

    /// Appends the `Authorization` header value for `req` to `out`.
    pub fn authorization(&mut self, req: &Request<'_>, out: &mut String) {
        let Request { method, canonical_uri, canonical_query, headers, payload_hash, amz_date } = *req;
        debug_assert!(headers.windows(2).all(|w| w[0].0 < w[1].0), "signed headers sorted and distinct");
        debug_assert!(headers.iter().all(|(n, _)| n.bytes().all(|b| !b.is_ascii_uppercase())));
        let date = std::str::from_utf8(amz_date).expect("amz date is ASCII");
        let day: [u8; 8] = amz_date[..8].try_into().expect("8 bytes");
        let c = &mut self.canonical;
        c.clear();
        c.push_str(method);
        c.push('\n');
        c.push_str(canonical_uri);
        c.push('\n');
        c.push_str(canonical_query);
        c.push('\n');
        for (name, value) in headers {
            c.push_str(name);
            c.push(':');
            c.push_str(value.trim());
            c.push('\n');
        }
        c.push('\n');
        let signed_from = c.len();
        for (i, (name, _)) in headers.iter().enumerate() {
            if i > 0 {
                c.push(';');
            }
            c.push_str(name);
        }
        let signed_to = c.len();
        c.push('\n');
        c.push_str(payload_hash);

        let mut hash_hex = [0u8; 64];
        hex::encode_to_slice(Sha256::digest(c.as_bytes()), &mut hash_hex).expect("64 hex digits");
        let s = &mut self.string_to_sign;
        s.clear();
        s.push_str(ALGORITHM);
        s.push('\n');
        s.push_str(date);
        s.push('\n');
        let _ = writeln!(s, "{}/{}/{SERVICE}/aws4_request", &date[..8], self.region);
        s.push_str(std::str::from_utf8(&hash_hex).expect("hex"));
        let key = self.signing_key(&day);
        let mut sig_hex = [0u8; 64];
        hex::encode_to_slice(hmac(&key, self.string_to_sign.as_bytes()), &mut sig_hex).expect("64 hex digits");

        let _ = write!(
            out,
            "{ALGORITHM} Credential={}/{}/{}/{SERVICE}/aws4_request,SignedHeaders={},Signature={}",
            self.access_key,
            &date[..8],
            self.region,
            &self.canonical[signed_from..signed_to],
            std::str::from_utf8(&sig_hex).expect("hex"),
        );
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Appends `s` percent-encoded as SigV4 wants: every byte but `A-Za-z0-9-._~` (and `/`
/// unless `encode_slash`) becomes `%XX`, upper-case hex.
pub fn uri_encode(s: &str, encode_slash: bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// `now` as `YYYYMMDDTHHMMSSZ` (UTC).
pub fn amz_date(now: SystemTime) -> [u8; AMZ_DATE_BYTES] {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut out = [0u8; AMZ_DATE_BYTES];
    let mut w = &mut out[..];
    use std::io::Write as _;
    write!(w, "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60).expect("16 bytes");
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const AK: &str = "AKIAIOSFODNN7EXAMPLE";
    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const DATE: &[u8; 16] = b"20130524T000000Z";

    fn get<'a>(headers: &'a [(&'a str, &'a str)]) -> Request<'a> {
        Request {
            method: "GET",
            canonical_uri: "/test.txt",
            canonical_query: "",
            headers,
            payload_hash: EMPTY_PAYLOAD_SHA256,
            amz_date: DATE,
        }
    }

    /// "GET Object" from the AWS SigV4 header-auth examples: the first 10 bytes of
    /// examplebucket/test.txt.
    #[test]
    fn aws_get_object_example() {
        let mut signer = Signer::new(AK, SK, "us-east-1");
        let mut out = String::new();
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        signer.authorization(&get(&headers), &mut out);
        assert_eq!(
            out,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,\
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,\
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        // Signing again (cached key, reused scratch) gives the same answer.
        let mut again = String::new();
        signer.authorization(&get(&headers), &mut again);
        assert_eq!(out, again);
    }

    /// "GET Bucket (List Objects)" from the same examples: a query string.
    #[test]
    fn aws_list_objects_example() {
        let mut signer = Signer::new(AK, SK, "us-east-1");
        let mut out = String::new();
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("x-amz-content-sha256", EMPTY_PAYLOAD_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let req = Request { canonical_uri: "/", canonical_query: "max-keys=2&prefix=J", ..get(&headers) };
        signer.authorization(&req, &mut out);
        assert!(out.ends_with("Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"), "{out}");
    }

    #[test]
    fn encoding_and_dates() {
        let mut s = String::new();
        uri_encode("a b/c~d+é", false, &mut s);
        assert_eq!(s, "a%20b/c~d%2B%C3%A9");
        s.clear();
        uri_encode("x/y", true, &mut s);
        assert_eq!(s, "x%2Fy");
        assert_eq!(&amz_date(UNIX_EPOCH), b"19700101T000000Z");
        assert_eq!(&amz_date(UNIX_EPOCH + Duration::from_secs(1_369_353_600)), DATE);
        // A leap day and the last second of a year.
        assert_eq!(&amz_date(UNIX_EPOCH + Duration::from_secs(951_782_400)), b"20000229T000000Z");
        assert_eq!(&amz_date(UNIX_EPOCH + Duration::from_secs(1_735_689_599)), b"20241231T235959Z");
    }
}
