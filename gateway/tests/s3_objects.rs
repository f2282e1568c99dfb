//! Object operations through aws-sdk-s3: put/get/head/delete, metadata round trips,
//! ETags, Content-MD5 and flexible checksums, sizes around the inline and stripe
//! boundaries, batch delete, copy, and awkward keys.
mod common;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, Delete, MetadataDirective, ObjectIdentifier};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use common::*;
use sha1::Digest as _;

#[tokio::test]
async fn put_get_head_delete() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = random_bytes(5000, 1);

    let put =
        s3.put_object().bucket(&bucket).key("obj").body(ByteStream::from(data.clone())).send().await.expect("put");
    assert_eq!(put.e_tag(), Some(etag_of(&data).as_str()), "PUT ETag is the quoted MD5");

    let got = s3.get_object().bucket(&bucket).key("obj").send().await.expect("get");
    assert_eq!(got.content_length(), Some(5000));
    assert_eq!(got.e_tag(), Some(etag_of(&data).as_str()));
    assert!(got.last_modified().is_some(), "Last-Modified on GET");
    assert_bytes_eq(&body_bytes(got).await, &data, "GET body");

    let head = s3.head_object().bucket(&bucket).key("obj").send().await.expect("head");
    assert_eq!(head.content_length(), Some(5000));
    assert_eq!(head.e_tag(), Some(etag_of(&data).as_str()));

    s3.delete_object().bucket(&bucket).key("obj").send().await.expect("delete");
    expect_s3_error(s3.get_object().bucket(&bucket).key("obj").send().await, 404, Some("NoSuchKey"));
    expect_s3_error(s3.head_object().bucket(&bucket).key("obj").send().await, 404, None);
    // Deleting what is not there succeeds (204), as in S3.
    s3.delete_object().bucket(&bucket).key("obj").send().await.expect("delete of a missing key");
}

#[tokio::test]
async fn overwrite_and_read_after_delete() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    for (round, len) in [(1u64, 10usize), (2, 300 * KIB), (3, 7)].into_iter() {
        let data = random_bytes(len, round);
        s3.put_object().bucket(&bucket).key("k").body(ByteStream::from(data.clone())).send().await.expect("put");
        let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
        assert_bytes_eq(&got, &data, &format!("read after overwrite #{round}"));
    }
    s3.delete_object().bucket(&bucket).key("k").send().await.expect("delete");
    expect_s3_error(s3.get_object().bucket(&bucket).key("k").send().await, 404, Some("NoSuchKey"));
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    assert_eq!(listed.contents().len(), 0, "deleted key still listed");
    // A new object under the deleted key is served, not a stale one.
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"again")).send().await.expect("re-put");
    let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_eq!(got, b"again");
}

#[tokio::test]
async fn system_and_user_metadata_round_trip() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let expires = DateTime::from_secs(1_900_000_000);
    s3.put_object()
        .bucket(&bucket)
        .key("meta")
        .body(ByteStream::from_static(b"{\"a\":1}"))
        .content_type("application/json; charset=utf-8")
        .cache_control("max-age=3600, must-revalidate")
        .content_disposition("attachment; filename=\"report.json\"")
        .content_encoding("gzip")
        .expires(expires)
        .metadata("color", "blue")
        .metadata("Mixed-Case", "Value With Spaces")
        .send()
        .await
        .expect("put with metadata");

    let head = s3.head_object().bucket(&bucket).key("meta").send().await.expect("head");
    let got = s3.get_object().bucket(&bucket).key("meta").send().await.expect("get");
    for (what, ct, cc, cd, ce, ex, meta) in [
        (
            "HEAD",
            head.content_type(),
            head.cache_control(),
            head.content_disposition(),
            head.content_encoding(),
            head.expires_string(),
            head.metadata(),
        ),
        (
            "GET",
            got.content_type(),
            got.cache_control(),
            got.content_disposition(),
            got.content_encoding(),
            got.expires_string(),
            got.metadata(),
        ),
    ] {
        assert_eq!(ct, Some("application/json; charset=utf-8"), "{what} Content-Type");
        assert_eq!(cc, Some("max-age=3600, must-revalidate"), "{what} Cache-Control");
        assert_eq!(cd, Some("attachment; filename=\"report.json\""), "{what} Content-Disposition");
        assert_eq!(ce, Some("gzip"), "{what} Content-Encoding");
        let ex = ex.unwrap_or_else(|| panic!("{what} Expires missing"));
        let ex = httpdate::parse_http_date(ex).unwrap_or_else(|e| panic!("{what} Expires {ex:?}: {e}"));
        assert_eq!(ex, to_system_time(&expires), "{what} Expires");
        let meta = meta.unwrap_or_else(|| panic!("{what} has no x-amz-meta-*"));
        assert_eq!(meta.get("color").map(String::as_str), Some("blue"), "{what} x-amz-meta-color: {meta:?}");
        // Header names are case-insensitive: S3 stores and returns them lower-cased.
        assert_eq!(
            meta.get("mixed-case").map(String::as_str),
            Some("Value With Spaces"),
            "{what} x-amz-meta-mixed-case: {meta:?}"
        );
        assert_eq!(meta.len(), 2, "{what} metadata {meta:?}");
    }
    assert_eq!(body_bytes(got).await, b"{\"a\":1}");
}

