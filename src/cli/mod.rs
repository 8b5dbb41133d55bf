//! The command line: `smelt build` (and the same binary called `executor`)
//! with kaniko's flags, `smelt warm` (the same binary called `warmer`:
//! kaniko's cache warmer), `version`, `login` and `push` (kaniko's
//! executor subcommands, `subcommands.rs`), `cache prune` (smelt's, also
//! under `executor`), flags turned into
//! [`BuildOptions`], and exit codes: 0 success, 1 build failure, 2 usage
//! error, 128 + the signal for a build stopped by SIGTERM (143) or SIGINT
//! (130) (`signals.rs`).

pub mod flags;
pub mod log;
pub mod signals;
pub mod subcommands;

use crate::engine::{self, BuildOptions, CacheOptions};
use crate::fs::Compression;
use clap::{Parser, Subcommand};
use flags::{ExecutorFlags, FlagError};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub const EXIT_OK: i32 = 0;
pub const EXIT_BUILD: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "smelt",
    version,
    about = "Builds container images from Dockerfiles without a daemon (kaniko-compatible)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image (kaniko executor flags).
    Build(Box<ExecutorFlags>),
    /// Fill a local base-image cache (kaniko's warmer).
    Warm(Box<flags::WarmerFlags>),
    /// Print the version.
    Version,
    /// Store a registry's credentials in $DOCKER_CONFIG/config.json.
    Login(subcommands::LoginFlags),
    /// Push an OCI layout or docker archive an earlier build wrote.
    Push(Box<subcommands::PushFlags>),
    /// The layer cache in a registry: `cache prune`.
    Cache {
        #[command(subcommand)]
        command: subcommands::CacheCommand,
    },
}

/// kaniko's executor subcommands, when smelt is called `executor`.
#[derive(Debug, Parser)]
#[command(name = "executor", version)]
struct ExecutorSub {
    #[command(subcommand)]
    command: ExecutorCommand,
}

#[derive(Debug, Subcommand)]
enum ExecutorCommand {
    /// Print the version.
    Version,
    /// Store a registry's credentials in $DOCKER_CONFIG/config.json.
    Login(subcommands::LoginFlags),
    /// Push an OCI layout or docker archive an earlier build wrote.
    Push(Box<subcommands::PushFlags>),
    /// The layer cache in a registry: `cache prune`.
    Cache {
        #[command(subcommand)]
        command: subcommands::CacheCommand,
    },
}

/// smelt called `warmer`: kaniko's cache warmer.
#[derive(Debug, Parser)]
#[command(name = "warmer", version, about = "smelt, called as the kaniko warmer")]
struct Warmer {
    #[command(flatten)]
    flags: Box<flags::WarmerFlags>,
}

#[derive(Debug, Parser)]
#[command(
    name = "executor",
    version,
    about = "smelt, called as the kaniko executor"
)]
struct Executor {
    #[command(flatten)]
    flags: Box<ExecutorFlags>,
}

/// Runs the command line; returns the process exit code.
pub fn run(args: &[OsString]) -> i32 {
    // the RUN sandbox: smelt starts itself with a spec (engine/sandbox.rs)
    if args.get(1).is_some_and(|a| a == "__sandbox") {
        return match engine::sandbox::sandbox_main() {
            Ok(never) => match never {},
            Err(e) => {
                eprintln!("smelt sandbox: {e}");
                engine::sandbox::SETUP_FAILED
            }
        };
    }
    // what the signal thread execs into to end a build (signals.rs)
    if args.get(1).is_some_and(|a| a == signals::CLEANUP) {
        return signals::cleanup_main(args.get(2..).unwrap_or_default());
    }
    let invoked = args
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let mut flags = if invoked == "executor" {
        if args
            .get(1)
            .is_some_and(|a| ["version", "login", "push", "cache"].contains(&&*a.to_string_lossy()))
        {
            return match ExecutorSub::try_parse_from(args) {
                Ok(ExecutorSub { command }) => match command {
                    ExecutorCommand::Version => print_version(),
                    ExecutorCommand::Login(f) => subcommands::login(&f),
                    ExecutorCommand::Push(f) => subcommands::push(&f),
                    ExecutorCommand::Cache { command } => subcommands::cache(&command),
                },
                Err(e) => clap_exit(&e),
            };
        }
        match Executor::try_parse_from(args) {
            Ok(e) => e.flags,
            Err(e) => return clap_exit(&e),
        }
    } else if invoked == "warmer" {
        return match Warmer::try_parse_from(args) {
            Ok(w) => warm(&w.flags),
            Err(e) => clap_exit(&e),
        };
    } else {
        match Cli::try_parse_from(args) {
            Ok(Cli { command }) => match command {
                Command::Build(flags) => flags,
                Command::Version => return print_version(),
                Command::Warm(flags) => return warm(&flags),
                Command::Login(f) => return subcommands::login(&f),
                Command::Push(f) => return subcommands::push(&f),
                Command::Cache { command } => return subcommands::cache(&command),
            },
            Err(e) => return clap_exit(&e),
        }
    };
    if let Err(e) = flags.apply_env() {
        eprintln!("error: {e}");
        return EXIT_USAGE;
    }
    let progress_bars = match flags.log.init() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    signals::install();
    // everything the build made is removed when build_command returns
    let code = build_command(&flags, progress_bars);
    signals::exit_code(code)
}

