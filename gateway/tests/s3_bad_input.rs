//! Bad input gets a clear S3 error, and leaves the server running and the data
//! intact: malformed XML, tampered aws-chunked bodies, a body that does not match
//! its signed hash, oversized heads and keys, garbage on the socket.
mod common;

use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use common::*;
use http::{HeaderMap, HeaderValue, Method};
use tessera_gateway::sigv4::chunked::ChunkedMode;
use tessera_gateway::sigv4::{encode_aws_chunked, sign_request, SigningParams};

/// Builds an aws-chunked body for the signing context of the request.
type Encoder<'a> = dyn Fn(&ChunkedMode) -> Vec<u8> + 'a;

/// Sends a request signed with `payload_hash` (whatever the body really is) on a
/// fresh connection and returns status line and body.
fn send_signed(
    server: &Server,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    payload_hash: &str,
    body: &[u8],
    chunked: Option<&Encoder<'_>>,
) -> (u16, String) {
    let host = server.endpoint().trim_start_matches("http://").to_string();
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_str(&host).unwrap());
    for (n, v) in extra {
        h.insert(http::HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    let params = SigningParams {
        access_key: server.access_key(),
        secret_key: server.secret_key(),
        region: "us-east-1",
        time: SystemTime::now(),
    };
    let ctx = sign_request(&Method::from_bytes(method.as_bytes()).unwrap(), path, None, &mut h, payload_hash, &params)
        .expect("sign");
    let body = match chunked {
        Some(encode) => encode(&ChunkedMode::Signed(ctx)),
        None => body.to_vec(),
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (n, v) in &h {
        req.push_str(&format!("{}: {}\r\n", n, v.to_str().unwrap()));
    }
    req.push_str(&format!("content-length: {}\r\nconnection: close\r\n\r\n", body.len()));
    let mut s = std::net::TcpStream::connect(&host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}

#[track_caller]
fn assert_s3_error(r: &RawResponse, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.summary());
    assert_eq!(r.xml_tag("Code").as_deref(), Some(code), "{}", r.summary());
}

async fn assert_alive_and_intact(server: &Server, bucket: &str, data: &[u8]) {
    let got = body_bytes(server.client().get_object().bucket(bucket).key("keep").send().await.expect("get")).await;
    assert_bytes_eq(&got, data, "object stored before the bad requests");
}

#[tokio::test]
async fn malformed_xml_bodies_are_malformed_xml() {
    let server = Server::start_default().await;
    skip_if_external!(server, "checks Tessera's exact answers");
    let bucket = server.new_bucket().await;
    let data = random_bytes(300 * 1024, 1);
    server.client().put_object().bucket(&bucket).key("keep").body(data.clone().into()).send().await.expect("put");

    for body in
        [&b"<Delete><Object><Key>a</Key></Object"[..], b"not xml at all", b"<!DOCTYPE x [<!ENTITY a 'b'>]><Delete/>"]
    {
        let md5 = base64_md5(body);
        let r = server.raw_request("POST", &format!("/{bucket}"), &[("delete", "")], &[("content-md5", &md5)], body);
        assert_s3_error(&r, 400, "MalformedXML");
    }
    let up = server.client().create_multipart_upload().bucket(&bucket).key("mp").send().await.expect("create");
    let id = up.upload_id().unwrap().to_string();
    let r = server.raw_request(
        "POST",
        &format!("/{bucket}/mp"),
        &[("uploadId", &id)],
        &[],
        b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber></Part>",
    );
    assert_s3_error(&r, 400, "MalformedXML");
    // DeleteObjects without any digest is refused before the body is trusted.
    let r = server.raw_request("POST", &format!("/{bucket}"), &[("delete", "")], &[], b"<Delete/>");
    assert_s3_error(&r, 400, "InvalidRequest");
    assert_alive_and_intact(&server, &bucket, &data).await;
}

fn base64_md5(body: &[u8]) -> String {
    use base64::Engine;
    use md5::Digest;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

#[tokio::test]
async fn bodies_that_do_not_match_their_signature_are_refused_and_not_stored() {
    let server = Server::start_default().await;
    skip_if_external!(server, "signs with Tessera's own signer");
    let bucket = server.new_bucket().await;
    let data = random_bytes(200 * 1024, 2);
    server.client().put_object().bucket(&bucket).key("keep").body(data.clone().into()).send().await.expect("put");

    // Signed SHA-256 of other bytes.
    let body = random_bytes(1000, 3);
    let other = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"something else"));
    let (status, text) = send_signed(&server, "PUT", &format!("/{bucket}/bad-sha"), &[], &other, &body, None);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("XAmzContentSHA256Mismatch"), "{text}");

    // aws-chunked with one chunk's bytes flipped after signing.
    let payload = random_bytes(200 * 1024, 4);
    let len = payload.len().to_string();
    let tamper = |mode: &ChunkedMode| {
        let mut b = encode_aws_chunked(mode, &payload, 64 * 1024, &[]);
        let at = b.len() / 2;
        b[at] ^= 0xFF;
        b
    };
    let (status, text) = send_signed(
        &server,
        "PUT",
        &format!("/{bucket}/bad-chunk"),
        &[("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", &len)],
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        &[],
        Some(&tamper),
    );
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");

    // The same body intact is accepted (the test's encoder is right).
    let intact = |mode: &ChunkedMode| encode_aws_chunked(mode, &payload, 64 * 1024, &[]);
    let (status, text) = send_signed(
        &server,
        "PUT",
        &format!("/{bucket}/good-chunk"),
        &[("content-encoding", "aws-chunked"), ("x-amz-decoded-content-length", &len)],
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        &[],
        Some(&intact),
    );
    assert_eq!(status, 200, "{text}");

    let s3 = server.client();
    for key in ["bad-sha", "bad-chunk"] {
        expect_s3_error(s3.head_object().bucket(&bucket).key(key).send().await, 404, None);
    }
    let got = body_bytes(s3.get_object().bucket(&bucket).key("good-chunk").send().await.expect("get")).await;
    assert_bytes_eq(&got, &payload, "aws-chunked upload");
    assert_alive_and_intact(&server, &bucket, &data).await;
}

#[tokio::test]
async fn oversized_heads_long_keys_and_garbage_leave_the_server_up() {
    let server = Server::start_default().await;
    skip_if_external!(server, "sends garbage to Tessera's socket");
    let bucket = server.new_bucket().await;
    let data = random_bytes(10_000, 5);
    server.client().put_object().bucket(&bucket).key("keep").body(data.clone().into()).send().await.expect("put");

    let long_key = "k".repeat(1025);
    expect_s3_error(
        server.client().put_object().bucket(&bucket).key(&long_key).body(b"x".to_vec().into()).send().await,
        400,
        Some("KeyTooLongError"),
    );
    let host = server.endpoint().trim_start_matches("http://").to_string();
    let huge = "x".repeat(80 * 1024);
    for raw in [
        format!("GET /{bucket}/keep HTTP/1.1\r\nhost: {host}\r\nx-big: {huge}\r\n\r\n"),
        "GARBAGE\r\n\r\n".to_string(),
        "GET / HTTP/1.1\r\ncontent-length: -5\r\n\r\n".to_string(),
    ] {
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(raw.as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "a 4xx or a closed connection: {text}");
    }
    let r = server.raw_unsigned("GET", "/health", &[], &[], b"");
    assert_eq!(r.status, 200);
    assert_alive_and_intact(&server, &bucket, &data).await;
}
