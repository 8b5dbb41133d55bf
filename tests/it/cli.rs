//! Exit codes and messages: bad Dockerfiles name file and line, flags not
//! implemented are refused by name, the `executor` name works.

use crate::harness::{TestContext, smelt_bin};

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
fn unimplemented_flags_are_refused_by_name() {
    let t = TestContext::new("FROM scratch\n");
    let run = t.build(&[
        "--no-push",
        "--compressed-caching=false",
        "--force-build-metadata",
    ]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("--compressed-caching:")
            && run.stderr().contains("--force-build-metadata:"),
        "{}",
        run.stderr()
    );
    // --cache with nowhere to keep it
    let run = t.build(&["--no-push", "--cache"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr()
            .contains("--cache needs --cache-repo, or a --destination"),
        "{}",
        run.stderr()
    );
    let run = t.build(&["--no-push", "--push-ignore-immutable-tag-errors"]);
    assert_eq!(run.code(), 2);
    assert!(
        run.stderr().contains("--push-ignore-immutable-tag-errors:"),
        "{}",
        run.stderr()
    );
    let run = t.build(&["--no-such-flag"]);
    assert_eq!(run.code(), 2);
    let run = t.build(&[]);
    assert_eq!(run.code(), 2, "no destination and no --no-push");
    assert!(
        run.stderr()
            .contains("you must provide --destination, or use --no-push")
    );
}

#[test]
fn kaniko_boolean_and_default_spellings_are_accepted() {
    let t = TestContext::new("FROM scratch\n");
    t.build(&[
        "--no-push=true",
        "--cache=false",
        "--cleanup",
        "--force",
        "--snapshot-mode=redo",
        "--skip-unused-stages=true",
        "-v",
        "debug",
        "--log-format=json",
    ])
    .ok();
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
    assert_eq!(out.status.code(), Some(2), "no --image");
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
