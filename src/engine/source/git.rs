//! Git repository contexts, fetched with the `git` binary (the
//! transports, credentials, proxies and TLS settings users already have).
//!
//! kaniko's spelling: `git://host/repo.git[#REF][#COMMIT]`, where `git://`
//! means "a git context": the clone goes over `https` unless
//! `GIT_PULL_METHOD` is `http` (kaniko's variable) or `git` (the git
//! protocol, e.g. `git daemon`; smelt's addition). `https://…/repo.git`
//! and `http://…/repo.git` URLs are git contexts too.
//!
//! - `REF` is a full ref (`refs/heads/main`, `refs/tags/v1`,
//!   `refs/pull/7/head`), a short branch or tag name, or a commit id;
//!   docker's `REF:DIR` form also names a sub-directory.
//! - The third part is a commit id to check out (kaniko), or else a
//!   sub-directory that becomes the context.
//! - `--git branch=B` picks branch `B` (or tag `B`) instead;
//!   `single-branch=true` fetches only that branch when a whole history is
//!   needed; `recurse-submodules=true` checks out submodules;
//!   `insecure-skip-tls=true` skips TLS verification.
//! - `GIT_USERNAME`/`GIT_PASSWORD`, or `GIT_TOKEN` (as the user name, as
//!   kaniko sends it), or user info in the URL itself (`https://u:p@host/…`,
//!   taken first), answer the server's basic-auth challenge through a
//!   credential helper that reads them from the environment and answers
//!   only for the repository's own server: git is given the URL without
//!   user info, so they never reach a command line, `.git/config`, a log or
//!   an error message.
//!
//! Only the named commit is fetched (`--depth 1`) when the server allows
//! it. The `.git` directory is left out of the context, as BuildKit does,
//! unless the build argument `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1` is given.
//!
//! Where no `git` is on `PATH` (the executor image), smelt's own client
//! ([`client`]) does the same over https://, http:// and git:// with the
//! same ref rules and credentials; ssh and keeping `.git` need the binary.

#[path = "git_client/mod.rs"]
mod client;

use super::{SourceError, env};
use crate::fs::tree::remove_any;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// A git repository context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    /// `https` or `http` when the URL said so; `None` for `git://`.
    scheme: Option<String>,
    /// `host/path/repo.git`, after the scheme.
    location: String,
    reference: Option<String>,
    commit: Option<String>,
    subdir: Option<String>,
}

/// `--git`'s settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GitOptions {
    pub branch: Option<String>,
    pub single_branch: bool,
    pub recurse_submodules: bool,
    pub insecure_skip_tls: bool,
    /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`: keep `.git` in the context.
    pub keep_git_dir: bool,
    /// The SSH agent git's ssh uses (`--ssh default`, for ADD of an SSH
    /// repository, as BuildKit forwards it); else the environment's.
    pub ssh_auth_sock: Option<PathBuf>,
}

impl GitOptions {
    /// Reads `--git` values (`key=value`, repeated or comma-separated).
    pub fn parse(values: &[String]) -> Result<GitOptions, SourceError> {
        let mut options = GitOptions::default();
        for item in values.iter().flat_map(|v| v.split(',')) {
            if item.is_empty() {
                continue;
            }
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| SourceError::GitSyntax(item.to_string()))?;
            let flag = || match value {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(SourceError::GitBool {
                    key: key.to_string(),
                    value: value.to_string(),
                }),
            };
            match key {
                "branch" => options.branch = Some(value.to_string()).filter(|b| !b.is_empty()),
                "single-branch" => options.single_branch = flag()?,
                "recurse-submodules" => options.recurse_submodules = flag()?,
                "insecure-skip-tls" => options.insecure_skip_tls = flag()?,
                // the fork's clone depth: smelt fetches only the wanted
                // commit whatever it is, which gives the same context
                "depth" => {
                    value
                        .parse::<u32>()
                        .map_err(|_| SourceError::GitDepth(value.to_string()))?;
                }
                _ => return Err(SourceError::GitOption(key.to_string())),
            }
        }
        Ok(options)
    }
}

/// Whether `rest` (after `scheme://`) names a git repository.
pub fn is_repository_url(rest: &str) -> bool {
    let location = rest.split('#').next().unwrap_or(rest);
    location.trim_end_matches('/').ends_with(".git")
}

