//! The layer cache in a real registry: a rebuild of unchanged inputs takes
//! every layer from the cache (and gives the same image), a changed context
//! file misses from its COPY on, and a cache registry that does not answer
//! costs warnings, never the build.

use crate::faults::{Fault, Kind, Proxy};
use crate::harness::{TestContext, tree};
use crate::registry_server::{Auth, TestRegistry};

/// How many steps a build took from the cache (`cache hit` lines).
pub(crate) fn hits(log: &str) -> usize {
    log.lines().filter(|l| l.contains("] cache hit ")).count()
}

pub(crate) fn cache_flags(reg: &TestRegistry, dest: &str) -> Vec<String> {
    [
        "--cache",
        "--cache-copy-layers",
        "--cache-repo",
        &format!("{}/cache", reg.host),
        "--destination",
        &format!("{}/{dest}", reg.host),
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

pub(crate) fn build(t: &TestContext, flags: &[String]) -> String {
    let args: Vec<&str> = flags.iter().map(String::as_str).collect();
    t.build(&args).ok().stderr()
}

#[test]
fn a_rebuild_takes_every_layer_from_the_cache_and_gives_the_same_image() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN date +%s%N > /built && echo ran-the-build\n\
         COPY hello.txt /hello.txt\n\
         ENV GREETING=hi\n\
         WORKDIR /work/dir\n\
         RUN cat /hello.txt /built > /both && pwd > here\n"
    ));
    t.file("hello.txt", "hello\n");
    let mut first = cache_flags(&reg, "app:1");
    first.push("--reproducible".to_string());
    let log = build(&t, &first);
    assert_eq!(hits(&log), 0, "{log}");
    assert!(log.contains("[0] ran-the-build"), "{log}");
    assert!(log.contains("stored 4 cache entries"), "{log}");

    let mut second = cache_flags(&reg, "app:2");
    second.push("--reproducible".to_string());
    let log = build(&t, &second);
    assert_eq!(hits(&log), 4, "{log}");
    assert!(
        !log.contains("[0] ran-the-build"),
        "a RUN ran again:\n{log}"
    );
    // every step hit: the base is never unpacked, no layer downloaded
    assert!(log.contains("not unpacking"), "{log}");
    assert!(!log.contains(" downloaded ("), "{log}");
    let one = reg.inspect("app:1", &[]);
    let two = reg.inspect("app:2", &[]);
    assert_eq!(one["Digest"], two["Digest"], "the images differ");

    // the image is whole: /built as the first build wrote it
    let out = TestContext::new(&format!("FROM {}/app:2\n", reg.host));
    out.build_outputs(&[]);
    let listing = tree(&out.unpack());
    assert!(listing.contains("/both 644 0:0 file n=1"), "{listing}");
    assert!(listing.contains("/built 644 0:0 file n=1"), "{listing}");
    assert!(
        listing.contains("/work/dir/here 644 0:0 file n=1 \"/work/dir\\n\""),
        "{listing}"
    );
    assert_eq!(out.config()["config"]["WorkingDir"], "/work/dir");
}

