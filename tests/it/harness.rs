//! The test harness: a temporary context with a Dockerfile, a way to run
//! `smelt build` on it, and readers for what it wrote.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct TestContext {
    pub dir: tempfile::TempDir,
}

pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code(), 0, "smelt failed:\n{}", self.stderr());
        self
    }
}

pub fn smelt_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_smelt"))
}

/// Runs an outside tool; panics with its stderr when it fails.
#[track_caller]
pub fn tool(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} is needed by the tests (the README's test command installs it): {e}")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The HTTP status of a curl request (`args`: method, headers, body, URL).
pub fn http_status(args: &[&str]) -> String {
    let mut all = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    tool("curl", &all)
}

impl TestContext {
    pub fn new(dockerfile: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs_err::create_dir_all(dir.path().join("ctx")).expect("mkdir ctx");
        fs_err::write(dir.path().join("ctx/Dockerfile"), dockerfile).expect("write Dockerfile");
        TestContext { dir }
    }

    pub fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a context file (parents created).
    pub fn file(&self, rel: &str, content: &str) -> &Self {
        let p = self.ctx().join(rel);
        fs_err::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs_err::write(&p, content).expect("write");
        self
    }

    /// Runs `smelt build` on the context with extra flags.
    pub fn build(&self, extra: &[&str]) -> Run {
        self.build_with(smelt_bin(), &["build"], extra, &[])
    }

    pub fn build_with(
        &self,
        bin: PathBuf,
        pre: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Run {
        let ctx = self.ctx();
        let mut cmd = Command::new(bin);
        cmd.args(pre)
            .arg("--context")
            .arg(&ctx)
            .args(extra)
            .env("NO_COLOR", "1")
            // no credentials from the machine running the tests
            .env("DOCKER_CONFIG", self.path("no-docker-config"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run {
            output: cmd.output().expect("run smelt"),
        }
    }

    /// Builds into an OCI layout and docker archive; returns the digest printed.
    pub fn build_outputs(&self, extra: &[&str]) -> String {
        self.build_outputs_run(extra).stdout().trim().to_string()
    }

    /// As `build_outputs`, returning the finished run (its log too).
    pub fn build_outputs_run(&self, extra: &[&str]) -> Run {
        let layout = self.path("oci");
        let tar = self.path("image.tar");
        let mut args = vec![
            "--no-push",
            "--destination",
            "example.test/smelt/it:t1",
            "--oci-layout-path",
            layout.to_str().expect("utf8"),
            "--tar-path",
            tar.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        self.build(&args).ok()
    }

    /// The OCI layout the build wrote.
    pub fn layout(&self) -> Layout {
        Layout(self.path("oci"))
    }

    /// Unpacks the OCI layout's layers with umoci; returns the rootfs.
    pub fn unpack(&self) -> PathBuf {
        let rootfs = self.path("rootfs");
        self.layout().unpack("t1", &rootfs);
        rootfs
    }

    /// The image config blob, as written in the OCI layout (skopeo's
    /// `inspect --config` would drop the Docker fields: Healthcheck, OnBuild, Shell).
    pub fn config(&self) -> serde_json::Value {
        // skopeo must accept the layout too
        tool(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("oci:{}:t1", self.path("oci").display()),
            ],
        );
        self.layout().config()
    }

    /// Where a blob of the OCI layout lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.layout().blob_path(digest)
    }

    /// The OCI layout's `index.json`.
    pub fn index(&self) -> serde_json::Value {
        self.layout().index()
    }

    /// The manifest the OCI layout's index points at.
    pub fn manifest(&self) -> serde_json::Value {
        self.layout().manifest()
    }
}

/// An OCI image layout on disk, read without smelt's own code.
pub struct Layout(pub PathBuf);

impl Layout {
    /// Where a blob lives.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.0
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    fn json(path: &Path) -> serde_json::Value {
        serde_json::from_slice(&fs_err::read(path).expect("read")).expect("json")
    }

    /// `index.json`.
    pub fn index(&self) -> serde_json::Value {
        Self::json(&self.0.join("index.json"))
    }

    /// The manifest the index points at (the first).
    pub fn manifest(&self) -> serde_json::Value {
        let index = self.index();
        Self::json(&self.blob_path(index["manifests"][0]["digest"].as_str().expect("digest")))
    }

    /// The config blob of that manifest.
    pub fn config(&self) -> serde_json::Value {
        let manifest = self.manifest();
        Self::json(&self.blob_path(manifest["config"]["digest"].as_str().expect("digest")))
    }

    /// Unpacks the image tagged `tag` with umoci (`raw unpack`: the root
    /// filesystem only, no runtime config) into `rootfs`.
    pub fn unpack(&self, tag: &str, rootfs: &Path) {
        tool(
            "umoci",
            &[
                "raw",
                "unpack",
                "--image",
                &format!("{}:{tag}", self.0.display()),
                rootfs.to_str().expect("utf8"),
            ],
        );
    }
}

/// Asserts that every line of `wants` is a line of `listing`.
#[track_caller]
pub fn assert_has_lines<S: AsRef<str>>(listing: &str, wants: &[S]) {
    for want in wants {
        let want = want.as_ref();
        assert!(
            listing.lines().any(|l| l == want),
            "missing {want:?} in:\n{listing}"
        );
    }
}

/// Asserts that some line of `listing` starts with each of `prefixes`.
#[track_caller]
pub fn assert_has_line_starting(listing: &str, prefixes: &[&str]) {
    for p in prefixes {
        assert!(
            listing.lines().any(|l| l.starts_with(p)),
            "no line starting {p:?} in:\n{listing}"
        );
    }
}

/// Asserts that no line of `listing` starts with any of `prefixes`.
#[track_caller]
pub fn assert_no_line_starting(listing: &str, prefixes: &[&str]) {
    for p in prefixes {
        assert!(
            !listing.lines().any(|l| l.starts_with(p)),
            "{p} should not be in the image:\n{listing}"
        );
    }
}

/// A listing of a tree: path, type, mode, owner, links, content or link
/// target, device numbers, the `security.capability` xattr; one line per
/// entry, sorted. A regular file of at most 40 bytes of UTF-8 is shown as
/// its text (all of it, so nothing is left for a digest to add); any other
/// is shown as its size and sha256, so a same-length difference shows.
pub fn tree(root: &Path) -> String {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut lines = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let meta = fs_err::symlink_metadata(&path).expect("lstat");
            let rel = path
                .strip_prefix(root)
                .expect("prefix")
                .display()
                .to_string();
            let ft = meta.file_type();
            let device = || {
                let dev = meta.rdev();
                format!("{}:{}", rustix::fs::major(dev), rustix::fs::minor(dev))
            };
            let mut what = if ft.is_dir() {
                stack.push(path.clone());
                "dir".to_string()
            } else if ft.is_symlink() {
                format!(
                    "link n={} -> {}",
                    meta.nlink(),
                    fs_err::read_link(&path).expect("readlink").display()
                )
            } else if ft.is_file() {
                let content = fs_err::read(&path).expect("read");
                let shown = match std::str::from_utf8(&content) {
                    Ok(text) if content.len() <= 40 => format!("{text:?}"),
                    _ => format!(
                        "{} bytes {}",
                        content.len(),
                        crate::registry_server::sha256(&content)
                    ),
                };
                format!("file n={} {shown}", meta.nlink())
            } else if ft.is_fifo() {
                "fifo".to_string()
            } else if ft.is_char_device() {
                format!("char {}", device())
            } else if ft.is_block_device() {
                format!("block {}", device())
            } else if ft.is_socket() {
                "socket".to_string()
            } else {
                "other".to_string()
            };
            // not followed through a symlink (xattr::get is lgetxattr)
            if let Some(cap) = xattr::get(&path, "security.capability").expect("getxattr") {
                what.push_str(&format!(" cap={}", hex::encode(cap)));
            }
            lines.push(format!(
                "/{rel} {:o} {}:{} {what}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            ));
        }
    }
    lines.sort();
    lines.join("\n")
}

/// The listing tells apart what a user would: same-length contents, a FIFO
/// from a character device, device numbers, a file capability.
#[test]
fn tree_shows_contents_devices_and_capabilities() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let long_a = "a".repeat(41);
    let long_b = format!("{}b", "a".repeat(40));
    fs_err::write(root.join("a"), &long_a).expect("write");
    fs_err::write(root.join("b"), &long_b).expect("write");
    fs_err::write(root.join("bin"), [0xffu8, 0xfe]).expect("write");
    tool("mkfifo", &[root.join("fifo").to_str().expect("utf8")]);
    tool(
        "mknod",
        &[root.join("null").to_str().expect("utf8"), "c", "1", "3"],
    );
    tool(
        "mknod",
        &[root.join("loop").to_str().expect("utf8"), "b", "7", "200"],
    );
    for name in ["a", "b", "bin", "fifo", "null", "loop"] {
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
    }
    // cap_net_bind_service+ep, as setcap writes it (VFS_CAP_REVISION_2)
    let cap = hex::decode("0100000200040000000000000000000000000000").expect("hex");
    xattr::set(root.join("a"), "security.capability", &cap).expect("setxattr");
    let listing = tree(root);
    let sha = |s: &[u8]| crate::registry_server::sha256(s);
    assert_has_lines(
        &listing,
        &[
            format!(
                "/a 644 0:0 file n=1 41 bytes {} cap=0100000200040000000000000000000000000000",
                sha(long_a.as_bytes())
            ),
            format!("/b 644 0:0 file n=1 41 bytes {}", sha(long_b.as_bytes())),
            format!("/bin 644 0:0 file n=1 2 bytes {}", sha(&[0xff, 0xfe])),
            "/fifo 644 0:0 fifo".to_string(),
            "/null 644 0:0 char 1:3".to_string(),
            "/loop 644 0:0 block 7:200".to_string(),
        ],
    );
}

/// Runs `cmd` with `stdin` written to its standard input (none when
/// `None`) and its output captured; panics naming `what` if it cannot
/// start.
pub fn output_with_stdin(cmd: &mut Command, stdin: Option<&str>, what: &str) -> Output {
    use std::process::Stdio;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{what}: {e}"));
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        std::io::Write::write_all(&mut pipe, input.as_bytes()).expect("stdin");
    }
    child.wait_with_output().expect("wait")
}
