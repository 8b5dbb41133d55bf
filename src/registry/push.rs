//! Pushing an image to one or more destinations: every blob is put in
//! place first (HEAD to skip what the registry has, a cross-repository
//! mount when the blob is known to live in another repository of the same
//! registry, otherwise a streamed upload), several at a time; the manifests
//! go last, so a failed push never leaves a tag on half an image. What
//! background pushes are placing (`Placements`) lets a later push mount
//! a blob rather than upload it a second time.

use super::client::{Activity, BUILT_IN_ATTEMPTS, Direction, Endpoint, fail, scope};
use super::{Reference, Registry, RegistryError};
use crate::image::{BlobStore, BuiltImage, Descriptor, Digest};
use futures_util::StreamExt;
use std::collections::BTreeMap;

/// One blob of an image to push.
#[derive(Debug, Clone)]
pub struct PushBlob {
    pub descriptor: Descriptor,
    /// A repository already holding the blob (a base image's), to mount
    /// from or, on another registry, to download from when it is not in
    /// the local store.
    pub source: Option<Reference>,
}

/// An image ready to push: its manifest and every blob it names.
#[derive(Debug, Clone)]
pub struct PushImage {
    pub manifest_bytes: Vec<u8>,
    pub manifest_media_type: String,
    /// The config first, then the layers.
    pub blobs: Vec<PushBlob>,
}

impl PushImage {
    /// What pushing `image` takes: its config, then its layers, each with
    /// the repository `source_of` says already holds it (if any).
    pub fn of(image: &BuiltImage, source_of: impl Fn(&Digest) -> Option<Reference>) -> PushImage {
        let config = PushBlob {
            descriptor: image.manifest.config.clone(),
            source: None,
        };
        let layers = image.manifest.layers.iter().map(|l| PushBlob {
            descriptor: l.clone(),
            source: source_of(&l.digest),
        });
        PushImage {
            manifest_bytes: image.manifest_bytes.clone(),
            manifest_media_type: image.manifest.media_type.clone(),
            blobs: std::iter::once(config).chain(layers).collect(),
        }
    }
}

/// How a blob got into a repository.
enum Placed {
    Existed,
    Mounted,
    Uploaded,
}

impl Registry {
    /// Pushes `image` to every destination. Blobs go once per registry
    /// (other repositories of that registry mount them); then each tag
    /// gets the manifest. Returns the manifest digest.
    pub async fn push(
        &self,
        destinations: &[Reference],
        image: &PushImage,
        store: &BlobStore,
    ) -> Result<Digest, RegistryError> {
        let digest = Digest::sha256(&image.manifest_bytes);
        for d in destinations {
            log::info!("Pushing image to {d}");
        }
        // registry → its repositories, in the order given
        let mut by_registry: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for d in destinations {
            let repos = by_registry.entry(&d.registry).or_default();
            if !repos.contains(&d.repository.as_str()) {
                repos.push(&d.repository);
            }
        }
        for (registry, repos) in &by_registry {
            let ep = self.endpoint(registry, Direction::Push).await?;
            for (n, repo) in repos.iter().enumerate() {
                // after the first repository, the registry has every blob
                let sibling = (n > 0).then(|| Reference {
                    registry: (*registry).to_string(),
                    repository: repos[0].to_string(),
                    tag: None,
                    digest: None,
                });
                let mut jobs = futures_util::stream::iter(&image.blobs)
                    .map(|b| self.place_blob(&ep, repo, b, sibling.as_ref(), store))
                    .buffer_unordered(3);
                while let Some(r) = jobs.next().await {
                    r?;
                }
            }
        }
        // one line per repository: the tags of one (a cache entry's key
        // and `next-` tag) would repeat it word for word
        let mut told = std::collections::BTreeSet::new();
        for d in destinations {
            let ep = self.endpoint(&d.registry, Direction::Push).await?;
            match self.put_manifest(&ep, d, image).await {
                Err(e) if self.settings.ignore_immutable_tags && is_immutable_tag_error(&e) => {
                    log::info!(
                        "{d}: the tag is immutable and already set; counted as pushed \
                         (--push-ignore-immutable-tag-errors)"
                    );
                }
                r => {
                    r?;
                    if told.insert(d.kaniko_repository()) {
                        log::info!("Pushed {}@{digest}", d.kaniko_repository());
                    }
                }
            }
        }
        Ok(digest)
    }

