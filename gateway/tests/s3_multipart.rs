//! Multipart uploads: the full flow with ListParts and ListMultipartUploads, the
//! multipart ETag, abort, the ways CompleteMultipartUpload is refused,
//! UploadPartCopy with a range, and an upload that spans a server restart.
mod common;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use common::*;

async fn create(s3: &Client, bucket: &str, key: &str) -> String {
    let out = s3.create_multipart_upload().bucket(bucket).key(key).send().await.expect("create multipart upload");
    assert_eq!(out.bucket(), Some(bucket));
    assert_eq!(out.key(), Some(key));
    out.upload_id().expect("upload id").to_string()
}

async fn upload(s3: &Client, bucket: &str, key: &str, id: &str, n: i32, data: &[u8]) -> String {
    let out = s3
        .upload_part()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .part_number(n)
        .body(ByteStream::from(data.to_vec()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload part {n}: {e:?}"));
    let etag = out.e_tag().expect("part ETag").to_string();
    assert_eq!(etag, etag_of(data), "part {n} ETag is its MD5");
    etag
}

fn completed(parts: &[(i32, &str)]) -> CompletedMultipartUpload {
    let parts = parts.iter().map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(*etag).build()).collect();
    CompletedMultipartUpload::builder().set_parts(Some(parts)).build()
}

#[tokio::test]
async fn three_part_upload_list_parts_list_uploads_and_etag() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let seed = fresh_seed();
    eprintln!("seed {seed}");
    let parts = [random_bytes(5 * MIB, seed), random_bytes(5 * MIB, seed + 1), random_bytes(MIB, seed + 2)];
    let key = "big/object";
    let id = create(&s3, &bucket, key).await;
    let other_id = create(&s3, &bucket, "other").await;

    // Part 2 is first uploaded with other bytes: the last upload of a number wins.
    upload(&s3, &bucket, key, &id, 2, &random_bytes(5 * MIB, seed + 99)).await;
    let mut etags = Vec::new();
    for (i, data) in parts.iter().enumerate() {
        etags.push(upload(&s3, &bucket, key, &id, i as i32 + 1, data).await);
    }

    let listed = s3.list_parts().bucket(&bucket).key(key).upload_id(&id).send().await.expect("list parts");
    let got: Vec<(i32, i64, String)> = listed
        .parts()
        .iter()
        .map(|p| (p.part_number().unwrap_or(0), p.size().unwrap_or(0), p.e_tag().unwrap_or_default().to_string()))
        .collect();
    let want: Vec<(i32, i64, String)> =
        parts.iter().zip(&etags).enumerate().map(|(i, (d, e))| (i as i32 + 1, d.len() as i64, e.clone())).collect();
    assert_eq!(got, want, "ListParts");
    assert_eq!(listed.upload_id(), Some(id.as_str()));
    let listed = s3.list_parts().bucket(&bucket).key(key).upload_id(&id).max_parts(2).send().await.expect("page");
    assert_eq!(listed.parts().len(), 2);
    assert_eq!(listed.is_truncated(), Some(true));
    assert_eq!(listed.next_part_number_marker(), Some("2"));

    let uploads = s3.list_multipart_uploads().bucket(&bucket).send().await.expect("list uploads");
    let mut got: Vec<(String, String)> = uploads
        .uploads()
        .iter()
        .map(|u| (u.key().unwrap_or_default().to_string(), u.upload_id().unwrap_or_default().to_string()))
        .collect();
    got.sort();
    assert_eq!(got, [(key.to_string(), id.clone()), ("other".to_string(), other_id.clone())]);
    let uploads = s3.list_multipart_uploads().bucket(&bucket).prefix("big/").send().await.expect("list uploads");
    assert_eq!(uploads.uploads().len(), 1, "prefix filter: {:?}", uploads.uploads());

    // The object does not exist before completion.
    expect_s3_error(s3.head_object().bucket(&bucket).key(key).send().await, 404, None);

    let list: Vec<(i32, &str)> = etags.iter().enumerate().map(|(i, e)| (i as i32 + 1, e.as_str())).collect();
    let done = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key(key)
        .upload_id(&id)
        .multipart_upload(completed(&list))
        .send()
        .await
        .expect("complete");
    let want_etag = multipart_etag(&[&parts[0], &parts[1], &parts[2]]);
    assert!(want_etag.ends_with("-3\""));
    assert_eq!(done.e_tag(), Some(want_etag.as_str()), "multipart ETag");
    assert_eq!(done.key(), Some(key));

    let head = s3.head_object().bucket(&bucket).key(key).send().await.expect("head");
    assert_eq!(head.content_length(), Some(11 * MIB as i64));
    assert_eq!(head.e_tag(), Some(want_etag.as_str()));
    let got = body_bytes(s3.get_object().bucket(&bucket).key(key).send().await.expect("get")).await;
    assert_bytes_eq(&got, &parts.concat(), "completed object");

    // The upload is gone; the other one is still listed.
    let uploads = s3.list_multipart_uploads().bucket(&bucket).send().await.expect("list uploads");
    let ids: Vec<&str> = uploads.uploads().iter().filter_map(|u| u.upload_id()).collect();
    assert_eq!(ids, [other_id.as_str()]);
    expect_s3_error(s3.list_parts().bucket(&bucket).key(key).upload_id(&id).send().await, 404, Some("NoSuchUpload"));
    s3.abort_multipart_upload().bucket(&bucket).key("other").upload_id(&other_id).send().await.expect("abort other");
}

