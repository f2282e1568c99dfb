//! Erasure coding: `k` data shards + `m` parity shards, any `k` of the
//! `k + m` rebuild the rest.
//!
//! # Design
//!
//! [`ErasureCodec`] is a small, synchronous, allocation-free (after warm-up)
//! trait over caller-owned buffers:
//!
//! * the caller owns every shard buffer; codecs never allocate per-shard
//!   output, they write into the slices they are given;
//! * methods take `&mut self` so an implementation can keep scratch space and
//!   caches (encoder work areas, decode matrices) without locks. Tessera runs
//!   one codec per core (thread-per-core on glommio); a codec is never shared.
//!   The boxed codecs returned by [`new_codec`] are `Send` so they can be built
//!   before being moved into an executor, but they are not `Sync` and need not be;
//! * every input is validated and reported as a [`CodecError`]; no input can
//!   make a codec panic.
//!
//! # Implementations
//!
//! | kind | algorithm | notes |
//! | --- | --- | --- |
//! | [`CodecKind::ReedSolomonSimd`] | `reed-solomon-simd` (Leopard-style FFT over GF(2^16), AVX2/SSSE3/NEON) | pure Rust, always compiled in; its API copies shards in and out of an internal work area (one extra memcpy per shard) |
//! | [`CodecKind::IsaL`] | Intel ISA-L `ec_encode_data` with a Cauchy matrix over GF(2^8) (AVX512/AVX2 assembly) | needs the system `libisal` (Debian `libisal-dev`) at build time, detected by `engine/build.rs`; works in place with zero copies; decode matrices cached per erasure pattern |
//!
//! **The two codecs produce different parity bytes.** Data written with one
//! kind can only be reconstructed with the same kind and the same `k`/`m`, so
//! callers must persist the [`CodecKind`] (see [`CodecKind::as_str`]) with each
//! stripe/object instead of assuming [`default_codec`] never changes.
//!
//! # Shard length rule
//!
//! Every shard of one call has the same length `shard_len`, which must be
//! non-zero, a multiple of [`SHARD_LEN_ALIGN`] (reed-solomon-simd works on
//! 16-bit symbols) and at most [`MAX_SHARD_LEN`]. Multiples of
//! [`SHARD_LEN_RECOMMENDED_ALIGN`] avoid tail handling in both libraries.
//!
//! See `docs/erasure.md` for measurements.

use std::fmt;
use std::str::FromStr;

#[cfg(tessera_isal)]
mod isal;
mod rs_simd;

#[cfg(test)]
mod tests;

#[cfg(tessera_isal)]
pub use isal::{IsalCodec, DECODE_CACHE_CAPACITY as ISAL_DECODE_CACHE_CAPACITY};
pub use rs_simd::RsSimdCodec;

/// Shard lengths must be a multiple of this (and non-zero).
///
/// reed-solomon-simd works on 16-bit symbols, so odd lengths are rejected
/// with [`CodecError::BadShardLen`] by every codec, keeping the codecs
/// interchangeable for callers.
pub const SHARD_LEN_ALIGN: usize = 2;

/// Shard lengths that are multiples of this avoid the slower tail paths of
/// both libraries (64-byte SIMD chunks). Not enforced.
pub const SHARD_LEN_RECOMMENDED_ALIGN: usize = 64;

/// Largest accepted shard length (ISA-L takes an `int` length; 1 GiB keeps
/// well clear of that and of any sane stripe size).
pub const MAX_SHARD_LEN: usize = 1 << 30;

/// Minimum number of data shards (`k`).
pub const MIN_DATA_SHARDS: usize = 1;

/// Minimum number of parity shards (`m`).
pub const MIN_PARITY_SHARDS: usize = 1;

/// Largest `k + m` accepted by every codec.
///
/// ISA-L's Cauchy construction over GF(2^8) needs `k + m <= 256`;
/// reed-solomon-simd supports far more, but one limit for all kinds keeps
/// geometries portable between codecs.
pub const MAX_TOTAL_SHARDS: usize = 255;

