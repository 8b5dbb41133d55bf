//! `RUN --mount=type=cache` through the cache repository (`--cache`): an
//! ephemeral runner gets back the package-manager and compiler caches an
//! earlier build filled.
//!
//! - **Restore**: when a RUN needs a cache mount whose directory this
//!   runner does not have, `engine/mounts.rs` makes it and asks
//!   [`SharedMounts::restore`] to fill it: the tag of that mount (its id,
//!   `from`, `source`, owner, mode and the build's platform) is looked up
//!   in the cache repository within the cache's time budget
//!   (`Cache::waiting`), its one layer downloaded (digest checked) and
//!   unpacked by the layer extractor (nothing lands outside the directory,
//!   the diff ID is checked). A registry that fails turns the cache off as
//!   a failed lookup does; any failure is a warning and the cache starts
//!   as new.
//! - **Save**: every cache directory a RUN holds is noted with a
//!   fingerprint of its tree (blake3 over each path's name, type, mode,
//!   owner, size, mtime and link target) taken the first time this build
//!   holds it (after a restore). When the stages are done
//!   ([`MountSync::start_saving`]) a thread walks each one again; one
//!   whose fingerprint changed, and that is no larger than
//!   `--cache-mount-max-size`, is written as a layer of the whole tree
//!   into the build's store, under a shared lock on its directory. When
//!   the build ends ([`MountSync::finish_saving`], before it waits for the
//!   cache uploads) each is pushed as an image of its own, tagged by the
//!   mount, through the same uploads as cache entries: blobs first, the
//!   manifest last, so a reader only ever finds a whole one, and the
//!   newest complete save of a mount wins.
//!
//! A cache mount's contents never reach the image: the directory is
//! mounted over the target, which the snapshot then finds empty.

use super::Cache;
use super::key::LABEL;
use crate::engine::mounts::{CacheMountInfo, SharedCaches};
use crate::engine::remote::{ImageLayers, Remote, extract_layer};
use crate::engine::{EngineError, Platform};
use crate::fs::{ChangeSet, Compression, LayerOptions, MtimePolicy, write_layer};
use crate::image::config::RootFs;
use crate::image::manifest::{OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::image::{
    BlobStore, BuiltImage, Descriptor, Digest, History, ImageConfig, Manifest, MediaTypes,
};
use crate::lexpath;
use crate::registry::{PushImage, RegistryError};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The annotation naming a saved cache mount's id (what marks the image
/// as one).
fn mount_annotation() -> String {
    format!("{LABEL}mount")
}

/// The cache mounts of one build, as they go to and from the cache
/// repository.
#[derive(Debug)]
pub struct MountSync<'a> {
    remote: &'a Remote,
    store: BlobStore,
    platform: Platform,
    compression: Compression,
    /// `--cache-mount-max-size`: larger trees are not saved; 0: none is.
    max_size: u64,
    /// The cache directories this build held, with what they were when
    /// it first held them.
    used: Mutex<BTreeMap<PathBuf, Used>>,
    /// The thread writing the layers of the mounts that changed.
    saving: Mutex<Option<std::thread::JoinHandle<Vec<Save>>>>,
}

#[derive(Debug)]
struct Used {
    info: CacheMountInfo,
    /// The tree's fingerprint when first held (`None`: it could not be
    /// walked, so it is saved if it can be now).
    before: Option<[u8; 32]>,
}

/// A cache mount's layer, written and ready to push.
#[derive(Debug)]
struct Save {
    id: String,
    tag: String,
    size: u64,
    image: PushImage,
}

/// A walked tree: its fingerprint, the bytes of its files, its paths.
#[derive(Debug)]
struct Tree {
    fingerprint: [u8; 32],
    size: u64,
    paths: Vec<String>,
}

