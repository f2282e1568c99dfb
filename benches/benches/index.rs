//! Index lookups: the in-memory map every read goes through.
//! Run: cargo bench -p tessera-benches --bench index
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tessera_engine::store::{Index, Loc};
use tessera_engine::ShardKey;

fn key(i: u64) -> ShardKey {
    // Spread like real keys: hashed object ids over 256 partitions.
    let h = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ShardKey { partition: (h >> 56) as u32, object: (h as u128) << 64 | i as u128, piece: (i % 6) as u32 }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("index_lookup");
    for n in [10_000u64, 1_000_000] {
        let mut ix = Index::default();
        for i in 0..n {
            ix.insert(key(i), Loc { segment: 1, offset: i * 4096, payload_len: 4096, seq: i, block_log2: 16 });
        }
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("hit", n), &n, |b, &n| {
            let mut i = 0u64;
            b.iter(|| {
                i = (i + 7919) % n;
                black_box(ix.get(&key(i)))
            })
        });
        g.bench_with_input(BenchmarkId::new("miss", n), &n, |b, &n| {
            let mut i = 0u64;
            b.iter(|| {
                i += 1;
                black_box(ix.get(&key(n + i)))
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
