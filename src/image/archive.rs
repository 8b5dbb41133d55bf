//! Writes an image as a docker-archive tarball (the `docker save` format,
//! as kaniko's `--tar-path` writes it), which `docker load`, `podman load`
//! and `skopeo copy docker-archive:…` read. Layers go in compressed, as the
//! registry holds them; readers decompress them.

use super::{BlobStore, BuiltImage, ImageError};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveEntry<'a> {
    config: String,
    repo_tags: &'a [String],
    layers: Vec<String>,
}

/// Writes `image` to the tarball `path`, tagged with `repo_tags`.
pub fn write_docker_archive(
    path: &Path,
    store: &BlobStore,
    image: &BuiltImage,
    repo_tags: &[String],
) -> Result<(), ImageError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
    }
    let file = fs_err::File::create(path)?;
    let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
    let config_name = format!("{}.json", image.manifest.config.digest.hex());
    append_bytes(&mut tar, &config_name, &image.config_bytes)?;
    let mut layers = Vec::new();
    for layer in &image.manifest.layers {
        let ext = if layer.media_type.ends_with("zstd") {
            "tar.zst"
        } else {
            "tar.gz"
        };
        let name = format!("{}.{ext}", layer.digest.hex());
        let mut blob = fs_err::File::open(store.path(&layer.digest))?;
        let mut header = file_header(layer.size);
        tar.append_data(&mut header, &name, &mut blob)?;
        layers.push(name);
    }
    let manifest = [ArchiveEntry {
        config: config_name,
        repo_tags,
        layers,
    }];
    append_bytes(&mut tar, "manifest.json", &serde_json::to_vec(&manifest)?)?;
    let mut out = tar.into_inner()?;
    std::io::Write::flush(&mut out)?;
    out.into_inner()
        .map_err(|e| ImageError::Io(e.into_error()))?
        .sync_all()?;
    Ok(())
}

fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h
}

fn append_bytes<W: std::io::Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
) -> Result<(), ImageError> {
    let mut header = file_header(bytes.len() as u64);
    tar.append_data(&mut header, name, bytes)?;
    Ok(())
}
