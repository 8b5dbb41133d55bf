//! In place, as in kaniko's executor image: smelt is `/kaniko/executor` in
//! a container-like root (a chroot in a private mount namespace, with
//! `/proc`, `/dev` and a file bind-mounted over `/etc/secret`). The base is
//! unpacked into `/`, RUN runs there directly, stages take turns in `/`,
//! and what the executor, the context and the mounts hold stays out of the
//! image.

use crate::harness::{assert_has_lines, assert_no_line_starting, smelt_bin, tool, tree};
use crate::registry_server::{Auth, TestRegistry};
use std::path::Path;
use std::process::Command;

/// A root holding smelt as `/kaniko/executor`, the libraries it links
/// with, mount points and the context in `/workspace`.
pub(crate) fn executor_root(dockerfile: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for d in ["kaniko", "proc", "dev", "sys", "etc", "workspace"] {
        fs_err::create_dir_all(root.join(d)).expect("mkdir");
    }
    fs_err::copy(smelt_bin(), root.join("kaniko/executor")).expect("copy smelt");
    // `ldd` lines: "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
    let ldd = tool("ldd", &[smelt_bin().to_str().expect("utf8")]);
    for lib in ldd.split_whitespace().filter(|w| w.starts_with('/')) {
        let to = root.join(&lib[1..]);
        fs_err::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        fs_err::copy(lib, &to).expect("copy library");
    }
    fs_err::write(root.join("etc/secret"), "").expect("mount point");
    fs_err::write(root.join("workspace/Dockerfile"), dockerfile).expect("Dockerfile");
    fs_err::write(root.join("workspace/note.txt"), "from the context\n").expect("context file");
    dir
}

/// Runs `/kaniko/executor ARGS` chrooted into `root`; returns (ok, stderr).
pub(crate) fn run_executor(root: &Path, secret: &Path, args: &[&str]) -> (bool, String) {
    let (code, stderr) = run_executor_env(root, secret, args, &[]);
    (code == Some(0), stderr)
}

/// Builds `/workspace/Dockerfile` in place in `root` and pushes it to
/// `dest`, as a kaniko job does, with a throwaway file at `/etc/secret`;
/// returns (ok, stderr).
pub(crate) fn build_workspace(root: &Path, dest: &str) -> (bool, String) {
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    run_executor(root, secret.path(), &workspace_args(dest, &[]))
}

/// The executor's arguments that build `/workspace/Dockerfile` and push it
/// to `dest`, then `extra`.
pub(crate) fn workspace_args<'a>(dest: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--context",
        "/workspace",
        "--dockerfile",
        "/workspace/Dockerfile",
        "--destination",
        dest,
        "--force",
    ];
    args.extend_from_slice(extra);
    args
}

/// [`run_executor`] with more environment; returns (exit code, stderr).
pub(crate) fn run_executor_env(
    root: &Path,
    secret: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String) {
    run_executor_in(root, secret, args, env, false)
}

/// [`run_executor_env`], in a container without CAP_SYS_ADMIN in any set
/// when `no_sys_admin` (an unprivileged kaniko container).
pub(crate) fn run_executor_in(
    root: &Path,
    secret: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    no_sys_admin: bool,
) -> (Option<i32>, String) {
    let r = root.display();
    let drop = if no_sys_admin {
        "setpriv --bounding-set -sys_admin --inh-caps -sys_admin"
    } else {
        ""
    };
    let script = format!(
        "set -e; mount --rbind /dev {r}/dev; mount -t proc proc {r}/proc; \
         mount --bind {} {r}/etc/secret; exec {drop} chroot {r} /kaniko/executor \"$@\"",
        secret.display()
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", "/kaniko/.docker")
        .envs(env.iter().copied())
        .output()
        .expect("unshare is needed by the tests (util-linux)");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn executor_builds_in_place_and_leaves_its_own_files_out() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base} AS builder\n\
         RUN echo built > /out && test -x /kaniko/executor && echo in-place > /mode\n\
         RUN echo leaked > /workspace/from-run && echo leaked > /etc/secret && rm /bin/ls\n\
         FROM {base}\n\
         COPY --from=builder /out /mode /copied/\n\
         COPY note.txt /\n\
         RUN test ! -e /out && test -e /bin/ls && cat /copied/out > /seen\n\
         USER app\n\
         RUN id\n"
    );
    let root = executor_root(&dockerfile);
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    let dest = format!("{}/in-place:1", reg.host);
    let (ok, log) = run_executor(root.path(), secret.path(), &workspace_args(&dest, &[]));
    assert!(ok, "the in-place build failed:\n{log}");
    // RUN ran in place, as the image's user
    assert!(
        log.contains("uid=1234(app) gid=4321(app) groups=777(extra),4321(app)"),
        "{log}"
    );
    assert!(log.contains("clearing / of the previous stage"), "{log}");
    // the write through the mount reached the mounted file, not the image
    assert_eq!(fs_err::read_to_string(secret.path()).unwrap(), "leaked\n");

    let rootfs = reg.pull_rootfs(&dest, root.path());
    let listing = tree(&rootfs);
    assert_has_lines(
        &listing,
        &[
            "/copied/out 644 0:0 file n=1 \"built\\n\"",
            "/copied/mode 644 0:0 file n=1 \"in-place\\n\"",
            "/note.txt 644 0:0 file n=1 \"from the context\\n\"",
            "/seen 644 0:0 file n=1 \"built\\n\"",
            "/bin/ls 777 0:0 link n=1 -> busybox",
        ],
    );
    for absent in [
        "/kaniko",
        "/workspace",
        "/etc/secret",
        "/lib",
        "/out",
        "/proc",
        "/dev",
    ] {
        assert_no_line_starting(&listing, &[&format!("{absent} "), &format!("{absent}/")]);
    }
}

