//! A build root (or any tree smelt writes into or reads from on behalf of
//! an image, a context or a Dockerfile) opened as a directory descriptor:
//! the one narrow interface through which extraction, whiteouts, COPY/ADD,
//! tree operations and layer writing touch it.
//!
//! Every path given here is relative to the root, `/`-separated, and
//! already resolved by [`super::scope`] (symlinks followed inside the root,
//! so no element of it is a symlink). The kernel checks that: the parent
//! directory is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//! RESOLVE_NO_MAGICLINKS)`, so a symlink or a `..` anywhere on the way makes
//! the operation fail (`ELOOP`, `EXDEV`) instead of leaving the root, and
//! the last element is then acted on by an `*at` call on that directory
//! that never follows it (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`, `O_EXCL`). No
//! path string built here is ever handed to a system call that resolves it
//! from `/`. A last element that is empty, `.` or `..` is refused, so no
//! name can stand for the directory itself or its parent.
//!
//! [`Root::open_in_root`] is the read side for trees whose symlinks must be
//! followed (a context's Dockerfile): `RESOLVE_IN_ROOT`, as a chroot would.
//!
//! Nothing else writes into such a tree concurrently while these run (a RUN
//! has ended, and in its own PID namespace nothing of it survives), so a
//! check followed by an operation on the same directory descriptor and
//! name is not a race an image can win.

use super::FsError;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// A directory every operation stays beneath.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

/// The descriptor of a directory an operation acts in: the root itself or
/// one below it.
#[derive(Debug)]
enum DirFd<'a> {
    Root(BorrowedFd<'a>),
    Below(OwnedFd),
}

impl AsFd for DirFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            DirFd::Root(fd) => *fd,
            DirFd::Below(fd) => fd.as_fd(),
        }
    }
}

/// A directory beneath a root, held open: its entries are acted on by
/// name, never following the name, with no path resolved again. What
/// several operations on one directory share (extraction keeps the last
/// one open for the next entries).
#[derive(Debug)]
pub struct Dir<'r> {
    fd: DirFd<'r>,
    /// Where it is in the root, for messages.
    rel: String,
}

impl AsFd for Dir<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A root-relative path as the file system names it (names that are not
/// UTF-8 are carried encoded: [`crate::lexpath::from_bytes`]).
fn os(rel: &str) -> std::borrow::Cow<'_, OsStr> {
    crate::lexpath::to_os(rel)
}

/// Resolution that fails rather than follows.
const STRICT: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

fn errno_at(rel: &str, what: &str, e: Errno) -> FsError {
    FsError::path(format!("/{rel}"), format!("{what}: {}", describe(e)))
}

/// The error text, with the two a hostile tree provokes made plain.
fn describe(e: Errno) -> String {
    match e {
        Errno::LOOP => "a symlink in the way (not followed out of the root)".to_string(),
        Errno::XDEV => "the path leaves the root".to_string(),
        e => std::io::Error::from(e).to_string(),
    }
}

/// Splits `rel` into its parent and a last element that names an entry
/// (not empty, `.` or `..`).
fn split(rel: &str) -> Result<(&str, &str), FsError> {
    let rel = rel.trim_matches('/');
    let (parent, name) = match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    };
    if name.is_empty() || name == "." || name == ".." {
        return Err(FsError::path(
            format!("/{rel}"),
            "does not name an entry in the root",
        ));
    }
    Ok((parent, name))
}

