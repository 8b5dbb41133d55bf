//! What a build is asked to do, independent of how the flags were spelled.

use super::Platform;
use crate::fs::Compression;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile (absolute, or relative to the current directory).
    pub dockerfile: PathBuf,
    /// Image references the result is tagged (and later pushed) as.
    pub destinations: Vec<String>,
    /// `--build-arg NAME=value` (a bare NAME takes the value from the environment).
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    /// Further stages to build (kaniko's `--target a,b,c`: `b` and `c`).
    pub also_targets: Vec<String>,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    pub image_name_with_digest_file: Option<PathBuf>,
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// `--reproducible`: timestamps stripped (set to the epoch).
    pub reproducible: bool,
    /// `SOURCE_DATE_EPOCH`: the time used for created fields and clamping.
    pub source_date_epoch: Option<i64>,
    /// `--label key=value`, applied to the final image.
    pub labels: Vec<(String, String)>,
    /// `--annotation key=value`: the image manifest's annotations.
    pub annotations: Vec<(String, String)>,
    /// `--image-format`: the image's media types (OCI by default).
    pub media_types: crate::image::MediaTypes,
    /// `--dryrun`: print the plan and stop before anything is pulled.
    pub dryrun: bool,
    /// In place, `--pre-cleanup`: `/` is cleared before the build starts.
    pub pre_cleanup: bool,
    /// `--materialize`: the target's files are all unpacked in its root,
    /// even when every step is a cache hit and nothing reads them.
    pub materialize: bool,
    pub platform: Platform,
    pub compression: Compression,
    /// Where temporary build state lives (`--kaniko-dir`); a fresh temporary
    /// directory under it (or the system's) is used and removed afterwards.
    pub work_dir: Option<PathBuf>,
    /// `--cache-mount-dir`: where `RUN --mount=type=cache` directories are
    /// kept between builds; default `caches` in the `--kaniko-dir` (in
    /// place `/kaniko/caches`), else `smelt-caches` in the temp directory.
    pub cache_mount_dir: Option<PathBuf>,
    /// `--cache-mount-max-size`: with `--cache`, a cache mount holding
    /// more bytes than this is not saved to the cache repository; 0: none
    /// is.
    pub cache_mount_max_size: u64,
    /// `--snapshot-mode`: what a RUN's snapshot counts as a change.
    pub snapshot_mode: crate::fs::snapshot::SnapshotMode,
    /// `--ignore-path`s, relative to the root, left out of snapshots.
    pub ignore_paths: Vec<String>,
    /// `--single-snapshot`: one layer per stage, taken at its end.
    pub single_snapshot: bool,
    /// `--image-fs-extract-retry`: attempts at unpacking a base after the first.
    pub extract_retries: u32,
    /// Build in `/` of the container smelt runs in and run RUN there
    /// directly, as kaniko does (the executor image); otherwise each stage
    /// gets a root in the work directory and RUN a chroot sandbox.
    pub in_place: bool,
    /// In place, `--ignore-var-run`: `/var/run` stays out of snapshots.
    pub ignore_var_run: bool,
    /// In place, `--cleanup`: `/` is cleared when the build ends.
    pub cleanup: bool,
    /// Push to the destinations (kaniko's default; `--no-push` turns it off).
    pub push: bool,
    /// How to reach registries (pulls of base images, pushes).
    pub registry: crate::registry::Settings,
    /// `--cache`: the layer cache in a registry.
    pub cache: Option<CacheOptions>,
    /// `--cache-dir`: base images the warmer stored, read before registries
    /// while younger than the TTL (`--cache-ttl`).
    pub cache_dir: Option<(PathBuf, std::time::Duration)>,
    /// `--secret` and `--ssh`: what `RUN --mount=type=secret|ssh` reads.
    pub secrets: super::secrets::Secrets,
}

/// `--cache-mount-max-size`'s default: 1 GiB.
pub const DEFAULT_CACHE_MOUNT_MAX_SIZE: u64 = 1 << 30;

/// The layer cache (kaniko's `--cache` flags).
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// `registry/repository` of the cache images (`--cache-repo`, else
    /// `<first destination's repository>/cache`).
    pub repo: String,
    /// `--cache-ttl`: older entries count as misses.
    pub ttl: std::time::Duration,
    /// `--cache-run-layers` (default on) and `--cache-copy-layers` (off).
    pub run_layers: bool,
    pub copy_layers: bool,
    /// `--no-push-cache` turns uploads off (lookups go on).
    pub push: bool,
    /// `--cache-report`: a JSON account of every step.
    pub report: Option<PathBuf>,
    /// `--cache-request-timeout` (smelt's; kaniko has none): a cache
    /// request that does not connect or send a byte for this long fails,
    /// untried again, and turns the cache off.
    pub request_timeout: std::time::Duration,
    /// `--cache-timeout` (smelt's): the most the build waits on the cache
    /// in all (lookups, hit layers, the uploads at the end); then the
    /// cache is off.
    pub timeout: std::time::Duration,
}

impl BuildOptions {
    /// Options for building `context` with its `Dockerfile` and nothing else.
    pub fn new(context: PathBuf, dockerfile: PathBuf) -> Self {
        Self {
            context,
            dockerfile,
            destinations: Vec::new(),
            build_args: Vec::new(),
            target: None,
            also_targets: Vec::new(),
            tar_path: None,
            oci_layout_path: None,
            digest_file: None,
            image_name_with_digest_file: None,
            image_name_tag_with_digest_file: None,
            reproducible: false,
            source_date_epoch: None,
            labels: Vec::new(),
            annotations: Vec::new(),
            media_types: crate::image::MediaTypes::Oci,
            dryrun: false,
            pre_cleanup: false,
            materialize: false,
            platform: Platform::host(),
            compression: Compression::default(),
            work_dir: None,
            cache_mount_dir: None,
            cache_mount_max_size: DEFAULT_CACHE_MOUNT_MAX_SIZE,
            push: false,
            in_place: false,
            ignore_var_run: true,
            cleanup: false,
            snapshot_mode: crate::fs::snapshot::SnapshotMode::Full,
            ignore_paths: Vec::new(),
            single_snapshot: false,
            extract_retries: 0,
            registry: crate::registry::Settings::default(),
            cache: None,
            cache_dir: None,
            secrets: super::secrets::Secrets::default(),
        }
    }
}

/// Whether the RFC 3339 time `stored` is no older than `ttl` (`--cache-ttl`
/// for cache entries and warmed base images); an unreadable time is not.
pub fn stored_within(stored: &str, ttl: std::time::Duration) -> bool {
    stored.parse::<jiff::Timestamp>().is_ok_and(|t| {
        let age = jiff::Timestamp::now().as_second() - t.as_second();
        u64::try_from(age).unwrap_or(0) <= ttl.as_secs()
    })
}
