//! Tests for every compiled-in codec. Random data comes from a seeded
//! `SmallRng`; the seed is printed in every failure message and can be
//! pinned with `TESSERA_TEST_SEED=<u64>`.

use rand::rngs::SmallRng;
use rand::{Rng, RngCore, SeedableRng};

use super::*;

const GEOMETRIES: [(usize, usize); 3] = [(4, 2), (6, 3), (8, 4)];
const GARBAGE: u8 = 0xA5;

fn seed() -> u64 {
    if let Some(s) = std::env::var("TESSERA_TEST_SEED").ok().and_then(|s| s.parse().ok()) {
        return s;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x7e55_e7a0)
}

fn random_shards(rng: &mut SmallRng, count: usize, len: usize) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| {
            let mut v = vec![0u8; len];
            rng.fill_bytes(&mut v);
            v
        })
        .collect()
}

/// `k` random data shards followed by `m` parity shards encoded by `codec`.
fn encoded_stripe(codec: &mut dyn ErasureCodec, rng: &mut SmallRng, len: usize) -> Vec<Vec<u8>> {
    let (k, m) = (codec.data_shards(), codec.parity_shards());
    let mut shards = random_shards(rng, k, len);
    shards.extend((0..m).map(|_| vec![GARBAGE; len]));
    let (data, parity) = shards.split_at_mut(k);
    let data: Vec<&[u8]> = data.iter().map(|s| s.as_slice()).collect();
    let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|s| s.as_mut_slice()).collect();
    codec.encode(&data, &mut parity).expect("encode");
    shards
}

fn as_mut_slices(shards: &mut [Vec<u8>]) -> Vec<&mut [u8]> {
    shards.iter_mut().map(|s| s.as_mut_slice()).collect()
}

/// All present-masks over `n` shards with at most `max_missing` missing.
fn erasure_patterns(n: usize, max_missing: usize) -> impl Iterator<Item = Vec<bool>> {
    (0u32..(1 << n))
        .filter(move |mask| (mask.count_ones() as usize) <= max_missing)
        .map(move |mask| (0..n).map(|i| mask & (1 << i) == 0).collect())
}

/// Encode random data, erase every pattern of up to `m` shards, rebuild.
fn roundtrip_every_erasure_pattern(kind: CodecKind, k: usize, m: usize) {
    let seed = seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut codec = new_codec(kind, k, m).expect("codec");
    let n = k + m;
    // Every pattern at one length (with a non-64-multiple tail); a
    // random sample of patterns at the smallest and a larger length
    // (reed-solomon-simd decode has a fixed cost that makes the full
    // set slow in unoptimised test builds).
    let all: Vec<Vec<bool>> = erasure_patterns(n, m).collect();
    for (len, sample) in [(130, usize::MAX), (2, 40), (4096, 40)] {
        let original = encoded_stripe(codec.as_mut(), &mut rng, len);
        let ctx = format!("seed={seed} kind={kind} geometry={k}+{m} len={len}");
        let patterns: Vec<&Vec<bool>> = if sample >= all.len() {
            all.iter().collect()
        } else {
            (0..sample).map(|_| &all[rng.gen_range(0..all.len())]).collect()
        };
        for present in patterns {
            let garbled = |shards: &mut Vec<Vec<u8>>| {
                for (s, _) in shards.iter_mut().zip(present).filter(|(_, &p)| !p) {
                    s.fill(GARBAGE);
                }
            };

            // Full reconstruct: every shard back.
            let mut shards = original.clone();
            garbled(&mut shards);
            codec
                .reconstruct(&mut as_mut_slices(&mut shards), present)
                .unwrap_or_else(|e| panic!("{ctx} present={present:?}: {e}"));
            for i in 0..n {
                assert!(shards[i] == original[i], "{ctx} present={present:?}: reconstruct shard {i} differs");
            }

            // Data-only reconstruct: data back, missing parity untouched.
            let mut shards = original.clone();
            garbled(&mut shards);
            codec
                .reconstruct_data(&mut as_mut_slices(&mut shards), present)
                .unwrap_or_else(|e| panic!("{ctx} present={present:?}: {e}"));
            for i in 0..n {
                let ok = if i >= k && !present[i] {
                    shards[i].iter().all(|&b| b == GARBAGE)
                } else {
                    shards[i] == original[i]
                };
                assert!(ok, "{ctx} present={present:?}: reconstruct_data shard {i} wrong");
            }
        }
    }
}

