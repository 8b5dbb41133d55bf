//! Extracts a tar stream into a directory of a build root, safely: every
//! name is cleaned and resolved inside the root, and every file operation
//! goes through [`Root`], so a `..`, an absolute name, a symlinked parent
//! (one from a lower layer, or one this same archive made), a hard link or
//! a whiteout name can never reach outside it. A path of another type is
//! replaced, and what was written under a replaced directory is forgotten.
//! Symlinks are made after everything else (their parents resolved again
//! then, through the links made before them) and directory times are set
//! last. Whiteouts are applied when asked (image layers); ADD of a local
//! archive extracts without them.

use super::ignore::{RootIgnores, clear_dir};
use super::root::{Dir, Root};
use super::tree::mkdir_all;
use super::writers::{self, BUFFERED_MAX, FileJob, Writers, set_metadata};
use super::{ChangeSet, FsError, scope};
use crate::lexpath;
use std::collections::HashMap;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions<'a> {
    /// Apply `.wh.` whiteouts and `.wh..wh..opq` opaque markers.
    pub whiteouts: bool,
    /// Give every entry this owner instead of the archive's.
    pub chown: Option<(u32, u32)>,
    /// Paths left alone: entries for them (and whiteouts of them) are
    /// skipped (a base unpacked in place never touches `/proc` or a mount).
    pub skip: Option<&'a RootIgnores>,
}

/// A symlink, made after every other entry of its layer (so that it cannot
/// redirect them), or a hard link to such a symlink, made after it.
enum Deferred {
    Symlink {
        /// The entry's name under the root, parents not yet resolved.
        named: String,
        target: Vec<u8>,
        uid: u32,
        gid: u32,
        mtime: i64,
    },
    /// A hard link `named` to the deferred symlink `to` (`cp -al` of a
    /// tree with symlinks gives these; docker keeps them linked).
    HardLink { named: String, to: String },
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
/// aufs' own bookkeeping (`.wh..wh.plnk`, `.wh..wh.aufs`): not files of
/// the image, skipped as docker skips them.
const AUFS_META: &str = ".wh..wh.";

/// Extracts `reader` (an uncompressed tar) under `dest` (relative to `root`).
/// Returns what changed, relative to the root. Small files are written by
/// several threads ([`super::writers`]).
pub fn extract_tar<R: Read>(
    reader: R,
    root: &Path,
    dest: &str,
    opts: ExtractOptions<'_>,
) -> Result<ChangeSet, FsError> {
    let root = Root::open(root)?;
    std::thread::scope(|scope| {
        let mut writers = Writers::start(scope, writers::threads());
        let mut x = Extraction {
            root: &root,
            opts,
            changes: ChangeSet::default(),
            dir_times: Vec::new(),
            resolved: HashMap::new(),
            last_dir: None,
        };
        let result = x.run(reader, dest, &mut writers);
        let flushed = writers.flush();
        drop(writers);
        result?;
        flushed?;
        Ok(x.changes)
    })
}

struct Extraction<'a> {
    root: &'a Root,
    opts: ExtractOptions<'a>,
    changes: ChangeSet,
    /// Directories whose times are set at the end: (resolved path, mtime).
    dir_times: Vec<(String, i64)>,
    /// Parent directories as entries name them → resolved in the root.
    /// Resolution changes only when something is removed (symlinks are
    /// made at the end), so a removal forgets them all.
    resolved: HashMap<String, String>,
    /// The directory the last entry went into, made and held open (the
    /// entries of a directory come together in a layer).
    last_dir: Option<Arc<Dir<'a>>>,
}

impl<'a> Extraction<'a> {
    /// `named` (a parent as an entry names it) resolved in the root.
    fn resolve_parent(&mut self, named: &str) -> Result<String, FsError> {
        if let Some(r) = self.resolved.get(named) {
            return Ok(r.clone());
        }
        let r = scope::resolve_in(self.root, named, true)?;
        self.resolved.insert(named.to_string(), r.clone());
        Ok(r)
    }