impl Root {
    /// Opens `path` (which must be a directory, followed if a symlink:
    /// the caller names its own root).
    pub fn open(path: &Path) -> Result<Root, FsError> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::path(path.display(), format!("opening: {}", describe(e))))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Where the root is (for messages and for tools run on it).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory `rel_dir` (`""`: the root), opened without following
    /// anything.
    fn dir_raw(&self, rel_dir: &str) -> rustix::io::Result<Dir<'_>> {
        let rel_dir = rel_dir.trim_matches('/');
        let fd = if rel_dir.is_empty() {
            DirFd::Root(self.fd.as_fd())
        } else {
            DirFd::Below(rustix::fs::openat2(
                &self.fd,
                &*os(rel_dir),
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
                STRICT,
            )?)
        };
        Ok(Dir {
            fd,
            rel: rel_dir.to_string(),
        })
    }

    /// The directory `rel_dir` (`""`: the root), held open.
    pub fn dir(&self, rel_dir: &str) -> Result<Dir<'_>, FsError> {
        self.dir_raw(rel_dir)
            .map_err(|e| errno_at(rel_dir.trim_matches('/'), "opening directory", e))
    }

    /// The parent of `rel` and the last element's name.
    fn at<'n>(&self, rel: &'n str) -> Result<(Dir<'_>, &'n str), FsError> {
        let (parent, name) = split(rel)?;
        Ok((self.dir(parent)?, name))
    }

    /// `lstat` of `rel`; `None` when nothing is there (the root itself is
    /// `""`).
    pub fn lstat(&self, rel: &str) -> Result<Option<Stat>, FsError> {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return rustix::fs::fstat(&self.fd)
                .map(Some)
                .map_err(|e| errno_at(rel, "stat", e));
        }
        let (parent, name) = split(rel)?;
        match self.dir_raw(parent) {
            Ok(dir) => dir.lstat(name),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(errno_at(rel, "stat", e)),
        }
    }

    /// The type of what is at `rel`, if anything.
    pub fn kind(&self, rel: &str) -> Result<Option<FileType>, FsError> {
        Ok(self
            .lstat(rel)?
            .map(|st| FileType::from_raw_mode(st.st_mode)))
    }

    /// Whether `rel` is a directory (not a symlink to one).
    pub fn is_dir(&self, rel: &str) -> Result<bool, FsError> {
        Ok(self.kind(rel)? == Some(FileType::Directory))
    }

    /// Creates the directory `rel` (its mode is set by the caller).
    pub fn create_dir(&self, rel: &str, mode: u32) -> Result<(), FsError> {
        let (dir, name) = self.at(rel)?;
        dir.create_dir(name, mode)
    }

    /// Creates the regular file `rel`, which must not exist yet, for
    /// writing.
    pub fn create_file(&self, rel: &str, mode: u32) -> Result<std::fs::File, FsError> {
        let (dir, name) = self.at(rel)?;
        dir.create_file(name, mode)
    }

    /// Opens the regular file `rel` for reading (a symlink anywhere on the
    /// way, the last element included, is an error).
    pub fn open_file(&self, rel: &str) -> Result<std::fs::File, FsError> {
        let rel = rel.trim_matches('/');
        rustix::fs::openat2(
            &self.fd,
            &*os(rel),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
            STRICT,
        )
        .map(std::fs::File::from)
        .map_err(|e| errno_at(rel, "opening", e))
    }

    /// The contents of the regular file `rel` (no symlink on the way),
    /// which may hold at most `max` bytes: a device, a FIFO or a file that
    /// never ends is refused instead of read.
    pub fn read_regular(&self, rel: &str, max: u64) -> Result<Vec<u8>, FsError> {
        use std::io::Read;
        let rel = rel.trim_matches('/');
        let fd = rustix::fs::openat2(
            &self.fd,
            &*os(rel),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            STRICT,
        )
        .map_err(|e| errno_at(rel, "opening", e))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| errno_at(rel, "stat", e))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(FsError::path(format!("/{rel}"), "is not a regular file"));
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut data)
            .map_err(|e| FsError::path(format!("/{rel}"), format!("reading: {e}")))?;
        if data.len() as u64 > max {
            return Err(FsError::path(
                format!("/{rel}"),
                format!("is larger than {max} bytes"),
            ));
        }
        Ok(data)
    }

    /// Opens `rel` for reading as a chroot into the root would: symlinks
    /// are followed, an absolute one or `..` from the root's top stays in
    /// the root. For files an untrusted tree names (a context's
    /// Dockerfile and `.dockerignore`).
    pub fn open_in_root(&self, rel: &str) -> Result<std::fs::File, FsError> {
        let rel = rel.trim_start_matches('/');
        rustix::fs::openat2(
            &self.fd,
            &*os(if rel.is_empty() { "." } else { rel }),
            // not blocking on a FIFO a tree holds in its place
            OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )
        .map(std::fs::File::from)
        .map_err(|e| errno_at(rel, "opening", e))
    }

    /// Creates the symlink `rel` pointing at `target` (never resolved here).
    pub fn symlink(&self, target: &OsStr, rel: &str) -> Result<(), FsError> {
        let (dir, name) = self.at(rel)?;
        dir.symlink(target, name)
    }

    /// The target of the symlink `rel`.
    pub fn read_link(&self, rel: &str) -> Result<OsString, FsError> {
        let (dir, name) = self.at(rel)?;
        dir.read_link(name)
    }

    /// Makes `rel` a hard link to `existing` (a symlink is linked itself,
    /// never followed).
    pub fn hard_link(&self, existing: &str, rel: &str) -> Result<(), FsError> {
        let (from_dir, from) = self.at(existing)?;
        let (dir, name) = self.at(rel)?;
        rustix::fs::linkat(&from_dir, &*os(from), &dir, &*os(name), AtFlags::empty())
            .map_err(|e| errno_at(rel, &format!("linking to /{existing}"), e))
    }

    /// Creates a FIFO or device node.
    pub fn mknod(&self, rel: &str, kind: FileType, mode: u32, dev: u64) -> Result<(), FsError> {
        let (dir, name) = self.at(rel)?;
        dir.mknod(name, kind, mode, dev)
    }

    /// Sets the owner of `rel` itself (a symlink is not followed).
    pub fn chown(&self, rel: &str, uid: u32, gid: u32) -> Result<(), FsError> {
        let (dir, name) = self.at(rel)?;
        dir.chown(name, uid, gid)
    }

    /// Sets the mode of `rel`; a symlink has none and is left alone.
    pub fn chmod(&self, rel: &str, mode: u32) -> Result<(), FsError> {
        let (dir, name) = self.at(rel)?;
        dir.chmod(name, mode)
    }

    /// Sets the access and modification times of `rel` itself.
    pub fn set_mtime(&self, rel: &str, secs: i64) -> Result<(), FsError> {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            let times = timestamps(secs);
            return rustix::fs::futimens(&self.fd, &times)
                .or_else(|_| {
                    rustix::fs::utimensat(&self.fd, ".", &times, AtFlags::SYMLINK_NOFOLLOW)
                })
                .map_err(|e| errno_at(rel, "setting mtime", e));
        }
        let (dir, name) = self.at(rel)?;
        dir.set_mtime(name, secs)
    }

    /// Sets an extended attribute on `rel` itself.
    pub fn set_xattr(&self, rel: &str, key: &str, value: &[u8]) -> Result<(), FsError> {
        let (dir, name) = self.at(rel)?;
        dir.set_xattr(name, key, value)
    }

    /// The extended attributes of `rel` itself, sorted by name; none
    /// where the filesystem has no support for them.
    pub fn xattrs(&self, rel: &str) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            let root = Dir {
                fd: DirFd::Root(self.fd.as_fd()),
                rel: String::new(),
            };
            return root.xattrs(".");
        }
        let (dir, name) = self.at(rel)?;
        dir.xattrs(name)
    }

    /// The names in directory `rel` (not `.` and `..`) with their types,
    /// as [`crate::lexpath::from_bytes`] strings.
    pub fn read_dir(&self, rel: &str) -> Result<Vec<(String, FileType)>, FsError> {
        let rel = rel.trim_matches('/');
        let fd = rustix::fs::openat2(
            &self.fd,
            &*os(if rel.is_empty() { "." } else { rel }),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            STRICT,
        )
        .map_err(|e| errno_at(rel, "opening directory", e))?;
        list(fd)
            .map(|names| {
                names
                    .into_iter()
                    .map(|(n, k)| (crate::lexpath::from_os(&n), k))
                    .collect()
            })
            .map_err(|e| errno_at(rel, "reading directory", e))
    }

    /// Removes whatever is at `rel` (a whole tree for a directory, its
    /// symlinks never followed); nothing there is fine.
    pub fn remove(&self, rel: &str) -> Result<(), FsError> {
        let (parent, name) = split(rel)?;
        match self.dir_raw(parent) {
            Ok(dir) => dir.remove(name),
            // no parent, nothing to remove
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(()),
            Err(e) => Err(errno_at(parent, "opening directory", e)),
        }
    }
}

