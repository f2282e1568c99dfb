//! Incremental decoder for `aws-chunked` request bodies (`Content-Encoding: aws-chunked`).
//!
//! Wire format, by `x-amz-content-sha256`:
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD`:
//!   `<hex-size>;chunk-signature=<sig>\r\n<data>\r\n` ..., then `0;chunk-signature=<sig>\r\n\r\n`.
//! - `STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`: the same chunks, then after the zero chunk's
//!   header line the trailers `name:value\r\n`, `x-amz-trailer-signature:<sig>\r\n`, `\r\n`.
//! - `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: `<hex-size>\r\n<data>\r\n` ..., `0\r\n`, trailers, `\r\n`.
//!
//! Each chunk signature chains on the previous one, starting from the request's (seed)
//! signature, so chunks cannot be dropped, reordered or moved between uploads.
//!
//! **When data is released** (see [`Release`]). By default ([`Release::AsReceived`]) data
//! bytes come out as soon as they arrive and each chunk's signature is checked when its
//! last byte arrives, before any byte of the next chunk comes out. Nothing is buffered but
//! the current header line, so memory stays flat whatever the chunk size. The price: up to
//! one chunk of not-yet-verified data reaches the caller, and a chunk whose signature fails
//! has been handed out. That is sound only because the caller commits nothing before
//! [`ChunkedDecoder::finish`] returns `Ok` (Tessera's write-then-commit upload path already
//! works that way). [`Release::AfterChunkVerified`] holds each chunk until its signature is
//! checked, for a caller that acts on data before the end: it is copied into one buffer
//! (at most [`CHUNK_SIZE_BYTES_MAX`]) rather than kept as slices of the input, because a
//! client sending one-byte frames would otherwise make us hold one `Bytes` (and perhaps
//! one whole receive buffer) per byte.
//!
//! Tolerated variations, each with a real source: a zero chunk followed directly by the
//! end of the body when there are no trailers (the AWS SDKs in signed-trailer mode); an
//! empty line between the zero chunk and the trailers (the AWS documentation's example);
//! chunk extensions other than `chunk-signature` (ignored); upper or lower case hex sizes.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};

use super::{constant_time_eq, decode_hex32, AuthError, ChunkSigningContext};

/// Largest chunk accepted. The SDKs send 64 KiB; 16 MiB leaves room for any client while
/// bounding what [`Release::AfterChunkVerified`] holds.
pub const CHUNK_SIZE_BYTES_MAX: u64 = 16 * 1024 * 1024;
/// Longest chunk header line (`<hex-size>;chunk-signature=<64 hex>` is 87 bytes at most with
/// a 16-digit size; the rest is room for extensions). MinIO uses the same bound.
pub const CHUNK_HEADER_LINE_BYTES_MAX: usize = 4096;
/// All trailer lines together, CRLFs included.
pub const TRAILER_BYTES_MAX: usize = 16 * 1024;
/// Trailers accepted, not counting `x-amz-trailer-signature`.
pub const TRAILERS_COUNT_MAX: usize = 16;

const _: () = assert!(CHUNK_HEADER_LINE_BYTES_MAX >= 128);
const _: () = assert!(TRAILER_BYTES_MAX >= CHUNK_HEADER_LINE_BYTES_MAX);

const CHUNK_SIGNATURE_PREFIX: &str = "chunk-signature=";
const TRAILER_SIGNATURE_NAME: &str = "x-amz-trailer-signature";

/// Which `aws-chunked` variant the body uses (from [`super::PayloadMode::chunked_mode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkedMode {
    Signed(ChunkSigningContext),
    SignedTrailer(ChunkSigningContext),
    UnsignedTrailer,
}

impl ChunkedMode {
    fn signing_context(&self) -> Option<&ChunkSigningContext> {
        match self {
            ChunkedMode::Signed(ctx) | ChunkedMode::SignedTrailer(ctx) => Some(ctx),
            ChunkedMode::UnsignedTrailer => None,
        }
    }
}

/// When decoded data leaves the decoder; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// As soon as it arrives; verified at the chunk's end. Commit only after `finish`.
    AsReceived,
    /// Once the chunk it belongs to has passed its signature check (signed modes only;
    /// unsigned data has nothing to wait for).
    AfterChunkVerified,
}

/// The trailers of an `aws-chunked` body, names lowercase, in arrival order, without
/// `x-amz-trailer-signature`. Names are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailers {
    entries: Vec<(String, String)>,
}

impl Trailers {
    /// The value of a trailer; `name` must be lowercase.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn into_vec(self) -> Vec<(String, String)> {
        self.entries
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Accumulating a `<hex-size>[;ext...]\r\n` line.
    ChunkHeader,
    /// Inside a chunk's data.
    ChunkData {
        remaining: u64,
    },
    /// The CRLF after a chunk's data.
    ChunkEnd {
        seen_cr: bool,
    },
    /// The CRLF that ends a signed body without trailers (after `0;chunk-signature=..\r\n`).
    FinalEnd {
        seen_cr: bool,
    },
    /// Accumulating trailer lines, until an empty one.
    Trailers,
    Done,
    /// An error was returned; the decoder refuses further input.
    Failed,
}

