//! The life of one build: read the Dockerfile, resolve global args and the
//! stages the target needs, run them in order, assemble the image and write
//! it to every output asked for (docker-archive, OCI layout, digest files).

use super::context::{SourceTree, load_ignore, read_build_file};
use super::plan::Plan;
use super::remote::Remote;
use super::scheduler::Runner;
use super::scope::BuildArgs;
use super::stage::BuildEnv;
use super::{BuildOptions, EngineError};
use crate::dockerfile::Dockerfile;
use crate::fs::ignore::RootIgnores;
use crate::fs::{LayerOptions, MtimePolicy};
use crate::image::{
    BlobStore, BuiltImage, Digest, MediaTypes, write_docker_archive, write_oci_layout,
};
use crate::registry::{PushImage, Reference};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a successful build produced.
#[derive(Debug)]
pub struct BuildOutcome {
    pub image: BuiltImage,
    pub digest: Digest,
}

/// Runs a build to the end; `None` for a `--dryrun`, which prints the
/// plan and stops.
pub fn build(opts: &BuildOptions) -> Result<Option<BuildOutcome>, EngineError> {
    let destinations = opts
        .destinations
        .iter()
        .map(|d| Reference::parse(d).map_err(EngineError::from))
        .collect::<Result<Vec<_>, _>>()?;
    // beneath the context when it is in it: a symlink there never reads a host file
    let bytes = read_build_file(
        &opts.context,
        &opts.dockerfile,
        crate::dockerfile::MAX_DOCKERFILE,
    )?;
    let file = opts.dockerfile.display().to_string();
    let text = crate::dockerfile::text_of(&bytes, &file)?;
    let df = Dockerfile::parse(text, &file)?;
    for w in &df.warnings {
        log::warn!("{w}");
    }

    // in place, the executor's own directory, as kaniko's /kaniko
    let base = match &opts.work_dir {
        Some(d) => d.clone(),
        None if opts.in_place => PathBuf::from(IN_PLACE_WORK_DIR),
        None => std::env::temp_dir(),
    };
    fs_err::create_dir_all(&base)?;
    // known to the signal thread, which removes it if the build does not
    // stop in time (engine/interrupt.rs)
    let work = super::interrupt::temp_dir(|| {
        tempfile::Builder::new()
            .prefix("smelt-build-")
            .tempdir_in(&base)
    })
    .map_err(|e| {
        EngineError::Invalid(format!(
            "creating a work directory in {}: {e}",
            base.display()
        ))
    })?;
    crate::fs::tree::mark_top_dir(work.path());
    let store = BlobStore::open(&work.path().join("blobs"))?;
    let mut remote = Remote::new(opts.registry.clone());
    if let Some(c) = &opts.cache {
        remote = remote.with_cache_timeout(c.request_timeout);
    }
    if let Some((dir, ttl)) = &opts.cache_dir {
        match super::warm::BaseCache::existing(dir) {
            Some(cache) => {
                remote = remote.with_base_cache(cache, *ttl, store.clone());
            }
            None if opts.in_place => log::warn!(
                "--cache-dir {}: no base images there (fill it with smelt warm)",
                dir.display()
            ),
            None => log::info!(
                "--cache-dir {}: no warmed base images there (smelt warm fills it)",
                dir.display()
            ),
        }
        // in place the root is `/`: bases are extracted there as before
        if !opts.in_place {
            remote = remote.with_kept_bases(super::bases::KeptBases::new(dir));
        }
    }

    // kept between builds: outside the work directory, which goes
    let cache_mounts = match (&opts.cache_mount_dir, &opts.work_dir, opts.in_place) {
        (Some(d), _, _) => std::path::absolute(d)?,
        (None, Some(_), _) | (None, None, true) => base.join("caches"),
        (None, None, false) => std::env::temp_dir().join("smelt-caches"),
    };
    let mut ignores = root_ignores(opts, &base)?;
    if opts.in_place {
        ignores.add_inside(Path::new("/"), &cache_mounts);
    }
    let ignore = load_ignore(&opts.context, &opts.dockerfile)?;
    let context = SourceTree::context(opts.context.clone(), ignore);
    let mut args = BuildArgs::new(opts.build_args.iter().cloned().collect());
    let global = global_scope(&df, opts.target.as_deref(), &opts.platform, &mut args)?;
    let mut plan = Plan::new(&df, opts.target.as_deref(), &global)?;
    if !opts.also_targets.is_empty() {
        plan.also_build(&df, &opts.also_targets)?;
    }
    super::unsupported::refuse(&df, plan.refs.keys().copied())?;
    if opts.dryrun {
        print!("{}", render_plan(&df, &plan, text));
        return Ok(None);
    }
    if opts.in_place && opts.pre_cleanup {
        log::info!("--pre-cleanup: clearing / before the build");
        crate::fs::ignore::wipe(Path::new("/"), &root_ignores(opts, &base)?)?;
    }
    let cache = match &opts.cache {
        Some(_) if opts.single_snapshot => {
            log::warn!("--single-snapshot makes one layer per stage: the layer cache is off");
            None
        }
        Some(c) => Some(super::cache::Cache::new(c.clone())?),
        None => None,
    };

    let epoch = match (opts.reproducible, opts.source_date_epoch) {
        (true, sde) => Some(sde.unwrap_or(0)),
        (false, sde) => sde,
    };
    let mtime = match (opts.reproducible, opts.source_date_epoch) {
        (true, _) => MtimePolicy::Fixed(epoch.unwrap_or(0)),
        (false, Some(t)) => MtimePolicy::Clamp(t),
        (false, None) => MtimePolicy::Keep,
    };
    let cancelled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let _cancel_on_signal = super::interrupt::track_build(&cancelled, opts.in_place);
    // OCI unless --image-format docker: OCI-layout readers (skopeo, umoci) skip Docker-typed
    // manifests, and one manifest for every output keeps the digest files true for each of them.
    let media_types = opts.media_types;
    let env = BuildEnv {
        dockerfile: &df,
        store: &store,
        work: work.path(),
        context: &context,
        layer: LayerOptions {
            compression: opts.compression,
            mtime,
        },
        media_types,
        platform: &opts.platform,
        epoch,
        global_args: &global,
        snapshot_mode: opts.snapshot_mode,
        ignores,
        in_place: opts.in_place,
        single_snapshot: opts.single_snapshot,
        extract_retries: opts.extract_retries,
        cancelled: std::sync::Arc::clone(&cancelled),
        downloads: super::download::Downloads::new(
            work.path().join("downloads"),
            opts.secrets.agent("default").map(Path::to_path_buf),
        ),
        secrets: &opts.secrets,
        mount_sync: cache.as_ref().map(|_| {
            super::cache::MountSync::new(
                &remote,
                store.clone(),
                opts.platform.clone(),
                opts.compression,
                opts.cache_mount_max_size,
            )
        }),
        cache,
        cache_mounts,
        mount_scratch: work.path().join("mounts"),
    };

    // cache uploads run beside the build; it ends (either way) after them,
    // while their blobs are still in the store
    let _uploads = env.cache.as_ref().map(|cache| PendingUploads {
        remote: &remote,
        cache,
        mounts: env.mount_sync.as_ref(),
    });
    let runner = Runner {
        env: &env,
        remote: &remote,
        work: work.path(),
        text,
        materialize: opts.materialize,
    };
    let final_state = runner.run(&mut plan, &mut args)?;
    // the image is the target's layers: its root goes while they are
    // assembled and pushed (joined before the work directory goes)
    let _removing = RemovedRoot::start(&final_state.root, work.path(), opts.in_place)?;
    // the cache mounts that changed are written while the image is made
    // and pushed, and pushed with the cache entries
    if let (Some(sync), Some(cache)) = (&env.mount_sync, &env.cache) {
        sync.start_saving(cache);
    }
    let unused = args.unused();
    if !unused.is_empty() {
        log::warn!("one or more build-args {unused:?} were not consumed");
    }
    let mut config = final_state.config;
    if !opts.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    config.created = Some(env.created());
    stopped_by_signal()?;
    let layers = final_state
        .layers
        .into_iter()
        .map(|mut l| {
            l.media_type = layer_media_type(&l.media_type, media_types).to_string();
            l
        })
        .collect();
    let annotations = (!opts.annotations.is_empty())
        .then(|| opts.annotations.iter().cloned().collect::<BTreeMap<_, _>>());
    let image = BuiltImage::assemble(&store, &config, layers, media_types, annotations)?;
    let digest = image.manifest_digest.clone();
    log::info!(
        "built image {digest} ({} layers)",
        image.manifest.layers.len()
    );
    if opts.tar_path.is_some() || opts.oci_layout_path.is_some() {
        // the archive and layout carry every layer: fetch bases not unpacked
        remote.fetch(&image.manifest.layers, &store)?;
    }
    write_images(opts, &store, &image, &destinations)?;
    stopped_by_signal()?;
    if opts.push && !destinations.is_empty() {
        push(&remote, &store, &image, &destinations)?;
    }
    write_digest_files(opts, &image, &destinations)?;
    if opts.in_place && opts.cleanup {
        crate::fs::ignore::wipe(Path::new("/"), &env.ignores)?;
    }
    Ok(Some(BuildOutcome { image, digest }))
}

