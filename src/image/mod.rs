//! OCI and Docker image types (config, manifest, descriptors, media types),
//! digests, the local blob store, and the writers for OCI layouts and
//! docker-archive tarballs.
//!
//! It knows nothing of Dockerfiles or how a build runs; the engine hands it
//! finished blobs.

pub mod archive;
pub mod built;
pub mod config;
pub mod digest;
pub mod layout;
pub mod manifest;
pub mod store;

pub use archive::write_docker_archive;
pub use built::BuiltImage;
pub use config::{History, ImageConfig, RunConfig};
pub use digest::{Digest, DigestError, HashingWriter};
pub use layout::write_oci_layout;
pub use manifest::{Descriptor, Manifest, MediaTypes};
pub use store::BlobStore;

/// Errors writing or reading image data; I/O errors carry their path.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("encoding image JSON: {0}")]
    Json(#[from] serde_json::Error),
}