impl<'a> MountSync<'a> {
    pub fn new(
        remote: &'a Remote,
        store: BlobStore,
        platform: Platform,
        compression: Compression,
        max_size: u64,
    ) -> MountSync<'a> {
        MountSync {
            remote,
            store,
            platform,
            compression,
            max_size,
            used: Mutex::new(BTreeMap::new()),
            saving: Mutex::new(None),
        }
    }

    /// Starts writing the layers of the cache mounts that changed, on a
    /// thread of its own (the build goes on to its outputs and push).
    pub fn start_saving(&self, cache: &Cache) {
        let used = std::mem::take(
            &mut *self
                .used
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if used.is_empty()
            || !cache.opts.push
            || !cache.usable()
            || crate::engine::interrupt::signal().is_some()
        {
            return;
        }
        if self.max_size == 0 {
            log::debug!("--cache-mount-max-size=0: no cache mount is saved");
            return;
        }
        let jobs: Vec<(PathBuf, Used, String)> = used
            .into_iter()
            .map(|(dir, u)| {
                let tag = mount_tag(&u.info, &self.platform);
                (dir, u, tag)
            })
            .collect();
        let store = self.store.clone();
        let platform = self.platform.clone();
        let (compression, max_size) = (self.compression, self.max_size);
        let spawned = std::thread::Builder::new()
            .name("smelt-cache-mounts".to_string())
            .spawn(move || {
                jobs.into_iter()
                    .filter_map(|(dir, used, tag)| {
                        let job = SaveJob {
                            dir: &dir,
                            used: &used,
                            tag,
                            store: &store,
                            platform: &platform,
                            compression,
                            max_size,
                        };
                        match job.write() {
                            Ok(save) => save,
                            Err(e) => {
                                log::warn!(
                                    "cache mount {}: not saved (the build goes on): {e}",
                                    used.info.id
                                );
                                None
                            }
                        }
                    })
                    .collect()
            });
        match spawned {
            Ok(handle) => {
                *self
                    .saving
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(handle);
            }
            Err(e) => log::warn!("cache mounts not saved: starting a thread: {e}"),
        }
    }

    /// Waits for the layers `start_saving` writes and starts pushing each
    /// as an image of its own (the build then waits for them with the
    /// cache entries' uploads).
    pub fn finish_saving(&self, cache: &Cache) {
        let handle = self
            .saving
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(handle) = handle else {
            return;
        };
        if crate::engine::interrupt::signal().is_some() {
            // the build is stopping: neither wait for the layers nor push
            return;
        }
        let Ok(saves) = handle.join() else {
            log::warn!("cache mounts not saved: the thread writing them panicked");
            return;
        };
        for save in saves {
            if !cache.usable() {
                return;
            }
            log::info!(
                "saving cache mount {} ({}) to {}:{}",
                save.id,
                human(save.size),
                cache.repo,
                save.tag
            );
            if let Err(e) = cache.upload(self.remote, &[save.tag], save.image, &self.store) {
                log::warn!(
                    "cache mount {}: not saved (the build goes on): {e}",
                    save.id
                );
            }
        }
    }

    /// The saved contents of `info`, unpacked into `dir`: whether there
    /// were any.
    fn restore(&self, cache: &Cache, info: &CacheMountInfo, dir: &Path) -> Result<bool, String> {
        if !cache.usable() {
            return Ok(false);
        }
        let tag = mount_tag(info, &self.platform);
        let r = cache.source(&tag);
        let tags = [tag];
        let looked = cache.waiting(|left| cache.manifests(self.remote, &tags, left));
        let bytes = match looked {
            None => return Ok(false),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(mut answers)) => match answers.pop() {
                Some(Ok(Some(bytes))) => bytes,
                Some(Ok(None)) | None => {
                    log::debug!("cache mount {}: nothing saved at {r}", info.id);
                    return Ok(false);
                }
                Some(Err(e)) => {
                    // as a failed lookup: the registry will not do better
                    cache.give_up(&e.to_string());
                    return Err(e.to_string());
                }
            },
        };
        let (layer, diff_id) = parse_saved(&r, info, &bytes).map_err(|e| e.to_string())?;
        let had = self.store.path(&layer.digest).exists();
        let fetched =
            cache.waiting(|left| cache.fetch_layer(self.remote, &layer, &r, &self.store, left));
        match fetched {
            None => return Ok(false),
            Some(Err(e)) => return Err(e.to_string()),
            Some(Ok(Err(e))) => {
                if matches!(e, RegistryError::TimedOut { .. }) {
                    cache.give_up(&e.to_string());
                }
                return Err(e.to_string());
            }
            Some(Ok(Ok(()))) => {}
        }
        let name = format!("cache mount {} ({r})", info.id);
        let image = ImageLayers {
            image: &name,
            layers: std::slice::from_ref(&layer),
            diff_ids: std::slice::from_ref(&diff_id),
        };
        let unpacked = extract_layer(image, 0, &self.store, dir, None);
        if !had {
            // only this restore wanted it; the work directory would keep
            // it until the build ends
            let _ = fs_err::remove_file(self.store.path(&layer.digest));
        }
        unpacked.map_err(|e| e.to_string())?;
        log::info!(
            "restored cache mount {} from {r} ({})",
            info.id,
            human(layer.size)
        );
        Ok(true)
    }

    /// Notes that a RUN holds `dir`, with its tree as it is now when this
    /// build had not held it yet.
    fn used(&self, info: &CacheMountInfo, dir: &Path) {
        if self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(dir)
        {
            return;
        }
        let before = match walk(dir) {
            Ok(tree) => Some(tree.fingerprint),
            Err(e) => {
                log::debug!("cache mount {}: {}: {e}", info.id, dir.display());
                None
            }
        };
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(dir.to_path_buf())
            .or_insert(Used {
                info: info.clone(),
                before,
            });
    }
}

