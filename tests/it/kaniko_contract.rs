//! kaniko's process contract: every flag of the fork's executor (v1.28.3,
//! 68) and warmer (20) and of upstream v1.24 is accepted, the kaniko
//! environment variables are read, and the executor's `version`, `login`
//! and `push` subcommands work against a real registry.

use crate::faults::{Fault, Kind, Proxy};
use crate::harness::{Layout, TestContext, smelt_bin, tool};
use crate::in_place::{executor_root, run_executor_env};
use crate::registry_server::{Auth, PASSWORD, TestRegistry, USER};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The fork's executor flags (`cmd/executor/cmd/root.go` of v1.28.3; upstream
/// v1.24's are a subset), each with a value that is not its default.
/// `{}` is replaced by a scratch directory's path.
const EXECUTOR_FLAGS: [(&str, &str); 68] = [
    ("annotation", "org.example.a=1"),
    ("bucket", "some-bucket"),
    ("build-arg", "A=1"),
    ("cache", "true"),
    ("cache-copy-layers", "true"),
    ("cache-dir", "{}/cache"),
    ("cache-repo", "127.0.0.1:9/cache"),
    ("cache-run-layers", "false"),
    ("cache-ttl", "6h"),
    ("cleanup", "true"),
    ("compressed-caching", "false"),
    ("compression", "gzip"),
    ("compression-level", "3"),
    ("context", "{}/ctx"),
    ("context-sub-path", "sub"),
    ("credential-helpers", "env"),
    ("custom-platform", "linux/amd64"),
    ("customPlatform", "linux/amd64"),
    ("destination", "127.0.0.1:9/app:1"),
    ("digest-file", "{}/digest"),
    ("dockerfile", "Dockerfile"),
    ("dryrun", "true"),
    ("force", "true"),
    ("force-build-metadata", "true"),
    ("git", "branch=main"),
    ("ignore-path", "/ignored"),
    ("ignore-var-run", "false"),
    ("image-download-retry", "2"),
    ("image-format", "docker"),
    ("image-fs-extract-retry", "2"),
    ("image-name-tag-with-digest-file", "{}/name-tag"),
    ("image-name-with-digest-file", "{}/name"),
    ("insecure", "true"),
    ("insecure-pull", "true"),
    ("insecure-registry", "127.0.0.1:9"),
    ("kaniko-dir", "{}/kaniko"),
    ("label", "l=1"),
    ("log-format", "text"),
    ("log-timestamp", "true"),
    ("materialize", "true"),
    ("no-push", "true"),
    ("no-push-cache", "true"),
    ("oci-layout-path", "{}/oci"),
    ("pre-cleanup", "true"),
    ("preserve-context", "true"),
    ("push-ignore-immutable-tag-errors", "true"),
    ("push-retry", "2"),
    ("registry-certificate", "127.0.0.1:9={}/ca.pem"),
    ("registry-client-cert", "127.0.0.1:9={}/cert.pem,{}/key.pem"),
    ("registry-map", "example.invalid=127.0.0.1:9"),
    ("registry-mirror", "127.0.0.1:9"),
    ("reproducible", "true"),
    ("secret", "id=s,src={}/secret.txt"),
    ("single-snapshot", "true"),
    ("skip-default-registry-fallback", "true"),
    ("skip-push-permission-check", "true"),
    ("skip-tls-verify", "true"),
    ("skip-tls-verify-pull", "true"),
    ("skip-tls-verify-registry", "127.0.0.1:9"),
    ("skip-unused-stages", "true"),
    ("snapshot-mode", "redo"),
    ("snapshotMode", "time"),
    ("tar-path", "{}/image.tar"),
    ("tarPath", "{}/image2.tar"),
    ("target", "final,first"),
    ("use-new-run", "true"),
    ("verbosity", "debug"),
    ("whitelist-var-run", "false"),
];

