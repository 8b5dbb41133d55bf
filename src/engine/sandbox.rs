//! The RUN sandbox. The engine starts `smelt __sandbox <spec>` (this same
//! binary, a fresh single-threaded process) for each RUN; that process
//! makes its own mount namespace, mounts `/proc`, a small `/dev`, `/sys`
//! (read-only) and the host's `/etc/resolv.conf` and `/etc/hosts`
//! (read-only) into the build root, chroots into it, changes to the
//! working directory, drops to the step's user and groups, and execs the
//! command with exactly the step's environment. The mounts die with the
//! namespace when the command ends; the parent removes the mount points it
//! had to create, so they never reach a layer.
//!
//! The parent side (`run`) prepares the root, streams the command's output
//! to the log line by line and reports its exit status.

use serde::{Deserialize, Serialize};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// What one RUN executes, passed to the sandbox process as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub root: PathBuf,
    /// Absolute, inside the root.
    pub workdir: String,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// The root is `/` of the container smelt runs in: the command runs
    /// directly (no namespace, no mounts, no chroot), as kaniko runs it.
    pub in_place: bool,
}

/// The exit code of a sandbox that could not start the command (docker
/// uses 125 for its own failures, 126/127 for a command it cannot run).
pub const SETUP_FAILED: i32 = 125;

/// Device nodes bound from the host into the sandbox's `/dev` (a tmpfs).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Host files bound read-only into the root (created empty when missing).
const HOST_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];

/// The child side: never returns on success (the command replaces it).
pub fn sandbox_main(spec_json: &str) -> Result<std::convert::Infallible, String> {
    let spec: Spec =
        serde_json::from_str(spec_json).map_err(|e| format!("bad sandbox spec: {e}"))?;
    enter(&spec)?;
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| "RUN has no command".to_string())?;
    let err = std::os::unix::process::CommandExt::exec(
        Command::new(program)
            .args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v))),
    );
    Err(format!("executing {program}: {err}"))
}

#[allow(unsafe_code)]
fn unshare_mounts() -> Result<(), String> {
    // SAFETY: only CLONE_NEWNS is unshared, not CLONE_FILES, so no file
    // descriptor table changes under any thread; this process has one thread.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
        .map_err(|e| format!("unshare(CLONE_NEWNS): {e} (smelt must run as root)"))
}

fn enter(spec: &Spec) -> Result<(), String> {
    use rustix::mount::{MountFlags, MountPropagationFlags, mount, mount_bind, mount_remount};
    let err = |what: &str, e: rustix::io::Errno| format!("{what}: {e}");
    unshare_mounts()?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| err("making mounts private", e))?;
    let root = &spec.root;
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    mount("proc", root.join("proc"), "proc", quiet, None).map_err(|e| err("mounting /proc", e))?;
    let dev = root.join("dev");
    mount(
        "tmpfs",
        &dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(|e| err("mounting /dev", e))?;
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        if host.exists() {
            let target = dev.join(d);
            fs_err::write(&target, b"").map_err(|e| e.to_string())?;
            mount_bind(&host, &target).map_err(|e| err(&format!("binding /dev/{d}"), e))?;
        }
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(|e| e.to_string())?;
    }
    for d in ["pts", "shm"] {
        fs_err::create_dir(dev.join(d)).map_err(|e| e.to_string())?;
    }
    mount(
        "devpts",
        dev.join("pts"),
        "devpts",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| err("mounting /dev/pts", e))?;
    mount(
        "shm",
        dev.join("shm"),
        "tmpfs",
        quiet,
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(|e| err("mounting /dev/shm", e))?;
    let sys = root.join("sys");
    rustix::mount::mount_bind_recursive("/sys", &sys).map_err(|e| err("binding /sys", e))?;
    mount_remount(&sys, MountFlags::BIND | MountFlags::RDONLY, "")
        .map_err(|e| err("making /sys read-only", e))?;
    for f in HOST_FILES {
        let host = Path::new("/").join(f);
        let target = root.join(f);
        if host.exists() && target.is_file() {
            mount_bind(&host, &target).map_err(|e| err(&format!("binding /{f}"), e))?;
            mount_remount(&target, MountFlags::BIND | MountFlags::RDONLY, "")
                .map_err(|e| err(&format!("making /{f} read-only"), e))?;
        }
    }
    rustix::process::chroot(root).map_err(|e| err("chroot", e))?;
    std::env::set_current_dir("/").map_err(|e| e.to_string())?;
    std::env::set_current_dir(&spec.workdir)
        .map_err(|e| format!("changing to the working directory {}: {e}", spec.workdir))?;
    let groups: Vec<rustix::process::Gid> = spec
        .groups
        .iter()
        .map(|g| rustix::process::Gid::from_raw(*g))
        .collect();
    // one thread: the thread's ids are the process's
    rustix::thread::set_thread_groups(&groups).map_err(|e| err("setgroups", e))?;
    let gid = rustix::process::Gid::from_raw(spec.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| err("setresgid", e))?;
    let uid = rustix::process::Uid::from_raw(spec.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| err("setresuid", e))?;
    Ok(())
}