#[tokio::test]
async fn streaming_upload_with_trailing_checksum() {
    // A body from a file is sent with `Content-Encoding: aws-chunked` and the
    // checksum in a trailer: the way the SDK uploads anything it cannot hash first.
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = random_bytes(3 * MIB + 12345, 7);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("upload.bin");
    std::fs::write(&path, &data).expect("write upload file");
    let body = ByteStream::from_path(&path).await.expect("file body");
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("streamed")
        .body(body)
        .content_encoding("gzip")
        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
        .send()
        .await
        .expect("streaming put");
    assert_eq!(put.e_tag(), Some(etag_of(&data).as_str()));
    let want = B64.encode(crc32c::crc32c(&data).to_be_bytes());
    assert_eq!(put.checksum_crc32_c(), Some(want.as_str()), "trailer checksum echoed");
    let got =
        s3.get_object().bucket(&bucket).key("streamed").checksum_mode(ChecksumMode::Enabled).send().await.expect("get");
    assert_eq!(got.content_length(), Some(data.len() as i64), "decoded length stored, not the chunked one");
    // aws-chunked is a transfer detail: only the user's encoding is stored.
    assert_eq!(got.content_encoding(), Some("gzip"));
    assert_eq!(got.checksum_crc32_c(), Some(want.as_str()));
    assert_bytes_eq(&body_bytes(got).await, &data, "streamed object");
}

#[tokio::test]
async fn content_md5_good_bad_and_malformed() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = random_bytes(200 * KIB, 2);
    let good = B64.encode(md5::Md5::digest(&data));
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key("good")
        .body(ByteStream::from(data.clone()))
        .content_md5(&good)
        .send()
        .await
        .expect("put with the right Content-MD5");
    assert_eq!(put.e_tag(), Some(etag_of(&data).as_str()));

    let wrong = B64.encode(md5::Md5::digest(b"something else"));
    expect_s3_error(
        s3.put_object().bucket(&bucket).key("bad").body(ByteStream::from(data.clone())).content_md5(wrong).send().await,
        400,
        Some("BadDigest"),
    );
    expect_s3_error(
        s3.put_object()
            .bucket(&bucket)
            .key("malformed")
            .body(ByteStream::from(data.clone()))
            .content_md5("not base64!")
            .send()
            .await,
        400,
        Some("InvalidDigest"),
    );
    // A rejected upload leaves nothing behind.
    expect_s3_error(s3.head_object().bucket(&bucket).key("bad").send().await, 404, None);
    expect_s3_error(s3.head_object().bucket(&bucket).key("malformed").send().await, 404, None);
}

