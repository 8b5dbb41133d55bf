//! RUN --mount: binds of the context (with `.dockerignore`), of a stage
//! and of an image; `rw` binds whose writes vanish; cache mounts kept
//! between separate smelt runs and shared by concurrent ones with
//! `sharing=locked`; tmpfs; hostile targets in a crafted base; in place.
//! No mount target, and no directory made for one, reaches the image.

use crate::harness::{TestContext, assert_has_lines, assert_no_line_starting, tree};
use crate::hostile::{Canary, dir, file, push_image, symlink, tar_of};
use crate::registry_server::{Auth, TestRegistry};
use std::path::Path;

fn read(rootfs: &Path, path: &str) -> String {
    fs_err::read_to_string(rootfs.join(path)).unwrap()
}

/// Builds `t` with `extra` flags; returns the unpacked image's rootfs.
fn build(t: &TestContext, extra: &[&str]) -> std::path::PathBuf {
    let mut args = vec!["--custom-platform=linux/amd64"];
    args.extend_from_slice(extra);
    t.build_outputs(&args);
    t.unpack()
}

#[test]
fn bind_mounts_read_the_context_a_stage_and_an_image_and_leave_nothing() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let other = reg.push_base("other:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base} AS gen\n\
         RUN mkdir -p /out && echo from-stage > /out/s.txt\n\
         FROM {base}\n\
         RUN --mount=type=bind,source=dir,target=/ctx \
             --mount=type=bind,from=gen,source=/out,target=/st/deep \
             --mount=from={other},src=/bin/busybox,dst=/opt/bb \
             --mount=source=dir/a.txt,target=/etc/a.txt \
             cat /ctx/a.txt /st/deep/s.txt /etc/a.txt > /seen \
             && test ! -e /ctx/ignored.txt && cmp /opt/bb /bin/busybox && echo ok >> /seen \
             && ! sh -c 'echo x >> /ctx/a.txt' 2>/dev/null && ! touch /ctx/a.txt 2>/dev/null\n"
    ));
    t.file("dir/a.txt", "from-context\n")
        .file("dir/ignored.txt", "hidden\n")
        .file(".dockerignore", "dir/ignored.txt\n");
    let before = tree(&t.ctx());
    let rootfs = build(&t, &[]);
    assert_eq!(
        read(&rootfs, "seen"),
        "from-context\nfrom-stage\nfrom-context\nok\n"
    );
    assert_eq!(tree(&t.ctx()), before, "the context changed");
    let listing = tree(&rootfs);
    for gone in ["/ctx", "/st", "/opt", "/etc/a.txt", "/out"] {
        assert_no_line_starting(&listing, &[&format!("{gone} "), &format!("{gone}/")]);
    }
}

#[test]
fn writes_under_an_rw_bind_are_thrown_away_and_ro_binds_refuse_them() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN mkdir /c && echo covered > /c/under\n\
         RUN --mount=type=bind,target=/c,rw echo changed > /c/keep.txt && rm /c/Dockerfile \
             && echo new > /c/new.txt && cat /c/keep.txt > /seen\n\
         RUN --mount=target=/c,readwrite=false ! touch /c/z 2>/dev/null && echo refused > /ro\n\
         RUN --mount=target=/m ! touch /m/z 2>/dev/null && echo refused >> /ro\n\
         RUN --security=insecure --mount=target=/i mount -o remount,rw,bind /i; \
             echo insecure > /i/keep.txt; touch /i/made; true\n"
    ));
    t.file("keep.txt", "context\n");
    let before = tree(&t.ctx());
    let rootfs = build(&t, &[]);
    assert_eq!(tree(&t.ctx()), before, "the context changed");
    assert_eq!(read(&rootfs, "seen"), "changed\n");
    assert_eq!(read(&rootfs, "ro"), "refused\nrefused\n");
    let listing = tree(&rootfs);
    // what the mount covered is back, untouched
    assert_has_lines(&listing, &["/c/under 644 0:0 file n=1 \"covered\\n\""]);
    assert_no_line_starting(
        &listing,
        &["/c/keep.txt", "/c/new.txt", "/c/z", "/m ", "/i "],
    );
}

/// The cache directory holding `name` under `dir`, searched.
fn find_file(dir: &Path, name: &str) -> Option<std::path::PathBuf> {
    for e in fs_err::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
        if p.is_dir()
            && !p.is_symlink()
            && let Some(f) = find_file(&p, name)
        {
            return Some(f);
        }
    }
    None
}

