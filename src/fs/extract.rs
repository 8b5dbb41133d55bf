//! Extracts a tar stream into a directory of a build root, safely: every
//! name is cleaned and resolved inside the root (a `..`, an absolute name, a
//! symlinked parent or a hard link can never reach outside it), a path of
//! another type is replaced, symlinks are made after everything else and
//! directory times are set last. Whiteouts are applied when asked (image
//! layers); ADD of a local archive extracts without them.

use super::ignore::{RootIgnores, clear_dir};
use super::tree::{mkdir_all, remove_any, set_mtime};
use super::writers::{self, BUFFERED_MAX, FileJob, Writers, set_metadata};
use super::{ChangeSet, FsError, io_at, scope};
use crate::lexpath;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

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

struct Deferred {
    rel: String,
    target: Vec<u8>,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// Extracts `reader` (an uncompressed tar) under `dest` (relative to `root`).
/// Returns what changed, relative to the root. Small files are written by
/// several threads ([`super::writers`]).
pub fn extract_tar<R: Read>(
    reader: R,
    root: &Path,
    dest: &str,
    opts: ExtractOptions<'_>,
) -> Result<ChangeSet, FsError> {
    std::thread::scope(|scope| {
        let mut writers = Writers::start(scope, writers::threads());
        let result = extract_with(reader, root, dest, opts, &mut writers);
        let flushed = writers.flush();
        drop(writers);
        let changes = result?;
        flushed?;
        Ok(changes)
    })
}

fn extract_with<R: Read>(
    reader: R,
    root: &Path,
    dest: &str,
    opts: ExtractOptions<'_>,
    writers: &mut Writers,
) -> Result<ChangeSet, FsError> {
    let dest = scope::resolve(root, dest, true)?;
    let mut changes = ChangeSet::default();
    let mut archive = tar::Archive::new(reader);
    let mut symlinks: Vec<Deferred> = Vec::new();
    let mut dir_times: Vec<(String, i64)> = Vec::new();
    let bad =
        |e: std::io::Error| FsError::path(format!("/{dest}"), format!("reading archive: {e}"));
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw_name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = lexpath::in_root(&raw_name);
        if name.is_empty() {
            continue;
        }
        let (parent, base) = lexpath::split_last(&name);
        let parent_rel = scope::resolve(root, &lexpath::child(&dest, parent), true)?;
        if let Some(skip) = opts.skip {
            // a whiteout stands for the path it removes
            let named = base.strip_prefix(".wh.").filter(|_| opts.whiteouts);
            if skip.covers(&lexpath::child(&parent_rel, named.unwrap_or(base))) {
                continue;
            }
        }
        if opts.whiteouts && base.starts_with(".wh.") {
            // nothing may be half-written under what is about to go
            writers.flush()?;
            if base == ".wh..wh..opq" {
                empty_dir(root, &parent_rel, &changes, opts.skip)?;
                changes.opaque.insert(parent_rel.clone());
                continue;
            }
            if let Some(gone) = base.strip_prefix(".wh.") {
                let rel = lexpath::child(&parent_rel, gone);
                remove_any(&root.join(&rel))?;
                changes
                    .changed
                    .retain(|c| c != &rel && !c.starts_with(&format!("{rel}/")));
                changes.deleted.insert(rel);
                continue;
            }
        }
        let rel = lexpath::child(&parent_rel, base);
        let full = root.join(&rel);
        if writers.pending(&full) {
            // a second entry for a path a worker may still be writing
            writers.flush()?;
        }
        mkdir_all(root, &parent_rel, (0, 0), 0o755)?;
        let header = entry.header().clone();
        let (uid, gid) = match opts.chown {
            Some(ids) => ids,
            None => (
                header.uid().map_err(bad)? as u32,
                header.gid().map_err(bad)? as u32,
            ),
        };
        let mode = header.mode().map_err(bad)? & 0o7777;
        let mtime = header.mtime().map_err(bad)? as i64;
        let existing = full.symlink_metadata().ok();
        let kind = header.entry_type();
        let is_dir = kind.is_dir();
        if let Some(m) = &existing
            && !(is_dir && m.is_dir())
        {
            if m.is_dir() {
                // workers may be writing inside the tree about to go
                writers.flush()?;
            }
            remove_any(&full)?;
        }
        match kind {
            tar::EntryType::Directory => {
                if !full.is_dir() {
                    fs_err::create_dir(&full)?;
                }
                dir_times.push((rel.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous
                if writers.parallel() && header.size().map_err(bad)? <= BUFFERED_MAX =>
            {
                let mut data = Vec::with_capacity(header.size().map_err(bad)? as usize);
                entry.read_to_end(&mut data).map_err(bad)?;
                let xattrs = pax_xattrs(&mut entry).map_err(bad)?;
                writers.dispatch(FileJob {
                    full,
                    data,
                    uid,
                    gid,
                    mode,
                    mtime,
                    xattrs,
                })?;
                changes.add(&rel);
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut out = fs_err::File::create(&full)?;
                std::io::copy(&mut entry, &mut out).map_err(io_at(&full, "writing"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                symlinks.push(Deferred {
                    rel: rel.clone(),
                    target,
                    uid,
                    gid,
                    mtime,
                });
                changes.add(&rel);
                continue;
            }
            tar::EntryType::Link => {
                // the target may be a file a worker is writing
                writers.flush()?;
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .unwrap_or_default();
                let target = lexpath::in_root(&String::from_utf8_lossy(&target));
                let (tp, tb) = lexpath::split_last(&target);
                let target_rel =
                    lexpath::child(&scope::resolve(root, &lexpath::child(&dest, tp), true)?, tb);
                let target_full = root.join(&target_rel);
                match target_full.symlink_metadata() {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(FsError::path(
                            format!("/{rel}"),
                            format!("hard link to /{target_rel}, which is not a file in the image"),
                        ));
                    }
                }
                fs_err::hard_link(&target_full, &full)?;
                changes.add(&rel);
                continue;
            }
            tar::EntryType::Fifo | tar::EntryType::Char | tar::EntryType::Block => {
                let file_type = match kind {
                    tar::EntryType::Fifo => rustix::fs::FileType::Fifo,
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    _ => rustix::fs::FileType::BlockDevice,
                };
                let major = header.device_major().map_err(bad)?.unwrap_or(0);
                let minor = header.device_minor().map_err(bad)?.unwrap_or(0);
                let dev = rustix::fs::makedev(major, minor);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &full,
                    file_type,
                    rustix::fs::Mode::from_raw_mode(mode),
                    dev,
                )
                .map_err(|e| io_at(&full, "mknod")(e.into()))?;
            }
            // pax/gnu metadata entries are consumed by the tar reader; others are skipped
            _ => continue,
        }
        let xattrs = pax_xattrs(&mut entry).map_err(bad)?;
        set_metadata(&full, (uid, gid), mode, &xattrs, (!is_dir).then_some(mtime))?;
        changes.add(&rel);
    }
    writers.flush()?;
    for link in symlinks {
        let full = root.join(&link.rel);
        if full.symlink_metadata().is_ok() {
            remove_any(&full)?;
        }
        let target = std::ffi::OsString::from_vec(link.target);
        std::os::unix::fs::symlink(target, &full).map_err(io_at(&full, "creating symlink"))?;
        std::os::unix::fs::lchown(&full, Some(link.uid), Some(link.gid))
            .map_err(io_at(&full, "chown"))?;
        set_mtime(&full, link.mtime)?;
    }
    // children first, so setting a parent's time is not undone
    dir_times.sort_by(|a, b| b.0.cmp(&a.0));
    for (rel, mtime) in dir_times {
        set_mtime(&root.join(rel), mtime)?;
    }
    Ok(changes)
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
    root: &Path,
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
}
