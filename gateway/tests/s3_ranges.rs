//! Range reads (single, suffix, open, clamped, unsatisfiable, multiple), If-Range,
//! partNumber reads, and conditional GET/HEAD/PUT.
mod common;

use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use common::*;

/// Puts an object and returns its bytes.
async fn put_random(server: &Server, bucket: &str, key: &str, len: usize, seed: u64) -> Vec<u8> {
    let data = random_bytes(len, seed);
    server
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(data.clone()))
        .send()
        .await
        .expect("put");
    data
}

/// GETs `range` with the SDK and checks Content-Range and the bytes `lo..=hi`.
async fn check_range(server: &Server, bucket: &str, key: &str, data: &[u8], range: &str, lo: usize, hi: usize) {
    let n = data.len();
    let got = server
        .client()
        .get_object()
        .bucket(bucket)
        .key(key)
        .range(range)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {key} {range}: {e:?}"));
    assert_eq!(got.content_range(), Some(format!("bytes {lo}-{hi}/{n}").as_str()), "Content-Range for {range}");
    assert_eq!(got.content_length(), Some((hi - lo + 1) as i64), "Content-Length for {range}");
    assert_bytes_eq(&body_bytes(got).await, &data[lo..=hi], &format!("{key} {range}"));
}

#[tokio::test]
async fn single_ranges_on_inline_and_erasure_coded_objects() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    for (key, n) in [("small", 1000usize), ("large", 600 * KIB + 7)] {
        let data = put_random(&server, &bucket, key, n, seed ^ n as u64).await;
        check_range(&server, &bucket, key, &data, "bytes=0-0", 0, 0).await;
        check_range(&server, &bucket, key, &data, "bytes=10-99", 10, 99).await;
        check_range(&server, &bucket, key, &data, &format!("bytes={}-", n - 10), n - 10, n - 1).await;
        check_range(&server, &bucket, key, &data, "bytes=-100", n - 100, n - 1).await;
        // A suffix longer than the object is the whole object.
        check_range(&server, &bucket, key, &data, &format!("bytes=-{}", n + 50), 0, n - 1).await;
        // An end past EOF is clamped to the last byte.
        check_range(&server, &bucket, key, &data, &format!("bytes=100-{}", n + 1000), 100, n - 1).await;
        check_range(&server, &bucket, key, &data, &format!("bytes={}-{}", n - 1, n - 1), n - 1, n - 1).await;
    }
    // Ranges across the erasure-coded object's 256 KiB piece boundaries.
    let data = body_bytes(server.client().get_object().bucket(&bucket).key("large").send().await.expect("get")).await;
    for (lo, hi) in [(256 * KIB - 3, 256 * KIB + 2), (100_000, 550_000), (512 * KIB, 512 * KIB)] {
        check_range(&server, &bucket, "large", &data, &format!("bytes={lo}-{hi}"), lo, hi).await;
    }
    // The raw answer is 206 with the headers a browser or curl relies on.
    let r = server.raw_request("GET", &format!("/{bucket}/large"), &[], &[("range", "bytes=5-14")], b"");
    assert_eq!(r.status, 206, "{}", r.summary());
    assert_eq!(r.header("content-range"), Some(format!("bytes 5-14/{}", data.len()).as_str()));
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(r.header("accept-ranges"), Some("bytes"));
    assert_eq!(r.body, &data[5..15]);
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_content_range() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let n = 300 * KIB;
    put_random(&server, &bucket, "obj", n, 1).await;
    let s3 = server.client();
    expect_s3_error(
        s3.get_object().bucket(&bucket).key("obj").range(format!("bytes={n}-")).send().await,
        416,
        Some("InvalidRange"),
    );
    expect_s3_error(
        s3.get_object().bucket(&bucket).key("obj").range(format!("bytes={}-{}", n + 10, n + 20)).send().await,
        416,
        Some("InvalidRange"),
    );
    let r = server.raw_request("GET", &format!("/{bucket}/obj"), &[], &[("range", &format!("bytes={n}-"))], b"");
    assert_eq!(r.status, 416, "{}", r.summary());
    assert_eq!(r.header("content-range"), Some(format!("bytes */{n}").as_str()), "{:?}", r.headers);
    assert_eq!(r.xml_tag("Code").as_deref(), Some("InvalidRange"), "{}", r.summary());

    // An empty object satisfies no range at all.
    put_random(&server, &bucket, "empty", 0, 2).await;
    let r = server.raw_request("GET", &format!("/{bucket}/empty"), &[], &[("range", "bytes=0-0")], b"");
    assert_eq!(r.status, 416, "{}", r.summary());
    assert_eq!(r.header("content-range"), Some("bytes */0"), "{:?}", r.headers);
}

