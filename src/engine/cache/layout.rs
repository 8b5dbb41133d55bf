//! The layer cache in an OCI image layout on disk (`--cache-repo
//! oci:DIR`, kaniko's form), for runners with a persistent volume and no
//! registry to spare. An entry is what it is in a registry (`entry.rs`):
//! its manifest, config and layer are blobs of the layout, and
//! `index.json` names the manifest by the tag (the key, or a `next-` tag)
//! in an `org.opencontainers.image.ref.name` annotation, one index entry
//! per tag, replaced when the tag is stored again. `skopeo inspect
//! oci:DIR:KEY` reads an entry.
//!
//! Builds may share a layout at the same time: blobs are renamed into
//! place whole, and `index.json` is read, changed and renamed over while
//! holding an exclusive `flock` on `index.json.lock`, so no entry a
//! concurrent build stored is lost and no reader sees half an index.
//! Readers take no lock. A hit's layer is hard-linked (else copied) into
//! the build's store, from where it is applied and pushed; nothing is
//! ever deleted here (entries past `--cache-ttl` are misses).

use crate::image::layout::{
    blob_path, init_layout, put_blob, put_blob_bytes, read_index, tag_of, tagged, write_index,
};
use crate::image::{BlobStore, Descriptor, Digest};
use crate::registry::{PushImage, RegistryError};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An OCI layout holding cache entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutCache {
    dir: PathBuf,
}

impl LayoutCache {
    /// Opens the layout at `dir` (absolute), making it (and the
    /// directories above it) when missing.
    pub fn open(dir: &Path) -> Result<LayoutCache, RegistryError> {
        init_layout(dir).map_err(|e| RegistryError::Io {
            what: format!("the layer cache oci:{}", dir.display()),
            source: std::io::Error::other(e),
        })?;
        Ok(LayoutCache {
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn what(&self) -> String {
        format!("oci:{}", self.dir.display())
    }

    fn io(&self, what: String) -> impl FnOnce(crate::image::ImageError) -> RegistryError {
        move |e| RegistryError::Io {
            what,
            source: std::io::Error::other(e),
        }
    }

    /// The manifests tagged `tags`, read from one look at the index. A tag
    /// whose manifest blob is missing or damaged is a miss, with a
    /// warning; an unreadable index is an error for every tag.
    pub fn manifests(&self, tags: &[String]) -> Vec<Result<Option<Vec<u8>>, RegistryError>> {
        let index = match read_index(&self.dir) {
            Ok(index) => index,
            Err(e) => {
                return tags
                    .iter()
                    .map(|_| {
                        Err(RegistryError::Invalid {
                            what: self.what(),
                            message: e.to_string(),
                        })
                    })
                    .collect();
            }
        };
        // the last entry for a tag wins (there is one, unless another
        // tool wrote the index)
        let by_tag: HashMap<&str, &Descriptor> = index
            .manifests
            .iter()
            .filter_map(|d| Some((tag_of(d)?, d)))
            .collect();
        tags.iter()
            .map(|tag| {
                let Some(d) = by_tag.get(tag.as_str()) else {
                    return Ok(None);
                };
                let path = blob_path(&self.dir, &d.digest);
                match fs_err::read(&path) {
                    Ok(bytes) if Digest::sha256(&bytes) == d.digest => Ok(Some(bytes)),
                    Ok(_) => {
                        log::warn!(
                            "cache entry {}:{tag}: its manifest {} does not match its digest; \
                             counted as a miss",
                            self.what(),
                            path.display()
                        );
                        Ok(None)
                    }
                    Err(e) => {
                        log::warn!("cache entry {}:{tag}: {e}; counted as a miss", self.what());
                        Ok(None)
                    }
                }
            })
            .collect()
    }

    /// Brings `layer` from the layout into `store` (a hard link, else a
    /// copy); `false` when the layout does not have it.
    pub fn link_into(&self, layer: &Descriptor, store: &BlobStore) -> Result<bool, RegistryError> {
        let to = store.path(&layer.digest);
        if to.exists() {
            return Ok(true);
        }
        let from = blob_path(&self.dir, &layer.digest);
        let what = || format!("blob {} of {}", layer.digest, self.what());
        match fs_err::hard_link(&from, &to) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !from.exists() => {
                return Ok(false);
            }
            // another filesystem, or links not allowed: a copy
            Err(_) => {}
        }
        let tmp = store.temp_file().map_err(self.io(what()))?;
        match fs_err::copy(&from, tmp.path()) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(RegistryError::Io {
                    what: what(),
                    source: e,
                });
            }
        }
        store.commit(tmp, &layer.digest).map_err(self.io(what()))?;
        Ok(true)
    }

