//! The client side of HTTP/1.1 the bench needs: an incremental response reader and a
//! blocking one-shot exchange for setup requests.
//!
//! [`ResponseReader`] is fed whatever each `read` returned, in any split, and hands the
//! head and then every body piece to a [`Sink`] as they arrive: nothing is buffered but
//! a head that spans reads (at most [`HEAD_BYTES_MAX`]), so bodies of any size pass
//! through one reused read buffer. It handles `Content-Length`, `chunked` and
//! read-until-close bodies, bodiless responses (HEAD, 204, 304) and skips `1xx`
//! interim responses. The bench never pipelines, so bytes after a complete response
//! are reported to the caller, which treats them as a protocol error.
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest response head accepted (status line and headers).
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Longest chunk-size line extension plus trailer section accepted.
pub const CHUNK_META_BYTES_MAX: usize = 8 * 1024;
/// Hex digits of a chunk size (16 = 64 bits).
pub const CHUNK_SIZE_DIGITS_MAX: u32 = 16;
/// Body bytes a one-shot setup exchange keeps (error documents, small objects).
pub const EXCHANGE_BODY_BYTES_MAX: usize = 1 << 20;

/// A response that does not parse as HTTP/1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HttpError {
    HeadTooLarge,
    StatusLine,
    Header,
    ContentLength,
    Chunk,
    ChunkMetaTooLarge,
    /// Bytes after a complete response although no request was pipelined.
    UnexpectedData,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HttpError::HeadTooLarge => "head-too-large",
            HttpError::StatusLine => "bad-status-line",
            HttpError::Header => "bad-header",
            HttpError::ContentLength => "bad-content-length",
            HttpError::Chunk => "bad-chunk",
            HttpError::ChunkMetaTooLarge => "chunk-meta-too-large",
            HttpError::UnexpectedData => "unexpected-data",
        })
    }
}

/// Why a request got no complete response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TransportError {
    /// Connection refused.
    Refused,
    /// Any other failure to connect (unreachable, connect timeout).
    Connect,
    /// Reset by the peer, or broken pipe while sending.
    Reset,
    /// The server closed the connection before the response was complete.
    Closed,
    /// No complete response within `--timeout`.
    Timeout,
    Malformed(HttpError),
    /// Another socket error (errno).
    Io(i32),
}

impl TransportError {
    pub fn from_io(e: &io::Error, connecting: bool) -> TransportError {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => TransportError::Refused,
            io::ErrorKind::TimedOut if connecting => TransportError::Connect,
            io::ErrorKind::TimedOut => TransportError::Timeout,
            _ if connecting => TransportError::Connect,
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted => {
                TransportError::Reset
            }
            io::ErrorKind::UnexpectedEof => TransportError::Closed,
            _ => TransportError::Io(e.raw_os_error().unwrap_or(0)),
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Refused => f.write_str("connection-refused"),
            TransportError::Connect => f.write_str("connect-failed"),
            TransportError::Reset => f.write_str("connection-reset"),
            TransportError::Closed => f.write_str("closed-early"),
            TransportError::Timeout => f.write_str("timeout"),
            TransportError::Malformed(e) => write!(f, "malformed-response:{e}"),
            TransportError::Io(errno) => write!(f, "io-errno-{errno}"),
        }
    }
}

/// What the reader learned from a response head.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
    /// The server closes the connection after this response.
    pub close: bool,
}

/// Receives a response as it is parsed.
pub trait Sink {
    fn head(&mut self, head: &Head);
    fn body(&mut self, data: &[u8]);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size { value: u64, digits: u32 },
    Ext(u64),
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    FinalLf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    Length(u64),
    Chunked(Chunk),
    UntilEof,
    Done,
}

/// Outcome of feeding bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The response is not complete yet: feed more.
    More,
    /// Complete; `used` bytes of the last feed belonged to it.
    Complete { used: usize },
}

/// Incremental HTTP/1.1 response parser (see the module docs).
pub struct ResponseReader {
    phase: Phase,
    head_buf: Vec<u8>,
    head: Head,
    head_request: bool,
    chunk_meta_bytes: usize,
    /// Any byte of the response has arrived.
    started: bool,
}

impl Default for ResponseReader {
    fn default() -> Self {
        ResponseReader::new()
    }
}

impl ResponseReader {
    pub fn new() -> ResponseReader {
        ResponseReader {
            phase: Phase::Head,
            head_buf: Vec::with_capacity(1024),
            head: Head::default(),
            head_request: false,
            chunk_meta_bytes: 0,
            started: false,
        }
    }

