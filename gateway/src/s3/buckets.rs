//! Bucket handlers and listings. The bucket catalogue's owner is core 0; every
//! core holds a copy, updated before a create or delete is acknowledged, so any
//! core answers "does this bucket exist" from its own memory. A cluster gateway
//! keeps the catalogue in etcd and lists over every partition ([`super::cluster`]).
use std::rc::Rc;

use http::StatusCode;
use tessera_engine::object::ListItem;

use super::error::{S3Error, S3ErrorCode};
use super::owner::object_error;
use super::service::{Gateway, Req, Resp};
use super::xml::{self, KeyEncoding, ObjectEntry, Owner};

/// Keys per listing page (S3's maximum).
pub const LIST_KEYS_MAX: usize = 1000;
/// Continuation tokens carry the last key (base64), so their size is the key limit's.
const TOKEN_BYTES_MAX: usize = 2048;

pub fn owner() -> Owner {
    Owner { id: "tessera".into(), display_name: "tessera".into() }
}

fn unavailable(e: impl std::fmt::Display) -> S3Error {
    S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string())
}

pub async fn create_bucket(gw: &Rc<Gateway>, req: Req, bucket: &str) -> Result<Resp, S3Error> {
    super::dispatch::check_bucket_name(bucket)?;
    let body = super::body::read_small(req.body, &req.payload, xml::CREATE_BUCKET_BODY_BYTES_MAX).await?;
    // Any location is accepted: an embedded server is one region.
    let _location = xml::parse_create_bucket_configuration(&body).map_err(S3Error::from)?;
    if let Some(c) = &gw.cluster {
        c.create_bucket(bucket).await?;
        let mut r = Resp::new(StatusCode::OK);
        r.header("location", &format!("/{bucket}"));
        return Ok(r);
    }
    let name = bucket.to_string();
    let created = gw
        .cx
        .run_on(0, move |cx| async move { cx.objects().create_bucket(&name).await.map_err(object_error) })
        .await
        .map_err(unavailable)??;
    let Some(created_ms) = created else {
        // One owner, one region: re-creating your own bucket succeeds and changes
        // nothing, as S3 does in us-east-1 (and the ceph suite expects).
        let mut r = Resp::new(StatusCode::OK);
        r.header("location", &format!("/{bucket}"));
        return Ok(r);
    };
    for core in 1..gw.cx.handle.cores() {
        let name = bucket.to_string();
        gw.cx
            .run_on(core, move |cx| async move { cx.objects().apply_bucket(&name, Some(created_ms)) })
            .await
            .map_err(unavailable)?;
    }
    let mut r = Resp::new(StatusCode::OK);
    r.header("location", &format!("/{bucket}"));
    Ok(r)
}

pub async fn delete_bucket(gw: &Rc<Gateway>, bucket: &str) -> Result<Resp, S3Error> {
    if let Some(c) = &gw.cluster {
        c.delete_bucket(bucket).await?;
        return Ok(Resp::new(StatusCode::NO_CONTENT));
    }
    let cores = gw.cx.handle.cores();
    let set = |deleting: bool| {
        let gw = gw.clone();
        let name = bucket.to_string();
        async move {
            let mut exists = true;
            for core in 0..cores {
                let name = name.clone();
                exists &= gw
                    .cx
                    .run_on(core, move |cx| async move { cx.objects().set_bucket_deleting(&name, deleting) })
                    .await
                    .map_err(unavailable)?;
            }
            Ok::<bool, S3Error>(exists)
        }
    };
    // Writes are refused while we look, so no object slips in after the check.
    if !set(true).await? {
        set(false).await?;
        return Err(S3Error::no_such_bucket(bucket));
    }
    let mut empty = true;
    for core in 0..cores {
        let name = bucket.to_string();
        empty &= !gw
            .cx
            .run_on(core, move |cx| async move { cx.objects().bucket_has_objects(&name) })
            .await
            .map_err(unavailable)?;
    }
    if !empty {
        set(false).await?;
        return Err(S3Error::bucket_not_empty(bucket));
    }
    for core in 0..cores {
        let name = bucket.to_string();
        gw.cx
            .run_on(core, move |cx| async move { cx.objects().drop_bucket_uploads(&name).await.map_err(object_error) })
            .await
            .map_err(unavailable)??;
    }
    let name = bucket.to_string();
    let r = gw
        .cx
        .run_on(0, move |cx| async move { cx.objects().delete_bucket(&name).await.map_err(object_error) })
        .await
        .map_err(unavailable)?;
    if let Err(e) = r {
        set(false).await?;
        return Err(e);
    }
    for core in 1..cores {
        let name = bucket.to_string();
        gw.cx
            .run_on(core, move |cx| async move { cx.objects().apply_bucket(&name, None) })
            .await
            .map_err(unavailable)?;
    }
    Ok(Resp::new(StatusCode::NO_CONTENT))
}

