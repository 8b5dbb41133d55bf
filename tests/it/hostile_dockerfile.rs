//! Hostile Dockerfiles (issue 15, classes 4 and 7): crafted expansions fail
//! with the line that overdid it, as an ordinary build error (no abort, no
//! work directory left behind), and a Dockerfile or `.dockerignore` in the
//! context that is a symlink resolves inside the context, never to a host
//! file.

use crate::harness::{TestContext, tree};
use std::os::unix::fs::symlink;

/// `${A:-${A:-…x…}}`, `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth))
}

#[test]
fn crafted_dockerfiles_fail_cleanly_with_their_line() {
    let quadruple = "ENV A=${A}${A}${A}${A}\n".repeat(30);
    let arg_quadruple = "ARG A=${A}${A}${A}${A}\n".repeat(30);
    // 4^(line-2) bytes on each line: 16 MiB (the bound) on line 14, more on 15
    let rows: Vec<(&str, Vec<u8>, usize, &str)> = vec![
        (
            "nested",
            format!("FROM scratch\nENV A={}\n", nested(5000)).into_bytes(),
            2,
            "nested more than",
        ),
        (
            "exponential",
            format!("FROM scratch\nENV A=x\n{quadruple}").into_bytes(),
            15,
            "longer than",
        ),
        (
            "exponential global arg",
            format!("ARG A=x\n{arg_quadruple}FROM scratch\n").into_bytes(),
            14,
            "longer than",
        ),
        (
            "port ranges",
            format!("FROM scratch\nEXPOSE{}\n", " 1-65535/udp".repeat(500)).into_bytes(),
            2,
            "longer than",
        ),
        (
            "not UTF-8",
            b"FROM scratch\nLABEL a=\"\xff\xfe\x80 raw\"\n".to_vec(),
            2,
            "not valid UTF-8",
        ),
    ];
    for (name, dockerfile, line, fragment) in rows {
        let t = TestContext::new("");
        fs_err::write(t.ctx().join("Dockerfile"), &dockerfile).unwrap();
        let kaniko = t.path("kaniko");
        fs_err::create_dir(&kaniko).unwrap();
        let run = t.build(&["--no-push", "--kaniko-dir", kaniko.to_str().unwrap()]);
        let err = run.stderr();
        assert_eq!(run.code(), 1, "{name}: {err}");
        let at = format!("Dockerfile:{line}:");
        assert!(
            err.contains(&at) && err.contains(fragment),
            "{name}: the error lacks {at:?} or {fragment:?}: {err}"
        );
        // the message names the problem, it does not carry the values
        assert!(err.len() < 4096, "{name}: {} bytes of stderr", err.len());
        assert!(!err.contains('\u{fffd}'), "{name}: raw bytes shown: {err}");
        let left: Vec<_> = fs_err::read_dir(&kaniko).unwrap().collect();
        assert!(left.is_empty(), "{name}: left in --kaniko-dir: {left:?}");
    }
}

#[test]
fn dockerfile_symlink_to_a_host_file_is_not_read() {
    let t = TestContext::new("");
    let canary = t.path("canary");
    // an unknown instruction: read, it would be named in the error
    let first = "canary-first-line-6d1f0c with words";
    fs_err::write(&canary, format!("{first}\nRUN canary-second-line\n")).unwrap();
    fs_err::remove_file(t.ctx().join("Dockerfile")).unwrap();
    symlink(&canary, t.ctx().join("Dockerfile")).unwrap();
    let by_path = t.ctx().join("Dockerfile");
    for extra in [
        vec!["--no-push"],
        vec!["--no-push", "--dockerfile", by_path.to_str().unwrap()],
        vec!["--no-push", "--dockerfile", "Dockerfile"],
    ] {
        let run = t.build(&extra);
        let all = format!("{}{}", run.stdout(), run.stderr());
        assert_ne!(run.code(), 0, "{extra:?}: {all}");
        assert!(
            !all.to_lowercase().contains("canary-first-line"),
            "{extra:?}: the host file's content was shown: {all}"
        );
    }
    assert_eq!(
        fs_err::read_to_string(&canary).unwrap(),
        format!("{first}\nRUN canary-second-line\n")
    );
}

#[test]
fn absolute_symlinks_resolve_inside_the_context() {
    let t = TestContext::new("");
    // read, these would leave keep.txt out of the image
    let outside = t.path("outside-ignore");
    fs_err::write(&outside, "keep.txt\n").unwrap();
    t.file("Dockerfile.real", "FROM scratch\nCOPY . /\n")
        .file("keep.txt", "kept\n");
    let ctx = t.ctx();
    fs_err::remove_file(ctx.join("Dockerfile")).unwrap();
    symlink("/Dockerfile.real", ctx.join("Dockerfile")).unwrap();
    symlink(&outside, ctx.join(".dockerignore")).unwrap();
    symlink(&outside, ctx.join("Dockerfile.dockerignore")).unwrap();
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert!(listing.contains("keep.txt"), "{listing}");
    assert!(listing.contains("Dockerfile.real"), "{listing}");

    // an in-context .dockerignore reached through an absolute link is used
    let t = TestContext::new("FROM scratch\nCOPY . /\n");
    t.file("ignores/main", "drop.txt\n")
        .file("drop.txt", "dropped\n")
        .file("keep.txt", "kept\n");
    symlink("/ignores/main", t.ctx().join(".dockerignore")).unwrap();
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    assert!(
        listing.contains("/keep.txt ") && !listing.contains("/drop.txt "),
        "{listing}"
    );
}
