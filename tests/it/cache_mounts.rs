//! `RUN --mount=type=cache` through the cache repository (`--cache`): a
//! cache filled by one build is restored on an empty runner (a fresh
//! `--kaniko-dir`, so no local cache directory) by the next; concurrent
//! saves of one mount leave a whole one; a mount over
//! `--cache-mount-max-size` is not saved; the saved image is one skopeo
//! reads; the image built never holds a cache's files; a damaged or
//! hostile save is a warning and writes nothing outside the cache; in
//! place, a new executor container (unprivileged: the contents swapped in)
//! gets what the last one saved.

use crate::harness::{TestContext, assert_no_line_starting, tree};
use crate::hostile::{Canary, file, symlink, tar_of};
use crate::registry_server::{Auth, TestRegistry, config_with_diff_ids, http, sha256};
use std::io::Write;

/// The flags of a build on an empty runner: the layer cache in
/// `REG/cache`, pushed as `dest`, a kaniko directory of its own.
fn flags(reg: &TestRegistry, t: &TestContext, dest: &str) -> Vec<String> {
    vec![
        "--custom-platform=linux/amd64".to_string(),
        "--cache".to_string(),
        format!("--cache-repo={}/cache", reg.host),
        format!("--destination={}/{dest}", reg.host),
        format!("--kaniko-dir={}", t.path("kaniko").display()),
    ]
}

fn build(t: &TestContext, flags: &[String]) -> String {
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    t.build(&args).ok().stderr()
}

/// The tags of saved cache mounts in `REG/cache`.
fn mount_tags(reg: &TestRegistry) -> Vec<String> {
    let out = reg.skopeo(
        "list-tags",
        &[""],
        &[&format!("docker://{}/cache", reg.host)],
    );
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    listed["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .filter(|t| t.starts_with("mount-"))
        .map(ToString::to_string)
        .collect()
}

/// The image `name` of `reg`, pulled and unpacked by skopeo and umoci.
fn pulled(reg: &TestRegistry, name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = reg.pull_rootfs(&format!("{}/{name}", reg.host), dir.path());
    (dir, rootfs)
}

#[test]
fn a_cache_mount_filled_by_one_build_is_restored_on_an_empty_runner() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let one = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/c echo filled-by-one > /c/file \
             && mkdir -p /c/sub && echo deep > /c/sub/x && ln -s sub/x /c/link \
             && echo built > /built\n"
    ));
    let log = build(&one, &flags(&reg, &one, "app:1"));
    assert!(log.contains("saving cache mount /c ("), "{log}");
    let tags = mount_tags(&reg);
    assert_eq!(tags.len(), 1, "{tags:?}");
    let tag = &tags[0];
    assert!(tag.starts_with("mount-c-linux-amd64-"), "{tag}");

    // an image skopeo reads: one layer, its annotations say what it is
    let inspected = reg.inspect(&format!("cache:{tag}"), &[]);
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(inspected["Os"], "linux");
    assert_eq!(inspected["Architecture"], "amd64");
    let raw = reg.inspect(&format!("cache:{tag}"), &["--raw"]);
    let annotations = &raw["annotations"];
    assert_eq!(annotations["dev.smelt.cache.mount"], "/c", "{raw}");
    assert_eq!(annotations["dev.smelt.cache.mount-platform"], "linux/amd64");
    assert!(annotations["dev.smelt.cache.stored"].is_string(), "{raw}");
    // ... and a real one: skopeo copies and umoci unpacks it
    let (_saved_dir, saved) = pulled(&reg, &format!("cache:{tag}"));
    assert_eq!(
        fs_err::read_to_string(saved.join("file")).unwrap(),
        "filled-by-one\n"
    );

    // the image built holds nothing of the cache
    let (_dir, rootfs) = pulled(&reg, "app:1");
    let listing = tree(&rootfs);
    assert!(listing.contains("/built "), "{listing}");
    assert_no_line_starting(&listing, &["/c ", "/c/", "/file", "/sub"]);

    // another runner: its own kaniko directory, nothing of the first
    let two = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/c cat /c/file /c/sub/x /c/link > /seen\n"
    ));
    let log = build(&two, &flags(&reg, &two, "app:2"));
    assert!(log.contains("restored cache mount /c from "), "{log}");
    // read, not changed: not saved again
    assert!(!log.contains("saving cache mount"), "{log}");
    let (_dir, rootfs) = pulled(&reg, "app:2");
    assert_eq!(
        fs_err::read_to_string(rootfs.join("seen")).unwrap(),
        "filled-by-one\ndeep\ndeep\n"
    );
    assert_no_line_starting(&tree(&rootfs), &["/c ", "/c/"]);
    // the restored cache is this runner's now
    let caches = two.path("kaniko/caches");
    let kept: Vec<_> = fs_err::read_dir(&caches)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        fs_err::read_to_string(kept[0].join("file")).unwrap(),
        "filled-by-one\n"
    );

    // without --cache, nothing is restored
    let three = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/c ls /c > /seen\n"
    ));
    let kaniko = format!("--kaniko-dir={}", three.path("kaniko").display());
    let log = three
        .build_outputs_run(&["--custom-platform=linux/amd64", &kaniko])
        .stderr();
    assert!(!log.contains("restored cache mount"), "{log}");
    assert_eq!(
        fs_err::read_to_string(three.unpack().join("seen")).unwrap(),
        ""
    );
}

