//! Request bodies: decode `aws-chunked` (verifying chunk signatures), hash what
//! the client sent (MD5 for the ETag, the `x-amz-checksum-*` it asked for, the
//! SHA-256 it signed), enforce the size limit, and hand the bytes to the owning
//! core as they arrive. Nothing is committed until the whole body checked out:
//! the final [`BodyMsg::End`] carries either the commit's inputs or the error.
use bytes::Bytes;
use http_body_util::BodyExt;

use crate::s3::checksum::{self, Checksum, ChecksumAlgorithm, Checksummer, RequestChecksums};
use crate::s3::error::{S3Error, S3ErrorCode};
use crate::s3::owner::BodyMsg;
use crate::sigv4::chunked::{ChunkedDecoder, Release};
use crate::sigv4::PayloadMode;

/// Largest single PUT (S3's limit; larger objects use multipart).
pub const PUT_OBJECT_BYTES_MAX: u64 = 5 << 30;
/// Largest XML request body (CompleteMultipartUpload of 10 000 parts with checksums fits).
pub const XML_BODY_BYTES_MAX: usize = 8 << 20;

pub struct IngestSpec {
    pub payload: PayloadMode,
    pub decoded_len: Option<u64>,
    pub content_length: Option<u64>,
    pub limit: u64,
    pub checksums: RequestChecksums,
}

pub struct Ingested {
    pub len: u64,
    /// The checksum the client sent (header or trailer), verified.
    pub checksum: Option<Checksum>,
}

/// Streams `body` to `tx`; see the module docs. On error the caller sends
/// `BodyMsg::End(Err(..))` so the owner drops what it wrote.
pub async fn pump<B>(mut body: B, spec: IngestSpec, tx: &flume::Sender<BodyMsg>) -> Result<Ingested, S3Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if let Some(cl) = spec.content_length.filter(|_| !spec.payload.is_aws_chunked()) {
        if cl > spec.limit {
            return Err(S3Error::entity_too_large(cl, spec.limit));
        }
    }
    if let Some(dl) = spec.decoded_len {
        if dl > spec.limit {
            return Err(S3Error::entity_too_large(dl, spec.limit));
        }
    }
    let mut decoder =
        spec.payload.chunked_mode().map(|m| ChunkedDecoder::new(m, spec.decoded_len, Release::AfterChunkVerified));
    let mut payload_check = spec.payload.payload_check();
    let algorithm: Option<ChecksumAlgorithm> =
        spec.checksums.value.map(|c| c.algorithm()).or(spec.checksums.trailer).or(spec.checksums.sdk_algorithm);
    let mut summer = algorithm.map(Checksummer::new);
    let mut len = 0u64;
    let mut out: Vec<Bytes> = Vec::new();
    loop {
        let Some(frame) = body.frame().await else { break };
        let frame = frame.map_err(|e| {
            S3Error::new(S3ErrorCode::IncompleteBody).with_message(format!("reading the request body: {e}"))
        })?;
        let Ok(data) = frame.into_data() else { continue }; // HTTP trailers: not used by S3
        if let Some(p) = payload_check.as_mut() {
            p.update(&data);
        }
        match decoder.as_mut() {
            Some(d) => d.feed_bytes(&data, &mut out).map_err(S3Error::from)?,
            None => out.push(data),
        }
        for b in out.drain(..) {
            len += b.len() as u64;
            if len > spec.limit {
                return Err(S3Error::entity_too_large(len, spec.limit));
            }
            if let Some(s) = summer.as_mut() {
                s.update(&b);
            }
            if tx.send_async(BodyMsg::Data(b)).await.is_err() {
                // The owner gave up (its error is the submit's result).
                return Err(S3Error::new(S3ErrorCode::InternalError).with_message("write aborted"));
            }
        }
    }
    let trailers = match decoder {
        Some(d) => d.finish().map_err(S3Error::from)?,
        None => Default::default(),
    };
    if let Some(p) = payload_check {
        p.finish().map_err(S3Error::from)?;
    }
    if let (Some(cl), None) = (spec.content_length, spec.payload.chunked_mode()) {
        if cl != len {
            return Err(S3Error::new(S3ErrorCode::IncompleteBody)
                .with_message(format!("Content-Length {cl} but {len} bytes received")));
        }
    }
    let computed = summer.map(|s| s.finish());
    let expected = match (spec.checksums.value, spec.checksums.trailer) {
        (Some(v), _) => Some(v),
        (None, Some(alg)) => match trailers.get(alg.header_name()) {
            Some(v) => Some(alg.decode(v).ok_or_else(|| {
                S3Error::new(S3ErrorCode::InvalidRequest)
                    .with_message(format!("Value for {} trailing header is invalid.", alg.header_name()))
            })?),
            None => {
                return Err(S3Error::new(S3ErrorCode::InvalidRequest)
                    .with_message(format!("The {} trailer was announced but not sent.", alg.header_name())))
            }
        },
        (None, None) => None,
    };
    if let (Some(c), Some(e)) = (&computed, &expected) {
        checksum::verify(c, e).map_err(S3Error::from)?;
    }
    Ok(Ingested { len, checksum: computed })
}

/// Reads a small body (XML) into memory, refusing more than `max` bytes.
pub async fn read_small<B>(mut body: B, payload: &PayloadMode, max: usize) -> Result<Vec<u8>, S3Error>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut decoder = payload.chunked_mode().map(|m| ChunkedDecoder::new(m, None, Release::AfterChunkVerified));
    let mut check = payload.payload_check();
    let mut buf = Vec::new();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| S3Error::new(S3ErrorCode::IncompleteBody).with_message(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if let Some(c) = check.as_mut() {
            c.update(&data);
        }
        match decoder.as_mut() {
            Some(d) => d.feed_bytes(&data, &mut out).map_err(S3Error::from)?,
            None => out.push(data),
        }
        for b in out.drain(..) {
            if buf.len() + b.len() > max {
                return Err(S3Error::new(S3ErrorCode::MaxMessageLengthExceeded)
                    .with_message(format!("request body larger than {max} bytes")));
            }
            buf.extend_from_slice(&b);
        }
    }
    if let Some(d) = decoder {
        d.finish().map_err(S3Error::from)?;
    }
    if let Some(c) = check {
        c.finish().map_err(S3Error::from)?;
    }
    Ok(buf)
}
