//! smelt's own git client, used when no `git` is on PATH (the executor
//! image): each build runs twice, once with the git binary and once with
//! `PATH=/nonexistent`, against real `git daemon` and `git http-backend`
//! servers, and the two images must hold the same files.

use crate::contexts::{has, smelt, smelt_fails, smelt_output};
use crate::git_server::{PASSWORD, Repos, TOKEN, USER, git, git_daemon, git_http, git_http_v0};
use crate::harness::{TestContext, tree};
use std::path::Path;
use std::process::{Command, Stdio};

/// A PATH with no git on it: smelt fetches with its own client.
const NO_GIT: (&str, &str) = ("PATH", "/nonexistent");

/// Builds `args` (a context of `dockerfile`'s, or a `--context` among
/// them) with `env`, with or without git on PATH; the listing and the log.
fn build(dockerfile: &str, args: &[&str], env: &[(&str, &str)], builtin: bool) -> (String, String) {
    let t = TestContext::new(dockerfile);
    let ctx = t.ctx();
    let ctx = ctx.to_str().unwrap();
    let mut all = vec!["--verbosity", "debug"];
    if !args.contains(&"--context") {
        all.extend(["--context", ctx]);
    }
    all.extend_from_slice(args);
    let mut env = env.to_vec();
    if builtin {
        env.push(NO_GIT);
    }
    let log = smelt(&t, &all, b"", &env);
    assert_eq!(
        log.contains("git server "),
        builtin,
        "the built-in client ran {} (builtin={builtin}):\n{log}",
        if builtin { "not" } else { "" }
    );
    (tree(&t.unpack()), log)
}

/// The context `context` built both ways: the same files; the built-in
/// build's listing and log.
#[track_caller]
fn same(context: &str, extra: &[&str], env: &[(&str, &str)]) -> (String, String) {
    let unused = "unused: the Dockerfile comes from the repository\n";
    let args = [&["--context", context][..], extra].concat();
    let (with_git, _) = build(unused, &args, env, false);
    let (builtin, log) = build(unused, &args, env, true);
    pretty_assertions::assert_eq!(with_git, builtin, "{context} {extra:?}");
    (builtin, log)
}

#[test]
fn builtin_git_over_git_daemon_by_branch_tag_commit_and_sub_directory() {
    let repos = Repos::new();
    let daemon = git_daemon(&repos);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let git = [("GIT_PULL_METHOD", "git")];
    let main = repos.commit("main");
    let cases: [(String, &[&str], &str); 9] = [
        (
            url.clone(),
            &[],
            "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"",
        ),
        (
            format!("{url}#refs/heads/dev"),
            &[],
            "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"",
        ),
        (
            format!("{url}#dev"),
            &[],
            "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"",
        ),
        (
            url.clone(),
            &["--git", "branch=v1"],
            "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"",
        ),
        (
            format!("{url}#v1"),
            &[],
            "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"",
        ),
        (
            format!("{url}#refs/heads/dev#{main}"),
            &[],
            "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"",
        ),
        (
            format!("{url}#{main}"),
            &[],
            "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"",
        ),
        (
            format!("{url}#refs/heads/main#sub"),
            &[],
            "/sub-ctx/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"",
        ),
        (
            format!("{url}#dev:sub"),
            &[],
            "/sub-ctx/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"",
        ),
    ];
    for (context, extra, line) in cases {
        let (l, log) = same(&context, extra, &git);
        has(&l, line);
        assert!(!l.contains("/.git "), "{l}");
        has(&log, "protocol version 2");
        has(&log, "built-in git client");
    }
    // a sub-directory is all there is of the context
    let (l, _) = same(&format!("{url}#main:sub"), &[], &git);
    assert!(!l.contains("hello.txt"), "{l}");

    // what the binary path says, in the built-in client's words
    let err = smelt_fails(
        &["--context", &url, "--git", "branch=nope"],
        &[git[0], NO_GIT],
    );
    assert!(err.contains("--git branch=nope: no branch or tag"), "{err}");
    let err = smelt_fails(&["--context", &format!("{url}#nope")], &[git[0], NO_GIT]);
    assert!(err.contains(&format!("git context {url}")), "{err}");
    assert!(err.contains("couldn't find remote ref nope"), "{err}");
    let missing = format!("git://127.0.0.1:{}/missing.git", daemon.port);
    let err = smelt_fails(&["--context", &missing], &[git[0], NO_GIT]);
    assert!(err.contains("missing.git"), "{err}");
    // .git cannot be kept without git
    let err = smelt_fails(
        &[
            "--context",
            &url,
            "--build-arg",
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1",
        ],
        &[git[0], NO_GIT],
    );
    assert!(err.contains("keeping .git"), "{err}");
    assert!(err.contains("needs the git binary"), "{err}");
}

