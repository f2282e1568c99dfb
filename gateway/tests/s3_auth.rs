//! Authentication: presigned GET and PUT URLs, expired and tampered presigned URLs,
//! wrong secret, unknown access key, unsigned requests, the request id and XML
//! error body on failures, and the unauthenticated health endpoints.
mod common;

use std::time::{Duration, SystemTime};

use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use common::*;

/// Presigned URLs in these tests live long enough for a slow CI machine.
const PRESIGN_SECS: u64 = 300;

fn presign_config() -> PresigningConfig {
    PresigningConfig::expires_in(Duration::from_secs(PRESIGN_SECS)).expect("presigning config")
}

fn headers_of(req: &aws_sdk_s3::presigning::PresignedRequest) -> Vec<(String, String)> {
    req.headers().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn as_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Checks an error answer: status, S3 code, a request id header, and an XML body
/// with Code, Message and the same RequestId.
#[track_caller]
fn assert_s3_error(r: &RawResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.summary());
    assert_eq!(r.xml_tag("Code").as_deref(), Some(code), "{}", r.summary());
    assert!(r.text().contains("<Error>"), "an <Error> document: {}", r.summary());
    assert!(r.xml_tag("Message").is_some_and(|m| !m.is_empty()), "a Message: {}", r.summary());
    let header_id = r.header("x-amz-request-id").unwrap_or_else(|| panic!("x-amz-request-id: {:?}", r.headers));
    assert!(!header_id.is_empty());
    assert_eq!(r.xml_tag("RequestId").as_deref(), Some(header_id), "RequestId in body = header: {}", r.summary());
}

#[tokio::test]
async fn presigned_get_and_put() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = random_bytes(300 * KIB, 1);

    let put =
        s3.put_object().bucket(&bucket).key("via presigned/put").presigned(presign_config()).await.expect("presign");
    assert_eq!(put.method(), "PUT");
    let r = server.raw_url("PUT", put.uri(), &as_refs(&headers_of(&put)), &data);
    assert_eq!(r.status, 200, "presigned PUT: {}", r.summary());
    assert_eq!(r.header("etag"), Some(etag_of(&data).as_str()));
    let got = body_bytes(s3.get_object().bucket(&bucket).key("via presigned/put").send().await.expect("get")).await;
    assert_bytes_eq(&got, &data, "object uploaded through a presigned URL");

    let get =
        s3.get_object().bucket(&bucket).key("via presigned/put").presigned(presign_config()).await.expect("presign");
    let r = server.raw_url("GET", get.uri(), &as_refs(&headers_of(&get)), b"");
    assert_eq!(r.status, 200, "presigned GET: {}", r.summary());
    assert_bytes_eq(&r.body, &data, "presigned GET body");
    // A Range header is not part of the signature and may be added.
    let mut headers = headers_of(&get);
    headers.push(("range".into(), "bytes=0-99".into()));
    let r = server.raw_url("GET", get.uri(), &as_refs(&headers), b"");
    assert_eq!(r.status, 206, "presigned ranged GET: {}", r.summary());
    assert_eq!(r.body, &data[..100]);
}

#[tokio::test]
async fn expired_and_tampered_presigned_urls_are_refused() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"secret")).send().await.expect("put");

    let expired = PresigningConfig::builder()
        .start_time(SystemTime::now() - Duration::from_secs(3600))
        .expires_in(Duration::from_secs(60))
        .build()
        .expect("presigning config");
    let get = s3.get_object().bucket(&bucket).key("k").presigned(expired).await.expect("presign");
    let r = server.raw_url("GET", get.uri(), &as_refs(&headers_of(&get)), b"");
    assert_s3_error(&r, 403, "AccessDenied");
    assert!(r.body.windows(6).all(|w| w != b"secret"), "no object bytes in the refusal");

    // Change the key in a valid URL: the signature no longer matches.
    let get = s3.get_object().bucket(&bucket).key("k").presigned(presign_config()).await.expect("presign");
    let tampered = get.uri().replacen(&format!("/{bucket}/k?"), &format!("/{bucket}/j?"), 1);
    assert_ne!(tampered, get.uri());
    let r = server.raw_url("GET", &tampered, &as_refs(&headers_of(&get)), b"");
    assert_s3_error(&r, 403, "SignatureDoesNotMatch");

    // A presigned GET does not authorise a PUT to the same URL.
    let r = server.raw_url("PUT", get.uri(), &as_refs(&headers_of(&get)), b"overwrite");
    assert_eq!(r.status, 403, "PUT with a GET signature: {}", r.summary());
    let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_eq!(got, b"secret");
}

