//! Multi-stage builds on a registry base: independent stages run at the
//! same time, a builder stage feeds the final one, COPY --from reads an
//! image, names may point at later stages, and bad references fail before
//! anything is built.

use crate::harness::{TestContext, assert_has_line_starting, assert_has_lines, tree};
use crate::registry_server::{Auth, TestRegistry};

/// Index of the first log line containing `needle`.
fn line_of(log: &str, needle: &str) -> usize {
    log.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
}

#[test]
fn independent_stages_overlap_and_the_final_stage_copies_their_results() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base} AS one\n\
         RUN echo one-started && sleep 2 && echo made-by-one > /one && echo one-finished\n\
         FROM {base} AS two\n\
         RUN echo two-started && sleep 2 && echo made-by-two > /two && echo two-finished\n\
         FROM {base} AS broken\n\
         RUN echo broken-ran && exit 1\n\
         FROM scratch\n\
         COPY --from=one /one /\n\
         COPY --from=two /two /\n"
    ));
    let log = t.build_outputs_run(&[]).stderr();
    // each started before the other finished: they ran at the same time
    for (a, b) in [("one", "two"), ("two", "one")] {
        assert!(
            line_of(&log, &format!("[{a}] {a}-started"))
                < line_of(&log, &format!("[{b}] {b}-finished")),
            "{log}"
        );
    }
    assert!(!log.contains("broken-ran"), "an unused stage ran:\n{log}");
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/one 644 0:0 file n=1 \"made-by-one\\n\"",
            "/two 644 0:0 file n=1 \"made-by-two\\n\"",
        ],
    );
}

#[test]
fn a_builder_stage_generates_files_and_later_stages_read_them_by_name() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    // `final` copies from `gen`, defined after it (BuildKit allows names
    // to point forward); `gen` builds on `tools`, which only `gen` reads,
    // so `gen` takes its root over; of `gen` and of the image only the
    // paths COPY --from reads are kept
    let t = TestContext::new(&format!(
        "FROM {base} AS tools\n\
         RUN mkdir /src && echo 'echo generated $1' > /src/gen.sh\n\
         FROM scratch AS final\n\
         COPY --from=gen /out/ /out/\n\
         COPY --from={base} /bin/busybox /image-busybox\n\
         FROM tools AS gen\n\
         RUN mkdir /out && for i in 1 2 3; do sh /src/gen.sh $i > /out/f$i; done\n\
         RUN dd if=/dev/zero of=/junk bs=1k count=512\n"
    ));
    let log = t.build_outputs_run(&["--target", "final"]).stderr();
    for want in [
        "[gen] kept 1 path (4 entries, 36 bytes) that COPY --from reads".to_string(),
        format!("[{base}] kept 1 path (1 entries, "),
    ] {
        assert!(log.contains(&want), "want {want:?} in:\n{log}");
    }
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/out/f1 644 0:0 file n=1 \"generated 1\\n\"",
            "/out/f3 644 0:0 file n=1 \"generated 3\\n\"",
        ],
    );
    assert_has_line_starting(&listing, &["/image-busybox 755 0:0 file"]);
}

#[test]
fn a_failing_stage_stops_the_others() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base} AS slow\n\
         RUN echo slow-started && sleep 60 && echo slow-finished\n\
         RUN echo slow-went-on\n\
         FROM {base} AS failing\n\
         RUN sleep 1 && exit 3\n\
         FROM scratch\n\
         COPY --from=slow /etc/passwd /a\n\
         COPY --from=failing /etc/passwd /b\n"
    ));
    let run = t.build(&["--no-push"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let log = run.stderr();
    assert!(
        log.contains("Dockerfile:5: RUN: process \"/bin/sh -c sleep 1 && exit 3\" did not complete successfully: exit code: 3"),
        "{log}"
    );
    // the slow RUN was killed (or never started), and nothing after it ran
    for ran in ["[slow] slow-finished", "[slow] step 2/2"] {
        assert!(!log.contains(ran), "{ran}:\n{log}");
    }
}

#[test]
fn a_copy_from_path_that_is_missing_fails_before_its_reader_starts() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let cases = [
        (
            format!(
                "FROM {base} AS maker\nRUN mkdir /out && echo made > /out/f\n\
                 FROM {base}\nRUN echo reader-ran\nCOPY --from=maker /out/nope* /out/none? /x/\n"
            ),
            "Dockerfile:5: COPY: \"/out/nope*\": no source files were specified",
        ),
        (
            format!(
                "FROM {base} AS maker\nRUN echo maker-ran\n\
                 FROM maker\nCOPY --from={base} /bin/nope /x\n"
            ),
            "Dockerfile:4: COPY: \"/bin/nope\": not found in image",
        ),
    ];
    for (dockerfile, want) in &cases {
        let t = TestContext::new(dockerfile);
        let run = t.build(&["--no-push"]);
        assert_eq!(run.code(), 1, "{dockerfile}\n{}", run.stderr());
        let log = run.stderr();
        assert!(log.contains(want), "{dockerfile}\nwant {want:?} in:\n{log}");
        assert!(!log.contains("reader-ran"), "the reader ran:\n{log}");
        // an image's paths are checked before any stage runs
        assert!(!log.contains("maker-ran"), "a stage ran:\n{log}");
    }
}

#[test]
fn bad_stage_references_fail_before_anything_is_built() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let cases = [
        (
            format!("FROM {base} AS a\nRUN echo ran\nCOPY --from=b / /\nFROM a AS b\n"),
            "Dockerfile:4: circular dependency detected on stage b",
        ),
        (
            format!("FROM {base} AS a\nRUN echo ran\nCOPY --from=1 /x /x\nFROM {base}\n"),
            "Dockerfile:3: COPY --from=1: refers to the current or a later stage",
        ),
        (
            format!(
                "FROM {base} AS a\nRUN echo ran\nFROM a\nCOPY --from={}/nope:1 /x /x\n",
                reg.host
            ),
            "Dockerfile:4: COPY:",
        ),
        (
            format!(
                "FROM {base} AS a\nRUN echo ran\nFROM {}/buidler:1\n",
                reg.host
            ),
            "Dockerfile:3: FROM:",
        ),
    ];
    for (dockerfile, want) in cases {
        let t = TestContext::new(&dockerfile);
        let run = t.build(&["--no-push"]);
        assert_eq!(run.code(), 1, "{dockerfile}\n{}", run.stderr());
        assert!(
            run.stderr().contains(want),
            "{dockerfile}\nwant {want:?} in:\n{}",
            run.stderr()
        );
        assert!(
            !run.stderr().contains("] step 1/"),
            "a step ran:\n{}",
            run.stderr()
        );
    }
    let t = TestContext::new("FROM scratch AS a\n");
    let run = t.build(&["--no-push", "--target", "b"]);
    assert!(
        run.stderr().contains("failed to reach build target b"),
        "{}",
        run.stderr()
    );
}