#[test]
fn builtin_git_over_smart_http_v2_and_v0_with_credentials_and_submodules() {
    let repos = Repos::new();
    let main = repos.commit("main");
    for (server, version) in [(git_http(&repos), 2), (git_http_v0(&repos), 0)] {
        let port = server.port;
        let url = format!("http://127.0.0.1:{port}/repo.git");
        let login = [("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD)];
        let protocol = format!("protocol version {version}");

        let (l, log) = same(&url, &[], &login);
        has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"");
        has(&log, &protocol);
        assert!(!log.contains(PASSWORD), "{log}");

        // kaniko's git:// with GIT_PULL_METHOD=http, and a token
        let (l, _) = same(
            &format!("git://127.0.0.1:{port}/repo.git#refs/heads/dev"),
            &[],
            &[("GIT_PULL_METHOD", "http"), ("GIT_TOKEN", TOKEN)],
        );
        has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"");

        // a commit (a v0 server gives no unadvertised commit: the
        // history comes instead) with credentials in the URL
        let in_url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{port}/repo.git");
        let (l, log) = same(&format!("{in_url}#refs/heads/dev#{main}"), &[], &[]);
        has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"");
        assert!(!log.contains(PASSWORD), "{log}");

        // submodules on the same server, with the same credentials
        let sub = [
            "--git",
            "branch=with-sub",
            "--git",
            "recurse-submodules=true",
        ];
        let (l, _) = same(&in_url, &sub, &[]);
        has(
            &l,
            "/ctx/lib/lib.txt 644 0:0 file n=1 \"from the submodule\\n\"",
        );
        assert!(!l.contains("/.git "), "{l}");
        // without the option the submodule is an empty directory
        let (l, _) = same(&url, &["--git", "branch=with-sub"], &login);
        has(&l, "/ctx/lib 755 0:0 dir");
        assert!(!l.contains("lib.txt"), "{l}");

        // a refused password: named as such, never shown
        let wrong = "wrong-pa55word";
        let err = smelt_fails(
            &["--context", &url],
            &[("GIT_USERNAME", USER), ("GIT_PASSWORD", wrong), NO_GIT],
        );
        assert!(err.contains(&format!("git context {url}")), "{err}");
        assert!(err.contains("Authentication failed"), "{err}");
        assert!(!err.contains(wrong), "{err}");
    }
}

