#![allow(clippy::expect_used)]
//! Extracting a base layer: a 150 MB (uncompressed) gzip layer of 3,000
//! files in 60 directories, by smelt (`fs::extract`, the path a pulled base
//! takes) and by `tar -xzf` on the same blob, in one run. Each iteration
//! extracts into a fresh directory; the deletion of the previous one is
//! outside the timed routine. Target: smelt within 1.3× of tar.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use smelt::fs::compress::decompressor;
use smelt::fs::extract::{ExtractOptions, extract_tar};
use smelt::fs::{ChangeSet, Compression, LayerOptions, MtimePolicy, write_layer};
use smelt::image::BlobStore;

fn bench(c: &mut Criterion) {
    let src = tempfile::tempdir().expect("tempdir");
    let mut changes = ChangeSet::default();
    for i in 0..3000 {
        let rel = format!("usr/lib/d{:02}/f{i:04}", i % 60);
        let path = src.path().join(&rel);
        fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let body: Vec<u8> = (0..50_000)
            .map(|j| ((i * 31 + j * 7 + j / 97) % 251) as u8)
            .collect();
        fs_err::write(&path, body).expect("write");
        changes.add(&rel);
    }
    let store_dir = tempfile::tempdir().expect("tempdir");
    let store = BlobStore::open(store_dir.path()).expect("store");
    let blob = write_layer(
        src.path(),
        &changes,
        &store,
        LayerOptions {
            compression: Compression::Gzip { level: -1 },
            mtime: MtimePolicy::Keep,
        },
    )
    .expect("layer");
    let path = store.path(&blob.digest);
    let work = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("extract 150MB layer");
    group.sample_size(10);
    group.bench_function("smelt", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(work.path()).expect("tempdir"),
            |dest| {
                let file = fs_err::File::open(&path).expect("open");
                let reader =
                    decompressor(std::io::BufReader::with_capacity(256 << 10, file)).expect("gzip");
                extract_tar(
                    reader,
                    dest.path(),
                    "",
                    ExtractOptions {
                        whiteouts: true,
                        ..ExtractOptions::default()
                    },
                )
                .expect("extract");
                dest
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("tar -xzf", |b| {
        b.iter_batched(
            || tempfile::tempdir_in(work.path()).expect("tempdir"),
            |dest| {
                let ok = std::process::Command::new("tar")
                    .arg("-xzf")
                    .arg(&path)
                    .arg("-C")
                    .arg(dest.path())
                    .status()
                    .expect("tar")
                    .success();
                assert!(ok);
                dest
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