#[test]
fn a_changed_context_file_misses_from_its_copy_on() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN echo one > /one\n\
         COPY a.txt /a.txt\n\
         COPY b.txt /b.txt\n\
         RUN cat /a.txt /b.txt > /ab\n"
    ));
    t.file("a.txt", "a\n").file("b.txt", "b\n");
    let log = build(&t, &cache_flags(&reg, "app:1"));
    assert_eq!(hits(&log), 0, "{log}");

    // a.txt only gets a new mtime, b.txt new content
    filetime::set_file_mtime(
        t.ctx().join("a.txt"),
        filetime::FileTime::from_unix_time(1_000_000, 0),
    )
    .unwrap();
    t.file("b.txt", "B\n");
    let report = t.path("report.json");
    let mut flags = cache_flags(&reg, "app:2");
    flags.extend(["--cache-report".to_string(), report.display().to_string()]);
    let log = build(&t, &flags);
    let step_hit = |n: usize| {
        let lines: Vec<&str> = log.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.contains(&format!("] step {n}/4:")))
            .unwrap_or_else(|| panic!("no step {n} in:\n{log}"));
        lines
            .get(at + 1)
            .is_some_and(|l| l.contains("] cache hit "))
    };
    assert!(
        step_hit(1) && step_hit(2),
        "RUN and COPY a.txt should hit:\n{log}"
    );
    assert!(
        !step_hit(3) && !step_hit(4),
        "COPY b.txt and what follows should miss:\n{log}"
    );
    // the report says why COPY b.txt missed: its files changed
    let report: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(&report).unwrap()).unwrap();
    let steps = report["steps"].as_array().unwrap();
    let results: Vec<(u64, &str)> = steps
        .iter()
        .map(|s| (s["line"].as_u64().unwrap(), s["result"].as_str().unwrap()))
        .collect();
    assert_eq!(results, [(2, "hit"), (3, "hit"), (4, "miss"), (5, "miss")]);
    assert_eq!(
        steps[2]["changed"],
        serde_json::json!(["files"]),
        "{report}"
    );
    assert_eq!(steps[3]["why"], "not in the cache", "{report}");

    let out = TestContext::new(&format!("FROM {}/app:2\n", reg.host));
    out.build_outputs(&[]);
    let listing = tree(&out.unpack());
    assert!(
        listing.contains("/ab 644 0:0 file n=1 \"a\\nB\\n\""),
        "{listing}"
    );
}

#[test]
fn a_cache_registry_that_does_not_answer_costs_warnings_not_the_build() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let cache_reg = TestRegistry::start(Auth::None);
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo built > /built\nCOPY a.txt /a.txt\n"
    ));
    t.file("a.txt", "a\n");
    let host = cache_reg.host.clone();
    let flags = |dest: &str| -> Vec<String> {
        let mut f = cache_flags(&reg, dest);
        f[3] = format!("{host}/cache");
        f
    };
    let log = build(&t, &flags("app:1"));
    assert!(log.contains("stored 2 cache entries"), "{log}");
    // the cache registry goes away: lookups fail, the build goes on
    drop(cache_reg);
    t.file("a.txt", "changed\n");
    let log = build(&t, &flags("app:2"));
    assert_eq!(hits(&log), 0, "{log}");
    assert!(
        log.contains(&format!(
            "the layer cache at {host}/cache is off for the rest of this build"
        )),
        "{log}"
    );
    assert!(reg.inspect("app:2", &[])["Digest"].is_string());
}

#[test]
fn the_warmer_fills_a_directory_that_builds_read_when_the_registry_lost_the_base() {
    let reg = TestRegistry::start(Auth::None);
    let base_reg = TestRegistry::start(Auth::None);
    let base = base_reg.push_base("base:1", "linux/amd64");
    let dir = tempfile::tempdir().unwrap();
    let cache_dir = dir.path().join("cache");
    let warm = || {
        let out = std::process::Command::new(crate::harness::smelt_bin())
            .args(["warm", "--image", &base, "--cache-dir"])
            .arg(&cache_dir)
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", dir.path().join("no-config"))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        log
    };
    assert!(warm().contains(&format!("cached {base} (sha256:")));
    assert!(warm().contains("is already in"));
    // an OCI layout other tools read
    let listing = crate::harness::tool("umoci", &["ls", "--layout", cache_dir.to_str().unwrap()]);
    assert!(listing.contains(&base), "{listing}");

    // the base's registry goes away; the build reads the cache directory
    drop(base_reg);
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN cat /etc/passwd > /copy && echo unpacked-from-the-cache\n"
    ));
    let log = t
        .build(&[
            "--cache-dir",
            cache_dir.to_str().unwrap(),
            "--destination",
            &format!("{}/app:1", reg.host),
        ])
        .ok()
        .stderr();
    assert!(
        log.contains(&format!("found {base} in the cache directory")),
        "{log}"
    );
    assert!(log.contains("[0] unpacked-from-the-cache"), "{log}");
    let out = TestContext::new(&format!("FROM {}/app:1\n", reg.host));
    out.build_outputs(&[]);
    assert!(tree(&out.unpack()).contains("/copy 644 0:0 file"));
}

