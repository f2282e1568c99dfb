//! The piece protocol between gateways and storage nodes: length-prefixed binary
//! frames on TCP, opened by a mutual challenge-response on the cluster secret.
//!
//! Every frame is a fixed 16-byte header followed by its body:
//!
//! ```text
//! magic "TP" | version u8 | op u8 | request id u64 LE | body length u32 LE | body
//! ```
//!
//! A body is at most [`BODY_MAX`] bytes; a longer announced length is refused
//! before a byte of it is read, and the connection closed (it cannot be skipped
//! safely). An unknown op or a malformed body is answered with an [`Op::Error`]
//! frame and the connection goes on.
//!
//! **Handshake.** The server speaks first: `Hello { nonce_s }`. The client answers
//! `Auth { nonce_c, mac_c = HMAC-SHA256(secret, "tessera-piece-v1 client" | nonce_s | nonce_c) }`;
//! the server checks it in constant time and answers
//! `AuthOk { mac_s = HMAC-SHA256(secret, "tessera-piece-v1 server" | nonce_c | nonce_s) }`,
//! which the client checks, so each side proves it holds the secret without sending
//! it, and neither can be replayed (fresh nonces on both sides). Nothing else is
//! accepted before; a wrong MAC gets `Error(Unauthenticated)` and the connection is
//! closed. Frames are not encrypted: the cluster network is trusted for privacy,
//! the secret keeps strangers from writing or reading pieces.
//!
//! Requests on one connection are answered in order; the request id is echoed so
//! a client can check it is reading the answer it waits for.
use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tessera_engine::applied::MetaId;
use tessera_engine::format::ShardKey;

pub const MAGIC: [u8; 2] = *b"TP";
pub const VERSION: u8 = 1;
pub const HEADER_BYTES: usize = 16;
/// One piece record (1 MiB) and its fields fit with room to spare.
pub const BODY_MAX: usize = 8 << 20;
/// Nonces and MACs.
pub const NONCE_BYTES: usize = 32;
/// Error messages are cut to this length.
pub const MESSAGE_MAX: usize = 1024;
/// A secret shorter than this is refused: it would be guessable.
pub const SECRET_MIN: usize = 16;
/// `Get.len` meaning "to the end of the piece".
pub const TO_END: u64 = u64::MAX;
const CLIENT_LABEL: &[u8] = b"tessera-piece-v1 client";
const SERVER_LABEL: &[u8] = b"tessera-piece-v1 server";
/// key (4 + 16 + 4) + drive (2).
const KEY_BYTES: usize = 26;
/// A `Keys` entry: partition, object, piece, length.
const KEY_ENTRY_BYTES: usize = 32;
/// Keys one `Keys` answer can carry.
pub const KEYS_MAX: usize = (BODY_MAX - 4) / KEY_ENTRY_BYTES;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Hello = 1,
    Auth = 2,
    AuthOk = 3,
    Ping = 10,
    Put = 11,
    Get = 12,
    Delete = 13,
    List = 14,
    MetaGet = 20,
    MetaWait = 21,
    MetaList = 22,
    MetaParts = 23,
    MetaUploads = 24,
    Pong = 64,
    Ok = 65,
    Data = 66,
    Keys = 67,
    Meta = 68,
    Applied = 69,
    Listing = 70,
    Records = 71,
    Error = 127,
}

impl Op {
    fn from_u8(b: u8) -> Option<Op> {
        Some(match b {
            1 => Op::Hello,
            2 => Op::Auth,
            3 => Op::AuthOk,
            10 => Op::Ping,
            11 => Op::Put,
            12 => Op::Get,
            13 => Op::Delete,
            14 => Op::List,
            20 => Op::MetaGet,
            21 => Op::MetaWait,
            22 => Op::MetaList,
            23 => Op::MetaParts,
            24 => Op::MetaUploads,
            64 => Op::Pong,
            65 => Op::Ok,
            66 => Op::Data,
            67 => Op::Keys,
            68 => Op::Meta,
            69 => Op::Applied,
            70 => Op::Listing,
            71 => Op::Records,
            127 => Op::Error,
            _ => return None,
        })
    }
}

/// Why a request failed, as the node tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    BadRequest = 1,
    Unauthenticated = 2,
    NotFound = 3,
    NoSuchDrive = 4,
    Io = 5,
    TooLarge = 6,
    Unavailable = 7,
    /// The piece failed its checksum: treat it as missing and repair it.
    Corrupt = 8,
}

