//! crc32c throughput (the shard checksum) over typical buffer sizes.
//!
//! Run: `cargo bench -p tessera-benches --bench crc -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};

const SIZES: [(usize, &str); 3] = [(4 << 10, "4KiB"), (64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn bench_crc32c(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32c");
    let mut rng = SmallRng::seed_from_u64(0xc5c3_2c00);
    for (len, label) in SIZES {
        let mut buf = vec![0u8; len];
        rng.fill_bytes(&mut buf);
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| b.iter(|| crc32c::crc32c(black_box(&buf))));
    }
    group.finish();
}

criterion_group!(benches, bench_crc32c);
criterion_main!(benches);
