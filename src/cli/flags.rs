//! kaniko's executor flags, with kaniko's spelling, defaults and meaning.
//! Booleans take `--flag` or `--flag=true|false` as pflag does (hence
//! `require_equals` and a default missing value on each). Every flag of
//! kaniko's executor and warmer (the osscontainertools fork 1.28 and
//! upstream 1.24) is accepted; where smelt's meaning differs the README and
//! docs/moving-from-kaniko.md say how.

use crate::engine::source::SourceError;
use crate::fs::compress::CompressionError;
use crate::fs::snapshot::UnknownSnapshotMode;
use crate::registry::ReferenceError;
use clap::{ArgAction, Args};
use std::path::PathBuf;

/// A usage error: flags (or the environment they read) that cannot make a
/// build. Each names the flag and the value it was given.
#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("{name}={value:?}: want true or false")]
    EnvBool { name: &'static str, value: String },
    #[error("--annotation {0:?}: want key=value")]
    Annotation(String),
    #[error("--image-format {0:?}: use docker or oci")]
    ImageFormat(String),
    #[error(
        "--compression=zstd cannot be used with --image-format=docker: the docker schema 2 format has no zstd layer media type (use --image-format=oci)"
    )]
    ZstdDocker,
    #[error("you must provide --destination, or use --no-push")]
    NoDestination,
    #[error("--dockerfile - and --context tar://stdin cannot both read stdin")]
    StdinTwice,
    #[error("--verbosity {0:?}: use trace, debug, info, warn, error, fatal or panic")]
    Verbosity(String),
    #[error("--log-format {0:?}: use text, color or json")]
    LogFormat(String),
    /// What the platform parser said, which names the value.
    #[error("--custom-platform: {0}")]
    Platform(#[from] crate::engine::platform::PlatformError),
    #[error("--context {}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("--context {}: {source}", .path.display())]
    Context {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "--dockerfile {0}: not found (please provide a valid path to a Dockerfile within the build context with --dockerfile)"
    )]
    DockerfileNotFound(String),
    #[error("--label {0:?}: want key=value")]
    Label(String),
    #[error("SOURCE_DATE_EPOCH={0:?} is not a number of seconds")]
    SourceDateEpoch(String),
    #[error(
        "an in-place build replaces the files of / with the image's and runs RUN there; \
         this does not look like a container (use --force if it is one, or --in-place=false)"
    )]
    NotInContainer,
    #[error("--cache-report needs --cache")]
    CacheReportWithoutCache,
    #[error("--cache needs --cache-repo, or a --destination to infer it from (<repository>/cache)")]
    NoCacheRepo,
    /// `--destination` or `--cache-repo` that is not an image reference.
    #[error("--{flag} {value}: {source}")]
    Reference {
        flag: &'static str,
        value: String,
        #[source]
        source: ReferenceError,
    },
    #[error("--cache-repo {0}: want oci:PATH, an OCI layout directory")]
    CacheRepoLayout(String),
    #[error("--cache-repo {0}: a repository, without a tag or digest")]
    CacheRepoTagged(String),
    #[error("--{flag} {value}: want a duration such as 6h, 90m or 336h0m0s")]
    Duration { flag: &'static str, value: String },
    #[error("--cache-mount-max-size {0:?}: want a size such as 1GiB, 500m or 0")]
    CacheMountMaxSize(String),
    #[error("--{flag} {value}: must be more than zero")]
    ZeroDuration { flag: &'static str, value: String },
    #[error("--registry-certificate {0:?}: want registry=/path/to/ca.pem")]
    RegistryCertificate(String),
    #[error("--registry-client-cert {0:?}: want registry=/path/to/cert.pem,/path/to/key.pem")]
    RegistryClientCert(String),
    #[error("--registry-map {0:?}: want original=mirror[;other=mirror]")]
    RegistryMap(String),
    #[error(transparent)]
    SnapshotMode(#[from] UnknownSnapshotMode),
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// `--secret` or `--ssh` values that cannot be used.
    #[error(transparent)]
    Secret(#[from] crate::engine::secrets::SecretError),
    /// `--context` or `--git` values the context fetcher cannot read.
    #[error(transparent)]
    Source(#[from] SourceError),
}

#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct ExecutorFlags {
    /// Path to the Dockerfile to be built (absolute, or relative to the context).
    #[arg(short = 'f', long, default_value = "Dockerfile")]
    pub dockerfile: String,
    /// Path to the build context (a directory; `dir://` prefix accepted).
    #[arg(short = 'c', long, default_value = "/workspace/")]
    pub context: String,
    /// Sub path within the given context.
    #[arg(long, default_value = "")]
    pub context_sub_path: String,
    /// Bucket holding the context tarball, `gs://` unless it names a scheme
    /// (kaniko's hidden flag).
    #[arg(short = 'b', long, hide = true, default_value = "")]
    pub bucket: String,
    /// Registry reference the image is tagged and pushed as; repeatable.
    #[arg(short = 'd', long = "destination", action = ArgAction::Append)]
    pub destinations: Vec<String>,
    /// Snapshot mode after RUN: full, redo or time.
    #[arg(long, default_value = "full")]
    pub snapshot_mode: String,
    #[arg(long = "snapshotMode", hide = true, default_value = "")]
    pub snapshot_mode_deprecated: String,
    #[command(flatten)]
    pub platform: PlatformFlags,
    /// ARG values: NAME=value, or NAME to take the value from the environment; repeatable.
    #[arg(long = "build-arg", action = ArgAction::Append)]
    pub build_args: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: id=ID,src=FILE or id=ID,env=VAR; repeatable.
    #[arg(long = "secret", action = ArgAction::Append)]
    pub secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: default (SSH_AUTH_SOCK) or ID=SOCKET; repeatable.
    #[arg(long = "ssh", action = ArgAction::Append)]
    pub ssh: Vec<String>,
    /// Number of retries for image FS extraction.
    #[arg(long, default_value_t = 0)]
    pub image_fs_extract_retry: u32,
    /// Work directory for build state (kaniko's own directory).
    #[arg(long, default_value = "/kaniko")]
    pub kaniko_dir: String,
    /// Where RUN --mount=type=cache directories are kept between builds
    /// (smelt's; default `<kaniko-dir>/caches`, as the kaniko fork).
    #[arg(long, value_name = "DIR")]
    pub cache_mount_dir: Option<PathBuf>,
    /// smelt: with --cache, a RUN --mount=type=cache holding more than
    /// this (e.g. 500MiB, 2g) is not saved to the cache repository; 0
    /// saves none.
    #[arg(long, value_name = "SIZE", default_value = "1GiB")]
    pub cache_mount_max_size: String,
    /// Write the image as a docker-archive tarball to this path.
    #[arg(long, default_value = "")]
    pub tar_path: String,
    #[arg(long = "tarPath", hide = true, default_value = "")]
    pub tar_path_deprecated: String,
    /// Take a single snapshot at the end of the build.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub single_snapshot: bool,
    /// Strip timestamps out of the image to make it reproducible.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub reproducible: bool,
    /// The stages to build, comma-separated or repeated; the first is the
    /// image (the last stage by default), the others are built too (their
    /// layers reach the cache).
    #[arg(long, value_delimiter = ',', action = ArgAction::Append)]
    pub target: Vec<String>,
    /// Do not push the image to the registry.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub no_push: bool,
    /// Do not push cache layers to the registry.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub no_push_cache: bool,
    /// Repository for cached layers (default: inferred from the destination),
    /// or `oci:PATH`, an OCI layout directory on disk.
    #[arg(long, default_value = "")]
    pub cache_repo: String,
    /// Local directory of base images filled by the warmer.
    #[arg(long, default_value = "/cache")]
    pub cache_dir: String,
    /// smelt: write what the layer cache did for each step (hit or miss,
    /// and on a miss which input of its key changed) to this JSON file.
    #[arg(long, default_value = "")]
    pub cache_report: String,
    /// File to write the image digest to.
    #[arg(long, default_value = "")]
    pub digest_file: String,
    /// File to write `repository@digest` lines to.
    #[arg(long = "image-name-with-digest-file", default_value = "")]
    pub image_name_with_digest_file: String,
    /// File to write `repository:tag@digest` lines to.
    #[arg(long = "image-name-tag-with-digest-file", default_value = "")]
    pub image_name_tag_with_digest_file: String,
    /// Write the image as an OCI image layout to this directory.
    #[arg(long, default_value = "")]
    pub oci_layout_path: String,
    /// Layer compression: gzip or zstd.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Compression level (-1: the algorithm's default).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub compression_level: i32,
    /// Use the layer cache.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub cache: bool,
    /// Compress cached layers (accepted: cached layers are the image's own
    /// compressed layers; `false` changes nothing).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub compressed_caching: bool,
    /// In place: clear the filesystem at the end of the build (default:
    /// `KANIKO_CLEANUP`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub cleanup: Option<bool>,
    /// In place: clear the filesystem before the build, as `--cleanup` does
    /// after it (default: `KANIKO_PRE_CLEANUP`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub pre_cleanup: Option<bool>,
    /// Cache entries older than this are ignored (e.g. 6h; default two weeks).
    #[arg(long, default_value = "336h0m0s")]
    pub cache_ttl: String,
    /// smelt: a layer-cache request that does not connect or send a byte
    /// for this long turns the cache off for the rest of the build.
    #[arg(long, default_value = "10s")]
    pub cache_request_timeout: String,
    /// smelt: the most time a build waits on the layer cache in all
    /// (lookups, cached layers, uploads at the end); then the cache is off.
    #[arg(long, default_value = "1m")]
    pub cache_timeout: String,
    /// Leave /var/run out of snapshots (in place; a root of its own has
    /// nothing of the host's there).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub ignore_var_run: bool,
    #[arg(hide = true)]
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub whitelist_var_run: bool,
    /// Label for the image, key=value; repeatable.
    #[arg(long = "label", action = ArgAction::Append)]
    pub labels: Vec<String>,
    /// Build only the stages the target needs (smelt always does).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub skip_unused_stages: bool,
    /// kaniko's experimental RUN without full snapshots (accepted: smelt's
    /// snapshot is always a metadata walk).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub use_new_run: bool,
    /// Git options for a git context: branch=, single-branch=, recurse-submodules=, insecure-skip-tls=; repeatable.
    #[arg(long, action = ArgAction::Append)]
    pub git: Vec<String>,
    /// Cache COPY layers.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub cache_copy_layers: bool,
    /// Cache RUN layers.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "true", action = ArgAction::Set)]
    pub cache_run_layers: bool,
    /// Paths left out of snapshots; repeatable.
    #[arg(long = "ignore-path", action = ArgAction::Append)]
    pub ignore_paths: Vec<String>,
    /// Deprecated in kaniko (accepted: metadata instructions add history
    /// entries and no layer, as the fork and docker do).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub force_build_metadata: bool,
    /// Skip the check of push permissions.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub skip_push_permission_check: bool,
    /// Keep a copy of the context for later stages (kaniko 1.22+; accepted:
    /// the context is never cleared between stages; default:
    /// `KANIKO_PRESERVE_CONTEXT`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub preserve_context: Option<bool>,
    /// Annotation of the image manifest, key=value; repeatable.
    #[arg(long = "annotation", action = ArgAction::Append)]
    pub annotations: Vec<String>,
    /// Media types of the image: docker (schema 2) or oci (smelt's default:
    /// OCI whatever the base was).
    #[arg(long, default_value = "")]
    pub image_format: String,
    /// Print the build plan (stages and steps, in order) and exit: nothing
    /// is pulled, built or pushed.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub dryrun: bool,
    /// Unpack the target's files (its base, every cached layer) even when
    /// every step is a cache hit and no step reads them: in place, `/` then
    /// holds the image's files when the build ends.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub materialize: bool,
    #[command(flatten)]
    pub log: LogFlags,
    /// Build in place outside of a container (an in-place build rewrites `/`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub force: bool,
    /// smelt: build in `/` and run RUN directly, as kaniko does (the
    /// default when smelt is `/kaniko/executor`); otherwise each stage
    /// gets a root of its own and RUN a chroot sandbox.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", action = ArgAction::Set)]
    pub in_place: Option<bool>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `smelt warm` (kaniko's warmer): base images into the cache directory.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct WarmerFlags {
    /// Image to put in the cache directory; repeatable.
    #[arg(short = 'i', long = "image", action = ArgAction::Append, required_unless_present = "dockerfile")]
    pub images: Vec<String>,
    /// A Dockerfile whose FROM images (global ARGs expanded) are put in the
    /// cache directory too.
    #[arg(short = 'd', long, default_value = "")]
    pub dockerfile: String,
    /// ARG values for `--dockerfile`'s FROM lines; repeatable.
    #[arg(long = "build-arg", action = ArgAction::Append)]
    pub build_args: Vec<String>,
    /// An image cached longer ago than this is downloaded again.
    #[arg(long, default_value = "336h0m0s")]
    pub cache_ttl: String,
    /// The cache directory (a volume builds share, read with --cache-dir).
    #[arg(short = 'c', long, default_value = "/cache")]
    pub cache_dir: String,
    /// Download an image again even when it is cached.
    #[arg(short = 'f', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub force: bool,
    #[command(flatten)]
    pub platform: PlatformFlags,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Logging, for the executor and the warmer.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct LogFlags {
    /// Log level: trace, debug, info, warn, error, fatal, panic.
    #[arg(short = 'v', long, default_value = "info")]
    pub verbosity: String,
    /// Log format: text, color or json.
    #[arg(long, default_value = "color")]
    pub log_format: String,
    /// Timestamps in log lines.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub log_timestamp: bool,
}

/// `--custom-platform` (and kaniko's old `--customPlatform`).
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct PlatformFlags {
    /// Platform to build for (or to warm), e.g. linux/arm64 (default: the host's).
    #[arg(long, default_value = "")]
    pub custom_platform: String,
    #[arg(long = "customPlatform", hide = true, default_value = "")]
    pub custom_platform_deprecated: String,
}

impl PlatformFlags {
    /// The platform asked for, else the host's.
    pub fn platform(&self) -> Result<crate::engine::Platform, FlagError> {
        let given = if self.custom_platform.is_empty() {
            &self.custom_platform_deprecated
        } else {
            &self.custom_platform
        };
        if given.is_empty() {
            Ok(crate::engine::Platform::host())
        } else {
            crate::engine::Platform::parse(given).map_err(FlagError::Platform)
        }
    }
}

impl LogFlags {
    /// Starts the logger; whether progress bars may be drawn.
    pub fn init(&self) -> Result<bool, FlagError> {
        super::log::init(&self.verbosity, &self.log_format, self.log_timestamp)?;
        Ok(std::io::IsTerminal::is_terminal(&std::io::stderr()) && self.log_format != "json")
    }
}

/// How registries are reached: the executor's and the warmer's flags.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct RegistryFlags {
    /// Push to insecure registries over plain HTTP.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub insecure: bool,
    /// Push ignoring TLS verification.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub skip_tls_verify: bool,
    /// Pull from insecure registries over plain HTTP.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub insecure_pull: bool,
    /// Pull ignoring TLS verification.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub skip_tls_verify_pull: bool,
    /// Number of retries for the push.
    #[arg(long, default_value_t = 0)]
    pub push_retry: u32,
    /// Number of retries for downloading the remote image.
    #[arg(long, default_value_t = 0)]
    pub image_download_retry: u32,
    /// Registries reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", action = ArgAction::Append)]
    pub insecure_registries: Vec<String>,
    /// Registries whose TLS certificates are not verified; repeatable.
    #[arg(long = "skip-tls-verify-registry", action = ArgAction::Append)]
    pub skip_tls_verify_registries: Vec<String>,
    /// `registry=/path/to/cert` for a registry's TLS; repeatable.
    #[arg(long = "registry-certificate", action = ArgAction::Append)]
    pub registry_certificates: Vec<String>,
    /// `registry=/cert,/key` for mutual TLS; repeatable.
    #[arg(long = "registry-client-cert", action = ArgAction::Append)]
    pub registry_client_certs: Vec<String>,
    /// `original=mirror;other=mirror2` registry remapping; repeatable.
    #[arg(long = "registry-map", action = ArgAction::Append)]
    pub registry_maps: Vec<String>,
    /// Registry mirror used instead of docker.io; repeatable.
    #[arg(long = "registry-mirror", action = ArgAction::Append)]
    pub registry_mirrors: Vec<String>,
    /// Do not fall back to the default registry when mirrors miss.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub skip_default_registry_fallback: bool,
    /// Count a push the registry refuses because the tag is immutable (and
    /// already set) as done: ECR, Artifact Registry and Harbor's errors.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub push_ignore_immutable_tag_errors: bool,
    /// Credential helpers tried after config.json: env, google (gcr),
    /// ecr (ecr-login), acr (acr-env), gitlab; repeatable or comma-separated;
    /// all by default, an empty value turns them off.
    #[arg(long = "credential-helpers", value_delimiter = ',', action = ArgAction::Append)]
    pub credential_helpers: Vec<String>,
    /// The Azure SDK's config file (a hidden flag kaniko inherits from a
    /// vendored library; accepted: the acr helper reads Azure's own
    /// environment).
    #[arg(long, hide = true, default_value = "")]
    pub azure_container_registry_config: String,
}

/// Go's `strconv.ParseBool`, which kaniko's environment switches use.
pub fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// kaniko's `EnvBool`: the variable as a Go boolean, false when unset or
/// not one.
fn env_bool(name: &str) -> bool {
    std::env::var(name)
        .ok()
        .and_then(|v| parse_go_bool(&v))
        .unwrap_or(false)
}

impl ExecutorFlags {
    /// `--cleanup`, else `KANIKO_CLEANUP`.
    pub fn cleanup(&self) -> bool {
        self.cleanup.unwrap_or_else(|| env_bool("KANIKO_CLEANUP"))
    }
    /// `--pre-cleanup`, else `KANIKO_PRE_CLEANUP`.
    pub fn pre_cleanup(&self) -> bool {
        self.pre_cleanup
            .unwrap_or_else(|| env_bool("KANIKO_PRE_CLEANUP"))
    }
    /// `--preserve-context`, else `KANIKO_PRESERVE_CONTEXT`.
    pub fn preserve_context(&self) -> bool {
        self.preserve_context
            .unwrap_or_else(|| env_bool("KANIKO_PRESERVE_CONTEXT"))
    }

    /// Reads kaniko's environment switches as its executor does:
    /// `KANIKO_NO_PUSH` replaces `--no-push`, `KANIKO_REGISTRY_MIRROR` and
    /// `KANIKO_REGISTRY_MAP` add to their flags.
    pub fn apply_env(&mut self) -> Result<(), FlagError> {
        if let Ok(v) = std::env::var("KANIKO_NO_PUSH") {
            self.no_push = parse_go_bool(&v).ok_or(FlagError::EnvBool {
                name: "KANIKO_NO_PUSH",
                value: v,
            })?;
        }
        self.registry.apply_env(true);
        Ok(())
    }
}

impl RegistryFlags {
    /// `KANIKO_REGISTRY_MAP` (and for the executor `KANIKO_REGISTRY_MIRROR`)
    /// added to the flags, as kaniko reads them.
    pub fn apply_env(&mut self, mirror: bool) {
        if mirror && let Ok(v) = std::env::var("KANIKO_REGISTRY_MIRROR") {
            self.registry_mirrors
                .extend(v.split(',').filter(|m| !m.is_empty()).map(str::to_string));
        }
        if let Ok(v) = std::env::var("KANIKO_REGISTRY_MAP") {
            self.registry_maps.push(v);
        }
    }
}
