//! [`ErasureCodec`] over the pure-Rust `reed-solomon-simd` crate.
//!
//! The crate's encoder/decoder own a work area sized `O((k + m) * shard_len)`;
//! we keep one of each and `reset` them per call, which reuses the allocation
//! when the shard length does not grow. Its API copies shards into the work
//! area and hands results back by reference, so each call costs one extra
//! copy of the inputs and outputs compared with an in-place codec.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use super::{check_geometry, validate_encode, validate_reconstruct, CodecError, CodecKind, ErasureCodec};

const NAME: &str = "rs-simd";

fn internal(e: reed_solomon_simd::Error) -> CodecError {
    CodecError::Internal { codec: NAME, detail: e.to_string() }
}

/// Reed-Solomon codec backed by `reed-solomon-simd` (always available).
pub struct RsSimdCodec {
    k: usize,
    m: usize,
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
}

impl RsSimdCodec {
    /// Create a codec for `k` data + `m` parity shards.
    ///
    /// Work areas are allocated lazily on first use, sized for the shard
    /// length seen then, and grown when a longer shard length shows up.
    pub fn new(k: usize, m: usize) -> Result<Self, CodecError> {
        check_geometry(k, m)?;
        if !ReedSolomonEncoder::supports(k, m) || !ReedSolomonDecoder::supports(k, m) {
            return Err(CodecError::InvalidGeometry { data: k, parity: m });
        }
        Ok(Self { k, m, encoder: None, decoder: None })
    }

    fn encoder(&mut self, shard_len: usize) -> Result<&mut ReedSolomonEncoder, CodecError> {
        let enc = match self.encoder.take() {
            Some(mut enc) => {
                enc.reset(self.k, self.m, shard_len).map_err(internal)?;
                enc
            }
            None => ReedSolomonEncoder::new(self.k, self.m, shard_len).map_err(internal)?,
        };
        Ok(self.encoder.insert(enc))
    }

    fn decoder(&mut self, shard_len: usize) -> Result<&mut ReedSolomonDecoder, CodecError> {
        let dec = match self.decoder.take() {
            Some(mut dec) => {
                dec.reset(self.k, self.m, shard_len).map_err(internal)?;
                dec
            }
            None => ReedSolomonDecoder::new(self.k, self.m, shard_len).map_err(internal)?,
        };
        Ok(self.decoder.insert(dec))
    }

    /// Restore missing data shards; arguments already validated.
    fn restore_data(&mut self, shard_len: usize, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError> {
        let k = self.k;
        if present[..k].iter().all(|&p| p) {
            return Ok(());
        }
        let dec = self.decoder(shard_len)?;
        for (i, (shard, _)) in shards.iter().zip(present).enumerate().filter(|(_, (_, &p))| p) {
            if i < k {
                dec.add_original_shard(i, &**shard).map_err(internal)?;
            } else {
                dec.add_recovery_shard(i - k, &**shard).map_err(internal)?;
            }
        }
        let result = dec.decode().map_err(internal)?;
        for (i, shard) in shards[..k].iter_mut().enumerate() {
            if present[i] {
                continue;
            }
            let restored = result.restored_original(i).ok_or_else(|| CodecError::Internal {
                codec: NAME,
                detail: format!("decoder did not restore data shard {i}"),
            })?;
            shard.copy_from_slice(restored);
        }
        Ok(())
    }
}

impl ErasureCodec for RsSimdCodec {
    fn kind(&self) -> CodecKind {
        CodecKind::ReedSolomonSimd
    }

    fn data_shards(&self) -> usize {
        self.k
    }

    fn parity_shards(&self) -> usize {
        self.m
    }

    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError> {
        let shard_len = validate_encode(self.k, self.m, data, parity)?;
        let enc = self.encoder(shard_len)?;
        for shard in data {
            enc.add_original_shard(shard).map_err(internal)?;
        }
        let result = enc.encode().map_err(internal)?;
        for (out, rec) in parity.iter_mut().zip(result.recovery_iter()) {
            out.copy_from_slice(rec);
        }
        Ok(())
    }

    fn reconstruct(&mut self, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError> {
        let (shard_len, present_count) = validate_reconstruct(self.k, self.m, shards, present)?;
        if present_count == shards.len() {
            return Ok(());
        }
        self.restore_data(shard_len, shards, present)?;
        let k = self.k;
        if present[k..].iter().all(|&p| p) {
            return Ok(());
        }
        // All data is valid now: re-encode and copy out only the missing parity.
        let enc = self.encoder(shard_len)?;
        for shard in shards[..k].iter() {
            enc.add_original_shard(&**shard).map_err(internal)?;
        }
        let result = enc.encode().map_err(internal)?;
        for (j, (out, rec)) in shards[k..].iter_mut().zip(result.recovery_iter()).enumerate() {
            if !present[k + j] {
                out.copy_from_slice(rec);
            }
        }
        Ok(())
    }

    fn reconstruct_data(&mut self, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError> {
        let (shard_len, _) = validate_reconstruct(self.k, self.m, shards, present)?;
        self.restore_data(shard_len, shards, present)
    }
}
