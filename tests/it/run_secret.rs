//! `RUN --mount=type=secret` and `type=ssh` with `--secret` and `--ssh`:
//! the RUN reads the secret (a file with BuildKit's default mode, or an
//! environment variable) and reaches the agent socket, and the value is
//! nowhere afterwards: not in a layer, the config, the OCI layout, the
//! docker archive or a `-v trace` log; no mount point stays in the image.

use crate::harness::{TestContext, assert_no_line_starting, tree};
use crate::registry_server::{Auth, TestRegistry};
use std::io::Read;

/// A value no build would produce by chance.
const SECRET: &str = "smelt-secret-6e1f0c9a2b7d";
const ENV_SECRET: &str = "smelt-env-secret-43aa90d1c5";

/// `raw`, then what it decompresses to if it is gzip.
fn with_plain(raw: Vec<u8>) -> Vec<u8> {
    let mut plain = Vec::new();
    if flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut plain)
        .is_err()
    {
        plain.clear();
    }
    [raw, plain].concat()
}

/// Every blob of the OCI layout at `layout`, as written and decompressed.
fn blobs_written(layout: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in fs_err::read_dir(layout.join("blobs/sha256")).expect("blobs") {
        let raw = fs_err::read(entry.expect("entry").path()).expect("read blob");
        all.extend(with_plain(raw));
    }
    all
}

/// Every place a build's value could leak to, decompressed: the OCI
/// layout's blobs and the docker archive's members.
fn everything_written(t: &TestContext) -> Vec<u8> {
    let mut all = blobs_written(&t.path("oci"));
    let mut archive = tar::Archive::new(fs_err::File::open(t.path("image.tar")).expect("tar"));
    for member in archive.entries().expect("entries") {
        let mut member = member.expect("member");
        let mut raw = Vec::new();
        member.read_to_end(&mut raw).expect("read member");
        all.extend(with_plain(raw));
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Builds `t` with the secret flags and `-v trace`, into an OCI layout and
/// a docker archive; returns the log.
fn build_with_secrets(t: &TestContext, flags: &[&str], env: &[(&str, &str)]) -> String {
    let mut args = vec![
        "--no-push",
        "--destination",
        "example.test/smelt/it:t1",
        "--oci-layout-path",
    ];
    let layout = t.path("oci");
    let tar = t.path("image.tar");
    args.push(layout.to_str().expect("utf8"));
    args.push("--tar-path");
    args.push(tar.to_str().expect("utf8"));
    args.extend_from_slice(&["-v", "trace"]);
    args.extend_from_slice(flags);
    let run = t.build_with(crate::harness::smelt_bin(), &["build"], &args, env);
    let run = run.ok();
    format!("{}\n{}", run.stdout(), run.stderr())
}

#[test]
fn secrets_from_a_file_and_the_environment_reach_the_run_and_nothing_else() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    // the RUNs compare digests: the values themselves are nowhere in the
    // Dockerfile or the build args
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         ARG WANT\n\
         ARG WANT_ENV\n\
         RUN --mount=type=secret,id=tok \\\n\
         \x20   test \"$(busybox sha256sum < /run/secrets/tok | busybox cut -d' ' -f1)\" = \"$WANT\" && \\\n\
         \x20   stat -c '%a %u:%g' /run/secrets/tok > /tok-mode\n\
         RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=1234,gid=4321 \\\n\
         \x20   stat -c '%a %u:%g' /etc/app/key > /key-mode && test -s /etc/app/key\n\
         RUN --mount=type=secret,id=envtok,env=TOKEN \\\n\
         \x20   test \"$(printf %s \"$TOKEN\" | busybox sha256sum | busybox cut -d' ' -f1)\" = \"$WANT_ENV\" && \\\n\
         \x20   test ! -e /run/secrets/envtok && echo ok > /env-ok\n\
         RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent && echo ok > /absent-ok\n"
    ));
    let file = t.path("the-secret");
    fs_err::write(&file, SECRET).expect("write secret");
    let want = format!("WANT={}", sha256_hex(SECRET));
    let want_env = format!("WANT_ENV={}", sha256_hex(ENV_SECRET));
    let secret_flag = format!("--secret=id=tok,src={}", file.display());
    let log = build_with_secrets(
        &t,
        &[
            "--build-arg",
            &want,
            "--build-arg",
            &want_env,
            &secret_flag,
            "--secret=id=envtok,env=SMELT_TEST_TOKEN",
        ],
        &[("SMELT_TEST_TOKEN", ENV_SECRET)],
    );
    let root = t.unpack();
    let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap_or_default();
    // BuildKit's defaults: 0400, root; else the mount's own mode and owner
    assert_eq!(read("tok-mode"), "400 0:0\n");
    assert_eq!(read("key-mode"), "440 1234:4321\n");
    assert_eq!(read("env-ok"), "ok\n");
    assert_eq!(read("absent-ok"), "ok\n");
    // no mount point stays
    let listing = tree(&root);
    assert_no_line_starting(&listing, &["/run", "/etc/app"]);
    let written = everything_written(&t);
    for value in [SECRET, ENV_SECRET] {
        assert!(
            !contains(&written, value),
            "{value} is in the image's files"
        );
        assert!(!log.contains(value), "{value} is in the log:\n{log}");
    }
}