/// Prints an error, unless a signal stopped the build: its line said it.
fn report(what: &str, e: &dyn std::fmt::Display) {
    if engine::interrupt::signal().is_some() {
        ::log::debug!("{what}{e}");
    } else {
        eprintln!("{what}{e}");
    }
}

/// `smelt build`, once the flags are read and the logger is set up.
fn build_command(flags: &ExecutorFlags, progress_bars: bool) -> i32 {
    // usage errors first: nothing is fetched for a build that cannot run
    let context = match check_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    // a context that is not a directory is fetched into one first; a
    // Dockerfile from stdin is written to a file
    let prepared = match prepare_inputs(flags, context) {
        Ok(p) => p,
        Err(e) => {
            report("error: ", &e);
            return e.exit_code();
        }
    };
    let opts = match to_options(flags, progress_bars, &prepared) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    match engine::build(&opts) {
        Ok(None) => EXIT_OK,
        Ok(Some(outcome)) => {
            if flags.no_push {
                ::log::info!("Skipping push to container registry due to --no-push flag");
            }
            println!("{}", outcome.digest);
            EXIT_OK
        }
        Err(e) => {
            report("error building image: ", &e);
            EXIT_BUILD
        }
    }
}

fn print_version() -> i32 {
    // kaniko prints "Kaniko version :  v1.28.3"; scripts grep for "version"
    println!("smelt version {}", env!("CARGO_PKG_VERSION"));
    EXIT_OK
}

fn clap_exit(e: &clap::Error) -> i32 {
    let _ = e.print();
    match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => EXIT_OK,
        _ => EXIT_USAGE,
    }
}