#[test]
fn a_package_a_cached_run_installed_comes_back_without_running() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         COPY hello-smelt.deb /tmp/\n\
         RUN mkdir -p /var/lib/dpkg/info /usr/bin && touch /var/lib/dpkg/status \\\n\
          && busybox dpkg -i /tmp/hello-smelt.deb && echo installed-it \\\n\
          && hello-smelt > /greeting\n"
    ));
    // a package made here (busybox's dpkg installs it)
    let pkg = t.path("pkg");
    t.file("../pkg/DEBIAN/control", "Package: hello-smelt\nVersion: 1.0\nArchitecture: all\nMaintainer: smelt <smelt@example.test>\nDescription: a test package\n");
    t.file(
        "../pkg/usr/bin/hello-smelt",
        "#!/bin/sh\necho hello from a package\n",
    );
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(
        pkg.join("usr/bin/hello-smelt"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    crate::harness::tool(
        "dpkg-deb",
        &[
            "-Zgzip",
            "--root-owner-group",
            "--build",
            pkg.to_str().unwrap(),
            t.ctx().join("hello-smelt.deb").to_str().unwrap(),
        ],
    );
    let flags = |dest: &str| {
        let mut f = cache_flags(&reg, dest);
        f.push("--reproducible".to_string());
        f
    };
    let log = build(&t, &flags("app:1"));
    assert!(log.contains("[0] installed-it"), "{log}");
    let log = build(&t, &flags("app:2"));
    assert_eq!(hits(&log), 2, "{log}");
    assert!(
        !log.contains("[0] installed-it"),
        "the RUN ran again:\n{log}"
    );
    assert_eq!(
        reg.inspect("app:1", &[])["Digest"],
        reg.inspect("app:2", &[])["Digest"]
    );
    let out = TestContext::new(&format!("FROM {}/app:2\n", reg.host));
    out.build_outputs(&[]);
    let root = out.unpack();
    assert_eq!(
        fs_err::read_to_string(root.join("greeting")).unwrap(),
        "hello from a package\n"
    );
    let status = fs_err::read_to_string(root.join("var/lib/dpkg/status")).unwrap();
    assert!(status.contains("Package: hello-smelt"), "{status}");
}

#[test]
fn a_cache_registry_that_stops_answering_mid_build_costs_warnings_not_the_build() {
    use std::io::BufRead;
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let cache_reg = TestRegistry::start(Auth::None);
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN sleep 2 && echo slept > /slept\nRUN echo second | tee /second\n"
    ));
    let mut child = std::process::Command::new(crate::harness::smelt_bin())
        .args(["build", "--context"])
        .arg(t.ctx())
        .args([
            "--cache",
            "--cache-repo",
            &format!("{}/cache", cache_reg.host),
            "--destination",
            &format!("{}/app:1", reg.host),
        ])
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", t.path("no-config"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut cache_reg = Some(cache_reg);
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        // the lookups are done and the first RUN sleeps: the registry goes
        if line.contains("] cache: 0 of 2 steps found") {
            drop(cache_reg.take());
        }
        log.push_str(&line);
        log.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{log}");
    assert!(cache_reg.is_none(), "the lookups never finished:\n{log}");
    assert!(log.contains("[0] second"), "{log}");
    let failed = log
        .lines()
        .filter(|l| l.contains("cache upload of ") && l.contains("failed (the build goes on)"))
        .count();
    assert_eq!(failed, 2, "{log}");
    assert!(reg.inspect("app:1", &[])["Digest"].is_string());
}

/// The cache flags with the cache repository on `cache_host`.
fn flags_with_cache_on(reg: &TestRegistry, cache_host: &str, dest: &str) -> Vec<String> {
    let mut f = cache_flags(reg, dest);
    f[3] = format!("{cache_host}/cache");
    f
}

/// How many times the log says the cache was turned off.
fn turned_off(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("is off for the rest of this build"))
        .count()
}

