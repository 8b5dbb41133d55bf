//! Bases kept unpacked between builds (`--cache-dir`, engine/bases.rs):
//! a build keeps its registry base unpacked in the cache directory, the
//! next one mounts it instead of unpacking it again, the images are the
//! same as without `--cache-dir`, and nothing a build does (a write
//! through a hard link, chmod, rm) changes the kept tree. A kept tree
//! without its marker is not used.

use crate::harness::{TestContext, tool};
use crate::registry_server::{Auth, TestRegistry, base_context, sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A base with files a RUN appends to (through one of two hard links),
/// chmods and deletes, pushed to `reg`; returns its reference.
fn push_base(reg: &TestRegistry) -> String {
    let t = base_context();
    fs_err::write(
        t.ctx().join("Dockerfile"),
        "FROM scratch\nCOPY bin/ /bin/\nCOPY etc/ /etc/\nCOPY data/ /data/\n",
    )
    .unwrap();
    t.file("data/append.txt", "first line\n")
        .file("data/mode.txt", "mode\n")
        .file("data/gone.txt", "gone\n")
        .file("data/sub/kept.txt", "kept\n");
    fs_err::hard_link(
        t.ctx().join("data/append.txt"),
        t.ctx().join("data/append-link.txt"),
    )
    .unwrap();
    for i in 0..200 {
        t.file(&format!("data/many/{i}.txt"), &format!("file {i}\n"));
    }
    let layout = t.path("base-oci");
    t.build(&[
        "--no-push",
        "--reproducible",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ])
    .ok();
    reg.push_layout(&layout, "reuse-base:1");
    format!("{}/reuse-base:1", reg.host)
}

/// The build under test: COPY and a RUN that writes through a hard link,
/// chmods and deletes files of the base.
fn app(base: &str) -> TestContext {
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         COPY new.txt /new.txt\n\
         RUN echo appended >> /data/append.txt && chmod 600 /data/mode.txt \
         && chown 1234:4321 /data/sub/kept.txt && rm /data/gone.txt \
         && cat /data/append-link.txt > /seen.txt\n"
    ));
    t.file("new.txt", "new\n");
    t
}