/// What `engine/mounts.rs` calls, for one build: its cache mounts and its
/// layer cache.
#[derive(Debug)]
pub struct SharedMounts<'s> {
    sync: &'s MountSync<'s>,
    cache: &'s Cache,
}

impl<'s> SharedMounts<'s> {
    /// The build's, when it has a layer cache.
    pub fn of(env: &'s crate::engine::stage::BuildEnv<'s>) -> Option<SharedMounts<'s>> {
        Some(SharedMounts {
            sync: env.mount_sync.as_ref()?,
            cache: env.cache.as_ref()?,
        })
    }
}

impl SharedCaches for SharedMounts<'_> {
    fn restore(&self, cache: &CacheMountInfo, dir: &Path) -> Result<bool, String> {
        self.sync.restore(self.cache, cache, dir)
    }

    fn used(&self, cache: &CacheMountInfo, dir: &Path) {
        // nothing will be saved: no walk
        if self.cache.opts.push && self.sync.max_size > 0 {
            self.sync.used(cache, dir);
        }
    }
}

/// Writing one cache mount's layer.
struct SaveJob<'j> {
    dir: &'j Path,
    used: &'j Used,
    tag: String,
    store: &'j BlobStore,
    platform: &'j Platform,
    compression: Compression,
    max_size: u64,
}

impl SaveJob<'_> {
    /// The layer and image of the mount when it changed and fits;
    /// `None` when it is not to be saved.
    fn write(self) -> Result<Option<Save>, EngineError> {
        let id = &self.used.info.id;
        // no `locked` or `private` user (of another build) writes while
        // the tree is read; one that holds it now: not saved this time
        let lock = fs_err::File::open(&self.used.info.lock)?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                log::info!("cache mount {id}: not saved, another build holds it");
                return Ok(None);
            }
            Err(e) => {
                return Err(EngineError::Invalid(format!(
                    "{}: {e}",
                    self.used.info.lock.display()
                )));
            }
        }
        let started = std::time::Instant::now();
        let tree = walk(self.dir)
            .map_err(|e| EngineError::Invalid(format!("{}: {e}", self.dir.display())))?;
        log::debug!(
            "cache mount {id}: {} paths walked in {:.3} s",
            tree.paths.len(),
            started.elapsed().as_secs_f64()
        );
        if self.used.before == Some(tree.fingerprint) {
            log::debug!("cache mount {id}: unchanged, not saved");
            return Ok(None);
        }
        if tree.size > self.max_size {
            log::warn!(
                "cache mount {id} holds {} ({} bytes), more than --cache-mount-max-size {} ({} bytes): not saved",
                human(tree.size),
                tree.size,
                human(self.max_size),
                self.max_size
            );
            return Ok(None);
        }
        let mut changes = ChangeSet::default();
        changes.changed.extend(tree.paths);
        let blob = write_layer(
            self.dir,
            &changes,
            self.store,
            LayerOptions {
                compression: self.compression,
                mtime: MtimePolicy::Keep,
            },
        )?;
        drop(lock);
        log::debug!(
            "cache mount {id}: layer of {} bytes written in {:.3} s",
            blob.size,
            started.elapsed().as_secs_f64()
        );
        let media_type = if blob.compression.is_zstd() {
            OCI_LAYER_ZSTD
        } else {
            OCI_LAYER_GZIP
        };
        let layer = Descriptor::new(media_type, blob.digest, blob.size);
        let image = mount_image(
            self.store,
            self.platform,
            &self.used.info,
            (layer, blob.diff_id),
            (tree.size, &tree.fingerprint),
        )?;
        Ok(Some(Save {
            id: id.clone(),
            tag: self.tag,
            size: tree.size,
            image,
        }))
    }
}