/// One part of a `multipart/byteranges` body.
struct BytePart {
    content_range: String,
    data: Vec<u8>,
}

/// Parses a `multipart/byteranges` body, taking each part's length from its
/// Content-Range rather than searching for the boundary inside binary data.
fn parse_byteranges(body: &[u8], boundary: &str) -> Vec<BytePart> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = find_subslice(body, delimiter.as_bytes()).expect("first boundary");
    loop {
        pos += delimiter.len();
        if body[pos..].starts_with(b"--") {
            break; // closing delimiter
        }
        assert!(body[pos..].starts_with(b"\r\n"), "CRLF after boundary at {pos}");
        pos += 2;
        let headers_end = find_subslice(&body[pos..], b"\r\n\r\n").expect("end of part headers") + pos;
        let headers = std::str::from_utf8(&body[pos..headers_end]).expect("ascii part headers");
        let content_range = headers
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim().eq_ignore_ascii_case("content-range").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("part without Content-Range: {headers:?}"));
        let span = content_range.strip_prefix("bytes ").and_then(|r| r.split_once('/')).expect("bytes a-b/n").0;
        let (lo, hi) = span.split_once('-').expect("a-b");
        let len = hi.parse::<usize>().expect("b") - lo.parse::<usize>().expect("a") + 1;
        let data_start = headers_end + 4;
        let data = body[data_start..data_start + len].to_vec();
        pos = data_start + len;
        assert!(body[pos..].starts_with(b"\r\n"), "CRLF after part data at {pos}");
        pos += 2;
        assert!(body[pos..].starts_with(delimiter.as_bytes()), "boundary after part at {pos}");
        parts.push(BytePart { content_range, data });
    }
    parts
}

#[tokio::test]
async fn multiple_ranges_are_multipart_byteranges() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let n = 700 * KIB;
    let data = put_random(&server, &bucket, "obj", n, 3).await;
    // Disjoint and ascending: a server may merge overlapping or adjacent ranges.
    let range = format!("bytes=0-9,300000-300099,{}-{},-5", n - 1000, n - 901);
    let r = server.raw_request("GET", &format!("/{bucket}/obj"), &[], &[("range", &range)], b"");
    assert_eq!(r.status, 206, "{}", r.summary());
    let content_type = r.header("content-type").expect("Content-Type").to_string();
    let boundary = content_type
        .strip_prefix("multipart/byteranges")
        .and_then(|rest| rest.split(';').find_map(|p| p.trim().strip_prefix("boundary=")))
        .unwrap_or_else(|| panic!("multipart/byteranges with a boundary, got {content_type:?}"))
        .trim_matches('"')
        .to_string();
    if let Some(len) = r.header("content-length") {
        assert_eq!(len.parse::<usize>().ok(), Some(r.body.len()), "Content-Length matches the body");
    }
    let parts = parse_byteranges(&r.body, &boundary);
    let want = [(0, 9), (300_000, 300_099), (n - 1000, n - 901), (n - 5, n - 1)];
    assert_eq!(parts.len(), want.len(), "one part per range");
    for (part, (lo, hi)) in parts.iter().zip(want) {
        assert_eq!(part.content_range, format!("bytes {lo}-{hi}/{n}"));
        assert_bytes_eq(&part.data, &data[lo..=hi], &part.content_range);
    }
}