fn non_empty(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// Where the context comes from, as `check_flags` read it.
#[derive(Debug)]
struct ContextChoice {
    source: engine::source::ContextSource,
    git: engine::source::GitOptions,
    /// The spelling, without credentials, for messages.
    shown: String,
}

/// Refuses flags that contradict each other (`--image-format=docker` with
/// zstd), a build with nowhere to go, and a context or `--git` value it
/// cannot read; returns the context it read.
fn check_flags(f: &ExecutorFlags) -> Result<ContextChoice, FlagError> {
    if media_types(f)? == crate::image::MediaTypes::Docker && f.compression == "zstd" {
        return Err(FlagError::ZstdDocker);
    }
    if !f.no_push && f.destinations.is_empty() {
        return Err(FlagError::NoDestination);
    }
    let spec = context_spec(f);
    let source = engine::source::ContextSource::parse(&spec)?;
    if f.dockerfile == "-" && source == engine::source::ContextSource::Stdin {
        return Err(FlagError::StdinTwice);
    }
    Ok(ContextChoice {
        source,
        git: git_options(f)?,
        shown: engine::source::shown_url(&spec),
    })
}

/// `--context`, or kaniko's `--bucket` (a `gs://` bucket unless it names a
/// scheme) when the context is not a local path given by the user.
fn context_spec(f: &ExecutorFlags) -> String {
    let default_context = f.context.is_empty() || f.context == "/workspace/";
    if !f.bucket.is_empty() && (default_context || f.context.contains("://")) {
        if f.bucket.contains("://") {
            f.bucket.clone()
        } else {
            format!("gs://{}", f.bucket)
        }
    } else {
        f.context.clone()
    }
}

/// `--git`, and BuildKit's `BUILDKIT_CONTEXT_KEEP_GIT_DIR` build argument.
fn git_options(f: &ExecutorFlags) -> Result<engine::source::GitOptions, FlagError> {
    let mut options = engine::source::GitOptions::parse(&f.git)?;
    options.keep_git_dir = f.build_args.iter().any(|a| {
        a.split_once('=')
            .is_some_and(|(k, v)| k == "BUILDKIT_CONTEXT_KEEP_GIT_DIR" && matches!(v, "1" | "true"))
    });
    Ok(options)
}

/// What `prepare_inputs` made: the context directory (given, or fetched
/// into a directory that lives as long as the build) and a Dockerfile
/// read from stdin.
#[derive(Debug)]
pub struct Prepared {
    pub context: PathBuf,
    pub fetched: Option<engine::interrupt::TrackedDir>,
    pub dockerfile: Option<(engine::interrupt::TrackedDir, PathBuf)>,
}

/// Why the build's inputs could not be made ready.
#[derive(Debug, thiserror::Error)]
enum InputError {
    #[error("--dockerfile -: reading stdin: {0}")]
    Stdin(#[source] std::io::Error),
    /// The directory for the Dockerfile read from stdin, or writing it.
    #[error("--dockerfile -: {0}")]
    Dockerfile(#[source] std::io::Error),
    #[error("--context {shown}: {source}")]
    ContextDir {
        shown: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Fetch(#[from] engine::source::SourceError),
}

impl InputError {
    /// Unreadable stdin is the caller's mistake; the rest is the build's.
    fn exit_code(&self) -> i32 {
        match self {
            InputError::Stdin(_) => EXIT_USAGE,
            _ => EXIT_BUILD,
        }
    }
}

/// `--kaniko-dir` when given, else `KANIKO_DIR`.
fn kaniko_dir(f: &ExecutorFlags) -> Option<PathBuf> {
    (f.kaniko_dir != "/kaniko")
        .then(|| PathBuf::from(&f.kaniko_dir))
        .or_else(|| std::env::var_os("KANIKO_DIR").map(PathBuf::from))
}

/// Whether the build runs in place: `--in-place`, else whether smelt is
/// the executor image's `/kaniko/executor`.
fn in_place(f: &ExecutorFlags) -> bool {
    f.in_place.unwrap_or_else(is_executor_image)
}

/// Where a fetched context and a Dockerfile from stdin go: beside the
/// work directory (the kaniko directory, `/kaniko` in place: the executor
/// image has no `/tmp`), else the system's temporary directory.
fn inputs_dir(f: &ExecutorFlags) -> std::io::Result<PathBuf> {
    let dir = match kaniko_dir(f) {
        Some(d) => d,
        None if in_place(f) => PathBuf::from(engine::IN_PLACE_WORK_DIR),
        None => return Ok(std::env::temp_dir()),
    };
    fs_err::create_dir_all(&dir)?;
    Ok(dir)
}

/// Fetches a context that is not a local directory (tarball, git, object
/// store) into a directory, and reads `--dockerfile -` from stdin.
fn prepare_inputs(f: &ExecutorFlags, choice: ContextChoice) -> Result<Prepared, InputError> {
    use engine::source::ContextSource;
    let ContextChoice { source, git, shown } = choice;
    let mut dockerfile = None;
    if f.dockerfile == "-" {
        let dir = engine::interrupt::temp_dir(|| {
            tempfile::Builder::new()
                .prefix("smelt-dockerfile-")
                .tempdir_in(inputs_dir(f)?)
        })
        .map_err(InputError::Dockerfile)?;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .map_err(InputError::Stdin)?;
        let path = dir.path().join("Dockerfile");
        fs_err::write(&path, text).map_err(InputError::Dockerfile)?;
        dockerfile = Some((dir, path));
    }
    let (context, fetched) = match source {
        ContextSource::Dir(path) => (path, None),
        remote => {
            let dir = engine::interrupt::temp_dir(|| {
                tempfile::Builder::new()
                    .prefix("smelt-context-")
                    .tempdir_in(inputs_dir(f)?)
            })
            .map_err(|source| InputError::ContextDir { shown, source })?;
            let context = remote.fetch(dir.path(), &git)?;
            (context, Some(dir))
        }
    };
    Ok(Prepared {
        context,
        fetched,
        dockerfile,
    })
}

/// `--build-arg`s as pairs; a bare NAME takes its value from the environment.
fn build_arg_values(given: &[String]) -> Vec<(String, String)> {
    given
        .iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (a.clone(), std::env::var(a).unwrap_or_default()),
        })
        .collect()
}

/// `--image-format`: docker or oci (smelt's default, whatever the base).
fn media_types(f: &ExecutorFlags) -> Result<crate::image::MediaTypes, FlagError> {
    match f.image_format.as_str() {
        "" | "oci" => Ok(crate::image::MediaTypes::Oci),
        "docker" => Ok(crate::image::MediaTypes::Docker),
        other => Err(FlagError::ImageFormat(other.to_string())),
    }
}

/// `key=value` pairs of a repeatable flag.
fn pairs(
    values: &[String],
    err: impl Fn(String) -> FlagError,
) -> Result<Vec<(String, String)>, FlagError> {
    values
        .iter()
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| err(l.clone()))
        })
        .collect()
}