#[test]
fn a_cache_mount_is_kept_between_builds() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base} AS seed\n\
         RUN mkdir -p /seed/sub && echo seeded > /seed/sub/s && chmod 710 /seed\n\
         FROM {base}\n\
         RUN --mount=type=cache,target=/s,from=seed,source=/seed \
             cat /s/sub/s >> /s/log && cat /s/log > /seeded && stat -c %a /s > /seed-mode\n\
         RUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log \
             && wc -l < /var/cache/app/log > /count && stat -c '%u:%g %a' /var/cache/app > /stat\n\
         RUN --mount=type=cache,target=/u,uid=1000,gid=1001,mode=0750,id=other \
             stat -c '%u:%g %a' /u > /stat-u && touch /u/x\n\
         RUN --mount=type=cache,id=twice,target=/a,sharing=locked \
             --mount=type=cache,id=twice,target=/b,sharing=locked touch /a/one && ls /b > /twice\n"
    ));
    let caches = t.path("caches");
    let flag = format!("--cache-mount-dir={}", caches.display());
    let rootfs = build(&t, &[&flag]);
    assert_eq!(read(&rootfs, "count").trim(), "1");
    assert_eq!(read(&rootfs, "stat"), "0:0 755\n");
    assert_eq!(read(&rootfs, "stat-u"), "1000:1001 750\n");
    // one cache mounted twice by a RUN, locked: the same directory, no wait
    assert_eq!(read(&rootfs, "twice"), "one\n");
    let rootfs = build(&t, &[&flag]);
    assert_eq!(read(&rootfs, "count").trim(), "2");
    // seeded from the stage once, when new; kept after
    assert_eq!(read(&rootfs, "seeded"), "seeded\nseeded\n");
    // a source directory keeps its mode
    assert_eq!(read(&rootfs, "seed-mode"), "710\n");
    assert!(find_file(&caches, "log").is_some());
    assert!(find_file(&caches, "x").is_some());
    let listing = tree(&rootfs);
    assert_no_line_starting(&listing, &["/var/cache", "/u "]);

    // by default in <kaniko-dir>/caches, which smelt's cleanup keeps
    let kaniko = t.path("kaniko");
    let flag = format!("--kaniko-dir={}", kaniko.display());
    build(&t, &[&flag]);
    let rootfs = build(&t, &[&flag]);
    assert_eq!(read(&rootfs, "count").trim(), "2");
    let left: Vec<String> = fs_err::read_dir(&kaniko)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["caches"], "the work directory was not removed");
}

/// Each RUN writes three lines, waits (a while at most) for the other
/// build's RUN to have started, then writes three more. Under the lock the
/// other cannot start, so the first RUN's six lines stay together; without
/// it the two meet in the middle and the lines interleave. A shared cache
/// mount is how each sees the other's start.
#[test]
fn concurrent_builds_take_turns_on_a_locked_cache() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base}\nARG WHO\nARG OTHER\n\
         RUN --mount=type=cache,id=meet,target=/meet \
             --mount=type=cache,target=/c,sharing=locked \
             touch /meet/$WHO && for i in 1 2 3; do echo $WHO >> /c/log; done \
             && n=0; while [ ! -e /meet/$OTHER ] && [ $n -lt 30 ]; do sleep 0.1; n=$((n+1)); done; \
             for i in 4 5 6; do echo $WHO >> /c/log; done\n"
    );
    let caches = tempfile::tempdir().unwrap();
    let flag = format!("--cache-mount-dir={}", caches.path().display());
    let builds: Vec<_> = [("a", "b"), ("b", "a")]
        .into_iter()
        .map(|(who, other)| {
            let t = TestContext::new(&dockerfile);
            let flag = flag.clone();
            let who = format!("WHO={who}");
            let other = format!("OTHER={other}");
            std::thread::spawn(move || {
                t.build(&[
                    "--no-push",
                    &flag,
                    "--build-arg",
                    &who,
                    "--build-arg",
                    &other,
                ])
                .ok();
            })
        })
        .collect();
    for b in builds {
        b.join().unwrap();
    }
    let log = fs_err::read_to_string(find_file(caches.path(), "log").unwrap()).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 12, "{log}");
    // each RUN's six lines together: the second waited for the first
    let mut runs = lines.clone();
    runs.dedup();
    assert_eq!(runs.len(), 2, "the two RUNs interleaved:\n{log}");
}

#[test]
fn a_tmpfs_mount_has_its_size_and_vanishes() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=tmpfs,target=/scratch/t,size=2m \
             echo x > /scratch/t/f && grep ' /scratch/t ' /proc/mounts | cut -d' ' -f3 > /fs \
             && df -k /scratch/t | tail -n 1 | awk '{{print $2}}' > /size\n"
    ));
    let rootfs = build(&t, &[]);
    assert_eq!(read(&rootfs, "fs"), "tmpfs\n");
    assert_eq!(read(&rootfs, "size"), "2048\n");
    assert_no_line_starting(&tree(&rootfs), &["/scratch"]);
}

