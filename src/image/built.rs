//! A finished image: its manifest, config and layer blobs in a [`BlobStore`].

use super::manifest::{Descriptor, Manifest, MediaTypes};
use super::{BlobStore, Digest, ImageConfig, ImageError};
use std::collections::BTreeMap;

/// An image whose blobs are all in the local store.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The serialised config, as stored (and digested).
    pub config_bytes: Vec<u8>,
    pub manifest: Manifest,
    pub manifest_bytes: Vec<u8>,
    pub manifest_digest: Digest,
}

impl BuiltImage {
    /// Serialises `config`, stores it, and writes a manifest over `layers`
    /// (whose blobs must already be in `store`) with `annotations`.
    pub fn assemble(
        store: &BlobStore,
        config: &ImageConfig,
        layers: Vec<Descriptor>,
        types: MediaTypes,
        annotations: Option<BTreeMap<String, String>>,
    ) -> Result<BuiltImage, ImageError> {
        let config_bytes = serde_json::to_vec(config)?;
        let config_digest = store.put(&config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: types.manifest().to_string(),
            config: Descriptor::new(types.config(), config_digest, config_bytes.len() as u64),
            layers,
            annotations,
        };
        let manifest_bytes = serde_json::to_vec(&manifest)?;
        let manifest_digest = store.put(&manifest_bytes)?;
        Ok(BuiltImage {
            config_bytes,
            manifest,
            manifest_bytes,
            manifest_digest,
        })
    }
}