/// The image a cache mount is saved as: its one layer, a config that says
/// what it is (so skopeo and other tools read it as an image), and
/// manifest annotations that say what it is and when it was made.
fn mount_image(
    store: &BlobStore,
    platform: &Platform,
    info: &CacheMountInfo,
    (layer, diff_id): (Descriptor, Digest),
    (size, fingerprint): (u64, &[u8; 32]),
) -> Result<PushImage, EngineError> {
    let stored = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
        .map_err(|e| EngineError::Invalid(e.to_string()))?
        .to_string();
    let mut annotations = BTreeMap::from([
        (mount_annotation(), info.id.clone()),
        (format!("{LABEL}mount-platform"), platform.to_string()),
        (
            format!("{LABEL}mount-owner"),
            format!("{}:{}", info.uid, info.gid),
        ),
        (format!("{LABEL}mount-mode"), format!("{:o}", info.mode)),
        (format!("{LABEL}mount-size"), size.to_string()),
        (
            format!("{LABEL}mount-fingerprint"),
            hex::encode(fingerprint),
        ),
        (format!("{LABEL}stored"), stored.clone()),
        (format!("{LABEL}diff-id"), diff_id.to_string()),
        (
            "org.opencontainers.image.created".to_string(),
            stored.clone(),
        ),
        (
            "org.opencontainers.image.description".to_string(),
            format!(
                "the contents of RUN --mount=type=cache,id={} for {platform}, saved by smelt",
                info.id
            ),
        ),
    ]);
    for (k, v) in [("from", &info.from), ("source", &info.source)] {
        if let Some(v) = v {
            annotations.insert(format!("{LABEL}mount-{k}"), v.clone());
        }
    }
    let mut config = ImageConfig {
        created: Some(stored.clone()),
        architecture: platform.arch.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        rootfs: RootFs {
            diff_ids: vec![diff_id],
            ..RootFs::default()
        },
        history: vec![History {
            created: Some(stored),
            created_by: Some(format!("smelt: RUN --mount=type=cache,id={}", info.id)),
            comment: Some("a cache mount's contents".to_string()),
            ..History::default()
        }],
        ..ImageConfig::default()
    };
    config.config.labels = Some(BTreeMap::from([(mount_annotation(), info.id.clone())]));
    let image = BuiltImage::assemble(
        store,
        &config,
        vec![layer],
        MediaTypes::Oci,
        Some(annotations),
    )?;
    // the layer was written by this build: nowhere else holds it
    Ok(PushImage::of(&image, |_| None))
}

