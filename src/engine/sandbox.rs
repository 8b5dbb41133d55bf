//! The RUN sandbox. The engine starts `smelt __sandbox` (this same
//! binary, a fresh single-threaded process) for each RUN, with the spec
//! as JSON on its stdin (never on its command line, which every process
//! can read). That process
//! unshares its mount, PID, IPC and UTS namespaces (the network stays the
//! host's, as in BuildKit's default), mounts a small `/dev`, a fresh
//! read-only sysfs with the host's cgroups read-only under it, the
//! host's `/etc/resolv.conf` and `/etc/hosts` (read-only) and the RUN's
//! own mounts ([`RunMount`], prepared by `engine::mounts`) into the build
//! root, then starts the command as the first process of the new PID
//! namespace. Before the exec that process mounts `/proc` for its
//! namespace (so `/proc` lists only the RUN's processes) with docker's
//! masked and read-only paths, chroots into the root, changes to the
//! working directory, keeps docker's default capability set (bounding,
//! permitted and effective; inheritable and ambient empty; `no_new_privs`
//! off, as BuildKit's RUN has it, so setuid binaries such as sudo work),
//! drops to the step's user and groups (the kernel then clears a non-root
//! user's permitted and effective sets), and execs the command with
//! exactly the step's environment. The hostname is the host's, in a UTS
//! namespace of the RUN's own: the bound `/etc/hosts` still resolves it.
//!
//! `RUN --network=none` adds a network namespace whose only interface,
//! the loopback, the sandbox process brings up over rtnetlink (runc gives
//! BuildKit's RUN the same). `RUN --security=insecure` is BuildKit's
//! insecure entitlement: every capability, in all five sets, nothing of
//! `/proc` or `/sys` masked or read-only, and the host's extra devices.
//!
//! The command is PID 1 of its namespace, as in BuildKit (runc without
//! `--init`): `echo $$` prints 1, orphans are reparented to it, and when
//! it ends the kernel kills every other process of the namespace before
//! its parent's wait returns, so no process of a RUN outlives it. The
//! sandbox process waits for it and exits with its status (128 + signal
//! when a signal ended it). A cancelled build kills the sandbox's process
//! group, which holds the command too; and the command dies with the
//! sandbox process (parent-death signal), so killing either ends the RUN.
//!
//! Every mount target inside the build root is resolved beneath it with
//! `openat2(RESOLVE_IN_ROOT)`, as the kernel resolves it for a process
//! chrooted there, and mounted onto `/proc/self/fd/N` of the opened
//! target (runc's technique): a base image's `proc`, `dev`, `sys` or `etc`
//! that is a symlink (absolute or through `..`) is followed inside the
//! root, never to the host. Where such a link's target is missing, the
//! parent creates it inside the root, as runc does; a mount target that
//! is not a directory (`/proc`, `/dev`, `/sys`) fails the RUN naming it;
//! a host file whose target in the root is not a regular file is not
//! bound. The parent creates missing mount points the same way (directory
//! file descriptors, no string path) and afterwards removes the files it
//! created and puts their directories' mtimes back, so they never reach a
//! layer; directories stay, as in BuildKit's images, except those made
//! for a RUN's own mounts, removed while empty (BuildKit's stub cleaner).
//! The mounts die with the namespace; in place a RUN's own mounts are
//! made in a mount namespace the command gets between fork and exec.
//!
//! The parent side (`run`) prepares the root, streams the command's output
//! to the log line by line and reports its exit status. In place the
//! command runs directly (the container is the boundary, as in kaniko).