#[tokio::test]
async fn flexible_checksums_are_stored_and_returned() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    // One small (inline) and one erasure-coded size.
    for (len, seed) in [(1000usize, 3u64), (300 * KIB, 4)] {
        let data = random_bytes(len, seed);
        let expected = [
            (ChecksumAlgorithm::Crc32, B64.encode(crc32fast::hash(&data).to_be_bytes())),
            (ChecksumAlgorithm::Crc32C, B64.encode(crc32c::crc32c(&data).to_be_bytes())),
            (ChecksumAlgorithm::Sha1, B64.encode(sha1::Sha1::digest(&data))),
            (ChecksumAlgorithm::Sha256, B64.encode(sha2::Sha256::digest(&data))),
        ];
        for (algo, want) in expected {
            let key = format!("{len}-{}", algo.as_str());
            let pick =
                |c32: Option<&str>, c32c: Option<&str>, s1: Option<&str>, s256: Option<&str>| -> Option<String> {
                    match algo {
                        ChecksumAlgorithm::Crc32 => c32,
                        ChecksumAlgorithm::Crc32C => c32c,
                        ChecksumAlgorithm::Sha1 => s1,
                        _ => s256,
                    }
                    .map(str::to_string)
                };
            let put = s3
                .put_object()
                .bucket(&bucket)
                .key(&key)
                .body(ByteStream::from(data.clone()))
                .checksum_algorithm(algo.clone())
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
            let got = pick(put.checksum_crc32(), put.checksum_crc32_c(), put.checksum_sha1(), put.checksum_sha256());
            assert_eq!(got.as_deref(), Some(want.as_str()), "PUT response checksum for {key}");

            let head = s3
                .head_object()
                .bucket(&bucket)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
            let got =
                pick(head.checksum_crc32(), head.checksum_crc32_c(), head.checksum_sha1(), head.checksum_sha256());
            assert_eq!(got.as_deref(), Some(want.as_str()), "HEAD checksum for {key}");

            let get = s3
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get {key}: {e:?}"));
            let got = pick(get.checksum_crc32(), get.checksum_crc32_c(), get.checksum_sha1(), get.checksum_sha256());
            assert_eq!(got.as_deref(), Some(want.as_str()), "GET checksum for {key}");
            // The SDK validates the returned checksum while reading the body.
            assert_bytes_eq(&body_bytes(get).await, &data, &key);
        }
    }
}

#[tokio::test]
async fn wrong_flexible_checksum_is_bad_digest() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = random_bytes(4000, 5);
    let wrong = B64.encode(crc32fast::hash(b"other data").to_be_bytes());
    expect_s3_error(
        s3.put_object().bucket(&bucket).key("k").body(ByteStream::from(data)).checksum_crc32(wrong).send().await,
        400,
        Some("BadDigest"),
    );
    expect_s3_error(s3.head_object().bucket(&bucket).key("k").send().await, 404, None);
}

/// Round-trips one object of `len` bytes and checks length, ETag and content.
async fn round_trip(server: &Server, bucket: &str, len: usize, seed: u64) {
    let s3 = server.client();
    let key = format!("size-{len}");
    let data = random_bytes(len, seed);
    let put = s3
        .put_object()
        .bucket(bucket)
        .key(&key)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {len} bytes: {e:?}"));
    assert_eq!(put.e_tag(), Some(etag_of(&data).as_str()), "ETag of {len} bytes");
    let head = s3.head_object().bucket(bucket).key(&key).send().await.expect("head");
    assert_eq!(head.content_length(), Some(len as i64), "HEAD Content-Length of {len} bytes");
    let got = s3.get_object().bucket(bucket).key(&key).send().await.unwrap_or_else(|e| panic!("get {len}: {e:?}"));
    assert_eq!(got.content_length(), Some(len as i64), "GET Content-Length of {len} bytes");
    assert_bytes_eq(&body_bytes(got).await, &data, &format!("{len}-byte object (seed {seed})"));
}

#[tokio::test]
async fn sizes_around_inline_piece_and_stripe_boundaries() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    let inline = INLINE_BYTES_MAX_DEFAULT;
    let sizes = [
        0,
        1,
        inline - 1,
        inline,
        inline + 1,
        256 * KIB - 1,
        256 * KIB,
        256 * KIB + 1,
        MIB - 1,
        MIB,
        MIB + 1,
        4 * MIB - 1,
        4 * MIB,
        4 * MIB + 1,
    ];
    for (i, len) in sizes.into_iter().enumerate() {
        round_trip(&server, &bucket, len, seed.wrapping_add(i as u64)).await;
    }
}

/// Uploads at once are hashed beside each other in SIMD lanes on their owner cores
/// (`s3::md5_lanes`): with 8 in flight each core holds several, of odd sizes that
/// end mid-block and at different times. Each ETag must still be its own body's MD5.
#[tokio::test]
async fn concurrent_uploads_each_get_their_own_md5() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    let sizes = (0..8).map(|i| 3 * MIB + i * 419_311 + 37);
    futures::future::join_all(
        sizes.enumerate().map(|(i, len)| round_trip(&server, &bucket, len, seed.wrapping_add(i as u64))),
    )
    .await;
}

