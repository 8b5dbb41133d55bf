//! COPY/ADD/WORKDIR/metadata semantics, checked on the unpacked image
//! (umoci) and the config read back by skopeo.

use crate::harness::{Layout, TestContext, assert_has_lines, tool, tree};

#[test]
fn copy_rules_match_docker() {
    let t = TestContext::new(
        "FROM scratch\n\
         COPY etc /etc/\n\
         COPY a.txt /dst/\n\
         COPY a.txt /dst/renamed.txt\n\
         COPY dir /dst/dircontents/\n\
         COPY dir/ /dst/dircontents2\n\
         COPY *.txt /dst/glob/\n\
         COPY --chown=nobody:nogroup dir/sub /dst/owned/\n\
         COPY --chmod=0751 a.txt /dst/mode.txt\n\
         COPY [\"spaced name.txt\", \"/dst/with space/\"]\n\
         COPY a.txt /dst\n",
    );
    t.file(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .file("etc/group", "root:x:0:\nnogroup:x:65534:\n")
    .file("a.txt", "a\n")
    .file("b.txt", "b\n")
    .file("dir/x", "x\n")
    .file("dir/sub/y", "y\n")
    .file("spaced name.txt", "s\n");
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    let want = [
        "/dst 755 0:0 dir",
        "/dst/a.txt 644 0:0 file n=1 \"a\\n\"",
        "/dst/dircontents 755 0:0 dir",
        "/dst/dircontents/sub 755 0:0 dir",
        "/dst/dircontents/sub/y 644 0:0 file n=1 \"y\\n\"",
        "/dst/dircontents/x 644 0:0 file n=1 \"x\\n\"",
        "/dst/dircontents2 755 0:0 dir",
        "/dst/dircontents2/sub 755 0:0 dir",
        "/dst/dircontents2/sub/y 644 0:0 file n=1 \"y\\n\"",
        "/dst/dircontents2/x 644 0:0 file n=1 \"x\\n\"",
        "/dst/glob 755 0:0 dir",
        "/dst/glob/a.txt 644 0:0 file n=1 \"a\\n\"",
        "/dst/glob/b.txt 644 0:0 file n=1 \"b\\n\"",
        "/dst/glob/spaced name.txt 644 0:0 file n=1 \"s\\n\"",
        "/dst/mode.txt 751 0:0 file n=1 \"a\\n\"",
        "/dst/owned 755 65534:65534 dir",
        "/dst/owned/y 644 65534:65534 file n=1 \"y\\n\"",
        "/dst/renamed.txt 644 0:0 file n=1 \"a\\n\"",
        "/dst/with space 755 0:0 dir",
        "/dst/with space/spaced name.txt 644 0:0 file n=1 \"s\\n\"",
    ];
    let got: Vec<&str> = listing.lines().filter(|l| l.starts_with("/dst")).collect();
    assert_eq!(got, want, "full listing:\n{listing}");
}

#[test]
fn dockerignore_filters_before_copy() {
    let t = TestContext::new("FROM scratch\nCOPY . /ctx/\n");
    t.file(".dockerignore", "# comment\ndrop\n**/*.log\n!logs/important.log\nnested/**/*.tmp\n*.tmp\n/README.md\nDockerfile\n")
        .file("nested/a/b/c.tmp", "t\n")
        .file("nested/a/b/c.txt", "c\n")
        .file("README.md", "r\n")
        .file("logs/x.log", "x\n")
        .file("logs/important.log", "i\n")
        .file("drop/d1", "1\n")
        .file("drop/deep/d2", "2\n")
        .file("top.tmp", "t\n")
        .file("keep/k1", "k\n")
        .file("keep/k2.log", "k\n");
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split(' ').next())
        .filter(|p| p.starts_with("/ctx"))
        .collect();
    assert_eq!(
        paths,
        [
            "/ctx",
            "/ctx/.dockerignore",
            "/ctx/keep",
            "/ctx/keep/k1",
            "/ctx/logs",
            "/ctx/logs/important.log",
            "/ctx/nested",
            "/ctx/nested/a",
            "/ctx/nested/a/b",
            "/ctx/nested/a/b/c.txt",
        ]
    );
}

