//! Why a step missed the layer cache, in one info line at the default
//! verbosity (the file that changed, the build arg, the instruction, the
//! base), and `COPY --from` keyed by what it copies: a rebuilt stage
//! whose copied files are the same still hits; a copied file's content,
//! mode, owner or link target changing misses.

use crate::cache::{build, cache_flags, hits};
use crate::harness::TestContext;
use crate::registry_server::{Auth, TestRegistry, base_context};

/// The info lines saying why a step missed.
fn miss_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("] cache miss at "))
        .collect()
}

/// The one miss line of `log` (a stage's first miss explains the rest).
fn the_miss(log: &str) -> &str {
    let lines = miss_lines(log);
    assert_eq!(lines.len(), 1, "one miss line expected:\n{log}");
    lines[0]
}

fn with(flags: &[String], more: &[&str]) -> Vec<String> {
    let mut all = flags.to_vec();
    all.extend(more.iter().map(ToString::to_string));
    all
}

#[test]
fn a_miss_names_the_changed_file_and_not_the_steps_after_it() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN echo one > /one\n\
         COPY src/ /app/\n\
         RUN cat /app/main.rs /app/lib.rs > /both\n"
    ));
    t.file("src/main.rs", "fn main() {}\n")
        .file("src/lib.rs", "// lib\n");
    let log = build(&t, &cache_flags(&reg, "app:1"));
    assert!(
        the_miss(&log).ends_with("no earlier entry for this step"),
        "{log}"
    );
    assert!(the_miss(&log).contains("Dockerfile:2 RUN "), "{log}");

    t.file("src/main.rs", "fn main() { println!(\"hi\") }\n");
    let log = build(&t, &cache_flags(&reg, "app:2"));
    assert_eq!(hits(&log), 1, "{log}");
    let line = the_miss(&log);
    assert!(line.contains("Dockerfile:3 COPY src/ /app/: "), "{line}");
    assert!(line.contains("src/main.rs changed ("), "{line}");
    assert!(!line.contains("lib.rs"), "an unchanged file named: {line}");

    // a file added and one removed: both named
    fs_err::remove_file(t.ctx().join("src/lib.rs")).unwrap();
    t.file("src/new.rs", "// new\n");
    t.file(
        "Dockerfile",
        &format!(
            "FROM {base}\nRUN echo one > /one\nCOPY src/ /app/\nRUN cat /app/main.rs > /both\n"
        ),
    );
    let log = build(&t, &cache_flags(&reg, "app:3"));
    let line = the_miss(&log);
    assert!(
        line.contains("src/lib.rs removed") && line.contains("src/new.rs added"),
        "{line}"
    );
}

#[test]
fn a_miss_after_a_copy_the_cache_does_not_keep_names_the_copied_file() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nCOPY a.txt b.txt /in/\nRUN cat /in/a.txt /in/b.txt > /ab\n"
    ));
    t.file("a.txt", "a\n").file("b.txt", "b\n");
    // COPY layers not cached: the RUN is the first step looked up
    let flags: Vec<String> = cache_flags(&reg, "app:1")
        .into_iter()
        .filter(|f| f != "--cache-copy-layers")
        .collect();
    build(&t, &flags);
    t.file("b.txt", "B\n");
    let log = build(&t, &flags);
    let line = the_miss(&log);
    assert!(
        line.contains("Dockerfile:3 RUN ")
            && line.contains("after a change at line 2 COPY a.txt b.txt /in/: b.txt changed ("),
        "{line}"
    );
}

#[test]
fn a_miss_names_the_build_arg_that_changed_not_its_value() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nARG VERSION\nARG OTHER=x\nRUN echo $VERSION $OTHER > /v\n"
    ));
    build(
        &t,
        &with(
            &cache_flags(&reg, "app:1"),
            &["--build-arg", "VERSION=1.0.0"],
        ),
    );
    let log = build(
        &t,
        &with(
            &cache_flags(&reg, "app:2"),
            &["--build-arg", "VERSION=2.0.0"],
        ),
    );
    let line = the_miss(&log);
    let (_, why) = line.split_once(" > /v: ").unwrap();
    assert_eq!(
        why, "after a change at line 2 ARG VERSION: arg VERSION changed",
        "{line}"
    );
    assert!(!line.contains("2.0.0"), "a value named: {line}");
}

#[test]
fn a_miss_names_the_changed_instruction() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo one > /one\nRUN echo two > /two\n"
    ));
    build(&t, &cache_flags(&reg, "app:1"));
    t.file(
        "Dockerfile",
        &format!("FROM {base}\nRUN echo one > /one\nRUN echo three > /two\n"),
    );
    let log = build(&t, &cache_flags(&reg, "app:2"));
    assert_eq!(hits(&log), 1, "{log}");
    let line = the_miss(&log);
    assert!(
        line.contains("Dockerfile:3 RUN /bin/sh -c echo three > /two: the instruction changed (was RUN /bin/sh -c echo two > /two)"),
        "{line}"
    );
}

