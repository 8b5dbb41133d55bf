//! Git repository contexts, cloned by the real `git` from `git daemon` and
//! from git's smart HTTP (`git http-backend`) behind basic auth: refs,
//! tags, commits, sub-directories, submodules, and errors that name what
//! failed without the credentials.

use crate::contexts::{has, smelt, smelt_fails};
use crate::git_server::{PASSWORD, Repos, TOKEN, USER, git_daemon, git_http};
use crate::harness::{TestContext, tree};
use std::process::Command;

/// Builds `--context context` into a fresh layout; returns the unpacked
/// image's listing.
fn listing(context: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let t = TestContext::new("unused: the Dockerfile comes from the repository\n");
    let mut args = vec!["--context", context];
    args.extend_from_slice(extra);
    smelt(&t, &args, b"", env);
    tree(&t.unpack())
}

/// Runs a build from `--context context` that must fail; its stderr.
fn failure(context: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    smelt_fails(&[&["--context", context], extra].concat(), env)
}

#[test]
fn a_repository_over_git_daemon_by_ref_tag_commit_and_sub_directory() {
    let repos = Repos::new();
    let daemon = git_daemon(&repos);
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let git = [("GIT_PULL_METHOD", "git")];

    // the default branch; .git stays out of the context
    let l = listing(&url, &[], &git);
    has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"");
    assert!(!l.contains("/ctx/.git "), "{l}");

    // kaniko's #ref, and --git branch= naming a tag
    let l = listing(&format!("{url}#refs/heads/dev"), &[], &git);
    has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"");
    let l = listing(&url, &["--git", "branch=v1"], &git);
    has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"");

    // a commit id after the ref, kaniko's third part
    let main = repos.commit("main");
    let l = listing(&format!("{url}#refs/heads/dev#{main}"), &[], &git);
    has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"");

    // a sub-directory as the third part: its Dockerfile, its files only
    let l = listing(&format!("{url}#refs/heads/main#sub"), &[], &git);
    has(&l, "/sub-ctx/only-in-sub.txt 644 0:0 file n=1 \"sub\\n\"");
    assert!(!l.contains("hello.txt"), "{l}");

    // BuildKit's build argument keeps .git
    let l = listing(
        &url,
        &["--build-arg", "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1"],
        &git,
    );
    has(&l, "/ctx/.git/HEAD ");
}

