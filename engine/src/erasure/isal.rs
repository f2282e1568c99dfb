//! [`ErasureCodec`] over Intel ISA-L (system `libisal`, Debian `libisal-dev`).
//!
//! Only compiled when `engine/build.rs` finds the library (`cfg(tessera_isal)`).
//!
//! * Generator: `gf_gen_cauchy1_matrix` — identity on top of a Cauchy matrix,
//!   so any `k` rows are invertible (a Vandermonde-style `gf_gen_rs_matrix`
//!   is not guaranteed to be MDS for every geometry).
//! * Encode: `ec_encode_data` with tables expanded once at construction;
//!   reads the caller's data slices and writes parity in place (no copies).
//! * Decode: pick the first `k` present shards as sources, invert their
//!   `k x k` generator rows, derive one row per shard to rebuild (parity rows
//!   are generator row x inverse) and run `ec_encode_data` again. The
//!   expanded tables are cached per erasure pattern in a small MRU cache
//!   ([`DECODE_CACHE_CAPACITY`] entries), so repeated degraded reads with the
//!   same missing shards skip the inversion and table expansion.
//!
//! Hand-written FFI rather than a crate: the existing crates (`isa-l`,
//! `erasure-isa-l`) are unmaintained or build ISA-L from source (needs nasm);
//! five `extern "C"` declarations against the distro library are simpler.

use std::os::raw::{c_int, c_uchar};
use std::ptr;

use super::{
    check_geometry, validate_encode, validate_reconstruct, CodecError, CodecKind, ErasureCodec, MAX_TOTAL_SHARDS,
};

const NAME: &str = "isa-l";

/// Number of erasure patterns whose decode tables an [`IsalCodec`] keeps.
///
/// Each entry holds `32 * k * rows` bytes (1.5 KiB for 8+4 with 4 shards lost).
pub const DECODE_CACHE_CAPACITY: usize = 16;

/// Bytes of expanded table per matrix coefficient (`ec_init_tables`).
const TABLE_BYTES_PER_COEFF: usize = 32;

mod ffi {
    use std::os::raw::{c_int, c_uchar};

    // Declarations from isa-l/erasure_code.h (ISA-L 2.30). Linked via the
    // `cargo:rustc-link-lib=isal` emitted by engine/build.rs.
    extern "C" {
        /// Fill `a` (`m x k`, row-major) with identity over Cauchy rows.
        pub fn gf_gen_cauchy1_matrix(a: *mut c_uchar, m: c_int, k: c_int);
        /// Expand `rows x k` coefficients in `a` into `32 * k * rows` bytes of `gftbls`.
        pub fn ec_init_tables(k: c_int, rows: c_int, a: *mut c_uchar, gftbls: *mut c_uchar);
        /// `coding[r] = sum_j coeff(r, j) * data[j]` over `len` bytes.
        pub fn ec_encode_data(
            len: c_int,
            k: c_int,
            rows: c_int,
            gftbls: *mut c_uchar,
            data: *mut *mut c_uchar,
            coding: *mut *mut c_uchar,
        );
        /// Invert the `n x n` matrix `in_` (destroyed) into `out`; non-zero if singular.
        pub fn gf_invert_matrix(in_: *mut c_uchar, out: *mut c_uchar, n: c_int) -> c_int;
        /// GF(2^8) multiply.
        pub fn gf_mul(a: c_uchar, b: c_uchar) -> c_uchar;
    }
}

fn internal(detail: impl Into<String>) -> CodecError {
    CodecError::Internal { codec: NAME, detail: detail.into() }
}

/// Convert a validated count/length to `c_int`.
fn to_c_int(v: usize) -> Result<c_int, CodecError> {
    c_int::try_from(v).map_err(|_| internal(format!("{v} does not fit in a C int")))
}

/// One bit per shard, plus whether parity is rebuilt too.
#[derive(Clone, Copy, PartialEq, Eq)]
struct PatternKey {
    present: [u64; 4],
    with_parity: bool,
}

impl PatternKey {
    fn new(present: &[bool], with_parity: bool) -> Self {
        let mut bits = [0u64; 4];
        for (i, _) in present.iter().enumerate().filter(|(_, &p)| p) {
            bits[i / 64] |= 1 << (i % 64);
        }
        Self { present: bits, with_parity }
    }
}

struct DecodeEntry {
    key: PatternKey,
    /// Number of output rows (shards rebuilt).
    rows: usize,
    /// `32 * k * rows` bytes from `ec_init_tables`.
    tables: Vec<u8>,
}