#[test]
fn hostile_mount_targets_stay_in_the_root() {
    let reg = TestRegistry::start(Auth::None);
    let outside = tempfile::tempdir().unwrap();
    let canary = Canary::new(outside.path());
    let base = reg.push_base("base:1", "linux/amd64");
    let links = tar_of(&[
        dir("links"),
        symlink("links/root", "/"),
        symlink("links/up", "../.."),
        symlink("links/canary", &canary.path.display().to_string()),
        symlink("links/dangling", &format!("{}/new", canary.path.display())),
        file("links/plain", "x"),
    ]);
    let hostile = push_image(&reg, "hostile/mounts:1", &[links]);
    let t = TestContext::new(&format!(
        "FROM {hostile} AS links\n\
         FROM {base}\n\
         COPY --from=links /links /links\n\
         WORKDIR /w\n\
         RUN --mount=type=bind,source=a.txt,target=../../x.txt \
             --mount=type=tmpfs,target=/links/root/tmp/m \
             --mount=type=tmpfs,target=/links/up/t2 \
             --mount=type=cache,target=/links/canary/sub \
             --mount=type=bind,target=/links/dangling \
             cat /x.txt > /seen && touch /links/canary/sub/written /tmp/m/w /t2/w && ls /links/dangling >> /seen\n\
         RUN --mount=from=links,source=/links/root,target=/m ls /m > /seen-stage\n"
    ));
    t.file("a.txt", "a\n");
    let caches = t.path("caches");
    let rootfs = build(&t, &[&format!("--cache-mount-dir={}", caches.display())]);
    canary.assert_intact("mount targets through links");
    assert!(read(&rootfs, "seen").starts_with("a\n"));
    let listing = tree(&rootfs);
    assert_no_line_starting(&listing, &["/x.txt", "/tmp/m", "/t2"]);
    // the cache got the write, the host canary did not
    assert!(find_file(&caches, "written").is_some());
    // a stage's link to `/` is its own root
    assert_eq!(read(&rootfs, "seen-stage"), "links\n");

    // a stage's link to the host's canary leads to nothing in the stage
    let t = TestContext::new(&format!(
        "FROM {hostile} AS links\n\
         FROM {base}\n\
         RUN --mount=from=links,source=/links/canary,target=/m ls /m/sub && cat /m/secret\n"
    ));
    let run = t.build(&["--no-push"]);
    let err = run.stderr();
    assert_ne!(run.code(), 0, "{err}");
    assert!(err.contains("/links/canary"), "{err}");
    assert!(
        !err.contains("host secret") && !err.contains("keep"),
        "{err}"
    );
    canary.assert_intact("a bind source through a link");

    // a target that leads to the root itself is refused
    let t = TestContext::new(&format!(
        "FROM {hostile} AS links\n\
         FROM {base}\n\
         COPY --from=links /links /links\n\
         RUN --mount=type=tmpfs,target=/links/up/links/root true\n"
    ));
    let run = t.build(&["--no-push"]);
    let err = run.stderr();
    assert_ne!(run.code(), 0, "{err}");
    assert!(
        err.contains(
            "invalid mount target \"/links/up/links/root\": it leads to / of the build root"
        ),
        "{err}"
    );
}

#[test]
fn mounts_work_in_place() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base}\n\
         RUN mkdir /covered && echo under > /covered/f\n\
         RUN --mount=type=bind,target=/covered --mount=type=tmpfs,target=/t \
             --mount=type=cache,target=/cache,id=c \
             cat /covered/note.txt > /seen && test ! -e /covered/f && echo y > /cache/y && echo t > /t/t\n\
         RUN --mount=type=cache,target=/cache,id=c cat /cache/y >> /seen\n\
         WORKDIR /wd\n\
         RUN --mount=type=bind,target=. cat note.txt >> /seen\n"
    );
    let root = crate::in_place::executor_root(&dockerfile);
    let dest = format!("{}/in-place-mounts:1", reg.host);
    let (ok, log) = crate::in_place::build_workspace(root.path(), &dest);
    assert!(ok, "the in-place build failed:\n{log}");
    assert!(find_file(&root.path().join("kaniko/caches"), "y").is_some());
    let rootfs = reg.pull_rootfs(&dest, root.path());
    assert_eq!(
        read(&rootfs, "seen"),
        "from the context\ny\nfrom the context\n"
    );
    let listing = tree(&rootfs);
    assert_has_lines(&listing, &["/covered/f 644 0:0 file n=1 \"under\\n\""]);
    assert_no_line_starting(&listing, &["/t ", "/cache", "/covered/note.txt", "/wd/"]);
}

