//! Talking to registries over the distribution API: image references,
//! auth (docker's config.json, credential helpers, basic and bearer),
//! pulls (index → the platform's manifest → config and layer blobs) and
//! pushes (blobs first, manifests last), with retries and progress, and
//! the tag listing and manifest deletion the cache's pruning needs.
//!
//! It must not know about the engine or the filesystem: it moves blobs
//! between registries and the [`crate::image::BlobStore`], nothing more.

pub mod auth;
pub mod client;
mod cred_helpers;
pub mod error;
mod progress;
pub mod pull;
pub mod push;
pub mod reference;
pub mod tags;

pub use auth::Credential;
pub use client::{Direction, Registry, Settings, ca_roots_der, download_client};
pub use error::RegistryError;
pub use progress::human_size;
pub use pull::{RemoteImage, platform_matches};
pub use push::{PushBlob, PushImage};
pub use reference::{Reference, ReferenceError};
pub use tags::Deleted;