    /// Prepares for the response to a new request (`head_request`: a HEAD, whose
    /// response has no body whatever its headers say).
    pub fn reset(&mut self, head_request: bool) {
        self.phase = Phase::Head;
        self.head_buf.clear();
        self.head = Head::default();
        self.head_request = head_request;
        self.chunk_meta_bytes = 0;
        self.started = false;
    }

    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn started(&self) -> bool {
        self.started
    }

    /// The connection was closed by the peer: completes a read-until-close body.
    pub fn feed_eof(&mut self) -> Result<(), TransportError> {
        match self.phase {
            Phase::UntilEof | Phase::Done => {
                self.phase = Phase::Done;
                Ok(())
            }
            _ => Err(TransportError::Closed),
        }
    }

    pub fn feed<S: Sink>(&mut self, mut data: &[u8], sink: &mut S) -> Result<Progress, HttpError> {
        let total = data.len();
        self.started |= total > 0;
        loop {
            match self.phase {
                Phase::Done => return Ok(Progress::Complete { used: total - data.len() }),
                Phase::Head => {
                    let used = match self.feed_head(data)? {
                        Some(used) => used,
                        None => return Ok(Progress::More),
                    };
                    data = &data[used..];
                    if (100..200).contains(&self.head.status) {
                        continue; // interim response: the real one follows
                    }
                    sink.head(&self.head);
                    let no_body = self.head_request || self.head.status == 204 || self.head.status == 304;
                    self.phase = if no_body {
                        Phase::Done
                    } else if self.head.chunked {
                        Phase::Chunked(Chunk::Size { value: 0, digits: 0 })
                    } else if let Some(n) = self.head.content_length {
                        if n == 0 {
                            Phase::Done
                        } else {
                            Phase::Length(n)
                        }
                    } else {
                        self.head.close = true;
                        Phase::UntilEof
                    };
                }
                Phase::Length(rem) => {
                    let n = rem.min(data.len() as u64) as usize;
                    sink.body(&data[..n]);
                    data = &data[n..];
                    self.phase = if rem == n as u64 { Phase::Done } else { Phase::Length(rem - n as u64) };
                    if data.is_empty() && self.phase != Phase::Done {
                        return Ok(Progress::More);
                    }
                }
                Phase::UntilEof => {
                    sink.body(data);
                    return Ok(Progress::More);
                }
                Phase::Chunked(state) => {
                    let (used, state) = self.feed_chunked(state, data, sink)?;
                    data = &data[used..];
                    self.phase = state;
                    if self.phase != Phase::Done {
                        return Ok(Progress::More);
                    }
                }
            }
        }
    }

    /// Looks for the end of the head; on finding it parses it into `self.head` and
    /// returns how many bytes of `data` it took.
    fn feed_head(&mut self, data: &[u8]) -> Result<Option<usize>, HttpError> {
        if self.head_buf.is_empty() {
            // Common case: the whole head in one read, parsed in place.
            if let Some(end) = find_head_end(data, 0) {
                if end > HEAD_BYTES_MAX {
                    return Err(HttpError::HeadTooLarge);
                }
                self.head = parse_head(&data[..end])?;
                return Ok(Some(end));
            }
            if data.len() >= HEAD_BYTES_MAX {
                return Err(HttpError::HeadTooLarge);
            }
            self.head_buf.extend_from_slice(data);
            return Ok(None);
        }
        let old = self.head_buf.len();
        let take = data.len().min(HEAD_BYTES_MAX - old);
        self.head_buf.extend_from_slice(&data[..take]);
        match find_head_end(&self.head_buf, old.saturating_sub(3)) {
            Some(end) => {
                self.head = parse_head(&self.head_buf[..end])?;
                self.head_buf.clear();
                Ok(Some(end - old))
            }
            None if self.head_buf.len() >= HEAD_BYTES_MAX => Err(HttpError::HeadTooLarge),
            None => Ok(None),
        }
    }

