//! Multipart uploads. Upload and part records live with the object key's
//! partition, so the owner of the key does every step, and completion only
//! writes metadata: the parts' extents become the object's, no bytes move.
use std::rc::Rc;

use http::StatusCode;
use tessera_engine::object::meta::PartSummary;
use tessera_engine::object::{DataLayout, ObjectError, ObjectInfo, PartInfo};

use super::error::{S3Error, S3ErrorCode};
use super::owner::{object_error, PutTarget};
use super::service::{Gateway, Req, Resp};
use super::xml;

/// S3's smallest part (all but the last).
pub const PART_BYTES_MIN: u64 = 5 << 20;
/// S3's largest part.
pub const PART_BYTES_MAX: u64 = 5 << 30;
/// Parts per ListParts page (S3's maximum).
const LIST_PARTS_MAX: usize = 1000;
const LIST_UPLOADS_MAX: usize = 1000;

fn unavailable(e: impl std::fmt::Display) -> S3Error {
    S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string())
}

fn upload_error(e: ObjectError, upload_id: &str) -> S3Error {
    match e {
        ObjectError::NoSuchUpload => S3Error::no_such_upload(upload_id),
        e => object_error(e),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Checks the parts a CompleteMultipartUpload names against those uploaded: each
/// exists with that ETag, and all but the last are at least 5 MiB.
fn check_chosen(wanted: &[xml::CompletedPart], have: &[(u32, PartInfo)]) -> Result<(), S3Error> {
    let last = wanted.len().saturating_sub(1);
    for (i, w) in wanted.iter().enumerate() {
        let Some((_, p)) = have.iter().find(|(n, _)| *n == w.part_number) else {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        };
        if xml::normalize_etag(&p.etag) != xml::normalize_etag(&w.etag) {
            return Err(S3Error::new(S3ErrorCode::InvalidPart));
        }
        if i < last && p.size < PART_BYTES_MIN {
            return Err(S3Error::entity_too_small(w.part_number, &p.etag, p.size, PART_BYTES_MIN));
        }
    }
    Ok(())
}

/// S3's ETag of a multipart object: the MD5 of the parts' MD5s, dash, part count.
fn multipart_etag<'a>(parts: impl ExactSizeIterator<Item = &'a PartInfo>) -> Result<String, String> {
    let count = parts.len();
    let mut md5s = Vec::with_capacity(count * 16);
    for p in parts {
        let raw =
            hex::decode(xml::normalize_etag(&p.etag)).map_err(|_| format!("part ETag {} is not an MD5", p.etag))?;
        md5s.extend_from_slice(&raw);
    }
    let mut m = super::checksum::Md5::new();
    m.update(&md5s);
    Ok(format!("\"{}-{}\"", m.finish().hex(), count))
}

/// CompleteMultipartUpload in a cluster: the object's record names the chosen
/// parts' extents in order (no bytes move), then the upload's record is deleted
/// (the parts left out become garbage for the nodes' collector).
async fn complete_cluster(
    c: &super::cluster::ClusterCx,
    bucket: &str,
    key: &str,
    upload_id: &str,
    wanted: &[xml::CompletedPart],
    cond: &super::conditional::PutCondition,
) -> Result<ObjectInfo, S3Error> {
    let upload = super::cluster::open_upload(c, bucket, key, upload_id).await?;
    let have = super::cluster::upload_parts(c, bucket, key, upload_id).await?;
    check_chosen(wanted, &have)?;
    let chosen: Vec<&PartInfo> = wanted
        .iter()
        .map(|w| have.iter().find(|(n, _)| *n == w.part_number).map(|(_, p)| p).expect("checked"))
        .collect();
    let etag =
        multipart_etag(chosen.iter().copied()).map_err(|m| S3Error::new(S3ErrorCode::InternalError).with_message(m))?;
    let info = ObjectInfo {
        size: chosen.iter().map(|p| p.size).sum(),
        etag,
        modified_ms: now_ms(),
        headers: upload.headers.into_iter().filter(|(n, _)| n != "x-amz-checksum-algorithm").collect(),
        data: DataLayout::Extents(chosen.iter().map(|p| p.extent).collect()),
        parts: chosen.iter().map(|p| PartSummary { size: p.size, etag: p.etag.clone() }).collect(),
    };
    if !cond.is_unconditional() {
        let current = c.client.head(bucket, key).await.map_err(super::cluster::io_error)?;
        cond.check(current.as_ref().map(|(_, i)| i.etag.as_str())).map_err(S3Error::from)?;
    }
    let out = super::owner::summary(&info);
    c.client.commit_object(bucket, key, Some(info)).await.map_err(super::cluster::io_error)?;
    super::cluster::close_upload(c, bucket, key, upload_id).await?;
    Ok(out)
}

pub async fn create(gw: &Rc<Gateway>, req: &Req, bucket: &str, key: &str) -> Result<Resp, S3Error> {
    let mut headers = super::objects::stored_headers(&req.parts.headers)?;
    if let Some(a) = req.parts.headers.get("x-amz-checksum-algorithm").and_then(|v| v.to_str().ok()) {
        headers.push(("x-amz-checksum-algorithm".into(), a.to_string()));
    }
    if let Some(c) = &gw.cluster {
        let id = super::cluster::create_upload(c, bucket, key, headers).await?;
        return Ok(Resp::xml(StatusCode::OK, xml::initiate_multipart_upload(bucket, key, &id)));
    }
    let (b, k) = (bucket.to_string(), key.to_string());
    let id = gw
        .cx
        .run_on(gw.core_of(bucket, key), move |cx| async move {
            cx.objects().create_upload(&b, &k, headers).await.map_err(object_error)
        })
        .await
        .map_err(unavailable)??;
    Ok(Resp::xml(StatusCode::OK, xml::initiate_multipart_upload(bucket, key, &id)))
}

pub async fn upload_part(
    gw: &Rc<Gateway>,
    req: Req,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
) -> Result<Resp, S3Error> {
    let target = PutTarget::Part { upload_id: upload_id.to_string(), part_number };
    let (info, checksum) =
        super::objects::put_body(gw, req, bucket, key, target, PART_BYTES_MAX, vec![], None).await.map_err(|e| {
            if e.code == S3ErrorCode::NoSuchUpload {
                S3Error::no_such_upload(upload_id)
            } else {
                e
            }
        })?;
    let mut r = Resp::new(StatusCode::OK);
    r.header("etag", &info.etag);
    if let Some(c) = checksum {
        r.header(c.algorithm().header_name(), &c.to_base64());
    }
    Ok(r)
}

pub async fn complete(gw: &Rc<Gateway>, req: Req, bucket: &str, key: &str, upload_id: &str) -> Result<Resp, S3Error> {
    let body = super::body::read_small(req.body, &req.payload, xml::COMPLETE_MULTIPART_BODY_BYTES_MAX).await?;
    let wanted = xml::parse_complete_multipart_upload(&body).map_err(S3Error::from)?;
    xml::check_part_order(&wanted)?;
    let cond = super::conditional::PutCondition::from_headers(&req.parts.headers);
    let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
    let info = if let Some(c) = &gw.cluster {
        complete_cluster(c, bucket, key, upload_id, &wanted, &cond).await?
    } else {
        gw.cx
            .run_on(gw.core_of(bucket, key), move |cx| async move {
                let objects = cx.objects();
                let have = match objects.parts(&b, &k, &u) {
                    Ok(h) => h,
                    Err(ObjectError::NoSuchUpload) => {
                        // Completed already: S3 answers a repeat with the same result.
                        return match objects.completed_upload(&b, &k, &u) {
                            Some(m) => Ok(super::owner::summary(&m.info)),
                            None => Err(S3Error::no_such_upload(&u)),
                        };
                    }
                    Err(e) => return Err(upload_error(e, &u)),
                };
                let chosen: Vec<u32> = wanted.iter().map(|p| p.part_number).collect();
                check_chosen(&wanted, &have)?;
                let build = |upload: &tessera_engine::object::UploadInfo,
                             parts: &[(u32, &tessera_engine::object::PartInfo)]| {
                    let etag = multipart_etag(parts.iter().map(|(_, p)| *p)).map_err(ObjectError::Internal)?;
                    let headers =
                        upload.headers.iter().filter(|(n, _)| n != "x-amz-checksum-algorithm").cloned().collect();
                    Ok(ObjectInfo {
                        size: 0,
                        etag,
                        modified_ms: now_ms(),
                        headers,
                        data: DataLayout::Extents(vec![]),
                        parts: vec![],
                    })
                };
                let failed = std::cell::RefCell::new(None);
                let check = |cur: Option<&ObjectInfo>| match cond.check(cur.map(|c| c.etag.as_str())) {
                    Ok(()) => true,
                    Err(e) => {
                        *failed.borrow_mut() = Some(S3Error::from(e));
                        false
                    }
                };
                let pre: Option<tessera_engine::object::Precondition<'_>> =
                    if cond.is_unconditional() { None } else { Some(&check) };
                match objects.complete_upload(&b, &k, &u, &chosen, build, pre).await {
                    Ok(m) => Ok(super::owner::summary(&m.info)),
                    Err(ObjectError::PreconditionFailed) => {
                        Err(failed.take().unwrap_or_else(|| S3Error::new(S3ErrorCode::PreconditionFailed)))
                    }
                    Err(ObjectError::Invalid(_)) => Err(S3Error::new(S3ErrorCode::InvalidPart)),
                    Err(e) => Err(upload_error(e, &u)),
                }
            })
            .await
            .map_err(unavailable)??
    };
    let out = xml::CompleteMultipartUploadOutput {
        location: format!("http://{}/{bucket}/{key}", gw.shared.address),
        bucket: bucket.to_string(),
        key: key.to_string(),
        etag: info.etag.clone(),
        checksums: xml::Checksums::default(),
        checksum_type: None,
    };
    let mut r = Resp::xml(StatusCode::OK, xml::complete_multipart_upload(&out));
    r.header("etag", &info.etag);
    Ok(r)
}

pub async fn abort(gw: &Rc<Gateway>, bucket: &str, key: &str, upload_id: &str) -> Result<Resp, S3Error> {
    if let Some(c) = &gw.cluster {
        super::cluster::open_upload(c, bucket, key, upload_id).await?;
        super::cluster::close_upload(c, bucket, key, upload_id).await?;
        return Ok(Resp::new(StatusCode::NO_CONTENT));
    }
    let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
    gw.cx
        .run_on(gw.core_of(bucket, key), move |cx| async move {
            cx.objects().abort_upload(&b, &k, &u).await.map_err(|e| upload_error(e, &u))
        })
        .await
        .map_err(unavailable)??;
    Ok(Resp::new(StatusCode::NO_CONTENT))
}

pub async fn list_parts(
    gw: &Rc<Gateway>,
    req: &Req,
    bucket: &str,
    key: &str,
    upload_id: &str,
) -> Result<Resp, S3Error> {
    let max = match req.query("max-parts") {
        None => LIST_PARTS_MAX,
        Some(v) => {
            v.parse::<i64>().ok().filter(|n| *n >= 0).map(|n| (n as usize).min(LIST_PARTS_MAX)).ok_or_else(|| {
                S3Error::invalid_argument("Provided max-parts not an integer or within integer range", "max-parts", &v)
            })?
        }
    };
    let marker: u32 = match req.query("part-number-marker") {
        None => 0,
        Some(v) => v.parse().map_err(|_| {
            S3Error::invalid_argument("Provided part-number-marker not an integer", "part-number-marker", &v)
        })?,
    };
    let (b, k, u) = (bucket.to_string(), key.to_string(), upload_id.to_string());
    let parts = match &gw.cluster {
        Some(c) => {
            super::cluster::open_upload(c, bucket, key, upload_id).await?;
            super::cluster::upload_parts(c, bucket, key, upload_id).await?
        }
        None => gw
            .cx
            .run_on(gw.core_of(bucket, key), move |cx| async move {
                cx.objects().parts(&b, &k, &u).map_err(|e| upload_error(e, &u))
            })
            .await
            .map_err(unavailable)??,
    };
    let mut after: Vec<_> = parts.into_iter().filter(|(n, _)| *n > marker).collect();
    let truncated = after.len() > max;
    after.truncate(max);
    let next = if truncated { after.last().map(|(n, _)| *n) } else { None };
    let entries = after
        .into_iter()
        .map(|(n, p)| {
            let mut sums = xml::Checksums::default();
            for (name, v) in &p.checksums {
                match name.as_str() {
                    "x-amz-checksum-crc32" => sums.crc32 = Some(v.clone()),
                    "x-amz-checksum-crc32c" => sums.crc32c = Some(v.clone()),
                    "x-amz-checksum-crc64nvme" => sums.crc64nvme = Some(v.clone()),
                    "x-amz-checksum-sha1" => sums.sha1 = Some(v.clone()),
                    "x-amz-checksum-sha256" => sums.sha256 = Some(v.clone()),
                    _ => {}
                }
            }
            xml::PartEntry {
                part_number: n,
                last_modified_ms: p.modified_ms,
                etag: p.etag,
                size: p.size,
                checksums: sums,
            }
        })
        .collect();
    let out = xml::ListPartsOutput {
        bucket: bucket.to_string(),
        key: key.to_string(),
        upload_id: upload_id.to_string(),
        part_number_marker: marker,
        next_part_number_marker: next,
        max_parts: max as u32,
        is_truncated: truncated,
        parts: entries,
        initiator: super::buckets::owner(),
        owner: super::buckets::owner(),
        storage_class: "STANDARD",
        checksum_algorithm: None,
        checksum_type: None,
    };
    Ok(Resp::xml(StatusCode::OK, xml::list_parts(&out)))
}

pub async fn list_uploads(gw: &Rc<Gateway>, req: &Req, bucket: &str) -> Result<Resp, S3Error> {
    gw.check_bucket(bucket).await?;
    let prefix = req.query("prefix").unwrap_or_default();
    let delimiter = req.query("delimiter").filter(|d| !d.is_empty());
    let key_marker = req.query("key-marker").unwrap_or_default();
    let upload_id_marker = req.query("upload-id-marker").unwrap_or_default();
    let encoding = xml::KeyEncoding::from_query(req.query("encoding-type").as_deref())?;
    let max = match req.query("max-uploads") {
        None => LIST_UPLOADS_MAX,
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| (n as usize).min(LIST_UPLOADS_MAX))
            .ok_or_else(|| S3Error::invalid_argument("Provided max-uploads not an integer", "max-uploads", &v))?,
    };
    let mut all = Vec::new();
    if let Some(c) = &gw.cluster {
        // A key marker alone skips every upload of that key.
        let after = match (key_marker.is_empty(), upload_id_marker.is_empty()) {
            (true, _) => ("", ""),
            (false, true) => (key_marker.as_str(), "\u{10FFFF}"),
            (false, false) => (key_marker.as_str(), upload_id_marker.as_str()),
        };
        let found = c.client.list_uploads(bucket, &prefix, after, max + 1).await.map_err(super::cluster::io_error)?;
        all.extend(found.into_iter().map(|(key, upload_id, initiated_ms)| tessera_engine::object::UploadSummary {
            key,
            upload_id,
            initiated_ms,
        }));
    }
    let cores = if gw.cluster.is_some() { 0 } else { gw.cx.handle.cores() };
    for core in 0..cores {
        let (b, p, km, um) = (bucket.to_string(), prefix.clone(), key_marker.clone(), upload_id_marker.clone());
        let v = gw
            .cx
            .run_on(core, move |cx| async move {
                let km = (!km.is_empty()).then_some(km.as_str());
                cx.objects().list_uploads(&b, &p, km, Some(um.as_str()), max + 1).map_err(object_error)
            })
            .await
            .map_err(unavailable)??;
        all.extend(v);
    }
    all.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
    let mut uploads = Vec::new();
    let mut prefixes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut last: Option<(String, String)> = None;
    for u in all {
        if uploads.len() + prefixes.len() >= max {
            truncated = true;
            break;
        }
        if let Some(d) = &delimiter {
            if let Some(pos) = u.key[prefix.len()..].find(d.as_str()) {
                let cp = u.key[..prefix.len() + pos + d.len()].to_string();
                if prefixes.last() != Some(&cp) {
                    prefixes.push(cp);
                }
                last = Some((u.key.clone(), u.upload_id.clone()));
                continue;
            }
        }
        last = Some((u.key.clone(), u.upload_id.clone()));
        uploads.push(xml::UploadEntry {
            key: u.key,
            upload_id: u.upload_id,
            initiated_ms: u.initiated_ms,
            storage_class: "STANDARD",
            owner: super::buckets::owner(),
            initiator: super::buckets::owner(),
            checksum_algorithm: None,
        });
    }
    let (next_key_marker, next_upload_id_marker) = match (truncated, last) {
        (true, Some((k, u))) => (Some(k), Some(u)),
        _ => (None, None),
    };
    let out = xml::ListMultipartUploadsOutput {
        bucket: bucket.to_string(),
        key_marker,
        upload_id_marker,
        next_key_marker,
        next_upload_id_marker,
        prefix,
        delimiter,
        max_uploads: max as u32,
        is_truncated: truncated,
        encoding,
        uploads,
        common_prefixes: prefixes,
    };
    Ok(Resp::xml(StatusCode::OK, xml::list_multipart_uploads(&out)))
}
