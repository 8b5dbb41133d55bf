//! ADD of a URL, against a small HTTP server of the test's own on
//! 127.0.0.1: names from the URL or the destination, mode 0600, the time
//! from `Last-Modified`, `--chown`/`--chmod`, never unpacked, `--checksum`,
//! redirects, basic auth from the URL, the proxy environment, failures
//! that name the line and the URL without credentials, the cache keyed by
//! the content, and a differential test against docker's BuildKit; and
//! ADD of git repositories over `git daemon` and smart HTTP.

use crate::git_server::{PASSWORD as GIT_PASSWORD, Repos, USER as GIT_USER, git_daemon, git_http};
use crate::harness::{TestContext, tree};
use crate::registry_server::{Auth, TestRegistry};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

/// `Last-Modified` of the files that have one, and the time it gives.
const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";
const LAST_MODIFIED_SECS: i64 = 1_445_412_480;
/// `user:s3cret pw` (the URL says `user:s3cret%20pw`).
const BASIC: &str = "Basic dXNlcjpzM2NyZXQgcHc=";

/// What the server answers for a path.
#[derive(Clone)]
enum Route {
    /// 200 with the body, and `Last-Modified` if set.
    File(Vec<u8>, bool),
    /// 302 to the path.
    Redirect(String),
    /// 200 with the body only with [`BASIC`], else 401.
    Private(Vec<u8>),
}

/// One request the server saw: the target as sent (a path, or an
/// absolute URL through a proxy) and its `Authorization`.
#[derive(Clone, Debug)]
struct Seen {
    target: String,
    auth: Option<String>,
}

/// An HTTP/1.1 server on 127.0.0.1 on a thread of its own: one request
/// per connection, routes changeable while it runs; anything unrouted is
/// a 404.
struct Server {
    port: u16,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r, s) = (Arc::clone(&routes), Arc::clone(&seen));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (r, s) = (Arc::clone(&r), Arc::clone(&s));
                std::thread::spawn(move || {
                    let _ = answer(stream, &r, &s);
                });
            }
        });
        let server = Server { port, routes, seen };
        server.route(
            "/files/hello.txt",
            Route::File(b"hello over http\n".to_vec(), true),
        );
        server.route(
            "/files/noname/",
            Route::File(b"a directory URL\n".to_vec(), true),
        );
        server.route("/files/archive.tar", Route::File(small_tar(), false));
        server.route("/redirect", Route::Redirect("/files/hello.txt".to_string()));
        server.route(
            "/private/secret.txt",
            Route::Private(b"for user only\n".to_vec()),
        );
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn route(&self, path: &str, route: Route) {
        self.routes.lock().unwrap().insert(path.to_string(), route);
    }

    /// The requests whose target ends with `path`.
    fn seen(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter()
            .filter(|s| s.target.ends_with(path))
            .cloned()
            .collect()
    }
}

fn answer(
    stream: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    seen: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut auth = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            auth = Some(value.trim().to_string());
        }
    }
    seen.lock().unwrap().push(Seen {
        target: target.clone(),
        auth: auth.clone(),
    });
    // through a proxy the target is a whole URL
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]).to_string(),
        None => target,
    };
    let path = path.split('?').next().unwrap_or("/").to_string();
    let route = routes.lock().unwrap().get(&path).cloned();
    let (status, headers, body): (&str, Vec<String>, Vec<u8>) = match route {
        Some(Route::File(body, dated)) => {
            let headers = if dated {
                vec![format!("Last-Modified: {LAST_MODIFIED}")]
            } else {
                Vec::new()
            };
            ("200 OK", headers, body)
        }
        Some(Route::Redirect(to)) => ("302 Found", vec![format!("Location: {to}")], Vec::new()),
        Some(Route::Private(body)) if auth.as_deref() == Some(BASIC) => {
            ("200 OK", Vec::new(), body)
        }
        Some(Route::Private(_)) => (
            "401 Unauthorized",
            vec!["WWW-Authenticate: Basic realm=\"test\"".to_string()],
            b"no".to_vec(),
        ),
        None => ("404 Not Found", Vec::new(), b"not here".to_vec()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    )?;
    for h in headers {
        write!(out, "{h}\r\n")?;
    }
    write!(out, "\r\n")?;
    out.write_all(&body)?;
    out.flush()
}