macro_rules! roundtrip_tests {
    ($($name:ident: $kind:expr, $k:expr, $m:expr;)*) => {$(
        #[test]
        fn $name() {
            roundtrip_every_erasure_pattern($kind, $k, $m);
        }
    )*};
}

roundtrip_tests! {
    roundtrip_rs_simd_4_2: CodecKind::ReedSolomonSimd, 4, 2;
    roundtrip_rs_simd_6_3: CodecKind::ReedSolomonSimd, 6, 3;
    roundtrip_rs_simd_8_4: CodecKind::ReedSolomonSimd, 8, 4;
}

#[cfg(tessera_isal)]
roundtrip_tests! {
    roundtrip_isal_4_2: CodecKind::IsaL, 4, 2;
    roundtrip_isal_6_3: CodecKind::IsaL, 6, 3;
    roundtrip_isal_8_4: CodecKind::IsaL, 8, 4;
}

#[test]
fn too_few_shards_is_an_error_and_writes_nothing() {
    let seed = seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    for &kind in CodecKind::available() {
        for (k, m) in GEOMETRIES {
            let mut codec = new_codec(kind, k, m).expect("codec");
            let original = encoded_stripe(codec.as_mut(), &mut rng, 256);
            let n = k + m;
            // Lose m + 1 random shards.
            let mut present = vec![true; n];
            let mut lost = 0;
            while lost <= m {
                let i = rng.gen_range(0..n);
                if present[i] {
                    present[i] = false;
                    lost += 1;
                }
            }
            let ctx = format!("seed={seed} kind={kind} geometry={k}+{m} present={present:?}");
            let want = CodecError::TooFewShards { present: n - m - 1, needed: k };
            let mut shards = original.clone();
            let err = codec.reconstruct(&mut as_mut_slices(&mut shards), &present);
            assert_eq!(err, Err(want.clone()), "{ctx}");
            let err = codec.reconstruct_data(&mut as_mut_slices(&mut shards), &present);
            assert_eq!(err, Err(want), "{ctx}");
            assert!(shards == original, "{ctx}: buffers modified on error");
        }
    }
}

#[test]
fn bad_lengths_and_counts_are_errors() {
    for &kind in CodecKind::available() {
        let mut codec = new_codec(kind, 4, 2).expect("codec");
        let d = vec![vec![1u8; 64]; 4];
        let data: Vec<&[u8]> = d.iter().map(|s| s.as_slice()).collect();

        // Parity length differs from data length.
        let mut p = vec![vec![0u8; 64], vec![0u8; 62]];
        let r = codec.encode(&data, &mut as_mut_slices(&mut p));
        assert_eq!(r, Err(CodecError::ShardLenMismatch { index: 5, expected: 64, got: 62 }), "{kind}");

        // Data lengths differ.
        let d2 = [vec![1u8; 64], vec![1u8; 64], vec![1u8; 66], vec![1u8; 64]];
        let data2: Vec<&[u8]> = d2.iter().map(|s| s.as_slice()).collect();
        let mut p = vec![vec![0u8; 64]; 2];
        let r = codec.encode(&data2, &mut as_mut_slices(&mut p));
        assert!(matches!(r, Err(CodecError::ShardLenMismatch { index: 2, .. })), "{kind}: {r:?}");

        // Odd, zero and oversized lengths.
        for len in [0usize, 63] {
            let d = vec![vec![1u8; len]; 4];
            let data: Vec<&[u8]> = d.iter().map(|s| s.as_slice()).collect();
            let mut p = vec![vec![0u8; len]; 2];
            let r = codec.encode(&data, &mut as_mut_slices(&mut p));
            assert_eq!(r, Err(CodecError::BadShardLen { len }), "{kind}");
            let mut all: Vec<Vec<u8>> = d.iter().cloned().chain(p).collect();
            let present = [true, true, true, false, true, true];
            let r = codec.reconstruct(&mut as_mut_slices(&mut all), &present);
            assert_eq!(r, Err(CodecError::BadShardLen { len }), "{kind}");
        }
        assert_eq!(check_shard_len(MAX_SHARD_LEN + 2), Err(CodecError::BadShardLen { len: MAX_SHARD_LEN + 2 }));

        // Wrong counts.
        let mut p = vec![vec![0u8; 64]; 3];
        let r = codec.encode(&data, &mut as_mut_slices(&mut p));
        assert!(matches!(r, Err(CodecError::WrongShardCount { expected: 2, got: 3, .. })), "{kind}");
        let r = codec.encode(&data[..3], &mut as_mut_slices(&mut p[..2]));
        assert!(matches!(r, Err(CodecError::WrongShardCount { expected: 4, got: 3, .. })), "{kind}");
        let mut all = vec![vec![0u8; 64]; 6];
        let r = codec.reconstruct(&mut as_mut_slices(&mut all), &[true; 5]);
        assert!(matches!(r, Err(CodecError::WrongShardCount { expected: 6, got: 5, .. })), "{kind}");
        let r = codec.reconstruct_data(&mut as_mut_slices(&mut all[..5]), &[true; 6]);
        assert!(matches!(r, Err(CodecError::WrongShardCount { expected: 6, got: 5, .. })), "{kind}");

        // Reconstruct with a mismatched missing-shard buffer.
        let mut all = vec![vec![0u8; 64]; 6];
        all[3] = vec![0u8; 32];
        let present = [true, true, true, false, true, true];
        let r = codec.reconstruct_data(&mut as_mut_slices(&mut all), &present);
        assert!(matches!(r, Err(CodecError::ShardLenMismatch { index: 3, .. })), "{kind}");
    }
}

