//! What the README promises of flags and features no other module
//! exercises, each checked on the image a user would get: `--label`,
//! `--context-sub-path`, `--ignore-path`, `--ignore-var-run`, what each
//! `--snapshot-mode` counts as a change, the cache's `--cache-ttl`,
//! `--no-push-cache` and `--cache-run-layers`, the `--insecure*` and
//! `--skip-tls-verify*` flags, ONBUILD triggers running at FROM, and
//! `<Dockerfile>.dockerignore` before `.dockerignore`.

use crate::harness::{
    Layout, TestContext, assert_has_lines, assert_no_line_starting, http_status, tool, tree,
};
use crate::in_place::{executor_root, run_executor};
use crate::registry_server::{Auth, TestCa, TestRegistry};
use std::process::Command;

#[test]
fn label_flags_add_labels_and_win_over_the_dockerfile() {
    let t = TestContext::new("FROM scratch\nLABEL a=1 b=from-dockerfile\n");
    t.build_outputs(&["--label", "b=from-flag", "--label", "c=two words"]);
    assert_eq!(
        t.config()["config"]["Labels"],
        serde_json::json!({"a": "1", "b": "from-flag", "c": "two words"})
    );
}

#[test]
fn context_sub_path_builds_a_sub_directory_with_its_dockerfile() {
    let t = TestContext::new("FROM scratch\nCOPY . /whole/\n");
    t.file("top.txt", "top\n")
        .file("sub/Dockerfile", "FROM scratch\nCOPY . /sub/\n")
        .file("sub/inner.txt", "inner\n");
    t.build_outputs(&["--context-sub-path", "sub"]);
    let listing = tree(&t.unpack());
    assert_eq!(
        listing,
        "/sub 755 0:0 dir\n\
         /sub/Dockerfile 644 0:0 file n=1 \"FROM scratch\\nCOPY . /sub/\\n\"\n\
         /sub/inner.txt 644 0:0 file n=1 \"inner\\n\""
    );
}

#[test]
fn dockerfile_dockerignore_wins_over_dockerignore() {
    let t = TestContext::new("FROM scratch\nCOPY . /ctx/\n");
    t.file(".dockerignore", "a.txt\n")
        .file("Dockerfile.dockerignore", "b.txt\n")
        .file("a.txt", "a\n")
        .file("b.txt", "b\n")
        .file("c.txt", "c\n");
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    // .dockerignore is not read at all: a.txt is copied, b.txt is not
    assert_has_lines(
        &listing,
        &[
            "/ctx/a.txt 644 0:0 file n=1 \"a\\n\"",
            "/ctx/c.txt 644 0:0 file n=1 \"c\\n\"",
        ],
    );
    assert_no_line_starting(&listing, &["/ctx/b.txt"]);

    // a Dockerfile named otherwise: its own ignore file, next to it
    let t2 = TestContext::new("unused\n");
    for f in ["a.txt", "b.txt", "c.txt"] {
        t2.file(f, "x\n");
    }
    t2.file(".dockerignore", "a.txt\n")
        .file("build/app.Dockerfile", "FROM scratch\nCOPY . /ctx/\n")
        .file("build/app.Dockerfile.dockerignore", "c.txt\nbuild\n");
    t2.build_outputs(&["--dockerfile", "build/app.Dockerfile"]);
    let listing = tree(&t2.unpack());
    assert_has_lines(
        &listing,
        &[
            "/ctx/a.txt 644 0:0 file n=1 \"x\\n\"",
            "/ctx/b.txt 644 0:0 file n=1 \"x\\n\"",
        ],
    );
    assert_no_line_starting(&listing, &["/ctx/c.txt", "/ctx/build"]);
}

#[test]
fn ignore_path_leaves_what_a_run_writes_there_out_of_the_image() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN mkdir -p /scratch/deep && echo tmp > /scratch/deep/x && echo kept > /kept\n"
    ));
    t.build_outputs(&["--custom-platform=linux/amd64", "--ignore-path=/scratch"]);
    let listing = tree(&t.unpack());
    assert_has_lines(&listing, &["/kept 644 0:0 file n=1 \"kept\\n\""]);
    assert_no_line_starting(&listing, &["/scratch"]);
    // without the flag the same RUN keeps it: the flag is what left it out
    t.build_outputs(&["--custom-platform=linux/amd64"]);
    let rootfs = t.path("rootfs-without");
    t.layout().unpack("t1", &rootfs);
    assert_has_lines(
        &tree(&rootfs),
        &["/scratch/deep/x 644 0:0 file n=1 \"tmp\\n\""],
    );
}