/// A full commit id (SHA-1 or SHA-256).
fn is_commit(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitSource {
    /// `location[#ref[:dir]][#commit-or-dir]`, after `scheme://`.
    pub fn parse(scheme: Option<&str>, rest: &str) -> Result<GitSource, SourceError> {
        let shown = || super::shown_url(rest);
        let mut parts = rest.split('#');
        let location = parts.next().unwrap_or_default().to_string();
        if location.is_empty() {
            return Err(SourceError::NoRepository { shown: shown() });
        }
        let mut source = GitSource {
            scheme: scheme.map(str::to_string),
            location,
            reference: None,
            commit: None,
            subdir: None,
        };
        if let Some(first) = parts.next().filter(|p| !p.is_empty()) {
            let (reference, dir) = first.split_once(':').unwrap_or((first, ""));
            if is_commit(reference) {
                source.commit = Some(reference.to_string());
            } else if !reference.is_empty() {
                source.reference = Some(reference.to_string());
            }
            source.subdir = Some(dir.to_string()).filter(|d| !d.is_empty());
        }
        if let Some(second) = parts.next().filter(|p| !p.is_empty()) {
            if is_commit(second) && source.commit.is_none() {
                source.commit = Some(second.to_string());
            } else if source.subdir.is_none() {
                source.subdir = Some(second.to_string());
            } else {
                return Err(SourceError::SecondSubdir {
                    shown: shown(),
                    part: second.to_string(),
                });
            }
        }
        if parts.next().is_some() {
            return Err(SourceError::TooManyParts { shown: shown() });
        }
        if let Some(dir) = &source.subdir {
            let path = Path::new(dir.trim_start_matches('/'));
            if path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(SourceError::SubdirEscapes {
                    shown: shown(),
                    dir: dir.clone(),
                });
            }
        }
        Ok(source)
    }

    /// A repository ADD names (`engine/add_git.rs`): `url` as written,
    /// without its fragment (any scheme, or scp-like `user@host:path` for
    /// SSH), the commit it resolved to, and the ref that named it.
    pub fn for_add(
        url: &str,
        reference: Option<String>,
        commit: String,
        subdir: Option<String>,
    ) -> GitSource {
        let (scheme, location) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.to_string(), rest.to_string()),
            // an empty scheme: `location` is the whole URL
            None => (String::new(), url.to_string()),
        };
        GitSource {
            scheme: Some(scheme),
            location,
            reference,
            commit: Some(commit),
            subdir,
        }
    }

    /// The lines `git ls-remote -- URL PATTERNS…` prints (`SHA\tREF`), with
    /// the URL's credentials given to git as a fetch gets them (never on
    /// a command line).
    pub fn ls_remote(
        &self,
        patterns: &[&str],
        options: &GitOptions,
    ) -> Result<String, SourceError> {
        let dir = std::env::temp_dir();
        let git = Git::new(&dir, &self.url(), options);
        if !git_installed() {
            return client::ls_remote(
                &git.url,
                git.login.as_ref(),
                patterns,
                options.insecure_skip_tls,
            )
            .map_err(|e| SourceError::Git {
                shown: git.shown.clone(),
                message: git.redact(&format!("listing refs: {e}")),
            });
        }
        let mut args = vec!["ls-remote", "--", git.url.as_str()];
        args.extend_from_slice(patterns);
        git.run(&args).map_err(|e| SourceError::Git {
            shown: git.shown.clone(),
            message: git.redact(&e.during("listing refs".to_string()).to_string()),
        })
    }

    /// The URL git is given: the scheme, then the location.
    fn url(&self) -> String {
        if self.scheme.as_deref() == Some("") {
            return self.location.clone();
        }
        let scheme = self.scheme.clone().unwrap_or_else(|| {
            match std::env::var("GIT_PULL_METHOD").as_deref() {
                Ok(m @ ("http" | "git")) => m.to_string(),
                _ => "https".to_string(),
            }
        });
        format!("{scheme}://{}", self.location)
    }

    /// Clones into the empty directory `into`; returns the context
    /// directory (the sub-directory, when one is named).
    pub fn fetch(&self, into: &Path, options: &GitOptions) -> Result<PathBuf, SourceError> {
        let started = Instant::now();
        let git = Git::new(into, &self.url(), options);
        if !git_installed() {
            return self.fetch_builtin(&git, into, options, started);
        }
        let fail = |e: GitFailure| SourceError::Git {
            shown: git.shown.clone(),
            message: git.redact(&e.to_string()),
        };
        git.run(&["init", "-q"]).map_err(fail)?;
        git.run(&["remote", "add", "origin", &git.url])
            .map_err(fail)?;
        let wanted = match &options.branch {
            Some(branch) => Some(git.branch_or_tag(branch).map_err(fail)?),
            None => self.reference.clone(),
        };
        let described = match (&self.commit, &wanted) {
            (Some(commit), _) => {
                git.fetch_commit(commit, wanted.as_deref(), options)
                    .map_err(fail)?;
                commit.clone()
            }
            (None, want) => {
                let want = want.as_deref().unwrap_or("HEAD");
                git.run(&["fetch", "-q", "--depth", "1", "--no-tags", "origin", want])
                    .map_err(|e| fail(e.during(format!("fetching {want}"))))?;
                git.run(&["checkout", "-q", "--detach", "FETCH_HEAD"])
                    .map_err(fail)?;
                want.to_string()
            }
        };
        let mut submodules = Vec::new();
        if options.recurse_submodules {
            git.run(&["submodule", "update", "-q", "--init", "--recursive"])
                .map_err(|e| fail(e.during("checking out submodules".to_string())))?;
            let listed = git
                .run(&[
                    "submodule",
                    "foreach",
                    "--quiet",
                    "--recursive",
                    "echo \"$displaypath\"",
                ])
                .map_err(fail)?;
            submodules.extend(listed.lines().map(str::to_string));
        }
        let head = git.run(&["rev-parse", "HEAD"]).map_err(fail)?;
        if !options.keep_git_dir {
            // a submodule's .git is a file naming its directory in ours
            for path in &submodules {
                remove_any(&into.join(path).join(".git"))?;
            }
            remove_any(&into.join(".git"))?;
        }
        log::info!(
            "context {}: {described} at {} ({} submodules) in {:.2} s",
            git.shown,
            head.trim(),
            submodules.len(),
            started.elapsed().as_secs_f64()
        );
        self.context_dir(into, &git.shown)
    }
}

