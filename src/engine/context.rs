//! Where COPY reads from: the build context (filtered by `.dockerignore`
//! before anything is read) or another stage's root. Source paths and globs
//! resolve inside the tree; nothing outside it can be named.

use crate::dockerfile::DockerIgnore;
use crate::dockerfile::ignore::{Flavor, Glob};
use crate::fs::root::Root;
use crate::fs::scope;
use crate::lexpath;
use std::path::{Path, PathBuf};

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
    /// found. `links` gets every symlink followed on the way.
    pub fn expand_traced(
        &self,
        source: &str,
        links: &mut Vec<String>,
    ) -> Result<Vec<Match>, String> {
        let rel = lexpath::in_root(source);
        let root = Root::open(&self.root).map_err(|e| e.to_string())?;
        let resolve = |rel: &str, links: &mut Vec<String>| {
            scope::resolve_traced_in(&root, rel, true, links).map_err(|e| e.to_string())
        };
        let exists = |real: &str| root.lstat(real).is_ok_and(|m| m.is_some());
        if !has_glob(&rel) {
            let real = resolve(&rel, links)?;
            if !exists(&real) || self.is_excluded(&rel) {
                return Err(format!("{source:?}: not found in {}", self.label));
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
                let glob = Glob::new(part, Flavor::GoPath)
                    .ok_or_else(|| format!("{source:?}: syntax error in pattern"))?;
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
        found.retain(|m| !self.is_excluded(&m.name));
        if found.is_empty() {
            return Err(format!(
                "{source:?}: no source files were specified (nothing in the {} matches)",
                self.label
            ));
        }
        Ok(found)
    }

    /// [`SourceTree::expand_traced`] without the links.
    pub fn expand(&self, source: &str) -> Result<Vec<Match>, String> {
        self.expand_traced(source, &mut Vec::new())
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
/// the Dockerfile wins over `<context>/.dockerignore`.
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
        if let Ok(text) = fs_err::read_to_string(&path) {
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