impl Dir<'_> {
    /// Where this directory is in the root.
    pub fn rel(&self) -> &str {
        &self.rel
    }

    /// Where `name` is in the root, for messages.
    fn rel_of(&self, name: &str) -> String {
        crate::lexpath::child(&self.rel, name)
    }

    fn fail(&self, name: &str, what: &str, e: Errno) -> FsError {
        errno_at(&self.rel_of(name), what, e)
    }

    /// `lstat` of `name`; `None` when nothing is there.
    pub fn lstat(&self, name: &str) -> Result<Option<Stat>, FsError> {
        match rustix::fs::statat(self, &*os(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(self.fail(name, "stat", e)),
        }
    }

    /// The type of what is at `name`, if anything.
    pub fn kind(&self, name: &str) -> Result<Option<FileType>, FsError> {
        Ok(self
            .lstat(name)?
            .map(|st| FileType::from_raw_mode(st.st_mode)))
    }

    /// Creates the directory `name` (its mode is set by the caller).
    pub fn create_dir(&self, name: &str, mode: u32) -> Result<(), FsError> {
        check_name(name, &self.rel)?;
        rustix::fs::mkdirat(self, &*os(name), Mode::from_raw_mode(mode))
            .map_err(|e| self.fail(name, "creating directory", e))
    }

    /// Creates the regular file `name`, which must not exist yet, for
    /// writing.
    pub fn create_file(&self, name: &str, mode: u32) -> Result<std::fs::File, FsError> {
        check_name(name, &self.rel)?;
        rustix::fs::openat(
            self,
            &*os(name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .map(std::fs::File::from)
        .map_err(|e| self.fail(name, "creating file", e))
    }

    /// Creates the symlink `name` pointing at `target` (never resolved).
    pub fn symlink(&self, target: &OsStr, name: &str) -> Result<(), FsError> {
        check_name(name, &self.rel)?;
        rustix::fs::symlinkat(target, self, &*os(name))
            .map_err(|e| self.fail(name, "creating symlink", e))
    }

    /// The target of the symlink `name`.
    pub fn read_link(&self, name: &str) -> Result<OsString, FsError> {
        rustix::fs::readlinkat(self, &*os(name), Vec::new())
            .map(|t| OsString::from_vec(t.into_bytes()))
            .map_err(|e| self.fail(name, "reading symlink", e))
    }

    /// Creates a FIFO or device node.
    pub fn mknod(&self, name: &str, kind: FileType, mode: u32, dev: u64) -> Result<(), FsError> {
        check_name(name, &self.rel)?;
        rustix::fs::mknodat(self, &*os(name), kind, Mode::from_raw_mode(mode), dev)
            .map_err(|e| self.fail(name, "mknod", e))
    }

    /// Sets the owner of `name` itself (a symlink is not followed).
    pub fn chown(&self, name: &str, uid: u32, gid: u32) -> Result<(), FsError> {
        rustix::fs::chownat(
            self,
            &*os(name),
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.fail(name, "chown", e))
    }

    /// Sets the mode of `name`; a symlink has none and is left alone.
    pub fn chmod(&self, name: &str, mode: u32) -> Result<(), FsError> {
        if self.kind(name)? == Some(FileType::Symlink) {
            return Ok(());
        }
        // checked above on the same directory and name: not a symlink
        rustix::fs::chmodat(
            self,
            &*os(name),
            Mode::from_raw_mode(mode),
            AtFlags::empty(),
        )
        .map_err(|e| self.fail(name, "chmod", e))
    }

    /// Sets the access and modification times of `name` itself.
    pub fn set_mtime(&self, name: &str, secs: i64) -> Result<(), FsError> {
        rustix::fs::utimensat(
            self,
            &*os(name),
            &timestamps(secs),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.fail(name, "setting mtime", e))
    }

    /// Sets an extended attribute on `name` itself.
    pub fn set_xattr(&self, name: &str, key: &str, value: &[u8]) -> Result<(), FsError> {
        rustix::fs::lsetxattr(
            xattr_path(self, name),
            key,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .map_err(|e| self.fail(name, &format!("setting xattr {key}"), e))
    }

    /// The extended attributes of `name` itself, sorted by name; none
    /// where the filesystem has no support for them.
    pub fn xattrs(&self, name: &str) -> Result<Vec<(String, Vec<u8>)>, FsError> {
        super::tree::xattrs_named(&xattr_path(self, name), &format!("/{}", self.rel_of(name)))
    }

    /// Opens the regular file `name` for reading (not following it).
    pub fn open_file(&self, name: &str) -> Result<std::fs::File, FsError> {
        rustix::fs::openat(
            self,
            &*os(name),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(std::fs::File::from)
        .map_err(|e| self.fail(name, "opening", e))
    }

    /// Removes whatever is at `name` (a whole tree for a directory, its
    /// symlinks never followed); nothing there is fine.
    pub fn remove(&self, name: &str) -> Result<(), FsError> {
        check_name(name, &self.rel)?;
        match remove_at(self.as_fd(), &os(name)) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.fail(name, "removing", e)),
        }
    }
}

/// A path naming `name` in `dir` itself for the `l*xattr` calls, which
/// have no `*at` form: the directory through its descriptor's
/// `/proc/self/fd` link (the kernel's own reference to it), then the
/// name, which those calls do not follow.
fn xattr_path(dir: &Dir<'_>, name: &str) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd())).join(&*os(name))
}

fn timestamps(secs: i64) -> Timestamps {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// A name that stands for an entry of a directory: not empty, `.`, `..`
/// and without `/`.
fn check_name(name: &str, dir: &str) -> Result<(), FsError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(FsError::path(
            format!("/{}", crate::lexpath::child(dir, name)),
            "does not name an entry in the root",
        ));
    }
    Ok(())
}

/// The entries of an open directory (not `.` and `..`), with their types
/// (asked of the filesystem where the directory entry does not say).
fn list(fd: OwnedFd) -> rustix::io::Result<Vec<(OsString, FileType)>> {
    let mut dir = rustix::fs::Dir::new(fd)?;
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        let kind = match entry.file_type() {
            FileType::Unknown => {
                let st = rustix::fs::statat(dir.fd()?, &name, AtFlags::SYMLINK_NOFOLLOW)?;
                FileType::from_raw_mode(st.st_mode)
            }
            k => k,
        };
        out.push((name, kind));
    }
    Ok(out)
}