#[test]
fn add_extracts_local_archives_and_chowns() {
    let t = TestContext::new(
        "FROM scratch\nADD bundle.tar.gz /unpacked/\nADD bundle.tar.xz /xz/\nADD --chown=1234:5678 plain.txt /owned.txt\nADD notatar.gz /kept/\n",
    );
    t.file("inner/file", "f\n")
        .file("plain.txt", "p\n")
        .file("notatar.gz", "just text\n");
    let ctx = t.ctx();
    for (flags, name) in [("-czf", "bundle.tar.gz"), ("-cJf", "bundle.tar.xz")] {
        tool(
            "tar",
            &[
                "-C",
                ctx.to_str().expect("utf8"),
                "--owner=0",
                "--group=0",
                flags,
                ctx.join(name).to_str().expect("utf8"),
                "inner",
            ],
        );
    }
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/unpacked/inner/file 644 0:0 file n=1 \"f\\n\"",
            "/xz/inner/file 644 0:0 file n=1 \"f\\n\"",
            "/owned.txt 644 1234:5678 file n=1 \"p\\n\"",
            "/kept/notatar.gz 644 0:0 file n=1 \"just text\\n\"",
        ],
    );
}

#[test]
fn metadata_instructions_set_the_config_as_docker_does() {
    let t = TestContext::new(
        "ARG BASE=scratch\nFROM $BASE\n\
         LABEL org.example.name=\"metadata case\" version=1 \"quoted key\"=yes\n\
         ENV A=1 B=\"two words\" C=${A}-x\n\
         ENV D $B and more\n\
         EXPOSE 80 443/tcp 53/udp\n\
         VOLUME [\"/data\", \"/logs\"]\n\
         STOPSIGNAL SIGTERM\n\
         HEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD [\"true\"]\n\
         ONBUILD RUN echo child\n\
         WORKDIR /srv\n\
         WORKDIR app\n\
         USER nobody\n\
         ENTRYPOINT [\"/bin/echo\", \"entry\"]\n\
         CMD [\"default\", \"args\"]\n",
    );
    t.build_outputs(&[]);
    let config = t.config();
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        serde_json::json!([
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=1",
            "B=two words",
            "C=-x",
            "D=two words and more"
        ])
    );
    assert_eq!(
        c["Labels"],
        serde_json::json!({"org.example.name": "metadata case", "version": "1", "quoted key": "yes"})
    );
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"443/tcp": {}, "53/udp": {}, "80/tcp": {}})
    );
    assert_eq!(c["Volumes"], serde_json::json!({"/data": {}, "/logs": {}}));
    assert_eq!(c["StopSignal"], "SIGTERM");
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({"Test": ["CMD", "true"], "Interval": 30_000_000_000u64, "Timeout": 3_000_000_000u64, "Retries": 2})
    );
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo child"]));
    assert_eq!(c["WorkingDir"], "/srv/app");
    assert_eq!(c["User"], "nobody");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/bin/echo", "entry"]));
    assert_eq!(c["Cmd"], serde_json::json!(["default", "args"]));
    let rootfs = t.unpack();
    assert!(
        rootfs.join("srv/app").is_dir(),
        "WORKDIR creates its directory"
    );
    let history = config["history"].as_array().expect("history");
    assert_eq!(
        history.len(),
        12,
        "one history entry per instruction but FROM and ONBUILD: {history:?}"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2),
        "only the two WORKDIRs made layers"
    );
}

#[test]
fn entrypoint_resets_an_inherited_cmd_and_shell_form_uses_shell() {
    let t = TestContext::new(
        "FROM scratch AS base\nCMD [\"base\"]\nFROM base\nSHELL [\"/bin/bash\", \"-ec\"]\nENTRYPOINT exec app\n",
    );
    t.build_outputs(&[]);
    let c = &t.config()["config"];
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/bin/bash", "-ec", "exec app"])
    );
    assert!(c.get("Cmd").is_none_or(serde_json::Value::is_null), "{c}");
}

#[test]
fn heredoc_copy_expands_unless_quoted() {
    let t = TestContext::new(
        "# syntax=docker/dockerfile:1\nFROM scratch\nARG NAME=world\nCOPY <<EOF /h/two\nliteral $NAME\nEOF\nCOPY <<'EOF' /h/three\nnot expanded $NAME\nEOF\nCOPY <<-EOT /h/four\n\tstripped\n\tEOT\n",
    );
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/h 755 0:0 dir",
            "/h/two 644 0:0 file n=1 \"literal world\\n\"",
            "/h/three 644 0:0 file n=1 \"not expanded $NAME\\n\"",
            "/h/four 644 0:0 file n=1 \"stripped\\n\"",
        ],
    );
}