#[test]
fn a_repository_over_smart_http_with_credentials_and_submodules() {
    let repos = Repos::new();
    let http = git_http(&repos);
    let url = format!("http://127.0.0.1:{}/repo.git", http.port);
    let login = [("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD)];

    let l = listing(&url, &[], &login);
    has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"main\\n\"");

    // kaniko's git:// with GIT_PULL_METHOD=http, and a token
    let l = listing(
        &format!("git://127.0.0.1:{}/repo.git#refs/heads/dev", http.port),
        &[],
        &[("GIT_PULL_METHOD", "http"), ("GIT_TOKEN", TOKEN)],
    );
    has(&l, "/ctx/hello.txt 644 0:0 file n=1 \"dev\\n\"");

    // submodules, fetched with the same credentials; no .git file stays
    let l = listing(
        &url,
        &[
            "--git",
            "branch=with-sub",
            "--git",
            "recurse-submodules=true",
        ],
        &login,
    );
    has(
        &l,
        "/ctx/lib/lib.txt 644 0:0 file n=1 \"from the submodule\\n\"",
    );
    assert!(
        !l.contains("/ctx/lib/.git ") && !l.contains("/ctx/.git "),
        "{l}"
    );
    // without the option the submodule is an empty directory
    let l = listing(&url, &["--git", "branch=with-sub"], &login);
    has(&l, "/ctx/lib ");
    assert!(!l.contains("lib.txt"), "{l}");
}

#[test]
fn git_errors_name_the_repository_and_ref_and_never_the_credentials() {
    let repos = Repos::new();
    let http = git_http(&repos);
    let daemon = git_daemon(&repos);
    let url = format!("http://127.0.0.1:{}/repo.git", http.port);

    // a refused password
    let wrong = "wrong-pa55word";
    let err = failure(
        &url,
        &[],
        &[("GIT_USERNAME", USER), ("GIT_PASSWORD", wrong)],
    );
    assert!(err.contains(&format!("git context {url}")), "{err}");
    assert!(err.contains("Authentication failed"), "{err}");
    assert!(!err.contains(wrong), "{err}");

    // credentials in the URL itself, and a ref that does not exist
    let in_url = format!("http://{USER}:{PASSWORD}@127.0.0.1:{}/repo.git", http.port);
    let err = failure(&format!("{in_url}#refs/heads/nope"), &[], &[]);
    assert!(
        err.contains("couldn't find remote ref refs/heads/nope"),
        "{err}"
    );
    assert!(err.contains(&url), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");

    // --git branch= that is neither a branch nor a tag
    let git = [("GIT_PULL_METHOD", "git")];
    let daemon_url = format!("git://127.0.0.1:{}/repo.git", daemon.port);
    let err = failure(&daemon_url, &["--git", "branch=nope"], &git);
    assert!(err.contains("--git branch=nope: no branch or tag"), "{err}");

    // a repository that is not there
    let err = failure(
        &format!("git://127.0.0.1:{}/missing.git", daemon.port),
        &[],
        &git,
    );
    assert!(err.contains("missing.git"), "{err}");

    // a bad --git option is a usage error, before anything is fetched
    let out = Command::new(crate::harness::smelt_bin())
        .args(["build", "--no-push", "--context", &daemon_url])
        .args(["--git", "shallow=1"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--git shallow: unknown option"), "{err}");
}

/// A `git` in front of the real one that appends its arguments (one a
/// line) to `argv.log` and has git trace the commands it starts
/// (`git-remote-http` with its URL, the credential helper) to
/// `trace.log`; returns the directory to put first on PATH.
fn logging_git(dir: &std::path::Path) -> std::path::PathBuf {
    let real = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v git"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let shim = dir.join("bin");
    fs_err::create_dir_all(&shim).unwrap();
    let script = format!(
        "#!/bin/sh\nfor a in \"$0\" \"$@\"; do printf '%s\\n' \"$a\"; done >> {log}\n\
         GIT_TRACE={trace} exec {real} \"$@\"\n",
        log = dir.join("argv.log").display(),
        trace = dir.join("trace.log").display(),
        real = real.trim()
    );
    fs_err::write(shim.join("git"), script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(shim.join("git"), std::fs::Permissions::from_mode(0o755)).unwrap();
    shim
}

/// Every file under `root` that holds `secret`.
fn files_holding(root: &std::path::Path, secret: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let bytes = fs_err::read(&path).unwrap();
                if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

#[test]
fn git_credentials_reach_no_command_line_log_or_kept_git_dir() {
    let repos = Repos::new();
    let http = git_http(&repos);
    let plain = format!("http://127.0.0.1:{}/repo.git", http.port);
    // the password with its dashes percent-encoded, as a URL may carry it
    let encoded = PASSWORD.replace('-', "%2D");
    // (context URL, environment, more flags)
    type Case<'a> = (String, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: [Case; 4] = [
        // in the URL, with submodules on the same server
        (
            format!("http://{USER}:{PASSWORD}@127.0.0.1:{}/repo.git", http.port),
            vec![],
            &[
                "--git",
                "branch=with-sub",
                "--git",
                "recurse-submodules=true",
            ],
        ),
        (
            format!("http://{USER}:{encoded}@127.0.0.1:{}/repo.git", http.port),
            vec![],
            &[],
        ),
        (
            plain.clone(),
            vec![("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD)],
            &[],
        ),
        (plain.clone(), vec![("GIT_TOKEN", TOKEN)], &[]),
    ];
    for (url, login, extra) in cases {
        let t = TestContext::new("unused: the Dockerfile comes from the repository\n");
        let shim = logging_git(t.dir.path());
        let path = format!(
            "{}:{}",
            shim.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env = login.clone();
        env.push(("PATH", &path));
        let mut args = vec![
            "--context",
            &url,
            "--verbosity",
            "trace",
            "--build-arg",
            "BUILDKIT_CONTEXT_KEEP_GIT_DIR=1",
        ];
        args.extend_from_slice(extra);
        let log = smelt(&t, &args, b"", &env);
        let argv = fs_err::read_to_string(t.path("argv.log")).unwrap();
        let trace = fs_err::read_to_string(t.path("trace.log")).unwrap();
        // the shim saw git's commands, and git started its HTTP helper
        assert!(argv.contains("\nremote\nadd\norigin\n"), "{argv}");
        assert!(trace.contains("git-remote-http"), "{trace}");
        let secrets = [PASSWORD, encoded.as_str(), TOKEN, "ci:", "@127.0.0.1"];
        for secret in secrets {
            for (what, text) in [
                ("git's argv", &argv),
                ("git's trace", &trace),
                ("the log", &log),
            ] {
                assert!(
                    !text.contains(secret),
                    "{secret:?} in {what} ({url}):\n{text}"
                );
            }
        }
        // the kept .git: every file of it, and the rest of the image
        let rootfs = t.unpack();
        let kept = rootfs.join("ctx/.git");
        assert!(kept.join("HEAD").is_file(), "{}", tree(&rootfs));
        let config = fs_err::read_to_string(kept.join("config")).unwrap();
        assert!(config.contains(&format!("url = {plain}\n")), "{config}");
        assert!(!config.contains("credential"), "{config}");
        for secret in secrets {
            let found = files_holding(&rootfs, secret);
            assert!(found.is_empty(), "{secret:?} in the image: {found:?}");
            let found = files_holding(&t.path("oci"), secret);
            assert!(found.is_empty(), "{secret:?} in the layout: {found:?}");
        }
        if !extra.is_empty() {
            has(
                &tree(&rootfs),
                "/ctx/lib/lib.txt 644 0:0 file n=1 \"from the submodule\\n\"",
            );
        }
    }
}

#[test]
fn git_credentials_go_to_the_repository_server_only() {
    let repos = Repos::new();
    let http = git_http(&repos);
    // the same repositories on another port: another server to git
    let other = git_http(&repos);
    let work = repos.dir.path().join("elsewhere");
    let bare = repos.dir.path().join("repo.git");
    crate::git_server::git(
        repos.dir.path(),
        &[
            "clone",
            "-q",
            bare.to_str().unwrap(),
            work.to_str().unwrap(),
        ],
    );
    crate::git_server::git(&work, &["checkout", "-q", "with-sub"]);
    fs_err::write(
        work.join(".gitmodules"),
        format!(
            "[submodule \"lib\"]\n\tpath = lib\n\turl = http://127.0.0.1:{}/lib.git\n",
            other.port
        ),
    )
    .unwrap();
    crate::git_server::git(&work, &["commit", "-qam", "lib elsewhere"]);
    crate::git_server::git(
        &work,
        &["push", "-q", "origin", "HEAD:refs/heads/sub-elsewhere"],
    );

    let url = format!("http://127.0.0.1:{}/repo.git", http.port);
    let err = failure(
        &url,
        &[
            "--git",
            "branch=sub-elsewhere",
            "--git",
            "recurse-submodules=true",
        ],
        &[("GIT_USERNAME", USER), ("GIT_PASSWORD", PASSWORD)],
    );
    // the other server asked, and was given nothing
    assert!(err.contains("checking out submodules"), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{}", other.port)), "{err}");
    assert!(!err.contains(PASSWORD), "{err}");
}