/// Reed-Solomon (Cauchy) codec backed by Intel ISA-L.
pub struct IsalCodec {
    k: usize,
    m: usize,
    /// `(k + m) x k` generator, row-major; top `k` rows are the identity.
    gen: Vec<u8>,
    /// Expanded tables for the `m` parity rows.
    encode_tables: Vec<u8>,
    /// Most recently used first, at most [`DECODE_CACHE_CAPACITY`].
    cache: Vec<DecodeEntry>,
    /// Scratch for decode matrix construction (`k * k` each, `rows * k`).
    scratch_sub: Vec<u8>,
    scratch_inv: Vec<u8>,
    scratch_rows: Vec<u8>,
}

impl IsalCodec {
    /// Create a codec for `k` data + `m` parity shards.
    pub fn new(k: usize, m: usize) -> Result<Self, CodecError> {
        check_geometry(k, m)?;
        let n = k + m;
        let (ck, cm, cn) = (to_c_int(k)?, to_c_int(m)?, to_c_int(n)?);
        let mut gen = vec![0u8; n * k];
        // SAFETY: `gen` holds exactly n * k bytes, the size the function
        // writes for an n x k matrix; n <= 255 keeps Cauchy entries defined.
        unsafe { ffi::gf_gen_cauchy1_matrix(gen.as_mut_ptr(), cn, ck) };
        let mut encode_tables = vec![0u8; TABLE_BYTES_PER_COEFF * k * m];
        // SAFETY: `gen[k*k..]` holds the m x k parity coefficients (read
        // only, despite the non-const C signature); `encode_tables` has the
        // required 32 * k * m bytes.
        unsafe { ffi::ec_init_tables(ck, cm, gen[k * k..].as_mut_ptr(), encode_tables.as_mut_ptr()) };
        Ok(Self {
            k,
            m,
            gen,
            encode_tables,
            cache: Vec::with_capacity(DECODE_CACHE_CAPACITY),
            scratch_sub: vec![0u8; k * k],
            scratch_inv: vec![0u8; k * k],
            scratch_rows: Vec::with_capacity(m * k),
        })
    }

    /// Build the expanded decode tables for `present` into `tables`; returns
    /// the number of output rows. Outputs are, in ascending index order, the
    /// missing data shards and (if `with_parity`) the missing parity shards.
    /// Sources are the first `k` present shards in ascending index order.
    fn build_decode_tables(
        &mut self,
        present: &[bool],
        with_parity: bool,
        tables: &mut Vec<u8>,
    ) -> Result<usize, CodecError> {
        let k = self.k;
        let sources = present.iter().enumerate().filter(|(_, &p)| p).map(|(i, _)| i).take(k);
        for (r, src) in sources.enumerate() {
            self.scratch_sub[r * k..(r + 1) * k].copy_from_slice(&self.gen[src * k..(src + 1) * k]);
        }
        let ck = to_c_int(k)?;
        // SAFETY: both buffers are k * k bytes, as the function requires for
        // an n = k matrix; `scratch_sub` is allowed to be clobbered.
        let rc = unsafe { ffi::gf_invert_matrix(self.scratch_sub.as_mut_ptr(), self.scratch_inv.as_mut_ptr(), ck) };
        if rc != 0 {
            return Err(internal("generator submatrix is singular"));
        }
        let inv = &self.scratch_inv;
        self.scratch_rows.clear();
        for (i, _) in present.iter().enumerate().filter(|(_, &p)| !p) {
            if i < k {
                // Data shard i = row i of the inverse applied to the sources.
                self.scratch_rows.extend_from_slice(&inv[i * k..(i + 1) * k]);
            } else if with_parity {
                // Parity shard i = gen row i x inverse.
                let g = &self.gen[i * k..(i + 1) * k];
                for c in 0..k {
                    let mut acc = 0u8;
                    for (j, &gj) in g.iter().enumerate() {
                        // SAFETY: pure function on two byte values.
                        acc ^= unsafe { ffi::gf_mul(gj, inv[j * k + c]) };
                    }
                    self.scratch_rows.push(acc);
                }
            }
        }
        let rows = self.scratch_rows.len() / k;
        tables.clear();
        tables.resize(TABLE_BYTES_PER_COEFF * k * rows, 0);
        if rows > 0 {
            // SAFETY: `scratch_rows` holds rows * k coefficients (read only);
            // `tables` has 32 * k * rows bytes.
            unsafe { ffi::ec_init_tables(ck, to_c_int(rows)?, self.scratch_rows.as_mut_ptr(), tables.as_mut_ptr()) };
        }
        Ok(rows)
    }

    /// Ensure the decode entry for `present` is at the front of the cache.
    fn decode_entry(&mut self, present: &[bool], with_parity: bool) -> Result<(), CodecError> {
        let key = PatternKey::new(present, with_parity);
        if let Some(pos) = self.cache.iter().position(|e| e.key == key) {
            self.cache[..=pos].rotate_right(1);
            return Ok(());
        }
        // Reuse the evicted entry's allocation when full.
        let mut tables = if self.cache.len() >= DECODE_CACHE_CAPACITY {
            self.cache.pop().map(|e| e.tables).unwrap_or_default()
        } else {
            Vec::new()
        };
        let rows = self.build_decode_tables(present, with_parity, &mut tables)?;
        self.cache.insert(0, DecodeEntry { key, rows, tables });
        Ok(())
    }