/// In place (kaniko's executor image), `/var/run` stays out of RUN
/// snapshots unless `--ignore-var-run=false`; in a root of its own a RUN's
/// `/var/run` is kept either way, as docker keeps it.
#[test]
fn ignore_var_run_in_place_and_in_a_root_of_its_own() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base}\nRUN mkdir -p /var/run && echo 1 > /var/run/app.pid && echo kept > /kept\n"
    );
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    for (flag, kept) in [(None, false), (Some("--ignore-var-run=false"), true)] {
        let root = executor_root(&dockerfile);
        let layout = "/workspace/oci";
        let mut args = vec![
            "--context",
            "/workspace",
            "--no-push",
            "--force",
            "--oci-layout-path",
            layout,
        ];
        args.extend(flag);
        let (ok, log) = run_executor(root.path(), secret.path(), &args);
        assert!(ok, "{flag:?}: the in-place build failed:\n{log}");
        let rootfs = root.path().join("unpacked");
        Layout(root.path().join("workspace/oci")).unpack("latest", &rootfs);
        let listing = tree(&rootfs);
        assert_has_lines(&listing, &["/kept 644 0:0 file n=1 \"kept\\n\""]);
        assert_eq!(
            listing.contains("/var/run/app.pid 644 0:0 file n=1 \"1\\n\""),
            kept,
            "{flag:?}:\n{listing}"
        );
    }
    let t = TestContext::new(&dockerfile);
    t.build_outputs(&["--custom-platform=linux/amd64"]);
    assert_has_lines(
        &tree(&t.unpack()),
        &["/var/run/app.pid 644 0:0 file n=1 \"1\\n\""],
    );
}

/// What each `--snapshot-mode` counts as a change of a RUN: `full` every
/// metadata change (a rewrite of the same size with the mtime put back
/// shows in its ctime), `redo` mode, owner, size and mtime (a chmod shows,
/// the rewrite does not), `time` the mtime alone (neither shows). What is
/// not counted keeps the earlier layer's file in the image.
#[test]
fn each_snapshot_mode_keeps_what_it_counts_as_a_change() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN echo x > /chmodded && echo x > /rewritten && touch -r /chmodded /rewritten /ref\n\
         RUN chmod 600 /chmodded && echo y > /rewritten && touch -r /ref /rewritten /chmodded \
         && echo new > /created\n"
    ));
    for (mode, chmodded, rewritten) in [
        ("full", "600", "y"),
        ("redo", "600", "x"),
        ("time", "644", "x"),
    ] {
        t.build_outputs(&[
            "--custom-platform=linux/amd64",
            &format!("--snapshot-mode={mode}"),
        ]);
        let rootfs = t.path(&format!("rootfs-{mode}"));
        t.layout().unpack("t1", &rootfs);
        let listing = tree(&rootfs);
        assert_has_lines(
            &listing,
            &[
                format!("/chmodded {chmodded} 0:0 file n=1 \"x\\n\""),
                format!("/rewritten 644 0:0 file n=1 \"{rewritten}\\n\""),
                "/created 644 0:0 file n=1 \"new\\n\"".to_string(),
            ],
        );
    }
}

// ---- the layer cache --------------------------------------------------------

/// How many steps a build took from the cache (`cache hit` lines).
fn hits(log: &str) -> usize {
    log.lines().filter(|l| l.contains("] cache hit ")).count()
}

/// Builds `t` with the cache in `reg`'s `cache` repository, pushing to
/// `app:1`; returns the log.
fn cached_build(t: &TestContext, reg: &TestRegistry, extra: &[&str]) -> String {
    let repo = format!("{}/cache", reg.host);
    let dest = format!("{}/app:1", reg.host);
    let mut args = vec![
        "--custom-platform=linux/amd64",
        "--cache",
        "--cache-copy-layers",
        "--cache-repo",
        &repo,
        "-d",
        &dest,
        "-v",
        "debug",
    ];
    args.extend_from_slice(extra);
    t.build(&args).ok().stderr()
}