#[tokio::test]
async fn abort_then_no_such_upload() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let id = create(&s3, &bucket, "k").await;
    let part = random_bytes(MIB, 1);
    let etag = upload(&s3, &bucket, "k", &id, 1, &part).await;
    s3.abort_multipart_upload().bucket(&bucket).key("k").upload_id(&id).send().await.expect("abort");

    expect_s3_error(s3.list_parts().bucket(&bucket).key("k").upload_id(&id).send().await, 404, Some("NoSuchUpload"));
    expect_s3_error(
        s3.upload_part()
            .bucket(&bucket)
            .key("k")
            .upload_id(&id)
            .part_number(2)
            .body(ByteStream::from_static(b"late"))
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
    );
    expect_s3_error(
        s3.complete_multipart_upload()
            .bucket(&bucket)
            .key("k")
            .upload_id(&id)
            .multipart_upload(completed(&[(1, &etag)]))
            .send()
            .await,
        404,
        Some("NoSuchUpload"),
    );
    expect_s3_error(s3.head_object().bucket(&bucket).key("k").send().await, 404, None);
    let uploads = s3.list_multipart_uploads().bucket(&bucket).send().await.expect("list uploads");
    assert!(uploads.uploads().is_empty(), "{:?}", uploads.uploads());
    // An upload id that never existed.
    expect_s3_error(
        s3.list_parts().bucket(&bucket).key("k").upload_id("no-such-upload-id").send().await,
        404,
        Some("NoSuchUpload"),
    );
}

#[tokio::test]
async fn complete_is_refused_for_small_wrong_or_unordered_parts() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let id = create(&s3, &bucket, "k").await;
    let small1 = random_bytes(MIB, 1);
    let small2 = random_bytes(MIB, 2);
    let e1 = upload(&s3, &bucket, "k", &id, 1, &small1).await;
    let e2 = upload(&s3, &bucket, "k", &id, 2, &small2).await;
    let big3 = random_bytes(5 * MIB, 3);
    let e3 = upload(&s3, &bucket, "k", &id, 3, &big3).await;
    let complete = |parts: CompletedMultipartUpload| {
        s3.complete_multipart_upload().bucket(&bucket).key("k").upload_id(&id).multipart_upload(parts).send()
    };

    // A part under 5 MiB that is not the last.
    expect_s3_error(complete(completed(&[(1, &e1), (2, &e2)])).await, 400, Some("EntityTooSmall"));
    // A wrong ETag, and a part number never uploaded.
    let wrong = etag_of(b"not this part");
    expect_s3_error(complete(completed(&[(1, &wrong)])).await, 400, Some("InvalidPart"));
    expect_s3_error(complete(completed(&[(7, &e1)])).await, 400, Some("InvalidPart"));
    // Parts out of ascending order (sizes valid in either order: 5 MiB, then the
    // last part), and a part number given twice.
    expect_s3_error(complete(completed(&[(3, &e3), (2, &e2)])).await, 400, Some("InvalidPartOrder"));
    expect_s3_error(complete(completed(&[(3, &e3), (3, &e3)])).await, 400, Some("InvalidPartOrder"));

    // None of the refusals consumed the upload: a valid completion still works.
    let done = complete(completed(&[(2, &e2)])).await.expect("single (last) small part completes");
    assert_eq!(done.e_tag(), Some(multipart_etag(&[&small2]).as_str()));
    let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_bytes_eq(&got, &small2, "object from part 2 alone");
}

