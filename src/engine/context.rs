//! Where COPY reads from: the build context (filtered by `.dockerignore`
//! before anything is read) or another stage's root. Source paths and globs
//! resolve inside the tree; nothing outside it can be named.

use crate::dockerfile::DockerIgnore;
use crate::dockerfile::ignore::{Flavor, Glob};
use crate::fs::root::Root;
use crate::fs::{FsError, scope};
use crate::lexpath;
use std::path::{Path, PathBuf};

/// Why a COPY source cannot be read from its tree. `tree` is how the tree is
/// named ("build context", "stage builder"); paths and patterns are as
/// written.
#[derive(Debug, thiserror::Error)]
pub enum SourceTreeError {
    #[error("{path:?}: not found in {tree}")]
    NotFound { path: String, tree: String },
    #[error("{pattern:?}: no source files were specified (nothing in the {tree} matches)")]
    NothingMatches { pattern: String, tree: String },
    #[error("{pattern:?}: syntax error in pattern")]
    BadPattern { pattern: String },
    /// Resolving a path inside the tree (a symlink loop, a name too long);
    /// the message names the path.
    #[error(transparent)]
    Resolve(#[from] FsError),
}

/// A tree COPY can read from.
#[derive(Debug, Clone)]
pub struct SourceTree {
    pub root: PathBuf,
    /// `.dockerignore` patterns (the context only).
    pub ignore: Option<DockerIgnore>,
    /// Whether files keep their owner (stages) or become root's (context).
    pub keep_owner: bool,
    /// How the tree is named in errors ("build context", "stage builder").
    pub label: String,
}

impl SourceTree {
    pub fn context(root: PathBuf, ignore: DockerIgnore) -> SourceTree {
        SourceTree {
            root,
            ignore: Some(ignore),
            keep_owner: false,
            label: "build context".to_string(),
        }
    }

    pub fn stage(root: PathBuf, label: String) -> SourceTree {
        SourceTree {
            root,
            ignore: None,
            keep_owner: true,
            label,
        }
    }

    /// Whether `rel` is hidden by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.as_ref().is_some_and(|i| i.is_excluded(rel))
    }

    /// Whether an excluded directory may still hold included files.
    pub fn may_include_below(&self) -> bool {
        self.ignore
            .as_ref()
            .is_some_and(DockerIgnore::has_exceptions)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(lexpath::to_os(rel))
    }

    /// The paths a COPY source names: a glob is expanded element by element
    /// (as Go's `filepath.Glob`), a plain path as written. Each match is
    /// read through its resolved path (symlinks followed, the last one too,
    /// inside the tree), and named as matched. Excluded paths are not
    /// found. `links` gets every symlink followed on the way. A glob may
    /// match nothing.
    pub fn expand_matches(
        &self,
        source: &str,
        links: &mut Vec<String>,
    ) -> Result<Vec<Match>, SourceTreeError> {
        let rel = lexpath::in_root(source);
        // a tree that is not there (a stage's root handed to another
        // stage) holds nothing
        let root = Root::open(&self.root).map_err(|_| self.not_found(source))?;
        let resolve =
            |rel: &str, links: &mut Vec<String>| scope::resolve_traced_in(&root, rel, true, links);
        let exists = |real: &str| root.lstat(real).is_ok_and(|m| m.is_some());
        if !has_glob(&rel) {
            let real = resolve(&rel, links)?;
            if !exists(&real) || !self.is_sent(&root, &rel, &real) {
                return Err(self.not_found(source));
            }
            return Ok(vec![Match { name: rel, real }]);
        }
        let mut found = vec![Match {
            name: String::new(),
            real: String::new(),
        }];
        for part in rel.split('/') {
            let mut next = Vec::new();
            for dir in &found {
                if !has_glob(part) {
                    let name = lexpath::child(&dir.name, &unescape(part));
                    let real = resolve(&name, links)?;
                    if exists(&real) {
                        next.push(Match { name, real });
                    }
                    continue;
                }
                let glob =
                    Glob::new(part, Flavor::GoPath).ok_or_else(|| SourceTreeError::BadPattern {
                        pattern: source.to_string(),
                    })?;
                let Ok(entries) = root.read_dir(&dir.real) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .into_iter()
                    .map(|(n, _)| n)
                    .filter(|n| glob.matches(n))
                    .collect();
                names.sort();
                for n in names {
                    let name = lexpath::child(&dir.name, &n);
                    let real = resolve(&name, links)?;
                    if exists(&real) {
                        next.push(Match { name, real });
                    }
                }
            }
            found = next;
        }
        found.retain(|m| self.is_sent(&root, &m.name, &m.real));
        Ok(found)
    }