/// A repository whose pack has deltas: a file and a near copy of it in
/// one commit, then the file changed a little in a second.
#[test]
fn builtin_git_applies_the_deltas_of_a_pack() {
    let repos = Repos::new();
    let work = repos.dir.path().join("delta-work");
    fs_err::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    let story: String = (0..3000)
        .map(|i| format!("line {i}: the quick brown fox {} jumps\n", i * 7919 % 1000))
        .collect();
    fs_err::write(work.join("Dockerfile"), "FROM scratch\nCOPY . /ctx/\n").unwrap();
    fs_err::write(work.join("a.txt"), &story).unwrap();
    fs_err::write(
        work.join("b.txt"),
        story.replace("line 1500:", "LINE 1500:"),
    )
    .unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-qm", "one"]);
    let first = git(&work, &["rev-parse", "HEAD"]);
    fs_err::write(work.join("a.txt"), story.replace("line 10:", "line ten:")).unwrap();
    git(&work, &["commit", "-qam", "two"]);
    let second = git(&work, &["rev-parse", "HEAD"]);
    git(
        repos.dir.path(),
        &["clone", "-q", "--bare", work.to_str().unwrap(), "delta.git"],
    );
    let daemon = git_daemon(&repos);
    let v0 = git_http_v0(&repos);
    let login = [("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD)];
    let deltas = |log: &str| -> usize {
        log.lines()
            .filter_map(|l| {
                l.split("objects (")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .sum()
    };
    for commit in [&first, &second] {
        // by itself over git://, with the history over a v0 server
        let (l, log) = same(
            &format!("git://127.0.0.1:{}/delta.git#{commit}", daemon.port),
            &[],
            &[("GIT_PULL_METHOD", "git")],
        );
        assert!(deltas(&log) > 0, "no deltas in the pack:\n{log}");
        has(&l, "/ctx/b.txt 644 0:0 file");
        let (l2, log) = same(
            &format!("http://127.0.0.1:{}/delta.git#{commit}", v0.port),
            &[],
            &login,
        );
        assert!(deltas(&log) > 0, "no deltas in the pack:\n{log}");
        assert_eq!(l, l2);
    }
}

/// Runs `git` in `dir` with `input` on stdin; its stdout.
fn git_in(dir: &Path, args: &[&str], input: &[u8]) -> String {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A tree object of raw entries (mode, name, id), as given: names git
/// itself would never write.
fn raw_tree(bare: &Path, entries: &[(&str, &str, &str)]) -> String {
    let mut bytes = Vec::new();
    for (mode, name, oid) in entries {
        bytes.extend_from_slice(format!("{mode} {name}\0").as_bytes());
        bytes.extend_from_slice(&hex::decode(oid).unwrap());
    }
    git_in(
        bare,
        &["hash-object", "-t", "tree", "--literally", "-w", "--stdin"],
        &bytes,
    )
}

#[test]
fn builtin_git_refuses_a_hostile_tree_and_writes_nothing_outside() {
    let repos = Repos::new();
    let bare = repos.dir.path().join("repo.git");
    let outside = tempfile::tempdir().unwrap();
    let canary = outside.path().join("canary");
    fs_err::write(&canary, "untouched\n").unwrap();
    let blob = |text: &str| git_in(&bare, &["hash-object", "-w", "--stdin"], text.as_bytes());
    let dockerfile = blob("FROM scratch\nCOPY . /ctx/\n");
    let pwned = blob("pwned\n");
    let target = blob(outside.path().to_str().unwrap());
    let inner = raw_tree(
        &bare,
        &[("100644", "canary", &pwned), ("100644", "new.txt", &pwned)],
    );
    let hostile = [
        // a symlink out, then a directory of the same name through it
        (
            "symlink",
            raw_tree(
                &bare,
                &[
                    ("100644", "Dockerfile", &dockerfile),
                    ("120000", "link", &target),
                    ("40000", "link", &inner),
                ],
            ),
        ),
        (
            "dotdot",
            raw_tree(
                &bare,
                &[
                    ("100644", "Dockerfile", &dockerfile),
                    ("40000", "..", &inner),
                ],
            ),
        ),
        (
            "dotgit",
            raw_tree(
                &bare,
                &[
                    ("100644", "Dockerfile", &dockerfile),
                    ("40000", ".GIT", &inner),
                ],
            ),
        ),
        (
            "slash",
            raw_tree(
                &bare,
                &[
                    ("100644", "Dockerfile", &dockerfile),
                    ("100644", "a/../../x", &pwned),
                ],
            ),
        ),
    ];
    let daemon = git_daemon(&repos);
    for (name, tree_id) in hostile {
        let commit = git_in(&bare, &["commit-tree", &tree_id, "-m", name], b"");
        git(
            &bare,
            &["update-ref", &format!("refs/heads/{name}"), &commit],
        );
        let context = format!("git://127.0.0.1:{}/repo.git#refs/heads/{name}", daemon.port);
        let err = smelt_fails(
            &["--context", &context],
            &[("GIT_PULL_METHOD", "git"), NO_GIT],
        );
        assert!(
            err.contains(&format!(
                "git context git://127.0.0.1:{}/repo.git",
                daemon.port
            )),
            "{err}"
        );
        let said = if name == "symlink" {
            "the repository's tree names /link twice"
        } else {
            "the repository holds a path git refuses"
        };
        assert!(err.contains(said), "{name}: {err}");
        // git refuses these names too; the duplicate it checks out one
        // way or the other, never through the link
        let with_git = smelt_run(&["--context", &context], &[("GIT_PULL_METHOD", "git")]);
        if name != "symlink" {
            assert!(with_git.contains("invalid path"), "{name}: {with_git}");
        }
        // nothing outside changed
        assert_eq!(fs_err::read_to_string(&canary).unwrap(), "untouched\n");
        let listed: Vec<_> = fs_err::read_dir(outside.path()).unwrap().collect();
        assert_eq!(listed.len(), 1, "{name}: {listed:?}");
    }
}

#[test]
fn builtin_git_add_of_a_repository_matches_the_binary() {
    let repos = Repos::new();
    let daemon = git_daemon(&repos);
    let http = git_http_v0(&repos);
    let repo = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let main = repos.commit("main");
    let dockerfile = format!(
        "FROM scratch\n\
         ADD {repo} /all/\n\
         ADD {repo}#v1:sub /v1sub\n\
         ADD {repo}#with-sub /withsub\n\
         ADD {repo}?ref=with-sub&submodules=false /nosub\n\
         ADD --checksum={} {repo}#main:sub /owned/\n\
         ADD http://{USER}:{PASSWORD}@127.0.0.1:{}/repo.git#dev /http/\n",
        &main[..10],
        http.port
    );
    let (with_git, _) = build(&dockerfile, &[], &[], false);
    let (builtin, log) = build(&dockerfile, &[], &[], true);
    pretty_assertions::assert_eq!(with_git, builtin);
    crate::harness::assert_has_lines(
        &builtin,
        &[
            "/all/hello.txt 644 0:0 file n=1 \"main\\n\"",
            "/v1sub/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"",
            "/withsub/lib/lib.txt 644 0:0 file n=1 \"from the submodule\\n\"",
            "/owned/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"",
            "/http/hello.txt 644 0:0 file n=1 \"dev\\n\"",
        ],
    );
    assert!(!builtin.contains("/nosub/lib/lib.txt"), "{builtin}");
    assert!(!log.contains(PASSWORD), "{log}");

    // ssh needs git, and says so
    let t = TestContext::new("FROM scratch\nADD git@127.0.0.1:repo.git /ssh\n");
    let ctx = t.ctx();
    let err = smelt_fails(&["--context", ctx.to_str().unwrap()], &[NO_GIT]);
    assert!(
        err.contains("cloning over ssh needs the git binary; the executor image has none"),
        "{err}"
    );
}
mod tmp {}

/// Runs `smelt build --no-push`: its exit code and stderr.
fn smelt_run(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = smelt_output(args, env);
    format!(
        "{:?} {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A submodule on another server (which takes the same password) is
/// fetched without the superproject's credentials: it is refused.
#[test]
fn builtin_git_credentials_go_to_the_repository_server_only() {
    let repos = Repos::new();
    let http = git_http(&repos);
    let other = git_http(&repos);
    let work = repos.dir.path().join("elsewhere");
    let bare = repos.dir.path().join("repo.git");
    git(
        repos.dir.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    git(&work, &["checkout", "-q", "with-sub"]);
    fs_err::write(
        work.join(".gitmodules"),
        format!(
            "[submodule \"lib\"]\n\tpath = lib\n\turl = http://127.0.0.1:{}/lib.git\n",
            other.port
        ),
    )
    .unwrap();
    git(&work, &["commit", "-qam", "lib elsewhere"]);
    git(
        &work,
        &["push", "-q", "origin", "HEAD:refs/heads/sub-elsewhere"],
    );
    let url = format!("http://127.0.0.1:{}/repo.git", http.port);
    let args = [
        "--context",
        &url,
        "--git",
        "branch=sub-elsewhere",
        "--git",
        "recurse-submodules=true",
    ];
    let err = smelt_fails(
        &args,
        &[("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD), NO_GIT],
    );
    assert!(err.contains("checking out submodules"), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{}/lib.git", other.port)),
        "{err}"
    );
    assert!(err.contains("Authentication failed"), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}

/// A server that redirects every request to `to` (another port: another
/// server, to git and to smelt).
fn redirector(to: u16) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            let target = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let _ = (&stream).write_all(
                format!(
                    "HTTP/1.1 301 Moved Permanently\r\nLocation: http://127.0.0.1:{to}{target}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
        }
    });
    port
}

/// A redirect is followed, but the credentials stay with the server they
/// were given for: the one redirected to (which takes the same password)
/// refuses.
#[test]
fn builtin_git_follows_a_redirect_without_the_credentials() {
    let repos = Repos::new();
    let http = git_http(&repos);
    let port = redirector(http.port);
    let url = format!("http://127.0.0.1:{port}/repo.git");
    let err = smelt_fails(
        &["--context", &url],
        &[("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD), NO_GIT],
    );
    let target = format!("http://127.0.0.1:{}", http.port);
    assert!(
        err.contains(&format!(
            "Authentication failed ({target} (redirected to) answered 401"
        )),
        "{err}"
    );
    assert!(!err.contains(PASSWORD), "{err}");
    // and so does git
    let login = [("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD)];
    let err = smelt_fails(&["--context", &url], &login);
    assert!(
        err.contains(&format!("could not read Username for '{target}'")),
        "{err}"
    );
}

/// A sub-directory that is a symlink in the repository (out of it) is not
/// a context, with git or without.
#[test]
fn a_sub_directory_that_is_a_symlink_is_refused() {
    let repos = Repos::new();
    let bare = repos.dir.path().join("repo.git");
    let outside = tempfile::tempdir().unwrap();
    fs_err::write(
        outside.path().join("Dockerfile"),
        "FROM scratch\nCOPY . /leaked/\n",
    )
    .unwrap();
    fs_err::write(outside.path().join("secret.txt"), "host secret\n").unwrap();
    let blob = |text: &str| git_in(&bare, &["hash-object", "-w", "--stdin"], text.as_bytes());
    let target = blob(outside.path().to_str().unwrap());
    let up = blob("..");
    let tree_id = raw_tree(&bare, &[("120000", "out", &target), ("120000", "up", &up)]);
    let commit = git_in(&bare, &["commit-tree", &tree_id, "-m", "links"], b"");
    git(&bare, &["update-ref", "refs/heads/links", &commit]);
    let daemon = git_daemon(&repos);
    for dir in ["out", "up"] {
        let context = format!("git://127.0.0.1:{}/repo.git#links:{dir}", daemon.port);
        for env in [
            vec![("GIT_PULL_METHOD", "git")],
            vec![("GIT_PULL_METHOD", "git"), NO_GIT],
        ] {
            let err = smelt_fails(&["--context", &context], &env);
            assert!(err.contains(&format!("sub-directory {dir:?}")), "{err}");
            assert!(!err.contains("leaked"), "{err}");
            // nor an ADD source
            let t = TestContext::new(&format!(
                "FROM scratch\nADD git://127.0.0.1:{}/repo.git#links:{dir} /leaked/\n",
                daemon.port
            ));
            let ctx = t.ctx();
            let err = smelt_fails(&["--context", ctx.to_str().unwrap()], &env);
            assert!(err.contains(&format!("sub-directory {dir:?}")), "{err}");
        }
    }
}
