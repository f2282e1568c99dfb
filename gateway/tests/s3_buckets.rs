//! Bucket operations through aws-sdk-s3: create, head, list, location, delete, and
//! the S3 error codes for the ways they fail.
mod common;

use aws_sdk_s3::primitives::ByteStream;
use common::*;

#[tokio::test]
async fn create_head_list_location_delete() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = random_bucket();

    s3.create_bucket().bucket(&bucket).send().await.expect("create bucket");
    s3.head_bucket().bucket(&bucket).send().await.expect("head existing bucket");

    let listed = s3.list_buckets().send().await.expect("list buckets");
    let names: Vec<&str> = listed.buckets().iter().filter_map(|b| b.name()).collect();
    assert!(names.contains(&bucket.as_str()), "{bucket} in {names:?}");
    let entry = listed.buckets().iter().find(|b| b.name() == Some(bucket.as_str())).expect("listed");
    assert!(entry.creation_date().is_some(), "creation date listed: {entry:?}");

    // us-east-1 buckets answer an empty LocationConstraint (the S3 convention); a
    // server that names the region explicitly is also accepted.
    let loc = s3.get_bucket_location().bucket(&bucket).send().await.expect("get location");
    let constraint = loc.location_constraint().map(|c| c.as_str().to_string()).unwrap_or_default();
    assert!(constraint.is_empty() || constraint == REGION, "location {constraint:?}");

    s3.delete_bucket().bucket(&bucket).send().await.expect("delete empty bucket");
    expect_s3_error(s3.head_bucket().bucket(&bucket).send().await, 404, None);
    let listed = s3.list_buckets().send().await.expect("list buckets");
    assert!(!listed.buckets().iter().any(|b| b.name() == Some(bucket.as_str())), "deleted bucket still listed");
}

#[tokio::test]
async fn delete_non_empty_bucket_is_bucket_not_empty() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"x")).send().await.expect("put");

    expect_s3_error(s3.delete_bucket().bucket(&bucket).send().await, 409, Some("BucketNotEmpty"));
    // The failed delete left bucket and object alone.
    s3.head_bucket().bucket(&bucket).send().await.expect("bucket still there");
    s3.head_object().bucket(&bucket).key("k").send().await.expect("object still there");

    s3.delete_object().bucket(&bucket).key("k").send().await.expect("delete object");
    s3.delete_bucket().bucket(&bucket).send().await.expect("delete now-empty bucket");
}

#[tokio::test]
async fn invalid_bucket_names_are_rejected() {
    let server = Server::start_default().await;
    // Raw requests: the SDK's endpoint rules would refuse some of these names itself,
    // and the point is what the server says.
    let too_long = "a".repeat(64);
    let bad = [
        "ab",              // shorter than 3
        too_long.as_str(), // longer than 63
        "UpperCase",       // upper case
        "under_score",     // underscore
        "-leading-dash",   // must start with a letter or digit
        "trailing-dash-",  // must end with a letter or digit
        "two..dots",       // adjacent periods
        "192.168.5.4",     // formatted as an IP address
        "sp ace",          // space
    ];
    // Every name is tried before failing, so one run shows all the names let through.
    let mut wrong = Vec::new();
    for name in bad {
        let r = server.raw_request("PUT", &format!("/{name}"), &[], &[], b"");
        if r.status != 400 || r.xml_tag("Code").as_deref() != Some("InvalidBucketName") {
            wrong.push(format!("{name:?}: {} {}", r.status, r.text()));
        }
    }
    assert!(wrong.is_empty(), "not rejected with 400 InvalidBucketName:\n{}", wrong.join("\n"));
    // None of them exists afterwards.
    let listed = server.client().list_buckets().send().await.expect("list buckets");
    for b in listed.buckets() {
        assert!(!bad.contains(&b.name().unwrap_or_default()), "invalid bucket {:?} was created", b.name());
    }
}

#[tokio::test]
async fn missing_bucket_is_no_such_bucket() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = random_bucket();
    expect_s3_error(s3.head_bucket().bucket(&bucket).send().await, 404, None);
    expect_s3_error(s3.list_objects_v2().bucket(&bucket).send().await, 404, Some("NoSuchBucket"));
    expect_s3_error(s3.delete_bucket().bucket(&bucket).send().await, 404, Some("NoSuchBucket"));
    expect_s3_error(s3.get_object().bucket(&bucket).key("k").send().await, 404, Some("NoSuchBucket"));
    expect_s3_error(
        s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"x")).send().await,
        404,
        Some("NoSuchBucket"),
    );
    expect_s3_error(s3.get_bucket_location().bucket(&bucket).send().await, 404, Some("NoSuchBucket"));
}

#[tokio::test]
async fn recreating_your_own_bucket_succeeds_and_keeps_it() {
    let server = Server::start_default().await;
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"keep")).send().await.expect("put");
    // us-east-1 semantics, which the ceph suite checks: the owner's re-create is a
    // no-op 200 (one owner per server: BucketAlreadyExists cannot happen).
    s3.create_bucket().bucket(&bucket).send().await.expect("re-create own bucket");
    // The second create did not reset the bucket.
    let got = body_bytes(s3.get_object().bucket(&bucket).key("k").send().await.expect("get")).await;
    assert_eq!(got, b"keep");
}

#[tokio::test]
async fn acls_are_the_owners_full_control_and_only_private_can_be_set() {
    let server = Server::start_default().await;
    skip_if_external!(server, "checks Tessera's single-owner ACL answers");
    let s3 = server.client();
    let bucket = server.new_bucket().await;
    s3.put_object().bucket(&bucket).key("k").body(ByteStream::from_static(b"x")).send().await.expect("put");
    let acl = s3.get_bucket_acl().bucket(&bucket).send().await.expect("get bucket acl");
    assert_eq!(acl.grants().len(), 1);
    assert_eq!(acl.grants()[0].permission().map(|p| p.as_str()), Some("FULL_CONTROL"));
    let acl = s3.get_object_acl().bucket(&bucket).key("k").send().await.expect("get object acl");
    assert!(acl.owner().and_then(|o| o.id()).is_some_and(|id| !id.is_empty()));
    s3.put_object_acl()
        .bucket(&bucket)
        .key("k")
        .acl(aws_sdk_s3::types::ObjectCannedAcl::Private)
        .send()
        .await
        .expect("private is what it is already");
    expect_s3_error(
        s3.put_bucket_acl().bucket(&bucket).acl(aws_sdk_s3::types::BucketCannedAcl::PublicRead).send().await,
        501,
        Some("NotImplemented"),
    );
    expect_s3_error(s3.get_object_acl().bucket(&bucket).key("missing").send().await, 404, Some("NoSuchKey"));
    // Still private: an unsigned read is refused.
    let r = server.raw_unsigned("GET", &format!("/{bucket}/k"), &[], &[], b"");
    assert_eq!(r.status, 403);
}
