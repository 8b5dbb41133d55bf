//! Small operations on a tree that several writers share: `mkdir -p` in a
//! root that reports what it created, setting a time without following
//! symlinks, and removing whatever is at a path of smelt's own.

use super::FsError;
use super::root::Root;
use std::path::Path;

/// Creates the missing directories of `rel` (relative to `root`, already
/// resolved) with `owner` and `mode`; returns those it created, parents
/// first. A non-directory in the way is an error.
pub fn mkdir_all(
    root: &Root,
    rel: &str,
    owner: (u32, u32),
    mode: u32,
) -> Result<Vec<String>, FsError> {
    let mut created = Vec::new();
    let mut cur = String::new();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        cur = crate::lexpath::child(&cur, part);
        match root.kind(&cur)? {
            Some(rustix::fs::FileType::Directory) => continue,
            Some(_) => return Err(FsError::path(format!("/{cur}"), "is not a directory")),
            None => {}
        }
        root.create_dir(&cur, mode)?;
        root.chown(&cur, owner.0, owner.1)?;
        root.chmod(&cur, mode)?;
        created.push(cur.clone());
    }
    Ok(created)
}

/// Removes a file, link or whole directory tree at a path of smelt's own
/// (not inside a root: [`Root::remove`] is for those); a missing path is
/// fine.
pub fn remove_any(path: &Path) -> Result<(), FsError> {
    match path.symlink_metadata() {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => Ok(fs_err::remove_dir_all(path)?),
        Ok(_) => Ok(fs_err::remove_file(path)?),
    }
}

/// Marks `dir` as the top of independent directory hierarchies (`chattr
/// +T`): ext4's Orlov allocator then places each subdirectory made in it
/// in a block group of its own choosing instead of next to `dir`. A build
/// root made in such a directory lands away from the inodes the previous
/// build freed; ext4 without a journal scans past every inode freed in the
/// last minutes before it reuses one, which made unpacking a base 10×
/// slower right after a build was cleaned up. Filesystems without the flag
/// ignore it, so failure is not an error.
pub fn mark_top_dir(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(file) = fs_err::File::open(dir) else {
        return;
    };
    if let Ok(flags) = ioctl_getflags(&file) {
        let _ = ioctl_setflags(&file, flags | IFlags::TOPDIR);
    }
}

/// The xattrs of `path` itself (not a symlink's target), as (name, value)
/// sorted by name; none where the filesystem has no xattr support.
pub fn xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>, FsError> {
    xattrs_named(path, &path.display().to_string())
}

/// [`xattrs`] of `path`, errors naming it `shown` (a root-relative path
/// when `path` goes through a descriptor's `/proc/self/fd` link).
pub(crate) fn xattrs_named(path: &Path, shown: &str) -> Result<Vec<(String, Vec<u8>)>, FsError> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOTSUP.raw_os_error()) => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(FsError::path(shown, format!("listing xattrs: {e}"))),
    };
    let mut found = Vec::new();
    for name in names {
        match xattr::get(path, &name) {
            Ok(Some(value)) => found.push((name.to_string_lossy().into_owned(), value)),
            // removed between the list and the read
            Ok(None) => {}
            Err(e) => return Err(FsError::path(shown, format!("reading xattr: {e}"))),
        }
    }
    found.sort();
    Ok(found)
}
