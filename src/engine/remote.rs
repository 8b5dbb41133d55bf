//! The engine's side of registries: a tokio runtime started on first use
//! (a build with no registry image and no push never starts one), base
//! images resolved for the stage's platform, their layers fetched and
//! extracted in order, and the push of the finished image. For the layer
//! cache (`cache/`) it only moves bytes: entry manifests by tag, blob
//! checks, and entry uploads in the background.

use super::bases::KeptBases;
use super::warm::BaseCache;
use super::{EngineError, Platform};
use crate::fs::compress::decompressor;
use crate::fs::extract::{ExtractOptions, extract_tar};
use crate::fs::ignore::RootIgnores;
use crate::image::manifest::{DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::image::{BlobStore, Descriptor, Digest, ImageConfig};
use crate::registry::push::Placements;
use crate::registry::{PushImage, Reference, Registry, RegistryError, Settings};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// What a finished cache upload reports: its key and how it went.
type UploadDone = (String, Result<Digest, RegistryError>);

/// One answer per tag looked up: what it names, `None` (no such tag), or
/// what went wrong.
pub type TagAnswers<T> = Vec<Result<Option<T>, RegistryError>>;

/// Why a cache operation stopped waiting.
const OUT_OF_TIME: &str = "the layer cache's time (--cache-timeout) ran out";

/// A base image from a registry, ready to start a stage from.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The repository its blobs live in (a mirror, or the one named).
    pub source: Reference,
    /// Its manifest's digest (the first cache key builds on it).
    pub digest: Digest,
    pub config: ImageConfig,
    /// Its layers, with OCI media types.
    pub layers: Vec<Descriptor>,
}

/// The layers of one image (a base, a stage, a cache entry) to apply,
/// with the diff IDs its config gives them and its name for errors.
#[derive(Debug, Clone, Copy)]
pub struct ImageLayers<'a> {
    /// How errors name the image: a reference, `stage NAME`, a cache entry.
    pub image: &'a str,
    pub layers: &'a [Descriptor],
    /// `rootfs.diff_ids`, one per layer: each layer's uncompressed stream
    /// must hash to its own.
    pub diff_ids: &'a [Digest],
}

/// Registry access for one build.
#[derive(Debug)]
pub struct Remote {
    registry: Arc<Registry>,
    /// The layer cache's client: its requests time out (`--cache-request-
    /// timeout`) and are not retried then. `None`: the main client.
    cache_registry: Option<Arc<Registry>>,
    runtime: OnceLock<tokio::runtime::Runtime>,
    /// Cache uploads: each upload's thread reports on `sender` when done;
    /// the build waits for `started` reports on the receiver.
    uploads: std::sync::Mutex<Uploads>,
    /// `--cache-dir`: base images are looked for there first (with the
    /// TTL), and their blobs put in the build's store.
    base_cache: Option<(BaseCache, std::time::Duration, BlobStore)>,
    /// `--cache-dir` too: bases kept unpacked there between builds.
    kept_bases: Option<KeptBases>,
    /// Blobs that live in a registry rather than (yet) in the local store:
    /// digest → the repository holding them.
    pub remote_blobs: std::sync::Mutex<BTreeMap<Digest, Reference>>,
    /// Blobs the cache uploads are placing, for the push to mount.
    cache_blobs: Arc<Placements>,
}

impl Remote {
    pub fn new(settings: Settings) -> Remote {
        Remote {
            registry: Arc::new(Registry::new(settings)),
            cache_registry: None,
            runtime: OnceLock::new(),
            uploads: std::sync::Mutex::new(Uploads::new()),
            remote_blobs: std::sync::Mutex::new(BTreeMap::new()),
            base_cache: None,
            cache_blobs: Arc::default(),
            kept_bases: None,
        }
    }

    /// Keeps registry bases unpacked in `kept` between builds.
    pub fn with_kept_bases(mut self, kept: KeptBases) -> Remote {
        self.kept_bases = Some(kept);
        self
    }

    /// Where bases are kept unpacked between builds, if anywhere.
    pub fn kept_bases(&self) -> Option<&KeptBases> {
        self.kept_bases.as_ref()
    }