/// A tar holding one file: ADD of a URL must not unpack it.
fn small_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_path("inside.txt").unwrap();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_000_000_000);
    h.set_cksum();
    b.append(&h, &b"abc"[..]).unwrap();
    b.into_inner().unwrap()
}

fn mtime(root: &std::path::Path, rel: &str) -> i64 {
    fs_err::symlink_metadata(root.join(rel)).unwrap().mtime()
}

#[test]
fn add_url_names_modes_times_owners_redirects_and_basic_auth() {
    let s = Server::start();
    let port = s.port;
    let t = TestContext::new(&format!(
        "FROM scratch\n\
         ARG SERVER\n\
         ENV FILES=$SERVER/files\n\
         ADD http://127.0.0.1:{port}/files/hello.txt /dir/\n\
         ADD ${{FILES}}/hello.txt /named\n\
         ADD --chmod=644 --chown=7:8 $FILES/archive.tar /tars/\n\
         ADD $SERVER/redirect /via-redirect\n\
         ADD http://user:s3cret%20pw@127.0.0.1:{port}/private/secret.txt /secret\n\
         ADD local.txt $FILES/hello.txt $FILES/noname/ /multi/\n\
         ADD --unpack=true $FILES/archive.tar /unpacked/\n\
         ADD --unpack=false local.tar /packed/\n"
    ));
    t.file("local.txt", "from the context\n");
    fs_err::write(t.ctx().join("local.tar"), small_tar()).unwrap();
    let server_arg = format!("SERVER={}", s.url());
    let run = t.build_outputs_run(&["--build-arg", &server_arg, "--verbosity", "trace"]);
    assert!(!run.stderr().contains("s3cret"), "{}", run.stderr());
    let root = t.unpack();
    let listing = tree(&root);
    let tar = small_tar();
    let wants = [
        "/dir/hello.txt 600 0:0 file n=1 \"hello over http\\n\"".to_string(),
        "/named 600 0:0 file n=1 \"hello over http\\n\"".to_string(),
        // a tar stays a tar
        format!(
            "/tars/archive.tar 644 7:8 file n=1 {} bytes {}",
            tar.len(),
            crate::registry_server::sha256(&tar)
        ),
        "/via-redirect 600 0:0 file n=1 \"hello over http\\n\"".to_string(),
        "/secret 600 0:0 file n=1 \"for user only\\n\"".to_string(),
        "/multi/local.txt 644 0:0 file n=1 \"from the context\\n\"".to_string(),
        "/multi/hello.txt 600 0:0 file n=1 \"hello over http\\n\"".to_string(),
        // a URL ending in `/`: its last segment
        "/multi/noname 600 0:0 file n=1 \"a directory URL\\n\"".to_string(),
        // --unpack: a download unpacked, a local archive kept
        "/unpacked/inside.txt 644 0:0 file n=1 \"abc\"".to_string(),
        format!(
            "/packed/local.tar 644 0:0 file n=1 {} bytes {}",
            tar.len(),
            crate::registry_server::sha256(&tar)
        ),
    ];
    crate::harness::assert_has_lines(&listing, &wants);
    assert!(!listing.contains("/tars/inside.txt"), "{listing}");
    assert_eq!(mtime(&root, "dir/hello.txt"), LAST_MODIFIED_SECS);
    assert_eq!(mtime(&root, "via-redirect"), LAST_MODIFIED_SECS);
    // no Last-Modified: the epoch, as BuildKit sets it
    assert_eq!(mtime(&root, "tars/archive.tar"), 0);
    // basic auth from the URL's user info, and only there
    let private = s.seen("/private/secret.txt");
    assert!(
        private.iter().any(|r| r.auth.as_deref() == Some(BASIC)),
        "{private:?}"
    );
    assert!(s.seen("/files/hello.txt").iter().all(|r| r.auth.is_none()));
    // one download per URL per build, however many steps name it (the
    // second request is the redirect's)
    assert_eq!(s.seen("/files/hello.txt").len(), 2, "{:?}", s.seen(""));
    assert_eq!(s.seen("/redirect").len(), 1);
}

