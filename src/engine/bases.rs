//! Base images kept unpacked between builds, for persistent runners: with
//! `--cache-dir DIR`, a registry base a stage unpacks is unpacked once
//! into `DIR/bases/<chain ID>/rootfs`, and each build's stage root is an
//! overlay mount (`fs/overlay.rs`) of that tree under an empty directory
//! of the build's work directory, instead of a new extraction. The
//! kept tree is never written by a build: every change lands in the upper
//! directory, which goes with the work directory. The same holds for a
//! chain: a base with the layers of the cache hits its stage applies
//! before its first miss is one tree of its own (unpacked afresh from all
//! its layers, never from another kept tree).
//!
//! A tree is named by the chain ID of its layers (OCI's: the first diff
//! ID, then sha256 of `previous + " " + next diff ID`), so two images with
//! the same layers share one. It is used only when whole: it is unpacked
//! into a `.tmp-` directory, a marker (`kept.json`, the diff IDs it holds)
//! is written last, and the directory is renamed into place; a tree
//! without a valid marker is moved aside and made again. Builds sharing
//! `DIR` lock `<chain ID>.lock` shared while a tree is mounted (a prune
//! skips it) and `<chain ID>.make` while one is made (a second build waits
//! for the first instead of unpacking the same base twice). After a new tree is kept, all but the
//! [`KEEP`] most recently used ones that no build holds are removed.
//!
//! Not in place (`/` is the root there) and not without overlay mounts
//! (CAP_SYS_ADMIN, an upper directory's filesystem that overlayfs takes):
//! the caller then extracts as before. What must not happen here: a base
//! half written used as whole, a kept tree written through a stage root.

use super::EngineError;
use crate::image::Digest;
use rustix::fs::FlockOperation::{LockExclusive, LockShared};
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// How many kept trees stay after a new one is made (most recently used
/// first), bases and chains counted alike. Each is a base's full unpacked
/// size. A Dockerfile whose cached steps change makes a new chain each
/// time and its old one goes unused, so the least recently used trees are
/// the ones to go; 8 leaves room for a few projects with a chain or two
/// each (and the base alone) on one runner.
pub const KEEP: usize = 8;

/// The marker that says a kept tree is whole.
const MARKER: &str = "kept.json";

/// The locks of the trees this process has mounted, held until it exits
/// (a prune in another build skips them).
static HELD: Mutex<Vec<fs_err::File>> = Mutex::new(Vec::new());

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Marker {
    /// The image it was unpacked for (information only).
    image: String,
    chain_id: String,
    diff_ids: Vec<String>,
}

/// OCI's chain ID of `diff_ids` (its hex), `None` for no layers.
pub fn chain_id(diff_ids: &[Digest]) -> Option<String> {
    let mut ids = diff_ids.iter();
    let mut chain = ids.next()?.as_str().to_string();
    for id in ids {
        chain = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(format!("{chain} {}", id.as_str())))
        );
    }
    Digest::parse(&chain).ok().map(|d| d.hex().to_string())
}

/// The kept trees of one `--cache-dir`.
#[derive(Debug, Clone)]
pub struct KeptBases {
    /// `DIR/bases`.
    dir: PathBuf,
}

impl KeptBases {
    /// The kept trees of the cache directory `cache_dir` (made when the
    /// first one is kept).
    pub fn new(cache_dir: &Path) -> KeptBases {
        // absolute: the overlay's options name it, whatever the working directory
        let dir = std::path::absolute(cache_dir).unwrap_or_else(|_| cache_dir.to_path_buf());
        KeptBases {
            dir: dir.join("bases"),
        }
    }