/// Paths the parent created in the root as mount points. Files are
/// removed after the command; directories stay, as they do in BuildKit's
/// images (`/proc`, `/dev` and `/sys` then appear, empty, in the layer).
#[derive(Debug, Default)]
struct MountPoints {
    created: Vec<PathBuf>,
    /// Directories whose mtime creating them changed: (dir, mtime).
    times: Vec<(PathBuf, filetime::FileTime)>,
}

impl MountPoints {
    fn ensure(&mut self, path: &Path, dir: bool) -> std::io::Result<()> {
        if dir {
            if path.symlink_metadata().is_err() {
                fs_err::create_dir_all(path)?;
            }
            return Ok(());
        }
        if path.symlink_metadata().is_ok() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            if !parent.exists() {
                fs_err::create_dir_all(parent)?;
            }
            let meta = fs_err::metadata(parent)?;
            if !self.times.iter().any(|(p, _)| p == parent) {
                self.times.push((
                    parent.to_path_buf(),
                    filetime::FileTime::from_last_modification_time(&meta),
                ));
            }
        }
        fs_err::write(path, b"")?;
        self.created.push(path.to_path_buf());
        Ok(())
    }

    /// Removes what was created (if the command left it as it was) and
    /// puts the parents' times back, newest first.
    fn restore(self) {
        for p in self.created.iter().rev() {
            let _ = fs_err::remove_dir(p).or_else(|_| match fs_err::metadata(p) {
                Ok(m) if m.is_file() && m.len() == 0 => fs_err::remove_file(p),
                _ => Ok(()),
            });
        }
        for (dir, time) in self.times.iter().rev() {
            let _ = filetime::set_file_mtime(dir, *time);
        }
    }
}

/// Logs each line `stream` gives, after `prefix`, on a thread of its own.
fn pump<R: std::io::Read + Send + 'static>(
    stream: Option<R>,
    prefix: &str,
) -> std::thread::JoinHandle<()> {
    let prefix = prefix.to_string();
    std::thread::spawn(move || {
        if let Some(s) = stream {
            for line in std::io::BufReader::new(s)
                .split(b'\n')
                .map_while(Result::ok)
            {
                log::info!("{prefix}{}", String::from_utf8_lossy(&line).trim_end());
            }
        }
    })
}

/// Runs `spec` in the sandbox; `log_prefix` goes before each output line.
/// Returns the exit code (or 128 + signal).
pub fn run(spec: &Spec, log_prefix: &str, cancel: &AtomicBool) -> Result<i32, String> {
    if spec.in_place {
        return spawn_in_place(spec, log_prefix, cancel);
    }
    let mut points = MountPoints::default();
    let root = &spec.root;
    let prepared = (|| -> std::io::Result<()> {
        for d in ["proc", "dev", "sys"] {
            points.ensure(&root.join(d), true)?;
        }
        for f in HOST_FILES {
            points.ensure(&root.join(f), false)?;
        }
        Ok(())
    })();
    if let Err(e) = prepared {
        points.restore();
        return Err(format!("preparing the build root for RUN: {e}"));
    }
    let result = spawn(spec, log_prefix, cancel);
    points.restore();
    result
}