impl GitSource {
    /// The directory the checkout in `into` gives: itself, or the named
    /// sub-directory, which must be a directory of the checkout reached
    /// through no symlink (one pointing out of the repository would make
    /// a directory of the host the context).
    fn context_dir(&self, into: &Path, shown: &str) -> Result<PathBuf, SourceError> {
        let Some(dir) = &self.subdir else {
            return Ok(into.to_path_buf());
        };
        let dir = dir.trim_matches('/');
        let root = crate::fs::root::Root::open(into)?;
        if !root.is_dir(dir).unwrap_or(false) {
            return Err(SourceError::Git {
                shown: shown.to_string(),
                message: format!(
                    "sub-directory {dir:?} is not a directory in the repository (missing, or a \
                     symlink)"
                ),
            });
        }
        Ok(into.join(dir))
    }

    /// [`GitSource::fetch`] without the git binary: smelt's own client.
    fn fetch_builtin(
        &self,
        git: &Git<'_>,
        into: &Path,
        options: &GitOptions,
        started: Instant,
    ) -> Result<PathBuf, SourceError> {
        let fail = |message: String| SourceError::Git {
            shown: git.shown.clone(),
            message: git.redact(&message),
        };
        if client::needs_ssh(&git.url) {
            return Err(fail(client::SSH_NEEDS_GIT.to_string()));
        }
        if options.keep_git_dir {
            return Err(fail(
                "keeping .git (BUILDKIT_CONTEXT_KEEP_GIT_DIR, --keep-git-dir) needs the git \
                 binary; the executor image has none"
                    .to_string(),
            ));
        }
        let want = client::Want {
            branch: options.branch.as_deref(),
            reference: self.reference.as_deref(),
            commit: self.commit.as_deref(),
            subdir: self.subdir.as_deref().map(|d| d.trim_start_matches('/')),
            single_branch: options.single_branch,
            recurse_submodules: options.recurse_submodules,
            insecure: options.insecure_skip_tls,
        };
        let fetched = client::fetch(&git.url, git.login.as_ref(), &want, into).map_err(fail)?;
        log::info!(
            "context {}: {} at {} ({} submodules, built-in git client) in {:.2} s",
            git.shown,
            fetched.described,
            fetched.commit,
            fetched.submodules,
            started.elapsed().as_secs_f64()
        );
        self.context_dir(into, &git.shown)
    }
}