#[test]
fn add_url_checksum_is_checked_before_anything_is_written() {
    let s = Server::start();
    let digest = crate::registry_server::sha256(b"hello over http\n");
    let ok = TestContext::new(&format!(
        "FROM scratch\nADD --checksum={digest} {}/files/hello.txt /hello\n",
        s.url()
    ));
    ok.build_outputs(&[]);
    assert_has_line(&tree(&ok.unpack()), "/hello 600 0:0 file");

    let wrong = format!("sha256:{}", "0".repeat(64));
    let bad = TestContext::new(&format!(
        "FROM scratch\nCOPY local.txt /local\nADD --checksum={wrong} {}/files/hello.txt /hello\n",
        s.url()
    ));
    bad.file("local.txt", "x");
    let run = bad.build(&[
        "--no-push",
        "--oci-layout-path",
        bad.path("oci").to_str().unwrap(),
    ]);
    assert_ne!(run.code(), 0);
    let want = format!(
        "Dockerfile:3: ADD: digest mismatch for {}/files/hello.txt: {digest} (expected: {wrong})",
        s.url()
    );
    assert!(run.stderr().contains(&want), "{}", run.stderr());
    assert!(!bad.path("oci").exists(), "an image was written");

    // BuildKit's refusals
    for (dockerfile, want) in [
        (
            "FROM scratch\nADD --checksum=sha256:abc local.txt /x\n",
            "Dockerfile:2: ADD: checksum requires HTTP(S) or Git sources",
        ),
        (
            "FROM scratch\nCOPY --checksum=sha256:abc local.txt /x\n",
            "Dockerfile:2: unknown flag: checksum",
        ),
        (
            "FROM scratch\nCOPY http://127.0.0.1:1/x /x\n",
            "Dockerfile:2: COPY: source can't be a URL for COPY",
        ),
        (
            "FROM scratch\nADD --checksum=md5:abc http://127.0.0.1:1/x /x\n",
            "Dockerfile:2: ADD: unsupported digest algorithm",
        ),
    ] {
        let t = TestContext::new(dockerfile);
        t.file("local.txt", "x");
        let run = t.build(&["--no-push"]);
        assert_ne!(run.code(), 0, "{dockerfile}");
        assert!(
            run.stderr().contains(want),
            "{dockerfile}: {}",
            run.stderr()
        );
    }
}

fn assert_has_line(listing: &str, prefix: &str) {
    crate::harness::assert_has_line_starting(listing, &[prefix]);
}

#[test]
fn add_url_failures_name_the_line_and_the_url_without_credentials() {
    let s = Server::start();
    let host = format!("127.0.0.1:{}", s.port);
    // a port nothing listens on
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (source, shown, why) in [
        (
            format!("http://user:s3cret@{host}/missing?token=hidden"),
            format!("http://{host}/missing"),
            "the server answered 404 Not Found",
        ),
        (
            format!("http://user:s3cret@127.0.0.1:{closed}/x?token=hidden"),
            format!("http://127.0.0.1:{closed}/x"),
            "onnection refused",
        ),
        (
            "http://user:s3cret@smelt-test.invalid/x?token=hidden".to_string(),
            "http://smelt-test.invalid/x".to_string(),
            "dns error",
        ),
        (
            format!("http://{host}/private/secret.txt"),
            format!("http://{host}/private/secret.txt"),
            "the server answered 401 Unauthorized",
        ),
    ] {
        let t = TestContext::new(&format!("FROM scratch\nENV A=b\nADD {source} /x\n"));
        let run = t.build(&["--no-push"]);
        assert_ne!(run.code(), 0);
        let err = run.stderr();
        let want = format!("Dockerfile:3: ADD: downloading {shown}: ");
        assert!(err.contains(&want), "want {want:?} in:\n{err}");
        assert!(err.contains(why), "want {why:?} in:\n{err}");
        assert!(!err.contains("s3cret"), "{err}");
        let error = err.lines().find(|l| l.contains(&want)).unwrap();
        assert!(!error.contains("hidden"), "{error}");
    }
}

