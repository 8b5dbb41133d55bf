//! SIGTERM (a CI job cancelled) and SIGINT during a build.
//!
//! The handlers only write to a pipe (`signal-hook`); a thread of its own
//! reads it. On the first signal it logs one line and cancels the build
//! (`engine::interrupt`): the stages stop before their next step and a
//! running RUN's process group is killed, the build fails, its work
//! directory and fetched context are removed as on any failure, and the
//! main thread exits with 128 + the signal (143, 130).
//!
//! If that has not happened within [`GRACE`] (a download or an extraction
//! does not look at the flag), or on a second signal, the signal thread
//! ends the process itself. Removing a directory while another thread
//! still writes into it could leave files behind (or race a writer that
//! creates them again), and threads cannot be stopped one by one; so the
//! thread replaces the process image: `execve` of smelt's own binary as
//! `smelt __cleanup CODE DIR…` ends every other thread first (the kernel
//! waits until they are gone), keeps the process id, its parent and its
//! children. That program kills and reaps every child (RUN sandboxes,
//! git) and what they left behind, removes the directories and exits with
//! the code. In place smelt cannot start itself again (the base image's
//! libraries replaced its own), so there the thread kills the children
//! and removes the directories from the running process, then exits.

use crate::engine::interrupt;
use signal_hook::consts::{SIGINT, SIGTERM};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How long a cancelled build gets to stop by itself.
pub const GRACE: Duration = Duration::from_secs(5);

/// The argument that makes smelt the clean-up program.
pub const CLEANUP: &str = "__cleanup";

/// Starts the signal thread. A failure is a warning: the build runs, but
/// a signal then ends it at once, as before.
pub fn install() {
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(s) => s,
        Err(e) => {
            log::warn!("cannot watch for SIGTERM and SIGINT: {e}");
            return;
        }
    };
    let watcher = std::thread::Builder::new()
        .name("signals".to_string())
        .spawn(move || {
            let mut first = None;
            for signal in signals.forever() {
                match first {
                    None => {
                        first = Some(signal);
                        log::warn!(
                            "{}: stopping the build, removing its work directory and \
                             exiting with {} (a second signal exits at once)",
                            interrupt::signal_name(signal),
                            128 + signal
                        );
                        interrupt::interrupt(signal);
                        let late = std::thread::Builder::new()
                            .name("signal-grace".to_string())
                            .spawn(move || {
                                std::thread::sleep(GRACE);
                                finish(signal, true);
                            });
                        if late.is_err() {
                            finish(signal, true);
                        }
                    }
                    Some(first) => finish(first, false),
                }
            }
        });
    if let Err(e) = watcher {
        log::warn!("cannot watch for SIGTERM and SIGINT: {e}");
    }
}

/// The exit code of a build that returned `code`: 128 + the signal if
/// one came. Called by the main thread once everything it made is
/// removed; from then on the signal thread leaves the exit to it.
pub fn exit_code(code: i32) -> i32 {
    match interrupt::exiting() {
        Some(signal) => 128 + signal,
        None => code,
    }
}

/// Ends the process for the signal thread: after [`GRACE`] (`late`), the
/// directories are removed; on a second signal they are left.
fn finish(signal: i32, late: bool) {
    let code = 128 + signal;
    // None: the main thread is done and exits with the code itself
    let Some(registry) = interrupt::take_over() else {
        return;
    };
    let dirs = registry.dirs();
    let shown = dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let remove = if late {
        log::warn!(
            "the build did not stop within {} s: ending it{}",
            GRACE.as_secs(),
            if dirs.is_empty() {
                String::new()
            } else {
                format!(" and removing {shown}")
            }
        );
        dirs
    } else {
        if !dirs.is_empty() {
            log::warn!("second signal: exiting now, leaving {shown}");
        }
        Vec::new()
    };
    if !registry.in_place() {
        use std::os::unix::process::CommandExt;
        // returns only if the exec failed; the registry stays locked until
        // the process ends, either way
        let e = std::process::Command::new("/proc/self/exe")
            .arg0("smelt")
            .arg(CLEANUP)
            .arg(code.to_string())
            .args(&remove)
            .exec();
        log::warn!("starting smelt's clean-up (/proc/self/exe): {e}");
    }
    let code = clean_up(code, &remove);
    std::process::exit(code);
}

/// `smelt __cleanup CODE DIR…`: what the signal thread exec'd into.
pub fn cleanup_main(args: &[OsString]) -> i32 {
    let code = args
        .first()
        .and_then(|c| c.to_str()?.parse().ok())
        .unwrap_or(super::EXIT_BUILD);
    // one more signal ends this at once, with the same code
    for signal in [SIGTERM, SIGINT] {
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal,
            code,
            Arc::new(AtomicBool::new(true)),
        );
    }
    let dirs: Vec<PathBuf> = args.iter().skip(1).map(PathBuf::from).collect();
    clean_up(code, &dirs)
}

/// Kills every child process and what they started, then removes `dirs`;
/// returns `code`.
fn clean_up(code: i32, dirs: &[PathBuf]) -> i32 {
    kill_children();
    for dir in dirs {
        // a kept base's overlay (engine/bases.rs) goes before its directory
        crate::fs::overlay::unmount_beneath(dir);
        // in place a writer thread may still add files: a few more tries
        for attempt in 1..=3 {
            match fs_err::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    if attempt == 3 {
                        eprintln!("smelt: {e}");
                    }
                }
                _ => break,
            }
        }
    }
    code
}

/// Kills and reaps every child and every process group a child leads (a
/// RUN and what it started), then the orphans that come to this process
/// (a child subreaper) as their parents die, until none is left.
fn kill_children() {
    use rustix::process::{Signal, WaitOptions, getpid, kill_process, kill_process_group, wait};
    let me = getpid();
    let _ = rustix::process::set_child_subreaper(Some(me));
    loop {
        for child in children_of(me) {
            // ESRCH: not a group leader, or gone already
            let _ = kill_process_group(child, Signal::KILL);
            let _ = kill_process(child, Signal::KILL);
        }
        match wait(WaitOptions::empty()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            // ECHILD: no child left
            Err(_) => return,
        }
    }
}

/// The processes whose parent is `parent` (from `/proc/*/stat`).
fn children_of(parent: rustix::process::Pid) -> Vec<rustix::process::Pid> {
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = fs_err::read_to_string(entry.path().join("stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid: i32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent.as_raw_nonzero().get())
                .then(|| rustix::process::Pid::from_raw(pid))
                .flatten()
        })
        .collect()
}