    /// The resolved directory `rel`, made if missing, held open.
    fn made_dir(&mut self, rel: &str) -> Result<Arc<Dir<'a>>, FsError> {
        if let Some(d) = &self.last_dir
            && d.rel() == rel
        {
            return Ok(d.clone());
        }
        mkdir_all(self.root, rel, (0, 0), 0o755)?;
        let d = Arc::new(self.root.dir(rel)?);
        self.last_dir = Some(d.clone());
        Ok(d)
    }

    /// Forgets resolved and open directories (something was removed).
    fn forget_dirs(&mut self) {
        self.resolved.clear();
        self.last_dir = None;
    }

    /// Whether the in-place ignores leave `rel` alone.
    fn skipped(&self, rel: &str) -> bool {
        self.opts.skip.is_some_and(|s| s.covers(rel))
    }

    /// Removes what is at `rel` and forgets what this extraction wrote
    /// under it.
    fn remove(&mut self, rel: &str) -> Result<(), FsError> {
        self.forget_dirs();
        self.root.remove(rel)?;
        self.changes.forget_below(rel);
        let prefix = format!("{rel}/");
        self.dir_times.retain(|(d, _)| !d.starts_with(&prefix));
        Ok(())
    }

    fn run<R: Read>(
        &mut self,
        reader: R,
        dest: &str,
        writers: &mut Writers<'a>,
    ) -> Result<(), FsError> {
        let root = self.root;
        let dest = scope::resolve_in(root, dest, true)?;
        let mut archive = tar::Archive::new(reader);
        let mut symlinks: Vec<Deferred> = Vec::new();
        // the names of the deferred symlinks, for a hard link to one
        let mut symlink_names: std::collections::HashSet<String> = std::collections::HashSet::new();
        let bad =
            |e: std::io::Error| FsError::path(format!("/{dest}"), format!("reading archive: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw_name = lexpath::from_bytes(&entry.path_bytes());
            let name = lexpath::in_root(&raw_name);
            if name.is_empty() {
                continue;
            }
            let (parent, base) = lexpath::split_last(&name);
            let parent_rel = self.resolve_parent(&lexpath::child(&dest, parent))?;
            if self.opts.whiteouts && base.starts_with(WHITEOUT) {
                // a whiteout stands for the path it removes
                if base == OPAQUE {
                    if self.skipped(&parent_rel) {
                        continue;
                    }
                    // nothing may be half-written under what is about to go
                    writers.flush()?;
                    self.forget_dirs();
                    empty_dir(root, &parent_rel, &self.changes, self.opts.skip)?;
                    self.changes.opaque.insert(parent_rel.clone());
                    continue;
                }
                if base.starts_with(AUFS_META) {
                    continue;
                }
                let gone = &base[WHITEOUT.len()..];
                if gone.is_empty() || gone == "." || gone == ".." {
                    return Err(FsError::path(
                        format!("/{name}"),
                        format!("a whiteout of {gone:?} names no entry"),
                    ));
                }
                let rel = lexpath::child(&parent_rel, gone);
                if self.skipped(&rel) {
                    continue;
                }
                writers.flush()?;
                self.remove(&rel)?;
                self.changes.changed.remove(&rel);
                self.changes.deleted.insert(rel);
                continue;
            }
            let rel = lexpath::child(&parent_rel, base);
            if self.skipped(&rel) {
                continue;
            }
            if writers.pending(&rel) {
                // a second entry for a path a worker may still be writing
                writers.flush()?;
            }
            let dir = self.made_dir(&parent_rel)?;
            let header = entry.header().clone();
            let (uid, gid) = match self.opts.chown {
                Some(ids) => ids,
                None => (
                    header.uid().map_err(bad)? as u32,
                    header.gid().map_err(bad)? as u32,
                ),
            };
            let mode = header.mode().map_err(bad)? & 0o7777;
            let mtime = header.mtime().map_err(bad)? as i64;
            let existing = dir.kind(base)?;
            let kind = header.entry_type();
            let is_dir = kind.is_dir();
            let dir_there = existing == Some(rustix::fs::FileType::Directory);
            if existing.is_some() && !(is_dir && dir_there) {
                if dir_there {
                    // workers may be writing inside the tree about to go
                    writers.flush()?;
                }
                self.remove(&rel)?;
            }
            // removing an entry leaves its directory as it was
            self.last_dir = Some(dir.clone());
            match kind {
                tar::EntryType::Directory => {
                    if !dir_there {
                        dir.create_dir(base, 0o755)?;
                    }
                    self.dir_times.push((rel.clone(), mtime));
                }
                tar::EntryType::Regular | tar::EntryType::Continuous
                    if writers.parallel() && header.size().map_err(bad)? <= BUFFERED_MAX =>
                {
                    let mut data = Vec::with_capacity(header.size().map_err(bad)? as usize);
                    entry.read_to_end(&mut data).map_err(bad)?;
                    let xattrs = pax_xattrs(&mut entry).map_err(bad)?;
                    writers.dispatch(FileJob {
                        dir,
                        name: base.to_string(),
                        data,
                        uid,
                        gid,
                        mode,
                        mtime,
                        xattrs,
                    })?;
                    self.changes.add(&rel);
                    continue;
                }
                tar::EntryType::Regular
                | tar::EntryType::Continuous
                | tar::EntryType::GNUSparse => {
                    let mut out = dir.create_file(base, 0o600)?;
                    std::io::copy(&mut entry, &mut out)
                        .map_err(|e| FsError::path(format!("/{rel}"), format!("writing: {e}")))?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|b| b.into_owned())
                        .unwrap_or_default();
                    let named = lexpath::child(&dest, &name);
                    symlink_names.insert(named.clone());
                    symlinks.push(Deferred::Symlink {
                        named,
                        target,
                        uid,
                        gid,
                        mtime,
                    });
                    continue;
                }
                tar::EntryType::Link => {
                    // the target may be a file a worker is writing
                    writers.flush()?;
                    let target = entry
                        .link_name_bytes()
                        .map(|b| b.into_owned())
                        .unwrap_or_default();
                    let target = lexpath::in_root(&lexpath::from_bytes(&target));
                    let to = lexpath::child(&dest, &target);
                    if symlink_names.contains(&to) {
                        symlinks.push(Deferred::HardLink {
                            named: lexpath::child(&dest, &name),
                            to,
                        });
                        continue;
                    }
                    let (tp, tb) = lexpath::split_last(&target);
                    let target_rel = lexpath::child(
                        &scope::resolve_in(root, &lexpath::child(&dest, tp), true)?,
                        tb,
                    );
                    match root.kind(&target_rel)? {
                        Some(k) if k != rustix::fs::FileType::Directory => {}
                        _ => {
                            return Err(FsError::path(
                                format!("/{rel}"),
                                format!(
                                    "hard link to /{target_rel}, which is not a file in the image"
                                ),
                            ));
                        }
                    }
                    root.hard_link(&target_rel, &rel)?;
                    self.changes.add(&rel);
                    continue;
                }
                tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                    let (file_type, dev) = match kind {
                        // GNU tar and Python's tarfile leave a FIFO's
                        // device fields empty (NULs): they mean nothing
                        tar::EntryType::Fifo => (rustix::fs::FileType::Fifo, 0),
                        _ => {
                            let major = header.device_major().map_err(bad)?.unwrap_or(0);
                            let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
                            let file_type = if kind == tar::EntryType::Char {
                                rustix::fs::FileType::CharacterDevice
                            } else {
                                rustix::fs::FileType::BlockDevice
                            };
                            (file_type, rustix::fs::makedev(major, minor))
                        }
                    };
                    dir.mknod(base, file_type, mode, dev)?;
                }
                // pax/gnu metadata entries are consumed by the tar reader; others are skipped
                _ => continue,
            }
            let xattrs = pax_xattrs(&mut entry).map_err(bad)?;
            set_metadata(
                &dir,
                base,
                (uid, gid),
                mode,
                &xattrs,
                (!is_dir).then_some(mtime),
            )?;
            self.changes.add(&rel);
        }
        writers.flush()?;
        // each symlink may change how the names after it resolve
        self.forget_dirs();
        for link in symlinks {
            match link {
                Deferred::Symlink {
                    named,
                    target,
                    uid,
                    gid,
                    mtime,
                } => self.make_symlink(&named, target, (uid, gid), mtime)?,
                Deferred::HardLink { named, to } => self.make_hard_link(&named, &to)?,
            }
        }
        // children first, so setting a parent's time is not undone
        let mut dir_times = std::mem::take(&mut self.dir_times);
        dir_times.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, mtime) in dir_times {
            if root.is_dir(&rel)? {
                root.set_mtime(&rel, mtime)?;
            }
        }
        Ok(())
    }

    /// Makes a deferred symlink: its parent is resolved now, through the
    /// links made before it, inside the root.
    fn make_symlink(
        &mut self,
        named: &str,
        target: Vec<u8>,
        (uid, gid): (u32, u32),
        mtime: i64,
    ) -> Result<(), FsError> {
        let Some(rel) = self.deferred_place(named)? else {
            return Ok(());
        };
        let target = std::ffi::OsString::from_vec(target);
        self.root.symlink(&target, &rel)?;
        self.root.chown(&rel, uid, gid)?;
        self.root.set_mtime(&rel, mtime)?;
        self.changes.add(&rel);
        Ok(())
    }

    /// Makes a deferred hard link to a symlink made before it: both names
    /// resolve now, inside the root, and the link is to the symlink itself.
    fn make_hard_link(&mut self, named: &str, to: &str) -> Result<(), FsError> {
        let (tp, tb) = lexpath::split_last(to);
        let to_rel = lexpath::child(&scope::resolve_in(self.root, tp, true)?, tb);
        if self.root.kind(&to_rel)? != Some(rustix::fs::FileType::Symlink) {
            return Err(FsError::path(
                format!("/{named}"),
                format!("hard link to /{to_rel}, which is not a symlink in the image"),
            ));
        }
        let Some(rel) = self.deferred_place(named)? else {
            return Ok(());
        };
        self.root.hard_link(&to_rel, &rel)?;
        self.changes.add(&rel);
        Ok(())
    }

    /// Where a deferred entry goes: its parent resolved now (made when
    /// missing) and whatever is at the name removed; none when skipped.
    fn deferred_place(&mut self, named: &str) -> Result<Option<String>, FsError> {
        let root = self.root;
        let (parent, base) = lexpath::split_last(named);
        let parent_rel = scope::resolve_in(root, parent, true)?;
        let rel = lexpath::child(&parent_rel, base);
        if self.skipped(&rel) {
            return Ok(None);
        }
        mkdir_all(root, &parent_rel, (0, 0), 0o755)?;
        if root.kind(&rel)?.is_some() {
            self.remove(&rel)?;
        }
        Ok(Some(rel))
    }
}