/// How many steps a build took from the layer cache.
fn cache_hits(log: &str) -> usize {
    log.lines().filter(|l| l.contains("] cache hit ")).count()
}

#[test]
fn a_bind_mounts_files_key_the_run_and_the_report_names_the_mount() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN --mount=type=bind,source=src,target=/src --mount=type=cache,target=/c \
             cat /src/a > /out && date +%s%N >> /c/log\n"
    ));
    t.file("src/a", "one\n").file("src/ignored", "x\n");
    t.file(".dockerignore", "src/ignored\n");
    let caches = t.path("caches");
    let flags = |dest: &str, report: &Path| -> Vec<String> {
        [
            "--cache",
            "--cache-repo",
            &format!("{}/cache", reg.host),
            "--destination",
            &format!("{}/{dest}", reg.host),
            &format!("--cache-mount-dir={}", caches.display()),
            "--cache-report",
            &report.display().to_string(),
        ]
        .iter()
        .map(ToString::to_string)
        .collect()
    };
    let run = |dest: &str| -> (String, serde_json::Value) {
        let report = t.path(&format!("{dest}.json"));
        let f = flags(dest, &report);
        let args: Vec<&str> = f.iter().map(String::as_str).collect();
        let log = t.build(&args).ok().stderr();
        let report = serde_json::from_str(&fs_err::read_to_string(&report).unwrap()).unwrap();
        (log, report)
    };
    let (log, _) = run("app:1");
    assert_eq!(cache_hits(&log), 0, "{log}");
    // the cache's contents changed (the RUN wrote to it), an ignored file
    // too: neither is part of the key
    t.file("src/ignored", "y\n");
    let (log, _) = run("app:2");
    assert_eq!(cache_hits(&log), 1, "{log}");
    // the bound files changed: a miss, and the report names the mount
    t.file("src/a", "two\n");
    let (log, report) = run("app:3");
    assert_eq!(cache_hits(&log), 0, "{log}");
    assert_eq!(
        report["steps"][0]["changed"],
        serde_json::json!(["mount /src"]),
        "{report}"
    );
}

/// In place without CAP_SYS_ADMIN (an unprivileged kaniko container): no
/// mount namespace, so the contents are swapped in and out as the kaniko
/// fork does; the image is the same.
#[test]
fn mounts_work_in_place_without_cap_sys_admin() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let dockerfile = format!(
        "FROM {base}\n\
         RUN mkdir /covered && echo under > /covered/f && grep CapEff /proc/self/status\n\
         RUN --mount=type=bind,target=/covered,rw --mount=type=tmpfs,target=/t \
             --mount=type=cache,target=/deep/cache,id=c --mount=source=note.txt,target=/etc/n \
             cat /covered/note.txt /etc/n > /seen && test ! -e /covered/f && echo y > /deep/cache/y \
             && echo t > /t/t && echo w > /covered/w\n\
         RUN --mount=type=cache,target=/cache,id=c cat /cache/y >> /seen && ls -a /covered >> /seen\n"
    );
    let root = crate::in_place::executor_root(&dockerfile);
    let secret = tempfile::NamedTempFile::new().unwrap();
    let dest = format!("{}/in-place-swap:1", reg.host);
    let (code, log) = crate::in_place::run_executor_in(
        root.path(),
        secret.path(),
        &crate::in_place::workspace_args(&dest, &[]),
        &[],
        true,
    );
    assert_eq!(code, Some(0), "the in-place build failed:\n{log}");
    // the RUN really lacked CAP_SYS_ADMIN (bit 21)
    let eff = log
        .lines()
        .find_map(|l| l.split("CapEff:").nth(1))
        .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
        .unwrap_or_else(|| panic!("no CapEff in\n{log}"));
    assert_eq!(eff & (1 << 21), 0, "{log}");
    assert!(find_file(&root.path().join("kaniko/caches"), "y").is_some());
    assert!(
        !root.path().join("workspace/w").exists(),
        "an rw bind's write reached the context"
    );
    let rootfs = reg.pull_rootfs(&dest, root.path());
    assert_eq!(
        read(&rootfs, "seen"),
        "from the context\nfrom the context\ny\n.\n..\nf\n"
    );
    let listing = tree(&rootfs);
    assert_has_lines(&listing, &["/covered/f 644 0:0 file n=1 \"under\\n\""]);
    assert_no_line_starting(
        &listing,
        &[
            "/t ",
            "/cache",
            "/deep",
            "/covered/w",
            "/covered/note.txt",
            "/etc/n",
            "/covered/.",
        ],
    );
}
