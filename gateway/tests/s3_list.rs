//! Listing: ListObjectsV2 (prefix, delimiter, pagination, start-after, fetch-owner,
//! encoding-type=url, empty delimiter), ListObjects v1 with markers, and
//! list-after-write.
mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::Client;
use common::*;

/// Bounds the number of PUTs in flight while filling a bucket.
const FILL_CONCURRENCY_MAX: usize = 16;

/// Puts `keys` (small bodies: the key itself) with a few requests in flight.
async fn fill(s3: &Client, bucket: &str, keys: &[String]) {
    let mut tasks = tokio::task::JoinSet::new();
    for key in keys {
        if tasks.len() >= FILL_CONCURRENCY_MAX {
            tasks.join_next().await.expect("a task").expect("put task");
        }
        let (s3, bucket, key) = (s3.clone(), bucket.to_string(), key.clone());
        tasks.spawn(async move {
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .body(ByteStream::from(key.clone().into_bytes()))
                .send()
                .await
                .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("put task");
    }
}

const TREE: [&str; 10] = [
    "a/b/c",
    "a/b/d",
    "a/e",
    "f",
    "g/h",
    "g/i/j",
    "photos/2024/feb.jpg",
    "photos/2024/jan.jpg",
    "photos/2025/mar.jpg",
    "readme",
];

async fn tree_bucket(server: &Server) -> String {
    let bucket = server.new_bucket().await;
    fill(&server.client(), &bucket, &TREE.map(String::from)).await;
    bucket
}

fn keys_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<String> {
    out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect()
}

fn prefixes_of(out: &aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output) -> Vec<String> {
    out.common_prefixes().iter().filter_map(|p| p.prefix().map(str::to_string)).collect()
}

#[tokio::test]
async fn list_v2_prefix_and_delimiter() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = tree_bucket(&server).await;
    let list = || s3.list_objects_v2().bucket(&bucket);

    let out = list().send().await.expect("list all");
    assert_eq!(keys_of(&out), TREE, "all keys in UTF-8 byte order");
    assert_eq!(out.key_count(), Some(10));
    assert_eq!(out.is_truncated(), Some(false));

    let out = list().prefix("photos/").send().await.expect("prefix");
    assert_eq!(keys_of(&out), ["photos/2024/feb.jpg", "photos/2024/jan.jpg", "photos/2025/mar.jpg"]);
    assert_eq!(out.prefix(), Some("photos/"));

    let out = list().delimiter("/").send().await.expect("delimiter");
    assert_eq!(keys_of(&out), ["f", "readme"]);
    assert_eq!(prefixes_of(&out), ["a/", "g/", "photos/"]);
    assert_eq!(out.key_count(), Some(5), "KeyCount counts keys and common prefixes");
    assert_eq!(out.delimiter(), Some("/"));

    let out = list().prefix("photos/").delimiter("/").send().await.expect("prefix + delimiter");
    assert!(keys_of(&out).is_empty(), "{:?}", keys_of(&out));
    assert_eq!(prefixes_of(&out), ["photos/2024/", "photos/2025/"]);

    let out = list().prefix("a/b/").delimiter("/").send().await.expect("deeper prefix");
    assert_eq!(keys_of(&out), ["a/b/c", "a/b/d"]);
    assert!(prefixes_of(&out).is_empty());

    // A prefix that is a whole key and a partial path component.
    let out = list().prefix("g/i").delimiter("/").send().await.expect("partial component");
    assert_eq!(prefixes_of(&out), ["g/i/"]);
    let out = list().prefix("f").send().await.expect("prefix equal to a key");
    assert_eq!(keys_of(&out), ["f"]);

    let out = list().prefix("zzz").send().await.expect("no match");
    assert!(out.contents().is_empty() && out.common_prefixes().is_empty());
    assert_eq!(out.key_count(), Some(0));
    assert_eq!(out.is_truncated(), Some(false));

    // Common prefixes count toward max-keys: walking the delimited listing two
    // entries at a time yields exactly the one-page answer.
    let mut entries = Vec::new();
    let mut token: Option<String> = None;
    for page in 0.. {
        assert!(page < 10, "pagination does not end");
        let out = list().delimiter("/").max_keys(2).set_continuation_token(token.clone()).send().await.expect("page");
        let n = out.contents().len() + out.common_prefixes().len();
        assert!(n <= 2, "page of {n} entries with max-keys 2");
        entries.extend(keys_of(&out));
        entries.extend(prefixes_of(&out));
        if out.is_truncated() != Some(true) {
            break;
        }
        token = Some(out.next_continuation_token().expect("next token when truncated").to_string());
    }
    entries.sort();
    assert_eq!(entries, ["a/", "f", "g/", "photos/", "readme"]);
}

#[tokio::test]
async fn list_v2_empty_delimiter_means_none() {
    let server = Server::start_default().await;
    let bucket = tree_bucket(&server).await;
    let out = server.client().list_objects_v2().bucket(&bucket).delimiter("").send().await.expect("list");
    assert_eq!(keys_of(&out), TREE);
    assert!(out.common_prefixes().is_empty(), "{:?}", out.common_prefixes());
}

#[tokio::test]
async fn pagination_start_after_fetch_owner_and_v1_markers() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let keys: Vec<String> = (0..250).map(|i| format!("k/{i:04}")).collect();
    fill(&s3, &bucket, &keys).await;

    // V2: max-keys 100 walks 100 + 100 + 50 with continuation tokens.
    let mut listed = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(&bucket)
            .max_keys(100)
            .set_continuation_token(token.clone())
            .send()
            .await
            .expect("list page");
        assert_eq!(out.continuation_token(), token.as_deref(), "ContinuationToken echoed");
        assert_eq!(out.max_keys(), Some(100));
        pages.push(out.contents().len());
        listed.extend(keys_of(&out));
        if out.is_truncated() != Some(true) {
            assert!(out.next_continuation_token().is_none(), "no next token on the last page");
            break;
        }
        token = Some(out.next_continuation_token().expect("next token").to_string());
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, [100, 100, 50]);
    assert_eq!(listed, keys, "every key once, in order");

    // Entries carry size and ETag.
    let out = s3.list_objects_v2().bucket(&bucket).prefix("k/0007").send().await.expect("list one");
    let entry = &out.contents()[0];
    assert_eq!(entry.size(), Some(6));
    assert_eq!(entry.e_tag(), Some(etag_of(b"k/0007").as_str()));
    assert!(entry.last_modified().is_some());

    // One page of up to 1000 by default.
    let out = s3.list_objects_v2().bucket(&bucket).send().await.expect("default page");
    assert_eq!(out.contents().len(), 250);
    assert_eq!(out.is_truncated(), Some(false));

    // start-after: strictly after, and need not be an existing key.
    let out = s3.list_objects_v2().bucket(&bucket).start_after("k/0199").send().await.expect("start-after");
    assert_eq!(keys_of(&out), &keys[200..]);
    assert_eq!(out.start_after(), Some("k/0199"));
    let out =
        s3.list_objects_v2().bucket(&bucket).start_after("k/0199x").max_keys(3).send().await.expect("start-after");
    assert_eq!(keys_of(&out), &keys[200..203]);

    // fetch-owner: the owner only when asked for (V2 omits it by default).
    let out = s3.list_objects_v2().bucket(&bucket).max_keys(1).fetch_owner(true).send().await.expect("fetch-owner");
    let owner = out.contents()[0].owner().expect("Owner with fetch-owner=true");
    assert!(owner.id().is_some_and(|id| !id.is_empty()), "owner id {owner:?}");
    let out = s3.list_objects_v2().bucket(&bucket).max_keys(1).send().await.expect("no fetch-owner");
    assert!(out.contents()[0].owner().is_none(), "no Owner without fetch-owner: {:?}", out.contents()[0]);

    // V1: markers. NextMarker is only sent with a delimiter, so the next marker is
    // the last key of the page, as clients do.
    let mut listed = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let out =
            s3.list_objects().bucket(&bucket).max_keys(100).set_marker(marker.clone()).send().await.expect("v1 page");
        assert_eq!(out.marker().unwrap_or_default(), marker.as_deref().unwrap_or_default(), "Marker echoed");
        let page: Vec<String> = out.contents().iter().filter_map(|o| o.key().map(str::to_string)).collect();
        listed.extend(page.iter().cloned());
        if out.is_truncated() != Some(true) {
            break;
        }
        marker = Some(page.last().expect("a truncated page has keys").clone());
        assert!(listed.len() <= keys.len(), "v1 pagination repeats keys");
    }
    assert_eq!(listed, keys, "v1 walk");
    let out = s3.list_objects().bucket(&bucket).marker("k/0099").max_keys(5).send().await.expect("v1 marker");
    let page: Vec<&str> = out.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(page, ["k/0100", "k/0101", "k/0102", "k/0103", "k/0104"]);
    assert_eq!(out.is_truncated(), Some(true));
    // With a delimiter, a truncated V1 page names its NextMarker.
    let out = s3.list_objects().bucket(&bucket).delimiter("/").prefix("k/").max_keys(10).send().await.expect("v1");
    assert_eq!(out.is_truncated(), Some(true));
    let next = out.next_marker().expect("NextMarker on a truncated delimited V1 page");
    let out = s3.list_objects().bucket(&bucket).marker(next).max_keys(1).send().await.expect("v1 from NextMarker");
    assert_eq!(out.contents().first().and_then(|o| o.key()), Some("k/0010"), "NextMarker {next:?} resumes the walk");
}