/// Errors returned by [`ErasureCodec`] methods and constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// `k`/`m` outside the supported range.
    #[error(
        "invalid geometry {data}+{parity}: need data >= {MIN_DATA_SHARDS}, \
         parity >= {MIN_PARITY_SHARDS}, data + parity <= {MAX_TOTAL_SHARDS}"
    )]
    InvalidGeometry {
        /// Requested data shard count (`k`).
        data: usize,
        /// Requested parity shard count (`m`).
        parity: usize,
    },

    /// The requested codec was not compiled into this build.
    #[error("codec {0} is not available in this build (available: {avail})", avail = CodecKind::available_names())]
    Unavailable(CodecKind),

    /// Wrong number of shard buffers (or `present` flags) passed.
    #[error("expected {expected} {what}, got {got}")]
    WrongShardCount {
        /// Which argument: `"data shards"`, `"parity shards"`, `"shards"` or `"present flags"`.
        what: &'static str,
        /// Number the codec's geometry requires.
        expected: usize,
        /// Number passed.
        got: usize,
    },

    /// Shard length is zero, not a multiple of [`SHARD_LEN_ALIGN`], or above [`MAX_SHARD_LEN`].
    #[error(
        "bad shard length {len}: must be non-zero, a multiple of {SHARD_LEN_ALIGN} \
         and at most {MAX_SHARD_LEN}"
    )]
    BadShardLen {
        /// The offending length.
        len: usize,
    },

    /// Shards of one call do not all have the same length.
    #[error("shard {index} has length {got}, expected {expected} (all shards must be equally long)")]
    ShardLenMismatch {
        /// Shard index (data shards `0..k`, parity shards `k..k+m`).
        index: usize,
        /// Length of the first shard.
        expected: usize,
        /// Length of shard `index`.
        got: usize,
    },

    /// Fewer than `k` shards present: the stripe cannot be rebuilt.
    #[error("too few shards to reconstruct: {present} present, {needed} needed")]
    TooFewShards {
        /// Number of shards flagged present.
        present: usize,
        /// Number required (`k`).
        needed: usize,
    },

    /// The underlying library reported an error that validation should have
    /// prevented. Indicates a bug; the shard buffers may be partially written.
    #[error("{codec} internal error: {detail}")]
    Internal {
        /// Codec name.
        codec: &'static str,
        /// Library message.
        detail: String,
    },
}

/// An erasure codec with a fixed geometry of `k` data + `m` parity shards.
///
/// Shard indices: data shards are `0..k`, parity shards `k..k+m`.
/// All shards of a call share one length; see [`SHARD_LEN_ALIGN`].
///
/// Implementations keep scratch state, hence `&mut self`; use one codec per
/// core/thread.
pub trait ErasureCodec {
    /// Which implementation this is.
    fn kind(&self) -> CodecKind;

    /// Short human-readable name (same as `self.kind().as_str()`).
    fn name(&self) -> &'static str {
        self.kind().as_str()
    }

    /// Number of data shards, `k`.
    fn data_shards(&self) -> usize;

    /// Number of parity shards, `m`.
    fn parity_shards(&self) -> usize;

    /// `k + m`.
    fn total_shards(&self) -> usize {
        self.data_shards() + self.parity_shards()
    }

    /// Compute parity.
    ///
    /// `data`: `k` slices of equal length `shard_len`;
    /// `parity`: `m` slices of `shard_len`, fully overwritten.
    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError>;

    /// Rebuild every missing shard (data and parity) in place.
    ///
    /// `shards`: `k + m` buffers, all of `shard_len` (missing ones are output
    /// buffers, their content is ignored); `present[i]` says whether
    /// `shards[i]` holds valid data. Afterwards all `k + m` shards are valid.
    /// Present shards are never modified. Errors with
    /// [`CodecError::TooFewShards`] if fewer than `k` are present, in which
    /// case no buffer is modified.
    fn reconstruct(&mut self, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError>;

    /// Rebuild only the missing *data* shards (what a degraded read needs).
    ///
    /// Same arguments as [`reconstruct`](Self::reconstruct); buffers of
    /// missing parity shards are left untouched.
    fn reconstruct_data(&mut self, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError>;
}

/// A heap-allocated codec as returned by [`new_codec`].
pub type BoxedCodec = Box<dyn ErasureCodec + Send>;

/// The available erasure codec implementations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodecKind {
    /// Pure-Rust `reed-solomon-simd` (always available).
    ReedSolomonSimd,
    /// Intel ISA-L via the system `libisal` (available when built with it).
    IsaL,
}

impl CodecKind {
    /// All kinds, compiled in or not.
    pub const ALL: [CodecKind; 2] = [CodecKind::ReedSolomonSimd, CodecKind::IsaL];

    /// Kinds compiled into this build, fastest first (see `docs/erasure.md`).
    pub fn available() -> &'static [CodecKind] {
        #[cfg(tessera_isal)]
        {
            &[CodecKind::IsaL, CodecKind::ReedSolomonSimd]
        }
        #[cfg(not(tessera_isal))]
        {
            &[CodecKind::ReedSolomonSimd]
        }
    }

    /// Whether this kind is compiled into this build.
    pub fn is_available(self) -> bool {
        Self::available().contains(&self)
    }

    /// Stable identifier, suitable for configuration and metadata
    /// (`"rs-simd"`, `"isa-l"`); parsed back by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            CodecKind::ReedSolomonSimd => "rs-simd",
            CodecKind::IsaL => "isa-l",
        }
    }

    fn available_names() -> String {
        Self::available().iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for CodecKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error parsing a [`CodecKind`] name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec kind {0:?} (expected \"rs-simd\" or \"isa-l\")")]