/// Turns flags (checked by `check_flags`) and the prepared inputs into
/// build options.
pub fn to_options(
    f: &ExecutorFlags,
    progress_bars: bool,
    prepared: &Prepared,
) -> Result<BuildOptions, FlagError> {
    let mut context = prepared.context.clone();
    if !f.context_sub_path.is_empty() {
        context = context.join(&f.context_sub_path);
    }
    if !context.is_dir() {
        return Err(FlagError::NotADirectory(context));
    }
    let context = std::path::absolute(&context).map_err(|source| FlagError::Context {
        path: context.clone(),
        source,
    })?;
    let dockerfile = if let Some((_, path)) = &prepared.dockerfile {
        path.clone()
    } else {
        let given = PathBuf::from(&f.dockerfile);
        // one in the context is looked at beneath it, as the build reads it
        let is_file = |p: &Path| engine::context::open_build_file(&context, p).is_ok();
        if is_file(&given) {
            given
        } else if is_file(&context.join(&given)) {
            context.join(&given)
        } else {
            return Err(FlagError::DockerfileNotFound(f.dockerfile.clone()));
        }
    };
    let platform = f.platform.platform()?;
    let snapshot_mode = if f.snapshot_mode_deprecated.is_empty() {
        &f.snapshot_mode
    } else {
        &f.snapshot_mode_deprecated
    };
    let snapshot_mode = crate::fs::snapshot::SnapshotMode::parse(snapshot_mode)?;
    let compression = Compression::from_flags(&f.compression, f.compression_level)?;
    let build_args = build_arg_values(&f.build_args);
    let secrets =
        engine::secrets::Secrets::parse(&f.secrets, &f.ssh, |name| std::env::var(name).ok())?;
    let labels = pairs(&f.labels, FlagError::Label)?;
    let annotations = pairs(&f.annotations, FlagError::Annotation)?;
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => Some(
            v.parse::<i64>()
                .map_err(|_| FlagError::SourceDateEpoch(v.clone()))?,
        ),
        _ => None,
    };
    let tar_path = if f.tar_path.is_empty() {
        &f.tar_path_deprecated
    } else {
        &f.tar_path
    };
    let registry = registry_settings(&f.registry, progress_bars)?;
    let kaniko_dir = kaniko_dir(f);
    let in_place = in_place(f);
    let targets: Vec<String> = f
        .target
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if in_place && !f.force && !in_container() {
        return Err(FlagError::NotInContainer);
    }
    Ok(BuildOptions {
        context,
        dockerfile,
        destinations: f.destinations.clone(),
        build_args,
        target: targets.first().cloned(),
        also_targets: targets.get(1..).unwrap_or_default().to_vec(),
        tar_path: non_empty(tar_path),
        oci_layout_path: non_empty(&f.oci_layout_path),
        digest_file: non_empty(&f.digest_file),
        image_name_with_digest_file: non_empty(&f.image_name_with_digest_file),
        image_name_tag_with_digest_file: non_empty(&f.image_name_tag_with_digest_file),
        reproducible: f.reproducible,
        source_date_epoch,
        labels,
        annotations,
        media_types: media_types(f)?,
        dryrun: f.dryrun,
        pre_cleanup: f.pre_cleanup(),
        materialize: f.materialize,
        platform,
        compression,
        work_dir: kaniko_dir,
        cache_mount_dir: f.cache_mount_dir.clone(),
        cache_mount_max_size: engine::mounts::ram_in_bytes(&f.cache_mount_max_size)
            .ok_or_else(|| FlagError::CacheMountMaxSize(f.cache_mount_max_size.clone()))?,
        push: !f.no_push,
        in_place,
        ignore_var_run: f.ignore_var_run && f.whitelist_var_run,
        cleanup: f.cleanup(),
        snapshot_mode,
        single_snapshot: f.single_snapshot,
        extract_retries: f.image_fs_extract_retry,
        ignore_paths: f
            .ignore_paths
            .iter()
            .map(|p| crate::lexpath::in_root(p))
            .filter(|p| !p.is_empty())
            .collect(),
        registry,
        cache: cache_options(f)?,
        // kaniko reads its default /cache when it is there
        cache_dir: if f.cache_dir != "/cache" || Path::new("/cache/index.json").is_file() {
            Some((PathBuf::from(&f.cache_dir), cache_ttl(f)?))
        } else {
            None
        },
        secrets,
    })
}