#[tokio::test]
async fn encoding_type_url_escapes_keys_and_prefixes() {
    let server = Server::start_default().await;
    let bucket = server.new_bucket().await;
    let keys = ["sp ace/ü.txt", "plain", "ctl\u{1}char", "amp&lt<gt>"].map(String::from);
    fill(&server.client(), &bucket, &keys).await;

    let r = server.raw_request("GET", &format!("/{bucket}"), &[("list-type", "2"), ("encoding-type", "url")], &[], b"");
    assert_eq!(r.status, 200, "{}", r.summary());
    let xml = r.text();
    assert_eq!(xml_tag(&xml, "EncodingType").as_deref(), Some("url"), "{xml}");
    let raw_keys = xml_tags(&xml, "Key");
    for k in &raw_keys {
        assert!(!k.contains(' ') && k.is_ascii() && !k.contains('\u{1}'), "key not URL-encoded: {k:?}");
    }
    // S3 encodes like a form (space as `+` or `%20`); none of the keys has a `+`.
    let mut decoded: Vec<String> = raw_keys.iter().map(|k| percent_decode(k, true)).collect();
    decoded.sort();
    let mut want = keys.to_vec();
    want.sort();
    assert_eq!(decoded, want, "{xml}");

    let r = server.raw_request(
        "GET",
        &format!("/{bucket}"),
        &[("list-type", "2"), ("encoding-type", "url"), ("delimiter", "/"), ("prefix", "sp ace")],
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.summary());
    let xml = r.text();
    let prefixes = xml_tags(&xml, "Prefix");
    // <Prefix> of the request and of the CommonPrefixes entry, both encoded.
    assert!(prefixes.iter().all(|p| !p.contains(' ')), "{xml}");
    assert!(prefixes.iter().any(|p| percent_decode(p, true) == "sp ace/"), "{xml}");
    // Without encoding-type the key comes back as escaped XML text.
    let r = server.raw_request("GET", &format!("/{bucket}"), &[("list-type", "2"), ("prefix", "amp")], &[], b"");
    let key = xml_tag(&r.text(), "Key").unwrap_or_else(|| panic!("a Key: {}", r.summary()));
    assert!(!key.contains('<'), "escaped: {key:?}");
    assert_eq!(xml_unescape(&key), "amp&lt<gt>", "{}", r.summary());
}

