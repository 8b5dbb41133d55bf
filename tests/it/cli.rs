//! Exit codes and messages: bad Dockerfiles name file and line, usage
//! errors name the flag, the `executor` name works.

use crate::harness::{TestContext, smelt_bin};
use crate::registry_server::{Auth, TestRegistry};

#[test]
fn malformed_dockerfile_names_file_and_line_and_exits_1() {
    let t = TestContext::new("FROM scratch\nCOPY a /a\nFROBNICATE x\n");
    let run = t.build(&["--no-push"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let dockerfile = t.ctx().join("Dockerfile");
    let want = format!(
        "{}:3: unknown instruction: FROBNICATE",
        dockerfile.display()
    );
    assert!(
        run.stderr().contains(&want),
        "stderr lacks {want:?}:\n{}",
        run.stderr()
    );
}

#[test]
fn missing_copy_source_fails_with_the_line() {
    let t = TestContext::new("FROM scratch\n\nCOPY nope.txt /x\n");
    let run = t.build(&["--no-push"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr()
            .contains("Dockerfile:3: COPY: \"nope.txt\": not found in build context"),
        "{}",
        run.stderr()
    );
}

#[test]
fn usage_errors_name_the_flag() {
    let t = TestContext::new("FROM scratch\n");
    // --cache with nowhere to keep it
    let run = t.build(&["--no-push", "--cache"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("--cache needs --cache-repo, or a --destination"),
        "{}",
        run.stderr()
    );
    let run = t.build(&["--no-push", "--image-format", "v1"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("--image-format \"v1\": use docker or oci"),
        "{}",
        run.stderr()
    );
    let run = t.build(&["--no-push", "--image-format=docker", "--compression=zstd"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("--compression=zstd cannot be used with --image-format=docker"),
        "{}",
        run.stderr()
    );
    let run = t.build(&["--no-such-flag"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("unexpected argument '--no-such-flag' found"),
        "{}",
        run.stderr()
    );
    let run = t.build(&[]);
    assert_eq!(run.code(), 2, "no destination and no --no-push");
    assert!(
        run.stderr()
            .contains("you must provide --destination, or use --no-push")
    );
}

#[test]
fn kaniko_boolean_and_default_spellings_are_accepted() {
    // an unused stage that would fail, and a destination nothing listens on
    let t = TestContext::new("FROM scratch AS unused\nCOPY missing /\nFROM scratch\nCOPY a /a\n");
    t.file("a", "a\n");
    let run = t
        .build(&[
            "--no-push=true",
            "-d",
            "127.0.0.1:1/never/pushed:1",
            "--cache=false",
            "--force",
            "--skip-unused-stages=true",
            "--snapshotMode=redo",
            "--cleanup",
        ])
        .ok();
    assert!(
        run.stderr()
            .contains("Skipping push to container registry due to --no-push flag"),
        "{}",
        run.stderr()
    );
    assert!(
        run.stdout().trim().starts_with("sha256:"),
        "{}",
        run.stdout()
    );
    let run = t.build(&["--no-push", "--snapshot-mode=fast"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("--snapshot-mode \"fast\": use full, redo or time"),
        "{}",
        run.stderr()
    );
}

/// `-v`/`--verbosity`, `--log-format` and `--log-timestamp` change what a
/// CI log shows: debug lines (a RUN's snapshot), nothing below error, one
/// JSON object a line, timestamps instead of seconds since the start.
#[test]
fn verbosity_and_log_format_change_the_log() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!("FROM {base}\nRUN echo made > /made\n"));
    let build = |extra: &[&str]| {
        let mut args = vec!["--no-push", "--custom-platform=linux/amd64"];
        args.extend_from_slice(extra);
        let run = t.build(&args).ok();
        assert!(
            run.stdout().trim().starts_with("sha256:"),
            "{}",
            run.stdout()
        );
        run.stderr()
    };
    let lines = |log: &str| log.lines().map(str::to_string).collect::<Vec<_>>();

    let default = build(&[]);
    assert!(
        default.contains("INFO[0000] [0] step 1/1: RUN echo made > /made"),
        "{default}"
    );
    assert!(
        !default.contains("DEBU["),
        "debug lines at info:\n{default}"
    );

    let debug = build(&["-v", "debug"]);
    assert!(
        lines(&debug)
            .iter()
            .any(|l| l.starts_with("DEBU[") && l.contains("[0] snapshot of ")),
        "no snapshot line at debug:\n{debug}"
    );

    let quiet = build(&["--verbosity=error"]);
    assert!(
        !quiet.contains("INFO[") && !quiet.contains("step 1/1"),
        "info lines at error:\n{quiet}"
    );

    let json = build(&["--log-format=json"]);
    let objects: Vec<serde_json::Value> = lines(&json)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        objects
            .iter()
            .any(|o| o["level"] == "info" && o["msg"] == "[0] step 1/1: RUN echo made > /made"),
        "{json}"
    );
    assert!(objects.iter().all(|o| o["time"].is_string()), "{json}");

    // no terminal and NO_COLOR: color is text
    let color = build(&["--log-format=color"]);
    assert!(!color.contains('\x1b'), "{color:?}");
    assert!(color.contains("INFO[0000] [0] step 1/1"), "{color}");

    let stamped = build(&["--log-timestamp"]);
    let line = lines(&stamped)
        .into_iter()
        .find(|l| l.contains("step 1/1"))
        .unwrap_or_default();
    // INFO[2026-12-01T11:20:58.678188699Z] …
    let stamp = line
        .strip_prefix("INFO[")
        .and_then(|r| r.split(']').next())
        .unwrap_or_default();
    assert!(
        stamp.len() > 20 && stamp.ends_with('Z') && stamp.contains('T'),
        "{stamped}"
    );
}

#[test]
fn called_as_executor_it_builds() {
    let t = TestContext::new("FROM scratch\nLABEL a=b\n");
    let link = t.path("executor");
    std::os::unix::fs::symlink(smelt_bin(), &link).expect("symlink");
    let run = t
        .build_with(link, &[], &["--no-push", "--dockerfile", "Dockerfile"], &[])
        .ok();
    assert!(run.stdout().trim().starts_with("sha256:"));
}

#[test]
fn warm_needs_an_image_and_names_what_failed() {
    let out = std::process::Command::new(smelt_bin())
        .args(["warm", "--cache-dir", "/nonexistent-smelt-test"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "no --image: {err}");
    assert!(
        err.contains("the following required arguments were not provided")
            && err.contains("--image"),
        "{err}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(smelt_bin())
        .args(["warm", "--image", "127.0.0.1:1/none:1", "--cache-dir"])
        .arg(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("error warming 127.0.0.1:1/none:1:"), "{err}");
}