    fn feed_chunked<S: Sink>(
        &mut self,
        mut state: Chunk,
        data: &[u8],
        sink: &mut S,
    ) -> Result<(usize, Phase), HttpError> {
        let mut i = 0;
        while i < data.len() {
            if let Chunk::Data(rem) = state {
                let n = rem.min((data.len() - i) as u64) as usize;
                sink.body(&data[i..i + n]);
                i += n;
                state = if rem == n as u64 { Chunk::DataCr } else { Chunk::Data(rem - n as u64) };
                continue;
            }
            let b = data[i];
            i += 1;
            if matches!(state, Chunk::Ext(_) | Chunk::TrailerStart | Chunk::TrailerLine) {
                self.chunk_meta_bytes += 1;
                if self.chunk_meta_bytes > CHUNK_META_BYTES_MAX {
                    return Err(HttpError::ChunkMetaTooLarge);
                }
            }
            state = match (state, b) {
                (Chunk::Size { value, digits }, _) if b.is_ascii_hexdigit() => {
                    if digits == CHUNK_SIZE_DIGITS_MAX {
                        return Err(HttpError::Chunk);
                    }
                    let v = (b as char).to_digit(16).expect("hex digit") as u64;
                    Chunk::Size { value: value << 4 | v, digits: digits + 1 }
                }
                (Chunk::Size { value, digits }, b';' | b' ' | b'\t') if digits > 0 => Chunk::Ext(value),
                (Chunk::Size { value, digits }, b'\r') if digits > 0 => Chunk::SizeLf(value),
                (Chunk::Ext(v), b'\r') => Chunk::SizeLf(v),
                (Chunk::Ext(v), _) => Chunk::Ext(v),
                (Chunk::SizeLf(0), b'\n') => Chunk::TrailerStart,
                (Chunk::SizeLf(v), b'\n') => Chunk::Data(v),
                (Chunk::DataCr, b'\r') => Chunk::DataLf,
                (Chunk::DataLf, b'\n') => Chunk::Size { value: 0, digits: 0 },
                (Chunk::TrailerStart, b'\r') => Chunk::FinalLf,
                (Chunk::TrailerStart | Chunk::TrailerLine, b'\n') => Chunk::TrailerStart,
                (Chunk::TrailerStart | Chunk::TrailerLine, _) => Chunk::TrailerLine,
                (Chunk::FinalLf, b'\n') => return Ok((i, Phase::Done)),
                _ => return Err(HttpError::Chunk),
            };
        }
        Ok((i, Phase::Chunked(state)))
    }
}

/// Index just past the `\r\n\r\n` ending a head, searching from `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?.windows(4).position(|w| w == b"\r\n\r\n").map(|p| from + p + 4)
}

fn parse_head(head: &[u8]) -> Result<Head, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Header)?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().ok_or(HttpError::StatusLine)?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().ok_or(HttpError::StatusLine)?;
    let http10 = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        _ => return Err(HttpError::StatusLine),
    };
    let code = parts.next().ok_or(HttpError::StatusLine)?;
    if code.len() != 3 {
        return Err(HttpError::StatusLine);
    }
    let status: u16 = code.parse().map_err(|_| HttpError::StatusLine)?;
    if !(100..600).contains(&status) {
        return Err(HttpError::StatusLine);
    }
    let mut out = Head { status, content_length: None, chunked: false, close: http10 };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(HttpError::Header)?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| HttpError::ContentLength)?;
            if out.content_length.is_some_and(|m| m != n) {
                return Err(HttpError::ContentLength);
            }
            out.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            out.chunked = value.rsplit(',').next().is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            if !out.chunked {
                return Err(HttpError::Header); // gzip etc. without chunked: framing unknown
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                if token.eq_ignore_ascii_case("close") {
                    out.close = true;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    out.close = false;
                }
            }
        }
    }
    Ok(out)
}

/// A whole response of a one-shot exchange.
#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    /// The body, truncated to [`EXCHANGE_BODY_BYTES_MAX`].
    pub body: Vec<u8>,
}

impl Response {
    /// The text of the first `<Code>` element (S3 error documents).
    pub fn s3_code(&self) -> Option<&str> {
        xml_text(&self.body, "Code")
    }
}

/// The text of the first `<tag>...</tag>` in `xml`; enough for S3's flat error bodies.
pub fn xml_text<'a>(xml: &'a [u8], tag: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(xml).ok()?;
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find("</")? + start;
    Some(&text[start..end])
}

struct Collect<'a> {
    body: &'a mut Vec<u8>,
}

impl Sink for Collect<'_> {
    fn head(&mut self, _: &Head) {}
    fn body(&mut self, data: &[u8]) {
        let room = EXCHANGE_BODY_BYTES_MAX.saturating_sub(self.body.len());
        self.body.extend_from_slice(&data[..data.len().min(room)]);
    }
}

