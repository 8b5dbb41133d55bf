//! The RUN sandbox as the command sees it: only its own processes (it is
//! PID 1), namespaces of its own but the network, docker's default
//! capabilities, no way to the host through `/proc/<pid>/root`, base
//! images whose `proc`, `dev`, `sys` or `etc` point at the host (canary
//! directories checked before and after), and no process left behind by
//! a RUN, whether it ends or its build is cancelled; `--network=none`
//! (only an up loopback) and `--security=insecure` (every capability),
//! which also key the cache.

use crate::harness::{TestContext, tree};
use crate::registry_server::{Auth, TestRegistry, busybox};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};

/// Builds `FROM <base>` plus `steps` into an OCI layout; the unpacked rootfs.
fn build(base: &str, steps: &str) -> (TestContext, PathBuf) {
    let t = TestContext::new(&format!("FROM {base}\n{steps}"));
    t.build_outputs(&["--custom-platform=linux/amd64"]);
    let rootfs = t.unpack();
    (t, rootfs)
}

fn read(rootfs: &Path, rel: &str) -> String {
    fs_err::read_to_string(rootfs.join(rel)).unwrap()
}

/// `/proc/self/ns/NAME` of this test process, as `readlink` prints it.
fn host_ns(name: &str) -> String {
    fs_err::read_link(format!("/proc/self/ns/{name}"))
        .unwrap()
        .display()
        .to_string()
}

/// A number no other test's process carries on its command line.
fn marker(base: u32) -> String {
    (base + std::process::id() % 9_000).to_string()
}

/// The pids of host processes whose command line holds `marker`; each is
/// killed, so a failing test leaves nothing behind.
fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs_err::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = fs_err::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(marker) {
            let _ = std::process::Command::new("kill")
                .args(["-9", &name])
                .status();
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

#[test]
fn run_is_pid_1_and_sees_only_its_own_processes_and_namespaces() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let (_t, rootfs) = build(
        &base,
        "RUN echo $$ > /pid && ls /proc | busybox grep '^[0-9]' > /pids && \
         for n in pid uts ipc mnt net; do echo $n $(busybox readlink /proc/self/ns/$n); done > /ns\n",
    );
    assert_eq!(read(&rootfs, "pid"), "1\n");
    let pids = read(&rootfs, "pids");
    let numbers: Vec<u32> = pids.lines().map(|l| l.parse().unwrap()).collect();
    // sh (1), ls and grep: never the host's hundreds of processes
    assert!(
        numbers.contains(&1) && numbers.len() <= 4 && numbers.iter().all(|n| *n < 10),
        "{pids}"
    );
    let ns = read(&rootfs, "ns");
    for (name, own) in [
        ("pid", true),
        ("uts", true),
        ("ipc", true),
        ("mnt", true),
        ("net", false),
    ] {
        let line = ns
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap();
        let host = format!("{name} {}", host_ns(name));
        assert!(line.len() > name.len() + 5, "{ns}");
        assert_eq!(line != host, own, "{name}: RUN {line:?}, host {host:?}");
    }
}

#[test]
fn run_has_dockers_default_capabilities_and_a_user_none() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let status = "busybox grep -E '^(Cap|NoNewPrivs)' /proc/self/status";
    let (_t, rootfs) = build(
        &base,
        &format!(
            "RUN {status} > /root-caps\nUSER app\nWORKDIR /home/app\nRUN {status} > app-caps\n"
        ),
    );
    assert_eq!(
        read(&rootfs, "root-caps"),
        "CapInh:\t0000000000000000\nCapPrm:\t00000000a80425fb\nCapEff:\t00000000a80425fb\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
    );
    assert_eq!(
        read(&rootfs, "home/app/app-caps"),
        "CapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n\
         CapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\nNoNewPrivs:\t0\n"
    );
}

