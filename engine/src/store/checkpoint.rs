//! Index checkpoints: an rkyv snapshot of the index and of the log position it
//! covers, so a restart replays only the records written after it.
//!
//! File layout (`checkpoint.tck`, written to a temp name, fsynced, renamed, and the
//! directory fsynced):
//!
//! ```text
//! 0   magic      [u8; 8]  "TSRCKPT\x01"
//! 8   version    u16
//! 10  reserved   [u8; 6]
//! 16  body_len   u64      bytes of rkyv body that follow the 64-byte header
//! 24  body_crc   u32      crc32c of the body
//! 28  reserved   [u8; 32]
//! 60  header_crc u32      crc32c of bytes 0..60
//! 64  body       rkyv archive of `CheckpointData`, then zero padding to 4 KiB
//! ```
use rkyv::{Archive, Deserialize, Serialize};

use crate::format::FORMAT_VERSION;

pub const CHECKPOINT_MAGIC: [u8; 8] = *b"TSRCKPT\x01";
pub const CHECKPOINT_HEADER_BYTES: usize = 64;
pub const CHECKPOINT_FILE: &str = "checkpoint.tck";
pub const CHECKPOINT_TMP_FILE: &str = "checkpoint.tck.tmp";

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CheckpointEntry {
    pub partition: u32,
    pub piece: u32,
    pub object: u128,
    pub segment: u64,
    pub offset: u64,
    pub payload_len: u64,
    pub seq: u64,
    pub block_log2: u8,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CheckpointData {
    /// Replay starts in this segment at this offset; later segments from their start.
    pub replay_segment: u64,
    pub replay_offset: u64,
    /// Seq of the last record the snapshot includes.
    pub last_seq: u64,
    /// (segment id, end offset) of every segment before `replay_segment`.
    pub segment_ends: Vec<(u64, u64)>,
    pub entries: Vec<CheckpointEntry>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint too short ({0} bytes)")]
    Truncated(usize),
    #[error("checkpoint bad magic")]
    BadMagic,
    #[error("checkpoint header checksum mismatch")]
    HeaderChecksum,
    #[error("checkpoint unsupported version {0}")]
    Version(u16),
    #[error("checkpoint body checksum mismatch")]
    BodyChecksum,
    #[error("checkpoint body does not decode: {0}")]
    Decode(String),
}

/// Encodes the file, padded to a 4 KiB multiple.
pub fn encode(data: &CheckpointData) -> Vec<u8> {
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(data).expect("serializing plain data cannot fail");
    let total = crate::io::align_up((CHECKPOINT_HEADER_BYTES + body.len()) as u64) as usize;
    let mut out = vec![0u8; total];
    out[0..8].copy_from_slice(&CHECKPOINT_MAGIC);
    out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    out[16..24].copy_from_slice(&(body.len() as u64).to_le_bytes());
    out[24..28].copy_from_slice(&crc_fast::crc32_iscsi(&body).to_le_bytes());
    let hcrc = crc_fast::crc32_iscsi(&out[..60]);
    out[60..64].copy_from_slice(&hcrc.to_le_bytes());
    out[CHECKPOINT_HEADER_BYTES..CHECKPOINT_HEADER_BYTES + body.len()].copy_from_slice(&body);
    out
}

pub fn decode(b: &[u8]) -> Result<CheckpointData, CheckpointError> {
    if b.len() < CHECKPOINT_HEADER_BYTES {
        return Err(CheckpointError::Truncated(b.len()));
    }
    if b[0..8] != CHECKPOINT_MAGIC {
        return Err(CheckpointError::BadMagic);
    }
    let hcrc = u32::from_le_bytes(b[60..64].try_into().expect("4"));
    if crc_fast::crc32_iscsi(&b[..60]) != hcrc {
        return Err(CheckpointError::HeaderChecksum);
    }
    let version = u16::from_le_bytes([b[8], b[9]]);
    if version != FORMAT_VERSION {
        return Err(CheckpointError::Version(version));
    }
    let body_len = u64::from_le_bytes(b[16..24].try_into().expect("8"));
    let end = CHECKPOINT_HEADER_BYTES as u64 + body_len;
    if end > b.len() as u64 {
        return Err(CheckpointError::Truncated(b.len()));
    }
    let body = &b[CHECKPOINT_HEADER_BYTES..end as usize];
    if crc_fast::crc32_iscsi(body) != u32::from_le_bytes(b[24..28].try_into().expect("4")) {
        return Err(CheckpointError::BodyChecksum);
    }
    // rkyv needs its input aligned; the file bytes carry no alignment guarantee.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<CheckpointData, rkyv::rancor::Error>(&aligned)
        .map_err(|e| CheckpointError::Decode(e.to_string()))
}

/// A consistent snapshot of the store's index and log position.
pub(crate) fn snapshot<I: crate::io::Io>(st: &super::State<I>) -> CheckpointData {
    CheckpointData {
        replay_segment: st.applied_segment,
        replay_offset: st.applied_offset,
        last_seq: st.applied_seq,
        segment_ends: st.segments.values().filter(|s| s.id < st.applied_segment).map(|s| (s.id, s.end)).collect(),
        entries: st
            .index
            .iter()
            .map(|(k, l)| CheckpointEntry {
                partition: k.partition,
                piece: k.piece,
                object: k.object,
                segment: l.segment,
                offset: l.offset,
                payload_len: l.payload_len,
                seq: l.seq,
                block_log2: l.block_log2,
            })
            .collect(),
    }
}

/// Writes the checkpoint durably: temp file, fsync, rename, fsync the directory.
pub(crate) async fn write<I: crate::io::Io>(
    io: &I,
    dir: &std::path::Path,
    data: &CheckpointData,
) -> Result<(), super::StoreError> {
    use crate::io::{IoFile, OpenMode};
    let bytes = encode(data);
    let tmp = dir.join(CHECKPOINT_TMP_FILE);
    match io.remove(&tmp).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let file = io.open(&tmp, OpenMode::CreateNew).await?;
    let mut buf = io.alloc(bytes.len());
    buf.copy_from_slice(&bytes);
    file.write_at(buf, 0).await?;
    file.sync().await?;
    file.close().await?;
    io.rename(&tmp, &dir.join(CHECKPOINT_FILE)).await?;
    io.sync_dir(dir).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_corruption() {
        let data = CheckpointData {
            replay_segment: 3,
            replay_offset: 8192,
            last_seq: 99,
            segment_ends: vec![(1, 4096 * 10), (2, 4096 * 3)],
            entries: (0..100)
                .map(|i| CheckpointEntry {
                    partition: i % 7,
                    piece: i,
                    object: (i as u128) << 70,
                    segment: 1,
                    offset: 4096 * i as u64,
                    payload_len: 10,
                    seq: i as u64,
                    block_log2: 16,
                })
                .collect(),
        };
        let bytes = encode(&data);
        assert_eq!(bytes.len() % 4096, 0);
        assert_eq!(decode(&bytes).unwrap(), data);
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        assert_eq!(decode(&bad), Err(CheckpointError::BodyChecksum));
        let mut bad = bytes.clone();
        bad[17] ^= 1;
        assert_eq!(decode(&bad), Err(CheckpointError::HeaderChecksum));
        assert_eq!(decode(&bytes[..30]), Err(CheckpointError::Truncated(30)));
    }
}