    /// [`SourceTree::expand_traced`], where a glob matching nothing is an
    /// error naming the source.
    pub fn expand_traced(
        &self,
        source: &str,
        links: &mut Vec<String>,
    ) -> Result<Vec<Match>, SourceTreeError> {
        let found = self.expand_matches(source, links)?;
        if found.is_empty() {
            return Err(self.nothing_matches(source));
        }
        Ok(found)
    }

    /// The error for a glob that matches nothing.
    pub fn nothing_matches(&self, pattern: &str) -> SourceTreeError {
        SourceTreeError::NothingMatches {
            pattern: pattern.to_string(),
            tree: self.label.clone(),
        }
    }

    /// The error for a path that is not in the tree.
    pub fn not_found(&self, path: &str) -> SourceTreeError {
        SourceTreeError::NotFound {
            path: path.to_string(),
            tree: self.label.clone(),
        }
    }

    /// [`SourceTree::expand_traced`] without the links.
    pub fn expand(&self, source: &str) -> Result<Vec<Match>, SourceTreeError> {
        self.expand_traced(source, &mut Vec::new())
    }

    /// The paths a COPY source names; a glob may match nothing (BuildKit
    /// allows that next to other sources), a plain path must be there.
    pub fn expand_allow_empty(&self, source: &str) -> Result<Vec<Match>, SourceTreeError> {
        self.expand_matches(source, &mut Vec::new())
    }

    /// Whether the path named `name` (really at `real`) is in the tree as
    /// BuildKit's context transfer sends it: not excluded by
    /// `.dockerignore`, or an excluded directory that holds something a
    /// `!` exception re-includes (sent as that thing's parent).
    fn is_sent(&self, root: &Root, name: &str, real: &str) -> bool {
        !self.is_excluded(name)
            || (self.may_include_below()
                && root.is_dir(real).unwrap_or(false)
                && self.holds_included(root, real, 0))
    }

    /// Whether something below the excluded directory `real` is not
    /// excluded (a walk bounded in depth by the kernel's path length).
    fn holds_included(&self, root: &Root, real: &str, depth: usize) -> bool {
        let Ok(entries) = root.read_dir(real) else {
            return false;
        };
        entries.into_iter().any(|(name, _)| {
            let child = lexpath::child(real, &name);
            !self.is_excluded(&child)
                || (depth < 2048
                    && root.is_dir(&child).unwrap_or(false)
                    && self.holds_included(root, &child, depth + 1))
        })
    }
}

/// A `COPY --parents` source, split at its `/./` pivot as BuildKit's
/// frontend splits it: the part before is the directory copied from (the
/// tree's root without a pivot), the part after a pattern (`.dockerignore`
/// rules) of what below it is copied, keeping the path it matched.
#[derive(Debug, Clone)]
pub struct ParentsSource {
    /// Where the copy starts, as written (may hold a glob).
    pub parent: String,
    /// What below `parent` is copied, as written.
    pub pattern: String,
    include: DockerIgnore,
    /// The pattern's leading components without a glob character: only
    /// directories along them can hold a match.
    literal: Vec<String>,
}

impl ParentsSource {
    pub fn parse(source: &str) -> Result<ParentsSource, SourceTreeError> {
        let (parent, pattern) = match source.split_once("/./") {
            Some((parent, pattern)) => (parent, pattern),
            None => ("", source),
        };
        let cleaned = lexpath::in_root(pattern);
        let include =
            DockerIgnore::from_patterns(std::slice::from_ref(&cleaned)).map_err(|_| {
                SourceTreeError::BadPattern {
                    pattern: source.to_string(),
                }
            })?;
        let literal = cleaned
            .split('/')
            .take_while(|c| !c.is_empty() && !c.contains(['*', '?', '[', '\\']))
            .map(str::to_string)
            .collect();
        Ok(ParentsSource {
            parent: parent.to_string(),
            pattern: pattern.to_string(),
            include,
            literal,
        })
    }

    /// The path that must be there: the whole source when neither part
    /// holds a glob (BuildKit's required paths), else none.
    pub fn required(&self) -> Option<String> {
        (!has_glob(&self.parent) && !has_glob(&self.pattern)).then(|| {
            lexpath::child(
                &lexpath::in_root(&self.parent),
                &lexpath::in_root(&self.pattern),
            )
        })
    }

    /// What a stage read by this source must keep for it (`keep.rs`): the
    /// parent and the pattern's leading components without a glob.
    pub fn kept_path(&self) -> String {
        let parent = if self.parent.is_empty() {
            "/".to_string()
        } else {
            self.parent.clone()
        };
        format!("{parent}/{}", self.literal.join("/"))
    }

    /// The parent as a source to expand (the root when empty).
    pub fn parent_source(&self) -> &str {
        if self.parent.is_empty() {
            "/"
        } else {
            &self.parent
        }
    }

    /// Whether `rel` (below the parent) matches the pattern, or lies
    /// below a directory that does.
    /// An empty pattern (`a/./`, `.`) takes everything.
    pub fn includes(&self, rel: &str) -> bool {
        self.include.is_empty() || self.include.is_excluded(rel)
    }