#[tokio::test]
async fn empty_object() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let put =
        s3.put_object().bucket(&bucket).key("empty").body(ByteStream::from_static(b"")).send().await.expect("put");
    assert_eq!(put.e_tag(), Some("\"d41d8cd98f00b204e9800998ecf8427e\""), "MD5 of nothing");
    let got = s3.get_object().bucket(&bucket).key("empty").send().await.expect("get");
    assert_eq!(got.content_length(), Some(0));
    assert!(body_bytes(got).await.is_empty());
    // A raw GET sees 200 with an empty body (not 204, not 206).
    let r = server.raw_request("GET", &format!("/{bucket}/empty"), &[], &[], b"");
    assert_eq!(r.status, 200, "{}", r.summary());
    assert_eq!(r.header("content-length"), Some("0"));
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    assert_eq!(listed.contents().len(), 1);
    assert_eq!(listed.contents()[0].size(), Some(0));
}

#[tokio::test]
async fn twenty_mib_object_byte_for_byte() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    round_trip(&server, &bucket, 20 * MIB, seed).await;
}

#[tokio::test]
async fn missing_key_is_no_such_key() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    expect_s3_error(s3.get_object().bucket(&bucket).key("nope").send().await, 404, Some("NoSuchKey"));
    expect_s3_error(s3.head_object().bucket(&bucket).key("nope").send().await, 404, None);
    // The error body carries the key and a request id.
    let r = server.raw_request("GET", &format!("/{bucket}/nope/deeper"), &[], &[], b"");
    assert_eq!(r.status, 404);
    assert_eq!(r.xml_tag("Code").as_deref(), Some("NoSuchKey"), "{}", r.summary());
    assert!(r.header("x-amz-request-id").is_some(), "x-amz-request-id on errors: {:?}", r.headers);
}

fn ids(keys: &[&str]) -> Vec<ObjectIdentifier> {
    keys.iter().map(|k| ObjectIdentifier::builder().key(*k).build().expect("identifier")).collect()
}

#[tokio::test]
async fn delete_objects_batch_quiet_and_verbose() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    for i in 0..8 {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("o{i}"))
            .body(ByteStream::from(random_bytes(100 + i * 50_000, i as u64)))
            .send()
            .await
            .expect("put");
    }

    // Verbose: every requested key is reported deleted, including one that never
    // existed (S3 reports those as deleted too).
    let delete = Delete::builder().set_objects(Some(ids(&["o0", "o1", "o2", "never"]))).build().expect("delete");
    let out = s3.delete_objects().bucket(&bucket).delete(delete).send().await.expect("delete objects");
    let mut deleted: Vec<&str> = out.deleted().iter().filter_map(|d| d.key()).collect();
    deleted.sort();
    assert_eq!(deleted, ["never", "o0", "o1", "o2"]);
    assert!(out.errors().is_empty(), "errors {:?}", out.errors());

    // Quiet: successes are not reported.
    let delete = Delete::builder().set_objects(Some(ids(&["o3", "o4"]))).quiet(true).build().expect("delete");
    let out = s3.delete_objects().bucket(&bucket).delete(delete).send().await.expect("quiet delete");
    assert!(out.deleted().is_empty(), "quiet mode lists no deletions: {:?}", out.deleted());
    assert!(out.errors().is_empty(), "errors {:?}", out.errors());

    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys, ["o5", "o6", "o7"]);
    for k in ["o0", "o3"] {
        expect_s3_error(s3.get_object().bucket(&bucket).key(k).send().await, 404, Some("NoSuchKey"));
    }
}

