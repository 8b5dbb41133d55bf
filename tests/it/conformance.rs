//! Differential tests: each case under `tests/conformance/` is built by
//! smelt and by `docker build` (BuildKit, in Debian's docker.io daemon,
//! started here on a private socket with no bridge), from the same busybox
//! base in a test registry; both images are unpacked by umoci and must give
//! the same file tree (paths, types, modes, owners, link counts, sizes,
//! contents, link targets) and the same config fields. Where docker 20.10
//! is older than a current docker build, the case holds a `check.sh` that
//! checks what current docker gives instead (see `differential`).

use crate::harness::{Layout, tool, tree};
use crate::registry_server::{Auth, TestRegistry, busybox};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SOCKET: &str = "unix:///var/run/smelt-oracle.sock";
const STATE: &str = "/var/tmp/smelt-oracle";

pub(crate) fn docker() -> Command {
    let mut c = Command::new("/usr/bin/docker");
    c.env("DOCKER_HOST", SOCKET).env("DOCKER_BUILDKIT", "1");
    c
}

fn oracle_up() -> bool {
    docker()
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Starts the reference dockerd once for all test processes (a file lock
/// keeps two from starting it); it keeps running after the tests.
pub(crate) fn ensure_oracle() {
    if oracle_up() {
        return;
    }
    fs_err::create_dir_all(STATE).expect("oracle state dir");
    let lock = fs_err::File::create(format!("{STATE}/start.lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    if oracle_up() {
        return;
    }
    let log = fs_err::File::create(format!("{STATE}/dockerd.log")).expect("log");
    // setsid --fork: dockerd outlives this test process; setsid itself returns
    let started = Command::new("setsid")
        .args([
            "--fork",
            "/usr/sbin/dockerd",
            "--host",
            SOCKET,
            "--data-root",
            &format!("{STATE}/data"),
            "--exec-root",
            "/var/run/smelt-oracle",
            "--pidfile",
            "/var/run/smelt-oracle.pid",
            "--iptables=false",
            "--bridge=none",
            "--ip-forward=false",
        ])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log").into_parts().0)
        .stderr(log.into_parts().0)
        .status()
        .expect("dockerd is needed by the tests (the README's test command installs docker.io)");
    assert!(started.success(), "setsid --fork dockerd failed");
    let start = Instant::now();
    while !oracle_up() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "dockerd did not come up; see {STATE}/dockerd.log"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A busybox base as Docker Hub's is laid out: every applet a hard link to
/// /bin/busybox, /tmp sticky, /root, /home, /etc/passwd and /etc/group with
/// root and nobody.
pub(crate) fn push_busybox(reg: &TestRegistry) -> String {
    let t = crate::harness::TestContext::new(
        "FROM scratch\nCOPY bin/ /bin/\nCOPY root/ /\nCMD [\"sh\"]\n",
    );
    let bin = t.ctx().join("bin");
    fs_err::create_dir_all(&bin).unwrap();
    fs_err::copy(busybox(), bin.join("busybox")).unwrap();
    let list = tool(busybox(), &["--list"]);
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        fs_err::hard_link(bin.join("busybox"), bin.join(applet)).unwrap();
    }
    let root = t.ctx().join("root");
    for d in ["tmp", "root", "home", "etc", "var"] {
        fs_err::create_dir_all(root.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    fs_err::set_permissions(root.join("root"), std::fs::Permissions::from_mode(0o700)).unwrap();
    fs_err::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    fs_err::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    let layout = t.path("oci");
    t.build(&["--no-push", "--oci-layout-path", layout.to_str().unwrap()])
        .ok();
    reg.push_layout(&layout, "busybox:latest");
    format!("{}/busybox:latest", reg.host)
}

fn case_dir(name: &str) -> PathBuf {
    if Path::new(name).is_absolute() {
        return PathBuf::from(name);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
}

/// The config fields compared (Docker's names; empty counts as absent).
fn compared(config: &serde_json::Value) -> serde_json::Value {
    let keys = [
        "Env",
        "Cmd",
        "Entrypoint",
        "WorkingDir",
        "User",
        "ExposedPorts",
        "Volumes",
        "Labels",
        "StopSignal",
        "Healthcheck",
        "OnBuild",
        "Shell",
    ];
    let mut fields = serde_json::Map::new();
    for k in keys {
        let v = &config["config"][k];
        let empty = v.is_null()
            || v.as_str() == Some("")
            || v.as_array().is_some_and(Vec::is_empty)
            || v.as_object().is_some_and(serde_json::Map::is_empty);
        if !empty {
            fields.insert(k.to_string(), v.clone());
        }
    }
    serde_json::Value::Object(fields)
}

/// The config inside a `docker save` archive, as docker wrote it (skopeo's
/// OCI conversion would drop Healthcheck, OnBuild and Shell).
fn archive_config(archive: &Path) -> serde_json::Value {
    let manifest: serde_json::Value = serde_json::from_str(&tool(
        "tar",
        &["-xOf", archive.to_str().unwrap(), "manifest.json"],
    ))
    .unwrap();
    let name = manifest[0]["Config"].as_str().unwrap().to_string();
    serde_json::from_str(&tool("tar", &["-xOf", archive.to_str().unwrap(), &name])).unwrap()
}

/// The file tree and the compared config fields of an OCI layout's image.
fn unpack(layout: &Path, tag: &str, rootfs: &Path) -> (String, serde_json::Value) {
    let layout = Layout(layout.to_path_buf());
    layout.unpack(tag, rootfs);
    (tree(rootfs), compared(&layout.config()))
}

/// `docker build -t TAG ARGS` (BuildKit, host network), then `docker save`
/// of the image to `saved` and the tag removed; `what` names the build in
/// a failure.
pub(crate) fn docker_build_saved(tag: &str, args: &[std::ffi::OsString], saved: &Path, what: &str) {
    let out = docker()
        .args(["build", "-q", "--network", "host", "-t", tag])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker build failed on {what}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = docker()
        .args(["save", "-o"])
        .arg(saved)
        .arg(tag)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = docker().args(["rmi", "-f", tag]).output();
}

fn differential(name: &str) {
    differential_on(name, push_busybox);
}

/// [`differential`] with `BASE` the image `make_base` pushes to the test
/// registry (and returns the reference of).
pub(crate) fn differential_on(name: &str, make_base: fn(&TestRegistry) -> String) {
    ensure_oracle();
    let reg = TestRegistry::start(Auth::None);
    let base = make_base(&reg);
    let dir = case_dir(name);
    let context = if dir.join("context").is_dir() {
        dir.join("context")
    } else {
        dir.clone()
    };
    let dockerfile = dir.join("Dockerfile");
    let work = tempfile::tempdir().unwrap();
    let base_arg = format!("BASE={base}");
    // more `--build-arg`s for both builders, a line each
    let mut build_args = vec!["--build-arg".to_string(), base_arg];
    if let Ok(text) = fs_err::read_to_string(dir.join("build-args")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            build_args.extend(["--build-arg".to_string(), line.to_string()]);
        }
    }

    // smelt
    let ours = work.path().join("smelt-oci");
    let out = Command::new(crate::harness::smelt_bin())
        .args(["build", "--no-push", "-d", "conformance/case:t1"])
        .arg("--context")
        .arg(&context)
        .arg("--dockerfile")
        .arg(&dockerfile)
        .args(&build_args)
        .arg("--oci-layout-path")
        .arg(&ours)
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", work.path().join("no-config"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "smelt failed on {name}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // where docker 20.10 predates what a current docker build gives, the
    // case's check.sh says what that is (run on smelt's image, with ROOTFS
    // the unpacked tree and CONFIG the image config's path)
    let check = dir.join("check.sh");
    if check.is_file() {
        let rootfs = work.path().join("smelt-rootfs");
        let layout = Layout(ours);
        layout.unpack("t1", &rootfs);
        let config = work.path().join("config.json");
        fs_err::write(&config, layout.config().to_string()).unwrap();
        let out = Command::new("bash")
            .arg(&check)
            .env("ROOTFS", &rootfs)
            .env("CONFIG", &config)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: check.sh (what a current docker build gives) fails on smelt's image:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }

    // the reference
    let short = Path::new(name)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tag = format!("smelt-oracle/{short}:{}", reg.host.replace([':', '.'], "-"));
    let saved = work.path().join("oracle.tar");
    let mut args: Vec<std::ffi::OsString> = build_args.iter().map(Into::into).collect();
    args.extend(["-f".into(), dockerfile.into(), context.into()]);
    docker_build_saved(&tag, &args, &saved, name);
    let theirs = work.path().join("oracle-oci");
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("docker-archive:{}", saved.display()),
            &format!("oci:{}:t1", theirs.display()),
        ],
    );

    let (our_tree, our_config) = unpack(&ours, "t1", &work.path().join("smelt-rootfs"));
    let (their_tree, _) = unpack(&theirs, "t1", &work.path().join("oracle-rootfs"));
    let their_config = compared(&archive_config(&saved));
    if our_tree != their_tree {
        let mut diff = String::new();
        for l in our_tree
            .lines()
            .filter(|l| !their_tree.lines().any(|t| t == *l))
        {
            writeln!(diff, "smelt only:  {l}").unwrap();
        }
        for l in their_tree
            .lines()
            .filter(|l| !our_tree.lines().any(|t| t == *l))
        {
            writeln!(diff, "docker only: {l}").unwrap();
        }
        diff.push_str(&content_diffs(
            &our_tree,
            &their_tree,
            &work.path().join("smelt-rootfs"),
            &work.path().join("oracle-rootfs"),
        ));
        panic!("{name}: the file trees differ:\n{diff}");
    }
    assert_eq!(our_config, their_config, "{name}: the configs differ");
}

/// For each regular file whose digest differs between the two trees, the
/// `diff -u` of its contents (text only), so a failure shows what differs.
fn content_diffs(ours: &str, theirs: &str, our_root: &Path, their_root: &Path) -> String {
    let files = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| l.contains(" file n="))
            .filter_map(|l| l.split(' ').next().map(str::to_string))
            .collect()
    };
    let their_files = files(theirs);
    let mut out = String::new();
    for path in files(ours)
        .into_iter()
        .filter(|p| their_files.contains(p))
        .filter(|p| {
            let line = |t: &str| {
                t.lines()
                    .find(|l| l.starts_with(&format!("{p} ")))
                    .map(str::to_string)
            };
            line(ours) != line(theirs)
        })
    {
        let a = our_root.join(&path[1..]);
        let b = their_root.join(&path[1..]);
        let text = |f: &Path| fs_err::read(f).ok().and_then(|c| String::from_utf8(c).ok());
        if text(&a).is_none() || text(&b).is_none() {
            continue;
        }
        let d = Command::new("diff")
            .arg("-u")
            .arg("--label")
            .arg(format!("smelt{path}"))
            .arg("--label")
            .arg(format!("docker{path}"))
            .arg(&a)
            .arg(&b)
            .output()
            .expect("diff (diffutils) is needed by the tests");
        out.push_str(&String::from_utf8_lossy(&d.stdout));
    }
    out
}

macro_rules! cases {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                differential($dir);
            }
        )*
    };
}