/// The xattrs an entry's PAX records carry (`SCHILY.xattr.<name>`).
fn pax_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Some(key) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((key.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Opaque marker: removes everything under `rel` that this extraction did
/// not write itself (and nothing `skip` leaves alone).
fn empty_dir(
    root: &Root,
    rel: &str,
    written: &ChangeSet,
    skip: Option<&RootIgnores>,
) -> Result<(), FsError> {
    let none = RootIgnores::default();
    clear_dir(root, rel, skip.unwrap_or(&none), &|c| {
        written.changed.contains(c)
    })
}

#[cfg(test)]
mod tests {
    //! Crafted layers: whatever names, links and PAX records a tar holds,
    //! nothing is written outside the root.
    use super::*;
    use std::path::PathBuf;

    /// A tar entry with a raw name (no checks), as an attacker would write it.
    fn raw(
        b: &mut tar::Builder<Vec<u8>>,
        name: &str,
        kind: tar::EntryType,
        link: &str,
        body: &[u8],
    ) {
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..100].fill(0);
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
        h.set_size(body.len() as u64);
        if !link.is_empty() {
            h.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, body).expect("append");
    }

    fn layer(entries: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        entries(&mut b);
        b.into_inner().expect("tar")
    }

    /// `outer/root`: after extraction, `outer` must hold `root` only.
    fn sandbox() -> (tempfile::TempDir, PathBuf) {
        let outer = tempfile::tempdir().expect("tempdir");
        let root = outer.path().join("root");
        fs_err::create_dir(&root).expect("mkdir");
        (outer, root)
    }

    fn assert_contained(outer: &Path) {
        let names: Vec<String> = fs_err::read_dir(outer)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["root"], "something was written outside the root");
    }

    fn apply(root: &Path, tar: &[u8]) -> Result<ChangeSet, FsError> {
        extract_tar(
            tar,
            root,
            "",
            ExtractOptions {
                whiteouts: true,
                ..ExtractOptions::default()
            },
        )
    }

    #[test]
    fn dot_dot_and_absolute_names_stay_inside() {
        let (outer, root) = sandbox();
        let t = layer(|b| {
            raw(b, "../../outside", tar::EntryType::Regular, "", b"x");
            raw(b, "/abs", tar::EntryType::Regular, "", b"y");
            raw(b, "a/../../../up", tar::EntryType::Regular, "", b"z");
        });
        apply(&root, &t).expect("extract");
        assert_contained(outer.path());
        assert_eq!(fs_err::read(root.join("outside")).expect("read"), b"x");
        assert_eq!(fs_err::read(root.join("abs")).expect("read"), b"y");
        assert_eq!(fs_err::read(root.join("up")).expect("read"), b"z");
    }

    #[test]
    fn a_symlinked_parent_pointing_outside_is_followed_inside() {
        let (outer, root) = sandbox();
        let first = layer(|b| {
            raw(b, "rel", tar::EntryType::Symlink, "../../..", b"");
            raw(b, "abs", tar::EntryType::Symlink, "/", b"");
        });
        apply(&root, &first).expect("extract");
        let second = layer(|b| {
            raw(b, "rel/escaped", tar::EntryType::Regular, "", b"1");
            raw(b, "abs/escaped2", tar::EntryType::Regular, "", b"2");
        });
        apply(&root, &second).expect("extract");
        assert_contained(outer.path());
        assert_eq!(fs_err::read(root.join("escaped")).expect("read"), b"1");
        assert_eq!(fs_err::read(root.join("escaped2")).expect("read"), b"2");
    }

    #[test]
    fn hard_links_cannot_reach_outside() {
        let (outer, root) = sandbox();
        fs_err::write(outer.path().join("secret"), "s").expect("write");
        let t = layer(|b| {
            raw(b, "hl", tar::EntryType::Link, "../secret", b"");
        });
        let err = apply(&root, &t).expect_err("a link to a file not in the image");
        assert!(err.to_string().contains("not a file in the image"), "{err}");
        // through a symlinked parent: resolved inside the root
        let t = layer(|b| {
            raw(b, "etc", tar::EntryType::Directory, "", b"");
            raw(b, "etc/passwd", tar::EntryType::Regular, "", b"root");
            raw(b, "up", tar::EntryType::Symlink, "../../..", b"");
        });
        apply(&root, &t).expect("extract");
        let t = layer(|b| {
            raw(b, "hl2", tar::EntryType::Link, "up/etc/passwd", b"");
        });
        apply(&root, &t).expect("extract");
        use std::os::unix::fs::MetadataExt;
        let a = fs_err::metadata(root.join("hl2")).expect("stat");
        let b = fs_err::metadata(root.join("etc/passwd")).expect("stat");
        assert_eq!(a.ino(), b.ino());
        fs_err::remove_file(outer.path().join("secret")).expect("rm");
        assert_contained(outer.path());
    }

    #[test]
    fn a_pax_path_that_disagrees_with_the_header_is_cleaned_too() {
        let (outer, root) = sandbox();
        let t = layer(|b| {
            b.append_pax_extensions([("path", b"../../pax-evil".as_slice())])
                .expect("pax");
            raw(b, "benign", tar::EntryType::Regular, "", b"p");
        });
        apply(&root, &t).expect("extract");
        assert_contained(outer.path());
        assert_eq!(fs_err::read(root.join("pax-evil")).expect("read"), b"p");
        assert!(!root.join("benign").exists());
    }

    #[test]
    fn whiteouts_opaque_dirs_and_type_changes() {
        let (_outer, root) = sandbox();
        let first = layer(|b| {
            raw(b, "d", tar::EntryType::Directory, "", b"");
            raw(b, "d/old", tar::EntryType::Regular, "", b"o");
            raw(b, "gone", tar::EntryType::Regular, "", b"g");
            raw(b, "was-file", tar::EntryType::Regular, "", b"f");
            raw(b, "o", tar::EntryType::Directory, "", b"");
            raw(b, "o/a", tar::EntryType::Regular, "", b"a");
        });
        apply(&root, &first).expect("extract");
        let second = layer(|b| {
            raw(b, ".wh.gone", tar::EntryType::Regular, "", b"");
            raw(b, "was-file", tar::EntryType::Directory, "", b"");
            raw(b, "o/.wh..wh..opq", tar::EntryType::Regular, "", b"");
            raw(b, "o/b", tar::EntryType::Regular, "", b"b");
            raw(b, "d", tar::EntryType::Symlink, "o", b"");
        });
        let changes = apply(&root, &second).expect("extract");
        assert!(!root.join("gone").exists());
        assert!(root.join("was-file").is_dir());
        assert!(!root.join("o/a").exists());
        assert_eq!(fs_err::read(root.join("o/b")).expect("read"), b"b");
        assert_eq!(
            fs_err::read_link(root.join("d")).expect("link"),
            Path::new("o")
        );
        assert!(changes.deleted.contains("gone"));
    }

    /// `outer/root` plus `outer/canary/{secret,sub/}`; returns the canary's
    /// absolute path.
    fn with_canary() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let outer = tempfile::tempdir().expect("tempdir");
        let root = outer.path().join("root");
        let canary = outer.path().join("canary");
        fs_err::create_dir_all(&root).expect("mkdir");
        fs_err::create_dir_all(canary.join("sub")).expect("mkdir");
        fs_err::write(canary.join("secret"), "host secret").expect("write");
        set_times(&canary, 1_000_000);
        set_times(&canary.join("sub"), 1_000_000);
        (outer, root, canary)
    }

    fn set_times(p: &Path, secs: i64) {
        let t = filetime::FileTime::from_unix_time(secs, 0);
        filetime::set_symlink_file_times(p, t, t).expect("times");
    }

    /// The canary is exactly as made: same entries, content and times.
    fn canary_intact(canary: &Path) {
        let mut names: Vec<String> = fs_err::read_dir(canary)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["secret", "sub"], "the canary directory changed");
        assert_eq!(
            fs_err::read(canary.join("secret")).expect("read"),
            b"host secret"
        );
        assert!(
            fs_err::read_dir(canary.join("sub"))
                .expect("sub")
                .next()
                .is_none()
        );
        for p in [canary.to_path_buf(), canary.join("sub")] {
            let m = fs_err::metadata(&p).expect("stat");
            assert_eq!(
                filetime::FileTime::from_last_modification_time(&m).unix_seconds(),
                1_000_000,
                "{} mtime changed",
                p.display()
            );
        }
    }

    /// Every crafted layer of class 1 of the hostile-input issue: a symlink
    /// to a host directory and, later in the same tar, entries under it.
    #[test]
    fn entries_under_a_symlink_made_by_the_same_layer_stay_inside() {
        let kinds = [
            ("symlink", tar::EntryType::Symlink, "x"),
            ("regular", tar::EntryType::Regular, ""),
            ("directory", tar::EntryType::Directory, ""),
            ("fifo", tar::EntryType::Fifo, ""),
            ("hardlink", tar::EntryType::Link, "other"),
        ];
        let mut tried = 0;
        for (what, kind, link) in kinds {
            for name in ["secret", "sub", "new"] {
                for (esc_target, whiteouts) in [("ABS", true), ("REL", false), ("ABS", false)] {
                    let (outer, root, canary) = with_canary();
                    let target = if esc_target == "ABS" {
                        canary.display().to_string()
                    } else {
                        "../../../../../../../../canary".to_string()
                    };
                    let t = layer(|b| {
                        raw(b, "other", tar::EntryType::Regular, "", b"o");
                        raw(b, "esc", tar::EntryType::Symlink, &target, b"");
                        raw(b, &format!("esc/{name}"), kind, link, b"");
                        raw(b, "esc2", tar::EntryType::Symlink, &target, b"");
                        raw(b, "esc2/deeper/x", kind, link, b"");
                    });
                    let _ = extract_tar(
                        t.as_slice(),
                        &root,
                        "",
                        ExtractOptions {
                            whiteouts,
                            ..ExtractOptions::default()
                        },
                    );
                    canary_intact(&canary);
                    let mut left: Vec<String> = fs_err::read_dir(outer.path())
                        .expect("read_dir")
                        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                        .collect();
                    left.sort();
                    assert_eq!(left, ["canary", "root"], "{what} {name} {esc_target}");
                    tried += 1;
                }
            }
        }
        assert_eq!(tried, 45);
    }

    #[test]
    fn deferred_symlinks_resolve_through_links_made_before_them() {
        let (_outer, root, canary) = with_canary();
        let t = layer(|b| {
            raw(
                b,
                "esc",
                tar::EntryType::Symlink,
                &canary.display().to_string(),
                b"",
            );
            raw(b, "esc/secret", tar::EntryType::Symlink, "/etc/shadow", b"");
        });
        let changes = apply(&root, &t).expect("extract");
        canary_intact(&canary);
        // esc/secret landed where esc points, inside the root
        let inside = lexpath::in_root(&format!("{}/secret", canary.display()));
        assert_eq!(
            fs_err::read_link(root.join(&inside)).expect("link"),
            Path::new("/etc/shadow")
        );
        assert!(changes.changed.contains(&inside), "{changes:?}");
    }

    /// `cp -al` of a tree with symlinks gives hard links to symlinks: the
    /// link is made after the deferred symlink, to the symlink itself, and a
    /// link to a symlink of a lower layer works too.
    #[test]
    fn hard_links_to_symlinks_link_the_symlink() {
        use std::os::unix::fs::MetadataExt;
        let (outer, root) = sandbox();
        let lower = layer(|b| raw(b, "old", tar::EntryType::Symlink, "gone", b""));
        apply(&root, &lower).expect("lower");
        let t = layer(|b| {
            raw(b, "d/rel", tar::EntryType::Symlink, "file", b"");
            raw(b, "d/again", tar::EntryType::Link, "d/rel", b"");
            raw(b, "e/third", tar::EntryType::Link, "d/rel", b"");
            raw(b, "old2", tar::EntryType::Link, "old", b"");
        });
        let changes = apply(&root, &t).expect("extract");
        for name in ["d/again", "e/third", "d/rel"] {
            let m = fs_err::symlink_metadata(root.join(name)).expect("lstat");
            assert!(m.file_type().is_symlink(), "{name}");
            assert_eq!(m.nlink(), 3, "{name}");
            assert!(changes.changed.contains(name), "{name}: {changes:?}");
        }
        let old2 = fs_err::symlink_metadata(root.join("old2")).expect("lstat");
        assert!(old2.file_type().is_symlink());
        assert_eq!(old2.nlink(), 2);
        assert_contained(outer.path());
    }

    /// Class 2: an archive holding `esc/secret.txt` and then `esc -> host`
    /// must not make the host's file part of the change set (and so of the
    /// layer).
    #[test]
    fn a_directory_replaced_by_a_symlink_forgets_what_was_written_in_it() {
        let (_outer, root, canary) = with_canary();
        let t = layer(|b| {
            raw(b, "esc", tar::EntryType::Directory, "", b"");
            raw(b, "esc/secret", tar::EntryType::Regular, "", b"mine");
            raw(
                b,
                "esc",
                tar::EntryType::Symlink,
                &canary.display().to_string(),
                b"",
            );
        });
        let changes =
            extract_tar(t.as_slice(), &root, "", ExtractOptions::default()).expect("extract");
        canary_intact(&canary);
        assert_eq!(
            changes.changed.iter().collect::<Vec<_>>(),
            ["esc"],
            "only the symlink is left to put in a layer"
        );
        let store = crate::image::BlobStore::open(&root.join("../blobs")).expect("store");
        let blob =
            crate::fs::write_layer(&root, &changes, &store, Default::default()).expect("layer");
        assert_eq!(blob.entries, 1);
        // a change set naming a path under the link fails instead of reading the host
        let mut forged = ChangeSet::default();
        forged.add("esc/secret");
        let err = crate::fs::write_layer(&root, &forged, &store, Default::default())
            .expect_err("read through a symlink");
        assert!(err.to_string().contains("symlink"), "{err}");
    }

    /// Class 3: whiteouts whose name stands for the directory itself or
    /// its parent.
    #[test]
    fn whiteouts_of_dot_and_dot_dot_are_refused() {
        for bad in [
            ".wh.",
            ".wh..",
            ".wh...",
            "sub/.wh.",
            "sub/.wh..",
            "sub/.wh...",
            "sub/x/../.wh..",
        ] {
            let (outer, root, canary) = with_canary();
            fs_err::create_dir_all(root.join("sub/keep")).expect("mkdir");
            let t = layer(|b| raw(b, bad, tar::EntryType::Regular, "", b""));
            let err = apply(&root, &t).expect_err(bad);
            assert!(err.to_string().contains("whiteout"), "{bad}: {err}");
            assert!(root.join("sub/keep").is_dir(), "{bad} removed something");
            canary_intact(&canary);
            assert!(outer.path().join("root").is_dir());
        }
    }

    /// Class 10: GNU tar and Python's tarfile leave a FIFO's device fields
    /// empty.
    #[test]
    fn fifos_with_empty_device_fields_extract() {
        let (_outer, root) = sandbox();
        let mut h = tar::Header::new_ustar();
        h.as_mut_bytes()[..4].copy_from_slice(b"pipe");
        h.set_entry_type(tar::EntryType::Fifo);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(0);
        h.as_mut_bytes()[329..345].fill(0);
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, &b""[..]).expect("append");
        let t = b.into_inner().expect("tar");
        apply(&root, &t).expect("extract");
        use std::os::unix::fs::FileTypeExt;
        assert!(
            fs_err::symlink_metadata(root.join("pipe"))
                .expect("stat")
                .file_type()
                .is_fifo()
        );
    }

    /// Class 10: names that are not UTF-8 keep their bytes, through
    /// extraction and back into a layer.
    #[test]
    fn names_that_are_not_utf8_keep_their_bytes() {
        use std::os::unix::ffi::OsStrExt;
        let (outer, root) = sandbox();
        let mut b = tar::Builder::new(Vec::new());
        let names: [&[u8]; 3] = [b"d\xfe/", b"d\xfe/caf\xe9", b"l\xff"];
        for name in names {
            let mut h = tar::Header::new_ustar();
            h.as_mut_bytes()[..name.len()].copy_from_slice(name);
            let (kind, mode) = match name {
                n if n.ends_with(b"/") => (tar::EntryType::Directory, 0o755),
                n if n.starts_with(b"l") => (tar::EntryType::Symlink, 0o777),
                _ => (tar::EntryType::Regular, 0o644),
            };
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(if kind == tar::EntryType::Regular {
                2
            } else {
                0
            });
            if kind == tar::EntryType::Symlink {
                h.as_mut_bytes()[157..161].copy_from_slice(b"\x80\x81x\xff");
            }
            h.set_cksum();
            let body: &[u8] = if kind == tar::EntryType::Regular {
                b"hi"
            } else {
                b""
            };
            b.append(&h, body).expect("append");
        }
        let t = b.into_inner().expect("tar");
        let changes = apply(&root, &t).expect("extract");
        let file = root.join(std::ffi::OsStr::from_bytes(b"d\xfe/caf\xe9"));
        assert_eq!(fs_err::read(&file).expect("read"), b"hi");
        let link =
            fs_err::read_link(root.join(std::ffi::OsStr::from_bytes(b"l\xff"))).expect("link");
        assert_eq!(link.as_os_str().as_bytes(), b"\x80\x81x\xff");
        let store = crate::image::BlobStore::open(&outer.path().join("blobs")).expect("store");
        let blob =
            crate::fs::write_layer(&root, &changes, &store, Default::default()).expect("layer");
        let gz = fs_err::File::open(store.path(&blob.digest)).expect("blob");
        let mut names_out: Vec<Vec<u8>> = Vec::new();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        for e in archive.entries().expect("entries") {
            names_out.push(e.expect("entry").path_bytes().into_owned());
        }
        names_out.sort();
        assert_eq!(
            names_out,
            [
                b"d\xfe/".to_vec(),
                b"d\xfe/caf\xe9".to_vec(),
                b"l\xff".to_vec()
            ]
        );
        // a message about such a name shows its bytes escaped, never raw
        let err = FsError::path(format!("/{}", lexpath::from_bytes(b"x\xff\n")), "boom");
        assert_eq!(err.to_string(), "/x\\xff\\n: boom");
    }
}
