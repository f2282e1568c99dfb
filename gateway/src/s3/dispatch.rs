//! Typed S3 endpoints (one per operation, Garage's router is the model) and the
//! dispatch from each to its handler.
use std::rc::Rc;

use http::Method;

use super::error::{S3Error, S3ErrorCode};
use super::service::{Gateway, Req, Resp};
use super::{buckets, multipart, objects};

/// Longest object key S3 accepts, in bytes.
pub const KEY_BYTES_MAX: usize = 1024;
/// Sub-resources this server does not implement: answered 501, never mistaken for
/// an object operation.
const UNSUPPORTED_SUBRESOURCES: [&str; 27] = [
    // GetObjectAttributes, answered as a GET of the whole object before: its client got
    // the object's bytes where it expected XML, and retried.
    "attributes",
    "torrent",
    "select",
    "intelligent-tiering",
    "policy",
    "policyStatus",
    "lifecycle",
    "tagging",
    "cors",
    "encryption",
    "versions",
    "versioning",
    "object-lock",
    "retention",
    "legal-hold",
    "website",
    "logging",
    "notification",
    "replication",
    "requestPayment",
    "accelerate",
    "analytics",
    "inventory",
    "metrics",
    "ownershipControls",
    "publicAccessBlock",
    "restore",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    ListBuckets,
    CreateBucket {
        bucket: String,
    },
    DeleteBucket {
        bucket: String,
    },
    HeadBucket {
        bucket: String,
    },
    GetBucketLocation {
        bucket: String,
    },
    ListObjects {
        bucket: String,
    },
    ListObjectsV2 {
        bucket: String,
    },
    ListMultipartUploads {
        bucket: String,
    },
    DeleteObjects {
        bucket: String,
    },
    PutObject {
        bucket: String,
        key: String,
    },
    CopyObject {
        bucket: String,
        key: String,
        src_bucket: String,
        src_key: String,
    },
    GetObject {
        bucket: String,
        key: String,
        part_number: Option<u32>,
    },
    HeadObject {
        bucket: String,
        key: String,
        part_number: Option<u32>,
    },
    DeleteObject {
        bucket: String,
        key: String,
    },
    CreateMultipartUpload {
        bucket: String,
        key: String,
    },
    UploadPart {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: u32,
    },
    UploadPartCopy {
        bucket: String,
        key: String,
        upload_id: String,
        part_number: u32,
        src_bucket: String,
        src_key: String,
    },
    CompleteMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    AbortMultipartUpload {
        bucket: String,
        key: String,
        upload_id: String,
    },
    ListParts {
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// `?acl`: one owner holds FULL_CONTROL of everything; reading that policy and
    /// setting the `private` canned ACL (which changes nothing) are supported.
    GetAcl {
        bucket: String,
        key: Option<String>,
    },
    PutAcl {
        bucket: String,
        key: Option<String>,
    },
    NotImplemented {
        what: String,
    },
}

impl Endpoint {
    /// The bucket the request is about, if any.
    pub fn bucket(&self) -> Option<&str> {
        match self {
            Endpoint::ListBuckets | Endpoint::NotImplemented { .. } => None,
            Endpoint::CreateBucket { bucket }
            | Endpoint::DeleteBucket { bucket }
            | Endpoint::HeadBucket { bucket }
            | Endpoint::GetBucketLocation { bucket }
            | Endpoint::ListObjects { bucket }
            | Endpoint::ListObjectsV2 { bucket }
            | Endpoint::ListMultipartUploads { bucket }
            | Endpoint::DeleteObjects { bucket }
            | Endpoint::PutObject { bucket, .. }
            | Endpoint::CopyObject { bucket, .. }
            | Endpoint::GetObject { bucket, .. }
            | Endpoint::HeadObject { bucket, .. }
            | Endpoint::DeleteObject { bucket, .. }
            | Endpoint::CreateMultipartUpload { bucket, .. }
            | Endpoint::UploadPart { bucket, .. }
            | Endpoint::UploadPartCopy { bucket, .. }
            | Endpoint::CompleteMultipartUpload { bucket, .. }
            | Endpoint::AbortMultipartUpload { bucket, .. }
            | Endpoint::ListParts { bucket, .. }
            | Endpoint::GetAcl { bucket, .. }
            | Endpoint::PutAcl { bucket, .. } => Some(bucket),
        }
    }

    /// The operation's name, for metrics and logs (a fixed set).
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::ListBuckets => "ListBuckets",
            Endpoint::CreateBucket { .. } => "CreateBucket",
            Endpoint::DeleteBucket { .. } => "DeleteBucket",
            Endpoint::HeadBucket { .. } => "HeadBucket",
            Endpoint::GetBucketLocation { .. } => "GetBucketLocation",
            Endpoint::ListObjects { .. } => "ListObjects",
            Endpoint::ListObjectsV2 { .. } => "ListObjectsV2",
            Endpoint::ListMultipartUploads { .. } => "ListMultipartUploads",
            Endpoint::DeleteObjects { .. } => "DeleteObjects",
            Endpoint::PutObject { .. } => "PutObject",
            Endpoint::CopyObject { .. } => "CopyObject",
            Endpoint::GetObject { .. } => "GetObject",
            Endpoint::HeadObject { .. } => "HeadObject",
            Endpoint::DeleteObject { .. } => "DeleteObject",
            Endpoint::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            Endpoint::UploadPart { .. } => "UploadPart",
            Endpoint::UploadPartCopy { .. } => "UploadPartCopy",
            Endpoint::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            Endpoint::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            Endpoint::ListParts { .. } => "ListParts",
            Endpoint::GetAcl { key: None, .. } => "GetBucketAcl",
            Endpoint::GetAcl { key: Some(_), .. } => "GetObjectAcl",
            Endpoint::PutAcl { key: None, .. } => "PutBucketAcl",
            Endpoint::PutAcl { key: Some(_), .. } => "PutObjectAcl",
            Endpoint::NotImplemented { .. } => "NotImplemented",
        }
    }
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::new(S3ErrorCode::InvalidArgument).with_message(msg)
}