#[test]
fn geometry_limits() {
    for kind in CodecKind::ALL {
        for (k, m) in [(0, 2), (4, 0), (200, 56), (255, 1), (usize::MAX, 1)] {
            let r = new_codec(kind, k, m);
            assert_eq!(r.err(), Some(CodecError::InvalidGeometry { data: k, parity: m }), "{kind} {k}+{m}");
        }
    }
    for &kind in CodecKind::available() {
        for (k, m) in [(1, 1), (200, 55), (1, 254), (254, 1)] {
            let mut c = new_codec(kind, k, m).unwrap_or_else(|e| panic!("{kind} {k}+{m}: {e}"));
            assert_eq!((c.data_shards(), c.parity_shards(), c.total_shards()), (k, m, k + m));
            // Smoke: encode + lose m shards at the extremes of the geometry.
            let seed = seed();
            let mut rng = SmallRng::seed_from_u64(seed);
            let original = encoded_stripe(c.as_mut(), &mut rng, 64);
            let mut present = vec![true; k + m];
            present[..m.min(k)].fill(false);
            present[k + m - (m - m.min(k))..].fill(false);
            let mut shards = original.clone();
            c.reconstruct(&mut as_mut_slices(&mut shards), &present)
                .unwrap_or_else(|e| panic!("seed={seed} {kind} {k}+{m}: {e}"));
            assert!(shards == original, "seed={seed} {kind} {k}+{m}");
        }
    }
}