fn spawn(spec: &Spec, log_prefix: &str, cancel: &AtomicBool) -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding smelt's own binary: {e}"))?;
    let json = serde_json::to_string(spec).map_err(|e| e.to_string())?;
    let mut command = Command::new(&exe);
    command.arg("__sandbox").arg(json);
    let child = start(&mut command)
        .map_err(|e| format!("starting the RUN sandbox ({}): {e}", exe.display()))?;
    wait(child, log_prefix, cancel)
}

/// In place: the command itself, started from this process with the
/// step's working directory, user, groups and environment. smelt's own
/// binary is not started again: in the executor's container the base
/// image's files have replaced the libraries it was linked with.
fn spawn_in_place(spec: &Spec, log_prefix: &str, cancel: &AtomicBool) -> Result<i32, String> {
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| "RUN has no command".to_string())?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.workdir);
    drop_privileges(&mut command, spec);
    let child = start(&mut command).map_err(|e| format!("executing {program}: {e}"))?;
    wait(child, log_prefix, cancel)
}

#[allow(unsafe_code)]
fn drop_privileges(command: &mut Command, spec: &Spec) {
    use rustix::process::{Gid, Uid};
    let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let gid = Gid::from_raw(spec.gid);
    let uid = Uid::from_raw(spec.uid);
    let hook = move || -> std::io::Result<()> {
        // the forked child has one thread: the thread's ids are the process's
        rustix::thread::set_thread_groups(&groups)?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        Ok(())
    };
    // SAFETY: the hook makes three system calls and neither allocates nor
    // takes locks (the group list was built before the fork).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, hook);
    }
}

/// Starts the child in a process group of its own, so a cancelled build
/// can stop it and everything it started.
fn start(command: &mut Command) -> std::io::Result<std::process::Child> {
    std::os::unix::process::CommandExt::process_group(command, 0);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Streams the child's output to the log and returns its exit code (or
/// 128 + the signal that ended it). When `cancel` is set (another stage
/// failed), the child's process group is killed.
fn wait(
    mut child: std::process::Child,
    log_prefix: &str,
    cancel: &AtomicBool,
) -> Result<i32, String> {
    let out = pump(child.stdout.take(), log_prefix);
    let err = pump(child.stderr.take(), log_prefix);
    let status = wait_or_kill(&mut child, cancel).map_err(|e| format!("waiting for RUN: {e}"))?;
    let _ = out.join();
    let _ = err.join();
    Ok(match status.code() {
        Some(c) => c,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0),
    })
}

/// Waits for `child`; kills its process group once `cancel` is set. The
/// exit is watched through a pidfd, so waiting costs no polling delay.
fn wait_or_kill(
    child: &mut std::process::Child,
    cancel: &AtomicBool,
) -> std::io::Result<std::process::ExitStatus> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    use rustix::process::{Pid, PidfdFlags, Signal, kill_process_group, pidfd_open};
    let pid = i32::try_from(child.id()).ok().and_then(Pid::from_raw);
    let Some(pidfd) = pid.and_then(|p| pidfd_open(p, PidfdFlags::empty()).ok()) else {
        return child.wait();
    };
    let tick = Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    let mut killed = false;
    loop {
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&tick)) {
            Ok(n) if n > 0 => return child.wait(),
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
        if !killed
            && cancel.load(Ordering::Relaxed)
            && let Some(pid) = pid
        {
            // the group may be gone already
            let _ = kill_process_group(pid, Signal::KILL);
            killed = true;
        }
    }
}