/// Decodes an `aws-chunked` body fed in pieces of any size, verifying chunk and trailer
/// signatures in the signed modes.
pub struct ChunkedDecoder {
    mode: ChunkedMode,
    release: Release,
    state: State,
    /// The header or trailer line being accumulated, without its `\n`.
    line: Vec<u8>,
    /// Hash of the current chunk's data (signed modes).
    chunk_hasher: Sha256,
    /// The signature the client gave for the current chunk.
    chunk_signature: [u8; 32],
    /// The signature the next chunk (or the trailers) chains on; the seed at first.
    previous_signature: [u8; 32],
    /// Data of the current chunk held for [`Release::AfterChunkVerified`]; at most one chunk.
    pending: BytesMut,
    /// Data bytes announced by chunk headers so far.
    decoded_bytes: u64,
    declared_bytes: Option<u64>,
    trailers: Vec<(String, String)>,
    trailer_signature: Option<[u8; 32]>,
    trailer_bytes: usize,
    /// An empty line already seen right after the zero chunk (see module docs).
    leading_blank_seen: bool,
    /// Trailer names the request declared in `x-amz-trailer`; all must arrive.
    expected_trailers: Vec<String>,
}

impl ChunkedDecoder {
    /// `decoded_content_length`: the `x-amz-decoded-content-length` header if present
    /// ([`super::decoded_content_length`]); the decoded body must have exactly that length.
    pub fn new(mode: ChunkedMode, decoded_content_length: Option<u64>, release: Release) -> Self {
        let previous_signature = mode.signing_context().map(ChunkSigningContext::seed_signature).unwrap_or([0; 32]);
        ChunkedDecoder {
            mode,
            release,
            state: State::ChunkHeader,
            line: Vec::new(),
            chunk_hasher: Sha256::new(),
            chunk_signature: [0; 32],
            previous_signature,
            pending: BytesMut::new(),
            decoded_bytes: 0,
            declared_bytes: decoded_content_length,
            trailers: Vec::new(),
            trailer_signature: None,
            trailer_bytes: 0,
            leading_blank_seen: false,
            expected_trailers: Vec::new(),
        }
    }

    /// Requires the trailers named in the request's `x-amz-trailer` header (comma-separated)
    /// to be present at the end; without this, a body cut right after its zero chunk would
    /// pass without the checksum the client announced.
    pub fn expect_trailers(&mut self, x_amz_trailer: &str) {
        self.expected_trailers = x_amz_trailer
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
    }

    /// Decodes `input`, appending decoded data to `out`: zero-copy slices of `input` with
    /// [`Release::AsReceived`], whole verified chunks with [`Release::AfterChunkVerified`].
    /// After an error the decoder is dead: every further call fails.
    pub fn feed_bytes(&mut self, input: &Bytes, out: &mut Vec<Bytes>) -> Result<(), AuthError> {
        self.feed_with(input, &|range| input.slice(range), out)
    }

