//! Hostile input: crafted base images (built FROM and read by `COPY
//! --from`), archives (ADD) and tarball contexts whose entries try to
//! reach the host through symlinks made in the same layer, symlinks from a
//! lower layer, and whiteouts naming `.`, `..` or a path through a link.
//! Canary directories outside the build are compared before and after
//! every build (names, contents, modes and times); a build may fail, but
//! then with a message naming the cause, and no host file may change or
//! end up in an image.

use crate::harness::{TestContext, smelt_bin};
use crate::registry_server::{Auth, TestRegistry, busybox};
use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One raw tar entry, written without any of the tar crate's checks.
#[derive(Clone)]
pub struct Entry {
    name: String,
    kind: tar::EntryType,
    link: String,
    body: Vec<u8>,
    mode: u32,
}

pub fn file(name: &str, body: &str) -> Entry {
    Entry {
        name: name.to_string(),
        kind: tar::EntryType::Regular,
        link: String::new(),
        body: body.as_bytes().to_vec(),
        mode: 0o644,
    }
}

pub fn dir(name: &str) -> Entry {
    Entry {
        kind: tar::EntryType::Directory,
        mode: 0o755,
        ..file(name, "")
    }
}

pub fn symlink(name: &str, target: &str) -> Entry {
    Entry {
        kind: tar::EntryType::Symlink,
        link: target.to_string(),
        mode: 0o777,
        ..file(name, "")
    }
}

fn hardlink(name: &str, target: &str) -> Entry {
    Entry {
        kind: tar::EntryType::Link,
        link: target.to_string(),
        ..file(name, "")
    }
}

fn fifo(name: &str) -> Entry {
    Entry {
        kind: tar::EntryType::Fifo,
        ..file(name, "")
    }
}

/// A tar of `entries` exactly as given (GNU long names for long ones).
pub fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(5);
        h.set_size(e.body.len() as u64);
        if e.name.len() > 100 || e.link.len() > 100 {
            // long names through GNU records, which the tar crate writes unchecked
            if !e.link.is_empty() {
                b.append_link(&mut h, &e.name, &e.link).unwrap();
            } else {
                b.append_data(&mut h, &e.name, e.body.as_slice()).unwrap();
            }
            continue;
        }
        h.as_mut_bytes()[..100].fill(0);
        h.as_mut_bytes()[..e.name.len()].copy_from_slice(e.name.as_bytes());
        h.as_mut_bytes()[157..257].fill(0);
        h.as_mut_bytes()[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h.set_cksum();
        b.append(&h, e.body.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

/// bin/busybox and bin/sh, so a RUN can start.
fn busybox_layer() -> Vec<u8> {
    let mut e = file("bin/busybox", "");
    e.body = fs_err::read(busybox()).unwrap();
    e.mode = 0o755;
    tar_of(&[dir("bin"), e, symlink("bin/sh", "busybox")])
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Pushes an image of `layers` (uncompressed tars, gzipped here) as
/// `name`; returns its reference.
pub fn push_image(reg: &TestRegistry, name: &str, layers: &[Vec<u8>]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs/sha256");
    fs_err::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = sha256(bytes);
        fs_err::write(blobs.join(&d), bytes).unwrap();
        (format!("sha256:{d}"), bytes.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in layers {
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(tar).unwrap();
        let (digest, size) = put(&gz.finish().unwrap());
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest, "size": size}));
        diff_ids.push(format!("sha256:{}", sha256(tar)));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
        "layers": descs});
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms}]});
    fs_err::write(dir.path().join("index.json"), index.to_string()).unwrap();
    fs_err::write(
        dir.path().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    reg.push_layout(dir.path(), name);
    format!("{}/{name}", reg.host)
}

/// A directory outside every build, with a file and a subdirectory,
/// whose state is recorded when made.
pub struct Canary {
    pub path: PathBuf,
    before: String,
}

impl Canary {
    pub fn new(parent: &Path) -> Canary {
        let path = parent.join("canary");
        fs_err::create_dir_all(path.join("sub")).unwrap();
        fs_err::write(path.join("secret"), "host secret\n").unwrap();
        fs_err::write(path.join("sub/keep"), "keep\n").unwrap();
        for p in [path.join("sub"), path.clone()] {
            let t = filetime::FileTime::from_unix_time(1_000_000, 0);
            filetime::set_file_times(&p, t, t).unwrap();
        }
        let before = state(&path);
        Canary { path, before }
    }