#[test]
fn a_cache_hit_whose_layer_cannot_be_fetched_runs_as_a_miss() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN echo ran-the-build | tee /built\n\
         COPY a.txt /a.txt\n\
         RUN cat /built /a.txt > /both\n"
    ));
    t.file("a.txt", "a\n");
    let log = build(&t, &flags_with_cache_on(&reg, &proxy.host, "app:1"));
    assert!(log.contains("stored 3 cache entries"), "{log}");
    // the entries are there, their layers are not
    proxy
        .rules
        .add("GET", "/v2/cache/blobs/", Fault::NotFound, usize::MAX);
    t.file("a.txt", "changed\n");
    let log = build(&t, &flags_with_cache_on(&reg, &proxy.host, "app:2"));
    assert_eq!(hits(&log), 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("could not be fetched") && l.contains("running the step")),
        "{log}"
    );
    assert!(
        log.contains("[0] ran-the-build"),
        "the RUN did not run:\n{log}"
    );
    assert_eq!(turned_off(&log), 0, "{log}");
    let out = TestContext::new(&format!("FROM {}/app:2\n", reg.host));
    out.build_outputs(&[]);
    assert_eq!(
        fs_err::read_to_string(out.unpack().join("both")).unwrap(),
        "ran-the-build\nchanged\n"
    );
}

#[test]
fn a_stalled_cache_registry_turns_the_cache_off_and_the_build_goes_on() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo one | tee /one\nCOPY a.txt /a.txt\nRUN cat /one /a.txt > /both\n"
    ));
    t.file("a.txt", "a\n");
    let timeout = "--cache-request-timeout=1s".to_string();

    // every request stalls: the lookups time out, the build goes on
    let stalled = Proxy::start(&reg.host);
    stalled
        .rules
        .all(Fault::Stall(std::time::Duration::from_secs(60)));
    let mut flags = flags_with_cache_on(&reg, &stalled.host, "app:1");
    flags.push(timeout.clone());
    let log = build(&t, &flags);
    assert_eq!(turned_off(&log), 1, "{log}");
    assert!(log.contains("did not answer in time"), "{log}");
    assert!(log.contains("[0] one"), "{log}");
    assert!(!log.contains("stored "), "{log}");
    assert!(reg.inspect("app:1", &[])["Digest"].is_string());

    // lookups answer, but the hit's layer and the uploads stall: the hit
    // runs as a miss, the cache goes off once, no upload is waited for
    build(&t, &flags_with_cache_on(&reg, &reg.host, "app:2"));
    let slow = Proxy::start(&reg.host);
    for kind in [
        Kind::BlobGet,
        Kind::BlobHead,
        Kind::UploadPost,
        Kind::UploadPut,
    ] {
        slow.rules.add_kind(
            kind,
            Fault::Stall(std::time::Duration::from_secs(60)),
            usize::MAX,
        );
    }
    t.file("a.txt", "changed\n");
    let mut flags = flags_with_cache_on(&reg, &slow.host, "app:3");
    flags.push(timeout);
    let log = build(&t, &flags);
    assert_eq!(hits(&log), 1, "{log}");
    assert!(log.contains("could not be fetched"), "{log}");
    assert_eq!(turned_off(&log), 1, "{log}");
    assert!(log.contains("[0] one"), "{log}");
    assert!(!log.contains("stored "), "{log}");
    let out = TestContext::new(&format!("FROM {}/app:3\n", reg.host));
    out.build_outputs(&[]);
    assert_eq!(
        fs_err::read_to_string(out.unpack().join("both")).unwrap(),
        "one\nchanged\n"
    );

    // lookups and downloads answer, the uploads' PUTs stall: each upload
    // times out once its body is sent, the cache goes off once
    let uploads = Proxy::start(&reg.host);
    uploads.rules.add_kind(
        Kind::UploadPut,
        Fault::Stall(std::time::Duration::from_secs(60)),
        usize::MAX,
    );
    t.file("a.txt", "third\n");
    let mut flags = flags_with_cache_on(&reg, &uploads.host, "app:4");
    flags.push("--cache-request-timeout=1s".to_string());
    let log = build(&t, &flags);
    assert_eq!(hits(&log), 1, "{log}");
    assert_eq!(turned_off(&log), 1, "{log}");
    assert!(log.contains("no progress for 1 s"), "{log}");
    assert!(!log.contains("stored "), "{log}");
    assert!(reg.inspect("app:4", &[])["Digest"].is_string());
}

