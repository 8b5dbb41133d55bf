//! ADD of a git repository (`ADD https://host/repo.git#ref:dir /dst`,
//! `git@host:repo.git`, `git://…`, `ssh://…`): the ref is resolved to a
//! commit with `git ls-remote` while the cache keys are worked out (the
//! commit, not the files, is what the key covers), and the commit is
//! checked out only when the step runs, into the build's work directory,
//! with the git code of the git build context (`source/git.rs`:
//! credentials only in git's environment), submodules too. `--checksum`
//! is a commit prefix, checked before anything is fetched; `.git` is left
//! out unless `--keep-git-dir`.

use super::download::OncePerKey;
use super::source::{GitOptions, GitSource, SourceError, shown_url};
use std::path::PathBuf;
use std::sync::Arc;

/// A git repository as ADD takes one (BuildKit's `ParseGitRef`): `git@`,
/// `git://`, `ssh://`, or an `http(s)://` URL whose path (before a query
/// or fragment) ends in `.git`.
pub fn is_repository(source: &str) -> bool {
    match source.split_once("://") {
        Some(("git" | "ssh", _)) => true,
        Some(("http" | "https", rest)) => rest
            .split(['#', '?'])
            .next()
            .is_some_and(|path| path.trim_end_matches('/').ends_with(".git")),
        Some(_) => false,
        None => source.starts_with("git@"),
    }
}

/// Why a repository could not be added.
#[derive(Debug, thiserror::Error)]
pub enum GitAddError {
    #[error("{shown}: no repository in the URL")]
    NoRepository { shown: String },
    #[error("{shown}: sub-directory {dir:?} must stay inside the repository")]
    SubdirEscapes { shown: String, dir: String },
    /// A query BuildKit refuses, in its words.
    #[error("{shown}: {message}")]
    Query { shown: String, message: String },
    #[error("checksum mismatch {0:?} != {1:?}")]
    ChecksumConflict(String, String),
    #[error("inconsistent keep-git-dir configuration")]
    KeepGitDirConflict,
    /// What git said, credentials blanked out.
    #[error("git repository {shown}: {message}")]
    Git { shown: String, message: String },
    #[error("git repository {shown}: repository does not contain ref {reference}")]
    NoRef { shown: String, reference: String },
    /// BuildKit's words.
    #[error("invalid checksum {0} for Git URL, expected hex commit hash")]
    BadChecksum(String),
    #[error("expected checksum to match {expected}, got {commit}")]
    Checksum { expected: String, commit: String },
    #[error("git repository {shown}: sub-directory {dir:?} is not in commit {commit}")]
    NoSubdir {
        shown: String,
        dir: String,
        commit: String,
    },
    #[error("git repository {shown}: {source}")]
    Source {
        shown: String,
        #[source]
        source: Box<SourceError>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A repository as an ADD source names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// The URL without its fragment (user info kept: git gets it through
    /// its environment).
    pub remote: String,
    /// The URL as messages and the cache show it.
    pub shown: String,
    pub reference: Option<String>,
    pub subdir: Option<String>,
    /// `?checksum=` or `?commit=`.
    pub checksum: Option<String>,
    /// `?keep-git-dir[=BOOL]`.
    pub keep_git_dir: Option<bool>,
    /// `?submodules=BOOL` (checked out unless false).
    pub submodules: Option<bool>,
}

/// BuildKit's query options of a git URL, applied to `r`.
fn apply_query(r: &mut GitRef, query: &str) -> Result<(), String> {
    let (mut tag, mut branch) = (None, None);
    let mut seen = std::collections::HashSet::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        let (key, value) = (decode(key), decode(value));
        if !seen.insert(key.clone()) {
            return Err(format!("query {key:?} has multiple values"));
        }
        let flag = |name: &str| match value.as_str() {
            "" => Ok(true),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            v => Err(format!("invalid {name} value: {v:?}")),
        };
        if value.is_empty()
            && !matches!(
                key.as_str(),
                "submodules" | "keep-git-dir" | "fetch-by-commit"
            )
        {
            return Err(format!("query {key:?} has no value"));
        }
        match key.as_str() {
            "ref" => {
                if r.reference.as_ref().is_some_and(|x| *x != value) {
                    return Err(format!(
                        "ref conflicts: {:?} vs {value:?}",
                        r.reference.as_deref().unwrap_or("")
                    ));
                }
                r.reference = Some(value);
            }
            "tag" => tag = Some(value),
            "branch" => branch = Some(value),
            "subdir" => {
                if r.subdir.as_ref().is_some_and(|x| *x != value) {
                    return Err(format!(
                        "subdir conflicts: {:?} vs {value:?}",
                        r.subdir.as_deref().unwrap_or("")
                    ));
                }
                r.subdir = Some(value.trim_matches('/').to_string()).filter(|d| !d.is_empty());
            }
            "checksum" | "commit" => r.checksum = Some(value),
            "keep-git-dir" => r.keep_git_dir = Some(flag("keep-git-dir")?),
            "submodules" => r.submodules = Some(flag("submodules")?),
            // smelt fetches the commit alone whenever the server allows it
            "fetch-by-commit" => {
                flag("fetch-by-commit")?;
            }
            "mtime" if value == "checkout" => {}
            "mtime" => {
                return Err(format!(
                    "mtime={value:?}: only \"checkout\" is implemented yet"
                ));
            }
            _ => return Err(format!("unexpected query {key:?}")),
        }
    }
    for (name, value, prefix) in [
        ("tag", &tag, "refs/tags/"),
        ("branch", &branch, "refs/heads/"),
    ] {
        let Some(v) = value else { continue };
        if name == "branch" && tag.is_some() {
            return Err("branch conflicts with tag".to_string());
        }
        let full = if v.starts_with(prefix) {
            v.clone()
        } else {
            format!("{prefix}{v}")
        };
        if r.reference.as_ref().is_some_and(|x| *x != full) {
            return Err(format!(
                "ref conflicts: {:?} vs {full:?}",
                r.reference.as_deref().unwrap_or("")
            ));
        }
        r.reference = Some(full);
    }
    Ok(())
}

