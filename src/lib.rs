//! smelt: builds OCI container images from Dockerfiles without a daemon, as
//! a drop-in replacement for the kaniko executor.
//!
//! The binary (`src/main.rs`) only parses flags and maps errors to exit
//! codes; everything else lives here. See ARCHITECTURE.md for the map.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod dockerfile;
pub mod engine;
pub mod fs;
#[doc(hidden)]
pub mod fuzzing;
pub mod image;
pub mod lexpath;
pub mod registry;
