//! Object handlers: PutObject, GetObject/HeadObject, DeleteObject, DeleteObjects,
//! CopyObject. Each runs on the connection's core and sends the object's work to
//! the owning core ([`super::owner`]).
use std::rc::Rc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use tessera_engine::object::ObjectInfo;

use super::body::{self, IngestSpec};
use super::checksum::RequestChecksums;
use super::conditional::{Decision, PutCondition, ReadPreconditions};
use super::error::{S3Error, S3ErrorCode};
use super::owner::{self, BodyMsg, Finalize, PutTarget, ReadPlan, Segment};
use super::range::{self, MultipartByteranges};
use super::service::{Gateway, Req, Resp};
use crate::http::Body;

/// User metadata (`x-amz-meta-*` names and values) per object, as S3 limits it.
pub const USER_METADATA_BYTES_MAX: usize = 2 << 10;
/// Headers stored with an object and returned on GET/HEAD.
const STORED_HEADERS: [&str; 7] = [
    "content-type",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "x-amz-website-redirect-location",
];
/// Response chunks (up to 1 MiB each) buffered between the owner and the socket,
/// per GET. With the owner's read-ahead and the chunk hyper is sending, a stream
/// holds at most about 5 MiB however slow its client (`scripts/bench-memory.sh`).
const RESPONSE_CHUNKS_IN_FLIGHT_MAX: usize = 2;
/// Keys of one DeleteObjects request deleted at once.
const DELETES_IN_FLIGHT_MAX: usize = 16;
/// Request body frames (as hyper delivers them, usually 16-64 KiB) buffered on
/// their way to the owner, per PUT.
const REQUEST_FRAMES_IN_FLIGHT_MAX: usize = 16;

fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// The headers of a PUT (or CreateMultipartUpload, or a REPLACE copy) that the
/// object keeps.
pub fn stored_headers(h: &HeaderMap) -> Result<Vec<(String, String)>, S3Error> {
    let mut out = Vec::new();
    for name in STORED_HEADERS {
        if let Some(v) = header_str(h, name) {
            let v = if name == "content-encoding" {
                // aws-chunked is the transfer framing, not the object's encoding.
                match crate::sigv4::strip_aws_chunked(&v) {
                    Some(rest) if rest.is_empty() => continue,
                    Some(rest) => rest,
                    None => v,
                }
            } else {
                v
            };
            out.push((name.to_string(), v));
        }
    }
    let mut meta_bytes = 0;
    for (name, v) in h {
        if let Some(short) = name.as_str().strip_prefix("x-amz-meta-") {
            let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
            meta_bytes += short.len() + v.len();
            out.push((name.as_str().to_string(), v));
        }
    }
    if meta_bytes > USER_METADATA_BYTES_MAX {
        return Err(S3Error::new(S3ErrorCode::MetadataTooLarge).with_message(format!(
            "Your metadata headers exceed the maximum allowed metadata size of {USER_METADATA_BYTES_MAX} bytes."
        )));
    }
    out.sort();
    Ok(out)
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// Streams a request body to the owner of `bucket/key` and commits it there.
// Every argument is a distinct input of the one PUT path (object, part, copy).
#[allow(clippy::too_many_arguments)]
pub async fn put_body(
    gw: &Rc<Gateway>,
    req: Req,
    bucket: &str,
    key: &str,
    target: PutTarget,
    limit: u64,
    mut headers_to_store: Vec<(String, String)>,
    precondition: Option<PutCondition>,
) -> Result<(ObjectInfo, Option<super::checksum::Checksum>), S3Error> {
    let checksums = RequestChecksums::from_headers(&req.parts.headers).map_err(S3Error::from)?;
    let decoded_len = crate::sigv4::decoded_content_length(&req.parts.headers).map_err(S3Error::from)?;
    let content_length = content_length(&req.parts.headers);
    if content_length.is_none() && decoded_len.is_none() && !req.chunked_transfer() {
        return Err(S3Error::new(S3ErrorCode::MissingContentLength));
    }
    // The owner hashes the body for the ETag as it takes it in (and checks
    // Content-MD5): the MD5 work lands on the core owning the key, so uploads of
    // many keys spread it over every core whichever core took the connections.
    // Hashing on the connection's core instead (connections are spread evenly,
    // the keys of the uploads in flight at a moment are not) measured slower:
    // 64 MiB PUTs at 8 connections 1128-1158 MB/s against 1237-1261 (3
    // interleaved rounds), as the body's pump runs in bursts that leave fewer
    // streams queued per SIMD pass (the single-stream code took 21% of the bytes
    // against 11%).
    let spec_md5 = checksums.content_md5;
    let spec = IngestSpec { payload: req.payload.clone(), decoded_len, content_length, limit, checksums };
    let (tx, rx) = flume::bounded::<BodyMsg>(REQUEST_FRAMES_IN_FLIGHT_MAX);
    let (b, k) = (bucket.to_string(), key.to_string());
    let commit: std::pin::Pin<Box<dyn std::future::Future<Output = Result<ObjectInfo, S3Error>>>> = match &gw.cluster {
        Some(c) => Box::pin(super::cluster::put(c.clone(), b, k, target, rx)),
        None => {
            let run = gw.cx.run_on(gw.core_of(bucket, key), move |cx| owner::put(cx, b, k, target, rx));
            Box::pin(async move { run.await.map_err(unavailable)? })
        }
    };
    let ingest = async {
        let r = body::pump(req.body, spec, &tx).await;
        match r {
            Ok(ing) => {
                if let Some(c) = &ing.checksum {
                    headers_to_store.push((c.algorithm().header_name().to_string(), c.to_base64()));
                }
                let content_md5 = spec_md5;
                let precondition: Option<owner::PutCheck> = precondition.filter(|p| !p.is_unconditional()).map(|p| {
                    Box::new(move |cur: Option<&ObjectInfo>| {
                        p.check(cur.map(|c| c.etag.as_str())).map_err(S3Error::from)
                    }) as owner::PutCheck
                });
                let _ = tx
                    .send_async(BodyMsg::End(Ok(Finalize { content_md5, headers: headers_to_store, precondition })))
                    .await;
                Ok(ing.checksum)
            }
            Err(e) => {
                let _ = tx.send_async(BodyMsg::End(Err(e.clone()))).await;
                Err(e)
            }
        }
    };
    let (committed, ingested) = futures_lite::future::zip(commit, ingest).await;
    match (ingested, committed) {
        (Ok(sum), Ok(info)) => Ok((info, sum)),
        // The owner's refusal (no such bucket, a failed precondition) is the cause;
        // the body pump only saw the channel close.
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
    }
}

fn unavailable(e: impl std::fmt::Display) -> S3Error {
    S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string())
}