/// Whether a `git` binary is on `PATH` (looked for once): else smelt's
/// own client fetches.
fn git_installed() -> bool {
    use std::os::unix::fs::PermissionsExt;
    static FOUND: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FOUND.get_or_init(|| {
        let found = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| {
                fs_err::metadata(dir.join("git"))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
        });
        if !found {
            log::debug!("no git on PATH: repositories are fetched by smelt's own git client");
        }
        found
    })
}

/// Why a `git` command failed; the text goes through [`Git::redact`]
/// before anyone sees it.
#[derive(Debug, thiserror::Error)]
enum GitFailure {
    #[error("stopped by {0}")]
    Stopped(String),
    #[error("the git binary is not installed (a git context needs it)")]
    NotInstalled,
    #[error("running git: {0}")]
    Spawn(#[source] std::io::Error),
    /// git failed without a word on stderr.
    #[error("git {command} failed ({status})")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
    },
    /// What git printed on stderr.
    #[error("{0}")]
    Said(String),
    #[error(
        "--git branch={name}: no branch or tag of that name (refs/heads/{name}, refs/tags/{name})"
    )]
    NoBranchOrTag { name: String },
    #[error("{doing}: {source}")]
    During {
        doing: String,
        #[source]
        source: Box<GitFailure>,
    },
}

impl GitFailure {
    /// This failure, as the failure of `doing`.
    fn during(self, doing: String) -> GitFailure {
        GitFailure::During {
            doing,
            source: Box::new(self),
        }
    }
}

/// User info written into a context URL, percent-decoded.
#[derive(Debug, PartialEq, Eq)]
struct UserInfo {
    user: String,
    password: Option<String>,
}

/// The URL without its user info, and that user info.
fn split_user_info(url: &str) -> (String, Option<UserInfo>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return (url.to_string(), None);
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let info = &rest[..at];
    let (user, password) = match info.split_once(':') {
        Some((u, p)) => (decode(u), Some(decode(p))),
        None => (decode(info), None),
    };
    (
        format!("{scheme}://{}", &rest[at + 1..]),
        Some(UserInfo { user, password }),
    )
}

/// The percent-encoded spellings of `secrets`, as a message quoting a URL
/// would show them.
fn encoded_spellings(secrets: &[String]) -> Vec<String> {
    secrets
        .iter()
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .filter(|e| !secrets.contains(e))
        .collect()
}

/// `scheme://host[:port]` of a URL without user info: the `credential.<url>`
/// key that matches the repository's server (every path on it).
fn credential_scope(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest))
        }
        None => url.to_string(),
    }
}