    /// Makes `root`, an empty stage root in the work directory `work`,
    /// the tree whose layers have `diff_ids` (a base's, or a base's with
    /// cache hits' after them; `image` names it in the log and the
    /// marker): an overlay of its kept tree,
    /// first unpacked into the cache directory by `extract` (given the
    /// directory to unpack into) when there is no whole one. `Ok(false)`:
    /// no overlay can be mounted here, nothing was done (the caller
    /// extracts into `root`).
    pub fn mount_base(
        &self,
        label: &str,
        image: &str,
        diff_ids: &[Digest],
        root: &Path,
        work: &Path,
        extract: impl FnOnce(&Path) -> Result<(), EngineError>,
    ) -> Result<bool, EngineError> {
        let Some(chain) = chain_id(diff_ids) else {
            return Ok(false);
        };
        if !self.dir.is_dir() {
            fs_err::create_dir_all(&self.dir)?;
            // the trees hold setuid files and secrets of images: root's only
            fs_err::set_permissions(
                &self.dir,
                std::os::unix::fs::PermissionsExt::from_mode(0o700),
            )?;
            crate::fs::tree::mark_top_dir(&self.dir);
        }
        if !crate::fs::overlay::supported(work, &self.dir) {
            return Ok(false);
        }
        // shared while mounted (a prune skips it), taken before the tree is
        // looked at so no prune removes it meanwhile
        let lock = self.lock(&chain, "lock")?;
        flock(&lock, &chain, LockShared)?;
        let tree = self.dir.join(&chain);
        let short = &chain[..12];
        let reusing = || {
            log::info!("[{label}] reusing {image}, kept unpacked in the cache directory ({short})");
        };
        if self.whole(&tree, diff_ids) {
            reusing();
        } else {
            // one build makes it; another waits here, then finds it whole
            let making = self.lock(&chain, "make")?;
            flock(&making, &chain, LockExclusive)?;
            if self.whole(&tree, diff_ids) {
                reusing();
            } else {
                self.make(label, image, &chain, diff_ids, &tree, extract)?;
                self.prune();
            }
        }
        // last used now: what pruning keeps
        let marker = tree.join(MARKER);
        let now = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        if let Err(e) =
            rustix::fs::utimensat(rustix::fs::CWD, &marker, &now, rustix::fs::AtFlags::empty())
        {
            log::debug!("touching {}: {e}", marker.display());
        }
        // beside the root, named after it: the root's removal takes it
        // too (`scheduler::remove_root`)
        let layers = overlay_dir(root);
        fs_err::create_dir(&layers)?;
        let (upper, scratch) = (layers.join("upper"), layers.join("work"));
        fs_err::create_dir(&upper)?;
        fs_err::create_dir(&scratch)?;
        if let Err(e) = crate::fs::overlay::mount(&tree.join("rootfs"), &upper, &scratch, root) {
            // gone, so the caller may try another tree (or extract) here
            if let Err(e) = fs_err::remove_dir_all(&layers) {
                log::warn!("removing {}: {e}", layers.display());
            }
            return Err(e.into());
        }
        log::debug!(
            "[{label}] {} is an overlay of {} (changes in {})",
            root.display(),
            tree.display(),
            upper.display()
        );
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(lock);
        Ok(true)
    }

    /// Whether `tree` is a whole kept tree of `diff_ids` (its marker says
    /// so). A tree without one is partial or damaged.
    fn whole(&self, tree: &Path, diff_ids: &[Digest]) -> bool {
        let Ok(bytes) = fs_err::read(tree.join(MARKER)) else {
            if tree.exists() {
                log::info!(
                    "ignoring the kept base {}: it has no {MARKER} (partial or damaged)",
                    tree.display()
                );
            }
            return false;
        };
        let ok = serde_json::from_slice::<Marker>(&bytes).is_ok_and(|m| {
            m.diff_ids
                .iter()
                .map(String::as_str)
                .eq(diff_ids.iter().map(Digest::as_str))
        }) && tree.join("rootfs").is_dir();
        if !ok {
            log::info!(
                "ignoring the kept base {}: its {MARKER} does not match its layers",
                tree.display()
            );
        }
        ok
    }