#[test]
fn kinds_and_default() {
    assert!(!CodecKind::available().is_empty());
    assert!(CodecKind::ReedSolomonSimd.is_available());
    assert_eq!(CodecKind::IsaL.is_available(), cfg!(tessera_isal));
    assert_eq!(default_kind(), CodecKind::available()[0]);
    let c = default_codec(4, 2).expect("default codec");
    assert_eq!(c.kind(), default_kind());
    assert_eq!(c.name(), default_kind().as_str());
    for kind in CodecKind::ALL {
        assert_eq!(kind.as_str().parse::<CodecKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert!("zstd".parse::<CodecKind>().is_err());
    #[cfg(not(tessera_isal))]
    assert_eq!(new_codec(CodecKind::IsaL, 4, 2).err(), Some(CodecError::Unavailable(CodecKind::IsaL)));
}

#[test]
fn codecs_are_send() {
    fn assert_send<T: Send>() {}
    assert_send::<RsSimdCodec>();
    #[cfg(tessera_isal)]
    assert_send::<IsalCodec>();
    assert_send::<BoxedCodec>();
}

#[test]
fn codec_reuse_across_shard_lengths() {
    let seed = seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    for &kind in CodecKind::available() {
        let mut codec = new_codec(kind, 6, 3).expect("codec");
        for len in [4096, 64, 8192, 2, 4096] {
            let original = encoded_stripe(codec.as_mut(), &mut rng, len);
            let present = [false, true, true, false, true, true, true, false, true];
            let mut shards = original.clone();
            codec
                .reconstruct(&mut as_mut_slices(&mut shards), &present)
                .unwrap_or_else(|e| panic!("seed={seed} {kind} len={len}: {e}"));
            assert!(shards == original, "seed={seed} {kind} len={len}");
        }
    }
}

/// Both implementations restore the same original data from their own
/// parity (their parity bytes differ, which is allowed).
#[test]
fn implementations_agree_on_data() {
    let seed = seed();
    let mut rng = SmallRng::seed_from_u64(seed);
    for (k, m) in GEOMETRIES {
        let data = random_shards(&mut rng, k, 1024);
        let mut restored = Vec::new();
        for &kind in CodecKind::available() {
            let mut codec = new_codec(kind, k, m).expect("codec");
            let mut shards = data.clone();
            shards.extend((0..m).map(|_| vec![0u8; 1024]));
            {
                let (d, p) = shards.split_at_mut(k);
                let d: Vec<&[u8]> = d.iter().map(|s| s.as_slice()).collect();
                codec.encode(&d, &mut as_mut_slices(p)).expect("encode");
            }
            // Lose the first m data shards.
            let present: Vec<bool> = (0..k + m).map(|i| i >= m).collect();
            for s in &mut shards[..m] {
                s.fill(0);
            }
            codec
                .reconstruct_data(&mut as_mut_slices(&mut shards), &present)
                .unwrap_or_else(|e| panic!("seed={seed} {kind} {k}+{m}: {e}"));
            restored.push((kind, shards[..k].to_vec()));
        }
        for (kind, r) in &restored {
            assert!(*r == data, "seed={seed} {kind} {k}+{m}: restored data differs");
        }
    }
}

#[cfg(tessera_isal)]
mod isal_specific {
    use super::*;

    /// GF(2^8) with ISA-L's polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d).
    fn ref_mul(mut a: u8, mut b: u8) -> u8 {
        let mut p = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                p ^= a;
            }
            let hi = a & 0x80;
            a <<= 1;
            if hi != 0 {
                a ^= 0x1d;
            }
            b >>= 1;
        }
        p
    }

    fn ref_inv(a: u8) -> u8 {
        (1..=255u8).find(|&b| ref_mul(a, b) == 1).unwrap_or(0)
    }

    /// The generator is the Cauchy matrix 1 / (i ^ j) and encode computes
    /// exactly that matrix-vector product (checks the FFI end to end).
    #[test]
    fn isal_parity_matches_reference_cauchy() {
        let seed = seed();
        let mut rng = SmallRng::seed_from_u64(seed);
        for (k, m) in GEOMETRIES {
            let mut codec = IsalCodec::new(k, m).expect("codec");
            for j in 0..m {
                let want: Vec<u8> = (0..k).map(|c| ref_inv(((k + j) ^ c) as u8)).collect();
                assert_eq!(codec.parity_row(j), &want[..], "{k}+{m} row {j}");
            }
            let stripe = encoded_stripe(&mut codec, &mut rng, 200);
            for j in 0..m {
                let row = codec.parity_row(j).to_vec();
                for (b, &got) in stripe[k + j].iter().enumerate() {
                    let want = (0..k).fold(0u8, |acc, c| acc ^ ref_mul(row[c], stripe[c][b]));
                    assert_eq!(got, want, "seed={seed} {k}+{m} parity {j} byte {b}");
                }
            }
        }
    }

    #[test]
    fn decode_cache_is_bounded_and_reused() {
        let seed = seed();
        let mut rng = SmallRng::seed_from_u64(seed);
        let (k, m) = (8, 4);
        let mut codec = IsalCodec::new(k, m).expect("codec");
        let patterns: Vec<Vec<bool>> = erasure_patterns(k + m, m).filter(|p| p.iter().any(|&x| !x)).collect();
        // Cycle through more patterns than the cache holds, twice, with
        // fresh data each time so stale tables would be caught.
        for round in 0..2 {
            for present in patterns.iter().take(ISAL_DECODE_CACHE_CAPACITY * 3) {
                let original = encoded_stripe(&mut codec, &mut rng, 128);
                let mut shards = original.clone();
                codec
                    .reconstruct(&mut as_mut_slices(&mut shards), present)
                    .unwrap_or_else(|e| panic!("seed={seed} round {round}: {e}"));
                assert!(shards == original, "seed={seed} round {round} present={present:?}");
                assert!(codec.cached_patterns() <= ISAL_DECODE_CACHE_CAPACITY);
            }
        }
        assert_eq!(codec.cached_patterns(), ISAL_DECODE_CACHE_CAPACITY);
        // Same pattern again and again: a single cache hit path.
        let present = &patterns[5];
        for _ in 0..4 {
            let original = encoded_stripe(&mut codec, &mut rng, 64);
            let mut shards = original.clone();
            codec
                .reconstruct_data(&mut as_mut_slices(&mut shards), present)
                .unwrap_or_else(|e| panic!("seed={seed}: {e}"));
            assert!(shards[..k] == original[..k], "seed={seed}");
        }
    }
}