/// A layer's media type in the family `types` (a base's layers keep the
/// type they were pulled with until the image is assembled).
fn layer_media_type(media_type: &str, types: MediaTypes) -> &str {
    use crate::image::manifest::{
        DOCKER_LAYER_GZIP, DOCKER_LAYER_TAR, OCI_LAYER_GZIP, OCI_LAYER_TAR,
    };
    match (types, media_type) {
        (MediaTypes::Docker, OCI_LAYER_GZIP) => DOCKER_LAYER_GZIP,
        (MediaTypes::Docker, OCI_LAYER_TAR) => DOCKER_LAYER_TAR,
        (MediaTypes::Oci, DOCKER_LAYER_GZIP) => OCI_LAYER_GZIP,
        (MediaTypes::Oci, DOCKER_LAYER_TAR) => OCI_LAYER_TAR,
        (_, other) => other,
    }
}

/// `--dryrun`'s output: the stages the build would run, in order, each
/// with its base and its steps as written (kaniko's fork prints its plan).
fn render_plan(df: &Dockerfile, plan: &Plan, text: &str) -> String {
    use std::fmt::Write;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for &i in &plan.order {
        let stage = &df.stages[i];
        let from = match &plan.refs[&i].base {
            Some(super::plan::Ref::Stage(s)) => {
                df.stages[*s].name.clone().unwrap_or_else(|| s.to_string())
            }
            Some(super::plan::Ref::Image(image)) => image.clone(),
            None => "scratch".to_string(),
        };
        let _ = match &stage.name {
            Some(n) => writeln!(out, "FROM {from} AS {n}"),
            None => writeln!(out, "FROM {from}"),
        };
        for step in &stage.steps {
            // the step as written, its continuation lines joined
            let written = lines
                .get(step.line.saturating_sub(1)..step.end_line.min(lines.len()))
                .unwrap_or_default()
                .iter()
                .map(|l| l.trim().trim_end_matches('\\').trim_end())
                .collect::<Vec<_>>()
                .join(" ");
            let _ = writeln!(out, "  {written}");
        }
    }
    out
}