#[tokio::test]
async fn if_range_with_etag_and_date() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let n = 200 * KIB;
    let data = put_random(&server, &bucket, "obj", n, 4).await;
    let head = server.client().head_object().bucket(&bucket).key("obj").send().await.expect("head");
    let etag = head.e_tag().expect("etag").to_string();
    let last_modified = to_system_time(head.last_modified().expect("last modified"));
    let path = format!("/{bucket}/obj");
    let get = |if_range: &str| {
        server.raw_request("GET", &path, &[], &[("range", "bytes=10-19"), ("if-range", if_range)], b"")
    };

    // A matching validator: the range is served.
    for validator in [etag.clone(), http_date(last_modified)] {
        let r = get(&validator);
        assert_eq!(r.status, 206, "If-Range {validator}: {}", r.summary());
        assert_eq!(r.body, &data[10..20], "If-Range {validator}");
    }
    // A stale validator: the whole object instead.
    for validator in
        ["\"0123456789abcdef0123456789abcdef\"".to_string(), http_date(last_modified - Duration::from_secs(3600))]
    {
        let r = get(&validator);
        assert_eq!(r.status, 200, "If-Range {validator}: {}", r.summary());
        assert_bytes_eq(&r.body, &data, &format!("If-Range {validator}"));
    }
}

#[tokio::test]
async fn part_number_reads_of_a_multipart_object() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let part1 = random_bytes(5 * MIB, 5);
    let part2 = random_bytes(1234, 6);
    let upload = s3.create_multipart_upload().bucket(&bucket).key("mp").send().await.expect("create upload");
    let id = upload.upload_id().expect("upload id");
    let mut completed = Vec::new();
    for (i, part) in [&part1, &part2].into_iter().enumerate() {
        let n = i as i32 + 1;
        let out = s3
            .upload_part()
            .bucket(&bucket)
            .key("mp")
            .upload_id(id)
            .part_number(n)
            .body(ByteStream::from(part.clone()))
            .send()
            .await
            .expect("upload part");
        completed.push(CompletedPart::builder().part_number(n).e_tag(out.e_tag().expect("part etag")).build());
    }
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key("mp")
        .upload_id(id)
        .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(completed)).build())
        .send()
        .await
        .expect("complete");
    let total = part1.len() + part2.len();

    let got = s3.get_object().bucket(&bucket).key("mp").part_number(1).send().await.expect("get part 1");
    let parts_count = got.parts_count();
    assert_eq!(got.content_range(), Some(format!("bytes 0-{}/{total}", part1.len() - 1).as_str()));
    assert_bytes_eq(&body_bytes(got).await, &part1, "part 1");

    let got = s3.get_object().bucket(&bucket).key("mp").part_number(2).send().await.expect("get part 2");
    assert_eq!(got.content_range(), Some(format!("bytes {}-{}/{total}", part1.len(), total - 1).as_str()));
    assert_bytes_eq(&body_bytes(got).await, &part2, "part 2");

    let head = s3.head_object().bucket(&bucket).key("mp").part_number(2).send().await.expect("head part 2");
    assert_eq!(head.content_length(), Some(part2.len() as i64));

    expect_s3_error(
        s3.get_object().bucket(&bucket).key("mp").part_number(3).send().await,
        // 400 InvalidPart, as the ceph suite checks (AWS documents 416 InvalidPartNumber).
        400,
        Some("InvalidPart"),
    );
    assert_eq!(parts_count, Some(2), "x-amz-mp-parts-count on a partNumber GET");
    assert_eq!(head.parts_count(), Some(2), "x-amz-mp-parts-count on a partNumber HEAD");
}