#[test]
fn concurrent_saves_of_one_mount_leave_a_whole_one() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base}\nARG WHO\n\
         RUN --mount=type=cache,id=shared,target=/c \
             dd if=/dev/urandom of=/c/big bs=64k count=32 2>/dev/null \
             && echo $WHO > /c/who && cd /c && md5sum big who > /c/sums\n"
    );
    let builds: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let t = TestContext::new(&dockerfile);
            let mut f = flags(&reg, &t, &format!("app:{who}"));
            f.extend(["--build-arg".to_string(), format!("WHO={who}")]);
            std::thread::spawn(move || {
                let log = build(&t, &f);
                assert!(log.contains("saving cache mount shared ("), "{log}");
            })
        })
        .collect();
    for b in builds {
        b.join().unwrap();
    }
    assert_eq!(mount_tags(&reg).len(), 1);

    // a third runner reads one whole save: the files of one build
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,id=shared,target=/cache \
             cd /cache && md5sum -c sums > /checked && cat who > /who\n"
    ));
    let log = build(&t, &flags(&reg, &t, "app:c"));
    assert!(log.contains("restored cache mount shared from "), "{log}");
    let (_dir, rootfs) = pulled(&reg, "app:c");
    let who = fs_err::read_to_string(rootfs.join("who")).unwrap();
    assert!(who == "a\n" || who == "b\n", "{who:?}");
    assert_eq!(
        fs_err::read_to_string(rootfs.join("checked")).unwrap(),
        "big: OK\nwho: OK\n"
    );
}

#[test]
fn a_cache_mount_over_the_size_cap_is_not_saved() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/var/cache/big \
             dd if=/dev/zero of=/var/cache/big/fill bs=1k count=300 2>/dev/null\n\
         RUN --mount=type=cache,target=/small echo s > /small/s\n"
    ));
    let mut f = flags(&reg, &t, "app:1");
    f.push("--cache-mount-max-size=200k".to_string());
    let log = build(&t, &f);
    let warning = log
        .lines()
        .find(|l| l.contains("more than --cache-mount-max-size"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warning.contains("cache mount /var/cache/big holds 300.0 KiB (307200 bytes)"),
        "{warning}"
    );
    // the one under the cap is saved
    assert!(log.contains("saving cache mount /small ("), "{log}");
    let tags = mount_tags(&reg);
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(tags[0].starts_with("mount-small-"), "{tags:?}");

    // 0: none is saved; a size that is none is a usage error
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,target=/other echo o > /other/o\n"
    ));
    let mut f = flags(&reg, &t, "app:2");
    f.push("--cache-mount-max-size=0".to_string());
    let log = build(&t, &f);
    assert!(!log.contains("saving cache mount"), "{log}");
    assert_eq!(mount_tags(&reg).len(), 1);
    let run = t.build(&["--no-push", "--cache-mount-max-size=lots"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr().contains("--cache-mount-max-size \"lots\""),
        "{}",
        run.stderr()
    );
}

/// Puts `tar` (gzipped) at `REG/cache:TAG` as a saved cache mount of id
/// `id`, its manifest saying the diff ID is `diff_id` (else the tar's).
fn push_saved(reg: &TestRegistry, tag: &str, id: &str, tar: &[u8], diff_id: Option<&str>) {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(tar).unwrap();
    let blob = gz.finish().unwrap();
    let diff = diff_id.map_or_else(|| sha256(tar), ToString::to_string);
    let config = serde_json::to_vec(&config_with_diff_ids(&[&diff])).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": reg.put_blob("cache", &config),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": reg.put_blob("cache", &blob),
            "size": blob.len(),
        }],
        "annotations": {"dev.smelt.cache.mount": id, "dev.smelt.cache.diff-id": diff},
    });
    let (status, head, _) = http(
        &reg.host,
        "PUT",
        &format!("/v2/cache/manifests/{tag}"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &serde_json::to_vec(&manifest).unwrap(),
    );
    assert_eq!(status, 201, "{head:?}");
}