/// Sends one request on a fresh connection and reads the whole response (setup
/// requests: bucket creation, the size probe of a URL). Blocking, with `timeout` on
/// connect and each read and write.
pub fn exchange(
    addr: SocketAddr,
    head: &[u8],
    body: &[u8],
    head_request: bool,
    timeout: Duration,
) -> Result<Response, TransportError> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| TransportError::from_io(&e, true))?;
    let io_err = |e: io::Error| TransportError::from_io(&e, false);
    stream.set_read_timeout(Some(timeout)).map_err(io_err)?;
    stream.set_write_timeout(Some(timeout)).map_err(io_err)?;
    stream.write_all(head).map_err(io_err)?;
    stream.write_all(body).map_err(io_err)?;
    let mut reader = ResponseReader::new();
    reader.reset(head_request);
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(TransportError::Timeout),
            Err(e) => return Err(io_err(e)),
        };
        if n == 0 {
            reader.feed_eof()?;
            break;
        }
        match reader.feed(&buf[..n], &mut Collect { body: &mut out }).map_err(TransportError::Malformed)? {
            Progress::More => {}
            Progress::Complete { .. } => break,
        }
    }
    Ok(Response { head: *reader.head(), body: out })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Record {
        heads: Vec<Head>,
        body: Vec<u8>,
    }

    impl Sink for Record {
        fn head(&mut self, head: &Head) {
            self.heads.push(*head);
        }
        fn body(&mut self, data: &[u8]) {
            self.body.extend_from_slice(data);
        }
    }

    /// Feeds `wire` in pieces of `step` bytes; returns what the sink saw and the bytes
    /// left over after the response.
    fn parse(wire: &[u8], step: usize, head_request: bool) -> Result<(Record, usize), HttpError> {
        let mut r = ResponseReader::new();
        r.reset(head_request);
        let mut rec = Record::default();
        for (i, piece) in wire.chunks(step).enumerate() {
            if let Progress::Complete { used } = r.feed(piece, &mut rec)? {
                return Ok((rec, wire.len() - (i * step + used)));
            }
        }
        r.feed_eof().map_err(|_| HttpError::UnexpectedData)?;
        Ok((rec, 0))
    }

    #[test]
    fn content_length_chunked_and_eof_bodies_in_any_split() {
        let cases: &[(&[u8], &[u8], u16)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello", 200),
            (b"HTTP/1.1 206 Partial\r\ncontent-length:3\r\nX: y\r\n\r\nabc", b"abc", 206),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n", b"hello world", 200),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", 200),
            (b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n", b"", 204),
            (b"HTTP/1.0 200 OK\r\n\r\nuntil close", b"until close", 200),
        ];
        for &(wire, body, status) in cases {
            for step in [1, 2, 3, 7, wire.len()] {
                let (rec, left) = parse(wire, step, false).unwrap_or_else(|e| panic!("{e} at step {step}"));
                assert_eq!(rec.heads.len(), 1, "{:?}", String::from_utf8_lossy(wire));
                assert_eq!(rec.heads[0].status, status);
                assert_eq!(rec.body, body, "step {step}");
                assert_eq!(left, 0);
            }
        }
        // A HEAD response has no body whatever Content-Length says.
        let (rec, _) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n", 5, true).unwrap();
        assert_eq!(rec.heads[0].content_length, Some(4096));
        assert!(rec.body.is_empty());
        // Connection: close and HTTP/1.0 keep-alive are reported.
        let (rec, _) = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 4, false).unwrap();
        assert!(rec.heads[0].close);
        let (rec, _) =
            parse(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 4, false).unwrap();
        assert!(!rec.heads[0].close);
        // Leftover bytes are reported, not swallowed.
        let (_, left) = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA", 100, false).unwrap();
        assert_eq!(left, 5);
    }

    #[test]
    fn malformed_responses_are_errors() {
        let cases: &[(&[u8], HttpError)] = &[
            (b"HTTP/2 200 OK\r\n\r\n", HttpError::StatusLine),
            (b"HTTP/1.1 2000 OK\r\n\r\n", HttpError::StatusLine),
            (b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", HttpError::Header),
            (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", HttpError::ContentLength),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", HttpError::ContentLength),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", HttpError::Chunk),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX", HttpError::Chunk),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n", HttpError::Chunk),
        ];
        for &(wire, want) in cases {
            for step in [1, wire.len()] {
                assert_eq!(parse(wire, step, false).err(), Some(want), "{:?}", String::from_utf8_lossy(wire));
            }
        }
        let huge = [b"HTTP/1.1 200 OK\r\nX: ".as_slice(), &vec![b'a'; HEAD_BYTES_MAX], b"\r\n\r\n"].concat();
        for step in [1000, huge.len()] {
            assert_eq!(parse(&huge, step, false).err(), Some(HttpError::HeadTooLarge));
        }
        // Closed before the body is complete.
        let mut r = ResponseReader::new();
        r.reset(false);
        let mut rec = Record::default();
        assert_eq!(r.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", &mut rec), Ok(Progress::More));
        assert_eq!(r.feed_eof(), Err(TransportError::Closed));
    }

    #[test]
    fn s3_error_code() {
        let r = Response {
            head: Head::default(),
            body: b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>m</Message></Error>".to_vec(),
        };
        assert_eq!(r.s3_code(), Some("NoSuchKey"));
        assert_eq!(xml_text(b"<a></a>", "Code"), None);
    }
}