/// `smelt warm`: each image (and `--dockerfile`'s FROM images) into the
/// cache directory; one cached longer ago than `--cache-ttl` again.
fn warm(f: &flags::WarmerFlags) -> i32 {
    let mut registry = f.registry.clone();
    registry.apply_env(false);
    let setup = f.log.init().and_then(|progress_bars| {
        Ok((
            f.platform.platform()?,
            registry_settings(&registry, progress_bars)?,
            parse_duration("cache-ttl", &f.cache_ttl)?,
        ))
    });
    let (platform, settings, ttl) = match setup {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let cache = match engine::warm::BaseCache::open(Path::new(&f.cache_dir)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: --cache-dir {}: {e}", f.cache_dir);
            return EXIT_BUILD;
        }
    };
    let mut images = f.images.clone();
    if !f.dockerfile.is_empty() {
        let build_args = build_arg_values(&f.build_args);
        match engine::dockerfile_images(Path::new(&f.dockerfile), &build_args, &platform) {
            Ok(found) => {
                for i in found {
                    if !images.contains(&i) {
                        images.push(i);
                    }
                }
            }
            Err(e) => {
                eprintln!("error: --dockerfile {}: {e}", f.dockerfile);
                return EXIT_BUILD;
            }
        }
    }
    let remote = engine::remote::Remote::new(settings);
    let mut failed = false;
    for image in &images {
        let expired = crate::registry::Reference::parse(image)
            .is_ok_and(|r| cache.find(&r, &platform, ttl).is_none());
        match remote.warm(image, &platform, &cache, f.force || expired) {
            Ok((digest, true)) => ::log::info!("cached {image} ({digest}) in {}", f.cache_dir),
            Ok((digest, false)) => ::log::info!(
                "{image} ({digest}) is already in {} (--force downloads it again)",
                f.cache_dir
            ),
            Err(e) => {
                eprintln!("error warming {image}: {e}");
                failed = true;
            }
        }
    }
    if failed { EXIT_BUILD } else { EXIT_OK }
}