/// `git` commands in one work tree, with the credentials and TLS
/// settings the build asked for.
struct Git<'a> {
    dir: &'a Path,
    /// The URL without user info: what git is given.
    url: String,
    /// The URL without user info, for messages.
    shown: String,
    /// Values that must not appear in messages.
    secrets: Vec<String>,
    /// The user and password for the repository's server, if any.
    login: Option<client::Login>,
    config: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl<'a> Git<'a> {
    fn new(dir: &'a Path, url: &str, options: &GitOptions) -> Git<'a> {
        let (url, from_url) = split_user_info(url);
        let (env_user, env_password) = match env("GIT_TOKEN") {
            Some(token) => (Some(token), None),
            None => (env("GIT_USERNAME"), env("GIT_PASSWORD")),
        };
        // the URL's own user info first, as git would take it
        let (user, password) = match from_url {
            Some(info) => (Some(info.user), info.password.or(env_password)),
            None => (env_user, env_password),
        };
        let user = user.filter(|u| !u.is_empty());
        // a user name alone is a token (GIT_TOKEN, `https://TOKEN@host`)
        let mut secrets: Vec<String> = match &password {
            Some(p) => vec![p.clone()],
            None => user.iter().cloned().collect(),
        };
        secrets.extend(encoded_spellings(&secrets));
        secrets.retain(|s| !s.is_empty());
        let mut config = Vec::new();
        let mut env = vec![("GIT_TERMINAL_PROMPT", "0".to_string())];
        let login = (user.is_some() || password.is_some()).then(|| client::Login {
            user: user.clone().unwrap_or_default(),
            password: password.clone().unwrap_or_default(),
            scope: credential_scope(&url),
        });
        if user.is_some() || password.is_some() {
            // The helper answers `get` from the environment it inherits, so
            // no credential is on a command line (git's, the helper
            // shell's: echo is a builtin) or in `.git/config` (`-c` is not
            // written there). It answers only for the repository's own
            // scheme, host and port: a submodule on another host gets
            // nothing. The empty value first drops the user's helpers for
            // that URL.
            let scope = credential_scope(&url);
            config.push(format!("credential.{scope}.helper="));
            config.push(format!(
                "credential.{scope}.helper=!f() {{ test \"$1\" = get || exit 0; \
                 echo \"username=$SMELT_GIT_USERNAME\"; echo \"password=$SMELT_GIT_PASSWORD\"; }}; f"
            ));
            env.push(("SMELT_GIT_USERNAME", user.unwrap_or_default()));
            env.push(("SMELT_GIT_PASSWORD", password.unwrap_or_default()));
        }
        if options.insecure_skip_tls {
            config.push("http.sslVerify=false".to_string());
        }
        if let Some(sock) = &options.ssh_auth_sock {
            env.push(("SSH_AUTH_SOCK", sock.display().to_string()));
        }
        config.push("advice.detachedHead=false".to_string());
        config.push("init.defaultBranch=main".to_string());
        Git {
            dir,
            shown: super::shown_url(&url),
            url,
            secrets,
            login,
            config,
            env,
        }
    }

    /// Runs `git ARGS` in the work tree; `Ok` is its standard output,
    /// `Err` what it printed on failure.
    fn run(&self, args: &[&str]) -> Result<String, GitFailure> {
        if let Some(s) = crate::engine::interrupt::signal() {
            return Err(GitFailure::Stopped(crate::engine::interrupt::signal_name(
                s,
            )));
        }
        let mut command = Command::new("git");
        for c in &self.config {
            command.arg("-c").arg(c);
        }
        command.arg("-C").arg(self.dir).args(args);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.stdin(std::process::Stdio::null());
        let output = command.output().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                GitFailure::NotInstalled
            } else {
                GitFailure::Spawn(e)
            }
        })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            let said = String::from_utf8_lossy(&output.stderr);
            let said = said.trim();
            Err(if said.is_empty() {
                GitFailure::Failed {
                    command: args.first().copied().unwrap_or_default().to_string(),
                    status: output.status,
                }
            } else {
                GitFailure::Said(said.to_string())
            })
        }
    }

    /// `text` with the URL's user info and every credential blanked out.
    fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, &self.shown);
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), "***");
        }
        out
    }

    /// kaniko's `--git branch=`: the branch `refs/heads/B`, else the tag
    /// `refs/tags/B`.
    fn branch_or_tag(&self, name: &str) -> Result<String, GitFailure> {
        let heads = format!("refs/heads/{name}");
        let tags = format!("refs/tags/{name}");
        let listed = self
            .run(&["ls-remote", "origin", &heads, &tags])
            .map_err(|e| e.during("listing refs".to_string()))?;
        let has = |r: &str| listed.lines().any(|l| l.split('\t').nth(1) == Some(r));
        if has(&heads) {
            Ok(heads)
        } else if has(&tags) {
            Ok(tags)
        } else {
            Err(GitFailure::NoBranchOrTag {
                name: name.to_string(),
            })
        }
    }

    /// Checks out `commit`: fetched alone when the server allows it, else
    /// with the history of `reference` (or of every branch, or of HEAD
    /// alone with `single-branch`).
    fn fetch_commit(
        &self,
        commit: &str,
        reference: Option<&str>,
        options: &GitOptions,
    ) -> Result<(), GitFailure> {
        let alone = self.run(&["fetch", "-q", "--depth", "1", "--no-tags", "origin", commit]);
        if alone.is_err() {
            let all = "+refs/heads/*:refs/remotes/origin/*";
            let want = reference.unwrap_or(if options.single_branch { "HEAD" } else { all });
            self.run(&["fetch", "-q", "--tags", "origin", want])
                .map_err(|e| e.during(format!("fetching {want}")))?;
        }
        self.run(&["checkout", "-q", "--detach", commit])
            .map_err(|e| e.during(format!("commit {commit}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn kaniko_and_docker_spellings() {
        let g = GitSource::parse(None, "h/r.git#refs/heads/b#sub/dir").unwrap();
        assert_eq!(g.reference.as_deref(), Some("refs/heads/b"));
        assert_eq!(g.subdir.as_deref(), Some("sub/dir"));
        let g = GitSource::parse(None, &format!("h/r.git#refs/pull/7/head#{SHA}")).unwrap();
        assert_eq!(g.commit.as_deref(), Some(SHA));
        let g = GitSource::parse(Some("https"), &format!("h/r.git#{SHA}")).unwrap();
        assert_eq!((g.reference, g.commit.as_deref()), (None, Some(SHA)));
        let g = GitSource::parse(Some("https"), "h/r.git#main:docker").unwrap();
        assert_eq!(g.reference.as_deref(), Some("main"));
        assert_eq!(g.subdir.as_deref(), Some("docker"));
        assert_eq!(g.url(), "https://h/r.git");
        assert_eq!(
            GitSource::parse(None, "h/r.git#main#../up")
                .unwrap_err()
                .to_string(),
            "--context h/r.git: sub-directory \"../up\" must stay inside the repository"
        );
        assert!(GitSource::parse(None, "h/r.git#a#b#c").is_err());
        assert!(is_repository_url("h/r.git#x"));
        assert!(!is_repository_url("h/c.tar.gz"));
    }

    #[test]
    fn user_info_leaves_the_url() {
        let (url, info) = split_user_info("https://ci:p%40ss@h:8443/a/r.git");
        assert_eq!(url, "https://h:8443/a/r.git");
        let info = info.unwrap();
        assert_eq!(
            (info.user.as_str(), info.password.as_deref()),
            ("ci", Some("p@ss"))
        );
        let (url, info) = split_user_info("https://tok@h/r.git");
        assert_eq!(url, "https://h/r.git");
        assert_eq!(info.unwrap().password, None);
        // an @ in the path is not user info
        assert_eq!(
            split_user_info("https://h/a@b/r.git"),
            ("https://h/a@b/r.git".to_string(), None)
        );
        assert_eq!(credential_scope("https://h:8443/a/r.git"), "https://h:8443");
        assert_eq!(
            encoded_spellings(&["p@ss".to_string(), "plain".to_string()]),
            vec!["p%40ss"]
        );
    }

    #[test]
    fn git_flag_values() {
        let o = GitOptions::parse(&[
            "branch=dev".to_string(),
            "single-branch=true,recurse-submodules=true".to_string(),
        ])
        .unwrap();
        assert_eq!(o.branch.as_deref(), Some("dev"));
        assert!(o.single_branch && o.recurse_submodules && !o.insecure_skip_tls);
        assert!(GitOptions::parse(&["depth=1".to_string()]).is_ok());
        assert!(GitOptions::parse(&["depth=x".to_string()]).is_err());
        assert!(GitOptions::parse(&["shallow=1".to_string()]).is_err());
        assert_eq!(
            GitOptions::parse(&["single-branch=yes".to_string()])
                .unwrap_err()
                .to_string(),
            "--git single-branch=yes: want true or false"
        );
    }
}
