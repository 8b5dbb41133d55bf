//! ONBUILD triggers at FROM, end to end against a registry: a registry
//! base's trigger `COPY --from=<stage>` brings in a stage nothing else
//! names (and a stage nobody needs, on an image that does not exist, is
//! never resolved); a changed trigger of a parent stage changes the cache
//! keys of the stage that runs it; in place, a child runs its parent's
//! triggers and copies from the parent as the parent left it.

use crate::harness::{TestContext, assert_has_lines, tree};
use crate::registry_server::{Auth, TestRegistry};

#[test]
fn a_base_images_trigger_copying_from_a_stage_builds_that_stage_and_never_resolves_unused_ones() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    // an image whose triggers read a stage `maker` of the Dockerfile built on it
    let with_triggers = format!("{}/with-triggers:1", reg.host);
    let log = TestContext::new(&format!(
        "FROM {base}\n\
         ONBUILD COPY --from=maker /made /from-maker\n\
         ONBUILD RUN cat /from-maker > /trigger-ran\n"
    ))
    .build(&["--destination", &with_triggers])
    .ok()
    .stderr();
    // recording triggers reads no file of the base: it is never downloaded
    assert!(log.contains("not unpacking"), "{log}");
    let t = TestContext::new(&format!(
        "FROM {host}/doesnt:exist\n\
         RUN exit 1\n\
         FROM {base} AS maker\n\
         RUN echo made > /made\n\
         FROM {with_triggers}\n\
         RUN cat /trigger-ran /from-maker > /seen\n",
        host = reg.host
    ));
    let log = t.build_outputs_run(&[]).stderr();
    assert!(
        !log.contains("doesnt"),
        "an unneeded stage's image was resolved:\n{log}"
    );
    assert!(log.contains("[maker] step 1/1"), "{log}");
    let listing = tree(&t.unpack());
    assert_has_lines(
        &listing,
        &[
            "/from-maker 644 0:0 file n=1 \"made\\n\"",
            "/seen 644 0:0 file n=1 \"made\\nmade\\n\"",
        ],
    );
    assert!(!listing.contains("/made "), "{listing}");
    // triggers run once, in the stage built on the image; never carried on
    assert!(t.config()["config"]["OnBuild"].is_null(), "{}", t.config());

    // the same unneeded stage fails the build when it is the target
    let run = t.build(&["--no-push", "--target", "0"]);
    assert_ne!(run.code(), 0, "{}", run.stderr());
    assert!(run.stderr().contains("doesnt:exist"), "{}", run.stderr());
}

#[test]
fn a_changed_trigger_of_a_parent_stage_changes_the_keys_of_the_stage_running_it() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = |word: &str| {
        format!(
            "FROM {base} AS parent\n\
             RUN echo parent > /parent\n\
             ONBUILD RUN echo {word} > /trigger\n\
             FROM parent\n\
             RUN cat /trigger > /child && echo child-ran\n"
        )
    };
    let build = |t: &TestContext, tag: &str| {
        t.build(&[
            "--cache",
            "--cache-repo",
            &format!("{}/cache", reg.host),
            "--destination",
            &format!("{}/app:{tag}", reg.host),
        ])
        .ok()
        .stderr()
    };
    let t = TestContext::new(&dockerfile("one"));
    let log = build(&t, "1");
    assert!(log.contains("[1] child-ran"), "{log}");
    // unchanged: the trigger and the child's RUN come from the cache
    let log = build(&t, "2");
    assert!(!log.contains("[1] child-ran"), "{log}");
    assert_eq!(log.matches("] cache hit ").count(), 3, "{log}");

    // the parent's trigger changed: its own RUN still hits, the child runs all
    fs_err::write(t.ctx().join("Dockerfile"), dockerfile("two")).unwrap();
    let log = build(&t, "3");
    assert!(
        log.contains("[1] child-ran"),
        "the child hit a stale key:\n{log}"
    );
    assert_eq!(log.matches("] cache hit ").count(), 1, "{log}");
    let out = TestContext::new(&format!("FROM {}/app:3\n", reg.host));
    out.build_outputs(&[]);
    assert_has_lines(
        &tree(&out.unpack()),
        &["/child 644 0:0 file n=1 \"two\\n\""],
    );
}

#[test]
fn in_place_a_child_runs_its_parents_triggers_and_copies_from_the_parent_as_it_was() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base} AS parent\n\
         RUN echo parent > /p\n\
         ONBUILD RUN echo fired >> /fired\n\
         FROM parent\n\
         RUN echo changed > /p\n\
         COPY --from=parent /p /from-parent\n"
    );
    let root = crate::in_place::executor_root(&dockerfile);
    let dest = format!("{}/in-place-onbuild:1", reg.host);
    let (ok, log) = crate::in_place::build_workspace(root.path(), &dest);
    assert!(ok, "the in-place build failed:\n{log}");
    let rootfs = reg.pull_rootfs(&dest, root.path());
    assert_has_lines(
        &tree(&rootfs),
        &[
            "/fired 644 0:0 file n=1 \"fired\\n\"",
            "/p 644 0:0 file n=1 \"changed\\n\"",
            "/from-parent 644 0:0 file n=1 \"parent\\n\"",
        ],
    );
}
