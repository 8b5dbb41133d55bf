//! SIGTERM and SIGINT during a build: a running RUN is killed, the work
//! directory (under a `--kaniko-dir` of the test's own) is removed, and
//! smelt exits with 143 or 130; also while a base image's download is
//! stuck (a proxy holds the blob), where the build cannot stop by itself
//! and smelt ends it. RUN processes are found by an ENV value of the test's
//! own in `/proc/*/environ`, so whatever namespaces the sandbox gives
//! them, they are seen from outside.

use crate::harness::{TestContext, smelt_bin};
use crate::registry_server::{Auth, TestRegistry, base_context};
use rustix::process::{Pid, Signal, kill_process};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A running `smelt build`, killed if the test ends before it does.
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(t: &TestContext, kaniko: &Path) -> Running {
        fs_err::create_dir_all(kaniko).unwrap();
        let stderr = t.path("stderr.log");
        let child = Command::new(smelt_bin())
            .args(["build", "--no-push", "--custom-platform=linux/amd64"])
            .arg("--context")
            .arg(t.ctx())
            .arg("--kaniko-dir")
            .arg(kaniko)
            .env("NO_COLOR", "1")
            .env("DOCKER_CONFIG", t.path("no-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs_err::File::create(&stderr).unwrap().into_parts().0)
            .spawn()
            .unwrap();
        Running { child, stderr }
    }

    fn log(&self) -> String {
        fs_err::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(self.child.id() as i32).unwrap();
        kill_process(pid, signal).unwrap();
    }

    /// Waits (generously) until `ready` holds; panics with the log if smelt
    /// ends first.
    #[track_caller]
    fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let start = Instant::now();
        while !ready() {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("smelt ended ({status}) before {what}:\n{}", self.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "no {what} after 180 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its exit code, waiting at most two minutes.
    #[track_caller]
    fn exit_code(&mut self) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "smelt did not exit within 120 s of the signal:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The processes whose environment holds `entry` (a RUN, through the
/// Dockerfile's ENV), whatever namespaces they run in; zombies have none.
fn processes_with_env(entry: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in fs_err::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(environ) = fs_err::read(e.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == entry.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

#[track_caller]
fn assert_nothing_left(kaniko: &Path, log: &str) {
    let left: Vec<_> = fs_err::read_dir(kaniko)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "left in --kaniko-dir: {left:?}\n{log}");
}

/// A build whose RUN sleeps, stopped by `signal` once the RUN runs.
fn stop_a_run(signal: Signal, code: i32, name: &str) {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new("");
    let mark = format!(
        "SIGNAL_TEST_MARK={}",
        t.dir.path().file_name().unwrap().to_str().unwrap()
    );
    fs_err::write(
        t.ctx().join("Dockerfile"),
        format!(
            "FROM {}/base:1\nENV {mark}\nRUN sleep 1000\nRUN touch /not-reached\n",
            reg.host
        ),
    )
    .unwrap();
    let kaniko = t.path("kaniko");
    let mut smelt = Running::start(&t, &kaniko);
    smelt.wait_until("a running RUN", || !processes_with_env(&mark).is_empty());
    let runs = processes_with_env(&mark);
    smelt.signal(signal);
    assert_eq!(smelt.exit_code(), Some(code), "{}", smelt.log());
    let log = smelt.log();
    assert!(
        log.contains(&format!("{name}: stopping the build")),
        "{log}"
    );
    assert!(!log.contains("not-reached"), "{log}");
    let alive = processes_with_env(&mark);
    assert!(
        alive.is_empty(),
        "RUN processes {alive:?} (of {runs:?}) outlived smelt"
    );
    assert_nothing_left(&kaniko, &log);
}

#[test]
fn sigterm_kills_the_run_removes_the_work_directory_and_exits_143() {
    stop_a_run(Signal::TERM, 143, "SIGTERM");
}

#[test]
fn sigint_kills_the_run_removes_the_work_directory_and_exits_130() {
    stop_a_run(Signal::INT, 130, "SIGINT");
}

/// A TCP relay to `upstream` that stops passing responses on after a
/// connection has carried 1 MiB (a big blob), holding it open: a
/// download that never ends. `stuck` is set when that happens.
fn stalling_proxy(upstream: &str, stuck: Arc<AtomicBool>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out));
            let (mut s_in, mut c_out) = (server, client);
            let stuck = Arc::clone(&stuck);
            std::thread::spawn(move || {
                let mut passed = 0usize;
                let mut buf = vec![0; 64 * 1024];
                loop {
                    if passed >= 1 << 20 {
                        stuck.store(true, Ordering::SeqCst);
                        // hold both ends open for as long as the test runs
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                    let n = match s_in.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if c_out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                    passed += n;
                }
            });
        }
    });
    host
}

/// A registry holding `big:1` (busybox and 8 MiB that do not compress: a
/// blob bigger than what the proxy passes on), a stalling proxy in front
/// of it, and a context building FROM it through the proxy.
fn stuck_download() -> (TestRegistry, Arc<AtomicBool>, TestContext) {
    let reg = TestRegistry::start(Auth::None);
    let base = base_context();
    let mut noise = vec![0u8; 8 << 20];
    fs_err::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    fs_err::write(base.ctx().join("noise"), &noise).unwrap();
    fs_err::write(
        base.ctx().join("Dockerfile"),
        "FROM scratch\nCOPY bin/ /bin/\nCOPY etc/ /etc/\nCOPY noise /noise\n",
    )
    .unwrap();
    let layout = base.path("base-oci");
    base.build(&[
        "--no-push",
        "--custom-platform=linux/amd64",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ])
    .ok();
    reg.push_layout(&layout, "big:1");
    let stuck = Arc::new(AtomicBool::new(false));
    let proxy = stalling_proxy(&reg.host, Arc::clone(&stuck));
    let t = TestContext::new(&format!("FROM {proxy}/big:1\nRUN true\n"));
    (reg, stuck, t)
}

#[test]
fn sigterm_during_a_base_download_still_exits_143_and_leaves_nothing() {
    let (_reg, stuck, t) = stuck_download();
    let kaniko = t.path("kaniko");
    let mut smelt = Running::start(&t, &kaniko);
    smelt.wait_until("a stuck download", || stuck.load(Ordering::SeqCst));
    // the work directory is there, with what was fetched so far
    assert!(
        fs_err::read_dir(&kaniko).unwrap().next().is_some(),
        "{}",
        smelt.log()
    );
    smelt.signal(Signal::TERM);
    assert_eq!(smelt.exit_code(), Some(143), "{}", smelt.log());
    let log = smelt.log();
    assert!(log.contains("SIGTERM: stopping the build"), "{log}");
    assert!(log.contains("did not stop within"), "{log}");
    assert_nothing_left(&kaniko, &log);
}

#[test]
fn a_second_signal_exits_at_once() {
    let (_reg, stuck, t) = stuck_download();
    let kaniko = t.path("kaniko");
    let mut smelt = Running::start(&t, &kaniko);
    smelt.wait_until("a stuck download", || stuck.load(Ordering::SeqCst));
    smelt.signal(Signal::INT);
    smelt.wait_until("the first signal's line", || {
        fs_err::read_to_string(t.path("stderr.log"))
            .unwrap_or_default()
            .contains("SIGINT: stopping the build")
    });
    smelt.signal(Signal::TERM);
    // the first signal's code; the work directory is left, as the log says
    assert_eq!(smelt.exit_code(), Some(130), "{}", smelt.log());
    let log = smelt.log();
    assert!(
        log.contains("second signal: exiting now, leaving "),
        "{log}"
    );
    assert!(!log.contains("did not stop within"), "{log}");
}

/// The stage roots under `kaniko` (`smelt-build-*/stage-*`).
fn stage_roots(kaniko: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    for work in fs_err::read_dir(kaniko).into_iter().flatten().flatten() {
        for entry in fs_err::read_dir(work.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry.file_name().to_string_lossy().starts_with("stage-") {
                roots.push(entry.path());
            }
        }
    }
    roots
}

#[test]
fn sigterm_while_a_big_base_unpacks_exits_143_and_leaves_nothing() {
    let reg = TestRegistry::start(Auth::None);
    // busybox and 20,000 files of 1 KiB
    let base = base_context();
    let many = base.ctx().join("many");
    fs_err::create_dir_all(&many).unwrap();
    let mut noise = vec![0u8; 20_000 * 1024];
    fs_err::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut noise)
        .unwrap();
    for (i, chunk) in noise.chunks(1024).enumerate() {
        fs_err::write(many.join(format!("f-{i:05}")), chunk).unwrap();
    }
    fs_err::write(
        base.ctx().join("Dockerfile"),
        "FROM scratch\nCOPY bin/ /bin/\nCOPY etc/ /etc/\nCOPY many/ /many/\n",
    )
    .unwrap();
    let layout = base.path("base-oci");
    base.build(&[
        "--no-push",
        "--custom-platform=linux/amd64",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ])
    .ok();
    reg.push_layout(&layout, "many:1");

    let t = TestContext::new(&format!(
        "FROM {}/many:1\nRUN touch /not-reached\n",
        reg.host
    ));
    let kaniko = t.path("kaniko");
    let mut smelt = Running::start(&t, &kaniko);
    // once the first files are in the root, as the extraction goes on
    smelt.wait_until("files of the base in its root", || {
        stage_roots(&kaniko)
            .iter()
            .any(|r| r.join("many/f-00100").exists())
    });
    smelt.signal(Signal::TERM);
    assert_eq!(smelt.exit_code(), Some(143), "{}", smelt.log());
    let log = smelt.log();
    assert!(log.contains("SIGTERM: stopping the build"), "{log}");
    assert_nothing_left(&kaniko, &log);
}
