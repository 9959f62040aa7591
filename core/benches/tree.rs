//! What verified streaming costs (issue 22): the sender's one pass of
//! [`TreeBuilder`] over 256 MiB, fed as one slice, in 64 KiB reads and in
//! 1 KiB reads, against the baseline of plain `blake3::hash` of the same bytes
//! in the same run (both single-threaded); and the receiver's side,
//! [`verify_group`] over every group of the same file.
//!
//! `cargo bench -p punchline-core --bench tree`

use criterion::{black_box, criterion_main, Criterion, Throughput};
use std::time::Duration;

use punchline_core::files::{group_count, group_len, verify_group, TreeBuilder, GROUP};

const SIZE: usize = 256 << 20;

fn data() -> Vec<u8> {
    // Any bytes do; a cheap xorshift keeps them from being all alike.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn tree(c: &mut Criterion) {
    let data = data();
    let size = data.len() as u64;
    let mut group = c.benchmark_group("tree 256 MiB");
    group.throughput(Throughput::Bytes(size)).sample_size(10).measurement_time(Duration::from_secs(8));
    group.bench_function("blake3::hash (baseline)", |b| b.iter(|| blake3::hash(black_box(&data))));
    group.bench_function("TreeBuilder, one slice", |b| {
        b.iter(|| {
            let mut builder = TreeBuilder::new(size);
            builder.update(black_box(&data));
            builder.finish().expect("the size")
        })
    });
    for read in [64 << 10, 1 << 10] {
        group.bench_function(format!("TreeBuilder, {} KiB reads", read >> 10), |b| {
            b.iter(|| {
                let mut builder = TreeBuilder::new(size);
                black_box(&data).chunks(read).for_each(|piece| builder.update(piece));
                builder.finish().expect("the size")
            })
        });
    }
    let (_, manifest) = {
        let mut builder = TreeBuilder::new(size);
        builder.update(&data);
        builder.finish().expect("the size")
    };
    group.bench_function("verify_group, every group", |b| {
        b.iter(|| {
            (0..group_count(size)).all(|i| {
                let start = i as usize * GROUP;
                verify_group(&manifest, size, i, black_box(&data[start..start + group_len(size, i)]))
            })
        })
    });
    group.finish();
}

// The macros generate undocumented items; this file is not a library.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::tree);
}
criterion_main!(group::benches);