impl GitRef {
    /// `REMOTE[?QUERY][#REF[:DIR]]`.
    pub fn parse(source: &str) -> Result<GitRef, GitAddError> {
        let (location, fragment) = source.split_once('#').unwrap_or((source, ""));
        let (remote, query) = location.split_once('?').unwrap_or((location, ""));
        let shown = shown_url(remote);
        if remote.is_empty() {
            return Err(GitAddError::NoRepository { shown });
        }
        let (reference, dir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let mut r = GitRef {
            remote: remote.to_string(),
            shown: shown.clone(),
            reference: Some(reference.to_string()).filter(|r| !r.is_empty()),
            subdir: Some(dir.trim_matches('/').to_string()).filter(|d| !d.is_empty()),
            checksum: None,
            keep_git_dir: None,
            submodules: None,
        };
        apply_query(&mut r, query).map_err(|message| GitAddError::Query {
            shown: shown.clone(),
            message,
        })?;
        if let Some(d) = &r.subdir
            && std::path::Path::new(d)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(GitAddError::SubdirEscapes {
                shown,
                dir: d.clone(),
            });
        }
        Ok(r)
    }

    /// The `--checksum` flag and the URL's own, which must agree.
    fn checksum_with(&self, flag: Option<&str>) -> Result<Option<String>, GitAddError> {
        match (flag, &self.checksum) {
            (Some(f), Some(q)) if f != q => {
                Err(GitAddError::ChecksumConflict(f.to_string(), q.clone()))
            }
            (Some(f), _) => Ok(Some(f.to_string())),
            (None, q) => Ok(q.clone()),
        }
    }

    /// Whether `.git` stays: `--keep-git-dir` (given when `flag`) or the
    /// URL's `keep-git-dir`, which must not say otherwise.
    pub fn keep_git_dir_with(&self, flag: bool) -> Result<bool, GitAddError> {
        match (flag, self.keep_git_dir) {
            (true, Some(false)) => Err(GitAddError::KeepGitDirConflict),
            (flag, query) => Ok(flag || query == Some(true)),
        }
    }