/// Looks `bucket/key` up where it lives (its owner core, or the cluster), decides
/// with `decide` and streams the body into `tx`; see [`owner::read`].
async fn read_object(
    gw: &Rc<Gateway>,
    bucket: &str,
    key: &str,
    decide: owner::Decide,
    tx: Option<flume::Sender<owner::BodyChunk>>,
    direct: bool,
) -> Result<(ObjectInfo, ReadPlan, Option<bytes::Bytes>), S3Error> {
    let (b, k) = (bucket.to_string(), key.to_string());
    match &gw.cluster {
        Some(c) => super::cluster::read(c.clone(), b, k, decide, tx, direct).await,
        None => gw
            .cx
            .run_on(gw.core_of(bucket, key), move |cx| owner::read(cx, b, k, decide, tx, direct))
            .await
            .map_err(unavailable)?,
    }
}

pub async fn put_object(gw: &Rc<Gateway>, req: Req, bucket: &str, key: &str) -> Result<Resp, S3Error> {
    let headers = stored_headers(&req.parts.headers)?;
    let cond = PutCondition::from_headers(&req.parts.headers);
    let (info, checksum) =
        put_body(gw, req, bucket, key, PutTarget::Object, body::PUT_OBJECT_BYTES_MAX, headers, Some(cond)).await?;
    let mut r = Resp::new(StatusCode::OK);
    r.header("etag", &info.etag);
    if let Some(c) = checksum {
        r.header(c.algorithm().header_name(), &c.to_base64());
    }
    Ok(r)
}

/// The parts of a GET/HEAD request the owner needs to decide (all `Send`).
struct GetInputs {
    headers: HeaderMap,
    part_number: Option<u32>,
    head: bool,
    request_id: String,
}

