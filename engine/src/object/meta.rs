//! Metadata records: what the object layer writes to make objects, buckets and
//! multipart uploads findable. A record is the payload of a shard-store record
//! under the reserved piece [`META_PIECE`], replicated on `m + 1` drives; the
//! store's crcs protect it, the magic and version here name its format.
//!
//! Every record carries a `version` from the owning core's sequencer (the embedded
//! commit log's position). On start-up the replicas on every drive are merged and
//! the highest version of each identity wins, so a replica that missed an update
//! (its drive was offline) can never bring back an older state. Deletions are
//! records too (`None` bodies) for the same reason.
use rkyv::{Archive, Deserialize, Serialize};

/// Piece number reserved for metadata records; data pieces use `group << 8 | slot`.
pub const META_PIECE: u32 = u32::MAX;
/// "TMETA" + format version.
const META_MAGIC: [u8; 6] = *b"TMETA\x01";
/// Largest metadata record (inline data + headers + extents).
pub const META_RECORD_BYTES_MAX: usize = 4 << 20;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MetaRecord {
    pub version: u64,
    pub entry: MetaEntry,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum MetaEntry {
    Bucket { name: String, bucket: Option<BucketInfo> },
    Object { bucket: String, key: String, object: Option<ObjectInfo> },
    Upload { bucket: String, key: String, upload_id: String, upload: Option<UploadInfo> },
    Part { bucket: String, key: String, upload_id: String, part_number: u32, part: Option<PartInfo> },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BucketInfo {
    pub created_ms: i64,
}

/// What a client stored; opaque to the engine except `size` and `data`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    /// As the gateway returns it (quoted).
    pub etag: String,
    pub modified_ms: i64,
    /// Content-Type, Cache-Control, x-amz-meta-*, checksums, ...: lowercase names.
    pub headers: Vec<(String, String)>,
    pub data: DataLayout,
    /// For multipart objects: each part's size and ETag (partNumber GETs).
    pub parts: Vec<PartSummary>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartSummary {
    pub size: u64,
    pub etag: String,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum DataLayout {
    /// Small objects: the bytes live in the metadata record itself, replicated on
    /// `m + 1` drives. In memory the bytes are dropped and read from a replica.
    Inline(Vec<u8>),
    /// Erasure-coded data, in order; a multipart object has one extent per part.
    Extents(Vec<Extent>),
}

/// One erasure-coded run of bytes, stored as pieces `ShardKey { partition,
/// object: data_id, piece: group << 8 | slot }`, one record per (group, slot).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub data_id: u128,
    pub size: u64,
    pub geometry: Geometry,
    /// Slots whose pieces were not written (drive offline or failed during the
    /// write): reads treat them as missing without trying.
    pub missing_slots: u64,
}

/// How an extent was cut and coded. Persisted per extent: the codec's parity bytes
/// are only readable by the same codec kind and `k`/`m`.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub k: u8,
    pub m: u8,
    /// `CodecKind` as a number: 0 reed-solomon-simd, 1 isa-l.
    pub codec: u8,
    /// Bytes per data shard in a full stripe (a stripe holds `k * chunk_bytes`).
    pub chunk_bytes: u32,
    /// Stripes per piece record.
    pub group_stripes: u32,
    /// Slot `s` is on drive `(first_drive + s) % drives`.
    pub first_drive: u16,
    pub drives: u16,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct UploadInfo {
    pub initiated_ms: i64,
    pub headers: Vec<(String, String)>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
    pub checksums: Vec<(String, String)>,
    pub extent: Extent,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetaDecodeError {
    #[error("metadata record too short or bad magic")]
    BadMagic,
    #[error("metadata record fails validation: {0}")]
    Invalid(String),
}

pub fn encode(rec: &MetaRecord) -> Vec<u8> {
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(rec).expect("serializing plain data cannot fail");
    let mut out = Vec::with_capacity(META_MAGIC.len() + 2 + body.len());
    out.extend_from_slice(&META_MAGIC);
    // Pad so the rkyv body starts 8-aligned within the record.
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&body);
    out
}

pub fn decode(bytes: &[u8]) -> Result<MetaRecord, MetaDecodeError> {
    if bytes.len() < 8 || bytes[..6] != META_MAGIC {
        return Err(MetaDecodeError::BadMagic);
    }
    let body = &bytes[8..];
    // rkyv needs aligned input; store buffers carry no such guarantee for a slice.
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    rkyv::from_bytes::<MetaRecord, rkyv::rancor::Error>(&aligned).map_err(|e| MetaDecodeError::Invalid(e.to_string()))
}

impl MetaEntry {
    /// Whether this record says the thing exists (vs. a deletion marker).
    pub fn is_live(&self) -> bool {
        match self {
            MetaEntry::Bucket { bucket, .. } => bucket.is_some(),
            MetaEntry::Object { object, .. } => object.is_some(),
            MetaEntry::Upload { upload, .. } => upload.is_some(),
            MetaEntry::Part { part, .. } => part.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let rec = MetaRecord {
            version: 7,
            entry: MetaEntry::Object {
                bucket: "b".into(),
                key: "k/ü".into(),
                object: Some(ObjectInfo {
                    size: 3,
                    etag: "\"x\"".into(),
                    modified_ms: 1,
                    headers: vec![("content-type".into(), "text/plain".into())],
                    data: DataLayout::Inline(vec![1, 2, 3]),
                    parts: vec![],
                }),
            },
        };
        let bytes = encode(&rec);
        assert_eq!(decode(&bytes).unwrap(), rec);
        assert_eq!(decode(&bytes[..4]), Err(MetaDecodeError::BadMagic));
        let mut bad = bytes.clone();
        let n = bad.len();
        bad.truncate(n - 5);
        assert!(matches!(decode(&bad), Err(MetaDecodeError::Invalid(_))));
    }
}