impl ErrorCode {
    fn from_u16(v: u16) -> ErrorCode {
        match v {
            2 => ErrorCode::Unauthenticated,
            3 => ErrorCode::NotFound,
            4 => ErrorCode::NoSuchDrive,
            5 => ErrorCode::Io,
            6 => ErrorCode::TooLarge,
            7 => ErrorCode::Unavailable,
            8 => ErrorCode::Corrupt,
            _ => ErrorCode::BadRequest,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("not a piece-protocol frame (magic {0:02x?})")]
    BadMagic([u8; 2]),
    #[error("piece protocol version {0}, this build speaks {VERSION}")]
    BadVersion(u8),
    #[error("unknown op {0}")]
    UnknownOp(u8),
    #[error("frame body of {0} bytes is over the {BODY_MAX}-byte limit")]
    TooLarge(u64),
    #[error("malformed {op:?} body: {why}")]
    Malformed { op: Op, why: &'static str },
    #[error("unexpected {got:?} frame, expected {expected}")]
    Unexpected { got: Op, expected: &'static str },
    #[error("answer to request {got}, expected {expected}")]
    WrongId { got: u64, expected: u64 },
    #[error("the node refused the cluster secret")]
    Refused,
    #[error("the node failed to prove it holds the cluster secret")]
    ServerNotAuthentic,
    #[error("node error {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub op: u8,
    pub id: u64,
    pub len: u32,
}

impl Header {
    pub fn encode(op: Op, id: u64, len: usize) -> [u8; HEADER_BYTES] {
        assert!(len <= BODY_MAX, "frame body {len} over the limit");
        let mut h = [0u8; HEADER_BYTES];
        h[0..2].copy_from_slice(&MAGIC);
        h[2] = VERSION;
        h[3] = op as u8;
        h[4..12].copy_from_slice(&id.to_le_bytes());
        h[12..16].copy_from_slice(&(len as u32).to_le_bytes());
        h
    }

    /// Checks magic, version and length; the op is checked by the body decoders.
    pub fn decode(b: &[u8; HEADER_BYTES]) -> Result<Header, WireError> {
        if b[0..2] != MAGIC {
            return Err(WireError::BadMagic([b[0], b[1]]));
        }
        if b[2] != VERSION {
            return Err(WireError::BadVersion(b[2]));
        }
        let len = u32::from_le_bytes(b[12..16].try_into().expect("4 bytes"));
        if len as usize > BODY_MAX {
            return Err(WireError::TooLarge(len as u64));
        }
        Ok(Header { op: b[3], id: u64::from_le_bytes(b[4..12].try_into().expect("8 bytes")), len })
    }
}

/// What a gateway asks a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Ping,
    /// Stores the piece durably (replacing one with the same key).
    Put {
        drive: u16,
        key: ShardKey,
        data: Vec<u8>,
    },
    /// `len == TO_END` reads to the end of the piece.
    Get {
        drive: u16,
        key: ShardKey,
        offset: u64,
        len: u64,
    },
    Delete {
        drive: u16,
        key: ShardKey,
    },
    /// The pieces of one partition on one drive, with their lengths.
    List {
        drive: u16,
        partition: u32,
    },
    /// The applied metadata record of an identity, and the partition's applied
    /// log position.
    MetaGet {
        partition: u32,
        id: MetaId,
    },
    /// Answers once the partition's log is applied up to `position`, or with
    /// `Unavailable` after `timeout_ms`.
    MetaWait {
        partition: u32,
        position: u64,
        timeout_ms: u32,
    },
    /// Objects of a bucket in one partition, in key order, deletions included.
    MetaList {
        partition: u32,
        bucket: String,
        prefix: String,
        start_after: String,
        limit: u32,
    },
    /// The part records of a multipart upload (deletions included), by part number.
    MetaParts {
        partition: u32,
        bucket: String,
        key: String,
        upload_id: String,
    },
    /// Upload records of a bucket (deletions included) whose key starts with
    /// `prefix`, after (`after_key`, `after_upload_id`), in that order; answered
    /// with `Records`.
    MetaUploads {
        partition: u32,
        bucket: String,
        prefix: String,
        after_key: String,
        after_upload_id: String,
        limit: u32,
    },
}

/// One object in a [`Reply::Listing`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub version: u64,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
    /// False for a deletion: a reader merging several nodes' answers needs it to
    /// tell a deleted key from one a stale node still has.
    pub live: bool,
}

/// What a node answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Pong,
    Ok,
    Data(Vec<u8>),
    Keys(Vec<(ShardKey, u64)>),
    /// `applied`: the partition's applied position (`None`: nothing applied yet);
    /// `record`: the stored record (its version is its log position), if any.
    Meta {
        applied: Option<u64>,
        record: Option<Vec<u8>>,
    },
    Applied(u64),
    Listing {
        applied: Option<u64>,
        entries: Vec<Listed>,
    },
    /// Stored records (each as `Meta` carries one).
    Records {
        applied: Option<u64>,
        records: Vec<Vec<u8>>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

fn put_key(out: &mut Vec<u8>, drive: u16, key: &ShardKey) {
    out.extend_from_slice(&drive.to_le_bytes());
    out.extend_from_slice(&key.partition.to_le_bytes());
    out.extend_from_slice(&key.object.to_le_bytes());
    out.extend_from_slice(&key.piece.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_le_bytes());
        }
        None => out.push(0),
    }
}