fn part_number(v: &str) -> Result<u32, S3Error> {
    match v.parse::<u32>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(S3Error::invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
            "partNumber",
            v,
        )),
    }
}

/// `x-amz-copy-source`: `bucket/key` or `/bucket/key`, URL-encoded, optional `?versionId=`.
fn copy_source(h: &http::HeaderMap) -> Result<Option<(String, String)>, S3Error> {
    let Some(v) = h.get("x-amz-copy-source") else { return Ok(None) };
    let raw = v.to_str().map_err(|_| invalid("x-amz-copy-source is not valid"))?;
    let raw = raw.split_once('?').map_or(raw, |(p, q)| {
        let _ = q; // versionId: a single version exists
        p
    });
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| invalid("x-amz-copy-source is not valid UTF-8"))?;
    let trimmed = decoded.strip_prefix('/').unwrap_or(&decoded);
    match trimmed.split_once('/') {
        Some((b, k)) if !b.is_empty() && !k.is_empty() => Ok(Some((b.to_string(), k.to_string()))),
        _ => Err(invalid("Copy Source must mention the source bucket and key: sourcebucket/sourcekey")),
    }
}

/// Routes a request: path-style `/bucket/key`, or virtual-hosted `bucket.<domain>`.
pub fn route(
    method: &Method,
    raw_path: &str,
    query: &[(String, String)],
    headers: &http::HeaderMap,
    vhost: Option<&str>,
) -> Result<Endpoint, S3Error> {
    let path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| S3Error::new(S3ErrorCode::InvalidURI).with_message("The path is not valid UTF-8"))?;
    let host_bucket = vhost.and_then(|d| {
        let host = headers.get(http::header::HOST)?.to_str().ok()?;
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        host.strip_suffix(d)?.strip_suffix('.').filter(|b| !b.is_empty()).map(str::to_string)
    });
    let rest = path.strip_prefix('/').unwrap_or(&path);
    let (bucket, key) = match host_bucket {
        Some(b) => (b, rest.to_string()),
        None => match rest.split_once('/') {
            Some((b, k)) => (b.to_string(), k.to_string()),
            None => (rest.to_string(), String::new()),
        },
    };
    let has = |n: &str| query.iter().any(|(k, _)| k == n);
    let get = |n: &str| query.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    for s in UNSUPPORTED_SUBRESOURCES {
        if has(s) {
            return Ok(Endpoint::NotImplemented { what: format!("?{s}") });
        }
    }
    if has("acl") && !bucket.is_empty() {
        let key = (!key.is_empty()).then_some(key);
        return match *method {
            Method::GET => Ok(Endpoint::GetAcl { bucket, key }),
            Method::PUT => Ok(Endpoint::PutAcl { bucket, key }),
            _ => Err(S3Error::method_not_allowed(method.as_str(), "ACL")),
        };
    }
    if bucket.is_empty() {
        return match *method {
            Method::GET => Ok(Endpoint::ListBuckets),
            _ => Err(S3Error::method_not_allowed(method.as_str(), "SERVICE")),
        };
    }
    if key.is_empty() {
        return match *method {
            Method::PUT => Ok(Endpoint::CreateBucket { bucket }),
            Method::DELETE => Ok(Endpoint::DeleteBucket { bucket }),
            Method::HEAD => Ok(Endpoint::HeadBucket { bucket }),
            Method::GET if has("location") => Ok(Endpoint::GetBucketLocation { bucket }),
            Method::GET if has("uploads") => Ok(Endpoint::ListMultipartUploads { bucket }),
            Method::GET if get("list-type") == Some("2") => Ok(Endpoint::ListObjectsV2 { bucket }),
            Method::GET if get("list-type").is_some() => Err(invalid("list-type must be 2")),
            Method::GET => Ok(Endpoint::ListObjects { bucket }),
            Method::POST if has("delete") => Ok(Endpoint::DeleteObjects { bucket }),
            _ => Err(S3Error::method_not_allowed(method.as_str(), "BUCKET")),
        };
    }
    if key.len() > KEY_BYTES_MAX {
        return Err(S3Error::new(S3ErrorCode::KeyTooLongError));
    }
    let upload_id = get("uploadId").map(str::to_string);
    let part = get("partNumber").map(part_number).transpose()?;
    match *method {
        Method::GET | Method::HEAD => {
            if let Some(upload_id) = upload_id {
                if *method == Method::GET {
                    return Ok(Endpoint::ListParts { bucket, key, upload_id });
                }
            }
            if *method == Method::GET {
                Ok(Endpoint::GetObject { bucket, key, part_number: part })
            } else {
                Ok(Endpoint::HeadObject { bucket, key, part_number: part })
            }
        }
        Method::PUT => match (upload_id, part, copy_source(headers)?) {
            (Some(upload_id), Some(part_number), Some((src_bucket, src_key))) => {
                Ok(Endpoint::UploadPartCopy { bucket, key, upload_id, part_number, src_bucket, src_key })
            }
            (Some(upload_id), Some(part_number), None) => {
                Ok(Endpoint::UploadPart { bucket, key, upload_id, part_number })
            }
            (Some(_), None, _) => Err(invalid("UploadPart needs partNumber")),
            (None, Some(_), _) => Err(invalid("UploadPart needs uploadId")),
            (None, None, Some((src_bucket, src_key))) => Ok(Endpoint::CopyObject { bucket, key, src_bucket, src_key }),
            (None, None, None) => Ok(Endpoint::PutObject { bucket, key }),
        },
        Method::POST if has("uploads") => Ok(Endpoint::CreateMultipartUpload { bucket, key }),
        Method::POST if upload_id.is_some() => {
            Ok(Endpoint::CompleteMultipartUpload { bucket, key, upload_id: upload_id.unwrap_or_default() })
        }
        Method::DELETE => match upload_id {
            Some(upload_id) => Ok(Endpoint::AbortMultipartUpload { bucket, key, upload_id }),
            None => Ok(Endpoint::DeleteObject { bucket, key }),
        },
        _ => Err(S3Error::method_not_allowed(method.as_str(), "OBJECT")),
    }
}

