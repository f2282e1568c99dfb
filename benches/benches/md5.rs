//! MD5 of several uploads on one core: each stream on its own (the single-stream
//! code) against the streams queued on `LaneMd5`s and hashed together (interleaved
//! scalar code for 2-4, SIMD lanes from 5; `s3::md5_lanes`), as an owner core hashes
//! its uploads. Throughput counts every
//! stream's bytes; each stream takes 128 KiB per turn, as an upload does between
//! reactor turns.
//!
//! Run: `cargo bench -p tessera-benches --bench md5 -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tessera_gateway::s3::checksum::Md5;
use tessera_gateway::s3::md5_lanes::{hash_queued, LaneMd5};

/// Bytes per stream per turn (`HASHED_PER_TURN`).
const TURN_BYTES: usize = 128 << 10;
/// Turns per measured iteration: 2 MiB per stream.
const TURNS: usize = 16;

fn bench_md5(c: &mut Criterion) {
    let mut group = c.benchmark_group("md5_streams");
    let mut rng = SmallRng::seed_from_u64(0x3d5);
    for streams in [1usize, 2, 3, 4, 6, 8, 16] {
        let chunks: Vec<Bytes> = (0..streams)
            .map(|_| {
                let mut b = vec![0u8; TURN_BYTES];
                rng.fill_bytes(&mut b);
                Bytes::from(b)
            })
            .collect();
        group.throughput(Throughput::Bytes((streams * TURN_BYTES * TURNS) as u64));
        group.bench_function(BenchmarkId::new("one_by_one", streams), |b| {
            b.iter(|| {
                let mut hashers: Vec<Md5> = (0..streams).map(|_| Md5::new()).collect();
                for _ in 0..TURNS {
                    for (h, chunk) in hashers.iter_mut().zip(&chunks) {
                        h.update(chunk);
                    }
                }
                hashers.into_iter().for_each(|h| {
                    black_box(h.finish());
                })
            })
        });
        group.bench_function(BenchmarkId::new("lanes", streams), |b| {
            b.iter(|| {
                let mut hashers: Vec<LaneMd5> = (0..streams).map(|_| LaneMd5::new()).collect();
                for _ in 0..TURNS {
                    for (h, chunk) in hashers.iter_mut().zip(&chunks) {
                        h.push(chunk.clone());
                    }
                    hash_queued();
                }
                hashers.into_iter().for_each(|h| {
                    black_box(h.finish());
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_md5);
criterion_main!(benches);
