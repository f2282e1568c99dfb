//! Erasure codec throughput: encode and degraded-read decode for every
//! compiled-in codec kind.
//!
//! Throughput is the DATA bytes per stripe (`k * shard_len`), so numbers are
//! comparable across geometries. "decode" loses the first `m` data shards
//! (the worst case for a degraded read) and calls `reconstruct_data`.
//!
//! Run: `cargo bench -p tessera-benches --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tessera_engine::erasure::{new_codec, CodecKind};

const GEOMETRIES: [(usize, usize); 3] = [(4, 2), (6, 3), (8, 4)];
const SHARD_LENS: [(usize, &str); 2] = [(64 << 10, "64KiB"), (1 << 20, "1MiB")];

/// `k` random data shards and `m` zeroed parity shards.
fn stripe(k: usize, m: usize, len: usize) -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(0x7e55_e7a0);
    (0..k + m)
        .map(|i| {
            let mut v = vec![0u8; len];
            if i < k {
                rng.fill_bytes(&mut v);
            }
            v
        })
        .collect()
}

/// Runs `f` on the data and parity views of `shards` (k data, then parity).
fn with_views<R>(shards: &mut [Vec<u8>], k: usize, f: impl FnOnce(&[&[u8]], &mut [&mut [u8]]) -> R) -> R {
    let (data, parity) = shards.split_at_mut(k);
    let data: Vec<&[u8]> = data.iter().map(|s| s.as_slice()).collect();
    let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|s| s.as_mut_slice()).collect();
    f(&data, &mut parity)
}

fn bench_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for &kind in CodecKind::available() {
        for (k, m) in GEOMETRIES {
            for (len, label) in SHARD_LENS {
                let Ok(mut codec) = new_codec(kind, k, m) else {
                    continue;
                };
                let mut shards = stripe(k, m, len);
                group.throughput(Throughput::Bytes((k * len) as u64));
                with_views(&mut shards, k, |data, parity| {
                    group.bench_function(BenchmarkId::new(kind.as_str(), format!("{k}+{m}/{label}")), |b| {
                        b.iter(|| codec.encode(black_box(data), black_box(parity)).expect("encode"))
                    });
                });
            }
        }
    }
    group.finish();
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for &kind in CodecKind::available() {
        for (k, m) in GEOMETRIES {
            for (len, label) in SHARD_LENS {
                let Ok(mut codec) = new_codec(kind, k, m) else {
                    continue;
                };
                let mut shards = stripe(k, m, len);
                with_views(&mut shards, k, |data, parity| codec.encode(data, parity).expect("encode"));
                // Lose the first m data shards.
                let present: Vec<bool> = (0..k + m).map(|i| i >= m).collect();
                let mut views: Vec<&mut [u8]> = shards.iter_mut().map(|s| s.as_mut_slice()).collect();
                group.throughput(Throughput::Bytes((k * len) as u64));
                group.bench_function(BenchmarkId::new(kind.as_str(), format!("{k}+{m}/{label}")), |b| {
                    b.iter(|| {
                        codec.reconstruct_data(black_box(&mut views), black_box(&present)).expect("reconstruct_data");
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(benches, bench_encode, bench_decode);
criterion_main!(benches);