#[test]
fn the_cache_works_through_30_percent_server_errors() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    proxy.rules.chaos(42, 30);
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo ran-the-build | tee /built\nCOPY a.txt /a.txt\nRUN cat /built /a.txt > /both\n"
    ));
    t.file("a.txt", "a\n");
    // 6 extra tries: a request fails 7 times in a row with p = 0.3^7
    // (upload sessions get new URLs, so which requests fail differs from
    // run to run; with 3 one entry in a few dozen runs was not stored)
    let flags = |dest: &str| {
        let mut f = flags_with_cache_on(&reg, &proxy.host, dest);
        f.extend([
            "--push-retry=6".to_string(),
            "--image-download-retry=6".to_string(),
        ]);
        f
    };
    let log = build(&t, &flags("app:1"));
    assert!(log.contains("stored 3 cache entries"), "{log}");
    t.file("a.txt", "changed\n");
    let log = build(&t, &flags("app:2"));
    assert_eq!(hits(&log), 1, "{log}");
    assert!(!log.contains("[0] ran-the-build"), "{log}");
    assert_eq!(turned_off(&log), 0, "{log}");
    assert!(proxy.rules.injected.lock().unwrap().len() >= 5);
}

#[test]
fn a_cache_hit_left_in_the_registry_whose_layer_is_gone_runs_as_a_miss() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo ran-the-build | tee /built\nCOPY a.txt /a.txt\n"
    ));
    t.file("a.txt", "a\n");
    let log = build(&t, &flags_with_cache_on(&reg, &proxy.host, "app:1"));
    assert!(log.contains("stored 2 cache entries"), "{log}");
    // every step hits, so no layer would be downloaded; the push (to
    // another registry) would need them, and they are gone
    proxy
        .rules
        .add("HEAD", "/v2/cache/blobs/", Fault::NotFound, usize::MAX);
    proxy
        .rules
        .add("GET", "/v2/cache/blobs/", Fault::NotFound, usize::MAX);
    let log = build(&t, &flags_with_cache_on(&reg, &proxy.host, "app:2"));
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("is not in the cache") && l.contains("the step will run"))
            .count(),
        2,
        "{log}"
    );
    assert_eq!(hits(&log), 0, "{log}");
    assert!(
        log.contains("[0] ran-the-build"),
        "the RUN did not run:\n{log}"
    );
    let out = TestContext::new(&format!("FROM {}/app:2\n", reg.host));
    out.build_outputs(&[]);
    let root = out.unpack();
    assert_eq!(
        fs_err::read_to_string(root.join("built")).unwrap(),
        "ran-the-build\n"
    );
    assert_eq!(fs_err::read_to_string(root.join("a.txt")).unwrap(), "a\n");
}

