//! Writes an image as an OCI image layout directory (`oci-layout`,
//! `index.json`, `blobs/sha256/…`), which `skopeo copy oci:DIR` and
//! `umoci unpack --image DIR:TAG` read; and the pieces a layout that more
//! than one writer shares is made of (the layer cache's `oci:` form):
//! blobs and the index are renamed into place whole, so a reader never
//! sees half of one.

use super::manifest::{Descriptor, Index, OCI_INDEX};
use super::{BlobStore, BuiltImage, Digest, ImageError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The index annotation naming a manifest (the tag in `oci:DIR:TAG`).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Writes `image` into the layout at `dir`, one index entry per tag in
/// `tags` (`latest` when none). An existing layout's other blobs are kept;
/// its index is replaced.
pub fn write_oci_layout(
    dir: &Path,
    store: &BlobStore,
    image: &BuiltImage,
    tags: &[String],
) -> Result<(), ImageError> {
    init_layout(dir)?;
    let digests = std::iter::once(&image.manifest.config.digest)
        .chain(image.manifest.layers.iter().map(|l| &l.digest))
        .chain(std::iter::once(&image.manifest_digest));
    for digest in digests {
        put_blob(dir, &store.path(digest), digest)?;
    }
    let default_tag = ["latest".to_string()];
    let tags = if tags.is_empty() {
        &default_tag[..]
    } else {
        tags
    };
    let manifest = Descriptor::new(
        &image.manifest.media_type,
        image.manifest_digest.clone(),
        image.manifest_bytes.len() as u64,
    );
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: tags.iter().map(|tag| tagged(&manifest, tag)).collect(),
    };
    write_index(dir, &index)
}

/// Makes `dir` an OCI layout (its `blobs/sha256` and `oci-layout`) unless
/// it is one already.
pub fn init_layout(dir: &Path) -> Result<(), ImageError> {
    fs_err::create_dir_all(dir.join("blobs").join("sha256"))?;
    let marker = dir.join("oci-layout");
    if !marker.exists() {
        replace_file(dir, &marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    }
    Ok(())
}

/// Where blob `digest` of the layout at `dir` lives.
pub fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs")
        .join(digest.algorithm())
        .join(digest.hex())
}

/// Puts the file `from` (whose content is `digest`) into the layout at
/// `dir`: a hard link on the same filesystem, else a copy renamed into
/// place. A blob already there is left alone (same digest, same bytes).
pub fn put_blob(dir: &Path, from: &Path, digest: &Digest) -> Result<(), ImageError> {
    let to = blob_path(dir, digest);
    if to.exists() {
        return Ok(());
    }
    match fs_err::hard_link(from, &to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(_) => {
            let tmp = temp_in(dir)?;
            fs_err::copy(from, tmp.path())?;
            persist(tmp, &to)
        }
    }
}

/// Puts small bytes (a manifest) into the layout at `dir`; returns their
/// digest.
pub fn put_blob_bytes(dir: &Path, bytes: &[u8]) -> Result<Digest, ImageError> {
    let digest = Digest::sha256(bytes);
    let to = blob_path(dir, &digest);
    if !to.exists() {
        replace_file(dir, &to, bytes)?;
    }
    Ok(digest)
}

/// The layout's `index.json` (an empty index when there is none yet).
pub fn read_index(dir: &Path) -> Result<Index, ImageError> {
    let path = dir.join("index.json");
    match fs_err::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            ImageError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: malformed: {e}", path.display()),
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: Vec::new(),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Replaces the layout's `index.json` whole (written beside it, then
/// renamed over it).
pub fn write_index(dir: &Path, index: &Index) -> Result<(), ImageError> {
    replace_file(dir, &dir.join("index.json"), &serde_json::to_vec(index)?)
}

/// `manifest` named `tag` for an index.
pub fn tagged(manifest: &Descriptor, tag: &str) -> Descriptor {
    let mut d = manifest.clone();
    d.annotations = Some(BTreeMap::from([(REF_NAME.to_string(), tag.to_string())]));
    d
}

/// The tag an index entry names, if any.
pub fn tag_of(d: &Descriptor) -> Option<&str> {
    d.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
}

/// Writes `bytes` to a temporary file in `dir`, flushed to disk, and
/// renames it to `to`.
fn replace_file(dir: &Path, to: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = temp_in(dir)?;
    fs_err::write(tmp.path(), bytes)?;
    tmp.as_file().sync_all()?;
    persist(tmp, to)
}

/// A temporary file at the top of the layout `dir` (outside `blobs/`,
/// where tools look for digests only).
fn temp_in(dir: &Path) -> Result<tempfile::NamedTempFile, ImageError> {
    tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| {
            ImageError::Io(std::io::Error::new(
                e.kind(),
                format!("creating a temporary file in {}: {e}", dir.display()),
            ))
        })
}

fn persist(tmp: tempfile::NamedTempFile, to: &Path) -> Result<(), ImageError> {
    tmp.persist(to).map_err(|e| {
        ImageError::Io(std::io::Error::new(
            e.error.kind(),
            format!("renaming into {}: {}", to.display(), e.error),
        ))
    })?;
    Ok(())
}
