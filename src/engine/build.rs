//! The life of one build: read the Dockerfile, resolve global args and the
//! stages the target needs, run them in order, assemble the image and write
//! it to every output asked for (docker-archive, OCI layout, digest files).

use super::context::{SourceTree, load_ignore};
use super::remote::{BaseImage, Remote};
use super::scope::BuildArgs;
use super::stage::{BuildEnv, StageState, scratch_config};
use super::{BuildOptions, EngineError};
use crate::dockerfile::{Dockerfile, Instruction, Located, Stage};
use crate::fs::ignore::RootIgnores;
use crate::fs::{LayerOptions, MtimePolicy};
use crate::image::{
    BlobStore, BuiltImage, Digest, MediaTypes, write_docker_archive, write_oci_layout,
};
use crate::registry::{PushBlob, PushImage, Reference};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What a successful build produced.
#[derive(Debug)]
pub struct BuildOutcome {
    pub image: BuiltImage,
    pub digest: Digest,
}

/// Runs a build to the end.
pub fn build(opts: &BuildOptions) -> Result<BuildOutcome, EngineError> {
    let destinations = opts
        .destinations
        .iter()
        .map(|d| Reference::parse(d).map_err(EngineError::Invalid))
        .collect::<Result<Vec<_>, _>>()?;
    let text = fs_err::read_to_string(&opts.dockerfile)?;
    let file = opts.dockerfile.display().to_string();
    let df = Dockerfile::parse(&text, &file)?;
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
    let work = tempfile::Builder::new()
        .prefix("smelt-build-")
        .tempdir_in(&base)
        .map_err(|e| {
            EngineError::Invalid(format!(
                "creating a work directory in {}: {e}",
                base.display()
            ))
        })?;
    crate::fs::tree::mark_top_dir(work.path());
    let store = BlobStore::open(&work.path().join("blobs"))?;
    let remote = Remote::new(opts.registry.clone());

    let ignores = root_ignores(opts, &base)?;
    let ignore = load_ignore(&opts.context, &opts.dockerfile)?;
    let context = SourceTree::context(opts.context.clone(), ignore);
    let mut args = BuildArgs::new(opts.build_args.iter().cloned().collect());
    let lexer = df.lexer();

    // global scope: automatic platform args, then the ARGs before the first FROM
    let mut global: BTreeMap<String, String> = opts.platform.build_args().into_iter().collect();
    for meta in &df.meta_args {
        for (name, default) in &meta.value {
            let value = match args.take(name) {
                Some(v) => Some(v),
                None => match default {
                    Some(d) => Some(lexer.process_word(d, &global).map_err(|source| {
                        crate::dockerfile::DockerfileError::Expand {
                            file: file.clone(),
                            line: meta.line,
                            source,
                        }
                    })?),
                    None => None,
                },
            };
            // a declaration without a value keeps an automatic one (ARG TARGETPLATFORM)
            if let Some(v) = value {
                global.insert(name.clone(), v);
            }
        }
    }

    let target = match &opts.target {
        None => df.stages.len() - 1,
        Some(t) => df.stage_index(t).ok_or_else(|| {
            EngineError::Invalid(format!("failed to reach build target {t} in {file}"))
        })?,
    };
    let needed = needed_stages(&df, target, &global);
    // stages a later stage starts from or copies from: their files are read
    let referenced: BTreeSet<usize> = needed
        .iter()
        .flat_map(|&i| stage_refs(&df, &df.stages[i], &global))
        .collect();

    let epoch = match (opts.reproducible, opts.source_date_epoch) {
        (true, sde) => Some(sde.unwrap_or(0)),
        (false, sde) => sde,
    };
    let mtime = match (opts.reproducible, opts.source_date_epoch) {
        (true, _) => MtimePolicy::Fixed(epoch.unwrap_or(0)),
        (false, Some(t)) => MtimePolicy::Clamp(t),
        (false, None) => MtimePolicy::Keep,
    };
    // OCI everywhere: OCI-layout readers (skopeo, umoci) skip Docker-typed manifests, and one
    // manifest for every output keeps the digest files true for each of them.
    let media_types = MediaTypes::Oci;
    let env = BuildEnv {
        dockerfile: &df,
        store: &store,
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
    };

    // roots of the stages so far, indexed by stage number
    let mut done: Vec<PathBuf> = Vec::new();
    let mut states: BTreeMap<usize, StageState> = BTreeMap::new();
    let mut last = None;
    for stage in &df.stages[..=target] {
        let label = stage
            .name
            .clone()
            .unwrap_or_else(|| stage.index.to_string());
        if !needed.contains(&stage.index) {
            let root = work.path().join(format!("stage-{}", stage.index));
            log::info!(
                "[{label}] skipping stage {}: the target does not use it",
                stage.index
            );
            done.push(root);
            continue;
        }
        let root = if opts.in_place {
            let root = PathBuf::from("/");
            if last.is_some() {
                // the stage before lived here (kaniko's DeleteFilesystem)
                log::info!("[{label}] clearing / of the previous stage");
                crate::fs::ignore::wipe(&root, &env.ignores)?;
            }
            root
        } else {
            stage_root(work.path(), stage.index)?
        };
        let reads_files = referenced.contains(&stage.index) || steps_read_files(&stage.steps);
        let (mut state, triggers) = start_stage(
            &env,
            &remote,
            stage,
            &label,
            root.clone(),
            &mut states,
            reads_files,
            &global,
        )?;
        for step in &triggers {
            log::info!(
                "[{label}] running ONBUILD trigger of the base image: {}",
                step.value.keyword()
            );
            state.run_step(&env, &mut args, step, &done)?;
        }
        let count = stage.steps.len();
        for (n, step) in stage.steps.iter().enumerate() {
            log::info!(
                "[{label}] step {}/{count}: {}",
                n + 1,
                step_summary(&text, step.line, step.end_line)
            );
            state.run_step(&env, &mut args, step, &done)?;
        }
        state.finish_snapshot(&env)?;
        if opts.in_place && referenced.contains(&stage.index) {
            // `/` goes to the next stage: later COPY --from read a copy
            let saved = stage_root(work.path(), stage.index)?;
            remote.unpack(&state.layers, &store, &saved, None)?;
            log::info!("[{label}] kept the stage's files for later stages");
            state.root = saved;
        }
        done.push(state.root.clone());
        last = Some(stage.index);
        states.insert(stage.index, state);
    }
    let unused = args.unused();
    if !unused.is_empty() {
        log::warn!("one or more build-args {unused:?} were not consumed");
    }
    let final_state = last
        .and_then(|i| states.remove(&i))
        .ok_or_else(|| EngineError::Invalid("no stage was built".to_string()))?;
    let mut config = final_state.config;
    if !opts.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &opts.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    config.created = Some(env.created());
    let image = BuiltImage::assemble(&store, &config, final_state.layers, media_types)?;
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
    if opts.push && !destinations.is_empty() {
        push(&remote, &store, &image, &destinations)?;
    }
    write_digest_files(opts, &image, &destinations)?;
    if opts.in_place && opts.cleanup {
        crate::fs::ignore::wipe(Path::new("/"), &env.ignores)?;
    }
    Ok(BuildOutcome { image, digest })
}