    /// Stores `image` (its blobs in `store`) under each of `tags`,
    /// replacing what they named before. Returns the manifest's digest.
    pub fn store(
        &self,
        tags: &[String],
        image: &PushImage,
        store: &BlobStore,
    ) -> Result<Digest, RegistryError> {
        let key = tags.first().map_or("", String::as_str);
        let what = || format!("cache entry {}:{key}", self.what());
        for blob in &image.blobs {
            let digest = &blob.descriptor.digest;
            put_blob(&self.dir, &store.path(digest), digest).map_err(self.io(what()))?;
        }
        let digest = put_blob_bytes(&self.dir, &image.manifest_bytes).map_err(self.io(what()))?;
        let manifest = Descriptor::new(
            &image.manifest_media_type,
            digest.clone(),
            image.manifest_bytes.len() as u64,
        );
        let lock_path = self.dir.join("index.json.lock");
        let lock = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| RegistryError::Io {
                what: what(),
                source: e,
            })?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
            RegistryError::Io {
                what: format!("locking {}", lock_path.display()),
                source: e.into(),
            }
        })?;
        // under the lock: what other builds stored since is kept
        let mut index = read_index(&self.dir).map_err(self.io(what()))?;
        index
            .manifests
            .retain(|d| tag_of(d).is_none_or(|t| !tags.iter().any(|tag| tag == t)));
        index
            .manifests
            .extend(tags.iter().map(|tag| tagged(&manifest, tag)));
        write_index(&self.dir, &index).map_err(self.io(what()))?;
        drop(lock);
        log::debug!("stored {}", what());
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::push::PushBlob;

    fn image(store: &BlobStore, layer: &[u8], n: u8) -> PushImage {
        let layer = store.put(layer).unwrap();
        let config = store.put(&[n]).unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": crate::image::manifest::OCI_MANIFEST,
            "config": {"mediaType": crate::image::manifest::OCI_CONFIG, "digest": config.to_string(), "size": 1},
            "layers": [{"mediaType": crate::image::manifest::OCI_LAYER_TAR, "digest": layer.to_string(), "size": 1}],
        });
        let blob = |d: Digest| PushBlob {
            descriptor: Descriptor::new("x", d, 1),
            source: None,
        };
        PushImage {
            manifest_bytes: serde_json::to_vec(&manifest).unwrap(),
            manifest_media_type: crate::image::manifest::OCI_MANIFEST.to_string(),
            blobs: vec![blob(config), blob(layer)],
        }
    }

    #[test]
    fn entries_are_tags_of_one_index_replaced_when_stored_again() {
        let t = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&t.path().join("store")).unwrap();
        let cache = LayoutCache::open(&t.path().join("deep/cache")).unwrap();
        let tags = |a: &str, b: &str| [a.to_string(), b.to_string()];
        let one = image(&store, b"one", 1);
        let two = image(&store, b"two", 2);
        cache.store(&tags("k1", "next-p"), &one, &store).unwrap();
        cache.store(&tags("k2", "next-p"), &two, &store).unwrap();
        let got = cache.manifests(&["k1".into(), "k2".into(), "next-p".into(), "k3".into()]);
        let got: Vec<Option<Vec<u8>>> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(got[0].as_deref(), Some(&one.manifest_bytes[..]));
        assert_eq!(got[1].as_deref(), Some(&two.manifest_bytes[..]));
        // the newest entry after the same previous key
        assert_eq!(got[2].as_deref(), Some(&two.manifest_bytes[..]));
        assert!(got[3].is_none());
        let index = read_index(cache.dir()).unwrap();
        assert_eq!(index.manifests.len(), 3, "{index:?}");

        // a hit's layer comes into another store
        let other = BlobStore::open(&t.path().join("other")).unwrap();
        let layer = &one.blobs[1].descriptor;
        assert!(cache.link_into(layer, &other).unwrap());
        assert_eq!(fs_err::read(other.path(&layer.digest)).unwrap(), b"one");
        let missing = Descriptor::new("x", Digest::sha256(b"none"), 4);
        assert!(!cache.link_into(&missing, &other).unwrap());

        // a damaged manifest is a miss, not an error
        let d = Digest::sha256(&one.manifest_bytes);
        fs_err::write(blob_path(cache.dir(), &d), b"damaged").unwrap();
        assert!(
            cache.manifests(&["k1".into()])[0]
                .as_ref()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn concurrent_stores_keep_every_tag() {
        let t = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&t.path().join("store")).unwrap();
        let cache = LayoutCache::open(&t.path().join("cache")).unwrap();
        std::thread::scope(|s| {
            for n in 0..8u8 {
                let (cache, store) = (&cache, &store);
                s.spawn(move || {
                    let img = image(store, &[b'l', n], n);
                    cache.store(&[format!("k{n}")], &img, store).unwrap();
                });
            }
        });
        let tags: Vec<String> = (0..8).map(|n| format!("k{n}")).collect();
        assert!(
            cache
                .manifests(&tags)
                .into_iter()
                .all(|m| m.unwrap().is_some())
        );
    }
}