#[tokio::test]
async fn conditional_get_and_head() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let data = put_random(&server, &bucket, "obj", 150 * KIB, 7).await;
    let head = s3.head_object().bucket(&bucket).key("obj").send().await.expect("head");
    let etag = head.e_tag().expect("etag").to_string();
    let lm = *head.last_modified().expect("last modified");
    let before = DateTime::from_secs(lm.secs() - 3600);
    let after = DateTime::from_secs(lm.secs() + 3600);
    let other = "\"00000000000000000000000000000000\"";
    let get = || s3.get_object().bucket(&bucket).key("obj");
    let head = || s3.head_object().bucket(&bucket).key("obj");

    // If-Match
    assert_bytes_eq(&body_bytes(get().if_match(&etag).send().await.expect("If-Match hit")).await, &data, "If-Match");
    head().if_match(&etag).send().await.expect("HEAD If-Match hit");
    expect_s3_error(get().if_match(other).send().await, 412, Some("PreconditionFailed"));
    expect_s3_error(head().if_match(other).send().await, 412, None);

    // If-None-Match
    expect_s3_error(get().if_none_match(&etag).send().await, 304, None);
    expect_s3_error(head().if_none_match(&etag).send().await, 304, None);
    get().if_none_match(other).send().await.expect("If-None-Match miss");
    head().if_none_match(other).send().await.expect("HEAD If-None-Match miss");

    // If-Modified-Since
    expect_s3_error(get().if_modified_since(lm).send().await, 304, None);
    // (A date in the future would be invalid and ignored, RFC 9110 13.1.3.)
    expect_s3_error(head().if_modified_since(lm).send().await, 304, None);
    get().if_modified_since(before).send().await.expect("modified since an hour before");
    head().if_modified_since(before).send().await.expect("HEAD modified since an hour before");

    // If-Unmodified-Since
    expect_s3_error(get().if_unmodified_since(before).send().await, 412, Some("PreconditionFailed"));
    expect_s3_error(head().if_unmodified_since(before).send().await, 412, None);
    get().if_unmodified_since(lm).send().await.expect("unmodified since its own Last-Modified");
    get().if_unmodified_since(after).send().await.expect("unmodified since an hour after");

    // S3's documented precedence: a true If-Match overrides a false
    // If-Unmodified-Since, a false If-None-Match overrides a true If-Modified-Since.
    get().if_match(&etag).if_unmodified_since(before).send().await.expect("If-Match wins over If-Unmodified-Since");
    expect_s3_error(get().if_none_match(&etag).if_modified_since(before).send().await, 304, None);

    // The raw 304 carries the ETag and no body.
    let r = server.raw_request("GET", &format!("/{bucket}/obj"), &[], &[("if-none-match", &etag)], b"");
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert!(r.body.is_empty());
    // Conditions on a missing key: the 404 comes first.
    expect_s3_error(
        s3.get_object().bucket(&bucket).key("missing").if_match(&etag).send().await,
        404,
        Some("NoSuchKey"),
    );
}

#[tokio::test]
async fn conditional_put_if_none_match_star() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let put = |body: &'static [u8]| {
        s3.put_object().bucket(&bucket).key("once").body(ByteStream::from_static(body)).if_none_match("*").send()
    };
    put(b"first").await.expect("If-None-Match: * on a new key");
    expect_s3_error(put(b"second").await, 412, Some("PreconditionFailed"));
    let got = body_bytes(s3.get_object().bucket(&bucket).key("once").send().await.expect("get")).await;
    assert_eq!(got, b"first", "the refused PUT changed nothing");
    // After a delete the key is free again.
    s3.delete_object().bucket(&bucket).key("once").send().await.expect("delete");
    put(b"third").await.expect("If-None-Match: * after delete");
    let got = body_bytes(s3.get_object().bucket(&bucket).key("once").send().await.expect("get")).await;
    assert_eq!(got, b"third");
}