#[tokio::test]
async fn list_after_write_overwrite_and_delete() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let list = || async {
        let out = s3.list_objects_v2().bucket(&bucket).send().await.expect("list");
        out.contents()
            .iter()
            .map(|o| (o.key().unwrap_or_default().to_string(), o.size().unwrap_or(-1)))
            .collect::<Vec<_>>()
    };
    assert!(list().await.is_empty());
    s3.put_object().bucket(&bucket).key("x").body(ByteStream::from(vec![1u8; 10])).send().await.expect("put");
    assert_eq!(list().await, [("x".to_string(), 10)]);
    s3.put_object().bucket(&bucket).key("x").body(ByteStream::from(vec![1u8; 200_000])).send().await.expect("put");
    assert_eq!(list().await, [("x".to_string(), 200_000)], "overwrite shows the new size");
    s3.put_object().bucket(&bucket).key("w").body(ByteStream::from_static(b"")).send().await.expect("put");
    assert_eq!(list().await, [("w".to_string(), 0), ("x".to_string(), 200_000)]);
    s3.delete_object().bucket(&bucket).key("x").send().await.expect("delete");
    assert_eq!(list().await, [("w".to_string(), 0)]);
    // Concurrent writers: every acknowledged PUT is listed right after.
    let keys: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
    fill(&s3, &bucket, &keys).await;
    let listed: Vec<String> = list().await.into_iter().map(|(k, _)| k).filter(|k| k.starts_with('c')).collect();
    assert_eq!(listed, keys);
}