#[test]
fn add_url_goes_through_the_proxy_environment() {
    let s = Server::start();
    let t =
        TestContext::new("FROM scratch\nADD http://smelt-proxied.invalid/files/hello.txt /hello\n");
    // the name resolves nowhere: only the proxy can answer
    let proxy = s.url();
    let layout = t.path("oci");
    let args = ["--no-push", "--oci-layout-path", layout.to_str().unwrap()];
    let run = t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &args,
        &[("http_proxy", &proxy)],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let seen = s.seen("/files/hello.txt");
    assert!(
        seen.iter()
            .any(|r| r.target == "http://smelt-proxied.invalid/files/hello.txt"),
        "{seen:?}"
    );
    // NO_PROXY names it: straight to the name, which fails
    let run = t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &args,
        &[
            ("HTTP_PROXY", &proxy),
            ("NO_PROXY", "smelt-proxied.invalid"),
        ],
    );
    assert_ne!(run.code(), 0);
    assert!(
        run.stderr()
            .contains("downloading http://smelt-proxied.invalid/files/hello.txt: "),
        "{}",
        run.stderr()
    );
}

#[test]
fn add_url_cache_key_is_the_content_digest() {
    let s = Server::start();
    s.route(
        "/files/data.txt",
        Route::File(b"version one\n".to_vec(), true),
    );
    let reg = TestRegistry::start(Auth::None);
    let t = TestContext::new(
        "FROM scratch\nARG SERVER\nADD --chmod=640 $SERVER/files/data.txt /data.txt\n",
    );
    let server_arg = format!("SERVER={}", s.url());
    let report = t.path("report.json");
    let flags = |dest: &str| {
        vec![
            "--cache".to_string(),
            "--cache-copy-layers".to_string(),
            "--cache-repo".to_string(),
            format!("{}/cache", reg.host),
            "--destination".to_string(),
            format!("{}/{dest}", reg.host),
            "--build-arg".to_string(),
            server_arg.clone(),
            "--cache-report".to_string(),
            report.display().to_string(),
            "--verbosity".to_string(),
            "debug".to_string(),
        ]
    };
    let build = |dest: &str| {
        let f = flags(dest);
        let args: Vec<&str> = f.iter().map(String::as_str).collect();
        t.build(&args).ok().stderr()
    };
    let hits = |log: &str| log.lines().filter(|l| l.contains("] cache hit ")).count();
    let log = build("app:1");
    assert_eq!(hits(&log), 0, "{log}");
    assert_eq!(
        s.seen("/files/data.txt").len(),
        1,
        "downloaded twice:\n{log}"
    );
    // the same content: a hit
    let log = build("app:2");
    assert_eq!(hits(&log), 1, "{log}");
    assert_eq!(s.seen("/files/data.txt").len(), 2);
    // changed content at the same URL: a miss, and the report names the
    // URL and its new digest
    s.route(
        "/files/data.txt",
        Route::File(b"version two\n".to_vec(), true),
    );
    let log = build("app:3");
    assert_eq!(hits(&log), 0, "{log}");
    let text = fs_err::read_to_string(&report).unwrap();
    let digest = crate::registry_server::sha256(b"version two\n");
    let want = format!("{}/files/data.txt now {digest}", s.url());
    assert!(text.contains(&want), "want {want:?} in {text}");

    let out = TestContext::new(&format!("FROM {}/app:3\n", reg.host));
    out.build_outputs(&[]);
    crate::harness::assert_has_lines(
        &tree(&out.unpack()),
        &["/data.txt 640 0:0 file n=1 \"version two\\n\""],
    );
}