/// Where an in-place build keeps its own state unless `--kaniko-dir` says.
const IN_PLACE_WORK_DIR: &str = "/kaniko";

/// What snapshots leave out. In place, the root is `/`: every mount point,
/// the executor's directory (`work_base`), smelt's binary, the context, the
/// Dockerfile and (`--ignore-var-run`) `/var/run` too.
fn root_ignores(opts: &BuildOptions, work_base: &Path) -> Result<RootIgnores, EngineError> {
    let mut ignores = RootIgnores::new(&opts.ignore_paths);
    if !opts.in_place {
        return Ok(ignores);
    }
    let root = Path::new("/");
    ignores.add_mount_points(root)?;
    let exe = std::env::current_exe().ok();
    for p in [
        Some(work_base),
        Some(opts.context.as_path()),
        Some(opts.dockerfile.as_path()),
        exe.as_deref(),
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

/// Makes the root directory of stage `index` in the work directory. Its
/// name ends in a random part: ext4 places a directory made under a
/// top-of-hierarchy directory (`tree::mark_top_dir`) by a hash of its name,
/// so a fixed name would land every build in the block group the last
/// build just freed.
fn stage_root(work: &Path, index: usize) -> Result<PathBuf, EngineError> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("stage-{index}-"))
        .tempdir_in(work)
        .map_err(|e| {
            EngineError::Invalid(format!("creating a stage root in {}: {e}", work.display()))
        })?;
    let root = dir.keep();
    // a root as `mkdir` makes it, not tempfile's 0700
    fs_err::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(root)
}

