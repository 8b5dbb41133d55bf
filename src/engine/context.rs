//! Where COPY reads from: the build context (filtered by `.dockerignore`
//! before anything is read) or another stage's root. Source paths and globs
//! resolve inside the tree; nothing outside it can be named.

use crate::dockerfile::DockerIgnore;
use crate::dockerfile::ignore::{Flavor, Glob};
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
        self.root.join(rel)
    }

    /// The paths a COPY source names: a glob is expanded element by element
    /// (as Go's `filepath.Glob`), a plain path is resolved (a symlink at the
    /// top is followed, inside the tree). Excluded paths are not found.
    pub fn expand(&self, source: &str) -> Result<Vec<String>, String> {
        let rel = lexpath::in_root(source);
        if !has_glob(&rel) {
            let real = scope::resolve(&self.root, &rel, true).map_err(|e| e.to_string())?;
            if self.root.join(&real).symlink_metadata().is_err() || self.is_excluded(&rel) {
                return Err(format!("{source:?}: not found in {}", self.label));
            }
            return Ok(vec![real]);
        }
        let mut found = vec![String::new()];
        for part in rel.split('/') {
            let mut next = Vec::new();
            for dir in &found {
                if !has_glob(part) {
                    let cand = lexpath::child(dir, &unescape(part));
                    if self.root.join(&cand).symlink_metadata().is_ok() {
                        next.push(cand);
                    }
                    continue;
                }
                let glob = Glob::new(part, Flavor::GoPath)
                    .ok_or_else(|| format!("{source:?}: syntax error in pattern"))?;
                let Ok(entries) = fs_err::read_dir(self.root.join(dir)) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| glob.matches(n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| lexpath::child(dir, &n)));
            }
            found = next;
        }
        found.retain(|p| !self.is_excluded(p));
        if found.is_empty() {
            return Err(format!(
                "{source:?}: no source files were specified (nothing in the {} matches)",
                self.label
            ));
        }
        Ok(found)
    }
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