/// Bucket-name rules for CreateBucket (S3's general purpose bucket naming rules).
pub fn check_bucket_name(name: &str) -> Result<(), S3Error> {
    let bad = |why: &str| {
        S3Error::new(S3ErrorCode::InvalidBucketName)
            .with_message(format!("The specified bucket is not valid: {why}"))
            .with_extra("BucketName", name)
    };
    if !(3..=63).contains(&name.len()) {
        return Err(bad("names are 3 to 63 characters long"));
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-') {
        return Err(bad("names hold lowercase letters, digits, dots and hyphens only"));
    }
    let first = name.as_bytes()[0];
    let last = name.as_bytes()[name.len() - 1];
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err(bad("names begin and end with a letter or digit"));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(bad("no two adjacent dots, and no dot next to a hyphen"));
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return Err(bad("names are not IP addresses"));
    }
    if name.starts_with("xn--")
        || name.starts_with("sthree-")
        || name.ends_with("-s3alias")
        || name.ends_with("--ol-s3")
    {
        return Err(bad("reserved prefix or suffix"));
    }
    Ok(())
}

pub async fn dispatch(
    gw: &Rc<Gateway>,
    ep: Endpoint,
    req: Req,
) -> Result<(&'static str, Resp), (&'static str, S3Error)> {
    let op = ep.name();
    let r = match ep {
        Endpoint::ListBuckets => buckets::list_buckets(gw).await,
        Endpoint::CreateBucket { bucket } => buckets::create_bucket(gw, req, &bucket).await,
        Endpoint::DeleteBucket { bucket } => buckets::delete_bucket(gw, &bucket).await,
        Endpoint::HeadBucket { bucket } => buckets::head_bucket(gw, &bucket).await,
        Endpoint::GetBucketLocation { bucket } => buckets::get_bucket_location(gw, &bucket).await,
        Endpoint::ListObjects { bucket } => buckets::list_objects_v1(gw, &req, &bucket).await,
        Endpoint::ListObjectsV2 { bucket } => buckets::list_objects_v2(gw, &req, &bucket).await,
        Endpoint::ListMultipartUploads { bucket } => multipart::list_uploads(gw, &req, &bucket).await,
        Endpoint::DeleteObjects { bucket } => objects::delete_objects(gw, req, &bucket).await,
        Endpoint::PutObject { bucket, key } => objects::put_object(gw, req, &bucket, &key).await,
        Endpoint::CopyObject { bucket, key, src_bucket, src_key } => {
            objects::copy_object(gw, req, &bucket, &key, &src_bucket, &src_key, None).await
        }
        Endpoint::GetObject { bucket, key, part_number } => {
            objects::get_object(gw, req, &bucket, &key, false, part_number).await
        }
        Endpoint::HeadObject { bucket, key, part_number } => {
            objects::get_object(gw, req, &bucket, &key, true, part_number).await
        }
        Endpoint::DeleteObject { bucket, key } => objects::delete_object(gw, &bucket, &key).await,
        Endpoint::CreateMultipartUpload { bucket, key } => multipart::create(gw, &req, &bucket, &key).await,
        Endpoint::UploadPart { bucket, key, upload_id, part_number } => {
            multipart::upload_part(gw, req, &bucket, &key, &upload_id, part_number).await
        }
        Endpoint::UploadPartCopy { bucket, key, upload_id, part_number, src_bucket, src_key } => {
            objects::copy_object(gw, req, &bucket, &key, &src_bucket, &src_key, Some((upload_id, part_number))).await
        }
        Endpoint::CompleteMultipartUpload { bucket, key, upload_id } => {
            multipart::complete(gw, req, &bucket, &key, &upload_id).await
        }
        Endpoint::AbortMultipartUpload { bucket, key, upload_id } => {
            multipart::abort(gw, &bucket, &key, &upload_id).await
        }
        Endpoint::ListParts { bucket, key, upload_id } => {
            multipart::list_parts(gw, &req, &bucket, &key, &upload_id).await
        }
        Endpoint::GetAcl { bucket, key } => buckets::get_acl(gw, &bucket, key.as_deref()).await,
        Endpoint::PutAcl { bucket, key } => buckets::put_acl(gw, req, &bucket, key.as_deref()).await,
        Endpoint::NotImplemented { what } => {
            Err(S3Error::new(S3ErrorCode::NotImplemented)
                .with_message(format!("{what} is not implemented by this server")))
        }
    };
    r.map(|r| (op, r)).map_err(|e| (op, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(m: Method, path: &str, q: &str, hdrs: &[(&str, &str)]) -> Result<Endpoint, S3Error> {
        let mut h = http::HeaderMap::new();
        for (n, v) in hdrs {
            h.insert(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), v.parse().unwrap());
        }
        route(&m, path, &super::super::service::parse_query(Some(q)), &h, Some("localhost"))
    }

    #[test]
    fn routes() {
        assert_eq!(r(Method::GET, "/", "", &[]).unwrap(), Endpoint::ListBuckets);
        assert_eq!(r(Method::PUT, "/b", "", &[]).unwrap(), Endpoint::CreateBucket { bucket: "b".into() });
        assert_eq!(r(Method::GET, "/b", "list-type=2", &[]).unwrap(), Endpoint::ListObjectsV2 { bucket: "b".into() });
        assert_eq!(r(Method::GET, "/b/", "", &[]).unwrap(), Endpoint::ListObjects { bucket: "b".into() });
        assert_eq!(
            r(Method::GET, "/b/a%2Fb%20c+d", "", &[]).unwrap(),
            Endpoint::GetObject { bucket: "b".into(), key: "a/b c+d".into(), part_number: None }
        );
        assert_eq!(
            r(Method::PUT, "/b/k", "partNumber=3&uploadId=u", &[]).unwrap(),
            Endpoint::UploadPart { bucket: "b".into(), key: "k".into(), upload_id: "u".into(), part_number: 3 }
        );
        assert!(matches!(
            r(Method::PUT, "/b/k", "partNumber=3&uploadId=u", &[("x-amz-copy-source", "/s/a%20b")]).unwrap(),
            Endpoint::UploadPartCopy { src_key, .. } if src_key == "a b"
        ));
        assert!(r(Method::PUT, "/b/k", "partNumber=0&uploadId=u", &[]).is_err());
        assert!(r(Method::PUT, "/b/k", "partNumber=10001&uploadId=u", &[]).is_err());
        assert!(matches!(r(Method::GET, "/b", "policy", &[]).unwrap(), Endpoint::NotImplemented { .. }));
        assert!(matches!(r(Method::GET, "/b/k", "attributes", &[]).unwrap(), Endpoint::NotImplemented { .. }));
        assert!(matches!(
            r(Method::POST, "/b/k", "select&select-type=2", &[]).unwrap(),
            Endpoint::NotImplemented { .. }
        ));
        assert_eq!(r(Method::GET, "/b", "acl", &[]).unwrap(), Endpoint::GetAcl { bucket: "b".into(), key: None });
        assert_eq!(
            r(Method::PUT, "/b/k", "acl", &[]).unwrap(),
            Endpoint::PutAcl { bucket: "b".into(), key: Some("k".into()) }
        );
        assert!(
            matches!(r(Method::GET, "/b//k//", "", &[]).unwrap(), Endpoint::GetObject { key, .. } if key == "/k//")
        );
        assert_eq!(
            r(Method::GET, "/k", "", &[("host", "bkt.localhost:9000")]).unwrap(),
            Endpoint::GetObject { bucket: "bkt".into(), key: "k".into(), part_number: None }
        );
        assert!(r(Method::GET, &format!("/b/{}", "k".repeat(1025)), "", &[]).is_err());
        assert!(r(Method::PATCH, "/b/k", "", &[]).is_err());
    }

    #[test]
    fn bucket_names() {
        for ok in ["abc", "a-b.c", "123", "my.bucket.name"] {
            assert!(check_bucket_name(ok).is_ok(), "{ok}");
        }
        for bad in ["ab", "ABC", "a_b", "-ab", "ab-", "a..b", "192.168.1.1", "xn--ab", &"a".repeat(64), "a.-b"] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }
}