/// The global scope: the automatic platform args, then the ARGs before the
/// first FROM (`args`, the `--build-arg`s, override their defaults).
fn global_scope(
    df: &Dockerfile,
    target: Option<&str>,
    platform: &super::Platform,
    args: &mut BuildArgs,
) -> Result<BTreeMap<String, String>, EngineError> {
    let file = &df.file;
    let lexer = df.lexer();
    let target_stage =
        super::platform::target_stage(target, df.stages.last().and_then(|s| s.name.as_deref()));
    let mut global: BTreeMap<String, String> = platform
        .build_args(&target_stage, |k| args.given(k))
        .into_iter()
        .collect();
    let budget = crate::dockerfile::Budget::default();
    for meta in &df.meta_args {
        for (name, default) in &meta.value {
            let value = match args.take(name) {
                Some(v) => Some(v),
                None => match default {
                    Some(d) => Some(lexer.process_word_in(d, &global, &budget).map_err(
                        |source| crate::dockerfile::DockerfileError::Expand {
                            file: file.clone(),
                            line: meta.line,
                            source,
                        },
                    )?),
                    None => None,
                },
            };
            // a declaration without a value keeps an automatic one (ARG TARGETPLATFORM)
            if let Some(v) = value {
                global.insert(name.clone(), v);
            }
        }
    }

    Ok(global)
}