    /// Unpacks a new kept tree at `tree` (the chain's lock held
    /// exclusively): into a temporary directory, marker last, renamed
    /// into place; a tree there already (not whole) is moved aside first.
    fn make(
        &self,
        label: &str,
        image: &str,
        chain: &str,
        diff_ids: &[Digest],
        tree: &Path,
        extract: impl FnOnce(&Path) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        if tree.exists() {
            self.discard(tree)?;
        }
        let tmp = tempdir_in(&self.dir, &format!(".tmp-{chain}-"))?;
        let made = (|| {
            let rootfs = tmp.join("rootfs");
            fs_err::create_dir(&rootfs)?;
            fs_err::set_permissions(&rootfs, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            extract(&rootfs)?;
            let marker = Marker {
                image: image.to_string(),
                chain_id: format!("sha256:{chain}"),
                diff_ids: diff_ids.iter().map(|d| d.as_str().to_string()).collect(),
            };
            fs_err::write(
                tmp.join(MARKER),
                serde_json::to_vec_pretty(&marker).map_err(std::io::Error::other)?,
            )?;
            fs_err::rename(&tmp, tree)?;
            Ok::<(), EngineError>(())
        })();
        if let Err(e) = made {
            if let Err(e) = fs_err::remove_dir_all(&tmp) {
                log::warn!("removing {}: {e}", tmp.display());
            }
            return Err(e);
        }
        log::info!(
            "[{label}] kept {image} unpacked in the cache directory for later builds ({})",
            &chain[..12]
        );
        Ok(())
    }

    /// Moves `tree` aside (a rename, so it is gone at once) and removes it.
    fn discard(&self, tree: &Path) -> Result<(), EngineError> {
        let name = tree.file_name().and_then(|n| n.to_str()).unwrap_or("tree");
        let aside = tempdir_in(&self.dir, &format!(".trash-{name}-"))?;
        let to = aside.join("tree");
        fs_err::rename(tree, &to)?;
        fs_err::remove_dir_all(&aside)?;
        Ok(())
    }

    /// Removes all but the [`KEEP`] most recently used kept trees, and
    /// what interrupted builds left (`.tmp-` and `.trash-` directories),
    /// skipping any a build holds. Failures are warnings.
    fn prune(&self) {
        let Ok(entries) = fs_err::read_dir(&self.dir) else {
            return;
        };
        let mut trees = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            if let Some(rest) = name.strip_prefix(".tmp-") {
                // made by a build that still holds the chain, or a dead one
                let chain = rest.split('-').next().unwrap_or_default();
                if self.try_exclusive(chain, "make").is_some() {
                    self.remove(&path);
                }
            } else if name.starts_with(".trash-") {
                self.remove(&path);
            } else if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                let used = fs_err::metadata(path.join(MARKER))
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
                trees.push((used, name, path));
            }
        }
        trees.sort_by_key(|t| std::cmp::Reverse(t.0));
        for (_, chain, path) in trees.into_iter().skip(KEEP) {
            let Some(_lock) = self.try_exclusive(&chain, "lock") else {
                log::debug!("not pruning kept base {chain}: a build uses it");
                continue;
            };
            log::info!("pruning kept base {} (only {KEEP} are kept)", &chain[..12]);
            if let Err(e) = self.discard(&path) {
                log::warn!("pruning {}: {e}", path.display());
            }
        }
    }

    /// The chain's lock file `<chain>.<kind>`: `lock` (shared while a
    /// build mounts the tree) or `make` (exclusive while one makes it).
    fn lock(&self, chain: &str, kind: &str) -> Result<fs_err::File, EngineError> {
        Ok(fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(format!("{chain}.{kind}")))?)
    }

    /// The chain's `kind` lock taken exclusively without waiting, if no
    /// build holds it.
    fn try_exclusive(&self, chain: &str, kind: &str) -> Option<fs_err::File> {
        let lock = self.lock(chain, kind).ok()?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
        Some(lock)
    }

    fn remove(&self, path: &Path) {
        if let Err(e) = fs_err::remove_dir_all(path) {
            log::warn!("removing {}: {e}", path.display());
        }
    }
}

/// Takes `op` on a chain's lock file.
fn flock(
    lock: &fs_err::File,
    chain: &str,
    op: rustix::fs::FlockOperation,
) -> Result<(), EngineError> {
    rustix::fs::flock(lock, op)
        .map_err(|e| EngineError::Invalid(format!("locking kept base {chain}: {e}")))
}

/// A new directory in `dir` whose name starts with `prefix` and ends in a
/// random part (ext4 spreads those; see `scheduler::stage_root`), kept.
/// Where the upper and work directories of `root`'s overlay are: beside
/// it, `ROOT.overlay`.
pub fn overlay_dir(root: &Path) -> PathBuf {
    let mut name = root.as_os_str().to_owned();
    name.push(".overlay");
    PathBuf::from(name)
}

fn tempdir_in(dir: &Path, prefix: &str) -> Result<PathBuf, EngineError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .map(tempfile::TempDir::keep)
        .map_err(|e| {
            EngineError::Invalid(format!("creating a directory in {}: {e}", dir.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_rule() {
        let a = Digest::sha256(b"a");
        let b = Digest::sha256(b"b");
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(std::slice::from_ref(&a)).as_deref(), Some(a.hex()));
        let ab = Digest::sha256(format!("{a} {b}").as_bytes());
        assert_eq!(chain_id(&[a.clone(), b.clone()]).as_deref(), Some(ab.hex()));
        assert_ne!(chain_id(&[b, a]).as_deref(), Some(ab.hex()));
    }
}