#[test]
fn a_miss_names_the_changed_base_with_both_digests() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let old = reg.inspect("base:1", &[])["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    let t = TestContext::new(&format!("FROM {base}\nRUN echo one > /one\n"));
    build(&t, &cache_flags(&reg, "app:1"));

    // the same tag, other content
    let b = base_context();
    b.file("etc/motd", "new base\n");
    let layout = b.path("base-oci");
    b.build(&[
        "--no-push",
        "--custom-platform",
        "linux/amd64",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ])
    .ok();
    reg.push_layout(&layout, "base:1");
    let new = reg.inspect("base:1", &[])["Digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(old, new);

    let log = build(&t, &cache_flags(&reg, "app:2"));
    let line = the_miss(&log);
    assert!(
        line.contains(&format!(
            "the base changed ({}…→{}…)",
            &old[..19],
            &new[..19]
        )),
        "{line}"
    );
}

/// The builder makes /out from build args; the last stage copies it.
const STAGES: &str = "FROM {base} AS builder\n\
     ARG UNRELATED=1\n\
     ARG CONTENT=same\n\
     ARG MODE=644\n\
     ARG OWNER=0:0\n\
     ARG LINK=f\n\
     RUN mkdir /out && echo $CONTENT > /out/f && chmod $MODE /out/f && chown $OWNER /out/f \
         && ln -s $LINK /out/l && echo $UNRELATED > /unrelated\n\
     FROM {base}\n\
     COPY --from=builder /out /out\n\
     RUN cat /out/f > /g\n";

/// Whether the last stage's steps (stage `1`) all came from the cache.
fn last_stage_hits(log: &str) -> usize {
    log.lines().filter(|l| l.contains("[1] cache hit ")).count()
}

#[test]
fn copy_from_a_rebuilt_stage_hits_unless_what_it_copies_changed() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&STAGES.replace("{base}", &base));
    let log = build(&t, &cache_flags(&reg, "app:0"));
    assert_eq!(hits(&log), 0, "{log}");

    // the builder runs again and makes the same /out: the copy hits
    let log = build(
        &t,
        &with(&cache_flags(&reg, "app:1"), &["--build-arg", "UNRELATED=2"]),
    );
    assert!(
        log.contains("[builder] cache miss at "),
        "the builder should run:\n{log}"
    );
    assert_eq!(
        last_stage_hits(&log),
        2,
        "the COPY --from and the RUN should hit:\n{log}"
    );

    // each change to what is copied misses, and the line names the file
    for (arg, file) in [
        ("CONTENT=other", "out/f"),
        ("MODE=755", "out/f"),
        ("OWNER=1234:4321", "out/f"),
        ("LINK=elsewhere", "out/l"),
    ] {
        let log = build(
            &t,
            &with(&cache_flags(&reg, "app:2"), &["--build-arg", arg]),
        );
        assert_eq!(last_stage_hits(&log), 0, "{arg} should miss:\n{log}");
        let line = log
            .lines()
            .find(|l| l.contains("[1] cache miss at "))
            .unwrap_or_else(|| panic!("no miss line for stage 1 with {arg}:\n{log}"));
        assert!(
            line.contains("COPY --from=builder /out /out: ")
                && line.contains(&format!("{file} changed (")),
            "{arg}: {line}"
        );
    }

    // back to the first build's files: a hit again
    let log = build(
        &t,
        &with(&cache_flags(&reg, "app:3"), &["--build-arg", "UNRELATED=3"]),
    );
    assert_eq!(last_stage_hits(&log), 2, "{log}");
    let out = TestContext::new(&format!("FROM {}/app:3\n", reg.host));
    out.build_outputs(&[]);
    let root = out.unpack();
    assert_eq!(fs_err::read_to_string(root.join("g")).unwrap(), "same\n");
    assert_eq!(
        fs_err::read_link(root.join("out/l")).unwrap(),
        std::path::PathBuf::from("f")
    );
}

#[test]
fn copy_from_keys_hold_when_copy_layers_are_not_cached() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&STAGES.replace("{base}", &base));
    // COPY layers not cached: the RUN after the COPY --from is looked up
    let flags = |dest: &str, arg: &str| -> Vec<String> {
        let mut f: Vec<String> = cache_flags(&reg, dest)
            .into_iter()
            .filter(|f| f != "--cache-copy-layers")
            .collect();
        f.extend(["--build-arg".to_string(), arg.to_string()]);
        f
    };
    build(&t, &flags("app:1", "UNRELATED=1"));
    let log = build(&t, &flags("app:2", "UNRELATED=2"));
    assert_eq!(last_stage_hits(&log), 1, "the RUN should hit:\n{log}");
    let log = build(&t, &flags("app:3", "MODE=700"));
    assert_eq!(last_stage_hits(&log), 0, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("[1] cache miss at "))
        .unwrap_or_else(|| panic!("no miss line for stage 1:\n{log}"));
    assert!(
        line.contains("RUN /bin/sh -c cat /out/f > /g: after a change at line 9 COPY --from=builder /out /out: out/f changed ("),
        "{line}"
    );
}

#[test]
fn a_miss_after_an_env_names_it_as_written_not_the_arg_value_it_holds() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nARG TOKEN\nENV SEEN=$TOKEN\nRUN echo $SEEN > /seen\n"
    ));
    build(
        &t,
        &with(
            &cache_flags(&reg, "app:1"),
            &["--build-arg", "TOKEN=first-value"],
        ),
    );
    let log = build(
        &t,
        &with(
            &cache_flags(&reg, "app:2"),
            &["--build-arg", "TOKEN=second-value"],
        ),
    );
    let line = the_miss(&log);
    // the ARG is where the two builds part: named, its value not
    assert!(
        line.ends_with("after a change at line 2 ARG TOKEN: env SEEN changed, arg TOKEN changed"),
        "{line}"
    );
    assert!(!log.contains("second-value"), "{log}");
}