/// The fork's warmer flags (`cmd/warmer/cmd/root.go`, and the hidden
/// `--azure-container-registry-config` of a vendored library).
const WARMER_FLAGS: [&str; 20] = [
    "azure-container-registry-config",
    "build-arg",
    "cache-dir",
    "cache-ttl",
    "customPlatform",
    "dockerfile",
    "force",
    "image",
    "insecure-pull",
    "insecure-registry",
    "log-format",
    "log-timestamp",
    "registry-certificate",
    "registry-client-cert",
    "registry-map",
    "registry-mirror",
    "skip-default-registry-fallback",
    "skip-tls-verify-pull",
    "skip-tls-verify-registry",
    "verbosity",
];

/// smelt under another name (`executor`, `warmer`), in `dir`.
fn named(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    if !link.exists() {
        std::os::unix::fs::symlink(smelt_bin(), &link).expect("symlink");
    }
    link
}

fn run(
    bin: &Path,
    args: &[String],
    env: &[(&str, &str)],
    stdin: Option<&str>,
) -> (i32, String, String) {
    let mut cmd = Command::new(bin);
    cmd.args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = crate::harness::output_with_stdin(&mut cmd, stdin, "run smelt");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Every executor flag, each set to a value that is not its default, on one
/// command line: accepted by `executor` and by `smelt build` (the
/// `--dryrun` among them plans the two targets and stops, so nothing is
/// reached). Each visible flag is in `--help`.
#[test]
fn every_kaniko_executor_flag_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    fs_err::create_dir_all(dir.path().join("ctx/sub")).expect("mkdir");
    fs_err::write(
        dir.path().join("ctx/sub/Dockerfile"),
        "FROM scratch AS first\nLABEL a=1\nFROM scratch AS final\nCOPY --from=first / /\n",
    )
    .expect("Dockerfile");
    for f in ["ca.pem", "cert.pem", "key.pem", "secret.txt"] {
        fs_err::write(dir.path().join(f), "x").expect("file");
    }
    let mut args = Vec::new();
    for (flag, value) in EXECUTOR_FLAGS {
        args.push(format!("--{flag}={}", value.replace("{}", &d)));
    }
    let executor = named(dir.path(), "executor");
    let help = run(&executor, &strings(&["--help"]), &[], None).1;
    let hidden = [
        "bucket",
        "customPlatform",
        "snapshotMode",
        "tarPath",
        "whitelist-var-run",
    ];
    for (flag, _) in EXECUTOR_FLAGS {
        if !hidden.contains(&flag) {
            let shown = help.match_indices(&format!("--{flag}")).any(|(i, m)| {
                !help[i + m.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '-')
            });
            assert!(shown, "--{flag} is not in --help");
        }
    }
    for (bin, pre) in [(executor, vec![]), (smelt_bin(), vec!["build".to_string()])] {
        let mut all = pre.clone();
        all.extend(args.iter().cloned());
        let (code, stdout, stderr) = run(&bin, &all, &[], None);
        assert_eq!(code, 0, "{bin:?} refused a kaniko flag:\n{stderr}");
        assert_eq!(
            stdout,
            "FROM scratch AS first\n  LABEL a=1\nFROM scratch AS final\n  COPY --from=first / /\n",
            "{stderr}"
        );
    }
}