    /// How the cache key and its report name it: the URL without
    /// credentials, the ref, the sub-directory, and the URL's switches
    /// (the query itself is not shown: it may hold a token).
    pub fn key_name(&self) -> String {
        format!(
            "{}#{}:{}{}",
            self.shown,
            self.reference.as_deref().unwrap_or(""),
            self.subdir.as_deref().unwrap_or(""),
            match (self.submodules, self.keep_git_dir) {
                (Some(false), Some(true)) => " (no submodules, keep .git)",
                (Some(false), _) => " (no submodules)",
                (_, Some(true)) => " (keep .git)",
                _ => "",
            }
        )
    }

    fn source(&self, commit: &str) -> GitSource {
        GitSource::for_add(
            &self.remote,
            self.reference.clone(),
            commit.to_string(),
            self.subdir.clone(),
        )
    }

    fn git_error(&self, e: SourceError) -> GitAddError {
        match e {
            SourceError::Git { message, .. } => GitAddError::Git {
                shown: self.shown.clone(),
                message,
            },
            source => GitAddError::Source {
                shown: self.shown.clone(),
                source: Box::new(source),
            },
        }
    }

    /// The commit the ref names now (`git ls-remote`), as BuildKit's git
    /// source picks it: a full commit id is itself; else the ref as a
    /// full name, a branch, then a tag (an annotated tag's commit).
    pub fn resolve(&self, options: &GitOptions) -> Result<String, GitAddError> {
        let reference = self.reference.as_deref().unwrap_or("HEAD");
        if is_commit(reference) {
            return Ok(reference.to_ascii_lowercase());
        }
        let peeled = format!("{reference}^{{}}");
        // a GitSource only for its ls-remote: the commit is not known yet
        let listed = self
            .source("")
            .ls_remote(&[reference, &peeled], options)
            .map_err(|e| self.git_error(e))?;
        let bare = |prefix: &str| format!("{prefix}{}", reference.trim_start_matches(prefix));
        let full = format!("refs/{}", reference.trim_start_matches("refs/"));
        let head = bare("refs/heads/");
        let tag = bare("refs/tags/");
        let peeled_tag = format!("{tag}^{{}}");
        let find = |name: &str| {
            listed.lines().find_map(|l| {
                let (sha, r) = l.split_once('\t')?;
                (r == name).then(|| sha.to_string())
            })
        };
        let found = if reference == "HEAD" {
            find("HEAD")
        } else {
            find(&full)
                .or_else(|| find(&head))
                .or_else(|| find(&peeled_tag))
                .or_else(|| find(&tag))
        };
        found.ok_or_else(|| GitAddError::NoRef {
            shown: self.shown.clone(),
            reference: reference.to_string(),
        })
    }
}

/// A full commit id (SHA-1 or SHA-256).
fn is_commit(s: &str) -> bool {
    matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a `--checksum` against the commit: a hex prefix of it.
pub fn check_commit(checksum: &str, commit: &str) -> Result<(), GitAddError> {
    if checksum.is_empty() || !checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(GitAddError::BadChecksum(checksum.to_string()));
    }
    if !commit.starts_with(&checksum.to_ascii_lowercase()) {
        return Err(GitAddError::Checksum {
            expected: checksum.to_string(),
            commit: commit.to_string(),
        });
    }
    Ok(())
}

/// A commit checked out for an ADD, kept until the build ends.
#[derive(Debug)]
pub struct Checkout {
    /// The directory copied (the sub-directory, if one was named).
    pub tree: PathBuf,
    pub commit: String,
    pub shown: String,
    _dir: tempfile::TempDir,
}