/// The first lines of a step, for the log.
fn step_summary(text: &str, line: usize, end: usize) -> String {
    let lines: Vec<&str> = text.lines().skip(line - 1).take(end + 1 - line).collect();
    let joined = lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if joined.chars().count() > 120 {
        format!("{}…", joined.chars().take(120).collect::<String>())
    } else {
        joined
    }
}

/// Stages the target depends on (through FROM and COPY --from), itself included.
fn needed_stages(
    df: &Dockerfile,
    target: usize,
    global: &BTreeMap<String, String>,
) -> BTreeSet<usize> {
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(stage_refs(df, &df.stages[i], global));
        }
    }
    needed
}

/// The earlier stages `stage` starts from (FROM) or copies from (COPY --from).
fn stage_refs(df: &Dockerfile, stage: &Stage, global: &BTreeMap<String, String>) -> Vec<usize> {
    let lexer = df.lexer();
    let mut out = Vec::new();
    let image = lexer
        .process_word(&stage.from.value.image, global)
        .unwrap_or_default();
    if let Some(i) = df.stage_index(&image).filter(|&i| i < stage.index) {
        out.push(i);
    }
    for step in &stage.steps {
        if let Instruction::Copy(c) = &step.value
            && let Some(from) = &c.from
        {
            let from = lexer
                .process_word(from, global)
                .unwrap_or_else(|_| from.clone());
            if let Some(i) = df.stage_index(&from).filter(|&i| i < stage.index) {
                out.push(i);
            }
        }
    }
    out
}

/// Whether any of `steps` reads the files of the image it runs on: RUN, or
/// a user or group given by name (looked up in /etc/passwd and /etc/group).
/// A stage whose steps do not, on a registry base, never downloads the
/// base's layers unless an output needs their bytes (kaniko does the same).
fn steps_read_files(steps: &[Located<Instruction>]) -> bool {
    let numeric = |spec: &str| {
        spec.split(':')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    };
    steps.iter().any(|s| match &s.value {
        Instruction::Run(_) | Instruction::Onbuild { .. } => true,
        Instruction::User(u) => !numeric(u),
        Instruction::Copy(c) => c.chown.as_deref().is_some_and(|o| !numeric(o)),
        _ => false,
    })
}

/// ONBUILD triggers of a base image, parsed as the steps they stand for.
fn parse_triggers(
    image: &str,
    triggers: &[String],
) -> Result<Vec<Located<Instruction>>, EngineError> {
    let text = format!("FROM scratch\n{}\n", triggers.join("\n"));
    let df = Dockerfile::parse(&text, &format!("ONBUILD triggers of {image}"))?;
    Ok(df
        .stages
        .into_iter()
        .next()
        .map(|s| s.steps)
        .unwrap_or_default())
}

