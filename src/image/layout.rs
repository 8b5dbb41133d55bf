//! Writes an image as an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), which `skopeo copy oci:DIR` and
//! `umoci unpack --image DIR:TAG` read.

use super::manifest::{Descriptor, Index, OCI_INDEX};
use super::{BlobStore, BuiltImage, ImageError};
use std::collections::BTreeMap;
use std::path::Path;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Writes `image` into the layout at `dir`, one index entry per tag in
/// `tags` (`latest` when none). An existing layout's other blobs are kept;
/// its index is replaced.
pub fn write_oci_layout(
    dir: &Path,
    store: &BlobStore,
    image: &BuiltImage,
    tags: &[String],
) -> Result<(), ImageError> {
    let blobs = dir.join("blobs").join("sha256");
    fs_err::create_dir_all(&blobs)?;
    fs_err::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    let digests = std::iter::once(&image.manifest.config.digest)
        .chain(image.manifest.layers.iter().map(|l| &l.digest))
        .chain(std::iter::once(&image.manifest_digest));
    for digest in digests {
        link_or_copy(&store.path(digest), &blobs.join(digest.hex()))?;
    }
    let default_tag = ["latest".to_string()];
    let tags = if tags.is_empty() {
        &default_tag[..]
    } else {
        tags
    };
    let manifests = tags
        .iter()
        .map(|tag| {
            let mut d = Descriptor::new(
                &image.manifest.media_type,
                image.manifest_digest.clone(),
                image.manifest_bytes.len() as u64,
            );
            d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), tag.clone())]));
            d
        })
        .collect();
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests,
    };
    fs_err::write(dir.join("index.json"), serde_json::to_vec(&index)?)?;
    Ok(())
}

/// Hard-links `from` to `to` (same filesystem), else copies; an existing
/// `to` is left alone (same digest, same bytes).
fn link_or_copy(from: &Path, to: &Path) -> Result<(), ImageError> {
    if to.exists() {
        return Ok(());
    }
    if fs_err::hard_link(from, to).is_err() {
        fs_err::copy(from, to)?;
    }
    Ok(())
}
