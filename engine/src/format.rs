//! On-disk format of segment files. The byte diagrams are in `docs/disk-format.md`;
//! this module is the single place that encodes and decodes them. All integers are
//! little-endian, written explicitly; every layout is versioned.
//!
//! A segment file is a 4 KiB segment header followed by records, each starting at a
//! 4 KiB-aligned offset:
//!
//! ```text
//! record = [ header 64 B | block crc table 4 B x n_blocks | payload | zero pad to 4 KiB ]
//! ```
//!
//! The payload is cut into blocks of `1 << block_log2` bytes (the last may be short),
//! each with its crc32c in the table, so a range read verifies only the blocks it
//! touches. The header's crc covers the header and the table; the record chain is
//! ordered by `seq`, strictly increasing through the log.
use crate::io::{align_up, IO_ALIGN_BYTES};

/// 2: record header crcs are seeded with the segment's salt.
pub const FORMAT_VERSION: u16 = 2;

// ---- segment header (one 4 KiB block at offset 0) ----
pub const SEGMENT_MAGIC: [u8; 8] = *b"TSRSEG\0\x01";
pub const SEGMENT_HEADER_BYTES: usize = IO_ALIGN_BYTES;
pub const SEG_OFF_MAGIC: usize = 0; // [u8; 8]
pub const SEG_OFF_VERSION: usize = 8; // u16
pub const SEG_OFF_SEGMENT_ID: usize = 16; // u64
pub const SEG_OFF_CAPACITY: usize = 24; // u64, bytes reserved for the file
pub const SEG_OFF_FIRST_SEQ: usize = 32; // u64, seq of the first record written into it
pub const SEG_OFF_SESSION: usize = 40; // u64, which open of the store created it (rolls keep it)
pub const SEG_OFF_SALT: usize = 48; // u64, random; seeds the header crc of every record in it
pub const SEG_OFF_CRC: usize = 60; // u32, crc32c of bytes 0..60
pub const SEG_HEADER_USED_BYTES: usize = 64;

// ---- record header (64 bytes at the start of every record) ----
pub const RECORD_MAGIC: [u8; 4] = *b"TREC";
pub const RECORD_HEADER_BYTES: usize = 64;
pub const REC_OFF_MAGIC: usize = 0; // [u8; 4]
pub const REC_OFF_VERSION: usize = 4; // u16
pub const REC_OFF_KIND: usize = 6; // u8
pub const REC_OFF_BLOCK_LOG2: usize = 7; // u8
pub const REC_OFF_SEQ: usize = 8; // u64
pub const REC_OFF_PARTITION: usize = 16; // u32
pub const REC_OFF_PIECE: usize = 20; // u32
pub const REC_OFF_OBJECT: usize = 24; // u128 (16 bytes)
pub const REC_OFF_PAYLOAD_LEN: usize = 40; // u64
pub const REC_OFF_BATCH_SEQ: usize = 48; // u64: seq of the first record of its group commit
pub const REC_OFF_RESERVED: usize = 56; // 4 bytes, zero
pub const REC_OFF_HEADER_CRC: usize = 60; // u32: crc32c(header[0..60] ++ crc table)

const _: () = assert!(SEG_OFF_CRC + 4 == SEG_HEADER_USED_BYTES);
const _: () = assert!(SEG_OFF_SESSION + 8 <= SEG_OFF_SALT && SEG_OFF_SALT + 8 <= SEG_OFF_CRC);
const _: () = assert!(SEG_HEADER_USED_BYTES <= SEGMENT_HEADER_BYTES);
const _: () = assert!(REC_OFF_OBJECT + 16 == REC_OFF_PAYLOAD_LEN);
const _: () = assert!(REC_OFF_HEADER_CRC + 4 == RECORD_HEADER_BYTES);
const _: () = assert!(REC_OFF_BATCH_SEQ + 8 == REC_OFF_RESERVED && REC_OFF_RESERVED + 4 == REC_OFF_HEADER_CRC);
const _: () = assert!(SEGMENT_HEADER_BYTES.is_multiple_of(IO_ALIGN_BYTES));