    #[track_caller]
    pub fn assert_intact(&self, case: &str) {
        assert_eq!(
            state(&self.path),
            self.before,
            "{case}: the canary outside the build changed"
        );
    }
}

/// Every entry under `p` with its type, mode, size, mtime and content.
fn state(p: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut out = String::new();
    let mut todo = vec![p.to_path_buf()];
    while let Some(d) = todo.pop() {
        let m = fs_err::symlink_metadata(&d).unwrap();
        out.push_str(&format!(
            "{} {:o} {} {}\n",
            d.display(),
            m.mode(),
            m.size(),
            m.mtime()
        ));
        if m.is_file() {
            out.push_str(&String::from_utf8_lossy(&fs_err::read(&d).unwrap()));
        }
        if m.is_dir() {
            let mut names: Vec<_> = fs_err::read_dir(&d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            todo.extend(names);
        }
    }
    out
}

/// Whether any layer of the OCI layout at `layout` holds `needle`.
fn layout_holds(layout: &Path, needle: &[u8]) -> bool {
    let Ok(entries) = fs_err::read_dir(layout.join("blobs/sha256")) else {
        return false;
    };
    entries.map(|e| e.unwrap().path()).any(|blob| {
        let raw = fs_err::read(&blob).unwrap();
        let mut plain = Vec::new();
        let data = if std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(raw.as_slice()),
            &mut plain,
        )
        .is_ok()
        {
            plain
        } else {
            raw
        };
        data.windows(needle.len()).any(|w| w == needle)
    })
}