/// The warmer's 20 flags, under the name `warmer`: `--dockerfile` warms its
/// FROM images with the global ARGs expanded by `--build-arg`.
#[test]
fn every_kaniko_warmer_flag_is_accepted_and_dockerfile_warms_its_bases() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("warm/base:1", "linux/amd64");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().display().to_string();
    for f in ["ca.pem", "cert.pem", "key.pem"] {
        fs_err::write(dir.path().join(f), "x").expect("file");
    }
    fs_err::write(
        dir.path().join("Dockerfile"),
        "ARG REG=nowhere.invalid\nFROM ${REG}/warm/base:1 AS one\nFROM one\nFROM scratch\n",
    )
    .expect("Dockerfile");
    let values: [(&str, String); 20] = [
        ("azure-container-registry-config", format!("{d}/azure.json")),
        ("build-arg", format!("REG={}", reg.host)),
        ("cache-dir", format!("{d}/cache")),
        ("cache-ttl", "6h".into()),
        ("customPlatform", "linux/amd64".into()),
        ("dockerfile", format!("{d}/Dockerfile")),
        ("force", "true".into()),
        ("image", base.clone()),
        ("insecure-pull", "true".into()),
        ("insecure-registry", reg.host.clone()),
        ("log-format", "text".into()),
        ("log-timestamp", "true".into()),
        ("registry-certificate", format!("other.example={d}/ca.pem")),
        (
            "registry-client-cert",
            format!("other.example={d}/cert.pem,{d}/key.pem"),
        ),
        ("registry-map", "example.invalid=other.example".into()),
        ("registry-mirror", "mirror.invalid".into()),
        ("skip-default-registry-fallback", "true".into()),
        ("skip-tls-verify-pull", "true".into()),
        ("skip-tls-verify-registry", "other.example".into()),
        ("verbosity", "debug".into()),
    ];
    assert_eq!(
        values.iter().map(|(f, _)| *f).collect::<Vec<_>>(),
        WARMER_FLAGS.to_vec()
    );
    let args: Vec<String> = values.iter().map(|(f, v)| format!("--{f}={v}")).collect();
    let warmer = named(dir.path(), "warmer");
    let (code, _, stderr) = run(&warmer, &args, &[], None);
    assert_eq!(code, 0, "{stderr}");
    let index: serde_json::Value = serde_json::from_slice(
        &fs_err::read(dir.path().join("cache/index.json")).expect("the cache's index"),
    )
    .expect("JSON");
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .collect();
    assert_eq!(names, [base.as_str()], "{stderr}");

    // only --dockerfile: its bases, and the image is no longer required
    let (code, _, stderr) = run(
        &warmer,
        &[
            format!("--dockerfile={d}/Dockerfile"),
            format!("--build-arg=REG={}", reg.host),
            format!("-c={d}/cache2"),
        ],
        &[],
        None,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(dir.path().join("cache2/index.json").is_file(), "{stderr}");
}

/// `executor version` and `smelt version` print the version.
#[test]
fn version_subcommands_print_the_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let want = format!("smelt version {}\n", env!("CARGO_PKG_VERSION"));
    let executor = named(dir.path(), "executor");
    assert_eq!(run(&executor, &strings(&["version"]), &[], None).1, want);
    assert_eq!(run(&smelt_bin(), &strings(&["version"]), &[], None).1, want);
}

/// `executor login` writes config.json (merged with what is there, the
/// password never printed); a following build pushes with it to a
/// registry that wants htpasswd credentials, with `--annotation` on the
/// manifest.
#[test]
fn login_then_build_pushes_with_the_stored_credentials_and_annotations() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let dir = tempfile::tempdir().expect("tempdir");
    let config_dir = dir.path().join("docker");
    fs_err::create_dir_all(&config_dir).expect("mkdir");
    fs_err::write(
        config_dir.join("config.json"),
        r#"{"auths":{"other.example":{"auth":"eDp5"}},"psFormat":"table"}"#,
    )
    .expect("config");
    let executor = named(dir.path(), "executor");
    let config_env = config_dir.to_str().expect("utf8");
    let env = [("DOCKER_CONFIG", config_env)];
    let (code, stdout, stderr) = run(
        &executor,
        &strings(&["login", &reg.host, "-u", USER, "--password-stdin"]),
        &env,
        Some(&format!("{PASSWORD}\n")),
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD));
    let config: serde_json::Value =
        serde_json::from_slice(&fs_err::read(config_dir.join("config.json")).expect("read"))
            .expect("JSON");
    assert_eq!(config["auths"]["other.example"]["auth"], "eDp5");
    assert_eq!(config["psFormat"], "table");
    assert!(config["auths"][&reg.host]["auth"].is_string(), "{config}");

    let t = TestContext::new("FROM scratch\nLABEL a=b\n");
    let dest = format!("{}/logged-in:1", reg.host);
    let built = t
        .build_with(
            executor,
            &[],
            &[
                "--destination",
                &dest,
                "--annotation",
                "org.opencontainers.image.source=https://example.test/src",
                "--annotation=team=build",
            ],
            &env,
        )
        .ok();
    let raw = reg.inspect("logged-in:1", &["--raw"]);
    assert_eq!(
        raw["annotations"],
        serde_json::json!({"org.opencontainers.image.source": "https://example.test/src", "team": "build"})
    );
    let digest = reg.inspect("logged-in:1", &[])["Digest"].clone();
    assert_eq!(digest.as_str(), Some(built.stdout().trim()));

    // without the login the registry refuses the push
    let t2 = TestContext::new("FROM scratch\nLABEL a=c\n");
    let refused = t2.build(&["--destination", &format!("{}/anonymous:1", reg.host)]);
    assert_eq!(refused.code(), 1, "{}", refused.stderr());
    assert!(
        refused.stderr().contains("unauthorized"),
        "{}",
        refused.stderr()
    );
}