/// Builds `t` (reproducibly) into the OCI layout `name`; returns the
/// image's layer digests and the log.
fn build(t: &TestContext, name: &str, extra: &[&str]) -> (Vec<String>, String) {
    let layout = t.path(name);
    let mut args = vec![
        "--no-push",
        "--reproducible",
        "--destination",
        "example.test/smelt/reuse:t1",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let log = t.build(&args).ok().stderr();
    let layers = crate::harness::Layout(layout).manifest()["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    (layers, log)
}

/// The kept trees under a cache directory.
fn kept_trees(cache_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs_err::read_dir(cache_dir.join("bases")) else {
        return Vec::new();
    };
    let mut trees: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() && p.file_name().unwrap().len() == 64)
        .collect();
    trees.sort();
    trees
}

/// Every entry under `root` with its type, mode, owner, size, times,
/// inode, link count, link target and content digest, one line each.
fn checksum(root: &Path) -> String {
    let mut lines = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs_err::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = fs_err::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", fs_err::read_link(&p).unwrap().display())
            } else if m.is_file() {
                sha256(&fs_err::read(&p).unwrap())
            } else {
                String::new()
            };
            lines.push(format!(
                "{} {:o} {}:{} {} {}.{} {} {} {what}",
                p.strip_prefix(root).unwrap().display(),
                m.mode(),
                m.uid(),
                m.gid(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
                m.ino(),
                m.nlink()
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    lines.sort();
    lines.join("\n")
}

/// The mount points under `dir` (none may be left after a build).
fn mounts_under(dir: &Path) -> Vec<String> {
    fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(dir))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_kept_base_is_reused_and_never_written() {
    let reg = TestRegistry::start(Auth::None);
    let base = push_base(&reg);
    let t = app(&base);
    let cache = t.path("cache");
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    let kaniko_dir = t.path("work");
    let work_flag = ["--kaniko-dir", kaniko_dir.to_str().unwrap()];

    let (plain, _) = build(&t, "plain", &work_flag);

    // the first build with --cache-dir keeps the base unpacked
    let (first, log) = build(&t, "first", &[&cache_flag[..], &work_flag[..]].concat());
    assert!(
        log.contains(&format!("kept {base} unpacked in the cache directory")),
        "{log}"
    );
    assert_eq!(
        first, plain,
        "the image differs from one built without --cache-dir"
    );
    let trees = kept_trees(&cache);
    assert_eq!(trees.len(), 1, "{trees:?}");
    let rootfs = trees[0].join("rootfs");
    // the RUN changed none of the kept files
    assert_eq!(
        fs_err::read_to_string(rootfs.join("data/append.txt")).unwrap(),
        "first line\n"
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("data/append-link.txt")).unwrap(),
        "first line\n"
    );
    assert_eq!(
        fs_err::metadata(rootfs.join("data/append.txt"))
            .unwrap()
            .nlink(),
        2
    );
    assert_eq!(
        fs_err::metadata(rootfs.join("data/mode.txt"))
            .unwrap()
            .mode()
            & 0o7777,
        0o644
    );
    assert!(rootfs.join("data/gone.txt").is_file());
    assert!(!rootfs.join("new.txt").exists() && !rootfs.join("seen.txt").exists());
    let before = checksum(&rootfs);
    assert!(before.contains("data/many/199.txt"), "{before}");

    // the second reuses it (no unpacking), with the same image
    let (second, log) = build(&t, "second", &[&cache_flag[..], &work_flag[..]].concat());
    assert!(
        log.contains(&format!(
            "reusing {base}, kept unpacked in the cache directory"
        )),
        "{log}"
    );
    assert!(!log.contains(&format!("layers of {base}")), "{log}");
    assert_eq!(
        second, plain,
        "the image differs from one built without --cache-dir"
    );
    // the write through the hard link reached both names in the image
    let rootfs_out = t.path("rootfs-second");
    crate::harness::Layout(t.path("second")).unpack("t1", &rootfs_out);
    assert_eq!(
        fs_err::read_to_string(rootfs_out.join("seen.txt")).unwrap(),
        "first line\nappended\n"
    );
    let after = checksum(&rootfs);
    let changed: Vec<&str> = after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .chain(before.lines().filter(|l| !after.lines().any(|a| a == *l)))
        .collect();
    assert!(
        changed.is_empty(),
        "a build changed the kept base: {changed:#?}"
    );
    assert_eq!(kept_trees(&cache), trees);
    assert_eq!(mounts_under(t.dir.path()), Vec::<String>::new());
    // the work directory is gone whole (its overlay was unmounted first)
    let left: Vec<_> = fs_err::read_dir(&kaniko_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with("smelt-build-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_kept_base_without_its_marker_is_not_used() {
    let reg = TestRegistry::start(Auth::None);
    let base = push_base(&reg);
    let t = app(&base);
    let cache = t.path("cache");
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    let (first, _) = build(&t, "first", &cache_flag);
    let trees = kept_trees(&cache);
    assert_eq!(trees.len(), 1, "{trees:?}");

    // as a build stopped half-way would leave it: no marker, a file missing
    fs_err::remove_file(trees[0].join("kept.json")).unwrap();
    fs_err::remove_file(trees[0].join("rootfs/data/mode.txt")).unwrap();
    let (again, log) = build(&t, "again", &cache_flag);
    assert!(log.contains("ignoring the kept base"), "{log}");
    assert!(
        log.contains(&format!("kept {base} unpacked in the cache directory")),
        "{log}"
    );
    assert!(!log.contains("reusing"), "{log}");
    assert_eq!(again, first);
    assert!(trees[0].join("kept.json").is_file());
    assert!(trees[0].join("rootfs/data/mode.txt").is_file());
    let listing = tool("ls", &["-a", cache.join("bases").to_str().unwrap()]);
    assert!(
        !listing.contains(".tmp-") && !listing.contains(".trash-"),
        "{listing}"
    );
}

/// Whether a process's environment holds `entry` (the RUN's, through ENV).
fn a_process_has_env(entry: &str) -> bool {
    let Ok(procs) = fs_err::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        fs_err::read(p.path().join("environ"))
            .is_ok_and(|env| env.split(|b| *b == 0).any(|e| e == entry.as_bytes()))
    })
}

#[test]
fn sigterm_during_a_run_on_a_kept_base_unmounts_and_removes_everything() {
    use std::time::{Duration, Instant};
    let reg = TestRegistry::start(Auth::None);
    let base = push_base(&reg);
    let t = app(&base);
    let cache = t.path("cache");
    let cache_flag = ["--cache-dir", cache.to_str().unwrap()];
    build(&t, "first", &cache_flag);
    let trees = kept_trees(&cache);
    let before = checksum(&trees[0].join("rootfs"));

    let mark = format!("SMELT_BASE_REUSE_SIGNAL={}", std::process::id());
    fs_err::write(
        t.ctx().join("Dockerfile"),
        format!("FROM {base}\nENV {mark}\nRUN echo x >> /data/append.txt && sleep 60\n"),
    )
    .unwrap();
    let kaniko = t.path("kaniko");
    fs_err::create_dir_all(&kaniko).unwrap();
    let mut child = std::process::Command::new(crate::harness::smelt_bin())
        .args(["build", "--no-push", "--context"])
        .arg(t.ctx())
        .args(cache_flag)
        .arg("--kaniko-dir")
        .arg(&kaniko)
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", t.path("no-config"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !a_process_has_env(&mark) {
        assert!(
            child.try_wait().unwrap().is_none(),
            "smelt ended before its RUN"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no RUN after 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !mounts_under(&kaniko).is_empty(),
        "the stage root is no overlay"
    );
    tool("kill", &["-TERM", &child.id().to_string()]);
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{log}");
    assert!(log.contains("reusing"), "{log}");
    assert_eq!(mounts_under(t.dir.path()), Vec::<String>::new(), "{log}");
    let left: Vec<_> = fs_err::read_dir(&kaniko)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}\n{log}");
    assert_eq!(checksum(&trees[0].join("rootfs")), before);
}

/// The build under test for kept chains: a RUN that makes files (a cache
/// hit from the second build on), a COPY of `new.txt` (changed before
/// each build, so it misses) and a RUN that appends to, chmods and
/// deletes files of both the base and the first RUN's layer.
fn chained_app(base: &str) -> TestContext {
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN mkdir /hit && echo hit > /hit/append.txt && echo mode > /hit/mode.txt \
         && echo gone > /hit/gone.txt && for i in $(seq 0 99); do echo $i > /hit/$i.txt; done\n\
         COPY new.txt /new.txt\n\
         RUN echo appended >> /data/append.txt && echo appended >> /hit/append.txt \
         && chmod 600 /data/mode.txt /hit/mode.txt && rm /data/gone.txt /hit/gone.txt \
         && cat /data/append-link.txt /hit/append.txt > /seen.txt\n"
    ));
    t.file("new.txt", "new 1\n");
    t
}

