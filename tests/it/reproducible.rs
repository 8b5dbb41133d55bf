//! `--reproducible` and `SOURCE_DATE_EPOCH`: the same inputs give the same
//! image digest, whenever and wherever they are built.

use crate::harness::{TestContext, smelt_bin};

fn make(t: &TestContext) {
    t.file("app/bin", "#!/bin/sh\necho hi\n")
        .file("app/data.txt", "data\n");
}

#[test]
fn reproducible_builds_give_identical_digests() {
    let df = "FROM scratch\nCOPY app /app/\nWORKDIR /work\nENV X=1\nCMD [\"/app/bin\"]\n";
    let a = TestContext::new(df);
    make(&a);
    let first = a.build_outputs(&["--reproducible"]);
    // a second checkout, made later: different mtimes, paths and work dirs
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = TestContext::new(df);
    make(&b);
    let second = b.build_outputs(&["--reproducible"]);
    assert_eq!(first, second);
    assert!(first.starts_with("sha256:"));
    let created = a.config()["created"].clone();
    assert_eq!(created, "1970-01-01T00:00:00Z");
    let plain = a.build(&["--no-push"]).ok().stdout();
    assert_ne!(
        plain.trim(),
        first,
        "without --reproducible the timestamps differ"
    );
}

#[test]
fn source_date_epoch_sets_created_and_is_stable() {
    let df = "FROM scratch\nCOPY app /app/\n";
    let t = TestContext::new(df);
    make(&t);
    let env = [("SOURCE_DATE_EPOCH", "1700000000")];
    let build = || {
        t.build_with(
            smelt_bin(),
            &["build"],
            &["--no-push", "--reproducible"],
            &env,
        )
        .ok()
        .stdout()
    };
    let (one, two) = (build(), build());
    assert_eq!(one, two);
    let layout = t.path("oci");
    t.build_with(
        smelt_bin(),
        &["build"],
        &[
            "--no-push",
            "-d",
            "x.test/a:t1",
            "--oci-layout-path",
            layout.to_str().expect("utf8"),
        ],
        &env,
    )
    .ok();
    assert_eq!(t.config()["created"], "2023-11-14T22:13:20Z");
}