/// `executor push` sends an OCI layout and a docker archive an earlier
/// `--no-push` build wrote; each lands with the digest the build printed.
#[test]
fn push_subcommand_pushes_a_layout_and_an_archive() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("push/base:1", "linux/amd64");
    let t = TestContext::new(&format!("FROM {base}\nRUN echo hi > /hi\n"));
    let digest = t.build_outputs(&[]);
    let layers = t.manifest()["layers"].as_array().map(Vec::len);
    let executor = named(t.dir.path(), "executor");
    for (source, tag) in [(t.path("oci"), "layout"), (t.path("image.tar"), "archive")] {
        let dest = format!("{}/pushed:{tag}", reg.host);
        let (code, stdout, stderr) = run(
            &executor,
            &strings(&["push", source.to_str().expect("utf8"), "-d", &dest]),
            &[],
            None,
        );
        assert_eq!(code, 0, "{stderr}");
        assert_eq!(stdout.trim(), digest, "{stderr}");
        let inspected = reg.inspect(&format!("pushed:{tag}"), &[]);
        assert_eq!(inspected["Digest"].as_str(), Some(digest.as_str()));
        assert_eq!(inspected["Layers"].as_array().map(Vec::len), layers);
    }
    // something that is neither is named
    let (code, _, stderr) = run(
        &smelt_bin(),
        &strings(&[
            "push",
            t.ctx().join("Dockerfile").to_str().expect("utf8"),
            "-d",
            &format!("{}/pushed:bad", reg.host),
        ]),
        &[],
        None,
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("Dockerfile: not a docker archive"),
        "{stderr}"
    );
}

/// `--dryrun` prints the plan and pushes nothing; `--image-format docker`
/// gives the image docker schema 2 media types.
#[test]
fn dryrun_pushes_nothing_and_image_format_docker_uses_schema_2() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("fmt/base:1", "linux/amd64");
    let t = TestContext::new(&format!("FROM {base}\nRUN echo hi > /hi\n"));
    let dest = format!("{}/dry:1", reg.host);
    let run = t.build(&["--destination", &dest, "--dryrun"]).ok();
    assert_eq!(run.stdout(), format!("FROM {base}\n  RUN echo hi > /hi\n"));
    let tags = tool(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/v2/dry/tags/list", reg.host),
        ],
    );
    assert_eq!(tags, "404", "a dry run pushed something");

    let dest = format!("{}/docker-format:1", reg.host);
    t.build(&["--destination", &dest, "--image-format=docker"])
        .ok();
    let raw = reg.inspect("docker-format:1", &["--raw"]);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["config"]["mediaType"],
        "application/vnd.docker.container.image.v1+json"
    );
    for layer in raw["layers"].as_array().expect("layers") {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
}