/// Refused outside a container without `--force`. Run, like every in-place
/// test, as the executor in a throwaway root: were the refusal broken, the
/// build would clear that root, never the machine's own `/`.
/// `SMELT_IN_CONTAINER=0` makes "not a container" certain whatever the
/// machine running the tests is.
#[test]
fn in_place_outside_a_container_needs_force() {
    let root = executor_root("FROM scratch\nCOPY note.txt /\n");
    let canary = root.path().join("etc/canary");
    fs_err::write(&canary, "still here\n").unwrap();
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    let args = [
        "--context",
        "/workspace",
        "--dockerfile",
        "/workspace/Dockerfile",
        "--no-push",
    ];
    let outside = [("SMELT_IN_CONTAINER", "0")];
    let (code, log) = run_executor_env(root.path(), secret.path(), &args, &outside);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("this does not look like a container (use --force if it is one"),
        "{log}"
    );
    assert!(!log.contains("FROM scratch"), "a step ran: {log}");
    assert_eq!(fs_err::read_to_string(&canary).unwrap(), "still here\n");

    // the same root builds with --force, and as a container without it:
    // what refused was the check
    let forced = [&args[..], &["--force"]].concat();
    let (code, log) = run_executor_env(root.path(), secret.path(), &forced, &outside);
    assert_eq!(code, Some(0), "{log}");
    let inside = [("SMELT_IN_CONTAINER", "1")];
    let (code, log) = run_executor_env(root.path(), secret.path(), &args, &inside);
    assert_eq!(code, Some(0), "{log}");
}

/// In place, a SIGTERM (a CI job cancelled) kills the running RUN,
/// removes the work directory under `/kaniko` and exits 143.
#[test]
fn sigterm_in_place_kills_the_run_and_leaves_kaniko_clean() {
    use std::time::{Duration, Instant};
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let root = executor_root(&format!(
        "FROM {base}\nRUN echo $$ > /run-pid.tmp && mv /run-pid.tmp /run-pid && sleep 1000\n"
    ));
    let kaniko_before = tree(&root.path().join("kaniko"));
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    let r = root.path().display();
    let script = format!(
        "set -e; mount --rbind /dev {r}/dev; mount -t proc proc {r}/proc; \
         mount --bind {} {r}/etc/secret; exec chroot {r} /kaniko/executor \
         --context /workspace --no-push --force",
        secret.path().display()
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    let pid_file = root.path().join("run-pid");
    let start = Instant::now();
    while !pid_file.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the RUN never started"
        );
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("the executor ended before its RUN started: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let run_pid: i32 = fs_err::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    // unshare and sh exec into the executor: the child is the executor
    let executor = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    rustix::process::kill_process(executor, rustix::process::Signal::TERM).expect("kill");
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{log}");
    // the RUN's shell is gone (or a zombie waiting for init to reap it)
    let start = Instant::now();
    loop {
        let stat = fs_err::read_to_string(format!("/proc/{run_pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        if stat.is_empty() || state.starts_with('Z') {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the RUN (pid {run_pid}) is still running: {stat}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        tree(&root.path().join("kaniko")),
        kaniko_before,
        "the work directory was left in /kaniko:\n{log}"
    );
}

/// `--cleanup`: in place, the image's files leave `/` once the build is
/// done (kaniko's flag for reusing the executor container); without it
/// they stay. The executor's own files and the context stay either way.
#[test]
fn cleanup_clears_the_root_after_an_in_place_build() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!("FROM {base}\nRUN echo made > /made\n");
    let secret = tempfile::NamedTempFile::new().expect("secret file");
    let args = ["--context", "/workspace", "--no-push", "--force"];
    for cleanup in [false, true] {
        let root = executor_root(&dockerfile);
        let mut all = args.to_vec();
        if cleanup {
            all.push("--cleanup");
        }
        let (ok, log) = run_executor(root.path(), secret.path(), &all);
        assert!(ok, "the in-place build failed:\n{log}");
        let r = root.path();
        for stays in [
            "kaniko/executor",
            "workspace/Dockerfile",
            "workspace/note.txt",
        ] {
            assert!(
                r.join(stays).exists(),
                "--cleanup={cleanup} removed /{stays}"
            );
        }
        for image_file in ["made", "bin/busybox", "etc/group"] {
            assert_eq!(
                r.join(image_file).exists(),
                !cleanup,
                "--cleanup={cleanup}: /{image_file}\n{}",
                tree(r)
            );
        }
    }
}