    /// Whether the directory `rel` may hold something the pattern matches.
    fn may_hold(&self, rel: &str) -> bool {
        rel.split('/').zip(&self.literal).all(|(a, b)| a == b)
    }
}

/// What a COPY's walk below one matched source copies: not what
/// `.dockerignore` hides (by the path in the tree), nor what `--exclude`
/// excludes, and with `--parents` only what its pattern matches (both by
/// the path below the source). A directory left out is still walked when
/// something below it may be copied, and made only if something is.
#[derive(Debug, Clone, Copy)]
pub struct WalkFilter<'a> {
    pub tree: &'a SourceTree,
    pub excludes: &'a DockerIgnore,
    pub parents: Option<&'a ParentsSource>,
}

impl WalkFilter<'_> {
    /// Whether the entry at `real` in the tree, `rel` below the source, is
    /// copied itself.
    pub fn copies(&self, real: &str, rel: &str) -> bool {
        !self.tree.is_excluded(real)
            && !self.excludes.is_excluded(rel)
            && self.parents.is_none_or(|p| p.includes(rel))
    }

    /// Whether the directory at `real` (`rel`), left out itself, may hold
    /// something copied: each reason it is left out can be undone below.
    pub fn may_hold_copied(&self, real: &str, rel: &str) -> bool {
        (!self.tree.is_excluded(real) || self.tree.may_include_below())
            && (!self.excludes.is_excluded(rel) || self.excludes.has_exceptions())
            && self
                .parents
                .is_none_or(|p| p.includes(rel) || p.may_hold(rel))
    }
}

/// A path a COPY source matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// As matched (no leading `/`): names the copy at the destination.
    pub name: String,
    /// Where it really is in the tree, symlinks followed: what is read.
    pub real: String,
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads `.dockerignore` for a context: `<Dockerfile>.dockerignore` next to
/// the Dockerfile wins over `<context>/.dockerignore`. Both are read as the
/// Dockerfile is ([`read_build_file`]): beneath the context when they are in it.
pub fn load_ignore(
    context: &Path,
    dockerfile: &Path,
) -> Result<DockerIgnore, crate::dockerfile::DockerfileError> {
    let mut candidates = Vec::new();
    if let Some(name) = dockerfile.file_name() {
        let mut n = name.to_os_string();
        n.push(".dockerignore");
        candidates.push(dockerfile.with_file_name(n));
    }
    candidates.push(context.join(".dockerignore"));
    for path in candidates {
        let read = read_build_file(context, &path, crate::dockerfile::MAX_DOCKERFILE);
        if let Some(text) = read.ok().and_then(|b| String::from_utf8(b).ok()) {
            return DockerIgnore::parse(&text).map_err(|source| {
                crate::dockerfile::DockerfileError::Ignore {
                    file: path.display().to_string(),
                    source,
                }
            });
        }
    }
    Ok(DockerIgnore::default())
}

/// `path` relative to `context` when it names something in the context
/// (compared by name, `.` and `..` resolved without following links).
fn in_context(context: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let normal = |p: &Path| -> Option<PathBuf> {
        let mut out = PathBuf::new();
        for c in std::path::absolute(p).ok()?.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::CurDir => {}
                c => out.push(c),
            }
        }
        Some(out)
    };
    let rel = normal(path)?
        .strip_prefix(normal(context)?)
        .ok()?
        .to_path_buf();
    Some(rel)
}

/// Opens a file of the build's own (the Dockerfile, a `.dockerignore`).
/// One in the context is opened beneath it (`openat2` with
/// `RESOLVE_IN_ROOT`), so a symlink resolves inside the context, as
/// BuildKit's context transfer does, and never reaches a host file; one
/// elsewhere (a `--dockerfile` the user named outside the context) is
/// opened as given. Only a regular file is accepted (a FIFO would block).
pub fn open_build_file(context: &Path, path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let named =
        |e: std::io::Error| std::io::Error::new(e.kind(), format!("{}: {e}", path.display()));
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match in_context(context, path) {
        Some(rel) => {
            let root = rustix::fs::open(
                context,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| named(e.into()))?;
            let rel = if rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                rel.as_path()
            };
            rustix::fs::openat2(
                &root,
                rel,
                flags,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            )
            .map_err(|e| named(e.into()))?
        }
        None => rustix::fs::open(path, flags, Mode::empty()).map_err(|e| named(e.into()))?,
    };
    let file = std::fs::File::from(fd);
    if !file.metadata().map_err(named)?.is_file() {
        return Err(named(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok(file)
}

/// Reads a file of the build's own ([`open_build_file`]), at most `limit`
/// bytes and one more (so the caller sees that it is too large).
pub fn read_build_file(context: &Path, path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_build_file(context, path)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    Ok(bytes)
}