    /// Rebuild missing data (and parity if `with_parity`); arguments validated.
    fn decode(
        &mut self,
        shard_len: usize,
        shards: &mut [&mut [u8]],
        present: &[bool],
        with_parity: bool,
    ) -> Result<(), CodecError> {
        let k = self.k;
        let wants = |i: usize| !present[i] && (i < k || with_parity);
        if !(0..shards.len()).any(wants) {
            return Ok(());
        }
        self.decode_entry(present, with_parity)?;
        let Some(entry) = self.cache.first() else {
            return Err(internal("decode cache empty after insert"));
        };

        let mut srcs = [ptr::null_mut::<c_uchar>(); MAX_TOTAL_SHARDS];
        let mut outs = [ptr::null_mut::<c_uchar>(); MAX_TOTAL_SHARDS];
        let (mut nsrc, mut nout) = (0, 0);
        for (i, shard) in shards.iter_mut().enumerate() {
            if present[i] {
                if nsrc < k {
                    srcs[nsrc] = shard.as_mut_ptr();
                    nsrc += 1;
                }
            } else if wants(i) {
                outs[nout] = shard.as_mut_ptr();
                nout += 1;
            }
        }
        if nsrc != k || nout != entry.rows {
            return Err(internal(format!(
                "pattern mismatch: {nsrc} sources / {nout} outputs, table has {} rows",
                entry.rows
            )));
        }
        let (clen, ck, crows) = (to_c_int(shard_len)?, to_c_int(k)?, to_c_int(nout)?);
        // SAFETY: `srcs[..k]` point at k distinct present shards and
        // `outs[..nout]` at nout distinct missing shards, all `shard_len`
        // bytes long (validated) and disjoint (separate `&mut` elements of
        // `shards`, borrowed for this call). ISA-L only reads the sources and
        // the tables (`32 * k * nout` bytes built for exactly this pattern).
        unsafe {
            ffi::ec_encode_data(clen, ck, crows, entry.tables.as_ptr().cast_mut(), srcs.as_mut_ptr(), outs.as_mut_ptr())
        };
        Ok(())
    }
}

impl ErasureCodec for IsalCodec {
    fn kind(&self) -> CodecKind {
        CodecKind::IsaL
    }

    fn data_shards(&self) -> usize {
        self.k
    }

    fn parity_shards(&self) -> usize {
        self.m
    }

    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), CodecError> {
        let shard_len = validate_encode(self.k, self.m, data, parity)?;
        let mut srcs = [ptr::null_mut::<c_uchar>(); MAX_TOTAL_SHARDS];
        let mut outs = [ptr::null_mut::<c_uchar>(); MAX_TOTAL_SHARDS];
        for (slot, shard) in srcs.iter_mut().zip(data) {
            *slot = shard.as_ptr().cast_mut();
        }
        for (slot, shard) in outs.iter_mut().zip(parity.iter_mut()) {
            *slot = shard.as_mut_ptr();
        }
        let (clen, ck, cm) = (to_c_int(shard_len)?, to_c_int(self.k)?, to_c_int(self.m)?);
        // SAFETY: `srcs[..k]` / `outs[..m]` point at the k data and m parity
        // slices, all `shard_len` bytes (validated). Data slices are only
        // read by ISA-L (the `*mut` is a C signature artefact); parity slices
        // are exclusively borrowed and cannot alias the shared data slices.
        // `encode_tables` has 32 * k * m bytes and is only read.
        unsafe {
            ffi::ec_encode_data(
                clen,
                ck,
                cm,
                self.encode_tables.as_ptr().cast_mut(),
                srcs.as_mut_ptr(),
                outs.as_mut_ptr(),
            )
        };
        Ok(())
    }

    fn reconstruct(&mut self, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError> {
        let (shard_len, _) = validate_reconstruct(self.k, self.m, shards, present)?;
        self.decode(shard_len, shards, present, true)
    }

    fn reconstruct_data(&mut self, shards: &mut [&mut [u8]], present: &[bool]) -> Result<(), CodecError> {
        let (shard_len, _) = validate_reconstruct(self.k, self.m, shards, present)?;
        self.decode(shard_len, shards, present, false)
    }
}

#[cfg(test)]
impl IsalCodec {
    /// Number of cached decode patterns (tests only).
    pub(crate) fn cached_patterns(&self) -> usize {
        self.cache.len()
    }

    /// Parity coefficient row `j` of the generator (tests only).
    pub(crate) fn parity_row(&self, j: usize) -> &[u8] {
        let k = self.k;
        &self.gen[(k + j) * k..(k + j + 1) * k]
    }
}