fn put_meta_id(out: &mut Vec<u8>, id: &MetaId) {
    match id {
        MetaId::Object { bucket, key } => {
            out.push(1);
            put_str(out, bucket);
            put_str(out, key);
        }
        MetaId::Upload { bucket, key, upload_id } => {
            out.push(2);
            put_str(out, bucket);
            put_str(out, key);
            put_str(out, upload_id);
        }
        MetaId::Part { bucket, key, upload_id, part_number } => {
            out.push(3);
            put_str(out, bucket);
            put_str(out, key);
            put_str(out, upload_id);
            out.extend_from_slice(&part_number.to_le_bytes());
        }
    }
}

/// A little-endian reader over a body that reports short bodies as malformed.
struct Cursor<'a> {
    b: &'a [u8],
    op: Op,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.b.len() < n {
            return Err(WireError::Malformed { op: self.op, why: "body too short" });
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u128(&mut self) -> Result<u128, WireError> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().expect("16")))
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> Result<i64, WireError> {
        Ok(self.u64()? as i64)
    }
    fn str(&mut self) -> Result<String, WireError> {
        let n = self.u32()? as usize;
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Malformed { op: self.op, why: "string is not UTF-8" })
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, WireError> {
        match self.u8()? {
            0 => Ok(None),
            1 => Ok(Some(self.u64()?)),
            _ => Err(WireError::Malformed { op: self.op, why: "option tag" }),
        }
    }
    fn meta_id(&mut self) -> Result<MetaId, WireError> {
        Ok(match self.u8()? {
            1 => MetaId::Object { bucket: self.str()?, key: self.str()? },
            2 => MetaId::Upload { bucket: self.str()?, key: self.str()?, upload_id: self.str()? },
            3 => {
                MetaId::Part { bucket: self.str()?, key: self.str()?, upload_id: self.str()?, part_number: self.u32()? }
            }
            _ => return Err(WireError::Malformed { op: self.op, why: "identity tag" }),
        })
    }
    fn key(&mut self) -> Result<(u16, ShardKey), WireError> {
        let drive = self.u16()?;
        Ok((drive, ShardKey { partition: self.u32()?, object: self.u128()?, piece: self.u32()? }))
    }
    fn end(&self) -> Result<(), WireError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed { op: self.op, why: "trailing bytes" })
        }
    }
}

impl Request {
    /// The request as one frame (header and body).
    pub fn encode(&self, id: u64) -> Vec<u8> {
        let (op, mut body) = match self {
            Request::Ping => (Op::Ping, Vec::new()),
            Request::Put { drive, key, data } => {
                let mut b = Vec::with_capacity(KEY_BYTES + data.len());
                put_key(&mut b, *drive, key);
                b.extend_from_slice(data);
                (Op::Put, b)
            }
            Request::Get { drive, key, offset, len } => {
                let mut b = Vec::with_capacity(KEY_BYTES + 16);
                put_key(&mut b, *drive, key);
                b.extend_from_slice(&offset.to_le_bytes());
                b.extend_from_slice(&len.to_le_bytes());
                (Op::Get, b)
            }
            Request::Delete { drive, key } => {
                let mut b = Vec::with_capacity(KEY_BYTES);
                put_key(&mut b, *drive, key);
                (Op::Delete, b)
            }
            Request::List { drive, partition } => {
                let mut b = Vec::with_capacity(6);
                b.extend_from_slice(&drive.to_le_bytes());
                b.extend_from_slice(&partition.to_le_bytes());
                (Op::List, b)
            }
            Request::MetaGet { partition, id: mid } => {
                let mut b = Vec::new();
                b.extend_from_slice(&partition.to_le_bytes());
                put_meta_id(&mut b, mid);
                (Op::MetaGet, b)
            }
            Request::MetaWait { partition, position, timeout_ms } => {
                let mut b = Vec::with_capacity(16);
                b.extend_from_slice(&partition.to_le_bytes());
                b.extend_from_slice(&position.to_le_bytes());
                b.extend_from_slice(&timeout_ms.to_le_bytes());
                (Op::MetaWait, b)
            }
            Request::MetaList { partition, bucket, prefix, start_after, limit } => {
                let mut b = Vec::new();
                b.extend_from_slice(&partition.to_le_bytes());
                put_str(&mut b, bucket);
                put_str(&mut b, prefix);
                put_str(&mut b, start_after);
                b.extend_from_slice(&limit.to_le_bytes());
                (Op::MetaList, b)
            }
            Request::MetaParts { partition, bucket, key, upload_id } => {
                let mut b = Vec::new();
                b.extend_from_slice(&partition.to_le_bytes());
                put_str(&mut b, bucket);
                put_str(&mut b, key);
                put_str(&mut b, upload_id);
                (Op::MetaParts, b)
            }
            Request::MetaUploads { partition, bucket, prefix, after_key, after_upload_id, limit } => {
                let mut b = Vec::new();
                b.extend_from_slice(&partition.to_le_bytes());
                put_str(&mut b, bucket);
                put_str(&mut b, prefix);
                put_str(&mut b, after_key);
                put_str(&mut b, after_upload_id);
                b.extend_from_slice(&limit.to_le_bytes());
                (Op::MetaUploads, b)
            }
        };
        let mut frame = Header::encode(op, id, body.len()).to_vec();
        frame.append(&mut body);
        frame
    }

