//! The layer cache (kaniko's `--cache`): a key per step, one small image
//! per key in the cache repository, tagged by the key; the repository is
//! a registry's, or an OCI layout on disk (`--cache-repo oci:DIR`,
//! `layout.rs`), the one choice `CacheRepo` makes.
//!
//! A step's key is sha256 over length-prefixed fields: the previous key
//! (the first builds on the base image's manifest digest), the instruction
//! after expansion, the build args and env it can see, the platform, the
//! USER/WORKDIR/SHELL it runs with, and for COPY/ADD a digest of the source
//! files: their names, type, mode, owner (a stage's; the context's become
//! root's), size, link target and content (blake3, computed in parallel and
//! reused between the steps of a build). Modification times are left out,
//! so a fresh checkout of the same files hits.
//!
//! An entry is an image with the step's one layer (none when the step
//! changed no file) whose manifest annotations carry what a lookup needs:
//! the layer's diff ID, the step's history entry, when it was stored (for
//! `--cache-ttl`) and the inputs of its key (to explain a later miss).
//!
//! The files: `key.rs` computes every step's key (`step_keys`, the one
//! place a cache key is worked out), `sources.rs` digests what a COPY/ADD
//! reads, `entry.rs` makes and reads entries, `lookup.rs` uses the cache
//! during a stage (lookups, explanations, hit layers, storing results),
//! and this file holds the cache of one build; `remote.rs` only moves the
//! bytes to and from a registry, `layout.rs` to and from a layout.

mod entry;
mod key;
mod layout;
mod lookup;
mod mounts;
pub mod prune;
mod sources;

pub use layout::LayoutCache;

pub use entry::{CacheEntry, parse_entry};
pub use mounts::{MountSync, SharedMounts};

/// Why the cache could not give a key or a hit's layer (the step then has
/// no key, or runs as a miss).
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A COPY/ADD's words, as the step itself will report them.
    #[error(transparent)]
    Words(#[from] crate::dockerfile::ShellError),
    /// A COPY/ADD's `--from`, as the step itself will report it.
    #[error(transparent)]
    CopyFrom(#[from] crate::engine::copy_sources::CopySourceError),
    /// A COPY/ADD's `--exclude`, as the step itself will report it.
    #[error(transparent)]
    Exclude(#[from] crate::dockerfile::ignore::IgnoreError),
    /// A COPY/ADD's sources, as the step itself will report them.
    #[error(transparent)]
    Sources(#[from] crate::engine::context::SourceTreeError),
    /// An ADD's URL, as the step itself will report it.
    #[error(transparent)]
    Download(#[from] crate::engine::download::RemoteError),
    /// An ADD's git repository, as the step itself will report it.
    #[error(transparent)]
    Git(#[from] crate::engine::add_git::GitAddError),
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the layer cache is off")]
    Off,
    #[error("the layer cache's time (--cache-timeout) ran out")]
    OutOfTime,
    /// Reading a source (fs_err's message names the path).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Reading a source's xattrs (the message names the path).
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Engine(Box<EngineError>),
    /// A RUN's `--mount` values, as the step itself will report them.
    #[error(transparent)]
    Mount(#[from] crate::engine::mounts::MountError),
}
pub use key::{KeyHasher, KeyInputs, StepView, base_key, step_key, step_keys};
pub use lookup::{fetch_hit, gone_from_cache, look_up, store_in_cache};

use super::EngineError;
use super::options::{CacheOptions, stored_within};
use super::remote::{Remote, TagAnswers};
use crate::image::{BlobStore, Descriptor};
use crate::registry::{PushImage, Reference, RegistryError};
use sources::FileStamp;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Where a build's cache entries live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRepo {
    /// A registry repository (`--cache-repo REPO`, or the destination's
    /// `/cache`).
    Registry(Reference),
    /// An OCI layout on disk (`--cache-repo oci:DIR`).
    Layout(LayoutCache),
}

impl std::fmt::Display for CacheRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheRepo::Registry(r) => write!(f, "{r}"),
            CacheRepo::Layout(l) => write!(f, "oci:{}", l.dir().display()),
        }
    }
}

/// Where one entry was found: a tag of the cache repository, or of the
/// layout (named as skopeo names it, `oci:DIR:TAG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    Registry(Reference),
    Layout(LayoutCache, String),
}

impl std::fmt::Display for EntrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntrySource::Registry(r) => write!(f, "{r}"),
            EntrySource::Layout(l, tag) => write!(f, "oci:{}:{tag}", l.dir().display()),
        }
    }
}