/// Checksum block size bounds: small blocks cost table space, large ones cost read
/// amplification on small ranges.
pub const BLOCK_LOG2_MIN: u8 = 12; // 4 KiB
pub const BLOCK_LOG2_MAX: u8 = 20; // 1 MiB
pub const BLOCK_LOG2_DEFAULT: u8 = 16; // 64 KiB
/// Largest payload of one record: bounds every buffer the store allocates.
pub const RECORD_PAYLOAD_BYTES_MAX: u64 = 64 << 20;
const _: () = assert!(BLOCK_LOG2_MIN <= BLOCK_LOG2_DEFAULT && BLOCK_LOG2_DEFAULT <= BLOCK_LOG2_MAX);

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    Put = 1,
    Tombstone = 2,
}

impl RecordKind {
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Tombstone),
            _ => None,
        }
    }
}

/// Identity of a shard piece: partition, object id, piece number (stripe × slot,
/// chosen by the layer above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub partition: u32,
    pub object: u128,
    pub piece: u32,
}

/// A decoded, checked record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: RecordKind,
    pub block_log2: u8,
    pub seq: u64,
    pub key: ShardKey,
    pub payload_len: u64,
    /// Seq of the first record of the group commit this record was written in.
    /// Batches are written strictly one after another (the next only once the
    /// previous is durable), which lets recovery tell a torn tail from damage.
    pub batch_seq: u64,
    pub header_crc: u32,
}

impl RecordHeader {
    pub fn block_bytes(&self) -> u64 {
        1u64 << self.block_log2
    }
    pub fn n_blocks(&self) -> u64 {
        n_blocks(self.payload_len, self.block_log2)
    }
    /// Offset of the payload from the record start.
    pub fn payload_offset(&self) -> u64 {
        payload_offset(self.payload_len, self.block_log2)
    }
    /// Total bytes the record takes in the segment, padding included.
    pub fn record_len(&self) -> u64 {
        record_len(self.payload_len, self.block_log2)
    }
}

pub fn n_blocks(payload_len: u64, block_log2: u8) -> u64 {
    payload_len.div_ceil(1u64 << block_log2)
}
pub fn payload_offset(payload_len: u64, block_log2: u8) -> u64 {
    RECORD_HEADER_BYTES as u64 + 4 * n_blocks(payload_len, block_log2)
}
pub fn record_len(payload_len: u64, block_log2: u8) -> u64 {
    align_up(payload_offset(payload_len, block_log2) + payload_len)
}

/// Why bytes on disk are not a valid record or segment header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("bad magic")]
    BadMagic,
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    #[error("header checksum mismatch")]
    HeaderChecksum,
    #[error("invalid field {field}: {value}")]
    InvalidField { field: &'static str, value: u64 },
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("payload block {block} checksum mismatch")]
    BlockChecksum { block: u64 },
}

fn get_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}
fn get_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
fn get_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Segment header contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub segment_id: u64,
    pub capacity: u64,
    pub first_seq: u64,
    /// Incremented at every open of the store; a segment started by a roll-over
    /// keeps its predecessor's. Records of one session follow each other without
    /// a restart in between.
    pub session: u64,
    /// Seeds the header crc of the segment's records, so bytes that merely look
    /// like a record (a stored image of a segment, a crafted object) never pass as
    /// one of this segment's records.
    pub salt: u64,
}

impl SegmentHeader {
    pub fn encode(&self, out: &mut [u8]) {
        assert!(out.len() >= SEGMENT_HEADER_BYTES);
        out[..SEGMENT_HEADER_BYTES].fill(0);
        out[SEG_OFF_MAGIC..SEG_OFF_MAGIC + 8].copy_from_slice(&SEGMENT_MAGIC);
        put_u16(out, SEG_OFF_VERSION, FORMAT_VERSION);
        put_u64(out, SEG_OFF_SEGMENT_ID, self.segment_id);
        put_u64(out, SEG_OFF_CAPACITY, self.capacity);
        put_u64(out, SEG_OFF_FIRST_SEQ, self.first_seq);
        put_u64(out, SEG_OFF_SESSION, self.session);
        put_u64(out, SEG_OFF_SALT, self.salt);
        let crc = crc_fast::crc32_iscsi(&out[..SEG_OFF_CRC]);
        put_u32(out, SEG_OFF_CRC, crc);
    }

    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < SEG_HEADER_USED_BYTES {
            return Err(FormatError::Truncated { need: SEG_HEADER_USED_BYTES, have: b.len() });
        }
        if b[SEG_OFF_MAGIC..SEG_OFF_MAGIC + 8] != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic);
        }
        if crc_fast::crc32_iscsi(&b[..SEG_OFF_CRC]) != get_u32(b, SEG_OFF_CRC) {
            return Err(FormatError::HeaderChecksum);
        }
        let version = get_u16(b, SEG_OFF_VERSION);
        if version != FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        Ok(SegmentHeader {
            segment_id: get_u64(b, SEG_OFF_SEGMENT_ID),
            capacity: get_u64(b, SEG_OFF_CAPACITY),
            first_seq: get_u64(b, SEG_OFF_FIRST_SEQ),
            session: get_u64(b, SEG_OFF_SESSION),
            salt: get_u64(b, SEG_OFF_SALT),
        })
    }
}