#[test]
fn a_damaged_or_hostile_save_is_a_warning_and_lands_nowhere_else() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let first = TestContext::new(&format!(
        "FROM {base}\nRUN --mount=type=cache,target=/c echo one > /c/one\n"
    ));
    build(&first, &flags(&reg, &first, "app:1"));
    let tags = mount_tags(&reg);
    assert_eq!(tags.len(), 1, "{tags:?}");
    let tag = &tags[0];
    let outside = tempfile::tempdir().unwrap();
    let canary = Canary::new(outside.path());
    let reader = |n: &str| {
        TestContext::new(&format!(
            "FROM {base}\nRUN --mount=type=cache,target=/c ls -A /c > /seen && echo {n}\n"
        ))
    };

    // a layer whose bytes are not what the manifest says: not restored,
    // the cache starts empty, the build goes on
    let tar = tar_of(&[file("planted", "x\n")]);
    let wrong = sha256(b"something else");
    push_saved(&reg, tag, "/c", &tar, Some(&wrong));
    let t = reader("damaged");
    let log = build(&t, &flags(&reg, &t, "app:2"));
    assert!(
        log.contains("cache mount /c: not restored, it starts as new:"),
        "{log}"
    );
    let (_dir, rootfs) = pulled(&reg, "app:2");
    assert_eq!(fs_err::read_to_string(rootfs.join("seen")).unwrap(), "");

    // a tag that is no saved mount of this id: the same
    push_saved(&reg, tag, "/other", &tar, None);
    let t = reader("other-id");
    let log = build(&t, &flags(&reg, &t, "app:3"));
    assert!(
        log.contains("not a saved cache mount of id \"/c\""),
        "{log}"
    );

    // entries aimed outside the cache, through a link and `..`: nothing
    // lands there, what is inside is restored
    let target = canary.path.display().to_string();
    let tar = tar_of(&[
        symlink("esc", &target),
        file("esc/secret", "overwritten\n"),
        file("../../planted-outside", "x\n"),
        file("ok", "fine\n"),
    ]);
    push_saved(&reg, tag, "/c", &tar, None);
    let t = reader("hostile");
    let run = t.build(
        &flags(&reg, &t, "app:4")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        run.stderr().contains("restored cache mount /c from "),
        "{}",
        run.stderr()
    );
    canary.assert_intact("a hostile saved cache mount");
    let (_dir, rootfs) = pulled(&reg, "app:4");
    let seen = fs_err::read_to_string(rootfs.join("seen")).unwrap();
    // `..` is cleaned away: the file lands in the cache
    for name in ["ok", "planted-outside"] {
        assert!(seen.lines().any(|l| l == name), "{seen}");
    }
    let kaniko = t.path("kaniko");
    for dir in [t.path(""), kaniko.clone(), kaniko.join("caches")] {
        assert!(!dir.join("planted-outside").exists(), "{}", dir.display());
    }
}

#[test]
fn in_place_a_new_container_restores_what_the_last_one_saved() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let repo = format!("{}/cache", reg.host);
    let secret = tempfile::NamedTempFile::new().unwrap();
    // a privileged container fills the cache (the sandbox mounts it) ...
    let one = crate::in_place::executor_root(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs echo fetched > /var/cache/pkgs/p\n"
    ));
    let dest = format!("{}/in-place:1", reg.host);
    let args = crate::in_place::workspace_args(&dest, &["--cache", "--cache-repo", &repo]);
    let (code, log) =
        crate::in_place::run_executor_in(one.path(), secret.path(), &args, &[], false);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("saving cache mount pkgs ("), "{log}");

    // ... and a new unprivileged one (the contents swapped in) reads it
    let two = crate::in_place::executor_root(&format!(
        "FROM {base}\n\
         RUN --mount=type=cache,id=pkgs,target=/var/cache/pkgs cat /var/cache/pkgs/p > /seen\n"
    ));
    let dest = format!("{}/in-place:2", reg.host);
    let args = crate::in_place::workspace_args(&dest, &["--cache", "--cache-repo", &repo]);
    let (code, log) = crate::in_place::run_executor_in(two.path(), secret.path(), &args, &[], true);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("restored cache mount pkgs from "), "{log}");
    let (_dir, rootfs) = pulled(&reg, "in-place:2");
    assert_eq!(
        fs_err::read_to_string(rootfs.join("seen")).unwrap(),
        "fetched\n"
    );
    assert_no_line_starting(&tree(&rootfs), &["/var/cache/pkgs/"]);
}