#[allow(clippy::too_many_arguments)]
fn start_stage(
    env: &BuildEnv<'_>,
    remote: &Remote,
    stage: &Stage,
    label: &str,
    root: PathBuf,
    states: &mut BTreeMap<usize, StageState>,
    reads_files: bool,
    global: &BTreeMap<String, String>,
) -> Result<(StageState, Vec<Located<Instruction>>), EngineError> {
    let df = env.dockerfile;
    let file = df.file.as_str();
    let lexer = df.lexer();
    let from = &stage.from;
    let expand_err = |source| crate::dockerfile::DockerfileError::Expand {
        file: file.to_string(),
        line: from.line,
        source,
    };
    let image = lexer
        .process_word(&from.value.image, global)
        .map_err(expand_err)?;
    let platform = match &from.value.platform {
        Some(p) => {
            let p = lexer.process_word(p, global).map_err(expand_err)?;
            super::Platform::parse(&p).map_err(|m| EngineError::Step {
                file: file.to_string(),
                line: from.line,
                instruction: "FROM".to_string(),
                message: m,
            })?
        }
        None => env.platform.clone(),
    };
    log::info!("[{label}] FROM {image}");
    if image.eq_ignore_ascii_case("scratch") {
        fs_err::create_dir_all(&root)?;
        return Ok((
            StageState::new(
                label.to_string(),
                root,
                scratch_config(&platform),
                Vec::new(),
            ),
            Vec::new(),
        ));
    }
    if let Some(parent) = df.stage_index(&image).filter(|&i| i < stage.index) {
        let Some(base) = states.get(&parent) else {
            return Err(EngineError::Invalid(format!(
                "{file}:{}: stage {image} was not built",
                from.line
            )));
        };
        if env.in_place {
            remote.unpack(&base.layers, env.store, &root, Some(&env.ignores))?;
        } else {
            copy_tree(&base.root, &root)?;
        }
        let mut state = StageState::new(
            label.to_string(),
            root,
            base.config.clone(),
            base.layers.clone(),
        );
        state.config.config.on_build = None;
        return Ok((state, Vec::new()));
    }
    let BaseImage {
        source,
        mut config,
        layers,
    } = remote
        .resolve(&image, &platform)
        .map_err(|e| EngineError::Step {
            file: file.to_string(),
            line: from.line,
            instruction: "FROM".to_string(),
            message: e.to_string(),
        })?;
    let triggers = match config.config.on_build.take() {
        Some(t) if !t.is_empty() => parse_triggers(&image, &t)?,
        _ => Vec::new(),
    };
    fs_err::create_dir_all(&root)?;
    if reads_files || !triggers.is_empty() {
        let skip = env.in_place.then_some(&env.ignores);
        let mut attempt = 0;
        while let Err(e) = remote.fetch_and_extract(&source, &layers, env.store, &root, skip) {
            if attempt == env.extract_retries {
                return Err(e);
            }
            attempt += 1;
            log::warn!(
                "[{label}] unpacking {image} failed ({e}); attempt {} of {}",
                attempt + 1,
                env.extract_retries + 1
            );
        }
        log::info!("[{label}] unpacked {} layers of {image}", layers.len());
    } else {
        log::info!("[{label}] not unpacking {image}: no step reads its files");
    }
    Ok((
        StageState::new(label.to_string(), root, config, layers),
        triggers,
    ))
}

/// Copies a stage root into a child stage's (empty) root, keeping owners, modes, times,
/// links and xattrs (`cp -a`).
fn copy_tree(from: &Path, to: &Path) -> Result<(), EngineError> {
    // `from/.` into the existing `to`: the contents, and the root's own
    // owner, mode and times
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from.join("."))
        .arg(to)
        .status()
        .map_err(|e| {
            EngineError::Invalid(format!(
                "copying {} to {}: {e}",
                from.display(),
                to.display()
            ))
        })?;
    if !status.success() {
        return Err(EngineError::Invalid(format!(
            "copying {} to {} failed ({status})",
            from.display(),
            to.display()
        )));
    }
    Ok(())
}

/// Pushes the image: layers from the local store, or mounted from (or
/// fetched out of) the repository a base layer came from.
fn push(
    remote: &Remote,
    store: &BlobStore,
    image: &BuiltImage,
    destinations: &[Reference],
) -> Result<(), EngineError> {
    let mut blobs = vec![PushBlob {
        descriptor: image.manifest.config.clone(),
        source: None,
    }];
    for l in &image.manifest.layers {
        blobs.push(PushBlob {
            descriptor: l.clone(),
            source: remote.source_of(&l.digest),
        });
    }
    let push = PushImage {
        manifest_bytes: image.manifest_bytes.clone(),
        manifest_media_type: image.manifest.media_type.clone(),
        blobs,
    };
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