pub struct UnknownCodecKind(pub String);

impl FromStr for CodecKind {
    type Err = UnknownCodecKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "rs-simd" | "reed-solomon-simd" | "reedsolomonsimd" => Ok(CodecKind::ReedSolomonSimd),
            "isa-l" | "isal" => Ok(CodecKind::IsaL),
            _ => Err(UnknownCodecKind(s.to_owned())),
        }
    }
}

/// Build a codec of the given kind and geometry.
///
/// Errors: [`CodecError::InvalidGeometry`], or [`CodecError::Unavailable`]
/// if `kind` is not compiled in (see [`CodecKind::available`]).
pub fn new_codec(kind: CodecKind, k: usize, m: usize) -> Result<BoxedCodec, CodecError> {
    check_geometry(k, m)?;
    match kind {
        CodecKind::ReedSolomonSimd => Ok(Box::new(RsSimdCodec::new(k, m)?)),
        #[cfg(tessera_isal)]
        CodecKind::IsaL => Ok(Box::new(IsalCodec::new(k, m)?)),
        #[cfg(not(tessera_isal))]
        CodecKind::IsaL => Err(CodecError::Unavailable(kind)),
    }
}

/// The kind [`default_codec`] uses: the fastest one compiled in.
///
/// ISA-L when available (faster on every measured geometry, see
/// `docs/erasure.md`), otherwise reed-solomon-simd.
pub fn default_kind() -> CodecKind {
    // `available()` is ordered fastest first and is never empty.
    CodecKind::available().first().copied().unwrap_or(CodecKind::ReedSolomonSimd)
}

/// Build the fastest available codec for `k` + `m` (see [`default_kind`]).
pub fn default_codec(k: usize, m: usize) -> Result<BoxedCodec, CodecError> {
    new_codec(default_kind(), k, m)
}

// ---------------------------------------------------------------------------
// Validation shared by the implementations.

/// Validate `k`/`m` against the crate-wide limits.
pub fn check_geometry(k: usize, m: usize) -> Result<(), CodecError> {
    let ok = k >= MIN_DATA_SHARDS && m >= MIN_PARITY_SHARDS && k.checked_add(m).is_some_and(|n| n <= MAX_TOTAL_SHARDS);
    if ok {
        Ok(())
    } else {
        Err(CodecError::InvalidGeometry { data: k, parity: m })
    }
}

/// Validate a single shard length against [`SHARD_LEN_ALIGN`] and [`MAX_SHARD_LEN`].
// `usize::is_multiple_of` needs Rust 1.87; the workspace targets 1.85.
#[allow(clippy::manual_is_multiple_of)]
pub fn check_shard_len(len: usize) -> Result<(), CodecError> {
    if len == 0 || len % SHARD_LEN_ALIGN != 0 || len > MAX_SHARD_LEN {
        Err(CodecError::BadShardLen { len })
    } else {
        Ok(())
    }
}

fn check_count(what: &'static str, expected: usize, got: usize) -> Result<(), CodecError> {
    if expected == got {
        Ok(())
    } else {
        Err(CodecError::WrongShardCount { what, expected, got })
    }
}

/// Validate `encode` arguments; returns the shard length.
pub(crate) fn validate_encode(k: usize, m: usize, data: &[&[u8]], parity: &[&mut [u8]]) -> Result<usize, CodecError> {
    check_count("data shards", k, data.len())?;
    check_count("parity shards", m, parity.len())?;
    let lens = data.iter().map(|s| s.len()).chain(parity.iter().map(|s| s.len()));
    check_lens(lens)
}

/// Validate `reconstruct*` arguments; returns `(shard_len, present_count)`.
///
/// Checks counts and lengths first, then that at least `k` shards are present.
pub(crate) fn validate_reconstruct(
    k: usize,
    m: usize,
    shards: &[&mut [u8]],
    present: &[bool],
) -> Result<(usize, usize), CodecError> {
    check_count("shards", k + m, shards.len())?;
    check_count("present flags", k + m, present.len())?;
    let len = check_lens(shards.iter().map(|s| s.len()))?;
    let present_count = present.iter().filter(|&&p| p).count();
    if present_count < k {
        return Err(CodecError::TooFewShards { present: present_count, needed: k });
    }
    Ok((len, present_count))
}

/// All lengths equal and valid; returns the common length.
fn check_lens(mut lens: impl Iterator<Item = usize>) -> Result<usize, CodecError> {
    let Some(expected) = lens.next() else {
        // Geometry guarantees at least one shard; treat "none" as a bad length.
        return Err(CodecError::BadShardLen { len: 0 });
    };
    check_shard_len(expected)?;
    for (i, got) in lens.enumerate() {
        if got != expected {
            return Err(CodecError::ShardLenMismatch { index: i + 1, expected, got });
        }
    }
    Ok(expected)
}