#[tokio::test]
async fn copy_object_copy_and_replace_directives() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let src_bucket = server.new_bucket().await;
    let dst_bucket = server.new_bucket().await;
    let data = random_bytes(700 * KIB, 6);
    let src_key = "dir/source object+1";
    s3.put_object()
        .bucket(&src_bucket)
        .key(src_key)
        .body(ByteStream::from(data.clone()))
        .content_type("text/plain")
        .metadata("origin", "source")
        .send()
        .await
        .expect("put source");
    let copy_source = format!("{src_bucket}/{}", uri_encode(src_key, false));

    // COPY (the default) keeps the source's metadata.
    let out = s3
        .copy_object()
        .bucket(&dst_bucket)
        .key("copied")
        .copy_source(&copy_source)
        .metadata_directive(MetadataDirective::Copy)
        .send()
        .await
        .expect("copy");
    let result = out.copy_object_result().expect("CopyObjectResult");
    assert_eq!(result.e_tag(), Some(etag_of(&data).as_str()), "copy keeps the content ETag");
    assert!(result.last_modified().is_some());
    let got = s3.get_object().bucket(&dst_bucket).key("copied").send().await.expect("get copy");
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.metadata().and_then(|m| m.get("origin")).map(String::as_str), Some("source"));
    assert_bytes_eq(&body_bytes(got).await, &data, "COPY copy");

    // REPLACE takes the request's metadata instead.
    s3.copy_object()
        .bucket(&src_bucket)
        .key("replaced")
        .copy_source(&copy_source)
        .metadata_directive(MetadataDirective::Replace)
        .content_type("application/x-replaced")
        .metadata("origin", "replaced")
        .metadata("extra", "1")
        .send()
        .await
        .expect("copy with REPLACE");
    let got = s3.get_object().bucket(&src_bucket).key("replaced").send().await.expect("get replaced");
    assert_eq!(got.content_type(), Some("application/x-replaced"));
    let meta = got.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("origin").map(String::as_str), Some("replaced"), "{meta:?}");
    assert_eq!(meta.get("extra").map(String::as_str), Some("1"), "{meta:?}");
    assert_eq!(meta.len(), 2, "{meta:?}");
    assert_bytes_eq(&body_bytes(got).await, &data, "REPLACE copy");

    // Copying onto itself without REPLACE changes nothing and S3 refuses it.
    expect_s3_error(
        s3.copy_object().bucket(&src_bucket).key(src_key).copy_source(&copy_source).send().await,
        400,
        Some("InvalidRequest"),
    );
    // The source is untouched, and a missing source is NoSuchKey.
    let got = body_bytes(s3.get_object().bucket(&src_bucket).key(src_key).send().await.expect("get source")).await;
    assert_bytes_eq(&got, &data, "source after copies");
    expect_s3_error(
        s3.copy_object().bucket(&dst_bucket).key("x").copy_source(format!("{src_bucket}/missing")).send().await,
        404,
        Some("NoSuchKey"),
    );
}

#[tokio::test]
async fn awkward_keys_round_trip() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let keys = [
        "unicode/日本語/ключ-é",
        "with space/and  two  spaces ",
        "plus+sign+key",
        "percent%20is%not%2Fdecoded%",
        "double//slash///triple",
        "ends-with-slash/",
        "query?like=1&x#frag",
        "tilde~brackets[1]{2}(3)!$'*,;:@",
        "dots/./and/../segments",
        "emoji-🦀",
    ];
    for (i, key) in keys.iter().enumerate() {
        let data = format!("content of key #{i}: {key}").into_bytes();
        s3.put_object()
            .bucket(&bucket)
            .key(*key)
            .body(ByteStream::from(data.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key:?}: {e:?}"));
        let got =
            s3.get_object().bucket(&bucket).key(*key).send().await.unwrap_or_else(|e| panic!("get {key:?}: {e:?}"));
        assert_eq!(body_bytes(got).await, data, "content of {key:?}");
        s3.head_object().bucket(&bucket).key(*key).send().await.unwrap_or_else(|e| panic!("head {key:?}: {e:?}"));
    }
    let listed = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
    let mut listed: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
    let mut want: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    want.sort();
    listed.sort();
    assert_eq!(listed, want, "listing returns the exact keys");
    for key in keys {
        s3.delete_object().bucket(&bucket).key(key).send().await.unwrap_or_else(|e| panic!("delete {key:?}: {e:?}"));
        expect_s3_error(s3.get_object().bucket(&bucket).key(key).send().await, 404, Some("NoSuchKey"));
    }
    // `a//b` and `a/b` are different keys.
    s3.put_object().bucket(&bucket).key("a//b").body(ByteStream::from_static(b"two")).send().await.expect("put");
    expect_s3_error(s3.get_object().bucket(&bucket).key("a/b").send().await, 404, Some("NoSuchKey"));
}

#[tokio::test]
async fn get_object_attributes_is_refused_not_answered_with_the_object() {
    let server = Server::start_default().await;
    skip_if_external!(server, "checks that Tessera refuses what it does not implement");
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"bytes")).send().await.expect("put");
    expect_s3_error(
        s3.get_object_attributes()
            .bucket(&bucket)
            .key("k")
            .object_attributes(aws_sdk_s3::types::ObjectAttributes::Etag)
            .send()
            .await,
        501,
        Some("NotImplemented"),
    );
    let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_eq!(got, b"bytes");
}
