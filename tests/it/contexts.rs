//! Build contexts other than a directory: a tar.gz file, a tar.gz on
//! stdin, an HTTPS tarball from a local server with a test CA, and a
//! Dockerfile read from stdin. A tarball never writes outside its context.

use crate::harness::{TestContext, tool, tree};
use crate::registry_server::{TestCa, free_port, wait_for};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A context directory with a Dockerfile, a file, and one `.dockerignore`
/// leaves out; returns it as a tar.gz next to it.
pub fn context_tarball(t: &TestContext) -> std::path::PathBuf {
    t.file("app/hello.txt", "hello from a tarball\n")
        .file("secret.txt", "never copied\n")
        .file(".dockerignore", "secret.txt\n");
    let tarball = t.path("context.tar.gz");
    tool(
        "tar",
        &[
            "-czf",
            tarball.to_str().unwrap(),
            "-C",
            t.ctx().to_str().unwrap(),
            ".",
        ],
    );
    tarball
}

pub const DOCKERFILE: &str = "FROM scratch\nCOPY . /ctx/\n";

/// Runs `smelt build` with `args` (no `--context` of the harness's own),
/// `stdin` piped in; returns the log, asserting success.
pub fn smelt(t: &TestContext, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> String {
    let layout = t.path("oci");
    let mut cmd = Command::new(crate::harness::smelt_bin());
    cmd.args([
        "build",
        "--no-push",
        "-d",
        "example.test/smelt/it:t1",
        "--oci-layout-path",
    ])
    .arg(&layout)
    .args(args)
    .env("NO_COLOR", "1")
    .env("DOCKER_CONFIG", t.path("no-config"))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{log}");
    log
}

/// Fails the test unless `listing` (a `tree` listing) holds `line`.
#[track_caller]
pub fn has(listing: &str, line: &str) {
    assert!(listing.contains(line), "no {line:?} in\n{listing}");
}

/// Runs `smelt build --no-push` with `args` and `env`.
pub fn smelt_output(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(crate::harness::smelt_bin())
        .args(["build", "--no-push"])
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Runs `smelt build --no-push` with `args` and `env`, which must fail as
/// a build does (exit 1); returns its stderr.
pub fn smelt_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = smelt_output(args, env);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    err
}

pub fn assert_context_copied(t: &TestContext) {
    let listing = tree(&t.unpack());
    assert!(
        listing.contains("/ctx/app/hello.txt 644 0:0 file n=1 \"hello from a tarball\\n\""),
        "{listing}"
    );
    assert!(!listing.contains("/ctx/secret.txt"), "{listing}");
}

#[test]
fn a_tar_gz_file_and_stdin_are_contexts() {
    let t = TestContext::new(DOCKERFILE);
    let tarball = context_tarball(&t);
    smelt(
        &t,
        &["--context", &format!("tar://{}", tarball.display())],
        b"",
        &[],
    );
    assert_context_copied(&t);

    let t2 = TestContext::new("unused\n");
    smelt(
        &t2,
        &["--context", "tar://stdin"],
        &fs_err::read(&tarball).unwrap(),
        &[],
    );
    assert_context_copied(&t2);
}

#[test]
fn an_https_tarball_is_a_context() {
    let t = TestContext::new(DOCKERFILE);
    let tarball = context_tarball(&t);
    let ca = TestCa::new();
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&ca.server_cert)
        .arg("-key")
        .arg(&ca.server_key)
        .current_dir(tarball.parent().unwrap())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&format!("127.0.0.1:{port}"), "openssl s_server");
    let url = format!("https://127.0.0.1:{port}/context.tar.gz");
    let ca_file = ca.ca_cert.to_str().unwrap().to_string();
    smelt(
        &t,
        &["--context", &url],
        b"",
        &[("SSL_CERT_FILE", &ca_file)],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_context_copied(&t);
}

#[test]
fn a_tarball_never_writes_outside_its_context() {
    let t = TestContext::new("unused\n");
    let name = format!("smelt-escape-{}", std::process::id());
    let tarball = t.path("evil.tar");
    // names that climb out, and a link to / with a file written through it
    let script = format!(
        "import tarfile, io\n\
         t = tarfile.open({tar:?}, 'w')\n\
         def add(name, data=b'x', kind=tarfile.REGTYPE, link=''):\n\
         \x20   i = tarfile.TarInfo(name); i.type = kind; i.linkname = link; i.size = len(data) if kind == tarfile.REGTYPE else 0\n\
         \x20   t.addfile(i, io.BytesIO(data) if kind == tarfile.REGTYPE else None)\n\
         add('Dockerfile', b'FROM scratch\\nCOPY . /ctx/\\n')\n\
         add('../../../{name}-up')\n\
         add('/{name}-abs')\n\
         add('root', kind=tarfile.SYMTYPE, link='/')\n\
         add('root/tmp/{name}-link')\n\
         t.close()\n",
        tar = tarball.to_str().unwrap()
    );
    tool("python3", &["-c", &script]);
    smelt(
        &t,
        &["--context", &format!("tar://{}", tarball.display())],
        b"",
        &[],
    );
    for p in [
        format!("/{name}-up"),
        format!("/tmp/{name}-up"),
        format!("/{name}-abs"),
        format!("/tmp/{name}-link"),
    ] {
        assert!(
            !Path::new(&p).exists(),
            "{p} was written outside the context"
        );
    }
    // the names that climb out land inside the context, as GNU tar puts
    // them (leading `../` and `/` dropped); the link stays a link and what
    // was written through it is dropped
    let listing = tree(&t.unpack());
    assert_eq!(
        listing,
        [
            "/ctx 755 0:0 dir",
            "/ctx/Dockerfile 644 0:0 file n=1 \"FROM scratch\\nCOPY . /ctx/\\n\"",
            "/ctx/root 777 0:0 link n=1 -> /",
            &format!("/ctx/{name}-abs 644 0:0 file n=1 \"x\""),
            &format!("/ctx/{name}-up 644 0:0 file n=1 \"x\""),
        ]
        .join("\n")
    );
}

#[test]
fn a_dockerfile_from_stdin() {
    let t = TestContext::new("ignored: the Dockerfile comes from stdin\n");
    t.file("app/hello.txt", "hello from a tarball\n");
    let ctx = t.ctx().to_str().unwrap().to_string();
    smelt(
        &t,
        &["--context", &ctx, "--dockerfile", "-"],
        DOCKERFILE.as_bytes(),
        &[],
    );
    let listing = tree(&t.unpack());
    assert!(listing.contains("/ctx/app/hello.txt"), "{listing}");
    // both from stdin cannot be
    let out = Command::new(crate::harness::smelt_bin())
        .args([
            "build",
            "--no-push",
            "--context",
            "tar://stdin",
            "--dockerfile",
            "-",
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--dockerfile - and --context tar://stdin cannot both read stdin"),
        "{err}"
    );
}

#[test]
fn a_context_that_cannot_be_fetched_names_it() {
    let t = TestContext::new(DOCKERFILE);
    for (context, want) in [
        (
            "tar:///nonexistent/context.tar.gz",
            "/nonexistent/context.tar.gz",
        ),
        (
            "https://user:secret@127.0.0.1:1/context.tar.gz?token=hidden",
            "downloading the build context https://127.0.0.1:1/context.tar.gz",
        ),
    ] {
        let err = smelt_fails(&["--context", context], &[]);
        assert!(err.contains(want), "{err}");
        assert!(!err.contains("secret") && !err.contains("hidden"), "{err}");
    }
    let _ = t;
}
