//! smelt's executor images (images/executor/Dockerfile, built by
//! scripts/build-images.sh with smelt itself) under a real container
//! runtime, Debian's podman, as kaniko's images are used: the executor
//! building in place with the context mounted at `/workspace`, the debug
//! image running a GitLab-style shell script, and the warmer filling a
//! volume that a second container's build reads.
//!
//! The images are built once for all these tests (a file lock, since
//! nextest runs each test in a process of its own) and again only when a
//! source they are made of is newer than them. podman keeps its storage
//! under `target/images/` (the vfs driver), never the machine's own.

use crate::harness::{Layout, TestContext, tool};
use crate::registry_server::{Auth, TestRegistry};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

fn repo_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn images_dir() -> PathBuf {
    repo_dir().join("target/images")
}

/// The newest modification time under `path` (files and directories).
fn newest(path: &Path) -> SystemTime {
    let meta = fs_err::symlink_metadata(path).expect("stat an image source");
    let mut t = meta.modified().expect("mtime");
    if meta.is_dir() {
        for e in fs_err::read_dir(path).expect("read dir") {
            t = t.max(newest(&e.expect("dir entry").path()));
        }
    }
    t
}

/// The two images, built and loaded into the tests' podman storage.
struct Images {
    executor: String,
    debug: String,
}

/// Builds the images if they are missing or older than their sources
/// (under an exclusive lock, so one test builds while the others wait),
/// loads them into podman and returns their image ids.
fn images() -> Images {
    let dir = images_dir();
    fs_err::create_dir_all(&dir).expect("mkdir target/images");
    let lock = fs_err::File::create(dir.with_extension("lock")).expect("lock file");
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).expect("flock");
    let done = dir.join("debug.digest");
    let sources = [
        "src",
        "Cargo.toml",
        "Cargo.lock",
        "images",
        "scripts/build-images.sh",
    ]
    .map(|s| newest(&repo_dir().join(s)))
    .into_iter()
    .max()
    .expect("sources");
    let built_at = fs_err::metadata(&done).ok().and_then(|m| m.modified().ok());
    // and of this commit (the revision label): a commit that changed
    // nothing they are made of still changes the label
    let fresh = built_at.is_some_and(|built| built > sources)
        && Layout(dir.join("executor-oci")).config()["config"]["Labels"]["org.opencontainers.image.revision"]
            == head_revision();
    if !fresh {
        // the environment of a shell, not the test runner's: cargo
        // variables the runner sets reach ring's build script (cc), and
        // the release build would start over at every switch
        let mut script = Command::new(repo_dir().join("scripts/build-images.sh"));
        script.current_dir(repo_dir()).env_clear();
        for (k, v) in std::env::vars_os() {
            let keep = [
                "PATH",
                "HOME",
                "TMPDIR",
                "CARGO_HOME",
                "RUSTUP_HOME",
                "CARGO_TARGET_DIR",
            ];
            if k.to_str().is_some_and(|k| keep.contains(&k)) {
                script.env(k, v);
            }
        }
        let out = script.output().expect("run scripts/build-images.sh");
        assert!(
            out.status.success(),
            "scripts/build-images.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let load = |name: &str| {
        let id = Layout(dir.join(format!("{name}-oci"))).manifest()["config"]["digest"]
            .as_str()
            .expect("config digest")
            .trim_start_matches("sha256:")
            .to_string();
        if !podman(&["image", "exists", &id]).status.success() {
            let tar = dir.join(format!("{name}.tar"));
            ok(&podman(&["load", "-q", "-i", tar.to_str().expect("utf8")]));
        }
        id
    };
    Images {
        executor: load("executor"),
        debug: load("debug"),
    }
    // the lock is released when `lock` is dropped
}

/// The commit checked out (the script's `REVISION`).
fn head_revision() -> String {
    tool(
        "git",
        &[
            "-C",
            repo_dir().to_str().expect("utf8"),
            "rev-parse",
            "HEAD",
        ],
    )
    .trim()
    .to_string()
}

/// `podman ARGS` with the tests' own storage and runtime settings.
fn podman(args: &[&str]) -> Output {
    let store = images_dir().join("podman");
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(store.join("root"))
        .arg("--runroot")
        .arg(store.join("run"))
        .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
        // crun 1.8 (Debian 12) refuses a host whose cgroups are hybrid
        // (v1 controllers with a v2 mount); runc runs there too
        .args(["--runtime", "runc", "--events-backend", "file"])
        .args(args);
    cmd.output()
        .expect("podman is needed by the tests (the README's test command installs it)")
}

