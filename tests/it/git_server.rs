//! Git servers on loopback for the git context tests: `git daemon` (the
//! git protocol) and git's smart HTTP, `git http-backend` run as a CGI
//! program behind a small HTTP server that asks for basic auth.

use crate::registry_server::{free_port, wait_for};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The user and password the HTTP server takes, and a token it takes as
/// a user name with no password (kaniko's `GIT_TOKEN`).
pub const USER: &str = "ci";
pub const PASSWORD: &str = "pa55-for-git";
pub const TOKEN: &str = "tok-1234567890";

/// Bare repositories under one directory.
pub struct Repos {
    pub dir: tempfile::TempDir,
}

/// Runs git in `dir`; panics with its stderr when it fails.
#[track_caller]
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.test",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.file.allow=always",
        ])
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git is needed by the tests");
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Repos {
    /// `repo.git` and `lib.git`:
    /// - `main`: a Dockerfile copying the context to `/ctx/`,
    ///   `hello.txt` = "main", and `sub/` with a Dockerfile of its own;
    /// - `dev` (and tag `v1`): `hello.txt` = "dev";
    /// - `with-sub`: `lib` is a submodule (`../lib.git`) holding `lib.txt`.
    pub fn new() -> Repos {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let lib = dir.path().join("lib-work");
        for d in [&work, &lib] {
            fs_err::create_dir_all(d).unwrap();
            git(d, &["init", "-q"]);
        }
        fs_err::write(lib.join("lib.txt"), "from the submodule\n").unwrap();
        git(&lib, &["add", "-A"]);
        git(&lib, &["commit", "-qm", "lib"]);
        let w = |name: &str, text: &str| {
            let path = work.join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        };
        w("Dockerfile", "FROM scratch\nCOPY . /ctx/\n");
        w("hello.txt", "main\n");
        w("sub/Dockerfile", "FROM scratch\nCOPY . /sub-ctx/\n");
        w("sub/only-in-sub.txt", "sub\n");
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "one"]);
        git(&work, &["checkout", "-qb", "dev"]);
        w("hello.txt", "dev\n");
        git(&work, &["commit", "-qam", "two"]);
        git(&work, &["tag", "-a", "v1", "-m", "v1"]);
        git(&work, &["checkout", "-q", "main"]);
        git(&work, &["checkout", "-qb", "with-sub"]);
        let lib_head = git(&lib, &["rev-parse", "HEAD"]);
        w(
            ".gitmodules",
            "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n",
        );
        git(
            &work,
            &[
                "update-index",
                "--add",
                "--cacheinfo",
                &format!("160000,{lib_head},lib"),
            ],
        );
        git(&work, &["add", ".gitmodules"]);
        git(&work, &["commit", "-qm", "submodule"]);
        git(&work, &["checkout", "-q", "main"]);
        for (from, to) in [(&work, "repo.git"), (&lib, "lib.git")] {
            git(
                dir.path(),
                &["clone", "-q", "--bare", from.to_str().unwrap(), to],
            );
        }
        Repos { dir }
    }

    pub fn commit(&self, branch: &str) -> String {
        git(&self.dir.path().join("repo.git"), &["rev-parse", branch])
    }
}

/// A server process, killed when dropped.
pub struct Server {
    pub port: u16,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `git daemon` serving `repos` on a loopback port.
pub fn git_daemon(repos: &Repos) -> Server {
    let port = free_port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", repos.dir.path().display()))
        .arg(repos.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon");
    wait_for(&format!("127.0.0.1:{port}"), "git daemon");
    Server {
        port,
        child: Some(child),
    }
}

/// Git's smart HTTP protocol for `repos`, behind basic auth. The server
/// thread lives as long as the test process; each test gets its own port.
pub fn git_http(repos: &Repos) -> Server {
    git_http_with(repos, true)
}

/// [`git_http`] for a server that speaks protocol version 0 only: the
/// client's `Git-Protocol` header is not passed on to git.
pub fn git_http_v0(repos: &Repos) -> Server {
    git_http_with(repos, false)
}

fn git_http_with(repos: &Repos, v2: bool) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let root = repos.dir.path().to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let _ = serve(stream, &root, v2);
            });
        }
    });
    Server { port, child: None }
}

/// One request, one response (`Connection: close`).
fn serve(stream: TcpStream, root: &PathBuf, v2: bool) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().unwrap_or(0);
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    let mut out = stream;
    let authorized = header("authorization").is_some_and(|a| {
        use base64::Engine;
        let expected = [format!("{USER}:{PASSWORD}"), format!("{TOKEN}:")];
        a.strip_prefix("Basic ")
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .is_some_and(|d| expected.iter().any(|e| e.as_bytes() == d.as_slice()))
    });
    if !authorized {
        return out.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cgi = Command::new("git");
    cgi.arg("http-backend")
        .env_clear()
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_USER", USER)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(t) = header("content-type") {
        cgi.env("CONTENT_TYPE", t);
    }
    if let Some(p) = header("git-protocol").filter(|_| v2) {
        cgi.env("GIT_PROTOCOL", p);
    }
    if let Some(e) = header("content-encoding") {
        cgi.env("HTTP_CONTENT_ENCODING", e);
    }
    let mut child = cgi.spawn()?;
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&body));
    let mut output = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut output)?;
    let _ = feeder.join();
    child.wait()?;
    // CGI headers, a blank line, the body
    let split = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let (head, body) = match split {
        Some((i, n)) => (&output[..i], &output[i + n..]),
        None => (&output[..0], &output[..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut status = "200 OK".to_string();
    let mut response = String::new();
    for h in head.lines() {
        match h.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("status") => status = v.trim().to_string(),
            _ => {
                response.push_str(h);
                response.push_str("\r\n");
            }
        }
    }
    write!(
        out,
        "HTTP/1.1 {status}\r\n{response}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)
}
