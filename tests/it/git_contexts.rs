//! Git repository contexts, cloned by the real `git` from `git daemon` and
//! from git's smart HTTP (`git http-backend`) behind basic auth: refs,
//! tags, commits, sub-directories, submodules, and errors that name what
//! failed without the credentials.

use crate::contexts::{smelt, smelt_fails};
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

#[track_caller]
fn has(listing: &str, line: &str) {
    assert!(listing.contains(line), "no {line:?} in\n{listing}");
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
        .args(["--git", "depth=1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