#[test]
fn a_required_secret_that_was_not_given_fails_naming_it() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN --mount=type=secret,id=needed,required=true true\n"
    ));
    let run = t.build(&["--no-push"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    assert!(
        err.contains("Dockerfile:2") && err.contains("secret needed"),
        "{err}"
    );
}

#[test]
fn an_ssh_mount_forwards_the_agent_socket_and_leaves_nothing() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo \"$SSH_AUTH_SOCK\" > /sock\n\
         RUN --mount=type=ssh,id=other,target=/tmp/agent.sock test -S /tmp/agent.sock && echo ok > /other\n"
    ));
    // an "agent" socket (busybox has no client to talk to it)
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let other = format!("--ssh=other={}", sock.display());
    build_with_secrets(
        &t,
        &["--ssh", "default", &other],
        &[("SSH_AUTH_SOCK", sock.to_str().expect("utf8"))],
    );
    let root = t.unpack();
    let read = |p: &str| fs_err::read_to_string(root.join(p)).unwrap_or_default();
    // BuildKit's default target, and SSH_AUTH_SOCK pointing at it
    assert_eq!(read("sock"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(read("other"), "ok\n");
    let listing = tree(&root);
    assert_no_line_starting(&listing, &["/run", "/tmp/agent.sock"]);
}

/// In place, as `/kaniko/executor` in its container: with CAP_SYS_ADMIN
/// the mounts are made in the command's own mount namespace; without it
/// (an unprivileged kaniko container) they are swapped in and out. Either
/// way the RUN reads the secret and reaches the agent, and neither is in
/// the image.
#[test]
fn secrets_and_agents_work_in_place_with_and_without_cap_sys_admin() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base}\n\
         ARG WANT\n\
         RUN --mount=type=secret,id=tok --mount=type=ssh \\\n\
         \x20   test \"$(busybox sha256sum < /run/secrets/tok | busybox cut -d' ' -f1)\" = \"$WANT\" && \\\n\
         \x20   test -S \"$SSH_AUTH_SOCK\" && echo ok > /ok\n\
         RUN --mount=type=secret,id=tok,env=TOKEN test -n \"$TOKEN\" && echo ok >> /ok\n"
    );
    for (name, no_admin) in [("ns", false), ("swap", true)] {
        let root = crate::in_place::executor_root(&dockerfile);
        let r = root.path();
        // inside the executor's root: /kaniko is left out of every image
        fs_err::write(r.join("kaniko/tok"), SECRET).expect("secret");
        let _agent = std::os::unix::net::UnixListener::bind(r.join("kaniko/agent.sock"))
            .expect("agent socket");
        let secret = tempfile::NamedTempFile::new().expect("secret file");
        let dest = format!("{}/in-place-secrets-{name}:1", reg.host);
        let want = format!("WANT={}", sha256_hex(SECRET));
        let (code, log) = crate::in_place::run_executor_in(
            r,
            secret.path(),
            &crate::in_place::workspace_args(
                &dest,
                &[
                    "--build-arg",
                    &want,
                    "--secret",
                    "id=tok,src=/kaniko/tok",
                    "--ssh",
                    "default=/kaniko/agent.sock",
                    "-v",
                    "trace",
                ],
            ),
            &[],
            no_admin,
        );
        assert_eq!(code, Some(0), "{name}: the in-place build failed:\n{log}");
        assert!(!log.contains(SECRET), "{name}: the secret is in the log");
        let rootfs = reg.pull_rootfs(&dest, r);
        assert_eq!(
            fs_err::read_to_string(rootfs.join("ok")).unwrap_or_default(),
            "ok\nok\n",
            "{name}"
        );
        let listing = tree(&rootfs);
        assert_no_line_starting(&listing, &["/run", "/kaniko"]);
        let written = blobs_written(&r.join("pulled"));
        assert!(
            !contains(&written, SECRET),
            "{name}: the secret is in the image"
        );
    }
}