/// `--cache` and its flags; the repository inferred from the first
/// destination as `<repository>/cache` when `--cache-repo` is not given.
fn cache_options(f: &ExecutorFlags) -> Result<Option<CacheOptions>, FlagError> {
    if !f.cache {
        if !f.cache_report.is_empty() {
            return Err(FlagError::CacheReportWithoutCache);
        }
        return Ok(None);
    }
    let reference = |flag: &'static str, value: &str| {
        crate::registry::Reference::parse(value).map_err(|source| FlagError::Reference {
            flag,
            value: value.to_string(),
            source,
        })
    };
    let repo = if let Some(dir) = f.cache_repo.strip_prefix("oci:") {
        // an OCI layout on disk (the fork's form), relative to the current
        // directory; the engine makes it when missing
        let layout = Path::new(dir);
        if dir.is_empty() {
            return Err(FlagError::CacheRepoLayout(f.cache_repo.clone()));
        }
        let layout = std::path::absolute(layout)
            .map_err(|_| FlagError::CacheRepoLayout(f.cache_repo.clone()))?;
        format!("oci:{}", layout.display())
    } else if f.cache_repo.is_empty() {
        let first = f.destinations.first().ok_or(FlagError::NoCacheRepo)?;
        let r = reference("destination", first)?;
        format!("{}/{}/cache", r.registry, r.repository)
    } else {
        let r = reference("cache-repo", &f.cache_repo)?;
        if r.tag.is_some() || r.digest.is_some() {
            return Err(FlagError::CacheRepoTagged(f.cache_repo.clone()));
        }
        format!("{}/{}", r.registry, r.repository)
    };
    let ttl = cache_ttl(f)?;
    let duration = |flag: &'static str, value: &str| {
        let d = parse_duration(flag, value)?;
        if d.is_zero() {
            Err(FlagError::ZeroDuration {
                flag,
                value: value.to_string(),
            })
        } else {
            Ok(d)
        }
    };
    Ok(Some(CacheOptions {
        request_timeout: duration("cache-request-timeout", &f.cache_request_timeout)?,
        timeout: duration("cache-timeout", &f.cache_timeout)?,
        repo,
        ttl,
        run_layers: f.cache_run_layers,
        copy_layers: f.cache_copy_layers,
        push: !f.no_push_cache,
        report: non_empty(&f.cache_report),
    }))
}

/// `--cache-ttl`, for cache entries and warmed base images.
fn cache_ttl(f: &ExecutorFlags) -> Result<std::time::Duration, FlagError> {
    parse_duration("cache-ttl", &f.cache_ttl)
}

/// `--flag`'s value as a Go duration as kaniko's flags take it
/// (`336h0m0s`, `6h`, `90m`, `1.5h`, `500ms`): the Dockerfile front end's
/// parser (HEALTHCHECK's).
fn parse_duration(flag: &'static str, s: &str) -> Result<std::time::Duration, FlagError> {
    crate::dockerfile::instruction::parse_go_duration(s)
        .map(std::time::Duration::from_nanos)
        .ok_or_else(|| FlagError::Duration {
            flag,
            value: s.to_string(),
        })
}

/// Whether this binary is the executor of a kaniko-style image
/// (`/kaniko/executor`), where builds happen in place.
fn is_executor_image() -> bool {
    std::env::current_exe().is_ok_and(|p| p.starts_with("/kaniko"))
}

/// Whether this process looks like it runs in a container (kaniko's test,
/// widened to podman and Kubernetes). `SMELT_IN_CONTAINER=0` or `=1`
/// overrides the guess (the tests use it to be certain of the answer; `1`
/// is no more than `--force`).
fn in_container() -> bool {
    match std::env::var("SMELT_IN_CONTAINER").as_deref() {
        Ok("0") => return false,
        Ok("1") => return true,
        _ => {}
    }
    let marker = ["/.dockerenv", "/run/.containerenv"]
        .iter()
        .any(|p| Path::new(p).exists());
    let env = ["container", "KUBERNETES_SERVICE_HOST"]
        .iter()
        .any(|v| std::env::var_os(v).is_some());
    let cgroup = fs_err::read_to_string("/proc/1/cgroup").is_ok_and(|c| {
        ["docker", "kubepods", "containerd", "libpod", "lxc"]
            .iter()
            .any(|k| c.contains(k))
    });
    marker || env || cgroup
}