/// Lays out a record in `out` (whose length is `record_len(payload.len(), block_log2)`):
/// header with `seq = 0` placeholder, crc table, payload, zero padding. The expensive
/// part (copy and block crcs) happens here, on the submitting request;
/// [`seal_record`] then stamps the sequence number in the committer.
pub fn build_record(out: &mut [u8], kind: RecordKind, key: ShardKey, payload: &[u8], block_log2: u8) {
    record_payload_mut(out, payload.len() as u64, block_log2).copy_from_slice(payload);
    finish_record(out, kind, key, payload.len() as u64, block_log2);
}

/// The payload's place in a record buffer of `record_len(payload_len, block_log2)`
/// bytes, for a writer that fills it in place and then calls [`finish_record`].
pub fn record_payload_mut(out: &mut [u8], payload_len: u64, block_log2: u8) -> &mut [u8] {
    assert_eq!(out.len() as u64, record_len(payload_len, block_log2), "record buffer size");
    let poff = payload_offset(payload_len, block_log2) as usize;
    &mut out[poff..poff + payload_len as usize]
}

/// Lays out the rest of a record whose payload is in place (see
/// [`record_payload_mut`]): header with `seq = 0` placeholder, crc table, padding.
pub fn finish_record(out: &mut [u8], kind: RecordKind, key: ShardKey, plen: u64, block_log2: u8) {
    let poff = payload_offset(plen, block_log2) as usize;
    assert_eq!(out.len() as u64, record_len(plen, block_log2), "record buffer size");
    assert!((BLOCK_LOG2_MIN..=BLOCK_LOG2_MAX).contains(&block_log2));
    out[..RECORD_HEADER_BYTES].fill(0);
    out[REC_OFF_MAGIC..REC_OFF_MAGIC + 4].copy_from_slice(&RECORD_MAGIC);
    put_u16(out, REC_OFF_VERSION, FORMAT_VERSION);
    out[REC_OFF_KIND] = kind as u8;
    out[REC_OFF_BLOCK_LOG2] = block_log2;
    put_u32(out, REC_OFF_PARTITION, key.partition);
    put_u32(out, REC_OFF_PIECE, key.piece);
    out[REC_OFF_OBJECT..REC_OFF_OBJECT + 16].copy_from_slice(&key.object.to_le_bytes());
    put_u64(out, REC_OFF_PAYLOAD_LEN, plen);
    let block = 1usize << block_log2;
    let (head, rest) = out.split_at_mut(poff);
    let (payload, padding) = rest.split_at_mut(plen as usize);
    for (i, chunk) in payload.chunks(block).enumerate() {
        put_u32(head, RECORD_HEADER_BYTES + 4 * i, crc_fast::crc32_iscsi(chunk));
    }
    padding.fill(0);
}

/// Stamps `seq` and `batch_seq` into a record laid out by [`build_record`] and
/// computes the header crc. Returns the header crc.
pub fn seal_record(out: &mut [u8], seq: u64, batch_seq: u64, salt: u64) -> u32 {
    assert!(batch_seq <= seq);
    put_u64(out, REC_OFF_SEQ, seq);
    put_u64(out, REC_OFF_BATCH_SEQ, batch_seq);
    let plen = get_u64(out, REC_OFF_PAYLOAD_LEN);
    let poff = payload_offset(plen, out[REC_OFF_BLOCK_LOG2]) as usize;
    let crc = header_crc(&out[..poff], salt);
    put_u32(out, REC_OFF_HEADER_CRC, crc);
    crc
}