/// The lines of two checksums that differ.
fn changes(before: &str, after: &str) -> Vec<String> {
    after
        .lines()
        .filter(|l| !before.lines().any(|b| b == *l))
        .chain(before.lines().filter(|l| !after.lines().any(|a| a == *l)))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_kept_chain_of_cache_hits_is_reused_and_never_written() {
    let reg = TestRegistry::start(Auth::None);
    let base = push_base(&reg);
    let t = chained_app(&base);
    let cache = t.path("cache");
    let repo = format!("{}/cache", reg.host);
    let flags = [
        "--cache-dir",
        cache.to_str().unwrap(),
        "--cache",
        "--cache-copy-layers",
        "--cache-repo",
        &repo,
    ];

    // the first build: every step misses, the base alone is kept
    build(&t, "first", &flags);
    let trees = kept_trees(&cache);
    assert_eq!(trees.len(), 1, "{trees:?}");
    let base_tree = trees[0].join("rootfs");
    let base_sum = checksum(&base_tree);

    // the second: the first RUN hits, the COPY misses; the base with the
    // RUN's layer is kept as a tree of its own, made afresh
    t.file("new.txt", "new 2\n");
    let (_, log) = build(&t, "second", &flags);
    let chain = format!("{base} and 1 cache hit layer");
    assert!(
        log.contains(&format!("kept {chain} unpacked in the cache directory")),
        "{log}"
    );
    let trees = kept_trees(&cache);
    assert_eq!(trees.len(), 2, "{trees:?}");
    let chain_tree = trees
        .iter()
        .map(|t| t.join("rootfs"))
        .find(|t| *t != base_tree)
        .unwrap();
    assert_eq!(
        fs_err::read_to_string(chain_tree.join("hit/append.txt")).unwrap(),
        "hit\n"
    );
    assert!(chain_tree.join("hit/99.txt").is_file() && chain_tree.join("data/gone.txt").is_file());
    assert!(!chain_tree.join("new.txt").exists() && !chain_tree.join("seen.txt").exists());
    assert_eq!(
        changes(&base_sum, &checksum(&base_tree)),
        Vec::<String>::new(),
        "making the chain changed the kept base"
    );
    let chain_sum = checksum(&chain_tree);

    // the third reuses the chain: nothing is unpacked
    t.file("new.txt", "new 3\n");
    let (third, log) = build(&t, "third", &flags);
    assert!(
        log.contains(&format!(
            "reusing {chain}, kept unpacked in the cache directory"
        )),
        "{log}"
    );
    assert!(log.contains("(in the kept tree)"), "{log}");
    assert!(!log.contains(&format!("layers of {base}")), "{log}");
    assert!(!log.contains("for later builds"), "{log}");
    let rootfs_out = t.path("rootfs-third");
    crate::harness::Layout(t.path("third")).unpack("t1", &rootfs_out);
    assert_eq!(
        fs_err::read_to_string(rootfs_out.join("seen.txt")).unwrap(),
        "first line\nappended\nhit\nappended\n"
    );
    assert!(!rootfs_out.join("hit/gone.txt").exists());
    // neither kept tree was written by the RUN
    assert_eq!(
        changes(&base_sum, &checksum(&base_tree)),
        Vec::<String>::new(),
        "a build changed the kept base"
    );
    assert_eq!(
        changes(&chain_sum, &checksum(&chain_tree)),
        Vec::<String>::new(),
        "a build changed the kept chain"
    );
    assert_eq!(kept_trees(&cache), trees);
    assert_eq!(mounts_under(t.dir.path()), Vec::<String>::new());

    // the same image as a build with neither the cache nor --cache-dir
    let (plain, _) = build(&t, "plain", &[]);
    assert_eq!(
        third, plain,
        "the image differs from one built without --cache-dir"
    );
}