    pub fn decode(op: u8, body: &[u8]) -> Result<Request, WireError> {
        let op = Op::from_u8(op).ok_or(WireError::UnknownOp(op))?;
        let mut c = Cursor { b: body, op };
        let req = match op {
            Op::Ping => Request::Ping,
            Op::Put => {
                let (drive, key) = c.key()?;
                let data = c.take(c.b.len())?.to_vec();
                Request::Put { drive, key, data }
            }
            Op::Get => {
                let (drive, key) = c.key()?;
                Request::Get { drive, key, offset: c.u64()?, len: c.u64()? }
            }
            Op::Delete => {
                let (drive, key) = c.key()?;
                Request::Delete { drive, key }
            }
            Op::List => Request::List { drive: c.u16()?, partition: c.u32()? },
            Op::MetaGet => Request::MetaGet { partition: c.u32()?, id: c.meta_id()? },
            Op::MetaWait => Request::MetaWait { partition: c.u32()?, position: c.u64()?, timeout_ms: c.u32()? },
            Op::MetaList => Request::MetaList {
                partition: c.u32()?,
                bucket: c.str()?,
                prefix: c.str()?,
                start_after: c.str()?,
                limit: c.u32()?,
            },
            Op::MetaParts => {
                Request::MetaParts { partition: c.u32()?, bucket: c.str()?, key: c.str()?, upload_id: c.str()? }
            }
            Op::MetaUploads => Request::MetaUploads {
                partition: c.u32()?,
                bucket: c.str()?,
                prefix: c.str()?,
                after_key: c.str()?,
                after_upload_id: c.str()?,
                limit: c.u32()?,
            },
            other => return Err(WireError::Unexpected { got: other, expected: "a request" }),
        };
        c.end()?;
        Ok(req)
    }
}

impl Reply {
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        let mut message = message.into();
        if message.len() > MESSAGE_MAX {
            let mut cut = MESSAGE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Reply::Error { code, message }
    }