#[test]
fn run_cannot_read_a_host_file_through_proc_root() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary");
    fs_err::write(&canary, "host-secret-7c1f\n").unwrap();
    let (_t, rootfs) = build(
        &base,
        &format!(
            "RUN for p in /proc/[0-9]*/root; do cat $p{0} 2>/dev/null; done > /leak; \
             cat /proc/1/root{0} > /leak1 2>&1; true\n",
            canary.display()
        ),
    );
    assert_eq!(read(&rootfs, "leak"), "");
    let leak1 = read(&rootfs, "leak1");
    assert!(
        !leak1.contains("host-secret") && leak1.contains("No such file"),
        "{leak1}"
    );
    assert_eq!(
        fs_err::read_to_string(&canary).unwrap(),
        "host-secret-7c1f\n"
    );
}

/// Path, type, content or link target, mtime and ctime (which no write
/// can put back) of every entry under `dir`, sorted.
fn snapshot(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = fs_err::symlink_metadata(&d).unwrap();
        out.push(format!("{} dir {}", d.display(), times(&meta)));
        for entry in fs_err::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let what = if meta.is_symlink() {
                format!("-> {}", fs_err::read_link(&path).unwrap().display())
            } else {
                format!("{:?}", fs_err::read_to_string(&path).unwrap())
            };
            out.push(format!("{} {what} {}", path.display(), times(&meta)));
        }
    }
    out.sort();
    out
}

fn times(meta: &std::fs::Metadata) -> String {
    format!(
        "m={}.{} c={}.{}",
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    )
}

#[test]
fn base_links_for_proc_dev_sys_and_etc_never_reach_the_host() {
    let reg = TestRegistry::start(Auth::None);
    let outside = tempfile::tempdir().unwrap();
    let host = outside.path();
    for d in ["proc", "dev", "sys", "etc"] {
        fs_err::create_dir_all(host.join(d)).unwrap();
        fs_err::write(host.join(d).join("keep"), format!("host {d}\n")).unwrap();
    }
    // the host has hosts but no resolv.conf there: neither may be written
    fs_err::write(host.join("etc/hosts"), "10.9.9.9 host-only\n").unwrap();
    // a base whose mount points all lead to the canaries, absolutely or
    // through ..; no /etc of its own
    let b = TestContext::new("FROM scratch\nCOPY bin/ /bin/\nCOPY links/ /\n");
    fs_err::create_dir_all(b.ctx().join("bin")).unwrap();
    fs_err::copy(busybox(), b.ctx().join("bin/busybox")).unwrap();
    for a in ["sh", "cat", "ls", "echo", "true"] {
        symlink("busybox", b.ctx().join("bin").join(a)).unwrap();
    }
    fs_err::create_dir_all(b.ctx().join("links")).unwrap();
    let up = "../".repeat(host.components().count() + 2);
    let rel = host.strip_prefix("/").unwrap().display().to_string();
    symlink(host.join("proc"), b.ctx().join("links/proc")).unwrap();
    symlink(format!("{up}{rel}/dev"), b.ctx().join("links/dev")).unwrap();
    symlink(host.join("sys"), b.ctx().join("links/sys")).unwrap();
    symlink(host.join("etc"), b.ctx().join("links/etc")).unwrap();
    let layout = b.path("base-oci");
    b.build(&[
        "--no-push",
        "--custom-platform=linux/amd64",
        "--oci-layout-path",
        layout.to_str().unwrap(),
    ])
    .ok();
    reg.push_layout(&layout, "hostile:1");
    let before = snapshot(host);
    let (t, rootfs) = build(
        &format!("{}/hostile:1", reg.host),
        "RUN ls /proc/1/ > /proc-listing; cat /etc/hosts > /hosts-seen; \
         echo written > /etc/new; echo ran > /ran\n",
    );
    assert_eq!(snapshot(host), before, "the build changed the canaries");
    assert_eq!(read(&rootfs, "ran"), "ran\n");
    // the links were followed inside the root: /proc was mounted there
    assert!(read(&rootfs, "proc-listing").contains("status"));
    assert!(!read(&rootfs, "hosts-seen").contains("host-only"));
    let listing = tree(&rootfs);
    assert!(
        listing.contains(&format!("/{rel}/etc/new 644 0:0 file n=1 \"written\\n\"")),
        "{listing}"
    );
    drop(t);
}