    /// Puts one blob in place. Each request (HEAD, POST, PUT) is retried
    /// on its own; an upload the registry refused as damaged or lost
    /// (`DIGEST_INVALID`, `BLOB_UPLOAD_UNKNOWN`, …) starts over with a new
    /// upload session, within the same `--push-retry` budget.
    async fn place_blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        blob: &PushBlob,
        sibling: Option<&Reference>,
        store: &BlobStore,
    ) -> Result<(), RegistryError> {
        let desc = &blob.descriptor;
        let what = format!("blob {} to {}/{repo}", desc.digest, ep.registry);
        let attempts = BUILT_IN_ATTEMPTS + self.settings.push_retries;
        let mount_from = sibling.or(blob
            .source
            .as_ref()
            .filter(|s| s.registry == ep.registry && s.repository != repo));
        let transfer = self.progress.start("uploaded", &desc.digest, desc.size);
        let mut tried = 0;
        let placed = loop {
            tried += 1;
            match self
                .place_blob_once(ep, repo, blob, mount_from, store, &what, &transfer)
                .await
            {
                Ok(placed) => break placed,
                Err(e) if restarts_upload(&e) && tried < attempts => {
                    log::warn!(
                        "{e}; uploading {what} again (attempt {} of {attempts})",
                        tried + 1
                    );
                    transfer.restart();
                }
                Err(e) => return Err(e),
            }
        };
        match placed {
            Placed::Existed => transfer.finish(Some(&format!("already in {repo}"))),
            Placed::Mounted => transfer.finish(Some(&format!(
                "mounted from {}",
                mount_from.map(|m| m.repository.as_str()).unwrap_or("?")
            ))),
            Placed::Uploaded => transfer.finish(None),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn place_blob_once(
        &self,
        ep: &Endpoint,
        repo: &str,
        blob: &PushBlob,
        mount_from: Option<&Reference>,
        store: &BlobStore,
        what: &str,
        transfer: &super::progress::Transfer,
    ) -> Result<Placed, RegistryError> {
        let desc = &blob.descriptor;
        let attempts = BUILT_IN_ATTEMPTS + self.settings.push_retries;
        let mut scopes = vec![scope(repo, true)];
        if let Some(m) = mount_from {
            scopes.push(scope(&m.repository, false));
        }
        let head = format!("{}/v2/{repo}/blobs/{}", ep.base, desc.digest);
        let existing = format!("checking for {what}");
        let exists = self
            .retrying(attempts, &existing, || async {
                let response = self
                    .send(ep, &scopes, &existing, |http| Ok(http.head(&head)))
                    .await?;
                match response.status() {
                    s if s.is_success() => Ok(true),
                    reqwest::StatusCode::NOT_FOUND => Ok(false),
                    _ => Err(fail(response, &existing).await),
                }
            })
            .await?;
        if exists {
            return Ok(Placed::Existed);
        }
        if mount_from.is_none() {
            // have the bytes before an upload session is opened for them
            self.local_bytes(blob, store, what).await?;
        }
        let mut start = format!("{}/v2/{repo}/blobs/uploads/", ep.base);
        if let Some(m) = mount_from {
            start = format!("{start}?mount={}&from={}", desc.digest, m.repository);
        }
        let opening = format!("starting the upload of {what}");
        let location = self
            .retrying(attempts, &opening, || async {
                let response = self
                    .send(ep, &scopes, &opening, |http| {
                        Ok(http.post(&start).header(reqwest::header::CONTENT_LENGTH, 0))
                    })
                    .await?;
                match response.status() {
                    reqwest::StatusCode::CREATED if mount_from.is_some() => Ok(None),
                    reqwest::StatusCode::ACCEPTED => {
                        upload_location(&response, &ep.base, &desc.digest, &opening).map(Some)
                    }
                    _ => Err(fail(response, &opening).await),
                }
            })
            .await?;
        let Some(location) = location else {
            return Ok(Placed::Mounted);
        };
        // after a refused mount the bytes are only fetched now (once: a
        // blob in the store is not fetched again)
        let path = self.local_bytes(blob, store, what).await?;
        let size = desc.size;
        self.retrying(attempts, what, || async {
            transfer.restart();
            let activity = Activity::default();
            let response = self
                .send_upload(ep, &activity, &scopes, what, |http| {
                    let file = fs_err::File::open(&path).map_err(|e| RegistryError::io(what, e))?;
                    let bar = transfer.bar();
                    let activity = activity.clone();
                    let stream = tokio_util::io::ReaderStream::with_capacity(
                        tokio::fs::File::from_std(file.into_parts().0),
                        256 << 10,
                    )
                    .inspect(move |chunk| {
                        activity.tick();
                        if let (Some(b), Ok(c)) = (&bar, chunk) {
                            b.inc(c.len() as u64);
                        }
                    });
                    Ok(http
                        .put(location.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                        .header(reqwest::header::CONTENT_LENGTH, size)
                        .body(reqwest::Body::wrap_stream(stream)))
                })
                .await?;
            if response.status() != reqwest::StatusCode::CREATED {
                return Err(fail(response, what).await);
            }
            Ok(())
        })
        .await?;
        Ok(Placed::Uploaded)
    }

    /// The blob's bytes in the local store: there already, or fetched from
    /// the repository it is known to live in (a base layer).
    async fn local_bytes(
        &self,
        blob: &PushBlob,
        store: &BlobStore,
        what: &str,
    ) -> Result<std::path::PathBuf, RegistryError> {
        let path = store.path(&blob.descriptor.digest);
        if path.exists() {
            return Ok(path);
        }
        match &blob.source {
            Some(src) => self.fetch_blob(src, &blob.descriptor, store).await,
            None => Err(RegistryError::invalid(
                what,
                "the blob is neither in the local store nor in a known repository",
            )),
        }
    }

    async fn put_manifest(
        &self,
        ep: &Endpoint,
        dest: &Reference,
        image: &PushImage,
    ) -> Result<(), RegistryError> {
        let what = format!("pushing the manifest of {dest}");
        let url = format!(
            "{}/v2/{}/manifests/{}",
            ep.base,
            dest.repository,
            dest.tag_or_latest()
        );
        let scopes = [scope(&dest.repository, true)];
        let attempts = BUILT_IN_ATTEMPTS + self.settings.push_retries;
        self.retrying(attempts, &what, || async {
            let response = self
                .send(ep, &scopes, &what, |http| {
                    Ok(http
                        .put(&url)
                        .header(reqwest::header::CONTENT_TYPE, &image.manifest_media_type)
                        .body(image.manifest_bytes.clone()))
                })
                .await?;
            if !response.status().is_success() {
                return Err(fail(response, &what).await);
            }
            Ok(())
        })
        .await
    }
}

/// Blobs that pushes running in the background (the layer cache's
/// uploads) are placing in a repository, so that a later push to another
/// repository of that registry mounts them from there rather than sending
/// them again: digest → the repository, how many pushes of it are
/// running, and whether one finished.
#[derive(Debug, Default)]
pub struct Placements {
    blobs: std::sync::Mutex<BTreeMap<Digest, CacheBlob>>,
    changed: std::sync::Condvar,
}

#[derive(Debug)]
struct CacheBlob {
    repo: Reference,
    running: usize,
    placed: bool,
}

/// One background push's blobs; they count as running until `done` (or
/// the push's thread ends without saying: a failure).
#[derive(Debug)]
pub struct Placing {
    blobs: std::sync::Arc<Placements>,
    digests: Vec<Digest>,
    placed: Option<bool>,
}

impl Placements {
    /// Counts `image`'s blobs as being placed in `repo`.
    pub fn start(
        this: &std::sync::Arc<Placements>,
        repo: &Reference,
        image: &PushImage,
    ) -> Placing {
        let digests: Vec<Digest> = image
            .blobs
            .iter()
            .map(|b| b.descriptor.digest.clone())
            .collect();
        let mut blobs = this.lock();
        for d in &digests {
            blobs
                .entry(d.clone())
                .or_insert_with(|| CacheBlob {
                    repo: repo.clone(),
                    running: 0,
                    placed: false,
                })
                .running += 1;
        }
        Placing {
            blobs: std::sync::Arc::clone(this),
            digests,
            placed: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Digest, CacheBlob>> {
        self.blobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The repository a background push placed `digest` in, when `wanted`
    /// takes it; waits while pushes of it are running.
    pub fn placed(
        &self,
        digest: &Digest,
        wanted: &dyn Fn(&Reference) -> bool,
    ) -> Option<Reference> {
        let mut blobs = self.lock();
        loop {
            let blob = blobs.get(digest).filter(|b| wanted(&b.repo))?;
            if blob.placed {
                return Some(blob.repo.clone());
            }
            if blob.running == 0 {
                return None;
            }
            log::debug!(
                "waiting for the upload of {digest} to {}, to mount it",
                blob.repo
            );
            blobs = self
                .changed
                .wait(blobs)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }
}

impl Placing {
    /// The push ended: its blobs are in the repository if `placed`.
    pub fn done(mut self, placed: bool) {
        self.placed = Some(placed);
    }
}

impl Drop for Placing {
    fn drop(&mut self) {
        let placed = self.placed.unwrap_or(false);
        let mut blobs = self.blobs.lock();
        for d in &self.digests {
            if let Some(b) = blobs.get_mut(d) {
                b.running = b.running.saturating_sub(1);
                b.placed |= placed;
            }
        }
        drop(blobs);
        self.blobs.changed.notify_all();
    }
}

/// Whether a manifest push failed because the tag is immutable, by the
/// texts the registries send (kaniko's fork matches the first two):
/// Google Artifact Registry, Amazon ECR, Harbor.
pub(crate) fn is_immutable_tag_error(e: &RegistryError) -> bool {
    const TEXTS: [&str; 3] = [
        "the repository has enabled tag immutability",
        "cannot be overwritten because the tag is immutable",
        "configured as immutable",
    ];
    let text = e.to_string().to_lowercase();
    TEXTS.iter().any(|t| text.contains(t))
}

/// Whether an upload failed in a way only a new upload session mends:
/// the registry says the bytes it got do not match the digest or size, or
/// it no longer knows the session (a PUT that broke off part-way may have
/// left either behind).
fn restarts_upload(e: &RegistryError) -> bool {
    const CODES: [&str; 4] = [
        "DIGEST_INVALID",
        "SIZE_INVALID",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
    ];
    match e {
        RegistryError::Status {
            status: 400 | 404 | 416,
            message,
            ..
        } => CODES.iter().any(|c| message.starts_with(c)),
        _ => false,
    }
}

/// The upload URL from a 202's `Location` (absolute or relative to the
/// registry), with the digest that completes it.
fn upload_location(
    response: &reqwest::Response,
    base: &str,
    digest: &Digest,
    what: &str,
) -> Result<reqwest::Url, RegistryError> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|h| h.to_str().ok())
        .ok_or_else(|| RegistryError::invalid(what, "the upload response has no Location"))?;
    let base = reqwest::Url::parse(base)
        .map_err(|e| RegistryError::invalid(what, format!("bad registry URL: {e}")))?;
    let mut url = base
        .join(location)
        .map_err(|e| RegistryError::invalid(what, format!("bad upload Location: {e}")))?;
    url.query_pairs_mut().append_pair("digest", digest.as_str());
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immutable_tag_errors_are_told_apart() {
        let status = |status, message: &str| RegistryError::Status {
            what: "pushing the manifest of r/app:1".to_string(),
            status,
            message: message.to_string(),
        };
        for text in [
            "TAG_INVALID: The image tag '1' already exists in the 'app' repository and cannot be overwritten because the tag is immutable.",
            "MANIFEST_INVALID: The repository has enabled tag immutability",
            "PRECONDITION: The image app:1 configured as immutable, cannot be pushed",
        ] {
            assert!(is_immutable_tag_error(&status(400, text)), "{text}");
        }
        assert!(!is_immutable_tag_error(&status(
            400,
            "TAG_INVALID: manifest tag did not match URI"
        )));
        assert!(!is_immutable_tag_error(&status(
            403,
            "DENIED: requested access to the resource is denied"
        )));
    }

    #[test]
    fn a_blob_being_placed_is_waited_for_and_mounted_only_once_placed() {
        use std::sync::Arc;
        let cache = Reference::parse("127.0.0.1:5000/app/cache").unwrap();
        let blob = |n: u8| PushBlob {
            descriptor: Descriptor::new(
                crate::image::manifest::OCI_LAYER_GZIP,
                Digest::sha256(&[n]),
                1,
            ),
            source: None,
        };
        let image = |blobs: Vec<PushBlob>| PushImage {
            manifest_bytes: Vec::new(),
            manifest_media_type: String::new(),
            blobs,
        };
        let placements = Arc::new(Placements::default());
        let any = |_: &Reference| true;
        let (one, two) = (Digest::sha256(&[1]), Digest::sha256(&[2]));
        // nothing placing it: nothing to mount, no wait
        assert_eq!(placements.placed(&one, &any), None);
        let first = Placements::start(&placements, &cache, &image(vec![blob(1)]));
        let second = Placements::start(&placements, &cache, &image(vec![blob(1), blob(2)]));
        let waiter = {
            let placements = Arc::clone(&placements);
            std::thread::spawn(move || placements.placed(&Digest::sha256(&[1]), &|_| true))
        };
        // the first push fails, the second places both
        first.done(false);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!waiter.is_finished(), "it should wait for the second push");
        second.done(true);
        assert_eq!(waiter.join().unwrap(), Some(cache.clone()));
        assert_eq!(placements.placed(&two, &any), Some(cache.clone()));
        // a repository on a registry the push does not go to is no use
        assert_eq!(
            placements.placed(&two, &|r| r.registry == "elsewhere"),
            None
        );
        // a push whose thread ended without a word placed nothing
        let three = Digest::sha256(&[3]);
        drop(Placements::start(
            &placements,
            &cache,
            &image(vec![blob(3)]),
        ));
        assert_eq!(placements.placed(&three, &any), None);
    }

    #[test]
    fn only_a_refused_or_lost_upload_starts_over() {
        let status = |status, message: &str| RegistryError::Status {
            what: String::new(),
            status,
            message: message.to_string(),
        };
        assert!(restarts_upload(&status(
            400,
            "DIGEST_INVALID: provided digest did not match uploaded content"
        )));
        assert!(restarts_upload(&status(
            404,
            "BLOB_UPLOAD_UNKNOWN: blob upload unknown to registry"
        )));
        assert!(!restarts_upload(&status(
            404,
            "NAME_UNKNOWN: repository name not known"
        )));
        assert!(!restarts_upload(&status(
            403,
            "DENIED: requested access to the resource is denied"
        )));
        assert!(!restarts_upload(&status(500, "DIGEST_INVALID")));
    }
}