#[track_caller]
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "podman failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman run --rm --network host` (the test registries listen on
/// loopback) with `args` (options, the image, its arguments). The rlimits
/// are the ones this process has: podman would ask for more than a process
/// without CAP_SYS_RESOURCE may set (its default nproc is above the 32768
/// it keeps for itself).
fn run(args: &[&str]) -> Output {
    use rustix::process::{Resource, getrlimit};
    let limit = |r| getrlimit(r).maximum.unwrap_or(u64::MAX);
    let nofile = limit(Resource::Nofile).min(1 << 20);
    let nproc = limit(Resource::Nproc).min(32768);
    let mut all = vec![
        "run".to_string(),
        "--rm".to_string(),
        "--network".to_string(),
        "host".to_string(),
        format!("--ulimit=nofile={nofile}:{nofile}"),
        format!("--ulimit=nproc={nproc}:{nproc}"),
    ];
    all.extend(args.iter().map(|a| a.to_string()));
    podman(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A context whose Dockerfile RUNs in two stages and copies between them.
fn multi_stage(base: &str) -> TestContext {
    let t = TestContext::new(&format!(
        "FROM {base} AS build\n\
         RUN mkdir -p /out && echo $((6 * 7)) > /out/answer && echo built > /out/log\n\
         FROM {base}\n\
         COPY --from=build /out/answer /answer\n\
         COPY note.txt /note.txt\n\
         RUN cat /answer /note.txt > /together && ls / > /listing\n"
    ));
    t.file("note.txt", "from the context\n");
    t
}

/// Pulls `image` from `reg` and unpacks it; returns its root.
fn unpack(reg: &TestRegistry, image: &str, into: &Path) -> PathBuf {
    let layout = into.join("oci");
    reg.skopeo(
        "copy",
        &["src-"],
        &[
            &format!("docker://{image}"),
            &format!("oci:{}:t", layout.display()),
        ],
    );
    let rootfs = into.join("rootfs");
    Layout(layout).unpack("t", &rootfs);
    rootfs
}

fn volume(host: &Path, inside: &str) -> String {
    format!("{}:{inside}", host.display())
}

#[test]
fn the_executor_image_builds_in_place_under_podman_with_a_registry_cache() {
    let images = images();
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = multi_stage(&base);
    let dest = format!("{}/app:1", reg.host);
    let cache_repo = format!("{}/cache", reg.host);
    let build = || {
        let out = run(&[
            "-v",
            &volume(&t.ctx(), "/workspace"),
            &images.executor,
            "--context",
            "dir:///workspace",
            "--destination",
            &dest,
            "--cache=true",
            "--cache-repo",
            &cache_repo,
        ]);
        let log = stderr(&out);
        assert!(out.status.success(), "the executor image failed:\n{log}");
        log
    };
    let first = build();
    assert!(!first.contains("cache hit"), "{first}");

    let inspect = reg.inspect("app:1", &[]);
    assert!(
        inspect["Env"]
            .as_array()
            .unwrap()
            .contains(&"BASE=yes".into()),
        "{inspect}"
    );
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest, got.path());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("together")).unwrap(),
        "42\nfrom the context\n"
    );
    // the first stage's files stayed there; the executor, its docker config
    // and certificates, the context and podman's mounts stayed out
    for gone in ["kaniko", "workspace", "out", "etc/hosts", "etc/resolv.conf"] {
        assert!(!rootfs.join(gone).exists(), "/{gone} in the image");
    }
    // while the RUN ran, the executor's files were there in `/`
    let listing = fs_err::read_to_string(rootfs.join("listing")).unwrap();
    assert!(listing.lines().any(|l| l == "kaniko"), "{listing}");

    // a second container, nothing shared with the first but the registry:
    // every RUN is a hit in the cache repository
    let second = build();
    assert_eq!(second.matches("cache hit").count(), 2, "{second}");
    assert!(
        !reg.skopeo("list-tags", &[""], &[&format!("docker://{cache_repo}")])
            .is_empty()
    );
}