pub async fn head_bucket(gw: &Rc<Gateway>, bucket: &str) -> Result<Resp, S3Error> {
    gw.check_bucket(bucket).await?;
    let mut r = Resp::new(StatusCode::OK);
    r.header("x-amz-bucket-region", "us-east-1");
    Ok(r)
}

pub async fn get_bucket_location(gw: &Rc<Gateway>, bucket: &str) -> Result<Resp, S3Error> {
    gw.check_bucket(bucket).await?;
    Ok(Resp::xml(StatusCode::OK, xml::location_constraint("us-east-1")))
}

pub async fn list_buckets(gw: &Rc<Gateway>) -> Result<Resp, S3Error> {
    let buckets = match &gw.cluster {
        Some(c) => c.buckets().await?,
        None => gw.cx.objects().buckets(),
    };
    let buckets =
        buckets.into_iter().map(|(name, creation_date_ms)| xml::BucketEntry { name, creation_date_ms }).collect();
    let out = xml::ListBucketsOutput { owner: owner(), buckets, continuation_token: None, prefix: None };
    Ok(Resp::xml(StatusCode::OK, xml::list_buckets(&out)))
}

/// A merged page of a listing over every core.
struct Page {
    items: Vec<ListItem>,
    truncated: bool,
}

async fn list_all_cores(
    gw: &Rc<Gateway>,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> Result<Page, S3Error> {
    if let Some(c) = &gw.cluster {
        let (items, truncated) = super::cluster::list(c, bucket, prefix, delimiter, after, max).await?;
        return Ok(Page { items, truncated });
    }
    gw.check_bucket(bucket).await?;
    if max == 0 {
        return Ok(Page { items: vec![], truncated: false });
    }
    // Every core lists at once; Rc<ObjectInfo> does not cross cores, so each sends
    // back only what a listing shows (no headers, no layout).
    let per_core = (0..gw.cx.handle.cores()).map(|core| {
        let (b, p, d, a) =
            (bucket.to_string(), prefix.to_string(), delimiter.map(str::to_string), after.map(str::to_string));
        gw.cx.run_on(core, move |cx| async move {
            cx.objects().list(&b, &p, d.as_deref(), a.as_deref(), max + 1).map_err(object_error).map(|v| {
                v.into_iter()
                    .map(|i| match i {
                        ListItem::Object { key, info } => (key, Some((info.size, info.etag.clone(), info.modified_ms))),
                        ListItem::Prefix(p) => (p, None),
                    })
                    .collect::<Vec<_>>()
            })
        })
    });
    let mut all: Vec<ListItem> = Vec::new();
    for items in futures::future::join_all(per_core).await {
        let items = items.map_err(unavailable)??;
        all.extend(items.into_iter().map(|(name, info)| match info {
            Some((size, etag, modified_ms)) => ListItem::Object {
                key: name,
                info: Rc::new(tessera_engine::object::ObjectInfo {
                    size,
                    etag,
                    modified_ms,
                    headers: vec![],
                    data: tessera_engine::object::DataLayout::Inline(vec![]),
                    parts: vec![],
                }),
            },
            None => ListItem::Prefix(name),
        }));
    }
    all.sort_by(|a, b| a.name().cmp(b.name()));
    all.dedup_by(|a, b| a.name() == b.name());
    let truncated = all.len() > max;
    all.truncate(max);
    Ok(Page { items: all, truncated })
}

fn split(items: Vec<ListItem>, fetch_owner: bool) -> (Vec<ObjectEntry>, Vec<String>) {
    let mut contents = Vec::new();
    let mut prefixes = Vec::new();
    for i in items {
        match i {
            ListItem::Object { key, info } => contents.push(ObjectEntry {
                key,
                last_modified_ms: info.modified_ms,
                etag: info.etag.clone(),
                size: info.size,
                storage_class: "STANDARD",
                owner: fetch_owner.then(owner),
                checksum_algorithm: None,
                checksum_type: None,
            }),
            ListItem::Prefix(p) => prefixes.push(p),
        }
    }
    (contents, prefixes)
}

fn max_keys(req: &Req) -> Result<usize, S3Error> {
    match req.query("max-keys") {
        None => Ok(LIST_KEYS_MAX),
        Some(v) => {
            v.parse::<i64>().ok().filter(|n| *n >= 0).map(|n| (n as usize).min(LIST_KEYS_MAX)).ok_or_else(|| {
                S3Error::invalid_argument("Provided max-keys not an integer or within integer range", "max-keys", &v)
            })
        }
    }
}

fn delimiter(req: &Req) -> Option<String> {
    req.query("delimiter").filter(|d| !d.is_empty())
}

pub async fn list_objects_v2(gw: &Rc<Gateway>, req: &Req, bucket: &str) -> Result<Resp, S3Error> {
    let prefix = req.query("prefix").unwrap_or_default();
    let delim = delimiter(req);
    let max = max_keys(req)?;
    let encoding = KeyEncoding::from_query(req.query("encoding-type").as_deref())?;
    let fetch_owner = req.query("fetch-owner").is_some_and(|v| v == "true");
    let start_after = req.query("start-after").filter(|s| !s.is_empty());
    let token = req.query("continuation-token");
    let token_key = match &token {
        Some(t) => Some(decode_token(t)?),
        None => None,
    };
    let after = match (&token_key, &start_after) {
        (Some(t), Some(s)) => Some(t.clone().max(s.clone())),
        (Some(t), None) => Some(t.clone()),
        (None, s) => s.clone(),
    };
    let page = list_all_cores(gw, bucket, &prefix, delim.as_deref(), after.as_deref(), max).await?;
    let next = page.truncated.then(|| page.items.last().map(|i| encode_token(i.name()))).flatten();
    let (contents, common_prefixes) = split(page.items, fetch_owner);
    let out = xml::ListObjectsV2Output {
        name: bucket.to_string(),
        prefix,
        delimiter: delim,
        max_keys: max as u32,
        is_truncated: page.truncated,
        continuation_token: token,
        next_continuation_token: next,
        start_after,
        encoding,
        fetch_owner,
        contents,
        common_prefixes,
    };
    Ok(Resp::xml(StatusCode::OK, xml::list_objects_v2(&out)))
}

pub async fn list_objects_v1(gw: &Rc<Gateway>, req: &Req, bucket: &str) -> Result<Resp, S3Error> {
    let prefix = req.query("prefix").unwrap_or_default();
    let delim = delimiter(req);
    let max = max_keys(req)?;
    let encoding = KeyEncoding::from_query(req.query("encoding-type").as_deref())?;
    let marker = req.query("marker").unwrap_or_default();
    let after = (!marker.is_empty()).then_some(marker.as_str());
    let page = list_all_cores(gw, bucket, &prefix, delim.as_deref(), after, max).await?;
    let next_marker =
        (page.truncated && delim.is_some()).then(|| page.items.last().map(|i| i.name().to_string())).flatten();
    let (contents, common_prefixes) = split(page.items, true);
    let out = xml::ListObjectsV1Output {
        name: bucket.to_string(),
        prefix,
        marker,
        next_marker,
        delimiter: delim,
        max_keys: max as u32,
        is_truncated: page.truncated,
        encoding,
        contents,
        common_prefixes,
    };
    Ok(Resp::xml(StatusCode::OK, xml::list_objects_v1(&out)))
}

fn encode_token(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_token(t: &str) -> Result<String, S3Error> {
    use base64::Engine;
    let bad = || S3Error::invalid_argument("The continuation token provided is incorrect", "continuation-token", t);
    if t.len() > TOKEN_BYTES_MAX {
        return Err(bad());
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.as_bytes()).map_err(|_| bad())?;
    String::from_utf8(bytes).map_err(|_| bad())
}

/// The one policy there is: the owner has FULL_CONTROL.
fn owner_policy() -> String {
    let o = owner();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><AccessControlPolicy xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
         <Owner><ID>{id}</ID><DisplayName>{name}</DisplayName></Owner><AccessControlList>\
         <Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\">\
         <ID>{id}</ID><DisplayName>{name}</DisplayName></Grantee><Permission>FULL_CONTROL</Permission></Grant>\
         </AccessControlList></AccessControlPolicy>",
        id = o.id,
        name = o.display_name
    )
}

async fn check_target(gw: &Rc<Gateway>, bucket: &str, key: Option<&str>) -> Result<(), S3Error> {
    if let Some(c) = &gw.cluster {
        return match key {
            Some(k) => super::cluster::head(c, bucket, k).await,
            None => c.check_bucket(bucket).await,
        };
    }
    gw.check_bucket(bucket).await?;
    if let Some(k) = key {
        let (b, k2) = (bucket.to_string(), k.to_string());
        gw.cx
            .run_on(gw.core_of(bucket, k), move |cx| async move {
                cx.objects().head(&b, &k2).map(|_| ()).map_err(|e| super::owner::named_error(e, &b, &k2))
            })
            .await
            .map_err(unavailable)??;
    }
    Ok(())
}

/// GetBucketAcl / GetObjectAcl: the single owner's FULL_CONTROL.
pub async fn get_acl(gw: &Rc<Gateway>, bucket: &str, key: Option<&str>) -> Result<Resp, S3Error> {
    check_target(gw, bucket, key).await?;
    Ok(Resp::xml(StatusCode::OK, owner_policy()))
}

/// PutBucketAcl / PutObjectAcl: only what keeps the one-owner policy (`private`,
/// or no change at all) is accepted; granting anyone else access is not supported.
pub async fn put_acl(gw: &Rc<Gateway>, req: Req, bucket: &str, key: Option<&str>) -> Result<Resp, S3Error> {
    check_target(gw, bucket, key).await?;
    let canned = req.parts.headers.get("x-amz-acl").and_then(|v| v.to_str().ok()).map(str::to_string);
    let grants = req.parts.headers.keys().any(|n| n.as_str().starts_with("x-amz-grant-"));
    let body = super::body::read_small(req.body, &req.payload, 64 << 10).await?;
    match canned.as_deref() {
        Some("private") if !grants && body.is_empty() => Ok(Resp::new(StatusCode::OK)),
        None if !grants && !body.is_empty() => Err(S3Error::new(S3ErrorCode::NotImplemented)
            .with_message("access control lists other than the owner's FULL_CONTROL are not supported")),
        _ => Err(S3Error::new(S3ErrorCode::NotImplemented)
            .with_message("only the 'private' canned ACL is supported: this server has one owner")),
    }
}
