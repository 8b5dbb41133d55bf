//! Overlay mounts: a build root made of a read-only tree (a kept base,
//! `engine/bases.rs`) below and an empty directory of the build's above,
//! so nothing the build does (a write through a hard link, chmod, chown,
//! rm, a whiteout) ever reaches the tree below: the kernel copies a file
//! up before changing it. Mounted with `index=on`, so a file with several
//! names is copied up once and a write through one name shows through the
//! others, as on a plain filesystem; `redirect_dir=nofollow` and
//! `metacopy=off`, so nothing the lower tree's xattrs say sends a lookup
//! elsewhere.
//!
//! It must not be used for `/` (in place): there the base is extracted.
//! Every mount made here is remembered per process until it is undone;
//! [`unmount_beneath`] undoes every mount under a directory (the work
//! directory, before it is removed, and the signal clean-up).

use super::FsError;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The overlay mount options for a lower, upper and work directory.
/// `None` when a path holds a character the option syntax cannot carry
/// (`,` `:` `\` or a newline) or is not UTF-8.
fn options(lower: &Path, upper: &Path, work: &Path) -> Option<String> {
    let plain = |p: &Path| {
        p.to_str()
            .filter(|s| !s.contains([',', ':', '\\', '\n']))
            .map(str::to_string)
    };
    Some(format!(
        "lowerdir={},upperdir={},workdir={},index=on,redirect_dir=nofollow,metacopy=off",
        plain(lower)?,
        plain(upper)?,
        plain(work)?
    ))
}

/// The targets this process mounted and has not unmounted yet.
static MOUNTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Mounts an overlay of `lower` (read-only, never written) under `upper`
/// and `work` (empty directories on one filesystem) at `target` (an
/// empty directory). The upper directory takes the lower root's mode,
/// owner and times first: the merged root shows the upper one's.
pub fn mount(lower: &Path, upper: &Path, work: &Path, target: &Path) -> Result<(), FsError> {
    use rustix::mount::MountFlags;
    let data = options(lower, upper, work).ok_or_else(|| {
        FsError::path(
            target.display(),
            "an overlay cannot name these directories (`,`, `:` or `\\` in a path)",
        )
    })?;
    let st = rustix::fs::stat(lower).map_err(|e| FsError::path(lower.display(), e))?;
    rustix::fs::chown(
        upper,
        Some(rustix::fs::Uid::from_raw(st.st_uid)),
        Some(rustix::fs::Gid::from_raw(st.st_gid)),
    )
    .map_err(|e| FsError::path(upper.display(), e))?;
    rustix::fs::chmod(upper, rustix::fs::Mode::from_raw_mode(st.st_mode & 0o7777))
        .map_err(|e| FsError::path(upper.display(), e))?;
    let ts = |sec: i64, nsec: u64| rustix::fs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(st.st_atime, st.st_atime_nsec as u64),
        last_modification: ts(st.st_mtime, st.st_mtime_nsec as u64),
    };
    rustix::fs::utimensat(rustix::fs::CWD, upper, &times, rustix::fs::AtFlags::empty())
        .map_err(|e| FsError::path(upper.display(), e))?;
    let data = std::ffi::CString::new(data)
        .map_err(|_| FsError::path(target.display(), "a NUL in the overlay's options"))?;
    let mut mounted = MOUNTED.lock().unwrap_or_else(PoisonError::into_inner);
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::NODEV | MountFlags::NOSUID,
        Some(data.as_c_str()),
    )
    .map_err(|e| FsError::path(target.display(), format!("mounting an overlay: {e}")))?;
    mounted.push(target.to_path_buf());
    Ok(())
}

/// Detaches the overlay at `target` if this process mounted one there.
pub fn unmount(target: &Path) -> Result<(), FsError> {
    let mut mounted = MOUNTED.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(i) = mounted.iter().position(|t| t == target) else {
        return Ok(());
    };
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
        .map_err(|e| FsError::path(target.display(), format!("unmounting: {e}")))?;
    mounted.remove(i);
    Ok(())
}

/// Detaches every mount at or under `dir` (deepest first), whoever made
/// it: what a build mounted there must go before the directory is
/// removed (a removal would otherwise write whiteouts through it, then
/// fail on the mount point). Failures are warnings.
pub fn unmount_beneath(dir: &Path) {
    let Ok(points) = super::ignore::mount_points() else {
        return;
    };
    let mut under: Vec<PathBuf> = points
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    under.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    under.dedup();
    let mut mounted = MOUNTED.lock().unwrap_or_else(PoisonError::into_inner);
    for p in under {
        match rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH) {
            Ok(()) => mounted.retain(|t| *t != p),
            Err(e) => log::warn!("unmounting {}: {e}", p.display()),
        }
    }
}

/// Whether an overlay can be mounted with its upper side in `work` (a
/// build's directory) and its lower one in `lower_dir`. Tried once per
/// process (a probe mount of two empty directories); the answer is kept.
pub fn supported(work: &Path, lower_dir: &Path) -> bool {
    static ANSWER: OnceLock<bool> = OnceLock::new();
    *ANSWER.get_or_init(|| match try_mount(work, lower_dir) {
        Ok(()) => true,
        Err(e) => {
            log::info!("overlay mounts are not available ({e}): bases are extracted");
            false
        }
    })
}

fn try_mount(work: &Path, lower_dir: &Path) -> Result<(), FsError> {
    let temp = |dir: &Path| {
        tempfile::Builder::new()
            .prefix(".overlay-probe-")
            .tempdir_in(dir)
            .map_err(|e| FsError::path(dir.display(), e))
    };
    let lower = temp(lower_dir)?;
    let probe = temp(work)?;
    let dirs = ["upper", "work", "merged"].map(|d| probe.path().join(d));
    for d in &dirs {
        fs_err::create_dir(d)?;
    }
    mount(lower.path(), &dirs[0], &dirs[1], &dirs[2])?;
    unmount(&dirs[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_refuse_what_they_cannot_carry() {
        let p = Path::new;
        assert_eq!(
            options(p("/a"), p("/b"), p("/c")).as_deref(),
            Some("lowerdir=/a,upperdir=/b,workdir=/c,index=on,redirect_dir=nofollow,metacopy=off")
        );
        assert_eq!(options(p("/a,b"), p("/b"), p("/c")), None);
        assert_eq!(options(p("/a"), p("/b:x"), p("/c")), None);
        assert_eq!(options(p("/a"), p("/b"), p("/c\\d")), None);
    }
}