/// `--target a,b` builds both stages (b's RUN runs) and the image is a's.
#[test]
fn target_list_builds_every_stage_named_and_the_first_is_the_image() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("targets/base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base} AS a\nLABEL stage=a\nFROM {base} AS b\nRUN echo b-ran\nFROM {base} AS c\nRUN echo c-ran\n"
    ));
    let run = t.build_outputs_run(&["--target", "a,b"]);
    let log = format!("{}{}", run.stdout(), run.stderr());
    assert!(log.contains("b-ran"), "{log}");
    assert!(!log.contains("c-ran"), "{log}");
    assert_eq!(t.config()["config"]["Labels"]["stage"], "a");
    let bad = t.build(&["--no-push", "--target", "a,nope"]);
    assert_eq!(bad.code(), 1);
    assert!(
        bad.stderr().contains("failed to reach build target nope"),
        "{}",
        bad.stderr()
    );
}

/// kaniko's environment switches: KANIKO_NO_PUSH (and a value that is not a
/// boolean, named), KANIKO_REGISTRY_MAP, KANIKO_REGISTRY_MIRROR, KANIKO_DIR.
#[test]
fn kaniko_environment_variables_are_read() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("library/envbase:1", "linux/amd64");
    let t = TestContext::new("FROM scratch\nLABEL a=b\n");
    let dest = format!("{}/env-no-push:1", reg.host);
    let r = t.build_with(
        smelt_bin(),
        &["build"],
        &["--destination", &dest],
        &[("KANIKO_NO_PUSH", "true")],
    );
    assert_eq!(r.code(), 0, "{}", r.stderr());
    let status = tool(
        "curl",
        &[
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}/v2/env-no-push/tags/list", reg.host),
        ],
    );
    assert_eq!(status, "404", "KANIKO_NO_PUSH=true pushed");
    let r = t.build_with(
        smelt_bin(),
        &["build"],
        &["--destination", &dest],
        &[("KANIKO_NO_PUSH", "maybe")],
    );
    assert_eq!(r.code(), 2);
    assert!(
        r.stderr()
            .contains("KANIKO_NO_PUSH=\"maybe\": want true or false"),
        "{}",
        r.stderr()
    );

    // a map and a mirror from the environment stand in for the named registries
    let mapped = TestContext::new("FROM registry.invalid/library/envbase:1\nRUN true\n");
    mapped
        .build_with(
            smelt_bin(),
            &["build"],
            &["--no-push"],
            &[(
                "KANIKO_REGISTRY_MAP",
                &format!("registry.invalid={}", reg.host),
            )],
        )
        .ok();
    let mirrored = TestContext::new("FROM envbase:1\nRUN true\n");
    mirrored
        .build_with(
            smelt_bin(),
            &["build"],
            &["--no-push"],
            &[("KANIKO_REGISTRY_MIRROR", &reg.host)],
        )
        .ok();

    // KANIKO_DIR is where the build keeps its state: a file there fails, named
    let file = t.path("not-a-dir");
    fs_err::write(&file, "").expect("file");
    let r = t.build_with(
        smelt_bin(),
        &["build"],
        &["--no-push"],
        &[("KANIKO_DIR", file.to_str().expect("utf8"))],
    );
    assert_eq!(r.code(), 1);
    assert!(
        r.stderr().contains(file.to_str().expect("utf8")),
        "{}",
        r.stderr()
    );
}