    /// The frame's header and body, apart, so a large `Data` body is written
    /// without being copied behind its header.
    pub fn encode(self, id: u64) -> ([u8; HEADER_BYTES], Vec<u8>) {
        let (op, body) = match self {
            Reply::Pong => (Op::Pong, Vec::new()),
            Reply::Ok => (Op::Ok, Vec::new()),
            Reply::Data(d) => (Op::Data, d),
            Reply::Keys(keys) => {
                let mut b = Vec::with_capacity(4 + keys.len() * KEY_ENTRY_BYTES);
                b.extend_from_slice(&(keys.len() as u32).to_le_bytes());
                for (k, len) in keys {
                    b.extend_from_slice(&k.partition.to_le_bytes());
                    b.extend_from_slice(&k.object.to_le_bytes());
                    b.extend_from_slice(&k.piece.to_le_bytes());
                    b.extend_from_slice(&len.to_le_bytes());
                }
                (Op::Keys, b)
            }
            Reply::Meta { applied, record } => {
                let mut b = Vec::with_capacity(20 + record.as_ref().map_or(0, Vec::len));
                put_opt_u64(&mut b, applied);
                if let Some(r) = record {
                    b.push(1);
                    b.extend_from_slice(&r);
                } else {
                    b.push(0);
                }
                (Op::Meta, b)
            }
            Reply::Applied(p) => (Op::Applied, p.to_le_bytes().to_vec()),
            Reply::Records { applied, records } => {
                let mut b = Vec::new();
                put_opt_u64(&mut b, applied);
                b.extend_from_slice(&(records.len() as u32).to_le_bytes());
                for r in records {
                    b.extend_from_slice(&(r.len() as u32).to_le_bytes());
                    b.extend_from_slice(&r);
                }
                (Op::Records, b)
            }
            Reply::Listing { applied, entries } => {
                let mut b = Vec::new();
                put_opt_u64(&mut b, applied);
                b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
                for e in entries {
                    put_str(&mut b, &e.key);
                    b.extend_from_slice(&e.version.to_le_bytes());
                    b.extend_from_slice(&e.size.to_le_bytes());
                    put_str(&mut b, &e.etag);
                    b.extend_from_slice(&e.modified_ms.to_le_bytes());
                    b.push(e.live as u8);
                }
                (Op::Listing, b)
            }
            Reply::Error { code, message } => {
                let mut b = Vec::with_capacity(2 + message.len());
                b.extend_from_slice(&(code as u16).to_le_bytes());
                b.extend_from_slice(message.as_bytes());
                (Op::Error, b)
            }
        };
        (Header::encode(op, id, body.len()), body)
    }

    pub fn decode(op: u8, body: Vec<u8>) -> Result<Reply, WireError> {
        let op = Op::from_u8(op).ok_or(WireError::UnknownOp(op))?;
        Ok(match op {
            Op::Pong | Op::Ok => {
                Cursor { b: &body, op }.end()?;
                if op == Op::Pong {
                    Reply::Pong
                } else {
                    Reply::Ok
                }
            }
            Op::Data => Reply::Data(body),
            Op::Keys => {
                let mut c = Cursor { b: &body, op };
                let n = c.u32()? as usize;
                if n > body.len() / KEY_ENTRY_BYTES {
                    return Err(WireError::Malformed { op, why: "key count larger than the body" });
                }
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    let key = ShardKey { partition: c.u32()?, object: c.u128()?, piece: c.u32()? };
                    keys.push((key, c.u64()?));
                }
                c.end()?;
                Reply::Keys(keys)
            }
            Op::Meta => {
                let mut c = Cursor { b: &body, op };
                let applied = c.opt_u64()?;
                let record = match c.u8()? {
                    0 => {
                        c.end()?;
                        None
                    }
                    1 => Some(c.b.to_vec()),
                    _ => return Err(WireError::Malformed { op, why: "record tag" }),
                };
                Reply::Meta { applied, record }
            }
            Op::Applied => {
                let mut c = Cursor { b: &body, op };
                let p = c.u64()?;
                c.end()?;
                Reply::Applied(p)
            }
            Op::Records => {
                let mut c = Cursor { b: &body, op };
                let applied = c.opt_u64()?;
                let n = c.u32()? as usize;
                if n > body.len() / 4 {
                    return Err(WireError::Malformed { op, why: "record count larger than the body" });
                }
                let mut records = Vec::with_capacity(n);
                for _ in 0..n {
                    let len = c.u32()? as usize;
                    records.push(c.take(len)?.to_vec());
                }
                c.end()?;
                Reply::Records { applied, records }
            }
            Op::Listing => {
                let mut c = Cursor { b: &body, op };
                let applied = c.opt_u64()?;
                let n = c.u32()? as usize;
                // Each entry takes at least 32 bytes.
                if n > body.len() / 32 {
                    return Err(WireError::Malformed { op, why: "entry count larger than the body" });
                }
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push(Listed {
                        key: c.str()?,
                        version: c.u64()?,
                        size: c.u64()?,
                        etag: c.str()?,
                        modified_ms: c.i64()?,
                        live: c.u8()? != 0,
                    });
                }
                c.end()?;
                Reply::Listing { applied, entries }
            }
            Op::Error => {
                let mut c = Cursor { b: &body, op };
                let code = ErrorCode::from_u16(c.u16()?);
                Reply::Error { code, message: String::from_utf8_lossy(c.b).into_owned() }
            }
            other => return Err(WireError::Unexpected { got: other, expected: "an answer" }),
        })
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(label);
    m.update(a);
    m.update(b);
    m
}

/// The client's proof: `HMAC(secret, client label | nonce_s | nonce_c)`.
pub fn client_proof(secret: &[u8], nonce_s: &[u8], nonce_c: &[u8]) -> [u8; 32] {
    mac(secret, CLIENT_LABEL, nonce_s, nonce_c).finalize().into_bytes().into()
}

