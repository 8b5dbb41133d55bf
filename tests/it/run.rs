//! RUN in the sandbox: commands add, change and delete files (whiteouts
//! checked after umoci unpacks the image), switch users, see ENV and ARG,
//! and fail on purpose.

use crate::harness::{
    TestContext, assert_has_line_starting, assert_has_lines, assert_no_line_starting, tree,
};
use crate::registry_server::{Auth, TestRegistry};

fn build(reg: &TestRegistry, steps: &str, extra: &[&str]) -> (TestContext, String) {
    let t = TestContext::new(&format!("FROM {}/base:1\n{steps}", reg.host));
    let mut args = vec!["--custom-platform=linux/amd64"];
    args.extend_from_slice(extra);
    t.build_outputs(&args);
    let listing = tree(&t.unpack());
    (t, listing)
}

fn read(t: &TestContext, path: &str) -> String {
    fs_err::read_to_string(t.path("rootfs").join(path)).unwrap()
}

#[test]
fn run_adds_changes_and_deletes_files() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let (t, listing) = build(
        &reg,
        "RUN echo hi > /hello && mkdir -p /a/b && touch /a/b/c && rm /etc/group && chmod 600 /etc/passwd\n\
         RUN rm -r /a/b && echo more >> /hello && ln -s hello /link && mkfifo /fifo\n",
        &[],
    );
    assert_has_lines(
        &listing,
        &[
            "/hello 644 0:0 file n=1 \"hi\\nmore\\n\"",
            "/a 755 0:0 dir",
            "/link 777 0:0 link n=1 -> hello",
        ],
    );
    assert_has_line_starting(&listing, &["/etc/passwd 600 0:0 file n=1 65 bytes sha256:"]);
    // the mount points stay as empty directories, as in BuildKit's images;
    // the host files bound over /etc do not
    assert_has_lines(
        &listing,
        &["/proc 755 0:0 dir", "/dev 755 0:0 dir", "/sys 755 0:0 dir"],
    );
    for gone in [
        "/a/b",
        "/etc/group ",
        "/proc/",
        "/dev/",
        "/sys/",
        "/etc/hosts",
        "/etc/resolv.conf",
    ] {
        assert_no_line_starting(&listing, &[gone]);
    }
    assert_has_lines(&listing, &["/fifo 644 0:0 fifo"]);
    // two RUNs, two layers on top of the base's two
    assert_eq!(t.manifest()["layers"].as_array().map(Vec::len), Some(4));
    let history = t.config()["history"].clone();
    let created: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["created_by"].as_str())
        .collect();
    assert!(
        created
            .iter()
            .any(|c| c.starts_with("RUN /bin/sh -c echo hi > /hello")),
        "{created:?}"
    );
}

#[test]
fn run_sees_env_args_user_and_workdir() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let (t, listing) = build(
        &reg,
        "ARG A=1\nENV B=2 A=env-wins-not\nARG C=3\nRUN echo \"$C-$B\" > /vars && mkdir -m 1777 /shared\n\
         USER app\nWORKDIR /home/app\nRUN id > ids && pwd > where\n\
         USER 4242\nRUN id > /shared/numeric\nUSER 4242:777\nRUN id > /shared/numeric2\n\
         USER root\nRUN <<EOF\necho from a heredoc > /heredoc\nEOF\n\
         RUN echo \"$no_proxy\" > /proxy\n",
        &[
            "--build-arg",
            "C=override",
            "--build-arg",
            "no_proxy=.example",
        ],
    );
    assert_has_lines(
        &listing,
        &[
            "/vars 644 0:0 file n=1 \"override-2\\n\"",
            "/home/app/where 644 1234:4321 file n=1 \"/home/app\\n\"",
            "/heredoc 644 0:0 file n=1 \"from a heredoc\\n\"",
            "/proxy 644 0:0 file n=1 \".example\\n\"",
            // a uid the image's passwd does not name runs with gid 0
            "/shared/numeric 644 4242:0 file n=1 \"uid=4242 gid=0(root) groups=0(root)\\n\"",
        ],
    );
    assert_has_line_starting(
        &listing,
        &["/home/app/ids 644 1234:4321 file n=1 56 bytes sha256:"],
    );
    // and with the group asked for; the primary gid is a supplementary group
    // too, as in BuildKit since moby/buildkit#3651 (CVE-2023-25173; docker
    // 20.10 leaves it out)
    assert_has_line_starting(
        &listing,
        &["/shared/numeric2 644 4242:777 file n=1 42 bytes"],
    );
    assert_eq!(
        read(&t, "shared/numeric2"),
        "uid=4242 gid=777(extra) groups=777(extra)\n"
    );
    // supplementary groups come from the image's /etc/group
    assert_eq!(
        read(&t, "home/app/ids"),
        "uid=1234(app) gid=4321(app) groups=777(extra),4321(app)\n"
    );
}

#[test]
fn a_failing_run_names_the_line_and_exit_code() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {}/base:1\nRUN echo visible-output\nRUN echo before; exit 3\n",
        reg.host
    ));
    let run = t.build(&["--custom-platform=linux/amd64", "--no-push"]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    assert!(err.contains("[0] visible-output"), "{err}");
    assert!(
        err.contains(
            "Dockerfile:3: RUN: process \"/bin/sh -c echo before; exit 3\" did not complete successfully: exit code: 3"
        ),
        "{err}"
    );
}

#[test]
fn single_snapshot_makes_one_layer_of_the_stage() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let (t, listing) = build(
        &reg,
        "RUN echo a > /a && echo gone > /gone\nWORKDIR /made-by-workdir\nRUN rm /gone && rm /etc/group\nENV X=1\n",
        &["--single-snapshot"],
    );
    // the base's two layers and one more
    assert_eq!(t.manifest()["layers"].as_array().map(Vec::len), Some(3));
    assert_has_lines(&listing, &["/a 644 0:0 file n=1 \"a\\n\""]);
    assert_has_line_starting(&listing, &["/made-by-workdir 755"]);
    assert!(
        !listing.contains("/gone") && !listing.contains("/etc/group"),
        "{listing}"
    );
    let history = t.config()["history"].clone();
    let layered = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| !h["empty_layer"].as_bool().unwrap_or(false))
        .count();
    assert_eq!(layered, 3, "{history:#}");
}