/// kaniko's registry flags as the registry client's settings.
pub(crate) fn registry_settings(
    f: &flags::RegistryFlags,
    progress_bars: bool,
) -> Result<crate::registry::Settings, FlagError> {
    let mut s = crate::registry::Settings {
        insecure_push: f.insecure,
        insecure_pull: f.insecure_pull,
        insecure_registries: f.insecure_registries.clone(),
        skip_verify_push: f.skip_tls_verify,
        skip_verify_pull: f.skip_tls_verify_pull,
        skip_verify_registries: f.skip_tls_verify_registries.clone(),
        mirrors: f.registry_mirrors.clone(),
        skip_default_fallback: f.skip_default_registry_fallback,
        download_retries: f.image_download_retry,
        push_retries: f.push_retry,
        ignore_immutable_tags: f.push_ignore_immutable_tag_errors,
        credential_helpers: (!f.credential_helpers.is_empty()).then(|| {
            f.credential_helpers
                .iter()
                .map(|h| h.trim().to_string())
                .collect()
        }),
        progress_bars,
        ..Default::default()
    };
    for c in &f.registry_certificates {
        let (host, path) = c
            .split_once('=')
            .filter(|(h, p)| !h.is_empty() && !p.is_empty())
            .ok_or_else(|| FlagError::RegistryCertificate(c.clone()))?;
        s.certificates.push((host.to_string(), PathBuf::from(path)));
    }
    for c in &f.registry_client_certs {
        let parsed = c.split_once('=').and_then(|(host, files)| {
            let (cert, key) = files.split_once(',')?;
            (!host.is_empty() && !cert.is_empty() && !key.is_empty())
                .then(|| (host.to_string(), PathBuf::from(cert), PathBuf::from(key)))
        });
        s.client_certs
            .push(parsed.ok_or_else(|| FlagError::RegistryClientCert(c.clone()))?);
    }
    for m in &f.registry_maps {
        for pair in m.split(';').filter(|p| !p.is_empty()) {
            let (from, to) = pair
                .split_once('=')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .ok_or_else(|| FlagError::RegistryMap(m.clone()))?;
            match s.registry_maps.iter_mut().find(|(f, _)| f == from) {
                Some((_, list)) => list.push(to.to_string()),
                None => s
                    .registry_maps
                    .push((from.to_string(), vec![to.to_string()])),
            }
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::{Executor, cache_options, parse_duration, registry_settings};
    use clap::Parser;
    use std::time::Duration;

    /// A usage error names the flag, the value and what is wrong with it.
    #[test]
    fn flag_errors_name_the_flag_and_value() {
        let flags = |args: &[&str]| {
            let mut argv = vec!["executor"];
            argv.extend(args);
            Executor::try_parse_from(argv).map(|e| e.flags).ok()
        };
        let f = flags(&["--cache", "--destination", "app:-bad"]).unwrap_or_else(|| panic!());
        assert_eq!(
            cache_options(&f).err().map(|e| e.to_string()).as_deref(),
            Some("--destination app:-bad: invalid image reference \"app:-bad\": invalid tag")
        );
        let f = flags(&["--cache", "--cache-repo", "r.example/c:t"]).unwrap_or_else(|| panic!());
        assert_eq!(
            cache_options(&f).err().map(|e| e.to_string()).as_deref(),
            Some("--cache-repo r.example/c:t: a repository, without a tag or digest")
        );
        let f = flags(&["--cache", "--cache-repo", "oci:"]).unwrap_or_else(|| panic!());
        assert_eq!(
            cache_options(&f).err().map(|e| e.to_string()).as_deref(),
            Some("--cache-repo oci:: want oci:PATH, an OCI layout directory")
        );
        // a layout: relative to the current directory, no destination needed
        let f = flags(&["--cache", "--cache-repo", "oci:cache/dir"]).unwrap_or_else(|| panic!());
        let cwd = std::env::current_dir().unwrap_or_else(|_| panic!());
        assert_eq!(
            cache_options(&f).ok().flatten().map(|c| c.repo),
            Some(format!("oci:{}", cwd.join("cache/dir").display()))
        );
        let f = flags(&["--registry-map", "a=b;c"]).unwrap_or_else(|| panic!());
        assert_eq!(
            registry_settings(&f.registry, false)
                .err()
                .map(|e| e.to_string())
                .as_deref(),
            Some("--registry-map \"a=b;c\": want original=mirror[;other=mirror]")
        );
    }

    #[test]
    fn go_durations_as_kaniko_takes_them() {
        let parsed = |s| parse_duration("cache-ttl", s).ok();
        assert_eq!(parsed("336h0m0s"), Some(Duration::from_secs(336 * 3600)));
        assert_eq!(parsed("6h"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parsed("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parsed("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parsed("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parsed("0"), Some(Duration::ZERO));
        for bad in ["", "6", "h", "6d", "-1h"] {
            assert!(parsed(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_duration("cache-timeout", "6d")
                .unwrap_err()
                .to_string(),
            "--cache-timeout 6d: want a duration such as 6h, 90m or 336h0m0s"
        );
    }
}
