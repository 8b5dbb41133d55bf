//! Filesystem work: resolving paths inside a build root, change sets,
//! deterministic layer tars with compression and digests in one pass, and
//! safe extraction of tar archives.
//!
//! It knows nothing of Dockerfiles, the engine or registries: callers say
//! which paths changed and get a layer blob back.

pub mod changes;
pub mod compress;
pub mod extract;
pub mod ignore;
pub mod layer;
pub mod overlay;
pub mod pargz;
pub mod root;
pub mod scope;
pub mod snapshot;
pub mod tree;
mod writers;

pub use changes::ChangeSet;
pub use compress::Compression;
pub use layer::{LayerBlob, LayerOptions, MtimePolicy, write_layer};

/// Errors of filesystem work; each names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("{path}: {message}")]
    Path { path: String, message: String },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

impl FsError {
    /// An error about `path` (a root-relative name is shown printable:
    /// [`crate::lexpath::printable`]).
    pub(crate) fn path(path: impl std::fmt::Display, message: impl std::fmt::Display) -> FsError {
        FsError::Path {
            path: crate::lexpath::printable(&path.to_string()).into_owned(),
            message: message.to_string(),
        }
    }
}

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_at(path: &std::path::Path, what: &str) -> impl FnOnce(std::io::Error) -> FsError {
    let p = path.display().to_string();
    let what = what.to_string();
    move |e| FsError::Path {
        path: p,
        message: format!("{what}: {e}"),
    }
}