    /// As [`Self::feed_bytes`] for a borrowed buffer: the data parts are copied.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Bytes>) -> Result<(), AuthError> {
        self.feed_with(input, &|range| Bytes::copy_from_slice(&input[range]), out)
    }

    /// Ends the body: Ok with its trailers only if the framing is complete, every signature
    /// checked out and the length matches `x-amz-decoded-content-length`.
    pub fn finish(self) -> Result<Trailers, AuthError> {
        let complete = match self.state {
            State::Done => true,
            // The body may end right after the zero chunk (or after one empty line) when
            // there are no trailers: nothing is left to verify then.
            State::Trailers => self.line.is_empty() && self.trailers.is_empty() && self.trailer_signature.is_none(),
            State::Failed => return Err(AuthError::InvalidChunk("the body was already rejected".to_string())),
            State::ChunkHeader | State::ChunkData { .. } | State::ChunkEnd { .. } | State::FinalEnd { .. } => false,
        };
        if !complete {
            return Err(AuthError::IncompleteBody);
        }
        if let Some(declared) = self.declared_bytes {
            if declared != self.decoded_bytes {
                return Err(AuthError::DecodedContentLengthMismatch { declared, decoded: self.decoded_bytes });
            }
        }
        if let Some(missing) = self.expected_trailers.iter().find(|name| !self.trailers.iter().any(|(n, _)| n == *name))
        {
            return Err(AuthError::MalformedTrailer(format!("the declared trailer \"{missing}\" is missing")));
        }
        Ok(Trailers { entries: self.trailers })
    }

    /// Total decoded bytes announced so far.
    pub fn decoded_bytes(&self) -> u64 {
        self.decoded_bytes
    }

    fn feed_with(
        &mut self,
        input: &[u8],
        slice: &dyn Fn(Range<usize>) -> Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AuthError> {
        if self.state == State::Failed {
            return Err(AuthError::InvalidChunk("the body was already rejected".to_string()));
        }
        let result = self.decode(input, slice, out);
        if result.is_err() {
            self.state = State::Failed;
            self.pending.clear();
        }
        result
    }

    fn decode(
        &mut self,
        input: &[u8],
        slice: &dyn Fn(Range<usize>) -> Bytes,
        out: &mut Vec<Bytes>,
    ) -> Result<(), AuthError> {
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                State::ChunkHeader | State::Trailers => {
                    let in_header = self.state == State::ChunkHeader;
                    let limit = if in_header {
                        CHUNK_HEADER_LINE_BYTES_MAX
                    } else {
                        TRAILER_BYTES_MAX.saturating_sub(self.trailer_bytes)
                    };
                    let rest = &input[pos..];
                    let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                        self.push_line_part(rest, limit, in_header)?;
                        pos = input.len();
                        continue;
                    };
                    self.push_line_part(&rest[..newline], limit, in_header)?;
                    pos += newline + 1;
                    let mut line = std::mem::take(&mut self.line);
                    if line.pop() != Some(b'\r') {
                        return Err(AuthError::InvalidChunk("a line does not end with CRLF".to_string()));
                    }
                    if in_header {
                        self.on_chunk_header(&line, out)?;
                    } else {
                        self.on_trailer_line(&line)?;
                    }
                    // Keep the allocation for the next line.
                    line.clear();
                    self.line = line;
                }
                State::ChunkData { remaining } => {
                    let available = input.len() - pos;
                    // Both bounds fit usize: `n <= available`.
                    let n = usize::try_from(remaining).map_or(available, |r| r.min(available));
                    let range = pos..pos + n;
                    if self.mode.signing_context().is_some() {
                        self.chunk_hasher.update(&input[range.clone()]);
                    }
                    if self.release == Release::AfterChunkVerified && self.mode.signing_context().is_some() {
                        self.pending.extend_from_slice(&input[range]);
                    } else {
                        out.push(slice(range));
                    }
                    pos += n;
                    let remaining = remaining - n as u64;
                    if remaining == 0 {
                        self.verify_chunk(out)?;
                        self.state = State::ChunkEnd { seen_cr: false };
                    } else {
                        self.state = State::ChunkData { remaining };
                    }
                }
                State::ChunkEnd { seen_cr } | State::FinalEnd { seen_cr } => {
                    let byte = input[pos];
                    pos += 1;
                    let in_final = matches!(self.state, State::FinalEnd { .. });
                    self.state = match (seen_cr, byte, in_final) {
                        (false, b'\r', false) => State::ChunkEnd { seen_cr: true },
                        (false, b'\r', true) => State::FinalEnd { seen_cr: true },
                        (true, b'\n', false) => State::ChunkHeader,
                        (true, b'\n', true) => State::Done,
                        _ => return Err(AuthError::InvalidChunk("chunk data is not followed by CRLF".to_string())),
                    };
                }
                State::Done => {
                    return Err(AuthError::InvalidChunk("bytes follow the end of the aws-chunked body".to_string()));
                }
                State::Failed => {
                    return Err(AuthError::InvalidChunk("the body was already rejected".to_string()));
                }
            }
        }
        Ok(())
    }

    fn push_line_part(&mut self, part: &[u8], limit: usize, in_header: bool) -> Result<(), AuthError> {
        if self.line.len() + part.len() > limit {
            return Err(if in_header {
                AuthError::InvalidChunk(format!("a chunk header is longer than {CHUNK_HEADER_LINE_BYTES_MAX} bytes"))
            } else {
                AuthError::MalformedTrailer(format!("the trailers are longer than {TRAILER_BYTES_MAX} bytes"))
            });
        }
        self.line.extend_from_slice(part);
        Ok(())
    }

    fn on_chunk_header(&mut self, line: &[u8], out: &mut Vec<Bytes>) -> Result<(), AuthError> {
        let signed = self.mode.signing_context().is_some();
        let (size, signature) = parse_chunk_header(line, signed)?;
        let announced = self.decoded_bytes.saturating_add(size);
        if let Some(declared) = self.declared_bytes {
            // Fail as soon as the body is known to be too long, not after storing it.
            if announced > declared {
                return Err(AuthError::DecodedContentLengthMismatch { declared, decoded: announced });
            }
        }
        self.decoded_bytes = announced;
        if let Some(signature) = signature {
            self.chunk_signature = signature;
        }
        if size > 0 {
            self.state = State::ChunkData { remaining: size };
            return Ok(());
        }
        // The zero chunk: its signature covers empty data and ends the chain of chunks.
        self.verify_chunk(out)?;
        self.state = match self.mode {
            ChunkedMode::Signed(_) => State::FinalEnd { seen_cr: false },
            ChunkedMode::SignedTrailer(_) | ChunkedMode::UnsignedTrailer => State::Trailers,
        };
        Ok(())
    }

    /// Checks the chunk that just ended and releases its held data.
    fn verify_chunk(&mut self, out: &mut Vec<Bytes>) -> Result<(), AuthError> {
        let Some(ctx) = self.mode.signing_context() else {
            return Ok(());
        };
        let data_sha256: [u8; 32] = std::mem::take(&mut self.chunk_hasher).finalize().into();
        let expected = ctx.chunk_signature(&self.previous_signature, &data_sha256);
        if !constant_time_eq(&expected, &self.chunk_signature) {
            return Err(AuthError::SignatureDoesNotMatch);
        }
        self.previous_signature = expected;
        if !self.pending.is_empty() {
            out.push(self.pending.split().freeze());
        }
        Ok(())
    }

    fn on_trailer_line(&mut self, line: &[u8]) -> Result<(), AuthError> {
        self.trailer_bytes += line.len() + 2;
        if self.trailer_bytes > TRAILER_BYTES_MAX {
            return Err(AuthError::MalformedTrailer(format!("the trailers are longer than {TRAILER_BYTES_MAX} bytes")));
        }
        if line.is_empty() {
            if self.trailers.is_empty() && self.trailer_signature.is_none() && !self.leading_blank_seen {
                // Either the end of an empty trailer section or the zero chunk's data CRLF
                // that some clients send before the trailers: what follows, if anything,
                // tells which; `finish` accepts both.
                self.leading_blank_seen = true;
                return Ok(());
            }
            self.verify_trailers()?;
            self.state = State::Done;
            return Ok(());
        }
        let malformed = |why: &str| AuthError::MalformedTrailer(why.to_string());
        let text = std::str::from_utf8(line).map_err(|_| malformed("a trailer is not valid UTF-8"))?;
        let (name, value) = text.split_once(':').ok_or_else(|| malformed("a trailer line has no ':'"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(malformed("a trailer name is not a valid header name"));
        }
        if name == TRAILER_SIGNATURE_NAME {
            if self.mode.signing_context().is_none() {
                // Unsigned trailers carry no signature; some clients send one anyway, and
                // there is no key to check it with. Dropping it changes nothing.
                return Ok(());
            }
            if self.trailer_signature.is_some() {
                return Err(malformed("x-amz-trailer-signature appears twice"));
            }
            let signature = decode_hex32(value.as_bytes())
                .ok_or_else(|| malformed("x-amz-trailer-signature must be 64 hexadecimal characters"))?;
            self.trailer_signature = Some(signature);
            return Ok(());
        }
        if self.trailer_signature.is_some() {
            return Err(malformed("a trailer follows x-amz-trailer-signature"));
        }
        if self.trailers.iter().any(|(n, _)| *n == name) {
            // One value per name: a checksum must not be checked in one copy and stored
            // from another.
            return Err(malformed("a trailer appears twice"));
        }
        if self.trailers.len() == TRAILERS_COUNT_MAX {
            return Err(AuthError::MalformedTrailer(format!("more than {TRAILERS_COUNT_MAX} trailers")));
        }
        self.trailers.push((name, value.to_string()));
        Ok(())
    }

    fn verify_trailers(&self) -> Result<(), AuthError> {
        let Some(ctx) = self.mode.signing_context() else {
            return Ok(());
        };
        if !matches!(self.mode, ChunkedMode::SignedTrailer(_)) {
            return Err(AuthError::InvalidChunk("trailers in a body declared without them".to_string()));
        }
        let Some(provided) = self.trailer_signature else {
            if self.trailers.is_empty() {
                return Ok(());
            }
            return Err(AuthError::MalformedTrailer("signed trailers need x-amz-trailer-signature".to_string()));
        };
        let expected = ctx.trailer_signature(&self.previous_signature, &canonical_trailers_sha256(&self.trailers));
        if constant_time_eq(&expected, &provided) {
            Ok(())
        } else {
            Err(AuthError::SignatureDoesNotMatch)
        }
    }
}