/// The base images of every stage of the Dockerfile at `path`, its global
/// ARGs expanded with `build_args` (kaniko's warmer with `--dockerfile`).
pub fn dockerfile_images(
    path: &Path,
    build_args: &[(String, String)],
    platform: &super::Platform,
) -> Result<Vec<String>, EngineError> {
    let bytes = fs_err::read(path)?;
    let file = path.display().to_string();
    let text = crate::dockerfile::text_of(&bytes, &file)?;
    let df = Dockerfile::parse(text, &file)?;
    let mut args = BuildArgs::new(build_args.iter().cloned().collect());
    let global = global_scope(&df, None, platform, &mut args)?;
    let plan = Plan::new(&df, None, &global)?;
    Ok(plan.base_images().into_iter().collect())
}

/// Fails once a SIGTERM or SIGINT came: no output or push is started after.
fn stopped_by_signal() -> Result<(), EngineError> {
    match super::interrupt::signal() {
        Some(s) => Err(EngineError::Invalid(format!(
            "build stopped by {}",
            super::interrupt::signal_name(s)
        ))),
        None => Ok(()),
    }
}

/// Waits for the cache uploads, and writes the cache report, when dropped.
struct PendingUploads<'a> {
    remote: &'a Remote,
    cache: &'a super::cache::Cache,
    mounts: Option<&'a super::cache::MountSync<'a>>,
}

/// The target stage's root, removed on a thread of its own; joined when
/// dropped.
struct RemovedRoot(Option<std::thread::JoinHandle<()>>);