#[test]
fn a_run_leaves_no_process_behind() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let mark = marker(410_000);
    build(
        &base,
        // the background processes hold no output pipe: the RUN ends either way
        &format!(
            "RUN (busybox setsid sleep {mark} >/dev/null 2>&1 &); (sleep {mark} >/dev/null 2>&1 &)\n"
        ),
    );
    assert_eq!(processes_with(&mark), Vec::<String>::new());
}

#[test]
fn a_cancelled_build_leaves_no_run_process() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let mark = marker(420_000);
    let t = TestContext::new(&format!(
        "FROM {base} AS slow\n\
         RUN (busybox setsid sleep {mark} >/dev/null 2>&1 &); echo slow-started; sleep 120 # {mark}\n\
         FROM {base} AS failing\n\
         RUN sleep 3; exit 7\n\
         FROM {base}\n\
         COPY --from=slow /bin/sh /a\n\
         COPY --from=failing /bin/sh /b\n"
    ));
    let run = t.build(&["--custom-platform=linux/amd64", "--no-push"]);
    let err = run.stderr();
    assert_eq!(run.code(), 1, "{err}");
    assert!(
        err.contains(
            "Dockerfile:4: RUN: process \"/bin/sh -c sleep 3; exit 7\" did not complete successfully: exit code: 7"
        ),
        "{err}"
    );
    // the slow RUN was running when the other stage failed
    assert!(err.contains("slow-started"), "{err}");
    // the sandbox process and the RUN's shell carry the marker too
    assert_eq!(processes_with(&mark), Vec::<String>::new());
}

/// `--network=none`: a network namespace of the RUN's own whose only
/// interface is the loopback, up (ping to 127.0.0.1 answers), and from
/// which a listener on the host's 127.0.0.1 is out of reach; the next
/// RUN, without the flag, reaches it.
#[test]
fn run_network_none_has_only_an_up_loopback_and_no_way_to_the_host() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let reach = format!(
        "if busybox nc -w 5 127.0.0.1 {port} </dev/null; then echo reached; else echo unreachable; fi"
    );
    let (_t, rootfs) = build(
        &base,
        &format!(
            "RUN --network=none {reach} > /none-host; ls /sys/class/net > /none-links; \
             busybox ip -o link show > /none-ip; \
             busybox ping -c 1 -W 5 127.0.0.1 > /dev/null && echo pong > /none-ping; \
             busybox readlink /proc/self/ns/net > /none-ns\n\
             RUN {reach} > /host; busybox readlink /proc/self/ns/net > /host-ns\n"
        ),
    );
    assert_eq!(read(&rootfs, "none-host"), "unreachable\n");
    assert_eq!(read(&rootfs, "none-links"), "lo\n");
    let ip = read(&rootfs, "none-ip");
    assert!(
        ip.lines().count() == 1 && ip.starts_with("1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{ip}"
    );
    assert_eq!(read(&rootfs, "none-ping"), "pong\n");
    let host_net = host_ns("net");
    assert_ne!(read(&rootfs, "none-ns").trim_end(), host_net);
    assert_eq!(read(&rootfs, "host"), "reached\n");
    assert_eq!(read(&rootfs, "host-ns").trim_end(), host_net);
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A `CapXxx:` line of a `/proc/PID/status` text.
fn cap_line<'a>(status: &'a str, name: &str) -> &'a str {
    status
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// `--security=insecure`: every capability smelt has (what this root
/// test process has) in all five sets, for root and for a non-root user
/// (through the ambient set, as runc gives BuildKit's insecure RUN), no
/// masked `/proc` path and a writable `/sys`; the sandbox mode keeps
/// docker's default set.
#[test]
fn run_security_insecure_has_every_capability() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let status = "busybox grep -E '^Cap' /proc/self/status";
    let mounts = "busybox grep -E ' /(sys|proc/keys) ' /proc/self/mountinfo";
    let (_t, rootfs) = build(
        &base,
        &format!(
            "RUN --security=insecure {status} > /insecure-caps; {mounts} > /insecure-mounts\n\
             RUN --security=sandbox {status} > /sandbox-caps; {mounts} > /sandbox-mounts\n\
             USER app\nWORKDIR /home/app\nRUN --security=insecure {status} > app-caps\n"
        ),
    );
    let host = fs_err::read_to_string("/proc/self/status").unwrap();
    let full = cap_line(&host, "CapEff").trim_start_matches("CapEff:\t");
    assert_ne!(full, "00000000a80425fb");
    for file in ["insecure-caps", "home/app/app-caps"] {
        let caps = read(&rootfs, file);
        for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(cap_line(&caps, set), format!("{set}:\t{full}"), "{file}");
        }
    }
    let sandbox = read(&rootfs, "sandbox-caps");
    assert_eq!(cap_line(&sandbox, "CapEff"), "CapEff:\t00000000a80425fb");
    let insecure = read(&rootfs, "insecure-mounts");
    // the mount's own options (mountinfo's sixth field)
    assert!(insecure.contains(" /sys rw,"), "{insecure}");
    assert!(!insecure.contains("/proc/keys"), "{insecure}");
    let masked = read(&rootfs, "sandbox-mounts");
    assert!(masked.contains(" /sys ro,"), "{masked}");
    assert!(masked.contains(" /proc/keys "), "{masked}");
}