/// SHA-256 of the trailers as signed: `name:value\n` each, sorted by name (as the AWS SDKs
/// sign them).
fn canonical_trailers_sha256(trailers: &[(String, String)]) -> [u8; 32] {
    let mut sorted: Vec<&(String, String)> = trailers.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut hasher = Sha256::new();
    for (name, value) in sorted {
        hasher.update(name.as_bytes());
        hasher.update(b":");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().into()
}

/// Parses `<hex-size>[;name[=value]]...` (CRLF already removed). In the signed modes the
/// `chunk-signature` extension is required.
fn parse_chunk_header(line: &[u8], signed: bool) -> Result<(u64, Option<[u8; 32]>), AuthError> {
    let invalid = |why: &str| AuthError::InvalidChunk(why.to_string());
    let text = std::str::from_utf8(line).map_err(|_| invalid("a chunk header is not ASCII"))?;
    let mut parts = text.split(';');
    let size_text = parts.next().unwrap_or_default().trim();
    if size_text.is_empty() || size_text.len() > 16 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid("a chunk size is not a hexadecimal number"));
    }
    let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("a chunk size is not a hexadecimal number"))?;
    if size > CHUNK_SIZE_BYTES_MAX {
        return Err(AuthError::InvalidChunk(format!("a chunk is larger than {CHUNK_SIZE_BYTES_MAX} bytes")));
    }
    if !signed {
        return Ok((size, None));
    }
    let mut signature = None;
    for extension in parts {
        if let Some(value) = extension.trim().strip_prefix(CHUNK_SIGNATURE_PREFIX) {
            if signature.is_some() {
                return Err(invalid("chunk-signature appears twice"));
            }
            signature = Some(
                decode_hex32(value.trim().as_bytes())
                    .ok_or_else(|| invalid("a chunk-signature is not 64 hex digits"))?,
            );
        }
    }
    let signature = signature.ok_or_else(|| invalid("a chunk has no chunk-signature"))?;
    Ok((size, Some(signature)))
}