#[test]
fn a_change_to_a_file_copy_exclude_leaves_out_still_hits() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = |flags: &str| format!("FROM {base}\nCOPY {flags} app /app/\n");
    let t = TestContext::new(&dockerfile("--exclude=*.log"));
    t.file("app/main.c", "main\n")
        .file("app/debug.log", "1\n")
        .file("app/sub/z.log", "z\n");
    let log = build(&t, &cache_flags(&reg, "app:1"));
    assert_eq!(hits(&log), 0, "{log}");
    // an excluded file changes: the COPY hits
    t.file("app/debug.log", "2\n");
    let log = build(&t, &cache_flags(&reg, "app:2"));
    assert_eq!(
        hits(&log),
        1,
        "a change to an excluded file should hit:\n{log}"
    );
    // *.log is relative to app: sub/z.log is copied, so its change misses
    t.file("app/sub/z.log", "Z\n");
    let log = build(&t, &cache_flags(&reg, "app:3"));
    assert_eq!(
        hits(&log),
        0,
        "a change to a copied file should miss:\n{log}"
    );
    // another --exclude is another key
    t.file("Dockerfile", &dockerfile("--exclude=*.log --exclude=sub"));
    let log = build(&t, &cache_flags(&reg, "app:4"));
    assert_eq!(hits(&log), 0, "a new --exclude should miss:\n{log}");

    let out = TestContext::new(&format!("FROM {}/app:4\n", reg.host));
    out.build_outputs(&[]);
    let listing = tree(&out.unpack());
    assert!(listing.contains("/app/main.c "), "{listing}");
    assert!(
        !listing.contains("/app/debug.log") && !listing.contains("/app/sub"),
        "{listing}"
    );
}

#[test]
fn copy_parents_keys_only_what_its_pattern_matches() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nCOPY --parents src/./**/*.txt /out/\n"
    ));
    t.file("src/a.txt", "a\n")
        .file("src/x/b.txt", "b\n")
        .file("src/x/c.md", "c\n")
        .file("other.txt", "o\n");
    let log = build(&t, &cache_flags(&reg, "app:1"));
    assert_eq!(hits(&log), 0, "{log}");
    // files the pattern does not match change: the COPY hits
    t.file("src/x/c.md", "C\n").file("other.txt", "O\n");
    let log = build(&t, &cache_flags(&reg, "app:2"));
    assert_eq!(hits(&log), 1, "unmatched files should not count:\n{log}");
    // a matched one changes: it misses
    t.file("src/x/b.txt", "B\n");
    let log = build(&t, &cache_flags(&reg, "app:3"));
    assert_eq!(hits(&log), 0, "a matched file's change should miss:\n{log}");

    let out = TestContext::new(&format!("FROM {}/app:3\n", reg.host));
    out.build_outputs(&[]);
    let listing = tree(&out.unpack());
    assert!(
        listing.contains("/out/x/b.txt ") && listing.contains("/out/a.txt "),
        "{listing}"
    );
    assert!(!listing.contains("c.md"), "{listing}");
}

/// Whether the build's `COPY --link` step came from the cache.
fn link_hit(log: &str) -> bool {
    log.lines()
        .skip_while(|l| !l.contains("COPY --link"))
        .nth(1)
        .is_some_and(|l| l.contains("] cache hit "))
}

#[test]
fn a_copy_link_hits_whatever_the_steps_before_it_did() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = |env: &str| {
        format!("FROM {base}\nENV V={env}\nCOPY before.txt /before\nCOPY --link app /app/\n")
    };
    let t = TestContext::new(&dockerfile("1"));
    t.file("before.txt", "1\n").file("app/a.txt", "a\n");
    let log = build(&t, &cache_flags(&reg, "app:1"));
    assert_eq!(hits(&log), 0, "{log}");
    // the step before changes, and so does the environment: the link hits
    t.file("before.txt", "2\n");
    t.file("Dockerfile", &dockerfile("2"));
    let log = build(&t, &cache_flags(&reg, "app:2"));
    assert_eq!(hits(&log), 1, "{log}");
    assert!(link_hit(&log), "the COPY --link should hit:\n{log}");
    // its own file changes: it misses (the COPY before it hits)
    t.file("app/a.txt", "A\n");
    let log = build(&t, &cache_flags(&reg, "app:3"));
    assert!(
        !link_hit(&log),
        "a copied file's change should miss:\n{log}"
    );

    for (tag, before, app) in [("app:2", "2", "a"), ("app:3", "2", "A")] {
        let out = TestContext::new(&format!("FROM {}/{tag}\n", reg.host));
        out.build_outputs(&[]);
        let root = out.unpack();
        let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap_or_default();
        assert_eq!(read("before"), format!("{before}\n"), "{tag}");
        assert_eq!(read("app/a.txt"), format!("{app}\n"), "{tag}");
    }
}
