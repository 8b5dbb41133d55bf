//! The base-image cache directory (kaniko's `--cache-dir`), which the
//! warmer (`smelt warm`) fills and builds read base images from before
//! asking a registry. It is an OCI image layout, so `skopeo` and `umoci`
//! read it too: `blobs/sha256/…`, and `index.json` with one entry per
//! image and platform, named by its full reference
//! (`org.opencontainers.image.ref.name`) and stamped with when it was
//! stored (`--cache-ttl` applies). Many builds may share the directory (a
//! persistent volume): the index is replaced by a rename under a lock.

use super::{EngineError, Platform};
use crate::image::manifest::{Descriptor, Index, Manifest, OCI_INDEX};
use crate::image::{BlobStore, Digest};
use crate::registry::Reference;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const STORED: &str = "dev.smelt.warmed";

/// A base image found in the cache directory.
#[derive(Debug, Clone)]
pub struct Warmed {
    pub digest: Digest,
    pub manifest: Manifest,
    pub config_bytes: Vec<u8>,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct BaseCache {
    dir: PathBuf,
    pub store: BlobStore,
}

impl BaseCache {
    /// Opens (creating) the directory.
    pub fn open(dir: &Path) -> Result<BaseCache, EngineError> {
        fs_err::create_dir_all(dir)?;
        let layout = dir.join("oci-layout");
        if !layout.exists() {
            fs_err::write(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(BaseCache {
            dir: dir.to_path_buf(),
            store: BlobStore::open(&dir.join("blobs"))?,
        })
    }

    /// A directory that exists and holds an index, else `None`.
    pub fn existing(dir: &Path) -> Option<BaseCache> {
        dir.join("index.json")
            .is_file()
            .then(|| BaseCache::open(dir).ok())
            .flatten()
    }

    fn index(&self) -> Index {
        fs_err::read(self.dir.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.to_string()),
                manifests: Vec::new(),
            })
    }

    /// The entry for `reference` on `platform`, if stored less than `ttl`
    /// ago and whole (manifest, config and every layer present).
    pub fn find(
        &self,
        reference: &Reference,
        platform: &Platform,
        ttl: std::time::Duration,
    ) -> Option<Warmed> {
        let name = reference.to_string();
        let want = platform.descriptor();
        let entry = self.index().manifests.into_iter().find(|d| {
            let ann = d.annotations.clone().unwrap_or_default();
            ann.get(REF_NAME) == Some(&name)
                && d.platform
                    .as_ref()
                    .is_some_and(|p| crate::registry::platform_matches(&want, p))
        })?;
        let stored = entry.annotations.as_ref().and_then(|a| a.get(STORED))?;
        if !super::options::stored_within(stored, ttl) {
            log::info!("{name} in the cache directory is older than --cache-ttl");
            return None;
        }
        let manifest_bytes = fs_err::read(self.store.path(&entry.digest)).ok()?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).ok()?;
        let config_bytes = fs_err::read(self.store.path(&manifest.config.digest)).ok()?;
        if manifest
            .layers
            .iter()
            .any(|l| !self.store.path(&l.digest).exists())
        {
            return None;
        }
        Some(Warmed {
            digest: entry.digest,
            manifest,
            config_bytes,
        })
    }

    /// Records `manifest_bytes` (already in the store, with its config
    /// and layers) as `reference` for `platform`, replacing an older entry.
    pub fn add(
        &self,
        reference: &Reference,
        platform: &Platform,
        manifest: &Manifest,
        manifest_bytes: &[u8],
    ) -> Result<Digest, EngineError> {
        let digest = self.store.put(manifest_bytes)?;
        let lock = fs_err::File::create(self.dir.join(".lock"))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| EngineError::Invalid(format!("locking {}: {e}", self.dir.display())))?;
        let mut index = self.index();
        let name = reference.to_string();
        let want = platform.descriptor();
        index.manifests.retain(|d| {
            let ann = d.annotations.clone().unwrap_or_default();
            !(ann.get(REF_NAME) == Some(&name) && d.platform.as_ref() == Some(&want))
        });
        let mut d = Descriptor::new(
            &manifest.media_type,
            digest.clone(),
            manifest_bytes.len() as u64,
        );
        d.platform = Some(want);
        d.annotations = Some(BTreeMap::from([
            (REF_NAME.to_string(), name),
            (STORED.to_string(), jiff::Timestamp::now().to_string()),
        ]));
        index.manifests.push(d);
        let tmp = self.dir.join(".index.json.tmp");
        fs_err::write(
            &tmp,
            serde_json::to_vec_pretty(&index).map_err(std::io::Error::other)?,
        )?;
        fs_err::rename(&tmp, self.dir.join("index.json"))?;
        Ok(digest)
    }

    /// Puts the image's blobs into `store` (hard links, else copies).
    pub fn link_into(&self, warmed: &Warmed, store: &BlobStore) -> Result<(), EngineError> {
        for l in &warmed.manifest.layers {
            store.link_from(&self.store, &l.digest)?;
        }
        Ok(())
    }
}