/// A RUN's cache key holds its network and security modes: the same
/// command with `--network=none` or `--security=insecure` misses, with
/// `--network=default` hits.
#[test]
fn run_network_and_security_modes_key_the_cache() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new("");
    let mut hits = Vec::new();
    for (i, flags) in [
        "",
        "--network=none",
        "--network=default",
        "--security=insecure",
    ]
    .iter()
    .enumerate()
    {
        t.file(
            "Dockerfile",
            &format!("FROM {base}\nRUN {flags} echo same > /same\n"),
        );
        let dest = format!("{}/app:{i}", reg.host);
        let cache_repo = format!("{}/cache", reg.host);
        let log = t
            .build(&[
                "--cache",
                "--cache-repo",
                &cache_repo,
                "--destination",
                &dest,
            ])
            .ok()
            .stderr();
        hits.push(log.lines().filter(|l| l.contains("] cache hit ")).count());
    }
    assert_eq!(hits, [0, 0, 1, 0]);
}

/// In place (kaniko's executor, root in a container with every
/// capability), `--network=none` also gives the RUN a network namespace
/// with only an up loopback: the host's listener is out of reach, and
/// reached by the next RUN.
#[test]
fn in_place_run_network_none_has_only_an_up_loopback() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in listener.incoming() {});
    let reach = |tag: &str| {
        format!(
            "if busybox nc -w 5 127.0.0.1 {port} </dev/null; then echo {tag}-reached; \
             else echo {tag}-unreachable; fi"
        )
    };
    let dockerfile = format!(
        "FROM {base}\n\
         RUN --network=none {}; busybox ip -o link show | busybox sed 's/^/none-link /'; \
         busybox ping -c 1 -W 5 127.0.0.1 >/dev/null && echo none-pong\n\
         RUN {}\n",
        reach("none"),
        reach("host")
    );
    let root = crate::in_place::executor_root(&dockerfile);
    let dest = format!("{}/in-place-net:1", reg.host);
    let (ok, log) = crate::in_place::build_workspace(root.path(), &dest);
    assert!(ok, "the in-place build failed:\n{log}");
    for want in ["none-unreachable", "none-pong", "host-reached"] {
        assert!(log.contains(want), "no {want} in\n{log}");
    }
    let links: Vec<&str> = log.lines().filter(|l| l.contains("none-link ")).collect();
    assert!(
        links.len() == 1 && links[0].contains("none-link 1: lo: <LOOPBACK,UP,LOWER_UP>"),
        "{log}"
    );
}
