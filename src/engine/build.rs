//! The life of one build: read the Dockerfile, resolve global args and the
//! stages the target needs, run them in order, assemble the image and write
//! it to every output asked for (docker-archive, OCI layout, digest files).

use super::context::{SourceTree, load_ignore};
use super::scope::BuildArgs;
use super::stage::{BuildEnv, StageState, scratch_config};
use super::{BuildOptions, EngineError};
use crate::dockerfile::{Dockerfile, Instruction, Stage};
use crate::fs::{LayerOptions, MtimePolicy};
use crate::image::{
    BlobStore, BuiltImage, Digest, MediaTypes, write_docker_archive, write_oci_layout,
};
use crate::registry::Reference;
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

    let base = opts.work_dir.clone().unwrap_or_else(std::env::temp_dir);
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
    let store = BlobStore::open(&work.path().join("blobs"))?;

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
        let root = work.path().join(format!("stage-{}", stage.index));
        if !needed.contains(&stage.index) {
            log::info!(
                "[{label}] skipping stage {}: the target does not use it",
                stage.index
            );
            done.push(root);
            continue;
        }
        let mut state = start_stage(
            &env,
            stage,
            &label,
            root.clone(),
            &mut states,
            &df,
            &file,
            &global,
        )?;
        let count = stage.steps.len();
        for (n, step) in stage.steps.iter().enumerate() {
            log::info!(
                "[{label}] step {}/{count}: {}",
                n + 1,
                step_summary(&text, step.line, step.end_line)
            );
            state.run_step(&env, &mut args, step, &done)?;
        }
        done.push(root);
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
    write_outputs(opts, &store, &image, &destinations)?;
    Ok(BuildOutcome { image, digest })
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
    let lexer = df.lexer();
    let refers = |stage: &Stage| -> Vec<usize> {
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
    };
    let mut needed = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if needed.insert(i) {
            todo.extend(refers(&df.stages[i]));
        }
    }
    needed
}

#[allow(clippy::too_many_arguments)]
fn start_stage(
    env: &BuildEnv<'_>,
    stage: &Stage,
    label: &str,
    root: PathBuf,
    states: &mut BTreeMap<usize, StageState>,
    df: &Dockerfile,
    file: &str,
    global: &BTreeMap<String, String>,
) -> Result<StageState, EngineError> {
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
        return Ok(StageState::new(
            label.to_string(),
            root,
            scratch_config(&platform),
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
        copy_tree(&base.root, &root)?;
        let mut state = StageState::new(
            label.to_string(),
            root,
            base.config.clone(),
            base.layers.clone(),
        );
        state.config.config.on_build = None;
        return Ok(state);
    }
    Err(EngineError::Unsupported(format!(
        "{file}:{}: FROM {image}: pulling base images from a registry is not implemented yet (only FROM scratch and earlier stages)",
        from.line
    )))
}

/// Copies a stage root for a child stage, keeping owners, modes, times,
/// links and xattrs (`cp -a`).
fn copy_tree(from: &Path, to: &Path) -> Result<(), EngineError> {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg("--reflink=auto")
        .arg(from)
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

fn write_outputs(
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
