#![allow(clippy::expect_used)]
//! Hot path: turning a change set into a compressed layer blob (tar +
//! sha256 diff ID + compression + sha256 digest in one pass), for many small
//! files and for one large file, gzip and zstd.

use criterion::{Criterion, criterion_group, criterion_main};
use smelt::fs::{ChangeSet, Compression, LayerOptions, MtimePolicy, write_layer};
use smelt::image::BlobStore;

fn tree(files: usize, size: usize) -> (tempfile::TempDir, ChangeSet) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut changes = ChangeSet::default();
    for i in 0..files {
        let rel = format!("d{}/f{i}", i % 32);
        let path = dir.path().join(&rel);
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let body: Vec<u8> = (0..size).map(|j| ((i * 31 + j * 7) % 251) as u8).collect();
        fs_err::write(&path, body).expect("write");
        changes.add(&rel);
    }
    (dir, changes)
}

fn bench(c: &mut Criterion) {
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(store_dir.path()).expect("store");
    let cases = [
        ("2000x4KiB", tree(2000, 4096)),
        ("1x64MiB", tree(1, 64 << 20)),
    ];
    let mut group = c.benchmark_group("write_layer");
    group.sample_size(10);
    for (name, (root, changes)) in &cases {
        for (cname, compression) in [
            ("gzip1", Compression::Gzip { level: -1 }),
            ("zstd3", Compression::Zstd { level: -1 }),
        ] {
            let opts = LayerOptions {
                compression,
                mtime: MtimePolicy::Fixed(0),
            };
            group.bench_function(format!("{name}/{cname}"), |b| {
                b.iter(|| write_layer(root.path(), changes, &store, opts).expect("layer"));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