#[test]
fn stages_copy_from_earlier_stages_and_skip_unused_ones() {
    let t = TestContext::new(
        "FROM scratch AS builder\nCOPY a.txt /out/artifact\nFROM scratch AS unused\nCOPY missing-file /nope\nFROM builder AS middle\nCOPY b.txt /out/more\nFROM scratch\nCOPY --from=middle /out/ /artifacts/\nCOPY --from=0 /out/artifact /from-index\n",
    );
    t.file("a.txt", "a\n").file("b.txt", "b\n");
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/artifacts/artifact 644 0:0 file n=1 \"a\\n\"",
            "/artifacts/more 644 0:0 file n=1 \"b\\n\"",
            "/from-index 644 0:0 file n=1 \"a\\n\"",
        ],
    );
    // --target of a middle stage
    let out = t.path("middle.tar");
    t.build(&[
        "--no-push",
        "--target",
        "middle",
        "--tar-path",
        out.to_str().expect("utf8"),
    ])
    .ok();
    // the archive holds the middle stage (builder's file and its own), not
    // the last stage
    let layout = t.path("middle-oci");
    tool(
        "skopeo",
        &[
            "copy",
            "-q",
            &format!("docker-archive:{}", out.display()),
            &format!("oci:{}:t1", layout.display()),
        ],
    );
    let rootfs = t.path("middle-rootfs");
    Layout(layout).unpack("t1", &rootfs);
    assert_eq!(
        tree(&rootfs),
        "/out 755 0:0 dir\n\
         /out/artifact 644 0:0 file n=1 \"a\\n\"\n\
         /out/more 644 0:0 file n=1 \"b\\n\""
    );
}

#[test]
fn hard_links_and_symlinks_survive_copy() {
    let t = TestContext::new("FROM scratch\nCOPY tree /t/\n");
    t.file("tree/real", "data\n");
    let ctx = t.ctx();
    fs_err::hard_link(ctx.join("tree/real"), ctx.join("tree/hard")).expect("link");
    std::os::unix::fs::symlink("real", ctx.join("tree/rel")).expect("symlink");
    std::os::unix::fs::symlink("/nonexistent", ctx.join("tree/dangling")).expect("symlink");
    let long = "d".repeat(120);
    t.file(&format!("tree/{long}/f"), "long\n");
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/t/hard 644 0:0 file n=2 \"data\\n\"".to_string(),
            "/t/real 644 0:0 file n=2 \"data\\n\"".to_string(),
            "/t/rel 777 0:0 link n=1 -> real".to_string(),
            "/t/dangling 777 0:0 link n=1 -> /nonexistent".to_string(),
            format!("/t/{long}/f 644 0:0 file n=1 \"long\\n\""),
        ],
    );
}

/// Regression (found by the differential run of ../shared/conformance): a
/// directory COPY creates is 0755 whatever the source directory's mode.
#[test]
fn copy_creates_destination_directories_0755() {
    use std::os::unix::fs::PermissionsExt;
    let t = TestContext::new("FROM scratch\nCOPY ro /dst/ro\nCOPY --chmod=750 ro /dst/chmodded\n");
    t.file("ro/f.txt", "f\n");
    fs_err::set_permissions(t.ctx().join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &["/dst/ro 755 0:0 dir", "/dst/chmodded 750 0:0 dir"],
    );
}

/// A value no builder accepts is refused before the first step runs,
/// naming the file, line and value; a stage that is not built is not judged.
#[test]
fn invalid_instructions_are_refused_before_any_step_runs() {
    let t = TestContext::new(
        "FROM scratch AS unused\nRUN --network=bridge true\nFROM scratch\nCOPY a.txt /a\nRUN --network=bridge true\n",
    );
    t.file("a.txt", "a\n");
    let run = t.build(&["--no-push", "-v", "info"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.contains("Dockerfile:5: RUN: invalid network mode \"bridge\""),
        "{err}"
    );
    assert!(
        !err.contains("COPY a.txt"),
        "a step ran before the refusal: {err}"
    );
    // without the refused stage, the unused one does not matter
    let t = TestContext::new(
        "FROM scratch AS unused\nRUN --network=bridge true\nFROM scratch\nCOPY a.txt /a\n",
    );
    t.file("a.txt", "a\n");
    t.build(&["--no-push"]).ok();
}