/// The crafted layers, each laid over a busybox layer: (name, entries,
/// whether the build must fail and what its message says).
/// A crafted image's case: its name, its layers (over busybox) and, when
/// the build must fail, what the message says.
type LayerCase = (String, Vec<Vec<Entry>>, Option<&'static str>);

fn layer_cases(canary: &str) -> Vec<LayerCase> {
    let rel_canary = format!("../../../../../../../../../../../..{canary}");
    let mut cases: Vec<LayerCase> = Vec::new();
    let under: [(&str, Entry); 7] = [
        ("symlink", symlink("esc/secret", "/etc/shadow")),
        ("file", file("esc/secret", "pwned\n")),
        ("new-file", file("esc/new", "pwned\n")),
        ("dir", dir("esc/sub")),
        ("deep", file("esc/sub/keep", "pwned\n")),
        ("hardlink", hardlink("esc/secret", "bin/busybox")),
        ("fifo", fifo("esc/secret")),
    ];
    for (target_kind, target) in [("abs", canary.to_string()), ("rel", rel_canary)] {
        for (what, entry) in &under {
            // the link and what goes under it in one layer
            cases.push((
                format!("same-layer {target_kind} {what}"),
                vec![vec![symlink("esc", &target), entry.clone()]],
                None,
            ));
            // a symlink from a lower layer
            cases.push((
                format!("lower-layer {target_kind} {what}"),
                vec![vec![symlink("esc", &target)], vec![entry.clone()]],
                None,
            ));
        }
        cases.push((
            format!("whiteout through a lower {target_kind} link"),
            vec![
                vec![symlink("esc", &target)],
                vec![file("esc/.wh.secret", ""), file("esc/sub/.wh.keep", "")],
            ],
            None,
        ));
        cases.push((
            format!("opaque through a lower {target_kind} link"),
            vec![
                vec![symlink("esc", &target)],
                vec![
                    file("esc/.wh..wh..opq", ""),
                    file("esc/sub/.wh..wh..opq", ""),
                ],
            ],
            None,
        ));
        cases.push((
            format!("chained {target_kind} links"),
            vec![vec![
                symlink("a", "b"),
                symlink("b", &target),
                file("a/secret", "pwned\n"),
                symlink("a/sub", "/"),
                file("a/sub/new", "pwned\n"),
            ]],
            None,
        ));
    }
    for bad in [
        ".wh.",
        ".wh..",
        ".wh...",
        "bin/.wh.",
        "bin/.wh..",
        "bin/.wh...",
    ] {
        cases.push((
            format!("whiteout {bad}"),
            vec![vec![file(bad, "")]],
            Some("whiteout"),
        ));
    }
    cases
}

fn output_flags(t: &TestContext) -> Vec<String> {
    vec![
        "--no-push".into(),
        "--oci-layout-path".into(),
        t.path("oci").display().to_string(),
    ]
}

/// Builds `dockerfile` in a fresh context; checks the canary, the image
/// and the outcome.
fn check_build(
    case: &str,
    dockerfile: &str,
    canary: &Canary,
    fails_with: Option<&str>,
) -> Result<(), String> {
    let t = TestContext::new(dockerfile);
    let flags = output_flags(&t);
    let run = t.build(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    canary.assert_intact(case);
    if layout_holds(&t.path("oci"), b"host secret") {
        return Err(format!("{case}: a host file went into the image"));
    }
    match (fails_with, run.code()) {
        (None, 0) => Ok(()),
        (Some(msg), c) if c != 0 && run.stderr().contains(msg) => Ok(()),
        (want, c) => Err(format!(
            "{case}: exit {c}, expected {}:\n{}",
            want.map_or("success".to_string(), |m| format!("a failure naming {m:?}")),
            run.stderr()
        )),
    }
}

#[test]
fn crafted_base_images_never_reach_the_host_from_or_copy_from() {
    let reg = TestRegistry::start(Auth::None);
    let scratch = tempfile::tempdir().unwrap();
    let canary = Canary::new(scratch.path());
    let canary_path = canary.path.display().to_string();
    let mut tried = 0;
    let mut failures = Vec::new();
    for (i, (case, layers, fails)) in layer_cases(&canary_path).into_iter().enumerate() {
        let mut tars = vec![busybox_layer()];
        tars.extend(layers.iter().map(|l| tar_of(l)));
        let image = push_image(&reg, &format!("hostile/{i}:1"), &tars);
        for (how, dockerfile) in [
            ("FROM", format!("FROM {image}\nRUN true\n")),
            (
                "COPY --from",
                format!("FROM scratch\nCOPY --from={image} / /copied/\n"),
            ),
        ] {
            tried += 1;
            if let Err(e) = check_build(&format!("{how} {case}"), &dockerfile, &canary, fails) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} held:\n{}",
        tried - failures.len(),
        failures.join("\n")
    );
    assert_eq!(tried, 2 * (2 * (7 * 2 + 3) + 6));
}

#[test]
fn crafted_archives_and_tarball_contexts_never_reach_the_host() {
    let scratch = tempfile::tempdir().unwrap();
    let canary = Canary::new(scratch.path());
    let c = canary.path.display().to_string();
    let archives: Vec<(&str, Vec<Entry>)> = vec![
        // class 2: the host's file must not be copied into the layer
        (
            "file then link",
            vec![dir("esc"), file("esc/secret", "mine\n"), symlink("esc", &c)],
        ),
        (
            "link then file",
            vec![symlink("esc", &c), file("esc/secret", "pwned\n")],
        ),
        (
            "link then link",
            vec![symlink("esc", &c), symlink("esc/secret", "x")],
        ),
        ("link then dir", vec![symlink("esc", &c), dir("esc/sub")]),
        (
            "climbing names",
            vec![file("../../../../secret", "pwned\n")],
        ),
        (
            "hard link out",
            vec![hardlink("stolen", &format!("{c}/secret")), file("x", "x")],
        ),
    ];
    let mut failures = Vec::new();
    let mut tried = 0;
    for (case, entries) in &archives {
        // ADD of a local archive
        tried += 1;
        let t = TestContext::new("FROM scratch\nADD evil.tar /x/\n");
        fs_err::write(t.ctx().join("evil.tar"), tar_of(entries)).unwrap();
        let flags = output_flags(&t);
        let run = t.build(&flags.iter().map(String::as_str).collect::<Vec<_>>());
        canary.assert_intact(&format!("ADD {case}"));
        if layout_holds(&t.path("oci"), b"host secret") {
            failures.push(format!("ADD {case}: a host file went into the image"));
        }
        if run.code() != 0 && !case.contains("hard link") {
            failures.push(format!("ADD {case}: {}", run.stderr()));
        }
        // the same entries as a tarball context
        tried += 1;
        let t = TestContext::new("unused\n");
        let mut all = vec![file("Dockerfile", "FROM scratch\nCOPY . /ctx/\n")];
        all.extend(entries.iter().cloned());
        let tarball = t.path("ctx.tar");
        fs_err::write(&tarball, tar_of(&all)).unwrap();
        let layout = t.path("oci");
        let run = Command::new(smelt_bin())
            .args(["build", "--no-push", "--context"])
            .arg(format!("tar://{}", tarball.display()))
            .arg("--oci-layout-path")
            .arg(&layout)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        canary.assert_intact(&format!("tar:// {case}"));
        if layout_holds(&layout, b"host secret") {
            failures.push(format!("tar:// {case}: a host file went into the image"));
        }
        if !run.status.success() && !case.contains("hard link") {
            failures.push(format!(
                "tar:// {case}: {}",
                String::from_utf8_lossy(&run.stderr)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {tried} held:\n{}",
        tried - failures.len(),
        failures.join("\n")
    );
}

/// In place (the executor in a throwaway container-like root): whiteouts
/// naming the root or its parent, and links to the executor's directory
/// and a mounted file, leave the executor, the mount, the context and
/// the world outside the root alone.
#[test]
fn crafted_layers_in_place_leave_the_executor_mounts_and_host_alone() {
    let reg = TestRegistry::start(Auth::None);
    let scratch = tempfile::tempdir().unwrap();
    let canary = Canary::new(scratch.path());
    let c = canary.path.display().to_string();
    let cases: Vec<(&str, Vec<Vec<Entry>>, bool)> = vec![
        ("whiteout of ..", vec![vec![file(".wh..", "")]], false),
        ("whiteout of .", vec![vec![file("etc/.wh.", "")]], false),
        ("whiteout of ... ", vec![vec![file(".wh...", "")]], false),
        (
            "whiteouts of the executor and the mount",
            vec![vec![
                file("kaniko/.wh.executor", ""),
                file("etc/.wh.secret", ""),
                file("workspace/.wh..wh..opq", ""),
            ]],
            true,
        ),
        (
            "links to the executor, the mount and the host",
            vec![
                vec![
                    symlink("k", "/kaniko"),
                    file("k/executor", "pwned"),
                    symlink("m", "/etc/secret"),
                    symlink("h", &c),
                    file("h/secret", "pwned\n"),
                ],
                vec![file("m", "pwned"), file("h/new", "pwned\n")],
            ],
            true,
        ),
    ];
    for (i, (case, layers, ok)) in cases.into_iter().enumerate() {
        let mut tars = vec![busybox_layer()];
        tars.extend(layers.iter().map(|l| tar_of(l)));
        let image = push_image(&reg, &format!("hostile-in-place/{i}:1"), &tars);
        let root = crate::in_place::executor_root(&format!("FROM {image}\nRUN true\n"));
        let executor_before = fs_err::read(root.path().join("kaniko/executor")).unwrap();
        let secret = tempfile::NamedTempFile::new().unwrap();
        fs_err::write(secret.path(), "mounted\n").unwrap();
        let (built, log) = crate::in_place::run_executor(
            root.path(),
            secret.path(),
            &["--context", "/workspace", "--no-push", "--force"],
        );
        canary.assert_intact(case);
        assert_eq!(built, ok, "{case}:\n{log}");
        if !ok {
            assert!(log.contains("whiteout"), "{case}:\n{log}");
        }
        assert_eq!(
            fs_err::read_to_string(secret.path()).unwrap(),
            "mounted\n",
            "{case}: the mounted file changed"
        );
        assert_eq!(
            fs_err::read(root.path().join("kaniko/executor")).unwrap(),
            executor_before,
            "{case}: the executor changed"
        );
        assert!(
            root.path().join("workspace/Dockerfile").is_file(),
            "{case}: the context went"
        );
        assert!(root.path().join("etc").is_dir(), "{case}: /etc went");
    }
}

/// Names that are not UTF-8 keep their bytes: from the context through
/// COPY, and from a RUN through the snapshot, into the layers.
#[test]
fn names_that_are_not_utf8_keep_their_bytes_in_layers() {
    use std::os::unix::ffi::OsStrExt;
    let reg = TestRegistry::start(Auth::None);
    let base = push_image(&reg, "bytes/base:1", &[busybox_layer()]);
    let t = TestContext::new(&format!(
        "FROM {base}\nCOPY . /ctx/\nRUN printf x > \"$(printf 'r\\377un')\"\n"
    ));
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs_err::write(t.ctx().join(name), "latin-1 name\n").unwrap();
    let flags = output_flags(&t);
    t.build(&flags.iter().map(String::as_str).collect::<Vec<_>>())
        .ok();
    let mut names: Vec<Vec<u8>> = Vec::new();
    for blob in fs_err::read_dir(t.path("oci/blobs/sha256")).unwrap() {
        let raw = fs_err::read(blob.unwrap().path()).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(raw.as_slice()));
        let Ok(entries) = archive.entries() else {
            continue;
        };
        for e in entries.flatten() {
            names.push(e.path_bytes().into_owned());
        }
    }
    assert!(names.contains(&b"ctx/caf\xe9".to_vec()), "{names:?}");
    assert!(names.contains(&b"r\xffun".to_vec()), "{names:?}");
}