#[tokio::test]
async fn wrong_secret_is_signature_does_not_match() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let bad = server.client_with_keys(server.access_key(), "definitely-not-the-secret-key-0123456789");
    expect_s3_error(bad.list_buckets().send().await, 403, Some("SignatureDoesNotMatch"));
    expect_s3_error(
        bad.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"x")).send().await,
        403,
        Some("SignatureDoesNotMatch"),
    );
    expect_s3_error(server.client().head_object().bucket(&bucket).key("k").send().await, 404, None);
    let r = server.raw_signed_with(server.access_key(), "wrong", "GET", &format!("/{bucket}"), &[], &[], b"");
    assert_s3_error(&r, 403, "SignatureDoesNotMatch");
}

#[tokio::test]
async fn unknown_access_key_is_invalid_access_key_id() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let stranger = server.client_with_keys("AKIDNOSUCHKEY0000000", server.secret_key());
    expect_s3_error(stranger.list_buckets().send().await, 403, Some("InvalidAccessKeyId"));
    expect_s3_error(stranger.get_object().bucket(&bucket).key("k").send().await, 403, Some("InvalidAccessKeyId"));
    let r = server.raw_signed_with("AKIDNOSUCHKEY0000000", server.secret_key(), "GET", "/", &[], &[], b"");
    assert_s3_error(&r, 403, "InvalidAccessKeyId");
}

#[tokio::test]
async fn unsigned_requests_are_access_denied() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"private")).send().await.expect("put");

    assert_s3_error(&server.raw_unsigned("GET", "/", &[], &[], b""), 403, "AccessDenied");
    assert_s3_error(&server.raw_unsigned("GET", &format!("/{bucket}"), &[], &[], b""), 403, "AccessDenied");
    assert_s3_error(&server.raw_unsigned("GET", &format!("/{bucket}/k"), &[], &[], b""), 403, "AccessDenied");
    assert_s3_error(&server.raw_unsigned("PUT", &format!("/{bucket}/new"), &[], &[], b"data"), 403, "AccessDenied");
    assert_s3_error(&server.raw_unsigned("DELETE", &format!("/{bucket}/k"), &[], &[], b""), 403, "AccessDenied");
    let head = server.raw_unsigned("HEAD", &format!("/{bucket}/k"), &[], &[], b"");
    assert_eq!(head.status, 403, "unsigned HEAD");
    assert!(head.header("x-amz-request-id").is_some(), "request id on a bodiless error: {:?}", head.headers);

    // Nothing was changed by the refused requests.
    expect_s3_error(s3.head_object().bucket(&bucket).key("new").send().await, 404, None);
    let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_eq!(got, b"private");
}

#[tokio::test]
async fn errors_carry_request_ids_and_xml_bodies() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let r = server.raw_request("GET", &format!("/{bucket}/missing"), &[], &[], b"");
    assert_s3_error(&r, 404, "NoSuchKey");
    assert!(r.header("content-type").is_some_and(|t| t.contains("xml")), "{:?}", r.headers);
    assert_eq!(r.xml_tag("Key").as_deref(), Some("missing"), "{}", r.summary());
    let r = server.raw_request("GET", &format!("/{}", random_bucket()), &[], &[], b"");
    assert_s3_error(&r, 404, "NoSuchBucket");
    // Successes carry a request id too, and ids differ between requests.
    let a = server.raw_request("GET", "/", &[], &[], b"");
    let b = server.raw_request("GET", "/", &[], &[], b"");
    assert_eq!(a.status, 200, "{}", a.summary());
    let (ida, idb) = (a.header("x-amz-request-id"), b.header("x-amz-request-id"));
    assert!(ida.is_some() && ida != idb, "distinct request ids: {ida:?} {idb:?}");
}

#[tokio::test]
async fn health_and_ready_need_no_auth() {
    let server = Server::start_default().await;
    skip_if_external!(server, "/health and /ready are Tessera endpoints");
    for path in ["/health", "/ready"] {
        let r = server.raw_unsigned("GET", path, &[], &[], b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.summary());
    }
}