/// The entries' tags in the cache repository (a `next-` tag points from an
/// entry to the one after it, a `line-` tag to the newest entry for a
/// step: both to explain a later miss).
fn cache_tags(reg: &TestRegistry) -> Vec<String> {
    let url = format!("http://{}/v2/cache/tags/list", reg.host);
    if http_status(&[&url]) != "200" {
        return Vec::new();
    }
    let list: serde_json::Value = serde_json::from_str(&tool("curl", &["-s", &url])).unwrap();
    list["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str())
                .filter(|t| !t.starts_with("next-") && !t.starts_with("line-"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn cache_app() -> TestContext {
    let reg_less = TestContext::new("unused\n");
    reg_less.file("hello.txt", "hello\n");
    reg_less
}

#[test]
fn no_push_cache_reads_the_cache_and_stores_nothing() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = cache_app();
    fs_err::write(
        t.ctx().join("Dockerfile"),
        format!("FROM {base}\nCOPY hello.txt /hello.txt\nRUN echo ran-the-run && echo r > /r\n"),
    )
    .unwrap();
    let log = cached_build(&t, &reg, &["--no-push-cache"]);
    assert!(log.contains("[0] ran-the-run"), "{log}");
    assert!(!log.contains("stored "), "{log}");
    assert_eq!(cache_tags(&reg), Vec::<String>::new());
    // stored by a build without the flag, then read by one with it
    let log = cached_build(&t, &reg, &[]);
    assert!(log.contains("stored 2 cache entries"), "{log}");
    assert_eq!(cache_tags(&reg).len(), 2);
    let log = cached_build(&t, &reg, &["--no-push-cache"]);
    assert_eq!(hits(&log), 2, "{log}");
    assert!(!log.contains("[0] ran-the-run"), "{log}");
}

#[test]
fn cache_run_layers_false_runs_every_run_again() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = cache_app();
    fs_err::write(
        t.ctx().join("Dockerfile"),
        format!("FROM {base}\nCOPY hello.txt /hello.txt\nRUN echo ran-the-run && echo r > /r\n"),
    )
    .unwrap();
    let log = cached_build(&t, &reg, &["--cache-run-layers=false"]);
    assert!(log.contains("stored 1 cache entries"), "{log}");
    let log = cached_build(&t, &reg, &["--cache-run-layers=false"]);
    // the COPY from the cache, the RUN run again
    assert_eq!(hits(&log), 1, "{log}");
    assert!(log.contains("[0] ran-the-run"), "{log}");
    // the default caches it
    cached_build(&t, &reg, &[]);
    let log = cached_build(&t, &reg, &[]);
    assert_eq!(hits(&log), 2, "{log}");
    assert!(!log.contains("[0] ran-the-run"), "{log}");
}

/// A build whose two cache entries (COPY, RUN) were stored, then set back
/// to 2020 in the registry (an old entry without waiting for one).
fn aged_cache(reg: &TestRegistry) -> TestContext {
    let base = reg.push_base("base:1", "linux/amd64");
    let t = cache_app();
    fs_err::write(
        t.ctx().join("Dockerfile"),
        format!("FROM {base}\nCOPY hello.txt /hello.txt\nRUN echo ran-the-run && echo r > /r\n"),
    )
    .unwrap();
    cached_build(&t, reg, &[]);
    let tags = cache_tags(reg);
    assert_eq!(tags.len(), 2, "{tags:?}");
    const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
    for tag in &tags {
        let url = format!("http://{}/v2/cache/manifests/{tag}", reg.host);
        let mut manifest: serde_json::Value = serde_json::from_str(&tool(
            "curl",
            &["-s", "-H", &format!("Accept: {OCI}"), &url],
        ))
        .unwrap();
        let stored = &mut manifest["annotations"]["dev.smelt.cache.stored"];
        assert!(stored.is_string(), "{manifest:#}");
        *stored = serde_json::json!("2020-01-01T00:00:00Z");
        let body = t.path(&format!("{tag}.json"));
        fs_err::write(&body, manifest.to_string()).unwrap();
        let status = http_status(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {OCI}"),
            "--data-binary",
            &format!("@{}", body.display()),
            &url,
        ]);
        assert_eq!(status, "201", "PUT {url}");
    }
    t
}

/// An entry older than `--cache-ttl` is a miss: a TTL that reaches back to
/// 2020 hits, the default (two weeks) misses and runs the RUN again.
#[test]
fn cache_entries_older_than_the_ttl_are_misses() {
    let reg = TestRegistry::start(Auth::None);
    let t = aged_cache(&reg);
    // seven years back are within 100000 hours
    let log = cached_build(&t, &reg, &["--cache-ttl=100000h"]);
    assert_eq!(hits(&log), 2, "{log}");
    assert!(!log.contains("[0] ran-the-run"), "{log}");
    let log = cached_build(&t, &reg, &[]);
    assert_eq!(hits(&log), 0, "{log}");
    assert!(log.contains("[0] ran-the-run"), "{log}");
}

/// `-v debug` says why a step missed; an entry too old is that, not a
/// change of inputs.
#[test]
fn a_miss_for_age_says_older_than_the_ttl() {
    let reg = TestRegistry::start(Auth::None);
    let t = aged_cache(&reg);
    let log = cached_build(&t, &reg, &[]);
    for line in [2, 3] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("[0] line {line}: cache miss "))
                    && l.contains("older than --cache-ttl")),
            "{log}"
        );
    }
}