/// Checks a client's proof in constant time.
pub fn check_client_proof(secret: &[u8], nonce_s: &[u8], nonce_c: &[u8], proof: &[u8]) -> bool {
    mac(secret, CLIENT_LABEL, nonce_s, nonce_c).verify_slice(proof).is_ok()
}

/// The server's proof: `HMAC(secret, server label | nonce_c | nonce_s)`.
pub fn server_proof(secret: &[u8], nonce_s: &[u8], nonce_c: &[u8]) -> [u8; 32] {
    mac(secret, SERVER_LABEL, nonce_c, nonce_s).finalize().into_bytes().into()
}

pub fn check_server_proof(secret: &[u8], nonce_s: &[u8], nonce_c: &[u8], proof: &[u8]) -> bool {
    mac(secret, SERVER_LABEL, nonce_c, nonce_s).verify_slice(proof).is_ok()
}

/// The cluster secret from `TESSERA_CLUSTER_SECRET` or a file (trailing newline
/// dropped); refused when short.
pub fn load_secret(file: Option<&std::path::Path>) -> Result<Vec<u8>, String> {
    let s = match file {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read the cluster secret from {}: {e}", p.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_string(),
        None => std::env::var("TESSERA_CLUSTER_SECRET")
            .map_err(|_| "no cluster secret: set TESSERA_CLUSTER_SECRET or pass --secret-file".to_string())?,
    };
    if s.len() < SECRET_MIN {
        return Err(format!("the cluster secret must be at least {SECRET_MIN} bytes"));
    }
    Ok(s.into_bytes())
}

/// A blocking client over `std::net::TcpStream`: for tools, tests and the control
/// thread. The gateway's cores use [`AsyncClient`].
pub struct Client {
    stream: std::net::TcpStream,
    next_id: u64,
}

fn read_frame_blocking(r: &mut impl Read) -> Result<(Header, Vec<u8>), WireError> {
    let mut h = [0u8; HEADER_BYTES];
    r.read_exact(&mut h)?;
    let h = Header::decode(&h)?;
    let mut body = vec![0u8; h.len as usize];
    r.read_exact(&mut body)?;
    Ok((h, body))
}

impl Client {
    /// Connects and authenticates with `secret`.
    pub fn connect(
        addr: std::net::SocketAddr,
        secret: &[u8],
        timeout: std::time::Duration,
    ) -> Result<Client, WireError> {
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        let (h, body) = read_frame_blocking(&mut stream)?;
        let nonce_s = hello_nonce(h, &body)?;
        let nonce_c: [u8; NONCE_BYTES] = rand::random();
        let mut auth = nonce_c.to_vec();
        auth.extend_from_slice(&client_proof(secret, &nonce_s, &nonce_c));
        stream.write_all(&Header::encode(Op::Auth, 0, auth.len()))?;
        stream.write_all(&auth)?;
        let (h, body) = read_frame_blocking(&mut stream)?;
        check_auth_ok(h, body, secret, &nonce_s, &nonce_c)?;
        Ok(Client { stream, next_id: 1 })
    }

    /// Sends one request and waits for its answer; node errors come back as
    /// `Ok(Reply::Error)`.
    pub fn call(&mut self, req: &Request) -> Result<Reply, WireError> {
        let id = self.next_id;
        self.next_id += 1;
        self.stream.write_all(&req.encode(id))?;
        let (h, body) = read_frame_blocking(&mut self.stream)?;
        if h.id != id {
            return Err(WireError::WrongId { got: h.id, expected: id });
        }
        Reply::decode(h.op, body)
    }

    /// The raw stream, for tests that send malformed frames.
    pub fn stream(&mut self) -> &mut std::net::TcpStream {
        &mut self.stream
    }

    pub fn into_stream(self) -> std::net::TcpStream {
        self.stream
    }
}

/// The server's nonce from its `Hello`.
pub fn hello_nonce(h: Header, body: &[u8]) -> Result<[u8; NONCE_BYTES], WireError> {
    if h.op != Op::Hello as u8 {
        return Err(match Op::from_u8(h.op) {
            Some(got) => WireError::Unexpected { got, expected: "Hello" },
            None => WireError::UnknownOp(h.op),
        });
    }
    body.try_into().map_err(|_| WireError::Malformed { op: Op::Hello, why: "nonce is not 32 bytes" })
}

