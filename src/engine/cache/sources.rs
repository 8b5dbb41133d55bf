//! The digest of what a COPY/ADD reads, for its key: every matched
//! entry's name (as it lands under the destination), type, mode, owner (a
//! stage's; the context's become root's), size, link target, xattrs and content
//! (blake3, in parallel, reused between the steps of a build while a
//! file's size, times and inode are unchanged). Modification times are
//! left out, so a fresh checkout of the same files hits.

use super::key::{FileRecord, put};
use super::{Cache, CacheError};
use crate::dockerfile::DockerIgnore;
use crate::engine::context::{ParentsSource, SourceTree, WalkFilter};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl FileStamp {
    pub(super) fn of(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

/// One entry of a source tree, for its digest.
struct TreeEntry {
    name: String,
    meta: String,
    /// A regular file: where it is, and its metadata when walked.
    file: Option<(PathBuf, FileStamp)>,
}

impl Cache {
    /// The digest of what `sources` match in `tree`: every entry's name
    /// (as it lands under the destination), type, mode, owner (a stage's
    /// only), size, link target, xattrs and content; what `excludes` (the
    /// step's `--exclude`, relative to each matched source) leaves out is
    /// left out here too, so changing an excluded file still hits.
    pub fn sources_digest(
        &self,
        tree: &SourceTree,
        sources: &[String],
        excludes: &DockerIgnore,
        parents: bool,
    ) -> Result<String, CacheError> {
        Ok(self
            .sources_digest_record(tree, sources, excludes, parents)?
            .0)
    }

    /// [`Cache::sources_digest`], and a short digest of each entry (its
    /// name, metadata and content) as a bounded [`FileRecord`], kept in
    /// the step's cache entry so a later miss can name the file that
    /// changed.
    pub fn sources_digest_record(
        &self,
        tree: &SourceTree,
        sources: &[String],
        excludes: &DockerIgnore,
        parents: bool,
    ) -> Result<(String, FileRecord), CacheError> {
        let mut entries = Vec::new();
        for source in sources {
            // with --parents, the directory before the pivot, walked for
            // what the pattern after it matches
            let split = parents.then(|| ParentsSource::parse(source)).transpose()?;
            let expanded = split
                .as_ref()
                .map_or(source.as_str(), |p| p.parent_source());
            // a glob matching nothing next to other sources is skipped (the
            // step itself fails when nothing at all matches)
            for m in tree.expand_allow_empty(expanded)? {
                let name = crate::lexpath::base_name(&m.name).to_string();
                let walk = WalkFilter {
                    tree,
                    excludes,
                    parents: split.as_ref(),
                };
                collect(walk, &m.real, &name, "", &mut entries)?;
            }
        }
        let contents: Vec<Option<[u8; 32]>> = entries
            .par_iter()
            .map(|e| {
                e.file
                    .as_ref()
                    .map(|(p, stamp)| self.file_digest(p, *stamp))
                    .transpose()
            })
            .collect::<Result<_, CacheError>>()?;
        let mut h = Sha256::new();
        let mut each = Vec::with_capacity(entries.len());
        for (e, content) in entries.iter().zip(contents) {
            let content = content.unwrap_or([0; 32]);
            put(&mut h, e.name.as_bytes());
            put(&mut h, e.meta.as_bytes());
            h.update(content);
            let mut one = Sha256::new();
            put(&mut one, e.meta.as_bytes());
            one.update(content);
            each.push((e.name.clone(), one.finalize().into()));
        }
        Ok((hex::encode(h.finalize()), FileRecord::of(&each)))
    }

    /// The blake3 of the file at `path`, whose metadata `stamp` the walk
    /// read; reused while the stamp is unchanged.
    fn file_digest(&self, path: &Path, stamp: FileStamp) -> Result<[u8; 32], CacheError> {
        if let Some((s, d)) = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            && *s == stamp
        {
            return Ok(*d);
        }
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(fs_err::File::open(path)?)
            .map_err(|source| CacheError::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let digest = *hasher.finalize().as_bytes();
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path.to_path_buf(), (stamp, digest));
        Ok(digest)
    }
}

/// Adds the tree at `real` (named `name`, at `rel` below the matched
/// source) to `out`, children sorted, leaving out what COPY leaves out
/// ([`WalkFilter`]): a directory left out itself is walked when it may
/// hold something copied, and kept only if it does.
fn collect(
    walk: WalkFilter<'_>,
    real: &str,
    name: &str,
    rel: &str,
    out: &mut Vec<TreeEntry>,
) -> Result<(), CacheError> {
    let tree = walk.tree;
    let path = tree.path(real);
    let meta = fs_err::symlink_metadata(&path)?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else {
        'o'
    };
    let owner = if tree.keep_owner {
        format!("{}:{}", meta.uid(), meta.gid())
    } else {
        String::new()
    };
    let link = if ft.is_symlink() {
        crate::lexpath::from_os(fs_err::read_link(&path)?.as_os_str())
    } else {
        String::new()
    };
    let size = if ft.is_file() { meta.size() } else { 0 };
    let mut meta_text = format!(
        "{kind} {:o} {owner} {size} {} {link}",
        meta.mode() & 0o7777,
        meta.rdev()
    );
    // after a NUL, which no link target holds; none leaves the text (and
    // the keys of trees without xattrs) as before
    for (key, value) in crate::fs::tree::xattrs(&path)? {
        meta_text.push('\0');
        meta_text.push_str(&key);
        meta_text.push('=');
        meta_text.push_str(&hex::encode(value));
    }
    out.push(TreeEntry {
        name: name.to_string(),
        meta: meta_text,
        file: ft.is_file().then(|| (path.clone(), FileStamp::of(&meta))),
    });
    if !ft.is_dir() {
        return Ok(());
    }
    // the entries' own types (no stat each), as COPY reads them
    let mut children: Vec<(String, bool)> = fs_err::read_dir(&path)?
        .filter_map(Result::ok)
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (crate::lexpath::from_os(&e.file_name()), is_dir)
        })
        .collect();
    children.sort();
    for (child, is_dir) in children {
        let child_real = crate::lexpath::child(real, &child);
        let child_rel = crate::lexpath::child(rel, &child);
        let copied = walk.copies(&child_real, &child_rel);
        let walked = is_dir && walk.may_hold_copied(&child_real, &child_rel);
        if !copied && !walked {
            continue;
        }
        let before = out.len();
        collect(
            walk,
            &child_real,
            &crate::lexpath::child(name, &child),
            &child_rel,
            out,
        )?;
        if !copied && out.len() == before + 1 {
            out.truncate(before);
        }
    }
    Ok(())
}
