#![allow(clippy::expect_used)]
//! The snapshot after a RUN: a parallel metadata walk of a 100,000-file
//! tree (1,000 directories of 100 files) and the diff against the index
//! taken before, with one file changed. Target: ≤ 0.3 s on 2 cores.

use criterion::{Criterion, criterion_group, criterion_main};
use smelt::fs::ignore::RootIgnores;
use smelt::fs::snapshot::{SnapshotMode, diff, walk};

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    for d in 0..1000 {
        let sub = dir.path().join(format!("usr/share/d{d:04}"));
        fs_err::create_dir_all(&sub).expect("mkdir");
        for f in 0..100 {
            fs_err::write(sub.join(format!("f{f:03}")), b"x").expect("write");
        }
    }
    let ignores = RootIgnores::new(&[]);
    let before = walk(dir.path(), &ignores).expect("walk");
    assert_eq!(before.len(), 100_000 + 1000 + 2);
    let mut n = 0u64;
    let mut group = c.benchmark_group("snapshot");
    group.sample_size(10);
    group.bench_function("100k files, one changed: walk + diff", |b| {
        b.iter(|| {
            n += 1;
            fs_err::write(dir.path().join("usr/share/d0500/f050"), n.to_string()).expect("write");
            let after = walk(dir.path(), &ignores).expect("walk");
            let changes = diff(&before, &after, SnapshotMode::Full);
            assert!(changes.changed.contains("usr/share/d0500/f050"));
            changes
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