/// The repositories of one build: refs resolved, and checkouts.
#[derive(Debug)]
pub struct Repositories {
    dir: PathBuf,
    /// `--ssh default`: the agent git's ssh uses.
    ssh_auth_sock: Option<PathBuf>,
    resolved: OncePerKey<(String, Option<String>), String>,
    checkouts: OncePerKey<CheckoutKey, Arc<Checkout>>,
}

/// A checkout's remote, commit, sub-directory, whether `.git` stays and
/// whether submodules are checked out.
type CheckoutKey = (String, String, Option<String>, bool, bool);

impl Repositories {
    /// Checkouts go under `dir` (made on first use); an SSH repository is
    /// reached through the agent at `ssh_auth_sock` when given.
    pub fn new(dir: PathBuf, ssh_auth_sock: Option<PathBuf>) -> Repositories {
        Repositories {
            dir,
            ssh_auth_sock,
            resolved: OncePerKey::default(),
            checkouts: OncePerKey::default(),
        }
    }

    /// The commit `source` names, resolved once per build (so the key
    /// and the step see the same one), checked against `checksum`.
    pub fn commit(&self, source: &GitRef, checksum: Option<&str>) -> Result<String, GitAddError> {
        let key = (source.remote.clone(), source.reference.clone());
        let options = GitOptions {
            ssh_auth_sock: self.ssh_auth_sock.clone(),
            ..GitOptions::default()
        };
        let commit = self
            .resolved
            .get_or_try(&key, || source.resolve(&options))?;
        if let Some(sum) = source.checksum_with(checksum)? {
            check_commit(&sum, &commit)?;
        }
        Ok(commit)
    }

    /// `source` checked out at its commit (`.git` kept if asked).
    pub fn checkout(
        &self,
        source: &GitRef,
        checksum: Option<&str>,
        keep_git_dir: bool,
    ) -> Result<Arc<Checkout>, GitAddError> {
        let commit = self.commit(source, checksum)?;
        let keep_git_dir = source.keep_git_dir_with(keep_git_dir)?;
        let submodules = source.submodules != Some(false);
        let key = (
            source.remote.clone(),
            commit.clone(),
            source.subdir.clone(),
            keep_git_dir,
            submodules,
        );
        self.checkouts.get_or_try(&key, || {
            self.fetch(source, commit, keep_git_dir, submodules)
                .map(Arc::new)
        })
    }

    /// Checks `source` out at `commit` into a directory of its own.
    fn fetch(
        &self,
        source: &GitRef,
        commit: String,
        keep_git_dir: bool,
        submodules: bool,
    ) -> Result<Checkout, GitAddError> {
        let io = |source| GitAddError::Io {
            path: self.dir.clone(),
            source,
        };
        fs_err::create_dir_all(&self.dir).map_err(io)?;
        let dir = tempfile::Builder::new()
            .prefix("git-")
            .tempdir_in(&self.dir)
            .map_err(io)?;
        // BuildKit checks submodules out unless told not to
        let options = GitOptions {
            keep_git_dir,
            recurse_submodules: submodules,
            ssh_auth_sock: self.ssh_auth_sock.clone(),
            ..GitOptions::default()
        };
        let tree = source
            .source(&commit)
            .fetch(dir.path(), &options)
            .map_err(|e| source.git_error(e))?;
        if !fs_err::symlink_metadata(&tree).is_ok_and(|m| m.is_dir()) {
            return Err(GitAddError::NoSubdir {
                shown: source.shown.clone(),
                dir: source.subdir.clone().unwrap_or_default(),
                commit,
            });
        }
        normalize_modes(&tree).map_err(|source| GitAddError::Io {
            path: tree.clone(),
            source,
        })?;
        Ok(Checkout {
            tree,
            commit,
            shown: source.shown.clone(),
            _dir: dir,
        })
    }
}