/// The request headers the owner's decision reads (conditions and ranges): copied
/// to the owner instead of the whole header map.
const DECISION_HEADERS: [http::HeaderName; 6] = [
    http::header::RANGE,
    http::header::IF_RANGE,
    http::header::IF_MATCH,
    http::header::IF_NONE_MATCH,
    http::header::IF_MODIFIED_SINCE,
    http::header::IF_UNMODIFIED_SINCE,
];

fn decision_headers(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(DECISION_HEADERS.len());
    for name in DECISION_HEADERS {
        for v in h.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

fn decide(inp: &GetInputs, info: &ObjectInfo) -> Result<ReadPlan, S3Error> {
    let last_modified_s = (info.modified_ms / 1000).max(0) as u64;
    let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    match ReadPreconditions::from_headers(&inp.headers).evaluate(&info.etag, last_modified_s, now_s) {
        Decision::Proceed => {}
        Decision::NotModified => return Ok(ReadPlan { status: 304, headers: vec![], segments: vec![] }),
        Decision::PreconditionFailed => return Err(S3Error::new(S3ErrorCode::PreconditionFailed)),
    }
    let size = info.size;
    if let Some(n) = inp.part_number {
        let count = info.parts.len().max(1) as u32;
        if n > count {
            // 400 InvalidPart, as the ceph suite checks (AWS documents 416 InvalidPartNumber).
            return Err(S3Error::new(S3ErrorCode::InvalidPart).with_message(format!("The object has {count} parts")));
        }
        let (start, len) = if info.parts.is_empty() {
            (0, size)
        } else {
            let start: u64 = info.parts[..n as usize - 1].iter().map(|p| p.size).sum();
            (start, info.parts[n as usize - 1].size)
        };
        let mut headers = vec![("x-amz-mp-parts-count".to_string(), count.to_string())];
        if len == 0 {
            return Ok(ReadPlan { status: 200, headers, segments: vec![] });
        }
        let r = range::ByteRange { start, end_inclusive: start + len - 1 };
        headers.push(("content-range".into(), range::content_range(&r, size)));
        let status = if info.parts.is_empty() { 200 } else { 206 };
        return Ok(ReadPlan { status, headers, segments: vec![Segment::Data { start, end: start + len }] });
    }
    let whole = || ReadPlan {
        status: 200,
        headers: vec![],
        segments: if size > 0 { vec![Segment::Data { start: 0, end: size }] } else { vec![] },
    };
    let Some(spec) = inp.headers.get(http::header::RANGE).and_then(|v| v.to_str().ok()).and_then(range::parse_range)
    else {
        return Ok(whole());
    };
    if let Some(ir) = inp.headers.get(http::header::IF_RANGE).and_then(|v| v.to_str().ok()) {
        if !super::conditional::if_range_allows(ir, &info.etag, last_modified_s) {
            return Ok(whole());
        }
    }
    let ranges = match spec.resolve(size) {
        Ok(r) => r,
        Err(_) => {
            let err = S3Error::invalid_range(
                inp.headers.get(http::header::RANGE).and_then(|v| v.to_str().ok()).unwrap_or(""),
                size,
            );
            let body = if inp.head { Bytes::new() } else { Bytes::from(err.to_xml(&inp.request_id)) };
            let mut headers = vec![("content-range".to_string(), range::unsatisfied_content_range(size))];
            if !inp.head {
                headers.push(("content-type".into(), "application/xml".into()));
            }
            let segments = if body.is_empty() { vec![] } else { vec![Segment::Literal(body)] };
            return Ok(ReadPlan { status: 416, headers, segments });
        }
    };
    if ranges.len() == 1 {
        let r = &ranges[0];
        return Ok(ReadPlan {
            status: 206,
            headers: vec![("content-range".into(), range::content_range(r, size))],
            segments: vec![Segment::Data { start: r.start, end: r.end_inclusive + 1 }],
        });
    }
    let ctype = info.headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.as_str());
    let boundary = format!("tessera-{:016x}", rand::random::<u64>());
    let mp = MultipartByteranges::new(&ranges, size, ctype, &boundary)
        .map_err(|e| S3Error::new(S3ErrorCode::InternalError).with_message(e.to_string()))?;
    let mut segments = Vec::with_capacity(ranges.len() * 2 + 1);
    for (part, r) in mp.parts().iter().zip(&ranges) {
        segments.push(Segment::Literal(Bytes::copy_from_slice(&part.header)));
        segments.push(Segment::Data { start: r.start, end: r.end_inclusive + 1 });
    }
    segments.push(Segment::Literal(Bytes::copy_from_slice(mp.closing_delimiter())));
    Ok(ReadPlan { status: 206, headers: vec![("content-type".into(), mp.content_type().to_string())], segments })
}

/// The headers every GET/HEAD of an object carries.
pub fn object_headers(r: &mut Resp, info: &ObjectInfo, checksum_mode: bool) {
    r.header("etag", &info.etag);
    r.header("last-modified", &super::conditional::fmt_http_date((info.modified_ms / 1000).max(0) as u64));
    r.header("accept-ranges", "bytes");
    let mut has_type = false;
    for (n, v) in &info.headers {
        if n.starts_with("x-amz-checksum-") {
            if checksum_mode && info.parts.is_empty() {
                r.header(n, v);
            }
            continue;
        }
        has_type |= n == "content-type";
        r.header(n, v);
    }
    if !has_type {
        r.header("content-type", "binary/octet-stream");
    }
}

/// `response-*` query parameters override headers of a GET (S3 allows them on
/// signed requests).
const RESPONSE_OVERRIDES: [(&str, &str); 6] = [
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
];

pub async fn get_object(
    gw: &Rc<Gateway>,
    req: Req,
    bucket: &str,
    key: &str,
    head: bool,
    part_number: Option<u32>,
) -> Result<Resp, S3Error> {
    let checksum_mode = req
        .parts
        .headers
        .get("x-amz-checksum-mode")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled"));
    let inputs = GetInputs {
        headers: decision_headers(&req.parts.headers),
        part_number,
        head,
        request_id: req.request_id.clone(),
    };
    let (tx, rx) = if head {
        (None, None)
    } else {
        let (tx, rx) = flume::bounded(RESPONSE_CHUNKS_IN_FLIGHT_MAX);
        (Some(tx), Some(rx))
    };
    let (info, plan, direct) =
        read_object(gw, bucket, key, Box::new(move |info| decide(&inputs, info)), tx, true).await?;
    let mut r = Resp::new(StatusCode::from_u16(plan.status).unwrap_or(StatusCode::OK));
    if plan.status == 304 {
        r.header("etag", &info.etag);
        r.header("last-modified", &super::conditional::fmt_http_date((info.modified_ms / 1000).max(0) as u64));
        return Ok(r);
    }
    if plan.status != 416 {
        // A checksum describes the whole object: never sent with part of it.
        object_headers(&mut r, &info, checksum_mode && plan.status == 200 && part_number.is_none());
        for (q, h) in RESPONSE_OVERRIDES {
            if let Some(v) = req.query(q) {
                r.header(h, &v);
            }
        }
    }
    for (n, v) in &plan.headers {
        r.header(n, v);
    }
    let len = plan.body_len();
    r.content_length(len);
    if let Some(body) = direct {
        r.body = Body::Full(body);
    } else if let Some(rx) = rx {
        if !plan.segments.is_empty() {
            r.body = Body::from_channel(rx, len);
        }
    } else if plan.status == 416 {
        r.content_length(0);
    }
    Ok(r)
}

pub async fn delete_object(gw: &Rc<Gateway>, bucket: &str, key: &str) -> Result<Resp, S3Error> {
    if let Some(c) = &gw.cluster {
        super::cluster::delete(c, bucket, key).await?;
        return Ok(Resp::new(StatusCode::NO_CONTENT));
    }
    let core = gw.core_of(bucket, key);
    let (b, k) = (bucket.to_string(), key.to_string());
    gw.cx
        .run_on(core, move |cx| async move {
            cx.objects().delete_object(&b, &k).await.map_err(|e| owner::named_error(e, &b, &k))
        })
        .await
        .map_err(|e| S3Error::new(S3ErrorCode::ServiceUnavailable).with_message(e.to_string()))??;
    Ok(Resp::new(StatusCode::NO_CONTENT))
}

pub async fn delete_objects(gw: &Rc<Gateway>, req: Req, bucket: &str) -> Result<Resp, S3Error> {
    gw.check_bucket(bucket).await?;
    let has_md5 = req.parts.headers.contains_key("content-md5")
        || req
            .parts
            .headers
            .keys()
            .any(|n| n.as_str().starts_with("x-amz-checksum-") || n == "x-amz-sdk-checksum-algorithm");
    if !has_md5 {
        return Err(S3Error::new(S3ErrorCode::InvalidRequest)
            .with_message("Missing required header for this request: Content-MD5 or x-amz-checksum-*"));
    }
    let checksums = RequestChecksums::from_headers(&req.parts.headers).map_err(S3Error::from)?;
    let bytes = body::read_small(req.body, &req.payload, body::XML_BODY_BYTES_MAX).await?;
    if let Some(want) = checksums.content_md5 {
        let mut m = super::checksum::Md5::new();
        m.update(&bytes);
        if m.finish().0 != want {
            return Err(S3Error::new(S3ErrorCode::BadDigest));
        }
    }
    let del = super::xml::parse_delete(&bytes).map_err(S3Error::from)?;
    let mut deleted = Vec::new();
    let mut errors = Vec::new();
    // Keys on every core are deleted concurrently (bounded), answers in request order.
    use futures::StreamExt;
    let outcomes: Vec<(String, Result<(), S3Error>)> = futures::stream::iter(del.objects)
        .map(|obj| async move {
            let r = if obj.key.is_empty() {
                Err(S3Error::new(S3ErrorCode::UserKeyMustBeSpecified))
            } else if obj.etag.is_some() || obj.size.is_some() || obj.last_modified_time.is_some() {
                Err(S3Error::new(S3ErrorCode::NotImplemented).with_message("conditional deletes are not supported"))
            } else {
                delete_object(gw, bucket, &obj.key).await.map(|_| ())
            };
            (obj.key, r)
        })
        .buffered(DELETES_IN_FLIGHT_MAX)
        .collect()
        .await;
    for (key, r) in outcomes {
        match r {
            Ok(()) => deleted.push(key),
            Err(e) => errors.push((key, e)),
        }
    }
    let out = super::xml::DeleteResultOutput {
        quiet: del.quiet,
        deleted: deleted.into_iter().map(|key| super::xml::DeletedEntry { key, version_id: None }).collect(),
        errors: errors
            .into_iter()
            .map(|(key, e)| super::xml::DeleteErrorEntry { key, version_id: None, code: e.code, message: e.message })
            .collect(),
    };
    Ok(Resp::xml(StatusCode::OK, super::xml::delete_result(&out)))
}

pub async fn copy_object(
    gw: &Rc<Gateway>,
    req: Req,
    bucket: &str,
    key: &str,
    src_bucket: &str,
    src_key: &str,
    part: Option<(String, u32)>,
) -> Result<Resp, S3Error> {
    let h = req.parts.headers.clone();
    let replace = match h.get("x-amz-metadata-directive").and_then(|v| v.to_str().ok()) {
        None | Some("COPY") => false,
        Some("REPLACE") => true,
        Some(other) => {
            return Err(S3Error::new(S3ErrorCode::InvalidArgument)
                .with_message(format!("Unknown metadata directive {other:?}")))
        }
    };
    let copy_range = h.get("x-amz-copy-source-range").and_then(|v| v.to_str().ok()).map(str::to_string);
    if copy_range.is_some() && part.is_none() {
        return Err(S3Error::new(S3ErrorCode::InvalidArgument)
            .with_message("x-amz-copy-source-range is only valid for UploadPartCopy"));
    }
    if part.is_none() && !replace && src_bucket == bucket && src_key == key {
        return Err(S3Error::new(S3ErrorCode::InvalidRequest).with_message(
            "This copy request is illegal because it is trying to copy an object to itself without changing the \
             object's metadata, storage class, website redirect location or encryption attributes.",
        ));
    }
    gw.check_bucket(bucket).await?;
    // Read the source on its owner, deciding conditions and range against it.
    let req_headers = h.clone();
    let decide_src: owner::Decide = Box::new(move |info: &ObjectInfo| {
        let last_modified_s = (info.modified_ms / 1000).max(0) as u64;
        let now_s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        ReadPreconditions::copy_source_from_headers(&req_headers)
            .evaluate_copy_source(&info.etag, last_modified_s, now_s)
            .map_err(|_| S3Error::new(S3ErrorCode::PreconditionFailed))?;
        let (start, end) = match &copy_range {
            Some(r) => {
                let spec = range::parse_range(r).filter(|s| !s.is_multiple()).ok_or_else(|| {
                    S3Error::new(S3ErrorCode::InvalidArgument)
                        .with_message("The x-amz-copy-source-range value must be of the form bytes=first-last")
                })?;
                let rs = spec.resolve(info.size).map_err(|_| {
                    S3Error::new(S3ErrorCode::InvalidRange).with_message("The requested range is not satisfiable")
                })?;
                let past_end = match spec.items()[0] {
                    range::RangeItem::FromTo { last, .. } => last >= info.size,
                    _ => true, // `a-` and `-n` are not copy ranges
                };
                if past_end {
                    return Err(
                        S3Error::new(S3ErrorCode::InvalidRange).with_message("The requested range is not satisfiable")
                    );
                }
                (rs[0].start, rs[0].end_inclusive + 1)
            }
            None => (0, info.size),
        };
        let segments = if end > start { vec![Segment::Data { start, end }] } else { vec![] };
        Ok(ReadPlan { status: 200, headers: vec![], segments })
    });
    let (tx, rx) = flume::bounded::<owner::BodyChunk>(RESPONSE_CHUNKS_IN_FLIGHT_MAX);
    let (src_info, plan, _) = read_object(gw, src_bucket, src_key, decide_src, Some(tx), false).await?;
    let len = plan.body_len();
    let headers_to_store = if replace {
        stored_headers(&h)?
    } else {
        // The source's headers, its checksum only when the bytes are all of it.
        src_info.headers.iter().filter(|(n, _)| !n.starts_with("x-amz-checksum-")).cloned().collect()
    };
    let target = match &part {
        Some((upload_id, n)) => PutTarget::Part { upload_id: upload_id.clone(), part_number: *n },
        None => PutTarget::Object,
    };
    let mut source = SourceBody { rx: rx.into_stream(), remaining: len };
    let body_stream = http_body_util::StreamBody::new(futures_lite::stream::poll_fn(move |cx| source.poll(cx)));
    let forwarded = Req {
        parts: {
            let mut p = req.parts;
            // The copied bytes are not the request's body: no client checksums apply.
            let keep = |n: &http::HeaderName| {
                !n.as_str().starts_with("x-amz-checksum-")
                    && !matches!(n.as_str(), "content-md5" | "x-amz-sdk-checksum-algorithm" | "x-amz-trailer")
            };
            let mut kept = HeaderMap::new();
            for (n, v) in p.headers.iter().filter(|(n, _)| keep(n)) {
                kept.append(n.clone(), v.clone());
            }
            p.headers = kept;
            p.headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
            p.headers.remove("x-amz-decoded-content-length");
            p
        },
        body: super::service::RequestBody::from_stream(body_stream),
        request_id: req.request_id,
        payload: crate::sigv4::PayloadMode::Unsigned,
        query: req.query,
    };
    let limit = body::PUT_OBJECT_BYTES_MAX;
    let (info, _) = put_body(gw, forwarded, bucket, key, target, limit, headers_to_store, None).await?;
    let sums = super::xml::Checksums::default();
    let xml = if part.is_some() {
        super::xml::copy_part_result(&info.etag, info.modified_ms, &sums)
    } else {
        super::xml::copy_object_result(&info.etag, info.modified_ms, &sums)
    };
    Ok(Resp::xml(StatusCode::OK, xml))
}

/// The source object's bytes as a request body for the destination's owner. The
/// stream keeps its waker registered between polls (a fresh `recv_async` per poll
/// would lose the wake-up).
struct SourceBody {
    rx: flume::r#async::RecvStream<'static, owner::BodyChunk>,
    remaining: u64,
}

impl SourceBody {
    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        use futures_lite::Stream;
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.rx).poll_next(cx) {
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(Some(Ok(b))) => {
                self.remaining = self.remaining.saturating_sub(b.len() as u64);
                std::task::Poll::Ready(Some(Ok(http_body::Frame::data(b))))
            }
            std::task::Poll::Ready(Some(Err(e))) => {
                std::task::Poll::Ready(Some(Err(std::io::Error::other(e.to_string()))))
            }
            std::task::Poll::Ready(None) => {
                std::task::Poll::Ready(Some(Err(std::io::Error::other("copy source ended early"))))
            }
        }
    }
}