// ---- plain HTTP and unverified TLS -------------------------------------------

/// A name for 127.0.0.1 that is not a loopback name: smelt allows plain
/// HTTP to loopback registries unasked (as go-containerregistry does), so
/// the refusal the flags lift shows only under another name.
const REGISTRY_NAME: &str = "registry.smelt.test";

/// Runs `smelt build` on `t` in a private mount namespace whose
/// `/etc/hosts` names [`REGISTRY_NAME`] for 127.0.0.1.
fn build_with_hosts(t: &TestContext, extra: &[&str]) -> crate::harness::Run {
    let hosts = t.path("hosts");
    fs_err::write(&hosts, format!("127.0.0.1 localhost {REGISTRY_NAME}\n")).unwrap();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount --bind \"$0\" /etc/hosts && exec \"$@\"")
        .arg(&hosts)
        .arg(crate::harness::smelt_bin())
        .args(["build", "--custom-platform=linux/amd64", "--context"])
        .arg(t.ctx())
        .args(extra)
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", t.path("no-docker-config"))
        .output()
        .expect("unshare is needed by the tests (util-linux)");
    crate::harness::Run { output }
}

#[track_caller]
fn refused(run: &crate::harness::Run, registry: &str) {
    let err = run.stderr();
    assert_eq!(run.code(), 1, "{err}");
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains(&format!("reaching {registry}"))),
        "the error does not name {registry}:\n{err}"
    );
    assert!(
        err.contains(&format!(
            "the registry answers in plain HTTP, which is used only when allowed: --insecure-registry={registry}"
        )),
        "the error does not say which flag allows plain HTTP:\n{err}"
    );
}

/// `--insecure-pull` lets a pull, `--insecure` a push, and
/// `--insecure-registry` both, fall back to plain HTTP; without them a
/// registry that speaks only HTTP is refused, and nothing is pushed.
#[test]
fn insecure_flags_allow_plain_http_and_only_where_asked() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let port = reg.host.rsplit_once(':').unwrap().1;
    let name = format!("{REGISTRY_NAME}:{port}");
    let t = TestContext::new(&format!("FROM {name}/base:1\nCOPY hello.txt /hello.txt\n"));
    t.file("hello.txt", "hello\n");
    let dest = format!("{name}/app:1");
    let pushed = |tag: &str| {
        http_status(&[
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/app/manifests/{tag}", reg.host),
        ]) == "200"
    };

    refused(&build_with_hosts(&t, &["--no-push"]), &name);
    // --insecure is for pushes only
    refused(&build_with_hosts(&t, &["--no-push", "--insecure"]), &name);
    build_with_hosts(&t, &["--no-push", "--insecure-pull"]).ok();

    refused(
        &build_with_hosts(&t, &["--insecure-pull", "-d", &dest]),
        &name,
    );
    assert!(!pushed("1"), "pushed over plain HTTP without --insecure");
    build_with_hosts(&t, &["--insecure-pull", "--insecure", "-d", &dest]).ok();
    assert!(pushed("1"));

    // --insecure-registry names the registry, for pulls and pushes; another
    // name lifts nothing
    let dest2 = format!("{name}/app:2");
    let other = format!("--insecure-registry={REGISTRY_NAME}:1");
    refused(&build_with_hosts(&t, &[&other, "-d", &dest2]), &name);
    let flag = format!("--insecure-registry={name}");
    build_with_hosts(&t, &[&flag, "-d", &dest2]).ok();
    assert!(pushed("2"));
    assert_eq!(reg.layer_count("app:2"), 3);
}