/// A saved mount's layer and diff ID, from its manifest; refused unless
/// it is the image `mount_image` makes, for this mount.
fn parse_saved(
    r: &impl std::fmt::Display,
    info: &CacheMountInfo,
    bytes: &[u8],
) -> Result<(Descriptor, Digest), RegistryError> {
    let bad = |message: String| RegistryError::Invalid {
        what: r.to_string(),
        message,
    };
    let manifest: Manifest = serde_json::from_slice(bytes).map_err(|e| {
        bad(format!(
            "the saved cache mount's manifest is malformed: {e}"
        ))
    })?;
    let annotations = manifest.annotations.unwrap_or_default();
    if annotations.get(&mount_annotation()) != Some(&info.id) {
        return Err(bad(format!(
            "not a saved cache mount of id {:?} (not made by smelt?)",
            info.id
        )));
    }
    let diff_id = annotations
        .get(&format!("{LABEL}diff-id"))
        .ok_or_else(|| bad("the saved cache mount has no diff ID".to_string()))
        .and_then(|d| Digest::parse(d).map_err(|e| bad(e.to_string())))?;
    let [layer] = manifest.layers.as_slice() else {
        return Err(bad(format!(
            "a saved cache mount has one layer, not {}",
            manifest.layers.len()
        )));
    };
    if ![OCI_LAYER_GZIP, OCI_LAYER_ZSTD, OCI_LAYER_TAR].contains(&layer.media_type.as_str()) {
        return Err(bad(format!(
            "layer {} has media type {:?}",
            layer.digest, layer.media_type
        )));
    }
    Ok((
        Descriptor::new(&layer.media_type, layer.digest.clone(), layer.size),
        diff_id,
    ))
}

/// The tag a cache mount is saved under: `mount-`, its id made fit for a
/// tag (other characters become `-`, at most 48 kept), the platform, and
/// a hash of everything that makes it a cache of its own (id, `from`,
/// `source`, owner, mode, platform), so ids that read alike never share
/// one.
fn mount_tag(info: &CacheMountInfo, platform: &Platform) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let owner = format!("{}:{}:{:o}", info.uid, info.gid, info.mode);
    let platform_text = platform.to_string();
    for part in [
        info.id.as_str(),
        info.from.as_deref().unwrap_or(""),
        info.source.as_deref().unwrap_or(""),
        owner.as_str(),
        platform_text.as_str(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let hash = hex::encode(h.finalize());
    let readable = |s: &str, max: usize| -> String {
        let mut out = String::new();
        for c in s.chars() {
            let c = if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '-'
            };
            if c == '-' && out.ends_with('-') {
                continue;
            }
            out.push(c);
        }
        let out: String = out.trim_matches(['-', '.']).chars().take(max).collect();
        out.trim_end_matches(['-', '.']).to_string()
    };
    let id = match readable(&info.id, 48) {
        s if s.is_empty() => "cache".to_string(),
        s => s,
    };
    format!(
        "mount-{id}-{}-{}",
        readable(&platform_text, 32),
        &hash[..16]
    )
}

/// Walks `dir` (never following a link): the fingerprint of its tree,
/// the bytes its files hold, and its paths. Directories are read in name
/// order, so the same tree gives the same fingerprint.
fn walk(dir: &Path) -> std::io::Result<Tree> {
    let mut h = blake3::Hasher::new();
    let mut paths = Vec::new();
    let mut size = 0u64;
    let mut pending = vec![String::new()];
    while let Some(rel) = pending.pop() {
        let here = if rel.is_empty() {
            dir.to_path_buf()
        } else {
            dir.join(lexpath::to_os(&rel))
        };
        let mut entries = fs_err::read_dir(&here)?.collect::<Result<Vec<_>, _>>()?;
        entries.sort_by_key(fs_err::DirEntry::file_name);
        for e in entries {
            let child = lexpath::child(&rel, &lexpath::from_os(&e.file_name()));
            // the entry's own metadata: a link is not followed
            let m = fs_err::symlink_metadata(e.path())?;
            h.update(&(child.len() as u64).to_le_bytes());
            h.update(child.as_bytes());
            for n in [
                u64::from(m.mode()),
                u64::from(m.uid()),
                u64::from(m.gid()),
                m.size(),
                m.mtime() as u64,
                m.mtime_nsec() as u64,
            ] {
                h.update(&n.to_le_bytes());
            }
            if m.file_type().is_symlink() {
                let target = fs_err::read_link(e.path())?;
                h.update(target.as_os_str().as_encoded_bytes());
            }
            if m.is_file() {
                size = size.saturating_add(m.size());
            }
            if m.is_dir() {
                pending.push(child.clone());
            }
            paths.push(child);
        }
    }
    Ok(Tree {
        fingerprint: *h.finalize().as_bytes(),
        size,
        paths,
    })
}