/// Checks the server's `AuthOk` (or turns its `Error` into `Refused`).
pub fn check_auth_ok(h: Header, body: Vec<u8>, secret: &[u8], nonce_s: &[u8], nonce_c: &[u8]) -> Result<(), WireError> {
    match Op::from_u8(h.op) {
        Some(Op::AuthOk) if check_server_proof(secret, nonce_s, nonce_c, &body) => Ok(()),
        Some(Op::AuthOk) => Err(WireError::ServerNotAuthentic),
        Some(Op::Error) => match Reply::decode(h.op, body)? {
            Reply::Error { code: ErrorCode::Unauthenticated, .. } => Err(WireError::Refused),
            Reply::Error { code, message } => Err(WireError::Remote { code, message }),
            _ => unreachable!("an Error frame decodes to Reply::Error"),
        },
        Some(got) => Err(WireError::Unexpected { got, expected: "AuthOk" }),
        None => Err(WireError::UnknownOp(h.op)),
    }
}

/// An async client over any futures-io stream (glommio's `TcpStream` on the cores).
pub struct AsyncClient<S> {
    stream: S,
    next_id: u64,
}

async fn read_frame_async<S: futures_lite::AsyncRead + Unpin>(r: &mut S) -> Result<(Header, Vec<u8>), WireError> {
    use futures_lite::AsyncReadExt;
    let mut h = [0u8; HEADER_BYTES];
    r.read_exact(&mut h).await?;
    let h = Header::decode(&h)?;
    let mut body = vec![0u8; h.len as usize];
    r.read_exact(&mut body).await?;
    Ok((h, body))
}

impl<S: futures_lite::AsyncRead + futures_lite::AsyncWrite + Unpin> AsyncClient<S> {
    /// Authenticates over a connected stream.
    pub async fn handshake(mut stream: S, secret: &[u8]) -> Result<AsyncClient<S>, WireError> {
        use futures_lite::AsyncWriteExt;
        let (h, body) = read_frame_async(&mut stream).await?;
        let nonce_s = hello_nonce(h, &body)?;
        let nonce_c: [u8; NONCE_BYTES] = rand::random();
        let mut auth = Header::encode(Op::Auth, 0, 2 * NONCE_BYTES).to_vec();
        auth.extend_from_slice(&nonce_c);
        auth.extend_from_slice(&client_proof(secret, &nonce_s, &nonce_c));
        stream.write_all(&auth).await?;
        stream.flush().await?;
        let (h, body) = read_frame_async(&mut stream).await?;
        check_auth_ok(h, body, secret, &nonce_s, &nonce_c)?;
        Ok(AsyncClient { stream, next_id: 1 })
    }