/// `--skip-tls-verify-registry` skips verification for the registry it
/// names, pulls and pushes; without it (or naming another) the unknown CA
/// is refused.
#[test]
fn skip_tls_verify_registry_is_per_registry() {
    let ca = TestCa::new();
    let reg = TestRegistry::start_with(Auth::None, Some((&ca, false)));
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!("FROM {base}\nCOPY hello.txt /hello.txt\n"));
    t.file("hello.txt", "hello\n");
    let dest = format!("{}/app:1", reg.host);
    let build = |flag: &str| t.build(&["--custom-platform=linux/amd64", "-d", &dest, flag]);
    let run = build("--skip-tls-verify-registry=127.0.0.1:1");
    assert_eq!(run.code(), 1, "{}", run.stderr());
    assert!(
        run.stderr().contains("certificate") && run.stderr().contains(&reg.host),
        "{}",
        run.stderr()
    );
    build(&format!("--skip-tls-verify-registry={}", reg.host)).ok();
    assert_eq!(reg.layer_count("app:1"), 3);

    // --skip-tls-verify is for pushes, --skip-tls-verify-pull for pulls:
    // each alone leaves the other direction refused
    let dest2 = format!("{}/app:2", reg.host);
    let build2 = |flag: &str| t.build(&["--custom-platform=linux/amd64", "-d", &dest2, flag]);
    for (flag, failing) in [
        ("--skip-tls-verify", "Dockerfile:1: FROM: "),
        // (the push's error names the registry, not the image)
        ("--skip-tls-verify-pull", "error building image: reaching "),
    ] {
        let run = build2(flag);
        let err = run.stderr();
        assert_eq!(run.code(), 1, "{flag}: {err}");
        let last = err.lines().last().unwrap_or_default();
        assert!(
            last.contains(failing) && last.contains("certificate") && last.contains(&reg.host),
            "{flag}: {err}"
        );
        assert_eq!(
            last.matches(&format!("reaching {}", reg.host)).count(),
            1,
            "{flag}: {last}"
        );
    }
    assert_eq!(
        http_status(&[
            "--cacert",
            ca.ca_cert.to_str().unwrap(),
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("https://{dest2}").replace("/app:2", "/v2/app/manifests/2"),
        ]),
        "404",
        "pushed with --skip-tls-verify-pull alone"
    );
}

// ---- ONBUILD -----------------------------------------------------------------

/// An image built with ONBUILD and pushed, then used as a base: its
/// triggers run at the child's FROM, in order, on the child's context,
/// before the child's own steps, and are not handed on further.
#[test]
fn onbuild_triggers_run_at_from_in_the_child() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let parent = TestContext::new(&format!(
        "FROM {base}\n\
         ONBUILD COPY hello.txt /from-trigger.txt\n\
         ONBUILD RUN cat /from-trigger.txt > /seen-by-trigger\n\
         ONBUILD ENV TRIGGERED=yes\n\
         RUN echo parent > /parent\n"
    ));
    parent.file("hello.txt", "the parent's context\n");
    let parent_ref = format!("{}/parent:1", reg.host);
    parent
        .build(&["--custom-platform=linux/amd64", "-d", &parent_ref])
        .ok();
    // the config blob as pushed (skopeo's --config would drop OnBuild)
    let manifest = reg.inspect("parent:1", &["--raw"]);
    let config_url = format!(
        "http://{}/v2/parent/blobs/{}",
        reg.host,
        manifest["config"]["digest"].as_str().unwrap()
    );
    let parent_config: serde_json::Value =
        serde_json::from_str(&tool("curl", &["-sL", &config_url])).unwrap();
    assert_eq!(
        parent_config["config"]["OnBuild"],
        serde_json::json!([
            "COPY hello.txt /from-trigger.txt",
            "RUN cat /from-trigger.txt > /seen-by-trigger",
            "ENV TRIGGERED=yes"
        ])
    );

    let child = TestContext::new(&format!(
        "FROM {parent_ref}\nRUN echo \"$TRIGGERED\" > /env-seen\n"
    ));
    child.file("hello.txt", "the child's context\n");
    child.build_outputs(&["--custom-platform=linux/amd64"]);
    let listing = tree(&child.unpack());
    assert_has_lines(
        &listing,
        &[
            "/parent 644 0:0 file n=1 \"parent\\n\"",
            "/from-trigger.txt 644 0:0 file n=1 \"the child's context\\n\"",
            "/seen-by-trigger 644 0:0 file n=1 \"the child's context\\n\"",
            "/env-seen 644 0:0 file n=1 \"yes\\n\"",
        ],
    );
    let config = child.config();
    assert!(
        config["config"]["Env"]
            .as_array()
            .is_some_and(|e| e.iter().any(|v| v == "TRIGGERED=yes")),
        "{config:#}"
    );
    let onbuild = &config["config"]["OnBuild"];
    assert!(
        onbuild.is_null() || onbuild.as_array().is_some_and(Vec::is_empty),
        "the triggers were handed on: {onbuild}"
    );
}