/// The cache of one build.
#[derive(Debug)]
pub struct Cache {
    pub repo: CacheRepo,
    pub opts: CacheOptions,
    /// Off once the cache registry failed to answer or the cache's time
    /// ran out: no more lookups or uploads this build (each would fail the
    /// same way, slowly).
    switch: CacheSwitch,
    /// How long the build has waited on cache traffic (lookups, hit
    /// layers, the uploads at the end), against `--cache-timeout`.
    waited: Mutex<std::time::Duration>,
    /// Content digests of files read for keys, by path; an entry counts
    /// while size, mtime, ctime and inode are unchanged.
    files: Mutex<HashMap<PathBuf, (FileStamp, [u8; 32])>>,
    /// `--cache-report`: a line per cacheable step.
    report: Mutex<Vec<serde_json::Value>>,
}

/// Turns a build's layer cache off, once, with one warning line; shared
/// with the threads that upload entries.
#[derive(Debug, Clone)]
pub struct CacheSwitch {
    repo: String,
    off: Arc<AtomicBool>,
}

impl CacheSwitch {
    pub fn is_on(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    pub fn turn_off(&self, why: &str) {
        if !self.off.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the layer cache at {} is off for the rest of this build: {why}",
                self.repo
            );
        }
    }
}

impl Cache {
    /// The cache `opts` name: `opts.repo` is a registry repository, or
    /// `oci:` and an absolute path (the layout is made when missing).
    pub fn new(opts: CacheOptions) -> Result<Cache, EngineError> {
        let repo = match opts.repo.strip_prefix("oci:") {
            Some(dir) => CacheRepo::Layout(LayoutCache::open(std::path::Path::new(dir))?),
            None => CacheRepo::Registry(Reference::parse(&opts.repo)?),
        };
        Ok(Cache {
            repo: repo.clone(),
            opts,
            switch: CacheSwitch {
                repo: repo.to_string(),
                off: Arc::new(AtomicBool::new(false)),
            },
            waited: Mutex::new(std::time::Duration::ZERO),
            files: Mutex::new(HashMap::new()),
            report: Mutex::new(Vec::new()),
        })
    }

    /// Whether misses are explained (a report, or `--verbosity debug`):
    /// the newest entry after the same previous key is fetched and its
    /// inputs compared.
    pub fn explains(&self) -> bool {
        self.opts.report.is_some() || log::log_enabled!(log::Level::Debug)
    }

