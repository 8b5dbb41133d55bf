//! The layer cache in an OCI layout on disk (`--cache-repo oci:DIR`): a
//! first build fills a layout skopeo reads, a second build with a fresh
//! work directory takes every cacheable step from it and pushes the same
//! image, a changed context file misses from its COPY on, and two builds
//! sharing one layout at once both finish and leave it whole.

use crate::harness::{TestContext, tool};
use crate::registry_server::{Auth, TestRegistry};
use std::path::Path;

/// How many steps a build took from the cache (`cache hit` lines).
fn hits(log: &str) -> usize {
    log.lines().filter(|l| l.contains("] cache hit ")).count()
}

/// A build of `t` with the layer cache in `layout`, pushed to `dest` on
/// `reg`, its work directory `work` (fresh for each build); its log.
fn build(t: &TestContext, reg: &TestRegistry, layout: &Path, dest: &str, extra: &[&str]) -> String {
    let work = tempfile::tempdir().unwrap();
    let cache = format!("oci:{}", layout.display());
    let dest = format!("{}/{dest}", reg.host);
    let mut args = vec![
        "--cache",
        "--cache-copy-layers",
        "--cache-repo",
        &cache,
        "--destination",
        &dest,
        "--reproducible",
        "--kaniko-dir",
        work.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    t.build(&args).ok().stderr()
}

/// The keys (tags) the layout's index names, without the `next-` and
/// `line-` ones.
fn keys(layout: &Path) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            d["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .filter(|t| !t.starts_with("next-") && !t.starts_with("line-"))
        .collect()
}

/// Every entry of the layout read back by skopeo (manifest and config
/// blobs present, digests right): the layers each names.
fn check_layout(layout: &Path) -> Vec<Vec<String>> {
    keys(layout)
        .iter()
        .map(|key| {
            let out = tool(
                "skopeo",
                &["inspect", &format!("oci:{}:{key}", layout.display())],
            );
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            let layers: Vec<String> = v["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
            for l in &layers {
                let hex = l.strip_prefix("sha256:").unwrap();
                let blob = layout.join("blobs/sha256").join(hex);
                let bytes = fs_err::read(&blob).unwrap();
                assert_eq!(
                    crate::registry_server::sha256(&bytes),
                    *l,
                    "{}",
                    blob.display()
                );
            }
            layers
        })
        .collect()
}

/// The layer digests of `name` on `reg`, pulled by skopeo.
fn layers(reg: &TestRegistry, name: &str) -> Vec<serde_json::Value> {
    reg.inspect(name, &[])["Layers"].as_array().unwrap().clone()
}

fn context(base: &str) -> TestContext {
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN date +%s%N > /built && echo ran-the-build\n\
         COPY a.txt /a.txt\n\
         COPY b.txt /b.txt\n\
         WORKDIR /work\n\
         RUN cat /a.txt /b.txt /built > /all && echo ran-the-last\n"
    ));
    t.file("a.txt", "a\n").file("b.txt", "b\n");
    t
}

#[test]
fn a_second_build_takes_every_step_from_the_layout_and_pushes_the_same_image() {
    let reg = TestRegistry::start(Auth::None);
    let t = context(&reg.push_base("base:1", "linux/amd64"));
    // made when missing
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("new/cache");
    let log = build(&t, &reg, &layout, "app:1", &[]);
    assert_eq!(hits(&log), 0, "{log}");
    assert!(log.contains("[0] ran-the-build"), "{log}");
    assert!(
        log.contains(&format!(
            "stored 5 cache entries in oci:{}",
            layout.display()
        )),
        "{log}"
    );
    let entries = check_layout(&layout);
    assert_eq!(entries.len(), 5, "{entries:?}");
    // each step made a layer (WORKDIR its directory)
    assert!(entries.iter().all(|l| l.len() == 1), "{entries:?}");
    // umoci reads the layout too
    let key = &keys(&layout)[0];
    tool(
        "umoci",
        &["stat", "--image", &format!("{}:{key}", layout.display())],
    );

    // pushed to a registry that never saw the layers: no repository to
    // mount them from, the layout's bytes are uploaded
    let fresh = TestRegistry::start(Auth::None);
    let report = dir.path().join("report.json");
    let log = build(
        &t,
        &fresh,
        &layout,
        "app:2",
        &["--cache-report", report.to_str().unwrap()],
    );
    assert_eq!(hits(&log), 5, "{log}");
    assert!(log.contains("not unpacking"), "{log}");
    assert!(!log.contains("[0] ran-the-"), "a RUN ran again:\n{log}");
    let report: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(report["cache"], format!("oci:{}", layout.display()));
    assert!(
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["result"] == "hit"),
        "{report}"
    );
    // the same image, every layer there
    let one = layers(&reg, "app:1");
    assert_eq!(one.len(), reg.layer_count("base:1") + 5, "{one:?}");
    assert_eq!(one, layers(&fresh, "app:2"));
    assert_eq!(
        reg.inspect("app:1", &[])["Digest"],
        fresh.inspect("app:2", &[])["Digest"]
    );
    let rootfs = fresh.pull_rootfs(&format!("{}/app:2", fresh.host), dir.path());
    assert_eq!(fs_err::read_to_string(rootfs.join("b.txt")).unwrap(), "b\n");
    let all = fs_err::read_to_string(rootfs.join("all")).unwrap();
    assert!(all.starts_with("a\nb\n"), "{all:?}");
    assert_eq!(
        fs_err::read_to_string(rootfs.join("built")).unwrap(),
        &all[4..]
    );
}