#[test]
fn the_debug_image_runs_a_gitlab_style_shell_script() {
    let images = images();
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nARG CI_COMMIT_SHA\nRUN echo \"$CI_COMMIT_SHA\" > /commit\n"
    ));
    let dest = format!("{}/gitlab:1", reg.host);
    // GitLab's kaniko recipe: the entrypoint emptied, a script that writes
    // the docker config, then runs the executor, then goes on
    let script = format!(
        "set -e\n\
         echo '{{\"auths\":{{}}}}' > /kaniko/.docker/config.json\n\
         /kaniko/executor --context \"${{CI_PROJECT_DIR}}\" \
           --dockerfile \"${{CI_PROJECT_DIR}}/Dockerfile\" \
           --build-arg CI_COMMIT_SHA=\"${{CI_COMMIT_SHA}}\" --destination {dest}\n\
         echo \"after the build: $(which sh) $(ls /kaniko/.docker)\"\n"
    );
    let out = run(&[
        "--entrypoint",
        "",
        "-e",
        "CI_PROJECT_DIR=/builds/group/project",
        "-e",
        "CI_COMMIT_SHA=0123abcd",
        "-v",
        &volume(&t.ctx(), "/builds/group/project"),
        &images.debug,
        "/busybox/sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "the script failed:\n{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("after the build: /busybox/sh config.json"),
        "{stdout}"
    );
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest, got.path());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("commit")).unwrap(),
        "0123abcd\n"
    );
    assert!(!rootfs.join("busybox").exists() && !rootfs.join("builds").exists());
}

#[test]
fn the_warmer_fills_a_volume_that_another_container_builds_from() {
    let images = images();
    let reg = TestRegistry::start(Auth::None);
    let base_reg = TestRegistry::start(Auth::None);
    let base = base_reg.push_base("base:1", "linux/amd64");
    let cache = tempfile::tempdir().unwrap();
    let out = run(&[
        "-v",
        &volume(cache.path(), "/cache"),
        "--entrypoint",
        "/kaniko/warmer",
        &images.executor,
        "-c",
        "/cache",
        "-i",
        &base,
    ]);
    assert!(out.status.success(), "the warmer failed:\n{}", stderr(&out));
    let listing = tool("umoci", &["ls", "--layout", cache.path().to_str().unwrap()]);
    assert!(listing.contains(&base), "{listing}");

    // the base's registry goes away: only the volume has it
    drop(base_reg);
    let t = TestContext::new(&format!("FROM {base}\nRUN cat /etc/group > /groups\n"));
    let dest = format!("{}/warm:1", reg.host);
    let out = run(&[
        "-v",
        &volume(cache.path(), "/cache"),
        "-v",
        &volume(&t.ctx(), "/workspace"),
        &images.executor,
        "--cache-dir",
        "/cache",
        "--destination",
        &dest,
    ]);
    let log = stderr(&out);
    assert!(out.status.success(), "the build failed:\n{log}");
    assert!(
        log.contains(&format!("found {base} in the cache directory")),
        "{log}"
    );
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest, got.path());
    assert!(
        fs_err::read_to_string(rootfs.join("groups"))
            .unwrap()
            .contains("extra:x:777:app")
    );
}