/// A size as people read it (`1.5 GiB`).
fn human(bytes: u64) -> String {
    let mut value = bytes as f64;
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if value < 1024.0 {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{value:.1} {unit}")
            };
        }
        value /= 1024.0;
    }
    format!("{value:.1} TiB")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::registry::Reference;

    fn info(id: &str) -> CacheMountInfo {
        CacheMountInfo {
            id: id.to_string(),
            from: None,
            source: None,
            uid: 0,
            gid: 0,
            mode: 0o755,
            lock: PathBuf::from("/nonexistent.lock"),
        }
    }

    #[test]
    fn tags_fit_the_grammar_and_tell_mounts_apart() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let arm = Platform::parse("linux/arm/v7").unwrap();
        let tag = mount_tag(&info("/root/.cache/go-build"), &amd64);
        assert!(
            tag.starts_with("mount-root-.cache-go-build-linux-amd64-"),
            "{tag}"
        );
        let grammar = |t: &str| {
            t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        };
        let long = "x/".repeat(300);
        let mut tags = std::collections::BTreeSet::new();
        for (i, p) in [
            (info("/c"), &amd64),
            (info("/c"), &arm),
            (info("c"), &amd64),
            (info("//c//"), &amd64),
            (info(""), &amd64),
            (info("ünïcode/../.."), &amd64),
            (info(&long), &amd64),
            (
                CacheMountInfo {
                    uid: 1000,
                    ..info("/c")
                },
                &amd64,
            ),
            (
                CacheMountInfo {
                    from: Some("stage".to_string()),
                    ..info("/c")
                },
                &amd64,
            ),
        ] {
            let t = mount_tag(&i, p);
            assert!(grammar(&t), "{t}");
            assert!(tags.insert(t.clone()), "{t} twice");
        }
        assert_eq!(
            mount_tag(&info("/c"), &amd64),
            mount_tag(&info("/c"), &amd64)
        );
    }

    #[test]
    fn fingerprints_follow_names_content_sizes_and_times() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs_err::create_dir_all(d.join("a/b")).unwrap();
        fs_err::write(d.join("a/b/f"), "one").unwrap();
        std::os::unix::fs::symlink("a/b/f", d.join("link")).unwrap();
        let first = walk(d).unwrap();
        assert_eq!(first.size, 3);
        assert_eq!(first.paths.len(), 4, "{:?}", first.paths);
        assert_eq!(walk(d).unwrap().fingerprint, first.fingerprint);
        fs_err::write(d.join("a/b/f"), "two!").unwrap();
        let second = walk(d).unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        filetime::set_file_mtime(d.join("a/b/f"), filetime::FileTime::from_unix_time(5, 0))
            .unwrap();
        let third = walk(d).unwrap();
        assert_ne!(third.fingerprint, second.fingerprint);
        fs_err::remove_file(d.join("link")).unwrap();
        std::os::unix::fs::symlink("elsewhere", d.join("link")).unwrap();
        assert_ne!(walk(d).unwrap().fingerprint, third.fingerprint);
    }

    #[test]
    fn a_saved_mount_reads_back_and_nothing_else_does() {
        let t = tempfile::tempdir().unwrap();
        let store = BlobStore::open(t.path()).unwrap();
        let platform = Platform::parse("linux/amd64").unwrap();
        let layer = Descriptor::new(OCI_LAYER_GZIP, store.put(b"layer").unwrap(), 5);
        let diff_id = Digest::parse(&format!("sha256:{}", "cd".repeat(32))).unwrap();
        let i = info("/c");
        let image = mount_image(
            &store,
            &platform,
            &i,
            (layer.clone(), diff_id.clone()),
            (3, &[7; 32]),
        )
        .unwrap();
        let r = Reference::parse("127.0.0.1:5000/cache:mount-c").unwrap();
        assert_eq!(
            parse_saved(&r, &i, &image.manifest_bytes).unwrap(),
            (layer, diff_id)
        );
        // another id's, and what is no saved mount, are refused naming the tag
        let e = parse_saved(&r, &info("/d"), &image.manifest_bytes).unwrap_err();
        assert!(e.to_string().contains("mount-c"), "{e}");
        assert!(parse_saved(&r, &i, b"{}").is_err());
    }
}