/// BuildKit's modes for a repository's files, whatever the umask git
/// ran under: 0755 for directories and executables, 0644 for other
/// files (`.git`'s own files left as git made them); symlinks are never
/// followed.
fn normalize_modes(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = fs_err::symlink_metadata(&path)?;
        let mode = if meta.is_dir() {
            if entry.file_name() != ".git" {
                normalize_modes(&path)?;
            }
            0o755
        } else if meta.is_file() {
            if meta.permissions().mode() & 0o100 != 0 {
                0o755
            } else {
                0o644
            }
        } else {
            continue;
        };
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_and_sub_directories() {
        let g = GitRef::parse("https://u:pw@h/r.git#v1:docs/").unwrap();
        assert_eq!(g.remote, "https://u:pw@h/r.git");
        assert_eq!(g.shown, "https://h/r.git");
        assert_eq!(g.reference.as_deref(), Some("v1"));
        assert_eq!(g.subdir.as_deref(), Some("docs"));
        assert_eq!(g.key_name(), "https://h/r.git#v1:docs");
        let g = GitRef::parse("git@h:o/r.git").unwrap();
        assert_eq!((g.reference, g.subdir), (None, None));
        let g = GitRef::parse("git://h/r.git#:sub").unwrap();
        assert_eq!((g.reference, g.subdir.as_deref()), (None, Some("sub")));
        assert!(matches!(
            GitRef::parse("https://h/r.git#main:../x"),
            Err(GitAddError::SubdirEscapes { .. })
        ));
    }

    #[test]
    fn query_options_as_buildkit_reads_them() {
        let g = GitRef::parse(
            "https://h/r.git?tag=v1&subdir=docs&keep-git-dir&submodules=false&checksum=abc",
        )
        .unwrap();
        assert_eq!(g.remote, "https://h/r.git");
        assert_eq!(g.reference.as_deref(), Some("refs/tags/v1"));
        assert_eq!(g.subdir.as_deref(), Some("docs"));
        assert_eq!(
            (g.keep_git_dir, g.submodules, g.checksum.as_deref()),
            (Some(true), Some(false), Some("abc"))
        );
        assert_eq!(
            g.key_name(),
            "https://h/r.git#refs/tags/v1:docs (no submodules, keep .git)"
        );
        assert_eq!(
            GitRef::parse("https://h/r.git?branch=dev")
                .unwrap()
                .reference
                .as_deref(),
            Some("refs/heads/dev")
        );
        let err = |s: &str| GitRef::parse(s).unwrap_err().to_string();
        assert_eq!(
            err("https://h/r.git?x=1"),
            "https://h/r.git: unexpected query \"x\""
        );
        assert_eq!(
            err("https://h/r.git?ref=a#b"),
            "https://h/r.git: ref conflicts: \"b\" vs \"a\""
        );
        assert_eq!(
            err("https://h/r.git?tag=a&branch=b"),
            "https://h/r.git: branch conflicts with tag"
        );
        assert_eq!(
            err("https://h/r.git?ref="),
            "https://h/r.git: query \"ref\" has no value"
        );
        let g = GitRef::parse("https://h/r.git?keep-git-dir=false&checksum=ab").unwrap();
        assert!(matches!(
            g.keep_git_dir_with(true),
            Err(GitAddError::KeepGitDirConflict)
        ));
        assert!(!g.keep_git_dir_with(false).unwrap());
        assert_eq!(
            g.checksum_with(Some("cd")).unwrap_err().to_string(),
            "checksum mismatch \"cd\" != \"ab\""
        );
        assert!(is_repository("https://h/r.git?ref=main"));
        assert!(!is_repository("https://h/r.tar?x=.git"));
    }

    #[test]
    fn checksums_are_commit_prefixes() {
        let commit = "0123456789abcdef0123456789abcdef01234567";
        assert!(check_commit("0123abc", commit).is_err());
        assert!(check_commit("0123456", commit).is_ok());
        assert!(check_commit("0123456789ABCDEF", commit).is_ok());
        assert_eq!(
            check_commit("xyz", commit).unwrap_err().to_string(),
            "invalid checksum xyz for Git URL, expected hex commit hash"
        );
        assert_eq!(
            check_commit("fff", commit).unwrap_err().to_string(),
            format!("expected checksum to match fff, got {commit}")
        );
    }
}
