//! Snapshots of a build root for RUN: a parallel walk (rayon, one task per
//! directory) records each path's metadata in an in-memory index; the
//! index before a RUN and the one after give the change set. Metadata
//! only: a write changes mtime and ctime, which user space cannot set
//! back (ctime), so contents are never read. Deleted paths become
//! whiteouts, only at the top of what was deleted.

use super::{ChangeSet, FsError, ignore::RootIgnores};
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// kaniko's `--snapshot-mode`: what counts as a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Everything the metadata says, ctime and inode included.
    #[default]
    Full,
    /// Type, mode, owner, size and mtime.
    Redo,
    /// Type and mtime only.
    Time,
}

/// A `--snapshot-mode` value that is none of the modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--snapshot-mode {0:?}: use full, redo or time")]
pub struct UnknownSnapshotMode(pub String);

impl SnapshotMode {
    pub fn parse(s: &str) -> Result<SnapshotMode, UnknownSnapshotMode> {
        match s {
            "full" => Ok(SnapshotMode::Full),
            "redo" => Ok(SnapshotMode::Redo),
            "time" => Ok(SnapshotMode::Time),
            other => Err(UnknownSnapshotMode(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    /// Directories only: a hash of the xattrs (a file's xattr change moves
    /// its ctime, which full mode compares; a directory's ctime is not).
    xattrs: u64,
}

impl Meta {
    fn of(m: &std::fs::Metadata, xattrs: u64) -> Meta {
        Meta {
            xattrs,
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }

    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }

    fn same(&self, o: &Meta, mode: SnapshotMode) -> bool {
        let kind = self.mode & 0o170000 == o.mode & 0o170000;
        match mode {
            // a directory's ctime moves when an entry is added and removed
            // again (mount points): its mtime is put back, its ctime cannot be
            SnapshotMode::Full if self.is_dir() => {
                self.mode == o.mode
                    && self.uid == o.uid
                    && self.gid == o.gid
                    && self.mtime == o.mtime
                    && self.xattrs == o.xattrs
            }
            SnapshotMode::Full => self == o,
            SnapshotMode::Redo => {
                self.mode == o.mode
                    && self.uid == o.uid
                    && self.gid == o.gid
                    && self.size == o.size
                    && self.mtime == o.mtime
            }
            SnapshotMode::Time => kind && self.mtime == o.mtime,
        }
    }
}

/// The metadata of every path under a root, by relative path.
#[derive(Debug, Clone, Default)]
pub struct Index {
    entries: HashMap<String, Meta>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Walks `root` in parallel. Paths `ignores` ignores (and their subtrees)
/// are left out; a shallow one (`proc`, `sys`, `dev`) is recorded but not
/// entered.
pub fn walk(root: &Path, ignores: &RootIgnores) -> Result<Index, FsError> {
    let entries = walk_dir(root, "", ignores)?;
    Ok(Index {
        entries: entries.into_iter().collect(),
    })
}

fn walk_dir(root: &Path, rel: &str, ignores: &RootIgnores) -> Result<Vec<(String, Meta)>, FsError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(crate::lexpath::to_os(rel))
    };
    let mut here = Vec::new();
    let mut subdirs = Vec::new();
    let bad = |e: std::io::Error| FsError::path(format!("/{rel}"), format!("snapshot: {e}"));
    for entry in fs_err::read_dir(&dir).map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = entry.file_name();
        let child = crate::lexpath::child(rel, &crate::lexpath::from_os(&name));
        if ignores.ignored.contains(&child) {
            continue;
        }
        // an lstat relative to the directory being read (no path walk
        // from the root for each entry)
        let meta = entry
            .metadata()
            .map_err(|e| FsError::path(format!("/{child}"), format!("snapshot: {e}")))?;
        let xattrs = if meta.is_dir() {
            xattr_hash(&entry.path())
        } else {
            0
        };
        let m = Meta::of(&meta, xattrs);
        if meta.is_dir() && !ignores.shallow.contains(&child) {
            subdirs.push(child.clone());
        }
        here.push((child, m));
    }
    let nested: Vec<Vec<(String, Meta)>> = subdirs
        .par_iter()
        .map(|d| walk_dir(root, d, ignores))
        .collect::<Result<_, _>>()?;
    for n in nested {
        here.extend(n);
    }
    Ok(here)
}

/// A hash of a path's xattrs (names and values); 0 for none or where the
/// filesystem has none.
fn xattr_hash(path: &Path) -> u64 {
    let pairs = super::tree::xattrs(path).unwrap_or_default();
    if pairs.is_empty() {
        return 0;
    }
    let mut h = blake3::Hasher::new();
    for (n, v) in &pairs {
        h.update(n.as_bytes());
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    let bytes = h.finalize();
    u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or_default()) | 1
}

/// What changed from `before` to `after`.
pub fn diff(before: &Index, after: &Index, mode: SnapshotMode) -> ChangeSet {
    let mut changes = ChangeSet::default();
    for (path, m) in &after.entries {
        match before.entries.get(path) {
            Some(old) if old.same(m, mode) => {}
            _ => {
                changes.changed.insert(path.clone());
            }
        }
    }
    // deletions: only the topmost deleted path, and nothing under a path
    // that is still there but no longer a directory (it replaces the tree)
    let gone: BTreeSet<&String> = before
        .entries
        .keys()
        .filter(|p| !after.entries.contains_key(*p))
        .collect();
    for p in &gone {
        let mut covered = false;
        let mut cur = p.as_str();
        while let Some((parent, _)) = cur.rsplit_once('/') {
            if gone.contains(&parent.to_string())
                || after.entries.get(parent).is_some_and(|m| !m.is_dir())
            {
                covered = true;
                break;
            }
            cur = parent;
        }
        if !covered {
            changes.deleted.insert((*p).clone());
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(root: &Path) -> Index {
        let ignores = RootIgnores {
            ignored: BTreeSet::from(["proc".to_string()]),
            shallow: BTreeSet::new(),
        };
        walk(root, &ignores).unwrap()
    }

    #[test]
    fn finds_additions_changes_and_top_deletions() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["a/b/c", "keep", "proc/1", "gone/deep/er"] {
            fs_err::create_dir_all(r.join(d)).unwrap();
        }
        fs_err::write(r.join("keep/f"), "1").unwrap();
        fs_err::write(r.join("a/b/c/x"), "1").unwrap();
        fs_err::write(r.join("gone/deep/er/y"), "1").unwrap();
        fs_err::write(r.join("typechange"), "").unwrap();
        let before = snap(r);
        assert_eq!(before.len(), 11); // proc and its child are ignored
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs_err::write(r.join("a/b/c/x"), "22").unwrap();
        fs_err::write(r.join("new"), "n").unwrap();
        fs_err::remove_dir_all(r.join("gone")).unwrap();
        fs_err::remove_file(r.join("typechange")).unwrap();
        fs_err::create_dir(r.join("typechange")).unwrap();
        fs_err::write(r.join("proc/1/ignored"), "").unwrap();
        let after = snap(r);
        let c = diff(&before, &after, SnapshotMode::Full);
        let changed: Vec<&str> = c.changed.iter().map(String::as_str).collect();
        assert_eq!(changed, ["a/b/c/x", "new", "typechange"]);
        let deleted: Vec<&str> = c.deleted.iter().map(String::as_str).collect();
        assert_eq!(deleted, ["gone"]);
        assert!(diff(&after, &snap(r), SnapshotMode::Full).is_empty());
    }

    #[test]
    fn an_xattr_set_on_a_directory_is_a_change() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs_err::create_dir(r.join("d")).unwrap();
        let before = snap(r);
        if xattr::set(r.join("d"), "user.smelt", b"1").is_err() {
            return; // no user xattrs on this filesystem
        }
        let c = diff(&before, &snap(r), SnapshotMode::Full);
        assert!(c.changed.contains("d"), "{c:?}");
    }
}