#[tokio::test]
async fn upload_part_copy_with_a_range() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    let source = random_bytes(7 * MIB, 3);
    s3.put_object().bucket(&bucket).key("src").body(ByteStream::from(source.clone())).send().await.expect("put");
    let id = create(&s3, &bucket, "dst").await;

    let (lo, hi) = (MIB, 6 * MIB - 1);
    let out = s3
        .upload_part_copy()
        .bucket(&bucket)
        .key("dst")
        .upload_id(&id)
        .part_number(1)
        .copy_source(format!("{bucket}/src"))
        .copy_source_range(format!("bytes={lo}-{hi}"))
        .send()
        .await
        .expect("upload part copy");
    let e1 = out.copy_part_result().and_then(|r| r.e_tag()).expect("CopyPartResult ETag").to_string();
    assert_eq!(e1, etag_of(&source[lo..=hi]), "copied part ETag is the MD5 of the range");
    let tail = random_bytes(100 * KIB, 4);
    let e2 = upload(&s3, &bucket, "dst", &id, 2, &tail).await;
    // A range outside the source is refused.
    expect_s3_error(
        s3.upload_part_copy()
            .bucket(&bucket)
            .key("dst")
            .upload_id(&id)
            .part_number(3)
            .copy_source(format!("{bucket}/src"))
            .copy_source_range(format!("bytes={}-{}", 7 * MIB, 8 * MIB))
            .send()
            .await,
        // InvalidRange as the ceph suite checks (it accepts 400 or 416; 416 is what a
        // range past the end is everywhere else).
        416,
        Some("InvalidRange"),
    );

    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key("dst")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .expect("complete");
    let got = body_bytes(s3.get_object().bucket(&bucket).key("dst").send().await.expect("get")).await;
    let mut want = source[lo..=hi].to_vec();
    want.extend_from_slice(&tail);
    assert_bytes_eq(&got, &want, "object built from a copied range and an upload");
}

#[tokio::test]
async fn upload_survives_a_restart() {
    let mut server = Server::start_default().await;
    skip_if_external!(server, "needs a server restart");
    let bucket = server.new_bucket().await;
    let part1 = random_bytes(5 * MIB, 5);
    let part2 = random_bytes(2 * MIB + 3, 6);
    let id = create(&server.client(), &bucket, "k").await;
    let e1 = upload(&server.client(), &bucket, "k", &id, 1, &part1).await;

    server.restart().await;
    let s3 = server.client();
    let listed =
        s3.list_parts().bucket(&bucket).key("k").upload_id(&id).send().await.expect("list parts after restart");
    assert_eq!(listed.parts().len(), 1);
    assert_eq!(listed.parts()[0].e_tag(), Some(e1.as_str()));
    let e2 = upload(&s3, &bucket, "k", &id, 2, &part2).await;
    let done = s3
        .complete_multipart_upload()
        .bucket(&bucket)
        .key("k")
        .upload_id(&id)
        .multipart_upload(completed(&[(1, &e1), (2, &e2)]))
        .send()
        .await
        .expect("complete after restart");
    assert_eq!(done.e_tag(), Some(multipart_etag(&[&part1, &part2]).as_str()));

    server.restart().await;
    let got = body_bytes(server.client().get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_bytes_eq(&got, &[part1, part2].concat(), "completed object after a second restart");
}