    /// Adds a step to the report.
    pub fn record(&self, line: serde_json::Value) {
        if self.opts.report.is_some() {
            self.report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    }

    /// Writes `--cache-report`.
    pub fn write_report(&self) {
        let Some(path) = &self.opts.report else {
            return;
        };
        let steps = std::mem::take(
            &mut *self
                .report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let doc = serde_json::json!({ "cache": self.repo.to_string(), "steps": steps });
        let written = serde_json::to_vec_pretty(&doc)
            .map_err(std::io::Error::other)
            .and_then(|bytes| fs_err::write(path, bytes));
        if let Err(e) = written {
            log::warn!("writing the cache report {}: {e}", path.display());
        }
    }

    /// Whether the cache registry still answers.
    pub fn usable(&self) -> bool {
        self.switch.is_on()
    }

    /// Turns the cache off for the rest of the build.
    pub fn give_up(&self, why: &str) {
        self.switch.turn_off(why);
    }

    /// What turns the cache off, for a cache upload's thread.
    pub fn switch(&self) -> CacheSwitch {
        self.switch.clone()
    }

    /// Runs `op`, a cache operation the build waits for, with what is left
    /// of `--cache-timeout` (`None`, and the cache is turned off, when
    /// nothing is), and counts the time it took.
    pub fn waiting<T>(&self, op: impl FnOnce(std::time::Duration) -> T) -> Option<T> {
        let left = {
            let waited = self
                .waited
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.opts.timeout.saturating_sub(*waited)
        };
        if left.is_zero() {
            self.give_up("the layer cache's time (--cache-timeout) ran out");
            return None;
        }
        let started = std::time::Instant::now();
        let out = op(left);
        *self
            .waited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += started.elapsed();
        Some(out)
    }

    /// Looks `tags` (keys, or `next-` tags) up in the cache repository,
    /// 8 at a time, within `limit` (in a layout, all at once). Each answer:
    /// an entry, `None` (no such tag), or what went wrong (a malformed
    /// entry too). The layers of the entries found in a registry are
    /// remembered as in the cache repository, for the push to mount.
    pub fn lookup(
        &self,
        remote: &Remote,
        tags: &[String],
        limit: std::time::Duration,
    ) -> Result<TagAnswers<CacheEntry>, EngineError> {
        let answers: TagAnswers<CacheEntry> = self
            .manifests(remote, tags, limit)?
            .into_iter()
            .zip(tags)
            .map(|(answer, tag)| {
                let source = self.source(tag);
                answer.and_then(|bytes| bytes.map(|b| parse_entry(&source, &b)).transpose())
            })
            .collect();
        for e in answers.iter().flatten().flatten() {
            if let EntrySource::Registry(r) = &e.source {
                remote.remember(&e.layers, r);
            }
        }
        Ok(answers)
    }

    /// The manifests tagged `tags` in the cache repository, as stored:
    /// 8 at a time within `limit` from a registry, all at once from a
    /// layout.
    pub fn manifests(
        &self,
        remote: &Remote,
        tags: &[String],
        limit: std::time::Duration,
    ) -> Result<TagAnswers<Vec<u8>>, EngineError> {
        Ok(match &self.repo {
            CacheRepo::Registry(repo) => remote.cache_manifests(repo, tags, limit)?,
            CacheRepo::Layout(layout) => layout.manifests(tags),
        })
    }

    /// Where the manifest tagged `tag` is (or would be) in the cache.
    pub fn source(&self, tag: &str) -> EntrySource {
        match &self.repo {
            CacheRepo::Registry(repo) => EntrySource::Registry(Reference {
                tag: Some(tag.to_string()),
                ..repo.clone()
            }),
            CacheRepo::Layout(layout) => EntrySource::Layout(layout.clone(), tag.to_string()),
        }
    }

    /// Whether each of `blobs` (an entry's source and layer) is still in
    /// the cache, within `limit`. A layout's is linked into `store` as it
    /// is checked (as cheap as asking, and the push uploads it from there:
    /// no registry holds it to mount from).
    pub fn blobs_exist(
        &self,
        remote: &Remote,
        blobs: &[(EntrySource, Descriptor)],
        store: &BlobStore,
        limit: std::time::Duration,
    ) -> Result<Vec<Result<bool, RegistryError>>, EngineError> {
        let in_registry: Vec<(Reference, Descriptor)> = blobs
            .iter()
            .filter_map(|(s, d)| match s {
                EntrySource::Registry(r) => Some((r.clone(), d.clone())),
                EntrySource::Layout(..) => None,
            })
            .collect();
        let mut remote_answers = if in_registry.is_empty() {
            Vec::new()
        } else {
            remote.cache_blobs_exist(&in_registry, limit)?
        }
        .into_iter();
        Ok(blobs
            .iter()
            .map(|(s, d)| match s {
                EntrySource::Registry(_) => remote_answers.next().unwrap_or(Ok(false)),
                EntrySource::Layout(layout, _) => layout.link_into(d, store),
            })
            .collect())
    }

    /// Brings a hit's `layer` from `source` into `store`, within `limit`
    /// (from a layout: a hard link, else a copy). The outer error is the
    /// engine's; the inner one says why the layer could not be had.
    pub fn fetch_layer(
        &self,
        remote: &Remote,
        layer: &Descriptor,
        source: &EntrySource,
        store: &BlobStore,
        limit: std::time::Duration,
    ) -> Result<Result<(), RegistryError>, EngineError> {
        match source {
            EntrySource::Registry(r) => remote.fetch_cached(layer, r, store, limit),
            EntrySource::Layout(layout, _) => Ok(match layout.link_into(layer, store) {
                Ok(true) => Ok(()),
                Ok(false) => Err(RegistryError::Invalid {
                    what: format!("cache entry {source}"),
                    message: format!("its layer {} is gone from the layout", layer.digest),
                }),
                Err(e) => Err(e),
            }),
        }
    }

    /// Starts uploading an entry (`entry_image`), tagged with each of
    /// `tags` (the key first), in the background; an upload that times
    /// out turns the cache off.
    pub fn upload(
        &self,
        remote: &Remote,
        tags: &[String],
        image: PushImage,
        store: &BlobStore,
    ) -> Result<(), EngineError> {
        match &self.repo {
            CacheRepo::Registry(repo) => {
                let switch = self.switch.clone();
                remote.cache_upload(repo, tags, image, store, move |why| {
                    switch.turn_off(why);
                })
            }
            CacheRepo::Layout(layout) => {
                let (layout, tags, store) = (layout.clone(), tags.to_vec(), store.clone());
                let key = tags.first().cloned().unwrap_or_default();
                remote.cache_store_with(key, move || layout.store(&tags, &image, &store))
            }
        }
    }

    /// Waits for the uploads, at most `limit` (then turns the cache off);
    /// returns how many succeeded.
    pub fn wait_uploads(&self, remote: &Remote, limit: std::time::Duration) -> usize {
        remote.wait_uploads(&self.repo, limit, &|why| self.switch.turn_off(why))
    }

    /// Whether an entry is younger than `--cache-ttl`.
    pub fn fresh(&self, entry: &CacheEntry) -> bool {
        entry
            .stored
            .as_deref()
            .is_some_and(|stored| stored_within(stored, self.opts.ttl))
    }
}

#[cfg(test)]
mod tests {
    use super::key::LABEL;
    use super::*;
    use crate::engine::Platform;
    use crate::engine::context::SourceTree;
    use crate::image::{Descriptor, Digest, History};
    use std::collections::BTreeMap;

    fn cache() -> Cache {
        Cache::new(CacheOptions {
            repo: "127.0.0.1:5000/cache".to_string(),
            ttl: std::time::Duration::from_secs(3600),
            run_layers: true,
            copy_layers: true,
            push: true,
            report: None,
            request_timeout: std::time::Duration::from_secs(10),
            timeout: std::time::Duration::from_secs(60),
        })
        .unwrap()
    }

    #[test]
    fn source_digests_follow_content_and_metadata_not_mtimes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        fs_err::create_dir_all(root.join("app/sub")).unwrap();
        fs_err::write(root.join("app/a.txt"), "a").unwrap();
        fs_err::write(root.join("app/sub/b.txt"), "b").unwrap();
        fs_err::write(root.join("other"), "o").unwrap();
        let tree = SourceTree::context(root.clone(), Default::default());
        let c = cache();
        let sources = ["app".to_string()];
        let first = c
            .sources_digest(&tree, &sources, &Default::default(), false)
            .unwrap();
        // a new mtime alone: same digest
        filetime::set_file_mtime(
            root.join("app/a.txt"),
            filetime::FileTime::from_unix_time(5, 0),
        )
        .unwrap();
        assert_eq!(
            c.sources_digest(&tree, &sources, &Default::default(), false)
                .unwrap(),
            first
        );
        // a file outside the sources: same digest
        fs_err::write(root.join("other"), "changed").unwrap();
        assert_eq!(
            c.sources_digest(&tree, &sources, &Default::default(), false)
                .unwrap(),
            first
        );
        // content, mode, a new file: new digests
        fs_err::write(root.join("app/sub/b.txt"), "B").unwrap();
        let second = c
            .sources_digest(&tree, &sources, &Default::default(), false)
            .unwrap();
        assert_ne!(second, first);
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(
            root.join("app/a.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let third = c
            .sources_digest(&tree, &sources, &Default::default(), false)
            .unwrap();
        assert_ne!(third, second);
        fs_err::write(root.join("app/new"), "").unwrap();
        assert_ne!(
            c.sources_digest(&tree, &sources, &Default::default(), false)
                .unwrap(),
            third
        );
    }

    #[test]
    fn source_digests_follow_xattrs() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        fs_err::write(root.join("tool"), "x").unwrap();
        let tree = SourceTree::stage(root.clone(), "stage s".to_string());
        let c = cache();
        let sources = ["tool".to_string()];
        let plain = c
            .sources_digest(&tree, &sources, &Default::default(), false)
            .unwrap();
        // cap_net_bind_service+ep, then cap_net_raw+ep
        let mut cap = [0u8; 20];
        cap[..4].copy_from_slice(&[1, 0, 0, 2]);
        cap[5] = 4;
        xattr::set(root.join("tool"), "security.capability", &cap).unwrap();
        let bind = c
            .sources_digest(&tree, &sources, &Default::default(), false)
            .unwrap();
        assert_ne!(bind, plain);
        cap[5] = 0x20;
        xattr::set(root.join("tool"), "security.capability", &cap).unwrap();
        assert_ne!(
            c.sources_digest(&tree, &sources, &Default::default(), false)
                .unwrap(),
            bind
        );
    }

    #[test]
    fn keys_change_with_every_field() {
        let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let platform = Platform::parse("linux/amd64").unwrap();
        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        let view = StepView {
            instruction: "RUN make",
            vars: &vars,
            platform: &platform,
            user: "",
            workdir: "/",
            shell: &shell,
            sources: None,
            mounts: None,
        };
        let k = step_key("prev", &view).key;
        assert_eq!(k.len(), 64);
        assert_eq!(k, step_key("prev", &view).key);
        assert_ne!(k, step_key("other", &view).key);
        let vars2 = BTreeMap::from([("A".to_string(), "2".to_string())]);
        for changed in [
            StepView {
                instruction: "RUN make all",
                ..view
            },
            StepView {
                vars: &vars2,
                ..view
            },
            StepView {
                user: "app",
                ..view
            },
            StepView {
                workdir: "/src",
                ..view
            },
            StepView {
                sources: Some("x"),
                ..view
            },
        ] {
            assert_ne!(step_key("prev", &changed).key, k);
        }
        // an entry's labels say which input changed
        let stored = step_key("prev", &view).labels();
        let now = step_key(
            "prev",
            &StepView {
                vars: &vars2,
                user: "app",
                ..view
            },
        );
        assert_eq!(now.changed_from(&stored), ["args and env", "user"]);
    }

    #[test]
    fn an_entry_reads_back_what_entry_image_stored() {
        let t = tempfile::tempdir().unwrap();
        let store = BlobStore::open(t.path()).unwrap();
        let platform = Platform::parse("linux/amd64").unwrap();
        let vars = BTreeMap::new();
        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        let inputs = step_key(
            "prev",
            &StepView {
                instruction: "RUN make",
                vars: &vars,
                platform: &platform,
                user: "",
                workdir: "/",
                shell: &shell,
                sources: None,
                mounts: None,
            },
        );
        let history = History {
            created_by: Some("RUN make # buildkit".to_string()),
            ..History::default()
        };
        let bytes = b"a layer";
        let layer = Descriptor::new(
            crate::image::manifest::OCI_LAYER_GZIP,
            store.put(bytes).unwrap(),
            bytes.len() as u64,
        );
        let diff_id = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let r = EntrySource::Registry(
            Reference::parse(&format!("127.0.0.1:5000/cache:{}", inputs.key)).unwrap(),
        );
        let c = cache();

        let image = c
            .entry_image(
                &store,
                &platform,
                Some((layer.clone(), diff_id.clone())),
                history.clone(),
                &inputs,
            )
            .unwrap();
        let entry = parse_entry(&r, &image.manifest_bytes).unwrap();
        assert_eq!(entry.source, r);
        assert_eq!(entry.layers, std::slice::from_ref(&layer));
        assert_eq!(entry.diff_ids, std::slice::from_ref(&diff_id));
        assert_eq!(entry.history, history);
        assert!(c.fresh(&entry), "{:?}", entry.stored);
        assert!(inputs.changed_from(&entry.annotations).is_empty());

        // a step that changed no file: no layer
        let image = c
            .entry_image(&store, &platform, None, history.clone(), &inputs)
            .unwrap();
        let entry = parse_entry(&r, &image.manifest_bytes).unwrap();
        assert!(entry.layers.is_empty() && entry.diff_ids.is_empty());

        // what smelt did not write, or not whole, is refused naming the entry
        let err = |bytes: &[u8]| parse_entry(&r, bytes).unwrap_err().to_string();
        assert!(err(b"not json").contains("malformed"));
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest_bytes).unwrap();
        manifest["annotations"] = serde_json::json!({});
        let e = err(&serde_json::to_vec(&manifest).unwrap());
        assert!(e.contains("no history") && e.contains(&inputs.key), "{e}");
        let with_layer = c
            .entry_image(&store, &platform, Some((layer, diff_id)), history, &inputs)
            .unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&with_layer.manifest_bytes).unwrap();
        manifest["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(&format!("{LABEL}diff-id"));
        assert!(err(&serde_json::to_vec(&manifest).unwrap()).contains("at most one layer"));
    }
}