/// In place: KANIKO_PRE_CLEANUP clears what an earlier build left in `/`
/// before building (without it the file stays); KANIKO_CLEANUP clears `/`
/// after; neither touches the executor or the context. (A root per run:
/// the test's executor links with the host's libraries, which a build in
/// place replaces with the image's.)
#[test]
fn pre_cleanup_and_cleanup_from_the_environment_clear_the_root_in_place() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("clean/base:1", "linux/amd64");
    let secret = tempfile::NamedTempFile::new().expect("secret");
    let args = [
        "--context",
        "/workspace",
        "--dockerfile",
        "/workspace/Dockerfile",
        "--no-push",
        "--force",
    ];
    let build = |env: &[(&str, &str)]| {
        let root = executor_root(&format!("FROM {base}\nRUN echo built > /built\n"));
        fs_err::write(root.path().join("leftover.txt"), "from an earlier build\n")
            .expect("leftover");
        let (code, log) = run_executor_env(root.path(), secret.path(), &args, env);
        assert_eq!(code, Some(0), "{env:?}: {log}");
        assert!(root.path().join("kaniko/executor").exists());
        assert!(root.path().join("workspace/Dockerfile").exists());
        (root, log)
    };
    let (root, log) = build(&[]);
    let r = root.path();
    assert!(r.join("leftover.txt").exists(), "{log}");
    assert!(
        r.join("built").exists() && r.join("bin/busybox").exists(),
        "{log}"
    );

    let (root, log) = build(&[("KANIKO_PRE_CLEANUP", "true")]);
    let r = root.path();
    assert!(
        !r.join("leftover.txt").exists(),
        "pre-cleanup left a file:\n{log}"
    );
    assert!(
        r.join("built").exists() && r.join("bin/busybox").exists(),
        "{log}"
    );

    let (root, log) = build(&[("KANIKO_CLEANUP", "1")]);
    let r = root.path();
    assert!(
        !r.join("built").exists() && !r.join("bin/busybox").exists(),
        "{log}"
    );
}

/// In place, a build whose every step is a cache hit leaves the cached
/// layers in the registry; `--materialize` unpacks them, so `/` holds the
/// image's files when the build ends.
#[test]
fn materialize_unpacks_the_target_on_full_cache_hits_in_place() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("mat/base:1", "linux/amd64");
    let secret = tempfile::NamedTempFile::new().expect("secret");
    let cache_repo = format!("{}/mat/cache", reg.host);
    let build = |extra: &[&str]| {
        let root = executor_root(&format!("FROM {base}\nRUN echo built > /built\n"));
        let mut args = vec![
            "--context",
            "/workspace",
            "--dockerfile",
            "/workspace/Dockerfile",
            "--no-push",
            "--force",
            "--cache",
            "--cache-repo",
            &cache_repo,
        ];
        args.extend_from_slice(extra);
        let (code, log) = run_executor_env(root.path(), secret.path(), &args, &[]);
        assert_eq!(code, Some(0), "{extra:?}: {log}");
        (root, log)
    };
    let (root, log) = build(&[]);
    assert!(root.path().join("built").exists(), "{log}");
    let (root, log) = build(&[]);
    assert!(log.contains("cache hit"), "{log}");
    assert!(!root.path().join("built").exists(), "{log}");
    let (root, log) = build(&["--materialize"]);
    assert!(log.contains("cache hit"), "{log}");
    assert!(root.path().join("built").exists(), "--materialize:\n{log}");
    assert!(
        root.path().join("bin/busybox").exists(),
        "--materialize:\n{log}"
    );
}

/// A registry that refuses the manifest because the tag is immutable (ECR's
/// answer, from a proxy in front of a real registry): the push fails naming
/// it, unless `--push-ignore-immutable-tag-errors` counts it as pushed.
#[test]
fn immutable_tag_errors_fail_the_push_unless_ignored() {
    let reg = TestRegistry::start(Auth::None);
    let proxy = Proxy::start(&reg.host);
    proxy
        .rules
        .add_kind(Kind::ManifestPut, Fault::ImmutableTag, usize::MAX);
    let t = TestContext::new("FROM scratch\nLABEL a=b\n");
    let dest = format!("{}/app:1", proxy.host);
    let failed = t.build(&["--destination", &dest]);
    assert_eq!(failed.code(), 1, "{}", failed.stderr());
    assert!(
        failed
            .stderr()
            .contains("cannot be overwritten because the tag is immutable"),
        "{}",
        failed.stderr()
    );
    let ignored = t
        .build(&["--destination", &dest, "--push-ignore-immutable-tag-errors"])
        .ok();
    assert!(
        ignored
            .stderr()
            .contains("the tag is immutable and already set"),
        "{}",
        ignored.stderr()
    );
}