fn header_crc(header_and_table: &[u8], salt: u64) -> u32 {
    let mut d = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    d.update(&salt.to_le_bytes());
    d.update(&header_and_table[..REC_OFF_HEADER_CRC]);
    d.update(&header_and_table[RECORD_HEADER_BYTES..]);
    d.finalize() as u32
}

/// Decodes and checks the fixed 64-byte header. The crc is checked by
/// [`check_header_crc`] once the table is in hand.
pub fn decode_header(b: &[u8]) -> Result<RecordHeader, FormatError> {
    if b.len() < RECORD_HEADER_BYTES {
        return Err(FormatError::Truncated { need: RECORD_HEADER_BYTES, have: b.len() });
    }
    if b[REC_OFF_MAGIC..REC_OFF_MAGIC + 4] != RECORD_MAGIC {
        return Err(FormatError::BadMagic);
    }
    let version = get_u16(b, REC_OFF_VERSION);
    if version != FORMAT_VERSION {
        return Err(FormatError::UnsupportedVersion(version));
    }
    let kind = RecordKind::from_u8(b[REC_OFF_KIND])
        .ok_or(FormatError::InvalidField { field: "kind", value: b[REC_OFF_KIND] as u64 })?;
    let block_log2 = b[REC_OFF_BLOCK_LOG2];
    if !(BLOCK_LOG2_MIN..=BLOCK_LOG2_MAX).contains(&block_log2) {
        return Err(FormatError::InvalidField { field: "block_log2", value: block_log2 as u64 });
    }
    let payload_len = get_u64(b, REC_OFF_PAYLOAD_LEN);
    if payload_len > RECORD_PAYLOAD_BYTES_MAX || (kind == RecordKind::Tombstone && payload_len != 0) {
        return Err(FormatError::InvalidField { field: "payload_len", value: payload_len });
    }
    Ok(RecordHeader {
        kind,
        block_log2,
        seq: get_u64(b, REC_OFF_SEQ),
        key: ShardKey {
            partition: get_u32(b, REC_OFF_PARTITION),
            piece: get_u32(b, REC_OFF_PIECE),
            object: u128::from_le_bytes(b[REC_OFF_OBJECT..REC_OFF_OBJECT + 16].try_into().expect("16")),
        },
        payload_len,
        batch_seq: get_u64(b, REC_OFF_BATCH_SEQ),
        header_crc: get_u32(b, REC_OFF_HEADER_CRC),
    })
}

/// Checks the header crc over salt + header + crc table (`b` starts at the record and holds
/// at least `payload_offset` bytes).
pub fn check_header_crc(h: &RecordHeader, b: &[u8], salt: u64) -> Result<(), FormatError> {
    let poff = h.payload_offset() as usize;
    if b.len() < poff {
        return Err(FormatError::Truncated { need: poff, have: b.len() });
    }
    if header_crc(&b[..poff], salt) != h.header_crc {
        return Err(FormatError::HeaderChecksum);
    }
    Ok(())
}

/// The stored crc of payload block `i` (`table` = bytes from the record start).
pub fn block_crc(table: &[u8], i: u64) -> u32 {
    get_u32(table, RECORD_HEADER_BYTES + 4 * i as usize)
}