/// ADD of URLs served here, against docker 20.10's BuildKit (it has
/// ADD of a URL; it predates `--checksum`, and it leaves a URL's file
/// 0600 under `--chmod`, which current BuildKit applies, as the test
/// above checks). The case folder is written here: the server's port is
/// only known now.
#[test]
fn add_url_matches_docker() {
    let s = Server::start();
    let case = tempfile::tempdir().unwrap();
    let dir = case.path().join("add-url");
    fs_err::create_dir_all(dir.join("context")).unwrap();
    fs_err::write(
        dir.join("Dockerfile"),
        "ARG BASE\n\
         FROM $BASE\n\
         ARG SERVER\n\
         ADD $SERVER/files/hello.txt /dir/\n\
         ADD $SERVER/files/hello.txt /named\n\
         ADD --chown=7:8 $SERVER/files/archive.tar /tars/\n\
         ADD $SERVER/redirect /via-redirect\n\
         ADD local.txt $SERVER/files/hello.txt $SERVER/files/noname/ /multi/\n",
    )
    .unwrap();
    fs_err::write(dir.join("context/local.txt"), "from the context\n").unwrap();
    fs_err::write(dir.join("build-args"), format!("SERVER={}\n", s.url())).unwrap();
    crate::conformance::differential_on(dir.to_str().unwrap(), crate::conformance::push_busybox);
}