impl RemovedRoot {
    fn start(root: &Path, work: &Path, in_place: bool) -> Result<RemovedRoot, EngineError> {
        if in_place {
            return Ok(RemovedRoot(None));
        }
        let (root, work) = (root.to_path_buf(), work.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("smelt-remove-root".to_string())
            .spawn(move || super::scheduler::remove_root(&root, &work))?;
        Ok(RemovedRoot(Some(thread)))
    }
}

impl Drop for RemovedRoot {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PendingUploads<'_> {
    fn drop(&mut self) {
        if let Some(mounts) = self.mounts {
            mounts.finish_saving(self.cache);
        }
        let repo = &self.cache.repo;
        let stored = self
            .cache
            .waiting(|left| self.cache.wait_uploads(self.remote, left))
            .unwrap_or(0);
        if stored > 0 {
            log::info!("stored {stored} cache entries in {repo}");
        }
        self.cache.write_report();
    }
}

/// Where an in-place build keeps its own state unless `--kaniko-dir` says.
pub const IN_PLACE_WORK_DIR: &str = "/kaniko";

/// What snapshots leave out. In place, the root is `/`: every mount point,
/// the work directory (`work_base`), smelt's binary and `/kaniko` when it
/// lives there, `$DOCKER_CONFIG`, the context, the Dockerfile and
/// (`--ignore-var-run`) `/var/run` too.
fn root_ignores(opts: &BuildOptions, work_base: &Path) -> Result<RootIgnores, EngineError> {
    let mut ignores = RootIgnores::new(&opts.ignore_paths);
    if !opts.in_place {
        return Ok(ignores);
    }
    let root = Path::new("/");
    ignores.add_mount_points(root)?;
    let exe = std::env::current_exe().ok();
    // the executor image's own directory (its docker config, a mounted
    // secret) even when the work directory is elsewhere (--kaniko-dir), and
    // wherever DOCKER_CONFIG points
    let kaniko = exe
        .as_deref()
        .filter(|e| e.starts_with(IN_PLACE_WORK_DIR))
        .map(|_| Path::new(IN_PLACE_WORK_DIR));
    // the debug image's shell (images/executor/Dockerfile): a CI script
    // running the executor from /busybox/sh goes on after the build
    let busybox = kaniko.map(|_| Path::new("/busybox"));
    let docker_config = std::env::var_os("DOCKER_CONFIG")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    for p in [
        Some(work_base),
        Some(opts.context.as_path()),
        Some(opts.dockerfile.as_path()),
        exe.as_deref(),
        kaniko,
        busybox,
        docker_config.as_deref(),
    ]
    .into_iter()
    .flatten()
    {
        ignores.add_inside(root, &std::path::absolute(p)?);
    }
    if opts.ignore_var_run {
        ignores.ignored.insert("var/run".to_string());
    }
    Ok(ignores)
}

/// Pushes the image: layers from the local store, or mounted from (or
/// fetched out of) the repository a base layer came from.
fn push(
    remote: &Remote,
    store: &BlobStore,
    image: &BuiltImage,
    destinations: &[Reference],
) -> Result<(), EngineError> {
    let push = PushImage::of(image, |d| remote.source_of(d));
    remote.push(destinations, &push, store)?;
    Ok(())
}

/// The docker-archive and OCI layout outputs.
fn write_images(
    opts: &BuildOptions,
    store: &BlobStore,
    image: &BuiltImage,
    destinations: &[Reference],
) -> Result<(), EngineError> {
    if let Some(path) = &opts.tar_path {
        let tags: Vec<String> = destinations.iter().map(Reference::familiar_tag).collect();
        write_docker_archive(path, store, image, &tags)?;
        log::info!("wrote docker archive {}", path.display());
    }
    if let Some(dir) = &opts.oci_layout_path {
        let mut tags: Vec<String> = destinations
            .iter()
            .map(|d| d.tag_or_latest().to_string())
            .collect();
        tags.dedup();
        write_oci_layout(dir, store, image, &tags)?;
        log::info!("wrote OCI layout {}", dir.display());
    }
    Ok(())
}

/// kaniko's digest files, written once the image is wherever it goes.
fn write_digest_files(
    opts: &BuildOptions,
    image: &BuiltImage,
    destinations: &[Reference],
) -> Result<(), EngineError> {
    let digest = image.manifest_digest.as_str();
    if let Some(path) = &opts.digest_file {
        fs_err::write(path, digest)?;
    }
    if let Some(path) = &opts.image_name_with_digest_file {
        let text: String = destinations
            .iter()
            .map(|d| format!("{}@{digest}\n", d.kaniko_repository()))
            .collect();
        fs_err::write(path, text)?;
    }
    if let Some(path) = &opts.image_name_tag_with_digest_file {
        let text: String = destinations
            .iter()
            .map(|d| format!("{}:{}@{digest}\n", d.kaniko_repository(), d.tag_or_latest()))
            .collect();
        fs_err::write(path, text)?;
    }
    Ok(())
}
