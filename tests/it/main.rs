//! smelt's integration tests: each builds a real context with the real
//! binary and checks the result with independent tools (skopeo, umoci).
//! Run as root (COPY --chown) with skopeo and umoci installed; the README's
//! test command sets that up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod emulators;
mod git_server;
mod harness;
mod registry_server;

mod add_remote;
mod base_reuse;
mod build_outputs;
mod cache;
mod cache_explain;
mod cache_mounts;
mod cache_oci;
mod cache_prune;
mod cli;
mod conformance;
mod contexts;
mod dockerfile_semantics;
mod examples;
mod executor_image;
mod faults;
mod foreign_bases;
mod git_builtin;
mod git_contexts;
mod hostile;
mod hostile_dockerfile;
mod in_place;
mod kaniko_contract;
mod multi_stage;
mod object_contexts;
mod onbuild;
mod push_pull;
mod readme_flags;
mod reproducible;
mod run;
mod run_mount;
mod run_secret;
mod sandbox;
mod signals;