#[test]
fn the_images_are_static_labelled_and_reproducible() {
    let images = images();
    let dir = images_dir();
    let config = Layout(dir.join("executor-oci")).config();
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/kaniko/executor"]));
    assert_eq!(c["WorkingDir"], "/workspace");
    assert_eq!(c["User"], "root");
    let env: Vec<&str> = c["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for want in [
        "PATH=/usr/local/bin:/kaniko",
        "HOME=/root",
        "SSL_CERT_DIR=/kaniko/ssl/certs",
        "DOCKER_CONFIG=/kaniko/.docker/",
    ] {
        assert!(env.contains(&want), "{env:?}");
    }
    assert_eq!(
        c["Labels"]["org.opencontainers.image.revision"],
        head_revision()
    );
    assert_eq!(
        c["Labels"]["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );

    // in the container: no libc, no loader, the version, the warmer's name
    let version = ok(&run(&[&images.executor, "version"]));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    let warmer = run(&["--entrypoint", "/kaniko/warmer", &images.executor, "--help"]);
    assert!(String::from_utf8_lossy(&warmer.stdout).contains("warmer"));
    let listing = ok(&run(&[
        "--entrypoint",
        "/busybox/ls",
        &images.debug,
        "-a",
        "/",
        "/kaniko",
    ]));
    for want in [
        "executor",
        "warmer",
        ".docker",
        "ssl",
        "busybox",
        "etc",
        "workspace",
    ] {
        assert!(listing.lines().any(|l| l == want), "{listing}");
    }
    assert!(!listing.lines().any(|l| l.starts_with("lib")), "{listing}");

    // the same sources give the same digests: the digest files the build
    // wrote agree with a second build of the same context by the same binary
    let digest = fs_err::read_to_string(dir.join("executor.digest")).unwrap();
    let again = tempfile::tempdir().unwrap();
    // the image's own binary, with kaniko's flags (it is called `executor`)
    let bin = dir.join("context/kaniko/executor");
    let out = Command::new(&bin)
        .arg("--context")
        .arg(dir.join("context"))
        .arg("--dockerfile")
        .arg(repo_dir().join("images/executor/Dockerfile"))
        .args(["--target", "executor", "--reproducible", "--no-push"])
        .args(build_args(&config))
        .arg("--digest-file")
        .arg(again.path().join("digest"))
        .env("SOURCE_DATE_EPOCH", source_date_epoch(&config))
        .env("DOCKER_CONFIG", again.path().join("no-config"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs_err::read_to_string(again.path().join("digest")).unwrap(),
        digest
    );
}

/// The `--build-arg`s the script passed, read back from the labels.
fn build_args(config: &serde_json::Value) -> Vec<String> {
    let labels = &config["config"]["Labels"];
    [
        ("VERSION", "version"),
        ("REVISION", "revision"),
        ("SOURCE", "source"),
    ]
    .iter()
    .map(|(arg, label)| {
        format!(
            "--build-arg={arg}={}",
            labels[format!("org.opencontainers.image.{label}")]
                .as_str()
                .unwrap()
        )
    })
    .collect()
}

/// SOURCE_DATE_EPOCH as the image's created time says.
fn source_date_epoch(config: &serde_json::Value) -> String {
    let created = config["created"].as_str().unwrap();
    tool("date", &["-u", "-d", created, "+%s"])
        .trim()
        .to_string()
}

#[test]
fn the_executor_image_trusts_a_ca_added_to_its_certificate_directory() {
    let images = images();
    let ca = crate::registry_server::TestCa::new();
    let reg = TestRegistry::start_with(Auth::None, Some((&ca, false)));
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!("FROM {base}\nRUN echo over-tls > /tls\n"));
    let dest = format!("{}/tls:1", reg.host);
    let build = |extra: &[&str]| {
        let mut args = vec!["-v".to_string(), volume(&t.ctx(), "/workspace")];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.extend([
            images.executor.clone(),
            "--destination".into(),
            dest.clone(),
        ]);
        run(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // Debian's CAs alone (SSL_CERT_DIR=/kaniko/ssl/certs): the test CA is
    // not among them
    let out = build(&[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("certificate"), "{}", stderr(&out));
    // kaniko's recipe: one more bundle mounted beside them
    let out = build(&[
        "-v",
        &format!("{}:/kaniko/ssl/certs/test-ca.crt:ro", ca.ca_cert.display()),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest, got.path());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("tls")).unwrap(),
        "over-tls\n"
    );
}

/// Several builds in one container, as a CI job that builds two images
/// does: the first leaves its root behind, the second clears it first
/// (`--pre-cleanup`) and after (`--cleanup`). A Kubernetes
/// service-account token under `/var/run/secrets` and a config map under
/// `/kaniko` (mounts, as a pod has them) stay where they are and reach
/// neither image, nor does the first build's file reach the second.
#[test]
fn several_builds_in_one_container_keep_to_themselves_and_leave_mounts_alone() {
    let images = images();
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let one = TestContext::new(&format!(
        "FROM {base}\nRUN echo one > /one && cat /kaniko/config/settings > /seen-config\n"
    ));
    let two = TestContext::new(&format!(
        "FROM {base}\nRUN test ! -e /one && echo two > /two\n"
    ));
    let token = tempfile::tempdir().unwrap();
    fs_err::write(token.path().join("token"), "eyJhbGciOi-not-a-real-token\n").unwrap();
    let config = tempfile::tempdir().unwrap();
    fs_err::write(config.path().join("settings"), "from a config map\n").unwrap();
    let (dest1, dest2) = (format!("{}/one:1", reg.host), format!("{}/two:1", reg.host));
    let script = format!(
        "set -e\n\
         /kaniko/executor --context /ws1 --dockerfile /ws1/Dockerfile --destination {dest1}\n\
         test -e /one\n\
         /kaniko/executor --context /ws2 --dockerfile /ws2/Dockerfile --destination {dest2} \
           --pre-cleanup --cleanup\n\
         test ! -e /one && test ! -e /two && test ! -e /bin/busybox\n\
         echo \"left: $(cat /var/run/secrets/kubernetes.io/serviceaccount/token) \
           $(cat /kaniko/config/settings) $(ls /kaniko)\"\n"
    );
    let out = run(&[
        "--entrypoint",
        "",
        "-v",
        &volume(&one.ctx(), "/ws1"),
        "-v",
        &volume(&two.ctx(), "/ws2"),
        "-v",
        &format!(
            "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            token.path().display()
        ),
        "-v",
        &format!("{}:/kaniko/config:ro", config.path().display()),
        &images.debug,
        "/busybox/sh",
        "-c",
        &script,
    ]);
    assert!(out.status.success(), "the script failed:\n{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("left: eyJhbGciOi-not-a-real-token")
            && stdout.contains("from a config map")
            && stdout.contains("executor"),
        "{stdout}"
    );
    for (dest, file, absent) in [(&dest1, "one", "two"), (&dest2, "two", "one")] {
        let got = tempfile::tempdir().unwrap();
        let rootfs = unpack(&reg, dest, got.path());
        assert!(rootfs.join(file).is_file(), "{dest} lacks /{file}");
        for gone in [absent, "kaniko", "var/run/secrets", "ws1", "ws2", "busybox"] {
            assert!(!rootfs.join(gone).exists(), "{dest} has /{gone}");
        }
    }
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest1, got.path());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("seen-config")).unwrap(),
        "from a config map\n"
    );
}

/// The executor image has no git binary: smelt's own client fetches a git
/// context over smart HTTP with credentials (a submodule too), an ADD of a
/// repository over git://, and says what to do instead of ssh.
#[test]
fn the_executor_image_fetches_git_repositories_without_a_git_binary() {
    use crate::git_server::{PASSWORD, Repos, USER, git_daemon, git_http};
    let images = images();
    let reg = TestRegistry::start(Auth::None);
    let repos = Repos::new();
    let http = git_http(&repos);
    let daemon = git_daemon(&repos);
    let dest = format!("{}/from-git:1", reg.host);
    let out = run(&[
        "-e",
        &format!("GIT_USERNAME={USER}"),
        "-e",
        &format!("GIT_PASSWORD={PASSWORD}"),
        &images.executor,
        "--context",
        &format!("http://127.0.0.1:{}/repo.git", http.port),
        "--git",
        "branch=with-sub",
        "--git",
        "recurse-submodules=true",
        "--destination",
        &dest,
    ]);
    let log = stderr(&out);
    assert!(out.status.success(), "the executor image failed:\n{log}");
    assert!(log.contains("built-in git client"), "{log}");
    assert!(!log.contains(PASSWORD), "{log}");
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest, got.path());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("ctx/hello.txt")).unwrap(),
        "main\n"
    );
    assert_eq!(
        fs_err::read_to_string(rootfs.join("ctx/lib/lib.txt")).unwrap(),
        "from the submodule\n"
    );
    assert!(!rootfs.join("ctx/.git").exists());

    let t = TestContext::new(&format!(
        "FROM scratch\nADD git://127.0.0.1:{}/repo.git#v1:sub /v1sub\n",
        daemon.port
    ));
    let dest = format!("{}/add-git:1", reg.host);
    let out = run(&[
        "-v",
        &volume(&t.ctx(), "/workspace"),
        &images.executor,
        "--context",
        "dir:///workspace",
        "--destination",
        &dest,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = tempfile::tempdir().unwrap();
    let rootfs = unpack(&reg, &dest, got.path());
    assert_eq!(
        fs_err::read_to_string(rootfs.join("v1sub/only-in-sub.txt")).unwrap(),
        "sub\n"
    );

    let t = TestContext::new("FROM scratch\nADD git@127.0.0.1:repo.git /ssh\n");
    let out = run(&[
        "-v",
        &volume(&t.ctx(), "/workspace"),
        &images.executor,
        "--context",
        "dir:///workspace",
        "--no-push",
    ]);
    let log = stderr(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("cloning over ssh needs the git binary; the executor image has none"),
        "{log}"
    );
}
