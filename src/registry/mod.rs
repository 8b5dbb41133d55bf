//! Talking to registries. For now: image references as docker parses them.
//! Pulling and pushing over the distribution API come next (issue 4).
//!
//! It must not know about the engine or the filesystem.

pub mod reference;

pub use reference::Reference;
