//! CRC-32C throughput (the checksum of every 64 KiB block) over typical buffer
//! sizes: crc-fast, which the engine uses, beside the crc32c crate it replaced
//! (same function; one run, so the ratio holds on a noisy machine).
//!
//! Run: `cargo bench -p tessera-benches --bench crc -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

const SIZES: [(usize, &str); 4] = [(64, "64B"), (4 << 10, "4KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn bench_crc32c(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    let mut rng = SmallRng::seed_from_u64(0xc5c3_2c00);
    for (len, label) in SIZES {
        let mut buf = vec![0u8; len];
        rng.fill_bytes(&mut buf);
        assert_eq!(crc_fast::crc32_iscsi(&buf), crc32c::crc32c(&buf));
        group.throughput(Throughput::Bytes(len as u64));
        group
            .bench_function(BenchmarkId::new("crc-fast", label), |b| b.iter(|| crc_fast::crc32_iscsi(black_box(&buf))));
        group.bench_function(BenchmarkId::new("crc32c", label), |b| b.iter(|| crc32c::crc32c(black_box(&buf))));
    }
    group.finish();
}

criterion_group!(benches, bench_crc32c);
criterion_main!(benches);
