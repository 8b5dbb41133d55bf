//! The engine's side of registries: a tokio runtime started on first use
//! (a build with no registry image and no push never starts one), base
//! images resolved for the stage's platform, their layers fetched and
//! extracted in order, and the push of the finished image.

use super::warm::BaseCache;
use super::{EngineError, Platform};
use crate::fs::compress::decompressor;
use crate::fs::extract::{ExtractOptions, extract_tar};
use crate::fs::ignore::RootIgnores;
use crate::image::manifest::{DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD};
use crate::image::{BlobStore, Descriptor, Digest, ImageConfig};
use crate::registry::{PushImage, Reference, Registry, Settings};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A cache upload: a thread driving the push on the runtime (the push
/// future borrows, so it cannot be a spawned task of its own).
type Upload = std::thread::JoinHandle<Result<Digest, crate::registry::RegistryError>>;

/// A cache entry found in the registry, as its manifest tells it (one
/// request per lookup): the step's layer (none when the step changed no
/// file), its diff ID and history entry, when it was stored, and the
/// inputs of its key.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub source: Reference,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
    pub history: crate::image::History,
    pub stored: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

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

/// Registry access for one build.
#[derive(Debug)]
pub struct Remote {
    registry: Arc<Registry>,
    runtime: OnceLock<tokio::runtime::Runtime>,
    /// Cache uploads under way, by key; the build waits for them.
    uploads: std::sync::Mutex<Vec<(String, Upload)>>,
    /// `--cache-dir`: base images are looked for there first (with the
    /// TTL), and their blobs put in the build's store.
    base_cache: Option<(BaseCache, std::time::Duration, BlobStore)>,
    /// Blobs that live in a registry rather than (yet) in the local store:
    /// digest → the repository holding them.
    pub remote_blobs: std::sync::Mutex<BTreeMap<Digest, Reference>>,
}

impl Remote {
    pub fn new(settings: Settings) -> Remote {
        Remote {
            registry: Arc::new(Registry::new(settings)),
            runtime: OnceLock::new(),
            uploads: std::sync::Mutex::new(Vec::new()),
            remote_blobs: std::sync::Mutex::new(BTreeMap::new()),
            base_cache: None,
        }
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
        let reference = Reference::parse(image).map_err(EngineError::Invalid)?;
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

    fn remember(&self, layers: &[Descriptor], source: &Reference) {
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
        let reference = Reference::parse(image).map_err(EngineError::Invalid)?;
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

    /// Downloads a base's layers (four at a time) and applies each to
    /// `root` as soon as it and every layer below it are in the store, so
    /// extraction runs while later layers still download.
    pub fn fetch_and_extract(
        &self,
        source: &Reference,
        layers: &[Descriptor],
        store: &BlobStore,
        root: &Path,
        skip: Option<&RootIgnores>,
    ) -> Result<(), EngineError> {
        use futures_util::StreamExt;
        let (ready, arrivals) = std::sync::mpsc::channel::<usize>();
        std::thread::scope(|s| {
            let extractor = s.spawn(move || -> Result<usize, EngineError> {
                let mut arrived = std::collections::BTreeSet::new();
                let mut next = 0;
                for i in arrivals {
                    arrived.insert(i);
                    while arrived.remove(&next) {
                        extract_layer(&layers[next], store, root, skip)?;
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
                Ok::<(), crate::registry::RegistryError>(())
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

    /// Applies `layers` (of an image built earlier in this build, base
    /// layers that stayed remote fetched first) to `root`, in order.
    pub fn unpack(
        &self,
        layers: &[Descriptor],
        store: &BlobStore,
        root: &Path,
        skip: Option<&RootIgnores>,
    ) -> Result<(), EngineError> {
        self.fetch(layers, store)?;
        for l in layers {
            extract_layer(l, store, root, skip)?;
        }
        Ok(())
    }

    /// Pushes the image to every destination, base layers mounted or
    /// uploaded from wherever they are.
    pub fn push(
        &self,
        destinations: &[Reference],
        image: &PushImage,
        store: &BlobStore,
    ) -> Result<Digest, EngineError> {
        Ok(self.block_on(self.registry.push(destinations, image, store))??)
    }

    /// Looks `keys` up in the cache repository `repo`, all at once. Each
    /// answer: an entry, `None` (no such tag), or what went wrong.
    pub fn cache_lookup(
        &self,
        repo: &Reference,
        keys: &[String],
    ) -> Result<Vec<Result<Option<CacheEntry>, crate::registry::RegistryError>>, EngineError> {
        use futures_util::StreamExt;
        let registry = &self.registry;
        let lookups = keys.iter().map(|key| {
            let r = Reference {
                tag: Some(key.clone()),
                ..repo.clone()
            };
            async move {
                match registry.manifest_at(&r).await {
                    Ok((bytes, _, _)) => super::cache::parse_entry(&r, &bytes).map(Some),
                    Err(crate::registry::RegistryError::Status { status: 404, .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        });
        let answers = self.block_on(
            futures_util::stream::iter(lookups)
                .buffered(8)
                .collect::<Vec<_>>(),
        )?;
        for e in answers.iter().flatten().flatten() {
            self.remember(&e.layers, &e.source);
        }
        Ok(answers)
    }

    /// Starts pushing a cache entry, tagged with each of `tags` (the key
    /// first), in the background.
    pub fn cache_upload(
        &self,
        repo: &Reference,
        tags: &[String],
        image: PushImage,
        store: &BlobStore,
    ) -> Result<(), EngineError> {
        let dests: Vec<Reference> = tags
            .iter()
            .map(|t| Reference {
                tag: Some(t.clone()),
                ..repo.clone()
            })
            .collect();
        let key = tags.first().cloned().unwrap_or_default();
        let registry = Arc::clone(&self.registry);
        let store = store.clone();
        let handle = self.runtime()?.handle().clone();
        let task = std::thread::Builder::new()
            .name("smelt-cache-upload".to_string())
            .spawn(move || handle.block_on(registry.push(&dests, &image, &store)))?;
        self.uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((key, task));
        Ok(())
    }

    /// Waits for the cache uploads; a failed one is a warning naming its
    /// key and what the registry said. Returns how many succeeded.
    pub fn wait_uploads(&self, repo: &Reference) -> usize {
        let pending: Vec<(String, Upload)> = std::mem::take(
            &mut *self
                .uploads
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if pending.is_empty() {
            return 0;
        }
        let mut ok = 0;
        for (key, task) in pending {
            match task.join() {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    log::warn!("cache upload of {repo}:{key} failed (the build goes on): {e}");
                }
                Err(_) => {
                    log::warn!("cache upload of {repo}:{key} failed: the upload thread panicked");
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

/// Applies one layer (in `store`) to `root`, with whiteouts, leaving what
/// `skip` covers alone.
fn extract_layer(
    layer: &Descriptor,
    store: &BlobStore,
    root: &Path,
    skip: Option<&RootIgnores>,
) -> Result<(), EngineError> {
    let file = fs_err::File::open(store.path(&layer.digest))?;
    let reader = decompressor(std::io::BufReader::with_capacity(256 << 10, file))
        .map_err(|e| EngineError::Invalid(format!("layer {}: {e}", layer.digest)))?;
    extract_tar(
        reader,
        root,
        "",
        ExtractOptions {
            whiteouts: true,
            chown: None,
            skip,
        },
    )?;
    Ok(())
}