cases! {
    deletions_match_docker => "deletions",
    run_environment_matches_docker => "run-environment",
    links_match_docker => "links",
    special_files_match_docker => "special-files",
    metadata_matches_docker => "metadata",
    copy_from_context_matches_docker => "copy-from-context",
    multi_stage_matches_docker => "multi-stage",
    copy_from_links_matches_docker => "copy-from-links",
    arg_scopes_match_docker => "arg-scopes",
    workdir_user_matches_docker => "workdir-user",
    linked_symlinks_match_docker => "linked-symlinks",
    devices_and_capabilities_match_docker => "devices-and-capabilities",
    stage_parent_and_source_matches_docker => "stage-parent-and-source",
    onbuild_stage_parent_matches_docker => "onbuild-stage-parent",
    onbuild_copy_from_matches_docker => "onbuild-copy-from",
    arg_env_precedence_matches_docker => "arg-env-precedence",
    target_stage_matches_current_docker => "target-stage",
    modifiers_and_heredocs_match_current_docker => "modifiers-heredocs",
    copy_existing_dest_matches_docker => "copy-existing-dest",
    copy_chmod_modes_match_current_docker => "copy-chmod-modes",
    run_network_security_match_current_docker => "run-network-security",
    copy_special_names_match_docker => "copy-special-names",
    copy_dockerignore_exceptions_match_docker => "copy-dockerignore-exceptions",
    copy_from_keeps_capabilities_matches_docker => "copy-from-capabilities",
    copy_dockerignore_suffix_matches_current_docker => "copy-dockerignore-suffix",
    workdir_existing_matches_docker => "workdir-existing",
    copy_exclude_matches_current_docker => "copy-exclude",
    copy_parents_matches_current_docker => "copy-parents",
    copy_link_matches_current_docker => "copy-link",
    run_mounts_match_docker => "run-mounts",
    run_mount_stubs_match_current_docker => "run-mount-stubs",
}

/// An extra check, not part of the suite: every case folder under
/// `$SMELT_EXTRA_CONFORMANCE` (e.g. ../shared/conformance) that does not
/// say it fails, against the same reference. Run with `--run-ignored all`.
#[test]
#[ignore = "needs SMELT_EXTRA_CONFORMANCE"]
fn extra_conformance_cases() {
    let Ok(dir) = std::env::var("SMELT_EXTRA_CONFORMANCE") else {
        panic!("set SMELT_EXTRA_CONFORMANCE to a folder of cases");
    };
    let mut failed = Vec::new();
    for entry in fs_err::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let expect = fs_err::read_to_string(path.join("expect")).unwrap_or_default();
        if !path.join("Dockerfile").is_file() || expect.contains("fails") {
            continue;
        }
        let name = path.display().to_string();
        if let Err(e) = std::panic::catch_unwind(|| differential(&name)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failed.push(format!("{name}: {msg}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