/// Encodes `data` as an `aws-chunked` body, as the AWS SDKs do (for tests and test
/// clients). `trailers` must be empty in [`ChunkedMode::Signed`].
pub fn encode_aws_chunked(
    mode: &ChunkedMode,
    data: &[u8],
    chunk_size_bytes: usize,
    trailers: &[(&str, &str)],
) -> Vec<u8> {
    assert!(chunk_size_bytes > 0, "chunk size must be positive");
    let mut out = Vec::with_capacity(data.len() + (data.len() / chunk_size_bytes + 2) * 96 + 256);
    let ctx = mode.signing_context();
    let mut previous = ctx.map(ChunkSigningContext::seed_signature).unwrap_or([0; 32]);
    let mut put_chunk = |chunk: &[u8], out: &mut Vec<u8>| match ctx {
        Some(ctx) => {
            let signature = ctx.chunk_signature(&previous, &Sha256::digest(chunk).into());
            out.extend_from_slice(
                format!("{:x};{CHUNK_SIGNATURE_PREFIX}{}\r\n", chunk.len(), hex::encode(signature)).as_bytes(),
            );
            previous = signature;
        }
        None => out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes()),
    };
    for chunk in data.chunks(chunk_size_bytes) {
        put_chunk(chunk, &mut out);
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    put_chunk(&[], &mut out);
    match mode {
        ChunkedMode::Signed(_) => {
            assert!(trailers.is_empty(), "STREAMING-AWS4-HMAC-SHA256-PAYLOAD carries no trailers");
        }
        ChunkedMode::SignedTrailer(ctx) => {
            for (name, value) in trailers {
                out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            }
            if !trailers.is_empty() {
                let owned: Vec<(String, String)> =
                    trailers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_string())).collect();
                let signature = ctx.trailer_signature(&previous, &canonical_trailers_sha256(&owned));
                out.extend_from_slice(format!("{TRAILER_SIGNATURE_NAME}:{}\r\n", hex::encode(signature)).as_bytes());
            }
        }
        ChunkedMode::UnsignedTrailer => {
            for (name, value) in trailers {
                out.extend_from_slice(format!("{name}:{value}\r\n").as_bytes());
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const SK: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    const SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";

    /// The signing context of AWS's chunked-upload example (20130524T000000Z, us-east-1).
    fn example_ctx() -> ChunkSigningContext {
        let seed = decode_hex32(SEED.as_bytes()).unwrap();
        ChunkSigningContext::new(SK, "us-east-1", UNIX_EPOCH + Duration::from_secs(1_369_353_600), seed)
    }

    fn decode_in_steps(
        mode: &ChunkedMode,
        body: &[u8],
        step: usize,
        declared: Option<u64>,
        release: Release,
    ) -> (Result<Trailers, AuthError>, Vec<u8>) {
        let mut decoder = ChunkedDecoder::new(mode.clone(), declared, release);
        let mut out = Vec::new();
        for piece in body.chunks(step.max(1)) {
            if let Err(e) = decoder.feed_bytes(&Bytes::copy_from_slice(piece), &mut out) {
                return (Err(e), out.concat());
            }
        }
        (decoder.finish(), out.concat())
    }

    fn decode_all(mode: &ChunkedMode, body: &[u8], declared: Option<u64>) -> Result<(Trailers, Vec<u8>), AuthError> {
        let (result, data) = decode_in_steps(mode, body, body.len(), declared, Release::AsReceived);
        result.map(|trailers| (trailers, data))
    }

    #[test]
    fn aws_example_chunk_signatures() {
        let ctx = example_ctx();
        let sig = |prev: &[u8; 32], data: &[u8]| ctx.chunk_signature(prev, &Sha256::digest(data).into());
        let first = sig(&ctx.seed_signature(), &[b'a'; 65536]);
        assert_eq!(hex::encode(first), "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648");
        let second = sig(&first, &[b'a'; 1024]);
        assert_eq!(hex::encode(second), "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497");
        let last = sig(&second, b"");
        assert_eq!(hex::encode(last), "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9");
    }

    /// Every piece size, both release policies, every mode: the same data comes out.
    #[test]
    fn round_trip_in_arbitrary_pieces() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let modes = [
            (ChunkedMode::Signed(example_ctx()), vec![]),
            (
                ChunkedMode::SignedTrailer(example_ctx()),
                vec![("x-amz-checksum-crc32", "AAAAAA=="), ("x-amz-meta-b", "2")],
            ),
            (ChunkedMode::SignedTrailer(example_ctx()), vec![]),
            (ChunkedMode::UnsignedTrailer, vec![("x-amz-checksum-crc64nvme", "AAAAAAAAAAA=")]),
            (ChunkedMode::UnsignedTrailer, vec![]),
        ];
        for (mode, trailers) in &modes {
            for len in [0, 1, 1000, 1024, 5000] {
                let body = encode_aws_chunked(mode, &data[..len], 1024, trailers);
                for step in [1, 2, 3, 7, 87, 1024, 1031, body.len()] {
                    for release in [Release::AsReceived, Release::AfterChunkVerified] {
                        let (result, out) = decode_in_steps(mode, &body, step, Some(len as u64), release);
                        let got = result.unwrap_or_else(|e| panic!("{mode:?} len {len} step {step}: {e}"));
                        assert_eq!(out, &data[..len]);
                        let expected: Vec<(String, String)> =
                            trailers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
                        assert_eq!(got.into_vec(), expected);
                    }
                }
            }
        }
    }

    #[test]
    fn feed_bytes_slices_without_copying() {
        let mode = ChunkedMode::UnsignedTrailer;
        let body = Bytes::from(encode_aws_chunked(&mode, b"hello world", 4, &[]));
        let mut decoder = ChunkedDecoder::new(mode, Some(11), Release::AsReceived);
        let mut out = Vec::new();
        decoder.feed_bytes(&body, &mut out).unwrap();
        decoder.finish().unwrap();
        let range = body.as_ptr_range();
        assert!(out.iter().all(|piece| range.contains(&piece.as_ptr())), "pieces point into the input");
        assert_eq!(out.concat(), b"hello world");
    }

    #[test]
    fn tampered_chunk_data_is_caught_and_held_back() {
        let mode = ChunkedMode::Signed(example_ctx());
        let data = vec![b'a'; 3000];
        let mut body = encode_aws_chunked(&mode, &data, 1024, &[]);
        // Flip one byte in the second chunk's data.
        let second_data = body.windows(2).enumerate().filter(|(_, w)| w == b"\r\n").nth(2).unwrap().0 + 2;
        body[second_data + 10] ^= 1;
        for step in [1, 100, body.len()] {
            let (result, out) = decode_in_steps(&mode, &body, step, None, Release::AfterChunkVerified);
            assert_eq!(result.unwrap_err(), AuthError::SignatureDoesNotMatch);
            assert_eq!(out.len(), 1024, "only the first, verified chunk came out");
            let (result, out) = decode_in_steps(&mode, &body, step, None, Release::AsReceived);
            assert_eq!(result.unwrap_err(), AuthError::SignatureDoesNotMatch);
            assert!(out.len() <= 2048, "nothing of the third chunk came out");
        }
    }

    #[test]
    fn tampered_signatures_and_chain() {
        let mode = ChunkedMode::Signed(example_ctx());
        let body = encode_aws_chunked(&mode, &[b'a'; 2048], 1024, &[]);
        let text = String::from_utf8(body.clone()).unwrap();
        // A chunk signature changed (one hex digit of the first).
        let digit = text.find("chunk-signature=").unwrap() + 16;
        let mut bad = body.clone();
        bad[digit] = if bad[digit] == b'0' { b'1' } else { b'0' };
        assert_eq!(decode_all(&mode, &bad, None).unwrap_err(), AuthError::SignatureDoesNotMatch);
        // Two chunks swapped: each signature chains on the previous one.
        let chunk_len = text.find("\r\n").unwrap() + 2 + 1024 + 2;
        let swapped = [&body[chunk_len..2 * chunk_len], &body[..chunk_len], &body[2 * chunk_len..]].concat();
        assert_eq!(decode_all(&mode, &swapped, None).unwrap_err(), AuthError::SignatureDoesNotMatch);
        // The last chunk dropped: the body is incomplete, never silently shorter.
        assert_eq!(decode_all(&mode, &body[..2 * chunk_len], None).unwrap_err(), AuthError::IncompleteBody);
        // Another seed (another request) does not verify this body.
        let other = ChunkedMode::Signed(ChunkSigningContext::new(
            SK,
            "us-east-1",
            UNIX_EPOCH + Duration::from_secs(1_369_353_600),
            [1; 32],
        ));
        assert_eq!(decode_all(&other, &body, None).unwrap_err(), AuthError::SignatureDoesNotMatch);
    }

    #[test]
    fn signed_trailers() {
        let mode = ChunkedMode::SignedTrailer(example_ctx());
        let body = encode_aws_chunked(&mode, b"abc", 1024, &[("x-amz-checksum-crc32", "NSRBwg==")]);
        let text = String::from_utf8(body.clone()).unwrap();
        let (trailers, data) = decode_all(&mode, &body, Some(3)).unwrap();
        assert_eq!(data, b"abc");
        assert_eq!(trailers.get("x-amz-checksum-crc32"), Some("NSRBwg=="));
        assert_eq!(trailers.iter().count(), 1);
        // Value tampered.
        let tampered = text.replace("NSRBwg==", "NSRBwh==");
        assert_eq!(decode_all(&mode, tampered.as_bytes(), Some(3)).unwrap_err(), AuthError::SignatureDoesNotMatch);
        // Signature missing.
        let start = text.find("x-amz-trailer-signature").unwrap();
        let unsigned = format!("{}\r\n", &text[..start]);
        assert!(matches!(decode_all(&mode, unsigned.as_bytes(), Some(3)), Err(AuthError::MalformedTrailer(_))));
        // A trailer after the signature.
        let after = format!("{}x-amz-meta-x:1\r\n\r\n", &text[..text.len() - 2]);
        assert!(matches!(decode_all(&mode, after.as_bytes(), Some(3)), Err(AuthError::MalformedTrailer(_))));
        // Extra whitespace around names and values is not part of the signed form.
        let spaced = text.replace("x-amz-checksum-crc32:NSRBwg==", "x-amz-checksum-crc32 :  NSRBwg== ");
        assert!(decode_all(&mode, spaced.as_bytes(), Some(3)).is_ok());
    }

    /// The AWS SDKs end a signed-trailer body with no trailers right after the zero chunk.
    #[test]
    fn signed_trailer_mode_without_trailers() {
        let mode = ChunkedMode::SignedTrailer(example_ctx());
        let body = encode_aws_chunked(&mode, b"abc", 1024, &[]);
        assert!(body.ends_with(b"\r\n\r\n"));
        for end in [body.len(), body.len() - 2] {
            let (trailers, data) = decode_all(&mode, &body[..end], Some(3)).unwrap();
            assert!(trailers.is_empty());
            assert_eq!(data, b"abc");
        }
        // But a trailer the request declared in x-amz-trailer must come.
        let mut decoder = ChunkedDecoder::new(mode, Some(3), Release::AsReceived);
        decoder.expect_trailers("x-amz-checksum-crc32");
        decoder.feed(&body, &mut Vec::new()).unwrap();
        assert!(matches!(decoder.finish(), Err(AuthError::MalformedTrailer(_))));
    }

    #[test]
    fn unsigned_trailer_parsing() {
        let mode = ChunkedMode::UnsignedTrailer;
        /// (body, decoded data, trailers)
        type Case<'a> = (&'a [u8], &'a [u8], &'a [(&'a str, &'a str)]);
        let cases: [Case<'_>; 6] = [
            (b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:NSRBwg==\r\n\r\n", b"abc", &[("x-amz-checksum-crc32", "NSRBwg==")]),
            (b"3;ext=1;chunk-signature=zz\r\nabc\r\n0;x\r\n\r\n", b"abc", &[]),
            (b"A\r\n0123456789\r\n0\r\n\r\n", b"0123456789", &[]),
            (b"4\r\na\r\nb\r\n0\r\n\r\n", b"a\r\nb", &[]),
            (b"3\r\nabc\r\n0\r\n", b"abc", &[]),
            (
                b"3\r\nabc\r\n0\r\nX-Amz-Checksum-CRC32C: BBBB==\r\nx-amz-meta-k:v:w\r\nx-amz-trailer-signature:ignored\r\n\r\n",
                b"abc",
                &[("x-amz-checksum-crc32c", "BBBB=="), ("x-amz-meta-k", "v:w")],
            ),
        ];
        for (body, data, expected) in cases {
            for step in [1, body.len()] {
                let (result, out) = decode_in_steps(&mode, body, step, None, Release::AsReceived);
                let trailers = result.unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(body)));
                assert_eq!(out, data);
                let expected: Vec<(String, String)> =
                    expected.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
                assert_eq!(trailers.into_vec(), expected);
            }
        }
    }

    #[test]
    fn decoded_length_must_match() {
        let mode = ChunkedMode::UnsignedTrailer;
        let body = encode_aws_chunked(&mode, b"abc", 2, &[]);
        assert_eq!(
            decode_all(&mode, &body, Some(4)).unwrap_err(),
            AuthError::DecodedContentLengthMismatch { declared: 4, decoded: 3 }
        );
        // Too long is caught at the chunk header, before its data comes out.
        let (result, out) = decode_in_steps(&mode, &body, 1, Some(1), Release::AsReceived);
        assert_eq!(result.unwrap_err(), AuthError::DecodedContentLengthMismatch { declared: 1, decoded: 2 });
        assert!(out.is_empty());
        assert!(decode_all(&mode, &body, Some(3)).is_ok());
        assert!(decode_all(&mode, &body, None).is_ok());
    }

    #[test]
    fn malformed_framing() {
        let unsigned = ChunkedMode::UnsignedTrailer;
        let signed = ChunkedMode::Signed(example_ctx());
        let sig = "0".repeat(64);
        let cases: Vec<(&ChunkedMode, Vec<u8>)> = vec![
            (&unsigned, b"zz\r\nabc\r\n0\r\n\r\n".to_vec()),
            (&unsigned, b"\r\n".to_vec()),
            (&unsigned, b"-3\r\nabc\r\n0\r\n\r\n".to_vec()),
            (&unsigned, b"3\nabc\r\n0\r\n\r\n".to_vec()),
            (&unsigned, b"3\r\nabcd\r\n0\r\n\r\n".to_vec()),
            (&unsigned, b"3\r\nabc\r\r0\r\n\r\n".to_vec()),
            (&unsigned, b"3\r\nabc\r\n0\r\nx-amz-meta-a:1\r\n\r\nextra".to_vec()),
            (&unsigned, b"00000000000000001\r\na\r\n".to_vec()),
            (&unsigned, format!("{:x}\r\n", CHUNK_SIZE_BYTES_MAX + 1).into_bytes()),
            (&unsigned, [b"3;".as_slice(), &vec![b'x'; CHUNK_HEADER_LINE_BYTES_MAX]].concat()),
            (&unsigned, b"3\r\nabc\r\n0\r\nno-colon\r\n\r\n".to_vec()),
            (&unsigned, b"3\r\nabc\r\n0\r\nbad name:1\r\n\r\n".to_vec()),
            (&unsigned, b"3\r\nabc\r\n0\r\na:1\r\na:2\r\n\r\n".to_vec()),
            (&unsigned, b"3\r\nabc\r\n0\r\n\xff:1\r\n\r\n".to_vec()),
            (&signed, b"3\r\nabc\r\n".to_vec()),
            (&signed, format!("3;chunk-signature={}\r\nabc\r\n", &sig[..63]).into_bytes()),
            (&signed, format!("3;chunk-signature={sig};chunk-signature={sig}\r\nabc\r\n").into_bytes()),
        ];
        for (mode, body) in cases {
            for step in [1, body.len()] {
                let (result, _) = decode_in_steps(mode, &body, step, None, Release::AsReceived);
                assert!(
                    matches!(result, Err(AuthError::InvalidChunk(_) | AuthError::MalformedTrailer(_))),
                    "{:?} step {step}: {result:?}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }

    #[test]
    fn truncated_bodies_are_incomplete() {
        let mode = ChunkedMode::SignedTrailer(example_ctx());
        let body = encode_aws_chunked(&mode, b"hello", 2, &[("x-amz-checksum-crc32", "NSRBwg==")]);
        // Every proper prefix is either incomplete or (right after the zero chunk) a body
        // without trailers; none yields a trailer it did not fully receive.
        let zero_chunk_end = String::from_utf8(body.clone()).unwrap().find("x-amz-checksum").unwrap();
        for end in 0..body.len() {
            match decode_all(&mode, &body[..end], None) {
                Err(AuthError::IncompleteBody) => {}
                Ok((trailers, data)) => {
                    assert_eq!(end, zero_chunk_end, "only the bare zero chunk may end the body");
                    assert!(trailers.is_empty());
                    assert_eq!(data, b"hello");
                }
                Err(e) => panic!("prefix {end}: {e}"),
            }
        }
    }

    #[test]
    fn trailer_limits() {
        let mode = ChunkedMode::UnsignedTrailer;
        let names: Vec<String> = (0..=TRAILERS_COUNT_MAX).map(|i| format!("x-amz-meta-{i}")).collect();
        let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let body = encode_aws_chunked(&mode, b"", 1, &many);
        assert!(matches!(decode_all(&mode, &body, None), Err(AuthError::MalformedTrailer(_))));
        let body = encode_aws_chunked(&mode, b"", 1, &many[..TRAILERS_COUNT_MAX]);
        assert_eq!(decode_all(&mode, &body, None).unwrap().0.len(), TRAILERS_COUNT_MAX);
        let long = "v".repeat(TRAILER_BYTES_MAX);
        let body = encode_aws_chunked(&mode, b"", 1, &[("x-amz-meta-long", &long)]);
        for step in [1, 1000, body.len()] {
            let (result, _) = decode_in_steps(&mode, &body, step, None, Release::AsReceived);
            assert!(matches!(result, Err(AuthError::MalformedTrailer(_))));
        }
    }

    #[test]
    fn a_failed_decoder_stays_failed() {
        let mode = ChunkedMode::UnsignedTrailer;
        let mut decoder = ChunkedDecoder::new(mode, None, Release::AsReceived);
        let mut out = Vec::new();
        assert!(decoder.feed(b"zz\r\n", &mut out).is_err());
        assert!(decoder.feed(b"0\r\n\r\n", &mut out).is_err());
        assert!(decoder.finish().is_err());
        assert!(out.is_empty());
    }
}