/// Removes `name` in `dir`: a file or link with `unlinkat`, a directory
/// by descriptor, depth first, never following a symlink.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> rustix::io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Err(Errno::ISDIR | Errno::PERM) => {}
        other => return other,
    }
    let sub = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let entries = list(sub.try_clone().map_err(|_| Errno::NOMEM)?)?;
    for (child, kind) in entries {
        if kind == FileType::Directory {
            remove_at(sub.as_fd(), &child)?;
        } else {
            match rustix::fs::unlinkat(&sub, &child, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// `outer/root` with a canary directory beside it.
    fn setup() -> (tempfile::TempDir, Root) {
        let outer = tempfile::tempdir().expect("tempdir");
        fs_err::create_dir(outer.path().join("root")).expect("mkdir");
        fs_err::create_dir(outer.path().join("canary")).expect("mkdir");
        fs_err::write(outer.path().join("canary/secret"), "s").expect("write");
        let root = Root::open(&outer.path().join("root")).expect("open");
        (outer, root)
    }

    fn canary_intact(outer: &Path) {
        let names: Vec<_> = fs_err::read_dir(outer.join("canary"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [OsString::from("secret")]);
        assert_eq!(
            fs_err::read(outer.join("canary/secret")).expect("read"),
            b"s"
        );
    }

    #[test]
    fn no_operation_follows_a_symlink_out() {
        let (outer, root) = setup();
        let canary = outer.path().join("canary");
        symlink(&canary, root.path().join("abs")).expect("symlink");
        symlink("../canary", root.path().join("rel")).expect("symlink");
        for link in ["abs", "rel"] {
            let under = format!("{link}/secret");
            let new = format!("{link}/new");
            assert!(root.create_file(&new, 0o644).is_err());
            assert!(root.create_dir(&new, 0o755).is_err());
            assert!(root.symlink(OsStr::new("x"), &new).is_err());
            assert!(root.open_file(&under).is_err());
            assert!(root.open_file(link).is_err());
            assert!(root.chown(&under, 1, 1).is_err());
            assert!(root.chmod(&under, 0o777).is_err());
            assert!(root.set_mtime(&under, 0).is_err());
            assert!(root.remove(&under).is_err());
            assert!(root.hard_link(&under, "stolen").is_err());
            assert!(root.read_dir(link).is_err());
            assert!(root.set_xattr(&under, "user.x", b"1").is_err());
            // the link itself is acted on, never its target
            root.chmod(link, 0o777)
                .expect("chmod of a symlink is a no-op");
            root.set_mtime(link, 0).expect("mtime of the link itself");
        }
        root.remove("abs").expect("remove the link");
        assert!(root.lstat("abs").expect("lstat").is_none());
        canary_intact(outer.path());
    }

    #[test]
    fn names_that_are_not_entries_are_refused() {
        let (outer, root) = setup();
        fs_err::create_dir(root.path().join("sub")).expect("mkdir");
        for rel in [
            "",
            ".",
            "..",
            "sub/.",
            "sub/..",
            "../canary",
            "sub/../../canary",
            "/..",
        ] {
            assert!(root.remove(rel).is_err(), "{rel:?} was accepted");
            assert!(root.create_dir(rel, 0o755).is_err(), "{rel:?} was accepted");
        }
        assert!(root.path().join("sub").is_dir());
        canary_intact(outer.path());
    }

    #[test]
    fn remove_takes_a_tree_without_following_its_links() {
        let (outer, root) = setup();
        let canary = outer.path().join("canary");
        fs_err::create_dir_all(root.path().join("t/a/b")).expect("mkdir");
        fs_err::write(root.path().join("t/a/b/f"), "x").expect("write");
        symlink(&canary, root.path().join("t/a/link")).expect("symlink");
        root.remove("t").expect("remove");
        assert!(!root.path().join("t").exists());
        canary_intact(outer.path());
    }

    #[test]
    fn in_root_reads_follow_links_inside() {
        let (outer, root) = setup();
        fs_err::write(root.path().join("real"), "inside").expect("write");
        symlink("/real", root.path().join("abs")).expect("symlink");
        symlink(outer.path().join("canary/secret"), root.path().join("host")).expect("symlink");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut root.open_in_root("abs").expect("open"), &mut s)
            .expect("read");
        assert_eq!(s, "inside");
        // the host path resolves inside the root, where it does not exist
        assert!(root.open_in_root("host").is_err());
    }

    #[test]
    fn xattrs_and_times_round_trip() {
        let (_outer, root) = setup();
        drop(root.create_file("f", 0o644).expect("create"));
        root.set_mtime("f", 12345).expect("mtime");
        assert_eq!(
            root.lstat("f").expect("lstat").expect("there").st_mtime,
            12345
        );
        if root.set_xattr("f", "user.smelt", b"v").is_ok() {
            assert_eq!(
                root.xattrs("f").expect("list"),
                [("user.smelt".to_string(), b"v".to_vec())]
            );
        }
    }
}