/// Verifies payload blocks `first..` against the crc table. `payload` starts at the
/// first byte of block `first` and ends at a block boundary or the payload's end.
pub fn verify_blocks(h: &RecordHeader, table: &[u8], first: u64, payload: &[u8]) -> Result<(), FormatError> {
    let block = h.block_bytes() as usize;
    for (j, chunk) in payload.chunks(block).enumerate() {
        let i = first + j as u64;
        if crc_fast::crc32_iscsi(chunk) != block_crc(table, i) {
            return Err(FormatError::BlockChecksum { block: i });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ShardKey {
        ShardKey { partition: 7, object: 0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10, piece: 3 }
    }

    /// The checksums on disk are CRC-32C whatever computes them: crc-fast (its
    /// VPCLMULQDQ, SSE and small-input paths, at every length and alignment around
    /// their thresholds) agrees with the crc32c crate, which wrote the segments of
    /// earlier builds; a header crc is the one the older formula gives.
    #[test]
    fn checksums_agree_with_a_second_crc32c() {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0xc5c3_2c00);
        let mut buf = vec![0u8; (1 << 20) + 64];
        rng.fill_bytes(&mut buf);
        let lens = (0..300).chain([511, 512, 513, 1023, 1024, 1025, 4095, 4096, 4097, 65_535, 65_536, 65_537, 1 << 20]);
        for len in lens {
            for at in [0, 1, 7, 63] {
                let b = &buf[at..at + len];
                assert_eq!(crc_fast::crc32_iscsi(b), crc32c::crc32c(b), "len {len} at {at}");
            }
        }
        let payload = &buf[..200_000];
        let mut rec = vec![0u8; record_len(payload.len() as u64, 16) as usize];
        build_record(&mut rec, RecordKind::Put, key(), payload, 16);
        let salt = 0x5a17_5a17_0000_0001u64;
        let crc = seal_record(&mut rec, 9, 9, salt);
        let poff = payload_offset(payload.len() as u64, 16) as usize;
        let old = crc32c::crc32c_append(crc32c::crc32c(&salt.to_le_bytes()), &rec[..REC_OFF_HEADER_CRC]);
        assert_eq!(crc, crc32c::crc32c_append(old, &rec[RECORD_HEADER_BYTES..poff]));
    }

    #[test]
    fn record_roundtrip_and_tamper() {
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let len = record_len(payload.len() as u64, 16) as usize;
        let mut buf = vec![0xAA; len];
        build_record(&mut buf, RecordKind::Put, key(), &payload, 16);
        seal_record(&mut buf, 42, 40, 77);
        assert_eq!(decode_header(&buf).unwrap().batch_seq, 40);
        let h = decode_header(&buf).unwrap();
        assert_eq!(h.seq, 42);
        assert_eq!(h.key, key());
        assert_eq!(h.payload_len, payload.len() as u64);
        assert_eq!(h.n_blocks(), 4);
        check_header_crc(&h, &buf, 77).unwrap();
        assert_eq!(check_header_crc(&h, &buf, 78), Err(FormatError::HeaderChecksum), "another segment's salt");
        let poff = h.payload_offset() as usize;
        verify_blocks(&h, &buf, 0, &buf[poff..poff + payload.len()]).unwrap();
        assert_eq!(&buf[poff..poff + payload.len()], &payload[..]);
        assert!(buf[poff + payload.len()..].iter().all(|&b| b == 0), "padding is zeroed");
        // Any flipped header byte is caught.
        for off in [0usize, 6, 8, 16, 24, 40, 48, 64] {
            let mut bad = buf.clone();
            bad[off] ^= 0x40;
            let r = decode_header(&bad).and_then(|h| check_header_crc(&h, &bad, 77));
            assert!(r.is_err(), "flip at {off} not detected");
        }
        // A flipped payload byte is caught in its block only.
        let mut bad = buf.clone();
        bad[poff + 70_000] ^= 1;
        assert_eq!(
            verify_blocks(&h, &bad, 0, &bad[poff..poff + payload.len()]),
            Err(FormatError::BlockChecksum { block: 1 })
        );
        verify_blocks(&h, &bad, 2, &bad[poff + 131_072..poff + payload.len()]).unwrap();
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode_header(&[0u8; 10]), Err(FormatError::Truncated { need: 64, have: 10 }));
        assert_eq!(decode_header(&[0u8; 64]), Err(FormatError::BadMagic));
        let mut b = vec![0u8; 4096];
        build_record(&mut b, RecordKind::Tombstone, key(), &[], 16);
        seal_record(&mut b, 1, 1, 0);
        b[REC_OFF_BLOCK_LOG2] = 40;
        assert!(matches!(decode_header(&b), Err(FormatError::InvalidField { field: "block_log2", .. })));
    }

    #[test]
    fn segment_header_roundtrip() {
        let mut b = vec![0u8; SEGMENT_HEADER_BYTES];
        let h = SegmentHeader { segment_id: 9, capacity: 1 << 30, first_seq: 77, session: 3, salt: 0xfeed };
        h.encode(&mut b);
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[20] ^= 1;
        assert_eq!(SegmentHeader::decode(&b), Err(FormatError::HeaderChecksum));
    }
}