    pub async fn call(&mut self, req: &Request) -> Result<Reply, WireError> {
        use futures_lite::AsyncWriteExt;
        let id = self.next_id;
        self.next_id += 1;
        self.stream.write_all(&req.encode(id)).await?;
        self.stream.flush().await?;
        let (h, body) = read_frame_async(&mut self.stream).await?;
        if h.id != id {
            return Err(WireError::WrongId { got: h.id, expected: id });
        }
        Reply::decode(h.op, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> ShardKey {
        ShardKey { partition: p, object: 0x0123_4567_89ab_cdef_0011_2233_4455_6677, piece: 0x0102 }
    }

    fn roundtrip(req: Request) {
        let f = req.encode(42);
        let h = Header::decode(f[..HEADER_BYTES].try_into().unwrap()).unwrap();
        assert_eq!(h.id, 42);
        assert_eq!(h.len as usize, f.len() - HEADER_BYTES);
        assert_eq!(Request::decode(h.op, &f[HEADER_BYTES..]).unwrap(), req);
    }

    #[test]
    fn requests_round_trip() {
        roundtrip(Request::Ping);
        roundtrip(Request::Put { drive: 3, key: key(7), data: vec![9; 1000] });
        roundtrip(Request::Put { drive: 0, key: key(0), data: vec![] });
        roundtrip(Request::Get { drive: 1, key: key(255), offset: 17, len: TO_END });
        roundtrip(Request::Delete { drive: 2, key: key(1) });
        roundtrip(Request::List { drive: 5, partition: 65535 });
        roundtrip(Request::MetaGet { partition: 3, id: MetaId::Object { bucket: "b".into(), key: "k/ü".into() } });
        roundtrip(Request::MetaGet {
            partition: 3,
            id: MetaId::Part { bucket: "b".into(), key: "".into(), upload_id: "u".into(), part_number: 9 },
        });
        roundtrip(Request::MetaGet {
            partition: 0,
            id: MetaId::Upload { bucket: "b".into(), key: "k".into(), upload_id: "u".into() },
        });
        roundtrip(Request::MetaWait { partition: 1, position: 1 << 40, timeout_ms: 500 });
        roundtrip(Request::MetaList {
            partition: 2,
            bucket: "b".into(),
            prefix: "p/".into(),
            start_after: "p/a".into(),
            limit: 1000,
        });
        roundtrip(Request::MetaParts { partition: 1, bucket: "b".into(), key: "k".into(), upload_id: "u1".into() });
        roundtrip(Request::MetaUploads {
            partition: 4,
            bucket: "b".into(),
            prefix: "v/".into(),
            after_key: "v/a".into(),
            after_upload_id: "u9".into(),
            limit: 100,
        });
    }

    #[test]
    fn replies_round_trip() {
        for r in [
            Reply::Pong,
            Reply::Ok,
            Reply::Data(vec![1, 2, 3]),
            Reply::Keys(vec![(key(1), 5), (key(2), 1 << 20)]),
            Reply::Keys(vec![]),
            Reply::error(ErrorCode::NotFound, "no such piece"),
            Reply::Meta { applied: None, record: None },
            Reply::Meta { applied: Some(5), record: Some(vec![1, 2]) },
            Reply::Meta { applied: Some(0), record: Some(vec![]) },
            Reply::Applied(77),
            Reply::Listing { applied: Some(3), entries: vec![] },
            Reply::Records { applied: None, records: vec![] },
            Reply::Records { applied: Some(9), records: vec![b"one".to_vec(), vec![], vec![7; 300]] },
            Reply::Listing {
                applied: None,
                entries: vec![Listed {
                    key: "a".into(),
                    version: 1,
                    size: 2,
                    etag: "\"e\"".into(),
                    modified_ms: -4,
                    live: true,
                }],
            },
        ] {
            let (h, body) = r.clone().encode(9);
            let h = Header::decode(&h).unwrap();
            assert_eq!(h.len as usize, body.len());
            assert_eq!(Reply::decode(h.op, body).unwrap(), r);
        }
    }

    #[test]
    fn bad_headers_and_bodies_are_refused() {
        let mut h = Header::encode(Op::Ping, 1, 0);
        h[0] = b'X';
        assert!(matches!(Header::decode(&h), Err(WireError::BadMagic(_))));
        let mut h = Header::encode(Op::Ping, 1, 0);
        h[2] = 9;
        assert!(matches!(Header::decode(&h), Err(WireError::BadVersion(9))));
        let mut h = Header::encode(Op::Ping, 1, 0);
        h[12..16].copy_from_slice(&(BODY_MAX as u32 + 1).to_le_bytes());
        assert!(matches!(Header::decode(&h), Err(WireError::TooLarge(_))));
        assert!(matches!(Request::decode(200, &[]), Err(WireError::UnknownOp(200))));
        assert!(matches!(Request::decode(Op::Get as u8, &[0; 10]), Err(WireError::Malformed { .. })));
        assert!(matches!(Request::decode(Op::Ping as u8, &[0]), Err(WireError::Malformed { .. })));
        assert!(matches!(Request::decode(Op::Data as u8, &[]), Err(WireError::Unexpected { .. })));
        // A key count that the body cannot hold is refused before allocating for it.
        assert!(matches!(
            Reply::decode(Op::Keys as u8, u32::MAX.to_le_bytes().to_vec()),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic_the_decoders() {
        let mut rng = rand::thread_rng();
        for _ in 0..20_000 {
            use rand::Rng;
            let op: u8 = rng.gen();
            let len = rng.gen_range(0..80);
            let body: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let _ = Request::decode(op, &body);
            let _ = Reply::decode(op, body);
        }
    }

    #[test]
    fn proofs_need_the_secret_and_the_nonces() {
        let (s, ns, nc) = (b"0123456789abcdef-secret", [1u8; 32], [2u8; 32]);
        let p = client_proof(s, &ns, &nc);
        assert!(check_client_proof(s, &ns, &nc, &p));
        assert!(!check_client_proof(b"0123456789abcdef-other!", &ns, &nc, &p));
        assert!(!check_client_proof(s, &[3u8; 32], &nc, &p));
        // The server's proof is not the client's reflected back.
        assert!(!check_server_proof(s, &ns, &nc, &p));
        assert!(check_server_proof(s, &ns, &nc, &server_proof(s, &ns, &nc)));
        let long = "x".repeat(5000);
        match Reply::error(ErrorCode::Io, long) {
            Reply::Error { message, .. } => assert_eq!(message.len(), MESSAGE_MAX),
            _ => unreachable!(),
        }
    }
}