#[test]
fn a_relative_layout_path_is_taken_from_the_current_directory() {
    let reg = TestRegistry::start(Auth::None);
    let t = context(&reg.push_base("base:1", "linux/amd64"));
    let cwd = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::harness::smelt_bin())
        .current_dir(cwd.path())
        .args(["build", "--context"])
        .arg(t.ctx())
        .args(["--cache", "--cache-repo", "oci:rel/cache", "--no-push"])
        .arg("--kaniko-dir")
        .arg(work.path())
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", cwd.path().join("no-config"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let layout = cwd.path().join("rel/cache");
    assert!(
        log.contains(&format!(
            "stored 3 cache entries in oci:{}",
            layout.display()
        )),
        "{log}"
    );
    // RUN, WORKDIR, RUN (COPY is cached with --cache-copy-layers only)
    assert_eq!(check_layout(&layout).len(), 3);

    // a path that cannot be a directory: the error names it
    let file = cwd.path().join("file");
    fs_err::write(&file, "").unwrap();
    let run = t.build(&[
        "--cache",
        "--cache-repo",
        &format!("oci:{}/sub", file.display()),
        "--no-push",
    ]);
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr()
            .contains(&format!("oci:{}/sub", file.display())),
        "{}",
        run.stderr()
    );
}

#[test]
fn a_changed_context_file_misses_from_its_copy_on() {
    let reg = TestRegistry::start(Auth::None);
    let t = context(&reg.push_base("base:1", "linux/amd64"));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    build(&t, &reg, &layout, "app:1", &[]);
    t.file("b.txt", "B\n");
    let report = dir.path().join("report.json");
    let log = build(
        &t,
        &reg,
        &layout,
        "app:2",
        &["--cache-report", report.to_str().unwrap()],
    );
    let report: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&report).unwrap()).unwrap();
    let results: Vec<(u64, &str)> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["line"].as_u64().unwrap(), s["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        results,
        [
            (2, "hit"),
            (3, "hit"),
            (4, "miss"),
            (5, "miss"),
            (6, "miss")
        ],
        "{log}"
    );
    assert!(!log.contains("[0] ran-the-build"), "{log}");
    assert!(log.contains("[0] ran-the-last"), "{log}");
    // the misses were stored beside the first build's entries
    assert_eq!(check_layout(&layout).len(), 8);
    // the base's layers, RUN's and COPY a.txt's are the first build's
    let one = layers(&reg, "app:1");
    let two = layers(&reg, "app:2");
    let same = reg.layer_count("base:1") + 2;
    assert_eq!(one[..same], two[..same]);
    assert_ne!(one[same], two[same]);
}

#[test]
fn two_builds_sharing_a_layout_at_once_both_finish_and_leave_it_whole() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = context(&base);
    let u = context(&base);
    u.file("a.txt", "other\n");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| build(&t, &reg, &layout, "app:1", &[]));
        let two = s.spawn(|| build(&u, &reg, &layout, "app:2", &[]));
        (one.join().unwrap(), two.join().unwrap())
    });
    assert!(one.contains("stored"), "{one}");
    assert!(two.contains("stored"), "{two}");
    // the first RUN is the same step in both: one entry (whichever came
    // last); each build's other four steps have their own
    let entries = check_layout(&layout);
    assert_eq!(entries.len(), 9, "{entries:?}");
    // no temporary file left behind, nothing half-written
    let names: Vec<String> = fs_err::read_dir(&layout)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
    // both read back: a third build of each hits every step
    assert_eq!(hits(&build(&t, &reg, &layout, "app:3", &[])), 5);
    assert_eq!(hits(&build(&u, &reg, &layout, "app:4", &[])), 5);
}

#[test]
fn an_entry_older_than_the_ttl_is_a_miss() {
    let reg = TestRegistry::start(Auth::None);
    let t = context(&reg.push_base("base:1", "linux/amd64"));
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("cache");
    build(&t, &reg, &layout, "app:1", &[]);
    // every entry made to say it was stored in 2000 (a new manifest blob,
    // the index pointing at it)
    let index_path = layout.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs_err::read(&index_path).unwrap()).unwrap();
    for d in index["manifests"].as_array_mut().unwrap() {
        let hex = d["digest"]
            .as_str()
            .unwrap()
            .strip_prefix("sha256:")
            .unwrap();
        let blob = layout.join("blobs/sha256").join(hex);
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&fs_err::read(&blob).unwrap()).unwrap();
        manifest["annotations"]["dev.smelt.cache.stored"] = "2000-01-01T00:00:00Z".into();
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let digest = crate::registry_server::sha256(&bytes);
        fs_err::write(
            layout
                .join("blobs/sha256")
                .join(digest.strip_prefix("sha256:").unwrap()),
            &bytes,
        )
        .unwrap();
        d["digest"] = digest.into();
        d["size"] = bytes.len().into();
    }
    fs_err::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let report = dir.path().join("report.json");
    let log = build(
        &t,
        &reg,
        &layout,
        "app:2",
        &[
            "--cache-ttl",
            "24h",
            "--cache-report",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(hits(&log), 0, "{log}");
    let report: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        report["steps"][0]["why"], "older than --cache-ttl",
        "{report}"
    );
    // stored again, now fresh: a third build hits every step
    assert_eq!(hits(&build(&t, &reg, &layout, "app:3", &[])), 5);
}
