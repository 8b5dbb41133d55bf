//! What a cache entry is: an image with the step's one layer (none when
//! the step changed no file) whose manifest annotations carry what a
//! lookup needs: the layer's diff ID, the step's history entry, when it
//! was stored (for `--cache-ttl`) and the inputs of its key (to explain a
//! later miss: as labels, and input by input as short digests in one
//! annotation, `dev.smelt.cache.record`, at most 48 KiB). Made here (`Cache::entry_image`) and read here
//! (`parse_entry`); `remote.rs` only moves the bytes.

use super::key::{InputRecord, KeyInputs, LABEL};
use super::{Cache, EntrySource};
use crate::engine::{EngineError, Platform};
use crate::image::config::RootFs;
use crate::image::{
    BlobStore, BuiltImage, Descriptor, Digest, History, ImageConfig, Manifest, MediaTypes,
};
use crate::registry::{PushImage, RegistryError};
use std::collections::BTreeMap;

/// A cache entry found in the registry (or layout), as its manifest tells
/// it (one request per lookup): the step's layer (none when the step changed no
/// file), its diff ID and history entry, when it was stored, and the
/// inputs of its key.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub source: EntrySource,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
    pub history: History,
    pub stored: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

impl Cache {
    /// The image that stores a step's result under its key: `layer` (with
    /// its diff ID) if the step made one, and its history entry.
    pub fn entry_image(
        &self,
        store: &BlobStore,
        platform: &Platform,
        layer: Option<(Descriptor, Digest)>,
        history: History,
        inputs: &KeyInputs,
    ) -> Result<PushImage, EngineError> {
        let (layers, diff_ids) = match layer {
            Some((d, diff)) => (vec![d], vec![diff]),
            None => (Vec::new(), Vec::new()),
        };
        let stored = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .map_err(|e| EngineError::Invalid(e.to_string()))?
            .to_string();
        // the manifest tells a lookup everything (one request); the config
        // says the same for other tools
        let mut annotations = inputs.labels();
        annotations.insert(format!("{LABEL}stored"), stored.clone());
        annotations.insert(
            format!("{LABEL}history"),
            serde_json::to_string(&history).map_err(std::io::Error::other)?,
        );
        if let Some(diff) = diff_ids.first() {
            annotations.insert(format!("{LABEL}diff-id"), diff.to_string());
        }
        // the manifest only: a lookup reads nothing else
        if let Some(record) = inputs.record.to_annotation() {
            annotations.insert(format!("{LABEL}record"), record);
        }
        let mut config = ImageConfig {
            created: Some(stored),
            architecture: platform.arch.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            rootfs: RootFs {
                diff_ids,
                ..RootFs::default()
            },
            history: vec![history],
            ..ImageConfig::default()
        };
        config.config.labels = Some(inputs.labels());
        let image =
            BuiltImage::assemble(store, &config, layers, MediaTypes::Oci, Some(annotations))?;
        // the step's layer was made in this build: nowhere else holds it
        Ok(PushImage::of(&image, |_| None))
    }
}

impl CacheEntry {
    /// The per-input digests the entry was stored with (none from an
    /// entry older than them).
    pub fn record(&self) -> Option<InputRecord> {
        self.annotations
            .get(&format!("{LABEL}record"))
            .and_then(|r| serde_json::from_str(r).ok())
    }
}

/// Reads a cache entry from its manifest.
pub fn parse_entry(r: &EntrySource, bytes: &[u8]) -> Result<CacheEntry, RegistryError> {
    let bad = |message: String| RegistryError::Invalid {
        what: r.to_string(),
        message,
    };
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("the cache entry's manifest is malformed: {e}")))?;
    let annotations = manifest.annotations.unwrap_or_default();
    let history = annotations
        .get(&format!("{LABEL}history"))
        .and_then(|h| serde_json::from_str::<History>(h).ok())
        .ok_or_else(|| bad("the cache entry has no history (not made by smelt?)".to_string()))?;
    let diff_ids = match annotations.get(&format!("{LABEL}diff-id")) {
        Some(d) => vec![Digest::parse(d).map_err(|e| bad(e.to_string()))?],
        None => Vec::new(),
    };
    if diff_ids.len() != manifest.layers.len() {
        return Err(bad(
            "the cache entry should hold at most one layer, with its diff ID".to_string(),
        ));
    }
    Ok(CacheEntry {
        source: r.clone(),
        layers: manifest
            .layers
            .iter()
            .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
            .collect(),
        diff_ids,
        history,
        stored: annotations.get(&format!("{LABEL}stored")).cloned(),
        annotations,
    })
}