use rustix::fd::{AsFd, AsRawFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::MountFlags;
use rustix::thread::CapabilitySet;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a RUN could not be started or waited for. Each names what was
/// being done: the path in the build root, the mount, the program.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("bad sandbox spec: {0}")]
    Spec(#[source] serde_json::Error),
    #[error("encoding the sandbox spec: {0}")]
    EncodeSpec(#[source] serde_json::Error),
    #[error("RUN has no command")]
    NoCommand,
    #[error("opening the build root {}: {source}", .root.display())]
    Root {
        root: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("unshare(mount, PID, IPC, UTS namespaces): {0} (smelt must run as root)")]
    Unshare(#[source] Errno),
    #[error("RUN --network=none: unsharing the network namespace: {0}")]
    UnshareNetwork(#[source] Errno),
    #[error("RUN --network=none: bringing the loopback interface up: {0}")]
    Loopback(#[source] Errno),
    #[error(
        "RUN --network=none in place needs CAP_SYS_ADMIN to make a network namespace, and smelt lacks it"
    )]
    NoNetworkNamespace,
    #[error("RUN --mount target {0}: cannot be mounted in place")]
    InPlaceMount(String),
    #[error("invalid mount target {0:?}: it leads to / of the build root")]
    MountOverRoot(String),
    /// A system call of the setup (`what` says which, with its path).
    #[error("{what}: {errno}")]
    Syscall {
        what: String,
        #[source]
        errno: Errno,
    },
    #[error("cannot mount /{0}: it is not a directory in the build root")]
    NotADirectory(String),
    #[error("opening /{rel} in the build root: {}", describe(*.errno))]
    Open { rel: String, errno: Errno },
    /// A mount point the parent makes sure of (`path` is absolute in the
    /// root).
    #[error("{path}: {}", describe(*.errno))]
    Lookup { path: String, errno: Errno },
    #[error("{0}: it, or a directory above it, is not a directory in the build root")]
    AboveNotADirectory(String),
    #[error("{0}: cannot create it in the build root")]
    CannotCreate(String),
    #[error("{0}: a symlink whose target is not UTF-8")]
    LinkNotUtf8(String),
    #[error("{0}: too many levels of symbolic links")]
    TooManyLinks(String),
    #[error("creating {path} in the build root: {errno}")]
    Create {
        path: String,
        #[source]
        errno: Errno,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing the build root for RUN: {0}")]
    Prepare(#[source] Box<SandboxError>),
    #[error("making the sandbox's report pipe: {0}")]
    Pipe(#[source] std::io::Error),
    /// What the RUN's first process reported before its exec failed.
    #[error("{0}")]
    Init(String),
    #[error("executing {program}: {source}")]
    Exec {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("waiting for {program}: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("finding smelt's own binary: {0}")]
    OwnBinary(#[source] std::io::Error),
    #[error("starting the RUN sandbox ({}): {source}", .exe.display())]
    Start {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SandboxError {
    /// The errno the RUN's first process exits its exec with.
    fn errno(&self) -> Errno {
        match self {
            SandboxError::Syscall { errno, .. }
            | SandboxError::Open { errno, .. }
            | SandboxError::Lookup { errno, .. }
            | SandboxError::Create { errno, .. } => *errno,
            _ => Errno::PERM,
        }
    }
}

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
    /// `RUN --network=none`: a network namespace of the RUN's own whose
    /// only interface is the loopback, up.
    #[serde(default)]
    pub network_none: bool,
    /// `RUN --security=insecure`: every capability smelt has, in all five
    /// sets, no masked or read-only `/proc` paths, a writable `/sys` and
    /// the host's extra devices, as BuildKit's insecure entitlement gives.
    #[serde(default)]
    pub insecure: bool,
    /// `RUN --mount`s, parents before what is mounted inside them
    /// (`engine::mounts` prepares them).
    #[serde(default)]
    pub mounts: Vec<RunMount>,
}

/// One mount of a RUN (`RUN --mount`, or a secret the engine adds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunMount {
    /// Absolute in the root, cleaned.
    pub target: String,
    pub source: MountSource,
    pub read_only: bool,
}

/// What is mounted at a [`RunMount`]'s target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSource {
    /// A host path smelt prepared (never a path inside the build root),
    /// or, with `within`, that path resolved beneath `source` as the
    /// kernel resolves it for a process chrooted there (a stage's root or
    /// the context: its links never lead out): bound onto the target, a
    /// directory or (`file`) a regular file; a missing target is made as
    /// one of those and removed afterwards.
    Bind {
        source: PathBuf,
        file: bool,
        #[serde(default)]
        within: Option<String>,
        /// The source outlives the RUN (a cache): in place without a
        /// mount namespace, its contents are moved in and back.
        #[serde(default)]
        persistent: bool,
    },
    /// A fresh tmpfs of at most `size` bytes.
    Tmpfs { size: Option<u64> },
}

/// The exit code of a sandbox that could not start the command (docker
/// uses 125 for its own failures, 126/127 for a command it cannot run).
pub const SETUP_FAILED: i32 = 125;

/// Device nodes bound from the host into the sandbox's `/dev` (a tmpfs).
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Devices BuildKit adds for `--security=insecure` (bound when the host
/// has them), besides the host's loop devices.
const INSECURE_DEVICES: [&str; 6] = ["kmsg", "cuse", "fuse", "kvm", "loop-control", "net/tun"];
/// Host files bound read-only into the root (created empty when missing).
const HOST_FILES: [&str; 2] = ["etc/resolv.conf", "etc/hosts"];
/// The mount points the parent makes sure of: (path in the root, directory).
const MOUNT_POINTS: [(&str, bool); 5] = [
    ("proc", true),
    ("dev", true),
    ("sys", true),
    (HOST_FILES[0], false),
    (HOST_FILES[1], false),
];

/// docker's (and containerd's, so BuildKit's) default capability set:
/// `CapBnd` 00000000a80425fb.
const DEFAULT_CAPS: CapabilitySet = CapabilitySet::CHOWN
    .union(CapabilitySet::DAC_OVERRIDE)
    .union(CapabilitySet::FSETID)
    .union(CapabilitySet::FOWNER)
    .union(CapabilitySet::MKNOD)
    .union(CapabilitySet::NET_RAW)
    .union(CapabilitySet::SETGID)
    .union(CapabilitySet::SETUID)
    .union(CapabilitySet::SETFCAP)
    .union(CapabilitySet::SETPCAP)
    .union(CapabilitySet::NET_BIND_SERVICE)
    .union(CapabilitySet::SYS_CHROOT)
    .union(CapabilitySet::KILL)
    .union(CapabilitySet::AUDIT_WRITE);

/// docker's masked paths: files get `/dev/null` bound over them,
/// directories an empty read-only tmpfs.
const MASKED_PROC: [&str; 9] = [
    "acpi",
    "asound",
    "kcore",
    "keys",
    "latency_stats",
    "timer_list",
    "timer_stats",
    "sched_debug",
    "scsi",
];
const MASKED_SYS: [&str; 2] = ["firmware", "devices/virtual/powercap"];
/// docker's read-only paths under `/proc`.
const READ_ONLY_PROC: [&str; 5] = ["bus", "fs", "irq", "sys", "sysrq-trigger"];

/// How many symlinks the parent follows to a missing mount target.
const MAX_LINKS: u8 = 40;

/// Opens `rel` beneath `root` as the kernel resolves it for a process
/// chrooted there: symlinks (absolute ones too) and `..` stay inside
/// `root`, and `/proc` magic links are refused.
pub(crate) fn open_beneath(
    root: impl AsFd,
    rel: &str,
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let rel = rel.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let resolve = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&root, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            // a rename elsewhere raced the lookup: the kernel asks to retry
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r,
        }
    }
}

/// Opens `rel` under the directory `dir`, following no symlink at all.
fn open_under(dir: impl AsFd, rel: &str, flags: OFlags) -> rustix::io::Result<OwnedFd> {
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS;
    rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve)
}

/// The path through which the kernel reaches what `fd` refers to.
fn fd_path(fd: impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// An errno, with what a missing `openat2` means.
fn describe(e: Errno) -> String {
    if e == Errno::NOSYS {
        format!("{e} (RUN needs openat2, Linux 5.6 or later)")
    } else {
        e.to_string()
    }
}

/// Opens the build root itself (a directory smelt made).
fn open_root(root: &std::path::Path) -> Result<OwnedFd, SandboxError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| SandboxError::Root {
        root: root.to_path_buf(),
        source,
    })
}

/// The sandbox process: never returns on success (it exits with the
/// command's status).
pub fn sandbox_main() -> Result<std::convert::Infallible, SandboxError> {
    // on stdin, never the command line: a spec may carry secrets, and
    // every process can read every other's /proc/PID/cmdline
    let spec: Spec =
        serde_json::from_reader(std::io::stdin().lock()).map_err(SandboxError::Spec)?;
    let (program, args) = spec.argv.split_first().ok_or(SandboxError::NoCommand)?;
    unshare_namespaces()?;
    if spec.network_none {
        unshare_network().map_err(SandboxError::UnshareNetwork)?;
        loopback_up().map_err(SandboxError::Loopback)?;
    }
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .map_err(failed("making mounts private"))?;
    // opened in the new mount namespace: a descriptor opened before
    // refers to the host's mounts, onto which nothing can be mounted here
    let root = open_root(&spec.root)?;
    mount_dev(&root, spec.insecure)?;
    mount_sys(&root, spec.insecure)?;
    bind_host_files(&root)?;
    mount_run_mounts(&root, &spec.mounts)?;
    let proc_dir = mount_point(&root, "proc")?;
    let (mut report, report_to) = std::io::pipe().map_err(SandboxError::Pipe)?;
    let init = Init {
        root,
        proc_dir,
        workdir: spec.workdir.clone(),
        insecure: spec.insecure,
        uid: spec.uid,
        gid: spec.gid,
        groups: spec
            .groups
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect(),
        report: report_to,
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    start_init(&mut command, init);
    let spawned = command.spawn();
    // the pre-exec hook held the pipe's writing end
    drop(command);
    let mut said = String::new();
    let _ = report.read_to_string(&mut said);
    let mut child = match spawned {
        Ok(c) => c,
        Err(_) if !said.is_empty() => return Err(SandboxError::Init(said)),
        Err(source) => {
            return Err(SandboxError::Exec {
                program: program.clone(),
                source,
            });
        }
    };
    let status = child.wait().map_err(|source| SandboxError::Wait {
        program: program.clone(),
        source,
    })?;
    let code = match status.code() {
        Some(c) => c,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0),
    };
    std::process::exit(code)
}

#[allow(unsafe_code)]
fn unshare_namespaces() -> Result<(), SandboxError> {
    use rustix::thread::UnshareFlags;
    let flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWPID | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    // SAFETY: CLONE_FILES is not among the flags, so no file descriptor
    // table changes under any thread; this process has one thread.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(SandboxError::Unshare)
}

/// Moves this process into a network namespace of its own (only a
/// loopback interface, down). Neither allocates nor takes a lock: it also
/// runs between fork and exec in place.
#[allow(unsafe_code)]
fn unshare_network() -> Result<(), Errno> {
    // SAFETY: CLONE_FILES is not among the flags, so no file descriptor
    // table changes under any thread; the callers have one thread.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET) }
}

/// `lo`'s index: the kernel gives the loopback of every network namespace
/// index 1 (`LOOPBACK_IFINDEX`).
const LOOPBACK_INDEX: i32 = 1;

/// Brings the loopback interface of this network namespace up, as runc
/// does for a container without a network: an rtnetlink `RTM_NEWLINK`
/// request that sets `IFF_UP` on it, then the kernel's acknowledgement.
/// Neither allocates nor takes a lock (the buffers are on the stack): it
/// also runs between fork and exec in place.
fn loopback_up() -> Result<(), Errno> {
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    const RTM_NEWLINK: u16 = 16;
    const NLM_F_REQUEST: u16 = 1;
    const NLM_F_ACK: u16 = 4;
    const NLMSG_ERROR: u16 = 2;
    const IFF_UP: u32 = 1;
    const LEN: u32 = 32;
    // NETLINK_ROUTE is protocol 0
    let sock = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // struct nlmsghdr (len, type, flags, seq, pid), then struct ifinfomsg
    // (family, pad, type, index, flags, change), in native byte order
    let mut msg = [0u8; LEN as usize];
    msg[0..4].copy_from_slice(&LEN.to_ne_bytes());
    msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
    msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
    msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
    msg[20..24].copy_from_slice(&LOOPBACK_INDEX.to_ne_bytes());
    msg[24..28].copy_from_slice(&IFF_UP.to_ne_bytes());
    msg[28..32].copy_from_slice(&IFF_UP.to_ne_bytes());
    // an unconnected netlink socket sends to the kernel
    rustix::net::send(&sock, &msg, SendFlags::empty())?;
    let mut answer = [0u8; 256];
    let (got, _) = rustix::net::recv(&sock, &mut answer, RecvFlags::empty())?;
    // struct nlmsgerr after the header: the error (0 acknowledges)
    if got < 20 || u16::from_ne_bytes([answer[4], answer[5]]) != NLMSG_ERROR {
        return Err(Errno::PROTO);
    }
    match i32::from_ne_bytes([answer[16], answer[17], answer[18], answer[19]]) {
        0 => Ok(()),
        e => Err(Errno::from_raw_os_error(-e)),
    }
}

/// `rel`'s mount point in the root, which must be a directory.
fn mount_point(root: &OwnedFd, rel: &str) -> Result<OwnedFd, SandboxError> {
    open_beneath(root, rel, OFlags::PATH | OFlags::DIRECTORY).map_err(|errno| match errno {
        Errno::NOTDIR => SandboxError::NotADirectory(rel.to_string()),
        errno => SandboxError::Open {
            rel: rel.to_string(),
            errno,
        },
    })
}

/// The failure of `what`, a system call of the setup.
fn failed(what: &str) -> impl Fn(Errno) -> SandboxError + '_ {
    move |errno| SandboxError::Syscall {
        what: what.to_string(),
        errno,
    }
}

/// A tmpfs `/dev` with the host's basic devices bound in, devpts and shm
/// (and, when `insecure`, BuildKit's extra devices and the loop devices).
fn mount_dev(root: &OwnedFd, insecure: bool) -> Result<(), SandboxError> {
    use rustix::mount::{mount, mount_bind};
    let at = mount_point(root, "dev")?;
    mount(
        "tmpfs",
        fd_path(&at),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=755,size=65536k"),
    )
    .map_err(failed("mounting /dev"))?;
    // the tmpfs just mounted: everything below is ours
    let dev = open_beneath(root, "dev", OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(failed("opening /dev"))?;
    let mut devices: Vec<String> = DEVICES.iter().map(|d| d.to_string()).collect();
    if insecure {
        devices.extend(INSECURE_DEVICES.iter().map(|d| d.to_string()));
        devices.extend(host_loop_devices());
    }
    for d in &devices {
        let host = format!("/dev/{d}");
        if rustix::fs::stat(&host).is_err() {
            continue;
        }
        let (at, name) = match d.split_once('/') {
            Some((dir, name)) => {
                match rustix::fs::mkdirat(&dev, dir, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(failed(&format!("creating /dev/{dir}"))(e)),
                }
                let at = open_under(&dev, dir, OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(failed(&format!("opening /dev/{dir}")))?;
                (Some(at), name)
            }
            None => (None, d.as_str()),
        };
        let node = rustix::fs::openat(
            at.as_ref().map_or(dev.as_fd(), |a| a.as_fd()),
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(failed(&format!("creating /dev/{d}")))?;
        mount_bind(&host, fd_path(&node)).map_err(failed(&format!("binding /dev/{d}")))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        rustix::fs::symlinkat(target, &dev, name)
            .map_err(failed(&format!("linking /dev/{name}")))?;
    }
    for (d, fs, flags, data) in [
        (
            "pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620",
        ),
        (
            "shm",
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            c"mode=1777,size=65536k",
        ),
    ] {
        rustix::fs::mkdirat(&dev, d, Mode::from_raw_mode(0o755))
            .map_err(failed(&format!("creating /dev/{d}")))?;
        let at = open_under(&dev, d, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(failed(&format!("opening /dev/{d}")))?;
        mount(fs, fd_path(&at), fs, flags, Some(data))
            .map_err(failed(&format!("mounting /dev/{d}")))?;
    }
    Ok(())
}

/// The host's `/dev/loopN` block devices (`insecure` binds them all;
/// BuildKit makes nodes up to the first free one and seven more).
fn host_loop_devices() -> Vec<String> {
    let Ok(entries) = fs_err::read_dir("/dev") else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            n.strip_prefix("loop")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    found.sort();
    found
}

/// A fresh sysfs, read-only, with the host's cgroups bound read-only
/// under it and docker's masked paths; when `insecure`, both writable and
/// nothing masked (BuildKit's writable sysfs and cgroupfs).
fn mount_sys(root: &OwnedFd, insecure: bool) -> Result<(), SandboxError> {
    use rustix::mount::{mount, mount_bind, mount_remount};
    let quiet = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    let read_only = if insecure {
        MountFlags::empty()
    } else {
        MountFlags::RDONLY
    };
    let at = mount_point(root, "sys")?;
    mount("sysfs", fd_path(&at), "sysfs", quiet | read_only, None)
        .map_err(failed("mounting /sys"))?;
    let sys = mount_point(root, "sys")?;
    if let Ok(cgroup) = open_under(&sys, "fs/cgroup", OFlags::PATH | OFlags::DIRECTORY)
        && rustix::fs::stat("/sys/fs/cgroup").is_ok()
    {
        mount_bind("/sys/fs/cgroup", fd_path(&cgroup)).map_err(failed("binding /sys/fs/cgroup"))?;
        let bound = open_under(&sys, "fs/cgroup", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(failed("opening /sys/fs/cgroup"))?;
        mount_remount(fd_path(&bound), MountFlags::BIND | read_only | quiet, "")
            .map_err(failed("remounting /sys/fs/cgroup"))?;
    }
    if insecure {
        return Ok(());
    }
    for name in MASKED_SYS {
        mask(&sys, name, "/sys")?;
    }
    Ok(())
}

/// Binds `/dev/null` over the file `name` under `dir` (an empty read-only
/// tmpfs over a directory); nothing when it is missing.
fn mask(dir: &OwnedFd, name: &str, shown: &str) -> Result<(), SandboxError> {
    let Ok(at) = open_under(dir, name, OFlags::PATH) else {
        return Ok(());
    };
    let is_dir = rustix::fs::fstat(&at)
        .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
        .unwrap_or(false);
    if is_dir {
        rustix::mount::mount(
            "tmpfs",
            fd_path(&at),
            "tmpfs",
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(c"size=0"),
        )
    } else {
        rustix::mount::mount_bind("/dev/null", fd_path(&at))
    }
    .map_err(failed(&format!("masking {shown}/{name}")))
}

/// Makes `name` under `dir` a read-only bind mount of itself.
fn read_only(dir: &OwnedFd, name: &str, shown: &str) -> Result<(), SandboxError> {
    let Ok(at) = open_under(dir, name, OFlags::PATH) else {
        return Ok(());
    };
    let what = format!("making {shown}/{name} read-only");
    rustix::mount::mount_bind(fd_path(&at), fd_path(&at)).map_err(failed(&what))?;
    // the bind mount now on top, not the file below it
    let top = open_under(dir, name, OFlags::PATH).map_err(failed(&what))?;
    rustix::mount::mount_remount(
        fd_path(&top),
        MountFlags::BIND
            | MountFlags::RDONLY
            | MountFlags::NOSUID
            | MountFlags::NODEV
            | MountFlags::NOEXEC,
        "",
    )
    .map_err(failed(&what))
}

/// The host's resolv.conf and hosts, read-only, over the root's regular
/// files of those names (resolved inside the root); others are left.
fn bind_host_files(root: &OwnedFd) -> Result<(), SandboxError> {
    for f in HOST_FILES {
        let host = format!("/{f}");
        let host_is_file = rustix::fs::stat(&host)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        let Ok(target) = open_beneath(root, f, OFlags::PATH) else {
            continue;
        };
        let is_file = rustix::fs::fstat(&target)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile);
        if !host_is_file || !is_file {
            continue;
        }
        rustix::mount::mount_bind(&host, fd_path(&target))
            .map_err(failed(&format!("binding {host}")))?;
        let top = open_beneath(root, f, OFlags::PATH)
            .map_err(failed(&format!("opening {host} in the build root")))?;
        rustix::mount::mount_remount(
            fd_path(&top),
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            "",
        )
        .map_err(failed(&format!("making {host} read-only")))?;
    }
    Ok(())
}

/// The RUN's own mounts, in order (parents first), each onto its target
/// resolved beneath the root (a directory, or a file for a file's bind);
/// read-only by a remount of the new mount where asked.
fn mount_run_mounts(root: &OwnedFd, mounts: &[RunMount]) -> Result<(), SandboxError> {
    for m in mounts {
        let rel = m.target.trim_start_matches('/');
        let flags = match m.source {
            MountSource::Bind { file: true, .. } => OFlags::PATH,
            _ => OFlags::PATH | OFlags::DIRECTORY,
        };
        let lookup = |errno| SandboxError::Lookup {
            path: m.target.clone(),
            errno,
        };
        let at = open_beneath(root, rel, flags).map_err(lookup)?;
        let what = format!("mounting --mount target {}", m.target);
        match &m.source {
            MountSource::Bind {
                source,
                within,
                file,
                ..
            } => {
                let shown = format!("opening {}", source.display());
                let src = match within {
                    None => rustix::fs::open(source, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                        .map_err(failed(&shown))?,
                    Some(rel) => {
                        let top = open_root(source)?;
                        let kind = if *file {
                            OFlags::PATH
                        } else {
                            OFlags::PATH | OFlags::DIRECTORY
                        };
                        open_beneath(&top, rel, kind)
                            .map_err(failed(&format!("{shown} (/{rel} in it)")))?
                    }
                };
                rustix::mount::mount_bind(fd_path(&src), fd_path(&at)).map_err(failed(&what))?;
            }
            MountSource::Tmpfs { size } => {
                let data = tmpfs_data(*size);
                rustix::mount::mount(
                    "tmpfs",
                    fd_path(&at),
                    "tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    data.as_deref(),
                )
                .map_err(failed(&what))?;
            }
        }
        if m.read_only {
            // the mount just made, on top
            let top = open_beneath(root, rel, flags).map_err(lookup)?;
            rustix::mount::mount_remount(
                fd_path(&top),
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                "",
            )
            .map_err(failed(&format!(
                "making --mount target {} read-only",
                m.target
            )))?;
        }
    }
    Ok(())
}

/// A tmpfs mount's data: its size, when limited.
fn tmpfs_data(size: Option<u64>) -> Option<std::ffi::CString> {
    // digits only: no NUL byte
    size.and_then(|s| std::ffi::CString::new(format!("size={s}")).ok())
}

/// What the first process of the RUN's PID namespace does between fork
/// and exec.
struct Init {
    root: OwnedFd,
    /// `/proc`'s mount point in the root.
    proc_dir: OwnedFd,
    workdir: String,
    /// `--security=insecure`: nothing masked, every capability.
    insecure: bool,
    uid: u32,
    gid: u32,
    groups: Vec<rustix::process::Gid>,
    /// Where a failure is described for the sandbox process.
    report: std::io::PipeWriter,
}

impl Init {
    fn enter(&self) -> Result<(), SandboxError> {
        use rustix::process::{Gid, Uid};
        rustix::mount::mount(
            "proc",
            fd_path(&self.proc_dir),
            "proc",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            None,
        )
        .map_err(failed("mounting /proc"))?;
        let proc = open_beneath(&self.root, "proc", OFlags::PATH | OFlags::DIRECTORY)
            .map_err(failed("opening /proc"))?;
        if !self.insecure {
            for name in MASKED_PROC {
                mask(&proc, name, "/proc")?;
            }
            for name in READ_ONLY_PROC {
                read_only(&proc, name, "/proc")?;
            }
        }
        rustix::process::fchdir(&self.root).map_err(failed("entering the build root"))?;
        rustix::process::chroot(".").map_err(failed("chroot"))?;
        rustix::process::chdir(self.workdir.as_str()).map_err(failed(&format!(
            "changing to the working directory {}",
            self.workdir
        )))?;
        if self.insecure {
            // kept through the change to a non-root uid, then raised again
            rustix::thread::set_keep_capabilities(true).map_err(failed("keeping capabilities"))?;
        } else {
            drop_capabilities()?;
        }
        // one thread: the thread's ids are the process's
        rustix::thread::set_thread_groups(&self.groups).map_err(failed("setgroups"))?;
        let gid = Gid::from_raw(self.gid);
        rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(failed("setresgid"))?;
        let uid = Uid::from_raw(self.uid);
        rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(failed("setresuid"))?;
        if self.insecure {
            all_capabilities()?;
        }
        // after the id change, which clears it
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(failed("setting the parent-death signal"))?;
        Ok(())
    }
}

/// Keeps docker's default capabilities: the bounding set cut to them,
/// permitted and effective the same (what of them this process has),
/// inheritable and ambient empty. A later change to a non-root uid
/// clears permitted and effective.
fn drop_capabilities() -> Result<(), SandboxError> {
    use rustix::thread::{
        CapabilitySets, capabilities, clear_ambient_capability_set,
        remove_capability_from_bounding_set, set_capabilities,
    };
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if DEFAULT_CAPS.contains(cap) {
            continue;
        }
        match remove_capability_from_bounding_set(cap) {
            Ok(()) => {}
            // past the kernel's last capability
            Err(Errno::INVAL) => break,
            Err(e) => return Err(failed(&format!("dropping capability {bit}"))(e)),
        }
    }
    // kernels without ambient capabilities have none to clear
    match clear_ambient_capability_set() {
        Ok(()) | Err(Errno::INVAL) => {}
        Err(e) => return Err(failed("clearing ambient capabilities")(e)),
    }
    let have = capabilities(None).map_err(failed("reading capabilities"))?;
    let keep = have.permitted & DEFAULT_CAPS;
    set_capabilities(
        None,
        CapabilitySets {
            effective: keep,
            permitted: keep,
            inheritable: CapabilitySet::empty(),
        },
    )
    .map_err(failed("setting capabilities"))
}

/// `--security=insecure`, as BuildKit's insecure entitlement: every
/// capability this process has (smelt's own, the full set as root) in
/// the permitted, effective and inheritable sets and raised into the
/// ambient set, so a non-root user's command keeps them across its exec
/// too. The bounding set is left whole.
fn all_capabilities() -> Result<(), SandboxError> {
    use rustix::thread::{
        CapabilitySets, capabilities, configure_capability_in_ambient_set, set_capabilities,
    };
    let have = capabilities(None).map_err(failed("reading capabilities"))?;
    let all = have.permitted;
    set_capabilities(
        None,
        CapabilitySets {
            effective: all,
            permitted: all,
            inheritable: all,
        },
    )
    .map_err(failed("setting capabilities"))?;
    let mut raised = false;
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if !all.contains(cap) {
            continue;
        }
        match configure_capability_in_ambient_set(cap, true) {
            Ok(()) => raised = true,
            // a kernel without ambient capabilities refuses the first one
            Err(Errno::INVAL) if !raised => return Ok(()),
            Err(e) => return Err(failed(&format!("raising ambient capability {bit}"))(e)),
        }
    }
    Ok(())
}

/// Makes `init` run in the child between fork and exec.
#[allow(unsafe_code)]
fn start_init(command: &mut Command, init: Init) {
    let hook = move || -> std::io::Result<()> {
        init.enter().map_err(|e| {
            let _ = (&init.report).write_all(e.to_string().as_bytes());
            std::io::Error::from_raw_os_error(e.errno().raw_os_error())
        })
    };
    // SAFETY: the sandbox process has one thread, so the forked child
    // holds no lock another thread took (allocating and formatting in the
    // hook are safe); the hook changes only the child's own mounts, root,
    // directory, credentials and capabilities.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, hook);
    }
}

/// Mount points the parent created in the root. Files are removed after
/// the command; directories stay, as they do in BuildKit's images
/// (`/proc`, `/dev` and `/sys` then appear, empty, in the layer).
#[derive(Debug, Default)]
struct MountPoints {
    /// Files (and, for RUN mounts, directories) created: their directory,
    /// name, and whether a directory.
    created: Vec<(OwnedFd, String, bool)>,
    /// Directories created are stubs to remove afterwards too (RUN
    /// mounts, as BuildKit >= 0.11 removes them, recursively).
    stubs: bool,
    /// Directories whose mtime creating a file changed: the directory,
    /// its (device, inode) and its mtime before.
    times: Vec<(OwnedFd, (u64, u64), rustix::fs::Timespec)>,
}

impl MountPoints {
    /// Makes sure `rel` exists beneath `root` (a directory when `dir`), as
    /// a process chrooted there would see it. A missing target of a
    /// symlink is created where the link points, inside the root; nothing
    /// is ever created, or written, outside it.
    fn ensure(
        &mut self,
        root: &OwnedFd,
        rel: &str,
        dir: bool,
        links: u8,
    ) -> Result<(), SandboxError> {
        let shown = format!("/{rel}");
        let flags = if dir {
            OFlags::PATH | OFlags::DIRECTORY
        } else {
            OFlags::PATH
        };
        match open_beneath(root, rel, flags) {
            Ok(_) => return Ok(()),
            Err(Errno::NOENT) => {}
            Err(Errno::NOTDIR) => return Err(SandboxError::AboveNotADirectory(shown)),
            Err(errno) => return Err(SandboxError::Lookup { path: shown, errno }),
        }
        let rel = rel.trim_end_matches('/');
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        if matches!(name, "" | "." | "..") {
            return Err(SandboxError::CannotCreate(shown));
        }
        if !parent.is_empty() {
            self.ensure(root, parent, true, links)?;
        }
        let parent_lookup = |errno| SandboxError::Lookup {
            path: format!("/{parent}"),
            errno,
        };
        let at =
            open_beneath(root, parent, OFlags::PATH | OFlags::DIRECTORY).map_err(parent_lookup)?;
        let before = rustix::fs::fstat(&at).map_err(parent_lookup)?;
        let made = if dir {
            rustix::fs::mkdirat(&at, name, Mode::from_raw_mode(0o755))
        } else {
            rustix::fs::openat(
                &at,
                name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            )
            .map(drop)
        };
        match made {
            Ok(()) if dir && !self.stubs => Ok(()),
            Ok(()) => {
                let id = (before.st_dev, before.st_ino);
                if !self.times.iter().any(|(_, i, _)| *i == id) {
                    let mtime = rustix::fs::Timespec {
                        tv_sec: before.st_mtime,
                        tv_nsec: i64::try_from(before.st_mtime_nsec).unwrap_or(0),
                    };
                    let again = at.try_clone().map_err(|source| SandboxError::Io {
                        path: format!("/{parent}"),
                        source,
                    })?;
                    self.times.push((again, id, mtime));
                }
                self.created.push((at, name.to_string(), dir));
                Ok(())
            }
            // there but unresolved: a symlink whose target is missing
            Err(Errno::EXIST) if links > 0 => {
                let target = rustix::fs::readlinkat(&at, name, Vec::new()).map_err(|errno| {
                    SandboxError::Lookup {
                        path: shown.clone(),
                        errno,
                    }
                })?;
                let Ok(target) = target.to_str() else {
                    return Err(SandboxError::LinkNotUtf8(shown));
                };
                let next = match target.strip_prefix('/') {
                    Some(absolute) => absolute.to_string(),
                    None if parent.is_empty() => target.to_string(),
                    None => format!("{parent}/{target}"),
                };
                self.ensure(root, &next, dir, links - 1)
            }
            Err(Errno::EXIST) => Err(SandboxError::TooManyLinks(shown)),
            Err(errno) => Err(SandboxError::Create { path: shown, errno }),
        }
    }

    /// Removes the files created (if the command left them empty) and the
    /// stub directories (if empty), and puts their directories' times
    /// back, newest first.
    fn restore(self) {
        for (at, name, dir) in self.created.iter().rev() {
            if *dir {
                // only while empty: what the command put there stays
                let _ = rustix::fs::unlinkat(at, name.as_str(), AtFlags::REMOVEDIR);
                continue;
            }
            if let Ok(st) = rustix::fs::statat(at, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                && FileType::from_raw_mode(st.st_mode) == FileType::RegularFile
                && st.st_size == 0
            {
                let _ = rustix::fs::unlinkat(at, name.as_str(), AtFlags::empty());
            }
        }
        for (at, _, mtime) in self.times.iter().rev() {
            let times = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: *mtime,
            };
            let _ = rustix::fs::utimensat(rustix::fs::CWD, fd_path(at), &times, AtFlags::empty());
        }
    }
}

/// Logs each line `stream` gives, after `prefix`, on a thread of its own.
fn pump<R: Read + Send + 'static>(stream: Option<R>, prefix: &str) -> std::thread::JoinHandle<()> {
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
pub fn run(spec: &Spec, log_prefix: &str, cancel: &AtomicBool) -> Result<i32, SandboxError> {
    // in place without CAP_SYS_ADMIN (an unprivileged kaniko container):
    // no mount namespace, the contents are swapped in (`Swaps`)
    let swap = spec.in_place && !spec.mounts.is_empty() && !has_sys_admin();
    let mut points = MountPoints::default();
    let mut stubs = MountPoints {
        stubs: true,
        ..MountPoints::default()
    };
    let prepared = open_root(&spec.root).and_then(|root| {
        if !spec.in_place {
            MOUNT_POINTS
                .iter()
                .try_for_each(|(rel, dir)| points.ensure(&root, rel, *dir, MAX_LINKS))?;
        }
        spec.mounts.iter().try_for_each(|m| {
            let dir = !matches!(m.source, MountSource::Bind { file: true, .. });
            let rel = m.target.trim_start_matches('/');
            match rel.rsplit_once('/') {
                // swapped: only the parents are made (and removed after)
                Some((parent, _)) if swap => stubs.ensure(&root, parent, true, MAX_LINKS),
                None if swap => Ok(()),
                _ => {
                    stubs.ensure(&root, rel, dir, MAX_LINKS)?;
                    refuse_root(&root, rel, &m.target)
                }
            }
        })
    });
    if let Err(e) = prepared {
        stubs.restore();
        points.restore();
        return Err(SandboxError::Prepare(Box::new(e)));
    }
    let result = if swap {
        let mut swaps = Swaps::default();
        match swaps.swap_in(&spec.mounts) {
            Ok(()) => {
                let plain = Spec {
                    mounts: Vec::new(),
                    ..spec.clone()
                };
                let ran = spawn_in_place(&plain, log_prefix, cancel);
                let back = swaps.swap_out();
                ran.and_then(|code| back.map(|()| code))
            }
            Err(e) => {
                let _ = swaps.swap_out();
                Err(e)
            }
        }
    } else if spec.in_place {
        spawn_in_place(spec, log_prefix, cancel)
    } else {
        spawn(spec, log_prefix, cancel)
    };
    stubs.restore();
    points.restore();
    result
}

/// In place without a mount namespace, as the kaniko fork does it: what a
/// target holds is moved aside, the mount's contents put there (a bind's
/// copy or a cache directory moved in, copied when on another filesystem;
/// an empty directory for a tmpfs), and after the RUN the contents go
/// (a cache's back where they came from) and what was there comes back,
/// its parent's mtime put back. `ro` cannot be enforced: a read-only
/// cache is copied in and its copy thrown away.
#[derive(Debug, Default)]
struct Swaps(Vec<Swap>);

#[derive(Debug)]
struct Swap {
    /// The target, its parent resolved.
    target: PathBuf,
    /// Where the target's own file went meanwhile.
    aside: Option<PathBuf>,
    /// A cache's directory, to take the contents back (moved, or copied
    /// when `copied`).
    back: Option<PathBuf>,
    copied: bool,
    /// The parent and its mtime before.
    parent: (PathBuf, filetime::FileTime),
}

impl Swaps {
    fn swap_in(&mut self, mounts: &[RunMount]) -> Result<(), SandboxError> {
        for (i, m) in mounts.iter().enumerate() {
            let io = |path: &std::path::Path| {
                let path = path.display().to_string();
                move |source| SandboxError::Io { path, source }
            };
            let (parent, name) = m.target.rsplit_once('/').unwrap_or(("", &m.target));
            if matches!(name, "" | "." | "..") {
                return Err(SandboxError::CannotCreate(m.target.clone()));
            }
            let parent = fs_err::canonicalize(if parent.is_empty() { "/" } else { parent })
                .map_err(|source| SandboxError::Io {
                    path: m.target.clone(),
                    source,
                })?;
            let mtime = filetime::FileTime::from_last_modification_time(
                &fs_err::metadata(&parent).map_err(io(&parent))?,
            );
            let target = parent.join(name);
            let aside = if target.symlink_metadata().is_ok() {
                let aside = parent.join(format!(".smelt-mount-{}-{i}-{name}", std::process::id()));
                fs_err::rename(&target, &aside).map_err(io(&target))?;
                Some(aside)
            } else {
                None
            };
            let mut swap = Swap {
                target: target.clone(),
                aside,
                back: None,
                copied: false,
                parent: (parent, mtime),
            };
            let put = match &m.source {
                MountSource::Bind {
                    within: Some(_), ..
                } => Err(SandboxError::InPlaceMount(m.target.clone())),
                MountSource::Bind {
                    source, persistent, ..
                } => {
                    let keep = *persistent && !m.read_only;
                    if keep {
                        swap.back = Some(source.clone());
                    }
                    // a bind's copy is ours to move; a read-only cache is copied
                    let moved = if !*persistent || keep {
                        rustix::fs::rename(source, &target)
                    } else {
                        Err(Errno::XDEV)
                    };
                    swap.copied = moved.is_err();
                    match moved {
                        Ok(()) => Ok(()),
                        // another filesystem (or a read-only cache)
                        Err(Errno::XDEV) => copy_all(source, &target).map_err(io(&target)),
                        Err(errno) => Err(SandboxError::Create {
                            path: m.target.clone(),
                            errno,
                        }),
                    }
                }
                MountSource::Tmpfs { .. } => fs_err::create_dir(&target)
                    .and_then(|()| {
                        fs_err::set_permissions(
                            &target,
                            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                        )
                    })
                    .map_err(io(&target)),
            };
            if put.is_err() {
                // nothing moved in: the cache stays where it is, only a
                // partial copy goes
                swap.back = None;
            }
            self.0.push(swap);
            put?;
        }
        Ok(())
    }

    /// Puts everything back, newest first; the first failure is returned
    /// after every swap was tried.
    fn swap_out(self) -> Result<(), SandboxError> {
        let mut first = Ok(());
        for s in self.0.into_iter().rev() {
            let io = |path: &std::path::Path| {
                let path = path.display().to_string();
                move |source| SandboxError::Io { path, source }
            };
            let step = || -> Result<(), SandboxError> {
                match (&s.back, s.copied) {
                    (Some(back), false) => {
                        fs_err::rename(&s.target, back).map_err(io(&s.target))?;
                    }
                    (Some(back), true) => {
                        crate::fs::tree::remove_any(back).map_err(|e| SandboxError::Io {
                            path: back.display().to_string(),
                            source: std::io::Error::other(e.to_string()),
                        })?;
                        copy_all(&s.target, back).map_err(io(back))?;
                        remove_all(&s.target)?;
                    }
                    (None, _) => remove_all(&s.target)?,
                }
                if let Some(aside) = &s.aside {
                    fs_err::rename(aside, &s.target).map_err(io(aside))?;
                }
                filetime::set_file_mtime(&s.parent.0, s.parent.1).map_err(io(&s.parent.0))
            };
            if let Err(e) = step()
                && first.is_ok()
            {
                first = Err(e);
            }
        }
        first
    }
}

/// Removes `path`, a directory tree or a file, if there.
fn remove_all(path: &std::path::Path) -> Result<(), SandboxError> {
    crate::fs::tree::remove_any(path).map_err(|e| SandboxError::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    })
}

/// Copies the tree at `from` to `to` (which must not exist): directories,
/// files, symlinks, with their modes, owners and mtimes.
fn copy_all(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs_err::symlink_metadata(from)?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        fs_err::os::unix::fs::symlink(fs_err::read_link(from)?, to)?;
    } else if kind.is_dir() {
        fs_err::create_dir(to)?;
        for entry in fs_err::read_dir(from)? {
            let entry = entry?;
            copy_all(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_file() {
        fs_err::copy(from, to)?;
    } else {
        // a device, fifo or socket of a cache: left out
        return Ok(());
    }
    rustix::fs::chownat(
        rustix::fs::CWD,
        to,
        Some(rustix::process::Uid::from_raw(meta.uid())),
        Some(rustix::process::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if !kind.is_symlink() {
        fs_err::set_permissions(
            to,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )?;
        filetime::set_file_mtime(to, filetime::FileTime::from_last_modification_time(&meta))?;
    }
    Ok(())
}

/// Fails when `rel` resolves to the root itself (a link to `/` or `..`):
/// nothing may be mounted over the whole root (BuildKit's `invalid mount
/// target "/"`).
fn refuse_root(root: &OwnedFd, rel: &str, target: &str) -> Result<(), SandboxError> {
    let id = |fd: &OwnedFd| {
        rustix::fs::fstat(fd)
            .map(|st| (st.st_dev, st.st_ino))
            .map_err(|errno| SandboxError::Lookup {
                path: target.to_string(),
                errno,
            })
    };
    let at = open_beneath(root, rel, OFlags::PATH).map_err(|errno| SandboxError::Lookup {
        path: target.to_string(),
        errno,
    })?;
    if id(&at)? == id(root)? {
        return Err(SandboxError::MountOverRoot(target.to_string()));
    }
    Ok(())
}

/// Whether this process may make mount and network namespaces.
fn has_sys_admin() -> bool {
    rustix::thread::capabilities(None).is_ok_and(|c| c.effective.contains(CapabilitySet::SYS_ADMIN))
}

fn spawn(spec: &Spec, log_prefix: &str, cancel: &AtomicBool) -> Result<i32, SandboxError> {
    let exe = std::env::current_exe().map_err(SandboxError::OwnBinary)?;
    let json = serde_json::to_vec(spec).map_err(SandboxError::EncodeSpec)?;
    let mut command = Command::new(&exe);
    command.arg("__sandbox");
    let started = |source| SandboxError::Start {
        exe: exe.clone(),
        source,
    };
    let mut child = start(&mut command, Stdio::piped()).map_err(started)?;
    // the spec through a pipe (it may hold secrets): a failed write shows
    // as the sandbox's own failure to read it
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&json);
    }
    wait(child, log_prefix, cancel)
}

/// In place: the command itself, started from this process with the
/// step's working directory, user, groups and environment. smelt's own
/// binary is not started again: in the executor's container the base
/// image's files have replaced the libraries it was linked with. With
/// `--network=none` the command gets a network namespace of its own with
/// the loopback up (that needs CAP_SYS_ADMIN, which a kaniko container
/// without privileges lacks: the RUN then fails saying so); the
/// capabilities are the container's whatever `--security` says, as in
/// kaniko.
fn spawn_in_place(spec: &Spec, log_prefix: &str, cancel: &AtomicBool) -> Result<i32, SandboxError> {
    let (program, args) = spec.argv.split_first().ok_or(SandboxError::NoCommand)?;
    if spec.network_none && !has_sys_admin() {
        return Err(SandboxError::NoNetworkNamespace);
    }
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.workdir);
    drop_privileges(&mut command, spec)?;
    let child = start(&mut command, Stdio::null()).map_err(|source| SandboxError::Exec {
        program: program.clone(),
        source,
    })?;
    wait(child, log_prefix, cancel)
}

#[allow(unsafe_code)]
fn drop_privileges(command: &mut Command, spec: &Spec) -> Result<(), SandboxError> {
    use rustix::process::{Gid, Uid};
    let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let gid = Gid::from_raw(spec.gid);
    let uid = Uid::from_raw(spec.uid);
    let network_none = spec.network_none;
    let mounts = InPlaceMounts::of(&spec.mounts, &spec.workdir)?;
    let hook = move || -> std::io::Result<()> {
        if network_none {
            unshare_network()?;
            loopback_up()?;
        }
        mounts.mount()?;
        // the forked child has one thread: the thread's ids are the process's
        rustix::thread::set_thread_groups(&groups)?;
        rustix::thread::set_thread_res_gid(gid, gid, gid)?;
        rustix::thread::set_thread_res_uid(uid, uid, uid)?;
        Ok(())
    };
    // SAFETY: the hook makes system calls only and neither allocates nor
    // takes locks (the group list and the mounts' paths were built before
    // the fork, the netlink buffers are on the stack).
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(command, hook);
    }
    Ok(())
}

/// In place, a RUN's mounts: made in a mount namespace of the command's
/// own between fork and exec, so they vanish with it. The paths are C
/// strings built before the fork (the hook must not allocate).
struct InPlaceMounts {
    mounts: Vec<(std::ffi::CString, InPlaceSource, bool)>,
    /// Entered again once mounted: the working directory may be a mount
    /// target, or below one.
    workdir: Option<std::ffi::CString>,
}

enum InPlaceSource {
    Bind(std::ffi::CString),
    Tmpfs(Option<std::ffi::CString>),
}

impl InPlaceMounts {
    fn of(mounts: &[RunMount], workdir: &str) -> Result<InPlaceMounts, SandboxError> {
        let c = |s: &str| {
            std::ffi::CString::new(s.as_bytes()).map_err(|_| SandboxError::InPlaceMount(s.into()))
        };
        let mut made = Vec::new();
        for m in mounts {
            let source = match &m.source {
                MountSource::Bind {
                    source,
                    within: None,
                    ..
                } => InPlaceSource::Bind(c(&source.to_string_lossy())?),
                // resolving beneath a root needs the sandbox: engine::mounts
                // copies instead in place
                MountSource::Bind { .. } => {
                    return Err(SandboxError::InPlaceMount(m.target.clone()));
                }
                MountSource::Tmpfs { size } => InPlaceSource::Tmpfs(tmpfs_data(*size)),
            };
            made.push((c(&m.target)?, source, m.read_only));
        }
        Ok(InPlaceMounts {
            workdir: c(workdir).ok(),
            mounts: made,
        })
    }

    /// Unshares the mount namespace and mounts each; system calls only.
    #[allow(unsafe_code)]
    fn mount(&self) -> std::io::Result<()> {
        use rustix::mount::{
            MountPropagationFlags, mount, mount_bind, mount_change, mount_remount,
        };
        if self.mounts.is_empty() {
            return Ok(());
        }
        // SAFETY: CLONE_FILES is not among the flags; the forked child
        // has one thread.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }?;
        match mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        ) {
            // `/` is not a mount point: a chroot, not a container (whose
            // root always is one, and which smelt asks `--force` for); the
            // mounts there keep the propagation their caller chose
            Ok(()) | Err(Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
        for (target, source, read_only) in &self.mounts {
            match source {
                InPlaceSource::Bind(s) => mount_bind(s.as_c_str(), target.as_c_str())?,
                InPlaceSource::Tmpfs(data) => mount(
                    c"tmpfs",
                    target.as_c_str(),
                    c"tmpfs",
                    MountFlags::NOSUID | MountFlags::NODEV,
                    data.as_deref(),
                )?,
            }
            if *read_only {
                mount_remount(
                    target.as_c_str(),
                    MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                    c"",
                )?;
            }
        }
        if let Some(w) = &self.workdir {
            rustix::process::chdir(w.as_c_str())?;
        }
        Ok(())
    }
}

/// Starts the child in a process group of its own, so a cancelled build
/// can stop it and everything it started.
fn start(command: &mut Command, stdin: Stdio) -> std::io::Result<std::process::Child> {
    std::os::unix::process::CommandExt::process_group(command, 0);
    command
        .stdin(stdin)
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
) -> Result<i32, SandboxError> {
    let out = pump(child.stdout.take(), log_prefix);
    let err = pump(child.stderr.take(), log_prefix);
    let status = wait_or_kill(&mut child, cancel).map_err(|source| SandboxError::Wait {
        program: "RUN".to_string(),
        source,
    })?;
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
            Ok(_) | Err(Errno::INTR) => {}
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn default_caps_are_dockers() {
        assert_eq!(DEFAULT_CAPS.bits(), 0xa804_25fb);
    }

    /// The mount points of a root whose `proc`, `dev`, `sys` and `etc`
    /// point out of it (absolutely, through `..`, and dangling) are made
    /// inside the root; the directories they name outside are untouched.
    #[test]
    fn mount_points_through_hostile_links_stay_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs_err::create_dir_all(&root).unwrap();
        fs_err::create_dir_all(outside.join("etc")).unwrap();
        fs_err::write(outside.join("etc/keep"), "host").unwrap();
        let before = filetime::FileTime::from_last_modification_time(
            &fs_err::metadata(outside.join("etc")).unwrap(),
        );
        symlink(outside.join("etc"), root.join("etc")).unwrap();
        symlink("../../outside/proc-missing", root.join("proc")).unwrap();
        symlink(&outside, root.join("sys")).unwrap();
        symlink("/../dev-real", root.join("dev")).unwrap();
        let fd = open_root(&root).unwrap();
        let mut points = MountPoints::default();
        for (rel, dir) in MOUNT_POINTS {
            points.ensure(&fd, rel, dir, MAX_LINKS).unwrap();
        }
        let inside = root.join(outside.strip_prefix("/").unwrap());
        assert!(inside.join("etc/resolv.conf").is_file());
        assert!(inside.join("etc/hosts").is_file());
        assert!(root.join("outside/proc-missing").is_dir());
        assert!(root.join("dev-real").is_dir());
        assert!(inside.is_dir());
        points.restore();
        assert!(!inside.join("etc/resolv.conf").exists());
        let listed: Vec<_> = fs_err::read_dir(&outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(listed, vec!["etc"]);
        let etc: Vec<_> = fs_err::read_dir(outside.join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(etc, vec!["keep"]);
        assert_eq!(
            filetime::FileTime::from_last_modification_time(
                &fs_err::metadata(outside.join("etc")).unwrap()
            ),
            before
        );
    }

    #[test]
    fn a_symlink_loop_or_a_file_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        symlink("proc", t.path().join("proc")).unwrap();
        fs_err::write(t.path().join("sys"), "").unwrap();
        let fd = open_root(t.path()).unwrap();
        let mut points = MountPoints::default();
        let err = points
            .ensure(&fd, "proc", true, MAX_LINKS)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/proc: "), "{err}");
        let err = points
            .ensure(&fd, "sys", true, MAX_LINKS)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/sys: it, or a directory above it, is not a directory"),
            "{err}"
        );
    }
}