/// ADD of a git repository over `git daemon`: the default branch, a
/// branch, a tag's sub-directory, `--keep-git-dir`, `--chown` with a
/// `--checksum` (a commit prefix), as current docker gives them (docker
/// 20.10 predates `--keep-git-dir` and `--checksum`; files 644, owned by
/// root unless `--chown`, `.git` left out).
#[test]
fn add_git_repository_by_ref_tag_sub_directory_and_commit() {
    let repos = Repos::new();
    let daemon = git_daemon(&repos);
    let repo = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let main = repos.commit("main");
    let t = TestContext::new(&format!(
        "FROM scratch\n\
         ADD {repo} /all/\n\
         ADD {repo}#dev /dev\n\
         ADD {repo}#v1:sub /v1sub\n\
         ADD --keep-git-dir {repo}#main /kept\n\
         ADD {repo}#with-sub /withsub\n\
         ADD {repo}?branch=dev&keep-git-dir /qdev\n\
         ADD {repo}?ref=with-sub&submodules=false /nosub\n\
         ADD --chown=5:6 --checksum={} {repo}#main:sub /owned/\n",
        &main[..10]
    ));
    t.build_outputs(&[]);
    let listing = tree(&t.unpack());
    crate::harness::assert_has_lines(
        &listing,
        &[
            "/all/hello.txt 644 0:0 file n=1 \"main\\n\"",
            "/all/sub/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"",
            "/dev/hello.txt 644 0:0 file n=1 \"dev\\n\"",
            "/v1sub/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"",
            "/owned/only-in-sub.txt 644 5:6 file n=1 \"sub\\n\"",
            // submodules are checked out, as BuildKit does by default
            "/withsub/lib/lib.txt 644 0:0 file n=1 \"from the submodule\\n\"",
        ],
    );
    assert_has_line(&listing, "/kept/.git/HEAD ");
    assert!(!listing.contains("/all/.git"), "{listing}");
    assert!(!listing.contains("/withsub/lib/.git"), "{listing}");
    // BuildKit's query form
    assert_has_line(&listing, "/qdev/hello.txt 644 0:0 file n=1 \"dev\\n\"");
    assert_has_line(&listing, "/qdev/.git/HEAD ");
    assert_has_line(&listing, "/nosub/lib 755 0:0 dir");
    assert!(!listing.contains("/nosub/lib/lib.txt"), "{listing}");
    assert!(!listing.contains("/v1sub/hello.txt"), "{listing}");

    // scp-like SSH addresses go to ssh: here a stand-in that runs the
    // command git asks the server for in the repositories' directory
    let ssh = repos.dir.path().join("fake-ssh");
    fs_err::write(
        &ssh,
        format!(
            "#!/bin/sh\n# the last argument is the remote command\nfor a; do cmd=$a; done\n\
             echo \"$SSH_AUTH_SOCK\" >> {0}/agents\ncd {0} && exec sh -c \"$cmd\"\n",
            repos.dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let t = TestContext::new("FROM scratch\nADD git@git.example.test:repo.git#dev /ssh\n");
    let layout = t.path("oci");
    // `--ssh default` is the agent git's ssh gets, as BuildKit forwards it
    let agent = t.path("agent.sock");
    let _agent = std::os::unix::net::UnixListener::bind(&agent).unwrap();
    let ssh_flag = format!("default={}", agent.display());
    let run = t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &[
            "--no-push",
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "-d",
            "example.test/smelt/it:t1",
            "--ssh",
            &ssh_flag,
        ],
        &[
            ("GIT_SSH_COMMAND", ssh.to_str().unwrap()),
            ("GIT_SSH_VARIANT", "simple"),
        ],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    crate::harness::assert_has_lines(
        &tree(&t.unpack()),
        &["/ssh/hello.txt 644 0:0 file n=1 \"dev\\n\""],
    );
    let agents = fs_err::read_to_string(repos.dir.path().join("agents")).unwrap();
    assert!(
        !agents.is_empty() && agents.lines().all(|l| l == agent.to_str().unwrap()),
        "git's ssh should get the --ssh agent: {agents:?}"
    );

    // BuildKit's modes whatever the umask git runs under
    let t = TestContext::new(&format!("FROM scratch\nADD {repo}#main /u\n"));
    let smelt = crate::harness::smelt_bin();
    let layout = t.path("oci");
    let run = t.build_with(
        "sh".into(),
        &[
            "-c",
            "umask 0002 && exec \"$0\" \"$@\"",
            smelt.to_str().unwrap(),
            "build",
        ],
        &[
            "--no-push",
            "--oci-layout-path",
            layout.to_str().unwrap(),
            "-d",
            "example.test/smelt/it:t1",
        ],
        &[],
    );
    assert_eq!(run.code(), 0, "{}", run.stderr());
    crate::harness::assert_has_lines(
        &tree(&t.unpack()),
        &[
            "/u/hello.txt 644 0:0 file n=1 \"main\\n\"",
            "/u/sub 755 0:0 dir",
        ],
    );

    // a checksum that is not the commit's: nothing is fetched
    let bad = TestContext::new(&format!(
        "FROM scratch\nENV A=b\nADD --checksum=fff0 {repo}#main /x\n"
    ));
    let run = bad.build(&["--no-push"]);
    assert_ne!(run.code(), 0);
    let want = format!("Dockerfile:3: ADD: expected checksum to match fff0, got {main}");
    assert!(run.stderr().contains(&want), "{}", run.stderr());
    // a ref the repository lacks
    let bad = TestContext::new(&format!("FROM scratch\nADD {repo}#nope /x\n"));
    let run = bad.build(&["--no-push"]);
    assert_ne!(run.code(), 0);
    let want =
        format!("Dockerfile:2: ADD: git repository {repo}: repository does not contain ref nope");
    assert!(run.stderr().contains(&want), "{}", run.stderr());
}

/// Over smart HTTP with the URL's credentials, which reach neither the
/// log nor the error; the cache key is the commit the ref names.
#[test]
fn add_git_repository_over_http_with_credentials_and_the_commit_as_key() {
    let repos = Repos::new();
    let http = git_http(&repos);
    let reg = TestRegistry::start(Auth::None);
    let repo = format!(
        "http://{GIT_USER}:{GIT_PASSWORD}@127.0.0.1:{}/repo.git",
        http.port
    );
    let t = TestContext::new(&format!("FROM scratch\nADD {repo}#main /src\n"));
    let report = t.path("report.json");
    let build = |dest: &str| {
        let f = [
            "--cache".to_string(),
            "--cache-copy-layers".to_string(),
            "--cache-repo".to_string(),
            format!("{}/cache", reg.host),
            "--destination".to_string(),
            format!("{}/{dest}", reg.host),
            "--cache-report".to_string(),
            report.display().to_string(),
            "--verbosity".to_string(),
            "trace".to_string(),
        ];
        let args: Vec<&str> = f.iter().map(String::as_str).collect();
        let log = t.build(&args).ok().stderr();
        assert!(!log.contains(GIT_PASSWORD), "{log}");
        log
    };
    let hits = |log: &str| log.lines().filter(|l| l.contains("] cache hit ")).count();
    assert_eq!(hits(&build("g:1")), 0);
    assert_eq!(hits(&build("g:2")), 1);
    // main moves: a miss, the report naming the repository and the commit
    let dev = repos.commit("dev");
    crate::git_server::git(
        &repos.dir.path().join("repo.git"),
        &["update-ref", "refs/heads/main", &dev],
    );
    assert_eq!(hits(&build("g:3")), 0);
    let text = fs_err::read_to_string(&report).unwrap();
    let want = format!("http://127.0.0.1:{}/repo.git#main: now {dev}", http.port);
    assert!(text.contains(&want), "want {want:?} in {text}");
    let out = TestContext::new(&format!("FROM {}/g:3\n", reg.host));
    out.build_outputs(&[]);
    crate::harness::assert_has_lines(
        &tree(&out.unpack()),
        &["/src/hello.txt 644 0:0 file n=1 \"dev\\n\""],
    );

    // a wrong password: the error names the repository, not the password
    let wrong = format!(
        "http://{GIT_USER}:wrong-pa55@127.0.0.1:{}/repo.git",
        http.port
    );
    let bad = TestContext::new(&format!("FROM scratch\nADD {wrong} /src\n"));
    let run = bad.build(&["--no-push"]);
    assert_ne!(run.code(), 0);
    let err = run.stderr();
    let want = format!(
        "Dockerfile:2: ADD: git repository http://127.0.0.1:{}/repo.git: ",
        http.port
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("wrong-pa55"), "{err}");
}

/// Over https, the server's certificate is checked against the CA roots
/// every client of smelt trusts (here `SSL_CERT_FILE`); an unknown issuer
/// fails naming the line and the URL.
#[test]
fn add_url_over_https_trusts_the_ca_roots() {
    use crate::registry_server::{TestCa, free_port, wait_for};
    use std::process::{Command, Stdio};
    let ca = TestCa::new();
    let served = tempfile::tempdir().unwrap();
    fs_err::write(served.path().join("tls.txt"), "over tls\n").unwrap();
    let port = free_port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&ca.server_cert)
        .arg("-key")
        .arg(&ca.server_key)
        .current_dir(served.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(&format!("127.0.0.1:{port}"), "openssl s_server");
    let t = TestContext::new(&format!(
        "FROM scratch\nADD https://127.0.0.1:{port}/tls.txt /\n"
    ));
    let layout = t.path("oci");
    let args = [
        "--no-push",
        "--oci-layout-path",
        layout.to_str().unwrap(),
        "-d",
        "example.test/smelt/it:t1",
    ];
    let ca_file = ca.ca_cert.to_str().unwrap().to_string();
    let trusted = t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &args,
        &[("SSL_CERT_FILE", &ca_file)],
    );
    let unknown = t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &["--no-push"],
        &[
            ("SSL_CERT_FILE", "/dev/null"),
            ("SSL_CERT_DIR", "/nonexistent"),
        ],
    );
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(trusted.code(), 0, "{}", trusted.stderr());
    crate::harness::assert_has_lines(
        &tree(&t.unpack()),
        &["/tls.txt 600 0:0 file n=1 \"over tls\\n\""],
    );
    assert_ne!(unknown.code(), 0);
    let want = format!("Dockerfile:2: ADD: downloading https://127.0.0.1:{port}/tls.txt: ");
    let err = unknown.stderr();
    assert!(err.contains(&want) && err.contains("certificate"), "{err}");
}
