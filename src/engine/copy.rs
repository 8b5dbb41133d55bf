//! COPY and ADD: docker's rules for sources (globs, directories copy their
//! contents, a top-level symlink is followed), destinations (a trailing `/`,
//! several sources or an existing directory mean "into"), `--chown`,
//! `--chmod`, hard links kept, ADD's extraction of local archives, and
//! ADD's downloaded URLs (fetched before, by `download.rs`).
//!
//! Sources are read and the destination written through `fs::root::Root`
//! (paths resolved by `fs::scope`, the kernel refusing any symlink on the
//! way), and every path written is recorded, so the layer is made from
//! exactly what changed.

use super::context::{Match, ParentsSource, SourceTree, SourceTreeError, WalkFilter};
use super::download::{Downloaded, Fetched};
use crate::dockerfile::DockerIgnore;
use crate::fs::extract::{ExtractOptions, extract_tar};
use crate::fs::ignore::RootIgnores;
use crate::fs::root::Root;
use crate::fs::tree;
use crate::fs::{ChangeSet, FsError, compress, scope};
use crate::lexpath;
use rustix::fs::{FileType, Stat};
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::sync::Arc;

pub use super::chmod::Chmod;

/// Why a COPY or ADD failed. Destination paths are absolute in the image;
/// source paths are as the source tree has them.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A URL or repository source the step did not fetch (the step
    /// fetches every one before copying).
    #[error("ADD of {url}: not fetched")]
    NotFetched { url: String },
    /// A source that names nothing, or a bad pattern.
    #[error(transparent)]
    Source(#[from] SourceTreeError),
    #[error("cannot copy a directory to non-directory {dest}")]
    DirectoryOntoFile { dest: String },
    #[error("cannot replace directory {dest} with a non-directory")]
    FileOntoDirectory { dest: String },
    #[error("{dest}: copying from {from}: {error}")]
    Content {
        from: String,
        dest: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{dest}: writing: {error}")]
    Write {
        dest: String,
        #[source]
        error: std::io::Error,
    },
    #[error("{archive}: reading the archive: {error}")]
    Archive {
        archive: String,
        #[source]
        error: std::io::Error,
    },
    /// Reading the source or writing the destination; the message names
    /// the path.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// `rel` (root-relative) as the image shows it.
fn absolute(rel: &str) -> String {
    format!("/{rel}")
}

/// An inline (heredoc) source, already expanded.
#[derive(Debug, Clone)]
pub struct InlineFile {
    pub name: String,
    pub content: String,
}

/// One COPY or ADD, with everything expanded.
#[derive(Debug)]
pub struct CopyJob<'a> {
    pub src: &'a SourceTree,
    /// The build root written into.
    pub root: &'a Path,
    pub sources: Vec<String>,
    pub inline: Vec<InlineFile>,
    /// Absolute destination in the image; a trailing `/` is kept.
    pub dest: String,
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    pub is_add: bool,
    /// Build-time for created parent directories and inline files.
    pub now: i64,
    /// Paths an archive ADD unpacks must leave alone (in place: mounts,
    /// `/proc`, the executor's directory).
    pub skip: Option<&'a RootIgnores>,
    /// The `--exclude` patterns, matched as BuildKit's copier does: against
    /// each path below a matched source, relative to that source (a
    /// matched source itself is never excluded).
    pub excludes: &'a DockerIgnore,
    /// `--parents`: each source is split at its `/./` pivot; the contents
    /// of the part before that the part after matches are copied, keeping
    /// their paths below it.
    pub parents: bool,
    /// ADD: what its URL and git sources fetched, by their index in
    /// `sources`.
    pub remote: HashMap<usize, Fetched>,
    /// ADD `--unpack`: unset, local archives are unpacked and downloads
    /// are not; `false` unpacks neither, `true` both.
    pub unpack: Option<bool>,
}

/// One thing a COPY/ADD copies, in the order of its sources.
enum Item {
    /// A match in the source tree, with the `--parents` pattern of its
    /// source.
    Match(Match, Option<std::rc::Rc<ParentsSource>>),
    /// A downloaded URL.
    Remote(Arc<Downloaded>),
    /// A checked-out repository, copied as a directory is.
    Repository(Arc<super::add_git::Checkout>),
}

/// Runs the copy; returns what changed, or a message for the user.
///
/// As BuildKit's dockerfile frontend does, every matched source (then every
/// inline file) is one copy to the same destination, each deciding anew
/// from what is there when it runs: a directory's contents go into the
/// destination directory (made if missing; one that exists keeps its mode
/// and owner, and a file there is an error); anything else goes inside an
/// existing directory or a destination ending in `/`, else becomes the
/// destination (followed if it is a symlink). Several sources need no `/`
/// (BuildKit never enforced the legacy builder's rule), and a glob that
/// matches nothing is skipped if another source matched.
pub fn run(job: &CopyJob<'_>) -> Result<ChangeSet, CopyError> {
    // each match, with the --parents pattern of its source
    let mut matched: Vec<Item> = Vec::new();
    let mut empty = None;
    for (i, source) in job.sources.iter().enumerate() {
        match job.remote.get(&i) {
            Some(Fetched::File(file)) => {
                matched.push(Item::Remote(Arc::clone(file)));
                continue;
            }
            Some(Fetched::Repository(checkout)) => {
                matched.push(Item::Repository(Arc::clone(checkout)));
                continue;
            }
            None => {}
        }
        if job.is_add && (super::add_git::is_repository(source) || super::download::is_url(source))
        {
            return Err(CopyError::NotFetched {
                url: super::source::shown_url(source),
            });
        }
        if job.parents {
            let p = std::rc::Rc::new(ParentsSource::parse(source)?);
            // BuildKit's required path: named as the source is written
            if let Some(required) = p.required()
                && job.src.expand_allow_empty(&required).is_err()
            {
                return Err(job.src.not_found(source).into());
            }
            let found = job.src.expand_allow_empty(p.parent_source())?;
            matched.extend(found.into_iter().map(|m| Item::Match(m, Some(p.clone()))));
            continue;
        }
        let found = job.src.expand_allow_empty(source)?;
        if found.is_empty() && empty.is_none() {
            empty = Some(source);
        }
        matched.extend(found.into_iter().map(|m| Item::Match(m, None)));
    }
    if let Some(source) = empty
        && matched.is_empty()
        && job.inline.is_empty()
    {
        return Err(job.src.nothing_matches(source).into());
    }
    let dest_clean = lexpath::clean(&job.dest);
    let slash = job.dest.ends_with('/') || job.dest.ends_with("/.") || job.dest == ".";
    let dst = Root::open(job.root)?;
    let src = Root::open(&job.src.root)?;
    let mut w = Writer {
        job,
        dst: &dst,
        src: &src,
        changes: ChangeSet::default(),
        links: HashMap::new(),
        dir_times: Vec::new(),
        match_root: String::new(),
        parents: None,
    };
    for item in matched {
        let (m, parents) = match item {
            Item::Match(m, parents) => (m, parents),
            Item::Remote(file) => {
                let archive = || file.open().ok().is_some_and(is_tar_stream);
                if job.is_add && job.unpack == Some(true) && archive() {
                    let dest_rel = w.archive_destination(&dest_clean)?;
                    let from = file.open().map_err(|error| CopyError::Archive {
                        archive: file.shown.clone(),
                        error,
                    })?;
                    w.extract_from(from, &file.shown, &dest_rel)?;
                } else {
                    let dest_rel = w.file_destination(&dest_clean, slash, &file.name)?;
                    w.write_download(&dest_rel, &file)?;
                }
                continue;
            }
            Item::Repository(checkout) => {
                w.changes.extend(copy_checkout(job, &checkout)?);
                continue;
            }
        };
        w.match_root.clone_from(&m.real);
        w.parents = parents;
        // hard links are kept within one match, as BuildKit's copier (one
        // per match) keeps them: two matches of one inode are two files
        w.links.clear();
        let meta = src
            .lstat(&m.real)?
            .ok_or_else(|| job.src.not_found(&m.name))?;
        if kind(&meta) == FileType::Directory {
            let dest_rel = w.dir_destination(&dest_clean, &meta)?;
            w.copy_dir_contents(&m.real, &dest_rel)?;
        } else if job.is_add
            && job.unpack != Some(false)
            && kind(&meta) == FileType::RegularFile
            && is_tar_archive(&src, &m.real)
        {
            let dest_rel = w.archive_destination(&dest_clean)?;
            w.extract(&m.real, &dest_rel)?;
        } else {
            let dest_rel = w.file_destination(&dest_clean, slash, lexpath::base_name(&m.name))?;
            w.copy_entry(&m.real, &meta, &dest_rel)?;
        }
    }
    for inline in &job.inline {
        let dest_rel = w.file_destination(&dest_clean, slash, &inline.name)?;
        w.write_inline(&dest_rel, inline)?;
    }
    w.finish()?;
    Ok(w.changes)
}

/// A checked-out repository's files into the destination, as a
/// directory source's are (BuildKit copies the git source's `/`): owned
/// by root unless `--chown`, modes as checked out, `--chmod` and
/// `--exclude` applied, nothing unpacked.
fn copy_checkout(
    job: &CopyJob<'_>,
    checkout: &super::add_git::Checkout,
) -> Result<ChangeSet, CopyError> {
    let tree = SourceTree {
        root: checkout.tree.clone(),
        ignore: None,
        keep_owner: false,
        label: format!("git repository {}", checkout.shown),
    };
    run(&CopyJob {
        src: &tree,
        root: job.root,
        sources: vec!["/".to_string()],
        inline: Vec::new(),
        dest: job.dest.clone(),
        owner: job.owner,
        chmod: job.chmod.clone(),
        is_add: false,
        now: job.now,
        skip: job.skip,
        excludes: job.excludes,
        parents: false,
        remote: HashMap::new(),
        unpack: Some(false),
    })
}

fn kind(meta: &Stat) -> FileType {
    FileType::from_raw_mode(meta.st_mode)
}

/// Whether `rel` in `src` is a tar, possibly gzip/bzip2/xz/zstd compressed
/// (by content, as docker decides it, not by name).
fn is_tar_archive(src: &Root, rel: &str) -> bool {
    src.open_file(rel).is_ok_and(is_tar_stream)
}

/// Whether `file` holds a tar, possibly compressed.
fn is_tar_stream(file: impl Read) -> bool {
    let Ok(mut reader) = compress::decompressor(std::io::BufReader::new(file)) else {
        return false;
    };
    let mut block = [0u8; 512];
    if reader.read_exact(&mut block).is_err() {
        return false;
    }
    let header = tar::Header::from_byte_slice(&block);
    let Ok(stored) = header.cksum() else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == sum && block.iter().any(|&b| b != 0)
}

struct Writer<'a, 'b> {
    job: &'b CopyJob<'a>,
    /// The build root written into.
    dst: &'b Root,
    /// The tree read from.
    src: &'b Root,
    changes: ChangeSet,
    /// Source (device, inode) → destination of files with several links.
    links: HashMap<(u64, u64), String>,
    /// Directories whose times are set once their contents are written.
    dir_times: Vec<(String, i64)>,
    /// The source being copied (its real path): `--exclude` patterns match
    /// paths relative to it.
    match_root: String,
    /// The `--parents` pattern of the source being copied.
    parents: Option<std::rc::Rc<ParentsSource>>,
}

impl Writer<'_, '_> {
    /// Where a non-directory source goes: inside the destination if it
    /// ends in `/` or is a directory, else the destination itself; a
    /// symlink there is followed (inside the root), as BuildKit resolves
    /// its destination. Missing parents are made.
    fn file_destination(
        &mut self,
        abs: &str,
        slash: bool,
        base: &str,
    ) -> Result<String, CopyError> {
        let followed = scope::resolve_in(self.dst, abs, true)?;
        let into = slash || self.dst.is_dir(&followed)?;
        let target = if into {
            lexpath::child(&followed, base)
        } else {
            followed
        };
        self.mkdir_parents(lexpath::split_last(&target).0)?;
        Ok(target)
    }

    /// The directory a directory source's contents go into: the
    /// destination, followed. One that exists keeps its mode, owner and
    /// times (BuildKit leaves an existing destination's metadata alone: a
    /// COPY into `/tmp` keeps it 1777); a missing one is made with its
    /// parents (mode 0755 or an octal `--chmod`'s, owned by root or the
    /// `--chown` owner) and takes the source directory's times; anything
    /// else there is an error, as in BuildKit.
    fn dir_destination(&mut self, abs: &str, src_dir: &Stat) -> Result<String, CopyError> {
        let rel = scope::resolve_in(self.dst, abs, true)?;
        match self.dst.kind(&rel)? {
            Some(FileType::Directory) => {}
            Some(_) => {
                return Err(CopyError::DirectoryOntoFile {
                    dest: absolute(&rel),
                });
            }
            None => {
                self.mkdir_parents(&rel)?;
                self.dir_times.retain(|(p, _)| *p != rel);
                self.dir_times.push((rel.clone(), src_dir.st_mtime));
            }
        }
        Ok(rel)
    }

    /// The directory an archive ADD unpacks into: made 0755 with its
    /// parents if missing (BuildKit's unpack ignores `--chmod` there).
    fn archive_destination(&mut self, abs: &str) -> Result<String, CopyError> {
        let rel = scope::resolve_in(self.dst, abs, true)?;
        let owner = self.job.owner.unwrap_or((0, 0));
        for dir in tree::mkdir_all(self.dst, &rel, owner, 0o755)? {
            self.dir_times.push((dir.clone(), self.job.now));
            self.changes.add(&dir);
        }
        Ok(rel)
    }

    /// Removes what is at `rel` in the destination, and forgets what this
    /// copy wrote under it.
    fn remove(&mut self, rel: &str) -> Result<(), CopyError> {
        self.dst.remove(rel)?;
        self.changes.forget_below(rel);
        Ok(())
    }

    /// `mkdir -p` of a root-relative directory: new ones are 0755 (an
    /// octal `--chmod`'s mode instead, as BuildKit ≥ 0.21 makes them),
    /// owned by root or the `--chown` owner, stamped with the build time;
    /// existing ones are left as they are.
    fn mkdir_parents(&mut self, rel: &str) -> Result<(), CopyError> {
        let owner = self.job.owner.unwrap_or((0, 0));
        let mode = Chmod::dir_mode(self.job.chmod.as_ref());
        for dir in tree::mkdir_all(self.dst, rel, owner, mode)? {
            self.dir_times.push((dir.clone(), self.job.now));
            self.changes.add(&dir);
        }
        Ok(())
    }

    fn owner_for(&self, meta: &Stat) -> (u32, u32) {
        match self.job.owner {
            Some(o) => o,
            None if self.job.src.keep_owner => (meta.st_uid, meta.st_gid),
            None => (0, 0),
        }
    }

    /// Owner, mode (after `--chmod`), xattrs and, for files, times, of the
    /// entry copied from `src_rel` to `rel`. `mode` is the source's mode
    /// before `--chmod`.
    fn apply_meta(
        &mut self,
        src_rel: &str,
        rel: &str,
        meta: &Stat,
        mode: u32,
        is_dir: bool,
    ) -> Result<(), CopyError> {
        let (uid, gid) = self.owner_for(meta);
        self.dst.chown(rel, uid, gid)?;
        if kind(meta) != FileType::Symlink {
            let mode = match &self.job.chmod {
                Some(c) => c.apply(mode, is_dir),
                None => mode & 0o7777,
            };
            self.dst.chmod(rel, mode)?;
        }
        // after the owner: chown drops `security.capability`
        self.copy_xattrs(src_rel, rel)?;
        if is_dir {
            self.dir_times.push((rel.to_string(), meta.st_mtime));
        } else {
            self.dst.set_mtime(rel, meta.st_mtime)?;
        }
        self.changes.add(rel);
        Ok(())
    }

    /// The source entry's extended attributes onto the copy, as BuildKit's
    /// copier sets them (all of them, `security.capability` included, read
    /// and set on the entry itself, never through a symlink; its context
    /// transfer sends them all too, but macOS's `com.apple.` ones, which
    /// Linux has none of). One the destination refuses (a `user.` name on
    /// a symlink, a filesystem without them) is skipped, as BuildKit logs
    /// and skips it.
    fn copy_xattrs(&self, src_rel: &str, rel: &str) -> Result<(), CopyError> {
        for (key, value) in self.src.xattrs(src_rel)? {
            if let Err(e) = self.dst.set_xattr(rel, &key, &value) {
                log::debug!("not copied: {e}");
            }
        }
        Ok(())
    }

    /// Copies one non-directory entry (or an empty directory's shell) from
    /// `src_rel` to `dest_rel`.
    fn copy_entry(&mut self, src_rel: &str, meta: &Stat, dest_rel: &str) -> Result<(), CopyError> {
        let ft = kind(meta);
        let is_dir = ft == FileType::Directory;
        let existing = self.dst.kind(dest_rel)?;
        let dir_there = existing == Some(FileType::Directory);
        // as BuildKit's copier: directories merge, a directory is never
        // replaced by anything else nor anything else by a directory, and
        // any other entry there is replaced
        if dir_there && !is_dir {
            return Err(CopyError::FileOntoDirectory {
                dest: absolute(dest_rel),
            });
        }
        if existing.is_some() && is_dir && !dir_there {
            return Err(CopyError::DirectoryOntoFile {
                dest: absolute(dest_rel),
            });
        }
        if existing.is_some() && !is_dir {
            self.remove(dest_rel)?;
        }
        match ft {
            FileType::Directory => {
                if !dir_there {
                    self.dst.create_dir(dest_rel, 0o755)?;
                }
            }
            FileType::Symlink => {
                let target = self.src.read_link(src_rel)?;
                self.dst.symlink(&target, dest_rel)?;
            }
            FileType::RegularFile => {
                let key = (meta.st_dev, meta.st_ino);
                if meta.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        self.dst.hard_link(first, dest_rel)?;
                        self.changes.add(dest_rel);
                        return Ok(());
                    }
                    self.links.insert(key, dest_rel.to_string());
                }
                let mut from = self.src.open_file(src_rel)?;
                let mut to = self.dst.create_file(dest_rel, 0o600)?;
                std::io::copy(&mut from, &mut to).map_err(|error| CopyError::Content {
                    from: src_rel.to_string(),
                    dest: absolute(dest_rel),
                    error,
                })?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                self.dst
                    .mknod(dest_rel, ft, meta.st_mode & 0o7777, meta.st_rdev)?;
            }
            // sockets are not copied
            _ => return Ok(()),
        }
        self.apply_meta(src_rel, dest_rel, meta, meta.st_mode, is_dir)
    }

    /// What the walk below the source being copied copies.
    fn filter(&self) -> WalkFilter<'_> {
        WalkFilter {
            tree: self.job.src,
            excludes: self.job.excludes,
            parents: self.parents.as_deref(),
        }
    }

    /// `child` (a real path below the source being copied) relative to
    /// that source.
    fn rel_in_match<'c>(&self, child: &'c str) -> &'c str {
        if self.match_root.is_empty() {
            child
        } else {
            child
                .strip_prefix(self.match_root.as_str())
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(child)
        }
    }

    /// Copies the contents of source directory `src_rel` into `dest_rel`,
    /// skipping what `.dockerignore` and `--exclude` exclude and, with
    /// `--parents`, what its pattern does not match ([`WalkFilter`]).
    fn copy_dir_contents(&mut self, src_rel: &str, dest_rel: &str) -> Result<(), CopyError> {
        let mut entries: Vec<String> = self
            .src
            .read_dir(src_rel)?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        entries.sort();
        for name in entries {
            let child_src = lexpath::child(src_rel, &name);
            let child_dest = lexpath::child(dest_rel, &name);
            let Some(meta) = self.src.lstat(&child_src)? else {
                continue;
            };
            let is_dir = kind(&meta) == FileType::Directory;
            let rel = self.rel_in_match(&child_src);
            if !self.filter().copies(&child_src, rel) {
                if is_dir && self.filter().may_hold_copied(&child_src, rel) {
                    self.copy_excluded_dir(&child_src, &child_dest, &meta)?;
                }
                continue;
            }
            self.copy_entry(&child_src, &meta, &child_dest)?;
            if is_dir {
                self.copy_dir_contents(&child_src, &child_dest)?;
            }
        }
        Ok(())
    }

    /// An excluded directory may hold re-included files (`!` patterns):
    /// it is created only if something below it is copied.
    fn copy_excluded_dir(
        &mut self,
        src_rel: &str,
        dest_rel: &str,
        meta: &Stat,
    ) -> Result<(), CopyError> {
        let before = self.changes.changed.len();
        let created = match self.dst.kind(dest_rel)? {
            Some(FileType::Directory) => false,
            Some(_) => {
                return Err(CopyError::DirectoryOntoFile {
                    dest: absolute(dest_rel),
                });
            }
            None => true,
        };
        if created {
            self.dst.create_dir(dest_rel, 0o755)?;
        }
        self.copy_dir_contents(src_rel, dest_rel)?;
        if self.changes.changed.len() == before {
            if created {
                self.dst.remove(dest_rel)?;
            }
            return Ok(());
        }
        self.apply_meta(src_rel, dest_rel, meta, meta.st_mode, true)
    }

    /// A downloaded file: mode 0600 (before `--chmod`), owned by root or
    /// the `--chown` owner, its time from `Last-Modified`; never unpacked.
    fn write_download(&mut self, rel: &str, file: &Downloaded) -> Result<(), CopyError> {
        let mut from = file.open().map_err(|error| CopyError::Content {
            from: file.shown.clone(),
            dest: absolute(rel),
            error,
        })?;
        self.write_file(rel, &mut from, 0o600, file.mtime)
    }

    fn write_inline(&mut self, rel: &str, inline: &InlineFile) -> Result<(), CopyError> {
        self.write_file(rel, &mut inline.content.as_bytes(), 0o644, self.job.now)
    }

    /// Writes `content` as a new file at `rel` (replacing a non-directory),
    /// with `mode` (then `--chmod`), the `--chown` owner or root, `mtime`.
    fn write_file(
        &mut self,
        rel: &str,
        content: &mut dyn Read,
        mode: u32,
        mtime: i64,
    ) -> Result<(), CopyError> {
        match self.dst.kind(rel)? {
            Some(FileType::Directory) => {
                return Err(CopyError::FileOntoDirectory {
                    dest: absolute(rel),
                });
            }
            Some(_) => self.remove(rel)?,
            None => {}
        }
        let mut f = self.dst.create_file(rel, 0o600)?;
        std::io::copy(content, &mut f).map_err(|error| CopyError::Write {
            dest: absolute(rel),
            error,
        })?;
        drop(f);
        let (uid, gid) = self.job.owner.unwrap_or((0, 0));
        self.dst.chown(rel, uid, gid)?;
        let mode = self
            .job
            .chmod
            .as_ref()
            .map_or(mode, |c| c.apply(mode, false));
        self.dst.chmod(rel, mode)?;
        self.dst.set_mtime(rel, mtime)?;
        self.changes.add(rel);
        Ok(())
    }

    fn extract(&mut self, archive_rel: &str, dest_rel: &str) -> Result<(), CopyError> {
        let file = self.src.open_file(archive_rel)?;
        self.extract_from(file, archive_rel, dest_rel)
    }

    /// Unpacks the archive `file` (named `what` in errors) into `dest_rel`.
    fn extract_from(
        &mut self,
        file: impl Read,
        what: &str,
        dest_rel: &str,
    ) -> Result<(), CopyError> {
        let mut reader = std::io::BufReader::new(file);
        let archive = |error| CopyError::Archive {
            archive: what.to_string(),
            error,
        };
        reader.fill_buf().map_err(archive)?;
        let stream = compress::decompressor(reader).map_err(archive)?;
        let opts = ExtractOptions {
            whiteouts: false,
            chown: self.job.owner,
            skip: self.job.skip,
        };
        let changes = extract_tar(stream, self.job.root, dest_rel, opts)?;
        self.changes.extend(changes);
        Ok(())
    }

    /// Sets directory times deepest first, so writing children does not
    /// disturb them.
    fn finish(&mut self) -> Result<(), CopyError> {
        self.dir_times.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, t) in std::mem::take(&mut self.dir_times) {
            if self.dst.is_dir(&rel)? {
                self.dst.set_mtime(&rel, t)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::DockerIgnore;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A context holding `a.txt`, `b.txt` and `tree/t.txt`, and an empty
    /// destination root.
    struct Fixture {
        _dir: tempfile::TempDir,
        src: SourceTree,
        root: std::path::PathBuf,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dir.path().join("ctx");
        let root = dir.path().join("root");
        fs_err::create_dir_all(ctx.join("tree")).unwrap();
        fs_err::create_dir_all(&root).unwrap();
        fs_err::write(ctx.join("a.txt"), "a").unwrap();
        fs_err::write(ctx.join("b.txt"), "bb").unwrap();
        fs_err::write(ctx.join("tree/t.txt"), "t").unwrap();
        let src = SourceTree::context(ctx, DockerIgnore::default());
        Fixture {
            _dir: dir,
            src,
            root,
        }
    }

    fn copy(
        f: &Fixture,
        sources: &[&str],
        dest: &str,
        chmod: Option<&str>,
    ) -> Result<(), CopyError> {
        copy_excluding(f, sources, dest, chmod, &[], false)
    }

    fn copy_excluding(
        f: &Fixture,
        sources: &[&str],
        dest: &str,
        chmod: Option<&str>,
        excludes: &[&str],
        parents: bool,
    ) -> Result<(), CopyError> {
        let excludes: Vec<String> = excludes.iter().map(|s| s.to_string()).collect();
        let excludes = DockerIgnore::from_patterns(&excludes).unwrap();
        let job = CopyJob {
            src: &f.src,
            root: &f.root,
            sources: sources.iter().map(|s| s.to_string()).collect(),
            inline: Vec::new(),
            dest: dest.to_string(),
            owner: None,
            chmod: chmod.map(|c| Chmod::parse(c).unwrap()),
            is_add: false,
            now: 0,
            skip: None,
            excludes: &excludes,
            parents,
            remote: HashMap::new(),
            unpack: None,
        };
        run(&job).map(|_| ())
    }

    /// Every path under `dir`, sorted, relative to it.
    fn listing(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![String::new()];
        while let Some(rel) = todo.pop() {
            for e in fs_err::read_dir(dir.join(&rel)).unwrap() {
                let e = e.unwrap();
                let child = lexpath::child(&rel, &e.file_name().to_string_lossy());
                if e.file_type().unwrap().is_dir() {
                    todo.push(child.clone());
                }
                out.push(child);
            }
        }
        out.sort();
        out
    }

    #[test]
    fn excludes_match_below_each_source_relative_to_it() {
        let f = fixture();
        let ctx = f.src.root.clone();
        for d in ["tree/docs/keep", "tree/sub", "other"] {
            fs_err::create_dir_all(ctx.join(d)).unwrap();
        }
        for p in [
            "tree/a.md",
            "tree/sub/b.md",
            "tree/docs/x.md",
            "tree/docs/keep/README.md",
            "other/o.md",
            "other/o.txt",
        ] {
            fs_err::write(ctx.join(p), "x").unwrap();
        }
        // `*.md` is relative to the source: only the top level of each
        // matched directory; a matched file itself is never excluded
        copy_excluding(
            &f,
            &["tree", "a.txt"],
            "/one/",
            None,
            &["*.md", "a.txt"],
            false,
        )
        .unwrap();
        assert_eq!(
            listing(&f.root.join("one")),
            [
                "a.txt",
                "docs",
                "docs/keep",
                "docs/keep/README.md",
                "docs/x.md",
                "sub",
                "sub/b.md",
                "t.txt"
            ]
        );
        // `**` reaches every depth; `!` re-includes below an excluded
        // directory, which is then made for what it holds
        copy_excluding(
            &f,
            &["tree"],
            "/two/",
            None,
            &["**/*.md", "docs", "!docs/keep/README.md"],
            false,
        )
        .unwrap();
        assert_eq!(
            listing(&f.root.join("two")),
            ["docs", "docs/keep", "docs/keep/README.md", "sub", "t.txt"]
        );
        // a glob source: each match is its own root
        copy_excluding(&f, &["[ot]*"], "/three/", None, &["*.txt", "sub"], false).unwrap();
        assert_eq!(
            listing(&f.root.join("three")),
            [
                "a.md",
                "docs",
                "docs/keep",
                "docs/keep/README.md",
                "docs/x.md",
                "o.md"
            ]
        );
        // everything excluded: an empty destination, no error
        copy_excluding(&f, &["tree"], "/four", None, &["*"], false).unwrap();
        assert!(listing(&f.root.join("four")).is_empty());
    }

    #[test]
    fn parents_keep_the_path_below_the_pivot() {
        let f = fixture();
        let ctx = f.src.root.clone();
        for d in ["x/y", "y", "src/x/y"] {
            fs_err::create_dir_all(ctx.join(d)).unwrap();
        }
        for p in [
            "x/a.txt",
            "y/a.txt",
            "x/y/c.txt",
            "src/a.txt",
            "src/x/b.txt",
            "src/x/y/c.txt",
            "src/x/y/d.md",
        ] {
            fs_err::write(ctx.join(p), p).unwrap();
        }
        fs_err::set_permissions(ctx.join("src/x"), std::fs::Permissions::from_mode(0o750)).unwrap();
        let parents = |sources: &[&str], dest: &str, excludes: &[&str]| {
            copy_excluding(&f, sources, dest, None, excludes, true)
        };
        parents(&["./x/a.txt", "y/a.txt"], "/p/", &[]).unwrap();
        assert_eq!(listing(&f.root.join("p")), ["x", "x/a.txt", "y", "y/a.txt"]);
        parents(&["./x/./y/*.txt"], "/q/", &[]).unwrap();
        assert_eq!(listing(&f.root.join("q")), ["y", "y/c.txt"]);
        // a directory matched is copied whole; parents made on the way
        // take their source's mode
        parents(&["src/**/*.txt", "x/y"], "/r", &[]).unwrap();
        assert_eq!(
            listing(&f.root.join("r")),
            [
                "src",
                "src/a.txt",
                "src/x",
                "src/x/b.txt",
                "src/x/y",
                "src/x/y/c.txt",
                "x",
                "x/y",
                "x/y/c.txt"
            ]
        );
        assert_eq!(mode(&f, "r/src/x"), 0o750);
        assert_eq!(
            fs_err::read_to_string(f.root.join("r/src/x/y/c.txt")).unwrap(),
            "src/x/y/c.txt"
        );
        // --exclude relative to the parent; a directory holding nothing
        // copied is not made
        parents(&["src/./**/*.txt"], "/s/", &["x/y"]).unwrap();
        assert_eq!(listing(&f.root.join("s")), ["a.txt", "x", "x/b.txt"]);
        // a path without a glob must be there; a glob may match nothing
        let err = parents(&["src/nope.txt"], "/t/", &[]).unwrap_err();
        assert!(
            err.to_string().contains("\"src/nope.txt\": not found"),
            "{err}"
        );
        parents(&["src/*.none"], "/t/", &[]).unwrap();
        assert!(listing(&f.root.join("t")).is_empty());
    }

    fn mode(f: &Fixture, rel: &str) -> u32 {
        fs_err::symlink_metadata(f.root.join(rel)).unwrap().mode() & 0o7777
    }

    #[test]
    fn existing_parents_and_destinations_keep_their_mode_and_owner() {
        let f = fixture();
        fs_err::create_dir(f.root.join("tmp")).unwrap();
        fs_err::set_permissions(f.root.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .unwrap();
        std::os::unix::fs::chown(f.root.join("tmp"), Some(7), Some(8)).unwrap();
        copy(&f, &["tree"], "/tmp", None).unwrap();
        copy(&f, &["a.txt"], "/tmp/x/a.txt", Some("600")).unwrap();
        let meta = fs_err::metadata(f.root.join("tmp")).unwrap();
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o1777, 7, 8)
        );
        assert!(f.root.join("tmp/t.txt").is_file());
        // the parent the second COPY made takes the octal --chmod
        assert_eq!(mode(&f, "tmp/x"), 0o600);
        assert_eq!(mode(&f, "tmp/x/a.txt"), 0o600);
    }

    #[test]
    fn a_file_named_like_an_existing_directory_goes_inside_it() {
        let f = fixture();
        fs_err::create_dir_all(f.root.join("usr/bin")).unwrap();
        copy(&f, &["a.txt"], "/usr/bin", None).unwrap();
        assert!(f.root.join("usr/bin/a.txt").is_file());
        // a symlink to a directory is followed
        std::os::unix::fs::symlink("usr/bin", f.root.join("bin")).unwrap();
        copy(&f, &["b.txt"], "/bin", None).unwrap();
        assert!(f.root.join("usr/bin/b.txt").is_file());
    }

    #[test]
    fn sources_copy_in_turn_and_an_empty_glob_is_skipped_next_to_others() {
        let f = fixture();
        copy(&f, &["nothing*", "a.txt"], "/single", None).unwrap();
        assert_eq!(fs_err::read_to_string(f.root.join("single")).unwrap(), "a");
        copy(&f, &["a.txt", "b.txt"], "/both", None).unwrap();
        assert_eq!(fs_err::read_to_string(f.root.join("both")).unwrap(), "bb");
        copy(&f, &["tree", "a.txt"], "/mixed", None).unwrap();
        assert!(f.root.join("mixed/t.txt").is_file() && f.root.join("mixed/a.txt").is_file());
        let e = copy(&f, &["nothing*", "none?"], "/x/", None).unwrap_err();
        assert!(
            matches!(&e, CopyError::Source(SourceTreeError::NothingMatches { pattern, tree })
                if pattern == "nothing*" && tree == "build context"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "\"nothing*\": no source files were specified (nothing in the build context matches)"
        );
        let e = copy(&f, &["missing", "a.txt"], "/x/", None).unwrap_err();
        assert_eq!(e.to_string(), "\"missing\": not found in build context");
        let e = copy(&f, &["a.txt", "[a"], "/x/", None).unwrap_err();
        assert!(
            matches!(&e, CopyError::Source(SourceTreeError::BadPattern { pattern }) if pattern == "[a"),
            "{e:?}"
        );
    }

    #[test]
    fn a_directory_and_a_non_directory_never_replace_each_other() {
        let f = fixture();
        fs_err::write(f.root.join("file"), "x").unwrap();
        let e = copy(&f, &["tree"], "/file", None).unwrap_err();
        assert!(
            matches!(&e, CopyError::DirectoryOntoFile { dest } if dest == "/file"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "cannot copy a directory to non-directory /file"
        );
        fs_err::create_dir_all(f.root.join("d/a.txt")).unwrap();
        let e = copy(&f, &["a.txt"], "/d/", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot replace directory /d/a.txt with a non-directory"
        );
        fs_err::create_dir_all(f.root.join("m")).unwrap();
        fs_err::create_dir(f.root.join("m/t.txt")).unwrap();
        let e = copy(&f, &["tree"], "/m", None).unwrap_err();
        assert!(
            matches!(&e, CopyError::FileOntoDirectory { dest } if dest == "/m/t.txt"),
            "{e:?}"
        );
        // a file replaces a file
        fs_err::write(f.root.join("over"), "old").unwrap();
        copy(&f, &["a.txt"], "/over", None).unwrap();
        assert_eq!(fs_err::read_to_string(f.root.join("over")).unwrap(), "a");
    }

    #[test]
    fn a_symbolic_chmod_applies_per_entry_and_leaves_created_parents_0755() {
        let f = fixture();
        copy(&f, &["tree"], "/new/dir", Some("a=rX")).unwrap();
        assert_eq!(mode(&f, "new"), 0o755);
        assert_eq!(mode(&f, "new/dir"), 0o755);
        assert_eq!(mode(&f, "new/dir/t.txt"), 0o444);
        copy(&f, &["tree"], "/oct/dir", Some("0750")).unwrap();
        assert_eq!(mode(&f, "oct"), 0o750);
        assert_eq!(mode(&f, "oct/dir"), 0o750);
        assert_eq!(mode(&f, "oct/dir/t.txt"), 0o750);
    }

    /// `cap_net_bind_service+ep` as the kernel stores it (v2).
    const CAP: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

    #[test]
    fn copies_keep_xattrs_after_chown_and_never_read_through_symlinks() {
        let f = fixture();
        let ctx = f.src.root.clone();
        xattr::set(ctx.join("a.txt"), "security.capability", &CAP).unwrap();
        xattr::set(ctx.join("tree"), "trusted.smelt", b"dir").unwrap();
        std::os::unix::fs::symlink("a.txt", ctx.join("tree/link")).unwrap();
        let stage = SourceTree::stage(ctx, "stage s".to_string());
        let job = CopyJob {
            src: &stage,
            root: &f.root,
            sources: vec!["a.txt".to_string(), "/".to_string()],
            inline: Vec::new(),
            dest: "/out/".to_string(),
            // chown drops a capability: it must be set after
            owner: Some((5, 6)),
            chmod: None,
            is_add: false,
            now: 0,
            skip: None,
            excludes: &DockerIgnore::default(),
            parents: false,
            remote: HashMap::new(),
            unpack: None,
        };
        run(&job).unwrap();
        let cap = |rel: &str| xattr::get(f.root.join(rel), "security.capability").unwrap();
        assert_eq!(cap("out/a.txt").as_deref(), Some(&CAP[..]));
        assert_eq!(
            xattr::get(f.root.join("out/tree"), "trusted.smelt")
                .unwrap()
                .as_deref(),
            Some(&b"dir"[..])
        );
        // the symlink's own (none), not its target's
        let link = f.root.join("out/tree/link");
        assert!(link.symlink_metadata().unwrap().is_symlink());
        assert_eq!(xattr::list(&link).unwrap().count(), 0);
        assert_eq!(cap("out/b.txt"), None);
        // from the context too (owned by root there)
        copy(&f, &["a.txt"], "/ctx/", None).unwrap();
        assert_eq!(cap("ctx/a.txt").as_deref(), Some(&CAP[..]));
    }
}
