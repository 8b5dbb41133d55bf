//! The build engine: plans the stages, runs each step (metadata, COPY/ADD,
//! WORKDIR), makes layers from what each step changed, and writes the
//! finished image to its outputs.

pub mod add_git;
pub mod bases;
pub mod build;
pub mod cache;
pub mod chmod;
pub mod context;
pub mod copy;
pub mod copy_sources;
pub mod download;
pub mod interrupt;
pub mod keep;
pub mod metadata;
pub mod mounts;
pub mod options;
pub mod plan;
pub mod platform;
pub mod remote;
pub mod sandbox;
pub mod scheduler;
pub mod scope;
pub mod secrets;
pub mod source;
pub mod stage;
pub mod unsupported;
pub mod users;
pub mod warm;

pub use build::{BuildOutcome, IN_PLACE_WORK_DIR, build, dockerfile_images};
pub use options::{BuildOptions, CacheOptions};
pub use platform::Platform;

/// Errors of a build. Each names what failed: the Dockerfile line, the
/// path, the output.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Dockerfile(#[from] crate::dockerfile::DockerfileError),
    /// A step failed; `file:line` and the instruction are in the message.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        file: String,
        line: usize,
        instruction: String,
        message: String,
    },
    #[error(transparent)]
    Fs(#[from] crate::fs::FsError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    #[error(transparent)]
    Reference(#[from] crate::registry::ReferenceError),
    /// A feature the build needs that smelt does not have yet.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
}

impl EngineError {
    /// A failure of the step at `file:line`.
    pub fn step(
        file: &str,
        line: usize,
        instruction: &str,
        message: impl std::fmt::Display,
    ) -> Self {
        EngineError::Step {
            file: file.to_string(),
            line,
            instruction: instruction.to_string(),
            message: message.to_string(),
        }
    }
}