    /// Reads base images from `cache` (a warmer's directory) before any
    /// registry; their blobs go into `store`.
    pub fn with_base_cache(
        mut self,
        cache: BaseCache,
        ttl: std::time::Duration,
        store: BlobStore,
    ) -> Remote {
        self.base_cache = Some((cache, ttl, store));
        self
    }

    /// Sends the layer cache's traffic through a client of its own whose
    /// requests fail, and are not retried, when the registry does not
    /// connect or send a byte for `request_timeout`.
    pub fn with_cache_timeout(mut self, request_timeout: std::time::Duration) -> Remote {
        let settings = Settings {
            request_timeout: Some(request_timeout),
            ..self.registry.settings.clone()
        };
        self.cache_registry = Some(Arc::new(Registry::new(settings)));
        self
    }

    fn cache_registry(&self) -> &Arc<Registry> {
        self.cache_registry.as_ref().unwrap_or(&self.registry)
    }

    /// Runs a cache operation on the runtime for at most `limit` (what is
    /// left of `--cache-timeout`); past it, a time-out error.
    fn block_on_within<T>(
        &self,
        limit: std::time::Duration,
        what: &str,
        f: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<Result<T, RegistryError>, EngineError> {
        self.block_on(async {
            match tokio::time::timeout(limit, f).await {
                Ok(r) => r,
                Err(_) => Err(RegistryError::TimedOut {
                    what: what.to_string(),
                    message: OUT_OF_TIME.to_string(),
                }),
            }
        })
    }

    /// Downloads `image` for `platform` into the cache directory `cache`
    /// (the warmer); `force` downloads it again when it is there already.
    /// Returns its manifest digest and whether it was downloaded.
    pub fn warm(
        &self,
        image: &str,
        platform: &Platform,
        cache: &BaseCache,
        force: bool,
    ) -> Result<(Digest, bool), EngineError> {
        let reference = Reference::parse(image)?;
        if !force && let Some(w) = cache.find(&reference, platform, std::time::Duration::MAX) {
            return Ok((w.digest, false));
        }
        let remote = self.block_on(self.registry.resolve(&reference, &platform.descriptor()))??;
        cache.store.put(&remote.config_bytes)?;
        self.block_on(self.registry.fetch_blobs(
            &remote.source,
            &remote.manifest.layers,
            &cache.store,
        ))??;
        cache.add(
            &reference,
            platform,
            &remote.manifest,
            &remote.manifest_bytes,
        )?;
        Ok((remote.digest, true))
    }

    fn block_on<F: Future>(&self, f: F) -> Result<F::Output, EngineError> {
        Ok(self.runtime()?.block_on(f))
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, EngineError> {
        if self.runtime.get().is_none() {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("smelt-net")
                .enable_all()
                .build()
                .map_err(|e| EngineError::Invalid(format!("starting the network runtime: {e}")))?;
            // set once: a second value (impossible here, one thread) is dropped
            let _ = self.runtime.set(rt);
        }
        match self.runtime.get() {
            Some(rt) => Ok(rt),
            None => Err(EngineError::Invalid(
                "the network runtime did not start".to_string(),
            )),
        }
    }

    /// Records `source` as where `layers` can be had from (a push mounts
    /// them from there).
    pub fn remember(&self, layers: &[Descriptor], source: &Reference) {
        let mut map = self
            .remote_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for l in layers {
            map.entry(l.digest.clone())
                .or_insert_with(|| source.clone());
        }
    }

    /// Resolves `image` for `platform`: manifest and config, no layers yet.
    pub fn resolve(&self, image: &str, platform: &Platform) -> Result<BaseImage, EngineError> {
        let reference = Reference::parse(image)?;
        if let Some((cache, ttl, store)) = &self.base_cache
            && let Some(w) = cache.find(&reference, platform, *ttl)
        {
            cache.link_into(&w, store)?;
            log::info!("found {image} in the cache directory ({})", w.digest);
            let config = Self::parse_config(
                &reference.to_string(),
                &w.config_bytes,
                &w.manifest,
                platform,
            )?;
            let layers = layer_descriptors(&reference.to_string(), &w.manifest)?;
            return Ok(BaseImage {
                source: reference,
                digest: w.digest,
                config,
                layers,
            });
        }
        let remote = self.block_on(self.registry.resolve(&reference, &platform.descriptor()))??;
        let name = remote.source.to_string();
        let config = Self::parse_config(&name, &remote.config_bytes, &remote.manifest, platform)?;
        let layers = layer_descriptors(&name, &remote.manifest)?;
        self.remember(&layers, &remote.source);
        log::info!("resolved {image} to {}@{}", remote.source, remote.digest);
        Ok(BaseImage {
            source: remote.source,
            digest: remote.digest,
            config,
            layers,
        })
    }

    /// A base's config, checked against its manifest and platform.
    fn parse_config(
        name: &str,
        bytes: &[u8],
        manifest: &crate::image::Manifest,
        platform: &Platform,
    ) -> Result<ImageConfig, EngineError> {
        let config: ImageConfig = serde_json::from_slice(bytes).map_err(|e| {
            EngineError::Invalid(format!("{name}: the image config is malformed: {e}"))
        })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(EngineError::Invalid(format!(
                "{name}: the config lists {} layers, the manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            )));
        }
        if config.architecture != platform.arch || config.os != platform.os {
            log::warn!(
                "{name} is {}/{}, not the requested {platform}",
                config.os,
                config.architecture
            );
        }
        Ok(config)
    }

    /// Makes sure every one of `layers` is in the local store, fetching the
    /// missing ones (from wherever they were found) a few at a time.
    pub fn fetch(&self, layers: &[Descriptor], store: &BlobStore) -> Result<(), EngineError> {
        let map = self
            .remote_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut by_source: BTreeMap<String, (Reference, Vec<Descriptor>)> = BTreeMap::new();
        for l in layers {
            if store.path(&l.digest).exists() {
                continue;
            }
            let source = map.get(&l.digest).ok_or_else(|| {
                EngineError::Invalid(format!("layer {} is in no store and no registry", l.digest))
            })?;
            by_source
                .entry(source.to_string())
                .or_insert_with(|| (source.clone(), Vec::new()))
                .1
                .push(l.clone());
        }
        for (source, descs) in by_source.values() {
            self.block_on(self.registry.fetch_blobs(source, descs, store))??;
        }
        Ok(())
    }

    /// Downloads an image's layers (four at a time) and applies each to
    /// `root` as soon as it and every layer below it are in the store, so
    /// extraction runs while later layers still download.
    pub fn fetch_and_extract(
        &self,
        source: &Reference,
        image: ImageLayers<'_>,
        store: &BlobStore,
        root: &Path,
        skip: Option<&RootIgnores>,
    ) -> Result<(), EngineError> {
        use futures_util::StreamExt;
        let layers = image.layers;
        let (ready, arrivals) = std::sync::mpsc::channel::<usize>();
        std::thread::scope(|s| {
            let extractor = s.spawn(move || -> Result<usize, EngineError> {
                let mut arrived = std::collections::BTreeSet::new();
                let mut next = 0;
                for i in arrivals {
                    arrived.insert(i);
                    while arrived.remove(&next) {
                        extract_layer(image, next, store, root, skip)?;
                        next += 1;
                    }
                }
                Ok(next)
            });
            let fetched = self.block_on(async {
                let mut jobs = futures_util::stream::iter(layers.iter().enumerate())
                    .map(|(i, d)| async move {
                        self.registry.fetch_blob(source, d, store).await.map(|_| i)
                    })
                    .buffered(4);
                while let Some(r) = jobs.next().await {
                    // the extractor stops only on an error, which join reports
                    let _ = ready.send(r?);
                }
                Ok::<(), RegistryError>(())
            });
            drop(ready);
            let extracted = extractor
                .join()
                .map_err(|_| EngineError::Invalid("the layer extractor panicked".to_string()))?;
            fetched??;
            let n = extracted?;
            if n != layers.len() {
                return Err(EngineError::Invalid(format!(
                    "{source}: only {n} of {} layers were applied",
                    layers.len()
                )));
            }
            Ok(())
        })
    }

    /// Applies an image's layers (built earlier in this build, a cache
    /// entry's; those that stayed remote fetched first) to `root`, in order.
    pub fn unpack(
        &self,
        image: ImageLayers<'_>,
        store: &BlobStore,
        root: &Path,
        skip: Option<&RootIgnores>,
    ) -> Result<(), EngineError> {
        self.fetch(image.layers, store)?;
        for i in 0..image.layers.len() {
            extract_layer(image, i, store, root, skip)?;
        }
        Ok(())
    }

    /// Downloads a cache hit's layer from the cache registry into `store`,
    /// within `limit`. The outer error is the engine's; the inner one says
    /// why the layer could not be had (the step then runs as a miss).
    pub fn fetch_cached(
        &self,
        layer: &Descriptor,
        source: &Reference,
        store: &BlobStore,
        limit: std::time::Duration,
    ) -> Result<Result<(), RegistryError>, EngineError> {
        let what = format!("blob {} of {source}", layer.digest);
        let registry = self.cache_registry();
        self.block_on_within(limit, &what, async {
            registry.fetch_blob(source, layer, store).await.map(|_| ())
        })
    }

    /// Pushes the image to every destination, base layers mounted or
    /// uploaded from wherever they are.
    pub fn push(
        &self,
        destinations: &[Reference],
        image: &PushImage,
        store: &BlobStore,
    ) -> Result<Digest, EngineError> {
        let image = self.mounted_from_cache(destinations, image);
        Ok(self.block_on(self.registry.push(destinations, &image, store))??)
    }

    /// `image` with each blob that a cache upload placed in a repository
    /// of a destination's registry marked as there, so the push mounts it
    /// instead of uploading it again (an upload still running is waited
    /// for; one that failed leaves the blob to be uploaded).
    fn mounted_from_cache(&self, destinations: &[Reference], image: &PushImage) -> PushImage {
        let mut image = image.clone();
        let on_a_destination =
            |r: &Reference| destinations.iter().any(|d| d.registry == r.registry);
        for blob in &mut image.blobs {
            if blob.source.as_ref().is_some_and(on_a_destination) {
                continue;
            }
            if let Some(placed) = self
                .cache_blobs
                .placed(&blob.descriptor.digest, &on_a_destination)
            {
                blob.source = Some(placed);
            }
        }
        image
    }

    /// Whether each of `blobs` (a cache entry's repository and layer) is
    /// still there, 8 at a time, within `limit`.
    pub fn cache_blobs_exist(
        &self,
        blobs: &[(Reference, Descriptor)],
        limit: std::time::Duration,
    ) -> Result<Vec<Result<bool, RegistryError>>, EngineError> {
        let registry = self.cache_registry();
        let checks = blobs
            .iter()
            .map(|(r, d)| async move { registry.has_blob(r, &d.digest).await });
        let what = format!("checking for {} cached layers", blobs.len());
        self.eight_at_a_time_within(limit, &what, checks)
    }

    /// Runs `requests` 8 at a time, giving each one's answer; past
    /// `limit`, every answer is a time-out naming `what`.
    fn eight_at_a_time_within<T>(
        &self,
        limit: std::time::Duration,
        what: &str,
        requests: impl Iterator<Item = impl Future<Output = Result<T, RegistryError>>>,
    ) -> Result<Vec<Result<T, RegistryError>>, EngineError> {
        use futures_util::StreamExt;
        let count = requests.size_hint().0;
        Ok(
            match self.block_on_within(limit, what, async {
                Ok(futures_util::stream::iter(requests)
                    .buffered(8)
                    .collect::<Vec<_>>()
                    .await)
            })? {
                Ok(answers) => answers,
                Err(_) => (0..count)
                    .map(|_| {
                        Err(RegistryError::TimedOut {
                            what: what.to_string(),
                            message: OUT_OF_TIME.to_string(),
                        })
                    })
                    .collect(),
            },
        )
    }

    /// The manifests tagged `tags` in the cache repository `repo`, 8 at a
    /// time. Each answer: the manifest's bytes, `None` (no such tag), or
    /// what went wrong. Past `limit`, every answer is a time-out.
    pub fn cache_manifests(
        &self,
        repo: &Reference,
        tags: &[String],
        limit: std::time::Duration,
    ) -> Result<TagAnswers<Vec<u8>>, EngineError> {
        let registry = self.cache_registry();
        let lookups = tags.iter().map(|tag| {
            let r = Reference {
                tag: Some(tag.clone()),
                ..repo.clone()
            };
            async move {
                match registry.manifest_at(&r).await {
                    Ok((bytes, _, _)) => Ok(Some(bytes)),
                    Err(RegistryError::Status { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        });
        let what = format!("looking up {} keys in {repo}", tags.len());
        self.eight_at_a_time_within(limit, &what, lookups)
    }

    /// Starts pushing a cache entry, tagged with each of `tags` (the key
    /// first), in the background (a thread driving the push on the
    /// runtime: the push future borrows, so it cannot be a task). An
    /// upload that timed out calls `turn_off` with why (it turns the
    /// cache off).
    pub fn cache_upload(
        &self,
        repo: &Reference,
        tags: &[String],
        image: PushImage,
        store: &BlobStore,
        turn_off: impl FnOnce(&str) + Send + 'static,
    ) -> Result<(), EngineError> {
        let dests: Vec<Reference> = tags
            .iter()
            .map(|t| Reference {
                tag: Some(t.clone()),
                ..repo.clone()
            })
            .collect();
        let key = tags.first().cloned().unwrap_or_default();
        let placing = Placements::start(&self.cache_blobs, repo, &image);
        let registry = Arc::clone(self.cache_registry());
        let store = store.clone();
        let handle = self.runtime()?.handle().clone();
        self.cache_store_with(key, move || {
            let pushed = handle.block_on(registry.push(&dests, &image, &store));
            placing.done(pushed.is_ok());
            if let Err(e @ RegistryError::TimedOut { .. }) = &pushed {
                turn_off(&e.to_string());
            }
            pushed
        })
    }

    /// Starts storing a cache entry (`job`: a push, or a store into an OCI
    /// layout) on a thread of its own; it reports to `wait_uploads`.
    pub fn cache_store_with(
        &self,
        key: String,
        job: impl FnOnce() -> Result<Digest, RegistryError> + Send + 'static,
    ) -> Result<(), EngineError> {
        let mut uploads = self
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let done = uploads.sender.clone();
        std::thread::Builder::new()
            .name("smelt-cache-store".to_string())
            .spawn(move || {
                // the receiver lives as long as the Remote; a build that
                // stopped waiting does not read this
                let _ = done.send((key, job()));
            })?;
        uploads.started += 1;
        Ok(())
    }

    /// Waits for the cache uploads, at most `limit`; a failed one is a
    /// warning naming its key and what the registry said (one that timed
    /// out has turned the cache off, with its own warning). Uploads still
    /// running after `limit` are left behind and `turn_off` is called
    /// with why. Returns how many succeeded.
    pub fn wait_uploads(
        &self,
        repo: &dyn std::fmt::Display,
        limit: std::time::Duration,
        turn_off: &dyn Fn(&str),
    ) -> usize {
        let uploads = self
            .uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let deadline = std::time::Instant::now() + limit;
        let mut ok = 0;
        for left in (1..=uploads.started).rev() {
            let wait = deadline.saturating_duration_since(std::time::Instant::now());
            match uploads.receiver.recv_timeout(wait) {
                Ok((_, Ok(_))) => ok += 1,
                Ok((_, Err(RegistryError::TimedOut { .. }))) => {}
                Ok((key, Err(e))) => {
                    log::warn!("cache upload of {repo}:{key} failed (the build goes on): {e}");
                }
                Err(_) => {
                    turn_off(&format!(
                        "{OUT_OF_TIME}; {left} upload{} left unfinished",
                        if left == 1 { "" } else { "s" }
                    ));
                    break;
                }
            }
        }
        ok
    }

    /// The repository a blob that is not local can be had from.
    pub fn source_of(&self, digest: &Digest) -> Option<Reference> {
        self.remote_blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(digest)
            .cloned()
    }
}

/// The cache uploads of a build: how many were started, and the channel
/// they report on.
#[derive(Debug)]
struct Uploads {
    started: usize,
    sender: std::sync::mpsc::Sender<UploadDone>,
    receiver: std::sync::mpsc::Receiver<UploadDone>,
}

impl Uploads {
    fn new() -> Uploads {
        let (sender, receiver) = std::sync::mpsc::channel();
        Uploads {
            started: 0,
            sender,
            receiver,
        }
    }
}

/// A manifest's layers, with OCI media types.
fn layer_descriptors(
    name: &str,
    manifest: &crate::image::Manifest,
) -> Result<Vec<Descriptor>, EngineError> {
    let mut layers = Vec::new();
    for l in &manifest.layers {
        let media_type = match l.media_type.as_str() {
            DOCKER_LAYER_GZIP | OCI_LAYER_GZIP => OCI_LAYER_GZIP,
            OCI_LAYER_ZSTD => OCI_LAYER_ZSTD,
            OCI_LAYER_TAR | "application/vnd.docker.image.rootfs.diff.tar" => OCI_LAYER_TAR,
            other => {
                return Err(EngineError::Unsupported(format!(
                    "{name}: layer {} has media type {other:?}, which smelt cannot use",
                    l.digest
                )));
            }
        };
        layers.push(Descriptor::new(media_type, l.digest.clone(), l.size));
    }
    Ok(layers)
}

/// Applies layer `n` of `image` (in `store`) to `root`, with whiteouts,
/// leaving what `skip` covers alone. The uncompressed stream the extractor
/// reads is hashed on the way and must match the layer's diff ID; every
/// error names the image and the layer.
pub(crate) fn extract_layer(
    image: ImageLayers<'_>,
    n: usize,
    store: &BlobStore,
    root: &Path,
    skip: Option<&RootIgnores>,
) -> Result<(), EngineError> {
    let layer = &image.layers[n];
    let fail = |message: String| {
        EngineError::Invalid(format!(
            "{}: layer {} ({} of {}): {message}",
            image.image,
            layer.digest,
            n + 1,
            image.layers.len()
        ))
    };
    let path = store.path(&layer.digest);
    let file = fs_err::File::open(&path).map_err(|e| fail(e.to_string()))?;
    let compressed = matches!(layer.media_type.as_str(), OCI_LAYER_GZIP | OCI_LAYER_ZSTD);
    if compressed && file.metadata().map_err(|e| fail(e.to_string()))?.len() == 0 {
        return Err(fail(format!(
            "the blob is empty, which is no {} stream (an empty layer is an empty tar, compressed)",
            if layer.media_type == OCI_LAYER_ZSTD {
                "zstd"
            } else {
                "gzip"
            }
        )));
    }
    let reader = decompressor(std::io::BufReader::with_capacity(256 << 10, file))
        .map_err(|e| fail(e.to_string()))?;
    let mut hashed = DiffIdReader {
        inner: reader,
        hasher: Sha256::new(),
    };
    extract_tar(
        &mut hashed,
        root,
        "",
        ExtractOptions {
            whiteouts: true,
            chown: None,
            skip,
        },
    )
    .map_err(|e| fail(e.to_string()))?;
    // the diff ID covers the whole stream: the end-of-archive blocks and
    // any padding the extractor stopped before
    std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| fail(e.to_string()))?;
    let actual = Digest::from_sha256(hashed.hasher);
    match image.diff_ids.get(n) {
        Some(expected) if *expected != actual => Err(fail(format!(
            "its uncompressed content has diff ID {actual}, but the image config says {expected}"
        ))),
        Some(_) => Ok(()),
        None => Err(fail(format!(
            "the image config gives no diff ID for it ({} for {} layers)",
            image.diff_ids.len(),
            image.layers.len()
        ))),
    }
}

/// A reader that hashes what is read through it (a layer's diff ID, from
/// the stream the extractor reads).
struct DiffIdReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: std::io::Read> std::io::Read for DiffIdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // a SIGTERM stops an unpacking at its next read, so the build winds
        // down (and removes its work directory) without waiting for the
        // rest of the layer
        if let Some(signal) = super::interrupt::signal() {
            // not ErrorKind::Interrupted, which readers retry
            return Err(std::io::Error::other(format!(
                "stopped by {}",
                super::interrupt::signal_name(signal)
            )));
        }
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