/// `--credential-helpers`: `env` (KANIKO_<HOST>_USER/_PASSWORD) and `gitlab`
/// (a CI job's CI_REGISTRY credentials) log in to a registry that wants
/// them; `--credential-helpers=` (empty) turns the helpers off.
#[test]
fn env_and_gitlab_credential_helpers_log_in() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let t = TestContext::new("FROM scratch\nLABEL a=b\n");
    let env_user = format!("KANIKO_{}_USER", reg.host.replace('.', "_"));
    let env_password = format!("KANIKO_{}_PASSWORD", reg.host.replace('.', "_"));
    let by_env = [(env_user.as_str(), USER), (env_password.as_str(), PASSWORD)];
    let dest = format!("{}/helpers:env", reg.host);
    t.build_with(smelt_bin(), &["build"], &["--destination", &dest], &by_env)
        .ok();
    assert!(reg.inspect("helpers:env", &[])["Digest"].is_string());
    let off = t.build_with(
        smelt_bin(),
        &["build"],
        &["--destination", &dest, "--credential-helpers="],
        &by_env,
    );
    assert_eq!(off.code(), 1, "helpers off: {}", off.stderr());
    assert!(off.stderr().contains("unauthorized"), "{}", off.stderr());

    let by_gitlab = [
        ("CI_REGISTRY", reg.host.as_str()),
        ("CI_REGISTRY_USER", USER),
        ("CI_REGISTRY_PASSWORD", PASSWORD),
    ];
    let dest = format!("{}/helpers:gitlab", reg.host);
    t.build_with(
        smelt_bin(),
        &["build"],
        &["--destination", &dest, "--credential-helpers", "gitlab"],
        &by_gitlab,
    )
    .ok();
    assert!(reg.inspect("helpers:gitlab", &[])["Digest"].is_string());
    // only env named: the job's credentials are not used
    let env_only = t.build_with(
        smelt_bin(),
        &["build"],
        &["--destination", &dest, "--credential-helpers", "env"],
        &by_gitlab,
    );
    assert_eq!(env_only.code(), 1, "{}", env_only.stderr());
}

/// In place with `--kaniko-dir` elsewhere (or KANIKO_DIR), the executor's
/// own directory `/kaniko` still holds the docker config a `login` wrote
/// (and a Kubernetes secret would be mounted): stages and `--cleanup`
/// leave it alone, and it never reaches the image.
#[test]
fn kaniko_directory_survives_and_stays_out_with_the_work_dir_elsewhere() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("kdir/base:1", "linux/amd64");
    let root = executor_root(&format!(
        "FROM {base} AS one\nRUN echo one > /one\nFROM {base}\nCOPY --from=one /one /one\nRUN ls /kaniko/.docker\n"
    ));
    let r = root.path();
    fs_err::create_dir_all(r.join("kaniko/.docker")).expect("mkdir");
    fs_err::write(r.join("kaniko/.docker/config.json"), r#"{"auths":{}}"#).expect("config");
    fs_err::create_dir_all(r.join("elsewhere")).expect("mkdir");
    let secret = tempfile::NamedTempFile::new().expect("secret");
    let (code, log) = run_executor_env(
        r,
        secret.path(),
        &[
            "--context",
            "/workspace",
            "--dockerfile",
            "/workspace/Dockerfile",
            "--no-push",
            "--force",
            "--cleanup",
            "--oci-layout-path",
            "/workspace/out",
        ],
        &[("KANIKO_DIR", "/elsewhere")],
    );
    assert_eq!(code, Some(0), "{log}");
    assert!(r.join("kaniko/.docker/config.json").is_file(), "{log}");
    assert!(r.join("kaniko/executor").is_file(), "{log}");
    let rootfs = tempfile::tempdir().expect("tempdir");
    let unpacked = rootfs.path().join("rootfs");
    Layout(r.join("workspace/out")).unpack("latest", &unpacked);
    assert!(unpacked.join("one").is_file());
    assert!(
        !unpacked.join("kaniko").exists(),
        "/kaniko reached the image"
    );
}
