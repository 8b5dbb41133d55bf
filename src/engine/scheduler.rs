//! Running the stages of a plan. Images the plan names (bases and `COPY
//! --from` images) are resolved first, so a wrong name fails before
//! anything is built. Then every stage whose inputs are ready starts on a
//! thread of its own, so stages that do not depend on each other run at
//! the same time (in place there is one `/`, and they take turns).
//!
//! When a stage fails, the others stop at their next step and a running
//! RUN is killed, as BuildKit cancels a failed build's other work; a
//! SIGTERM or SIGINT (`engine::interrupt`) cancels every stage the same way.
//!
//! A stage's root lives only as long as a later stage needs it: a stage
//! that is the last reader of its base's root takes that directory over
//! instead of copying it, and a root nobody will read again is removed as
//! soon as its last reader is done.

use super::cache;
use super::context::SourceTree;
use super::copy_sources::CopySources;
use super::keep::{self, Transfer};
use super::plan::{Keep, Plan, Ref};
use super::remote::{BaseImage, ImageLayers, Remote};
use super::scope::{BuildArgs, StageScope};
use super::stage::{BuildEnv, StageState, scratch_config};
use super::{EngineError, Platform};
use crate::dockerfile::{Instruction, Located, Stage};
use crate::image::{Descriptor, ImageConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// The images a plan names, resolved before any stage runs.
struct Resolved {
    /// Registry bases, by stage.
    bases: BTreeMap<usize, BaseImage>,
    /// Each stage's platform (FROM --platform, else the build's).
    platforms: BTreeMap<usize, Platform>,
    /// `COPY --from` images, unpacked, by reference as written.
    images: BTreeMap<String, PathBuf>,
}

/// A finished stage.
#[derive(Debug, Clone)]
pub struct StageOutput {
    pub root: PathBuf,
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    /// Its ARGs at the end: a child stage inherits them (BuildKit's rule).
    pub scope: StageScope,
    /// The cache key after its last step (a child stage's keys build on it).
    pub key: String,
}

/// What a stage starts from.
enum Base {
    Scratch(Platform),
    /// An earlier stage; `take` hands its root directory over (this stage
    /// is its last reader).
    Stage {
        parent: Box<StageOutput>,
        take: bool,
    },
    Image {
        image: String,
        base: Box<BaseImage>,
    },
}

/// What the stages share.
#[derive(Debug)]
pub struct Runner<'a> {
    pub env: &'a BuildEnv<'a>,
    pub remote: &'a Remote,
    pub work: &'a Path,
    /// The Dockerfile's text, for step lines in the log.
    pub text: &'a str,
    /// `--materialize`: the target's files are unpacked (its base and every
    /// cache hit's layer) even when no step that runs reads them.
    pub materialize: bool,
}

impl Runner<'_> {
    /// Builds every stage of `plan`; returns the target's output. The
    /// plan grows when a registry base's ONBUILD triggers name a stage.
    pub fn run(&self, plan: &mut Plan, args: &mut BuildArgs) -> Result<StageOutput, EngineError> {
        // the kept bases' overlays go before the work directory, however
        // the build ends
        let _unmount = Unmount(self.work);
        let df = self.env.dockerfile;
        let Resolved {
            mut bases,
            platforms,
            images,
        } = self.resolve_images(plan)?;
        let plan = &*plan;
        for s in &df.stages {
            if !plan.needs(s.index) && s.index < plan.target {
                log::info!(
                    "[{}] skipping stage {}: the target does not use it",
                    label(s),
                    s.index
                );
            }
        }
        let parallel = !self.env.in_place;
        let mut done: BTreeMap<usize, StageOutput> = BTreeMap::new();
        let mut readers_left = plan.readers.clone();
        let mut started: BTreeSet<usize> = BTreeSet::new();
        let mut failure: Option<EngineError> = None;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            let mut running = 0usize;
            loop {
                for &i in &plan.order {
                    if failure.is_some() || (running > 0 && !parallel) {
                        break;
                    }
                    let refs = &plan.refs[&i];
                    if started.contains(&i) || !refs.stages().iter().all(|d| done.contains_key(d)) {
                        continue;
                    }
                    let stage = &df.stages[i];
                    let base = match &refs.base {
                        None => Base::Scratch(platforms[&i].clone()),
                        Some(Ref::Stage(p)) => {
                            // not when this stage copies from it too (its
                            // own COPY --from or a trigger's): the COPY
                            // reads the parent as it was
                            let copies_from_it =
                                refs.copies.iter().any(|c| c.from == Ref::Stage(*p));
                            let take = !self.env.in_place
                                && readers_left.get(p) == Some(&1)
                                && *p != plan.target
                                && !copies_from_it;
                            Base::Stage {
                                parent: Box::new(done[p].clone()),
                                take,
                            }
                        }
                        Some(Ref::Image(image)) => match bases.remove(&i) {
                            Some(base) => Base::Image {
                                image: image.clone(),
                                base: Box::new(base),
                            },
                            None => {
                                failure = Some(EngineError::Invalid(format!(
                                    "stage {i}: {image} was not resolved"
                                )));
                                break;
                            }
                        },
                    };
                    if let Base::Stage { take: true, .. } = &base
                        && let Some(Ref::Stage(p)) = &refs.base
                    {
                        // the directory moves: nobody may remove it as the parent's
                        if let Some(o) = done.get_mut(p) {
                            o.root = PathBuf::new();
                        }
                    }
                    let sources = CopySources {
                        stages: refs
                            .stages()
                            .iter()
                            .map(|d| (*d, done[d].root.clone()))
                            .collect(),
                        images: images.clone(),
                    };
                    let keep = plan.keep(&Ref::Stage(i));
                    let triggers = &refs.triggers;
                    let first = done.is_empty();
                    let mut stage_args = args.clone();
                    let tx = tx.clone();
                    started.insert(i);
                    running += 1;
                    scope.spawn(move || {
                        let r = self
                            .run_stage(
                                stage,
                                base,
                                triggers,
                                &sources,
                                &mut stage_args,
                                &keep,
                                first,
                            )
                            .map(|out| (out, stage_args));
                        let _ = tx.send((i, r));
                    });
                }
                if running == 0 {
                    break;
                }
                let Ok((i, result)) = rx.recv() else { break };
                running -= 1;
                match result {
                    Ok((out, stage_args)) => {
                        args.merge_used(&stage_args);
                        done.insert(i, out);
                        for d in plan.refs[&i].stages() {
                            let left = readers_left.entry(d).or_default();
                            *left = left.saturating_sub(1);
                            if *left == 0 && d != plan.target {
                                self.release(&done[&d]);
                            }
                        }
                    }
                    Err(e) => {
                        if failure.is_none() {
                            // the other stages stop (a RUN is killed)
                            self.env.cancelled.store(true, Ordering::Relaxed);
                            failure = Some(e);
                        }
                    }
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        done.remove(&plan.target)
            .ok_or_else(|| EngineError::Invalid("no stage was built".to_string()))
    }

    /// Removes a root no stage will read again (not `/`, not one handed on).
    fn release(&self, out: &StageOutput) {
        remove_root(&out.root, self.work);
    }

    /// Resolves every image the plan names: each stage's registry base
    /// (with its platform), and `COPY --from` images, unpacked into the
    /// work directory. A wrong name fails here, before any stage runs. A
    /// base's ONBUILD triggers go to the plan, which may then need more
    /// stages (resolved in turn, as BuildKit's resolveStages does); a
    /// stage the target never needs is never resolved.
    fn resolve_images(&self, plan: &mut Plan) -> Result<Resolved, EngineError> {
        let df = self.env.dockerfile;
        let mut bases = BTreeMap::new();
        let mut platforms = BTreeMap::new();
        let mut images = BTreeMap::new();
        let step_err = |line, instruction, e| EngineError::step(&df.file, line, instruction, e);
        while let Some(i) = plan
            .order
            .iter()
            .copied()
            .find(|i| !platforms.contains_key(i))
        {
            let stage = &df.stages[i];
            let platform = stage_platform(self.env, stage)?;
            platforms.insert(i, platform.clone());
            if let Some(Ref::Image(image)) = plan.refs[&i].base.clone() {
                let mut base = self
                    .remote
                    .resolve(&image, &platform)
                    .map_err(|e| step_err(stage.from.line, "FROM", e))?;
                // its triggers run in this stage, never carried on
                if let Some(triggers) = base.config.config.on_build.take()
                    && !triggers.is_empty()
                {
                    plan.add_image_triggers(df, i, &image, &triggers, self.env.global_args)?;
                }
                bases.insert(i, base);
            }
        }
        for &i in &plan.order {
            let platform = &platforms[&i];
            for copy in &plan.refs[&i].copies {
                let (r, line) = (&copy.from, copy.line);
                let Ref::Image(image) = r else { continue };
                if images.contains_key(image) {
                    continue;
                }
                let base = self
                    .remote
                    .resolve(image, platform)
                    .map_err(|e| step_err(line, "COPY", e))?;
                let index = images.len() + df.stages.len();
                let root = stage_root(self.work, index)?;
                let layers = ImageLayers {
                    image,
                    layers: &base.layers,
                    diff_ids: &base.config.rootfs.diff_ids,
                };
                self.remote
                    .fetch_and_extract(&base.source, layers, self.env.store, &root, None)
                    .map_err(|e| step_err(line, "COPY", e))?;
                log::info!("unpacked {image} for COPY --from");
                let root = match plan.keep(r) {
                    Keep::Paths(sources) => self
                        .keep_paths(image, &format!("image {image}"), &root, &sources, index)?
                        .unwrap_or(root),
                    _ => root,
                };
                images.insert(image.clone(), root);
            }
        }
        Ok(Resolved {
            bases,
            platforms,
            images,
        })
    }

    /// Builds one stage from its base: the ONBUILD `triggers` it inherits,
    /// then its steps.
    #[allow(clippy::too_many_arguments)]
    fn run_stage(
        &self,
        stage: &Stage,
        base: Base,
        triggers: &[Located<Instruction>],
        sources: &CopySources,
        args: &mut BuildArgs,
        keep: &Keep,
        first: bool,
    ) -> Result<StageOutput, EngineError> {
        let env = self.env;
        let label = label(stage);
        // --materialize: the target (the one stage nobody reads) ends whole
        let forced = self.materialize && *keep == Keep::Nothing;
        let root = if env.in_place {
            let root = PathBuf::from("/");
            if !first {
                // the stage before lived here (kaniko's DeleteFilesystem)
                log::info!("[{label}] clearing / of the previous stage");
                crate::fs::ignore::wipe(&root, &env.ignores)?;
            }
            root
        } else if let Base::Stage {
            parent, take: true, ..
        } = &base
        {
            parent.root.clone()
        } else {
            stage_root(self.work, stage.index)?
        };
        log::info!("[{label}] FROM {}", stage.from.value.image);
        // a registry base is unpacked once it is known whether a step needs it
        let mut unpack: Option<(String, crate::registry::Reference)> = None;
        // the base as a cache miss names it
        let base_shown = match &base {
            Base::Scratch(platform) => format!("scratch {platform}"),
            Base::Stage { .. } => format!("stage {}", stage.from.value.image),
            Base::Image { base, .. } => base.digest.to_string(),
        };
        let (mut state, base_key) = match base {
            Base::Scratch(platform) => {
                let key = cache::base_key(&format!("scratch {platform}"));
                (
                    StageState::new(label.clone(), root, scratch_config(&platform), Vec::new()),
                    key,
                )
            }
            Base::Stage { parent, take } => {
                if env.in_place {
                    let layers = ImageLayers {
                        image: &format!("stage {}", stage.from.value.image),
                        layers: &parent.layers,
                        diff_ids: &parent.config.rootfs.diff_ids,
                    };
                    self.remote
                        .unpack(layers, env.store, &root, Some(&env.ignores))
                        .map_err(|e| {
                            EngineError::step(&env.dockerfile.file, stage.from.line, "FROM", e)
                        })?;
                } else if !take {
                    keep::copy_tree(&parent.root, &root)?;
                }
                let StageOutput {
                    config,
                    layers,
                    scope,
                    key,
                    ..
                } = *parent;
                let env: &[String] = config.config.env.as_deref().unwrap_or(&[]);
                let scope = scope.for_child(env);
                let mut state = StageState::new(label.clone(), root, config, layers);
                state.vars.scope = scope;
                // the parent's ONBUILD lines are this stage's triggers
                state.config.config.on_build = None;
                (state, key)
            }
            Base::Image { image, base } => {
                // its ONBUILD triggers were taken into the plan
                let BaseImage {
                    source,
                    digest,
                    config,
                    layers,
                } = *base;
                unpack = Some((image, source));
                (
                    StageState::new(label.clone(), root, config, layers),
                    cache::base_key(digest.as_str()),
                )
            }
        };
        let steps: Vec<&Located<Instruction>> = triggers.iter().chain(stage.steps.iter()).collect();
        // keys first, every lookup at once; a miss does not stop the others
        let (keys, mut hits, final_key) = cache::look_up(
            env,
            self.remote,
            &state,
            args,
            &steps,
            sources,
            base_key,
            &base_shown,
        )?;
        // the base's files are needed if a step that runs reads them, or a
        // later stage does; layers from the cache are applied up to the
        // last step that needs the files (all of them if a later stage does).
        // A hit whose layer stays in the cache registry (the push mounts or
        // fetches it) must still be there: one that is gone runs as a miss,
        // which may make earlier hits' layers needed in turn.
        let mut checked = BTreeSet::new();
        let last_reader = loop {
            let last_reader = steps
                .iter()
                .enumerate()
                .filter(|(i, s)| hits[*i].is_none() && reads_files(&s.value))
                .map(|(i, _)| i)
                .max();
            let materialized =
                forced || unpack.is_none() || *keep != Keep::Nothing || last_reader.is_some();
            let lazy: Vec<usize> = (0..steps.len())
                .filter(|&i| hits[i].is_some() && !checked.contains(&i))
                .filter(|&i| {
                    !(materialized
                        && (forced || *keep != Keep::Nothing || last_reader.is_some_and(|l| i < l)))
                })
                .collect();
            checked.extend(lazy.iter().copied());
            let gone = cache::gone_from_cache(env, self.remote, &hits, &lazy);
            if gone.is_empty() {
                break last_reader;
            }
            for (i, why) in gone {
                let key = keys[i].as_ref().map_or("", |k| &k.key[..12]);
                log::warn!(
                    "[{label}] the layer of cache entry {key} is not in the cache ({why}); \
                     the step will run"
                );
                hits[i] = None;
            }
        };
        let materialize = forced || *keep != Keep::Nothing || last_reader.is_some();
        // the first steps whose layers the kept tree under the root holds
        // (a kept chain: the base and the hits before the first miss)
        let mut chained = 0;
        if let Some((image, source)) = &unpack {
            if materialize {
                let layers = state.layers.clone();
                let diff_ids = state.config.rootfs.diff_ids.clone();
                let layers = ImageLayers {
                    image,
                    layers: &layers,
                    diff_ids: &diff_ids,
                };
                let (steps_held, chain) = self.chain_hits(&hits);
                if self
                    .unpack_base(&label, source, layers, &chain, &state.root)
                    .map_err(|e| {
                        EngineError::step(&env.dockerfile.file, stage.from.line, "FROM", e)
                    })?
                {
                    chained = steps_held;
                }
            } else {
                log::info!("[{label}] not unpacking {image}: no step that runs reads its files");
            }
        }
        // a scratch or stage base is on disk already
        let materialized = materialize || unpack.is_none();
        let check = || {
            if env.cancelled.load(Ordering::Relaxed) {
                let why = match super::interrupt::signal() {
                    Some(s) => super::interrupt::signal_name(s),
                    None => "another stage failed".to_string(),
                };
                log::info!("[{label}] stopped: {why}");
                return Err(EngineError::Invalid(format!(
                    "stage {label} stopped: {why}"
                )));
            }
            Ok(())
        };
        let count = stage.steps.len();
        for (i, step) in steps.iter().enumerate() {
            check()?;
            if i < triggers.len() {
                log::info!(
                    "[{label}] running ONBUILD trigger of the base: {}",
                    step.value.keyword()
                );
            } else {
                log::info!(
                    "[{label}] step {}/{count}: {}",
                    i - triggers.len() + 1,
                    step_summary(self.text, step.line, step.end_line)
                );
            }
            let fetched = hits[i].as_ref().map(|entry| {
                // a layer of the kept chain under the root is there already
                let in_tree = i < chained;
                let extract = !in_tree
                    && materialized
                    && (forced
                        || *keep != Keep::Nothing
                        || last_reader.is_some_and(|last| i < last));
                let key = keys[i].as_ref().map_or("", |k| &k.key[..12]);
                log::info!(
                    "[{label}] cache hit {key}{}",
                    if extract {
                        ""
                    } else if in_tree {
                        " (in the kept tree)"
                    } else {
                        " (layer not downloaded)"
                    }
                );
                // a layer that cannot be had makes the hit a miss
                let fetched = if extract {
                    cache::fetch_hit(env, self.remote, entry)
                } else {
                    Ok(())
                };
                if let Err(why) = &fetched {
                    log::warn!(
                        "[{label}] the layer of cache entry {key} could not be fetched ({why}); \
                         running the step"
                    );
                }
                (extract, fetched.is_ok())
            });
            if let (Some(entry), Some((extract, true))) = (&hits[i], fetched) {
                if matches!(step.value, Instruction::Workdir(_)) {
                    state.run_metadata(env, args, step)?;
                }
                state
                    .apply_cached(env, self.remote, entry, extract)
                    .map_err(|e| {
                        EngineError::step(&env.dockerfile.file, step.line, step.value.keyword(), e)
                    })?;
                continue;
            }
            let layers_before = state.layers.len();
            state.run_step(env, args, step, sources)?;
            if let Some(inputs) = &keys[i] {
                cache::store_in_cache(env, self.remote, &state, inputs, layers_before);
            }
        }
        state.finish_snapshot(env)?;
        let mut whole = *keep == Keep::Whole;
        if let Keep::Paths(sources) = keep {
            match self.keep_paths(
                &label,
                &format!("stage {label}"),
                &state.root,
                sources,
                stage.index,
            )? {
                Some(kept) => state.root = kept,
                None => whole = true,
            }
        }
        if env.in_place && whole {
            // `/` goes to the next stage: later stages read a copy
            let saved = stage_root(self.work, stage.index)?;
            let layers = ImageLayers {
                image: &format!("stage {label}"),
                layers: &state.layers,
                diff_ids: &state.config.rootfs.diff_ids,
            };
            self.remote.unpack(layers, env.store, &saved, None)?;
            log::info!("[{label}] kept the stage's files for later stages");
            state.root = saved;
        }
        Ok(StageOutput {
            root: state.root,
            config: state.config,
            layers: state.layers,
            scope: state.vars.scope,
            key: final_key,
        })
    }

    /// Keeps only the paths `sources` match of the finished tree at `root`
    /// (a stage's, or a `COPY --from` image's), in a new directory of the
    /// work directory; the rest is removed (in place, `/` is left to the
    /// next stage's wipe). `None` when a source names the whole root.
    /// A source that matches nothing fails, naming its line.
    fn keep_paths(
        &self,
        label: &str,
        what: &str,
        root: &Path,
        sources: &[(String, usize)],
        index: usize,
    ) -> Result<Option<PathBuf>, EngineError> {
        let tree = SourceTree::stage(root.to_path_buf(), what.to_string());
        let selection = match keep::select(&tree, sources) {
            Ok(Some(found)) => found,
            Ok(None) => return Ok(None),
            Err(missing) => {
                return Err(EngineError::step(
                    &self.env.dockerfile.file,
                    missing.line,
                    "COPY",
                    missing.message,
                ));
            }
        };
        let into = stage_root(self.work, index)?;
        let live = self.env.in_place && root == Path::new("/");
        let how = if live { Transfer::Copy } else { Transfer::Move };
        let kept = keep::transfer(root, &into, &selection, how)?;
        if !live {
            remove_root(root, self.work);
        }
        log::info!(
            "[{label}] kept {} path{} ({} entries, {} bytes) that COPY --from reads; dropped the rest",
            kept.paths,
            if kept.paths == 1 { "" } else { "s" },
            kept.entries,
            kept.bytes
        );
        Ok(Some(into))
    }

    /// The cache hits a stage's kept tree can hold with its base (with
    /// `--cache-dir`, not in place): those before the first miss. Their
    /// layers are not downloaded here (a tree kept whole needs none; the
    /// push mounts or fetches them as a lazy hit's), so one that is gone
    /// from the cache repository ends them there (the step loop then
    /// tries it and runs it as a miss). Returns how many steps they are
    /// and their layers.
    fn chain_hits(&self, hits: &[Option<cache::CacheEntry>]) -> (usize, Vec<ChainLayer>) {
        if self.env.in_place || self.remote.kept_bases().is_none() {
            return (0, Vec::new());
        }
        let prefix: Vec<usize> = (0..hits.iter().map_while(Option::as_ref).count()).collect();
        let gone = cache::gone_from_cache(self.env, self.remote, hits, &prefix);
        let steps = gone.iter().map(|(i, _)| *i).min().unwrap_or(prefix.len());
        let layers = hits[..steps]
            .iter()
            .flatten()
            .filter_map(|entry| {
                Some(ChainLayer {
                    image: format!("cache entry {}", entry.source),
                    layer: entry.layers.first()?.clone(),
                    diff_id: entry.diff_ids.first()?.clone(),
                    entry: entry.clone(),
                })
            })
            .collect();
        (steps, layers)
    }

    /// Makes `root` a registry base: with `--cache-dir` (not in place), an
    /// overlay of the base kept unpacked there (`engine/bases.rs`, which
    /// unpacks it there first when it is not), else by extraction. With
    /// `chain` (cache hits' layers the stage applies next, in order,
    /// fetched only if the tree is made), the kept tree is that of the
    /// base and those layers; `Ok(true)` says the root holds them too (the
    /// caller does not apply them again).
    fn unpack_base(
        &self,
        label: &str,
        source: &crate::registry::Reference,
        layers: ImageLayers<'_>,
        chain: &[ChainLayer],
        root: &Path,
    ) -> Result<bool, EngineError> {
        if !self.env.in_place
            && let Some(kept) = self.remote.kept_bases()
        {
            if !chain.is_empty() {
                let mut diff_ids = layers.diff_ids.to_vec();
                diff_ids.extend(chain.iter().map(|c| c.diff_id.clone()));
                let what = format!(
                    "{} and {} cache hit layer{}",
                    layers.image,
                    chain.len(),
                    if chain.len() == 1 { "" } else { "s" }
                );
                // afresh from every layer: the base's kept tree is never read
                // to make it, so nothing done here can change that one
                let extract = |tree: &Path| {
                    self.extract_base(label, source, layers, tree)?;
                    for c in chain {
                        cache::fetch_hit(self.env, self.remote, &c.entry).map_err(|e| {
                            EngineError::Invalid(format!("fetching the layer of {}: {e}", c.image))
                        })?;
                        let hit = ImageLayers {
                            image: &c.image,
                            layers: std::slice::from_ref(&c.layer),
                            diff_ids: std::slice::from_ref(&c.diff_id),
                        };
                        self.remote.unpack(hit, self.env.store, tree, None)?;
                    }
                    Ok(())
                };
                match kept.mount_base(label, &what, &diff_ids, root, self.work, extract) {
                    Ok(true) => return Ok(true),
                    // no overlay here: the base alone cannot have one either
                    Ok(false) => {
                        return self
                            .extract_base(label, source, layers, root)
                            .map(|()| false);
                    }
                    Err(e) => log::warn!(
                        "[{label}] keeping {what} unpacked in the cache directory failed ({e}); \
                         trying the base alone"
                    ),
                }
            }
            let extract = |tree: &Path| self.extract_base(label, source, layers, tree);
            match kept.mount_base(
                label,
                layers.image,
                layers.diff_ids,
                root,
                self.work,
                extract,
            ) {
                Ok(true) => return Ok(false),
                Ok(false) => {}
                Err(e) => log::warn!(
                    "[{label}] keeping {} unpacked in the cache directory failed ({e}); unpacking it here",
                    layers.image
                ),
            }
        }
        self.extract_base(label, source, layers, root)
            .map(|()| false)
    }

    /// Downloads and applies a registry base, with `--image-fs-extract-retry`.
    fn extract_base(
        &self,
        label: &str,
        source: &crate::registry::Reference,
        layers: ImageLayers<'_>,
        root: &Path,
    ) -> Result<(), EngineError> {
        let image = layers.image;
        let env = self.env;
        let skip = env.in_place.then_some(&env.ignores);
        let mut attempt = 0;
        while let Err(e) = self
            .remote
            .fetch_and_extract(source, layers, env.store, root, skip)
        {
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
        log::info!(
            "[{label}] unpacked {} layers of {image}",
            layers.layers.len()
        );
        Ok(())
    }
}

/// A cache hit's layer that a kept tree holds above its base.
struct ChainLayer {
    /// The cache entry it comes from, for errors.
    image: String,
    layer: Descriptor,
    diff_id: crate::image::Digest,
    /// Fetched only when the tree is made.
    entry: cache::CacheEntry,
}

/// Removes a stage's root in the work directory `work` (not `/`): a kept
/// base's overlay is detached first, and its upper and work directories
/// beside the root go with it (`bases::overlay_dir`).
pub(crate) fn remove_root(root: &Path, work: &Path) {
    if root.as_os_str().is_empty() || !root.starts_with(work) {
        return;
    }
    crate::fs::overlay::unmount_beneath(root);
    for dir in [root.to_path_buf(), super::bases::overlay_dir(root)] {
        if let Err(e) = fs_err::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("removing {}: {e}", dir.display());
        }
    }
}

/// Detaches every mount under a directory when dropped.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        crate::fs::overlay::unmount_beneath(self.0);
    }
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

/// How a stage is named in logs: its `AS` name, else its index.
fn label(stage: &Stage) -> String {
    stage
        .name
        .clone()
        .unwrap_or_else(|| stage.index.to_string())
}

/// The platform a stage's FROM asks for (`--platform`), else the build's.
fn stage_platform(env: &BuildEnv<'_>, stage: &Stage) -> Result<Platform, EngineError> {
    let df = env.dockerfile;
    let from = &stage.from;
    match &from.value.platform {
        Some(p) => {
            let p = df
                .lexer()
                .process_word(p, env.global_args)
                .map_err(|source| crate::dockerfile::DockerfileError::Expand {
                    file: df.file.clone(),
                    line: from.line,
                    source,
                })?;
            Platform::parse(&p).map_err(|m| EngineError::step(&df.file, from.line, "FROM", m))
        }
        None => Ok(env.platform.clone()),
    }
}

/// The first lines of a step, for the log.
fn step_summary(text: &str, line: usize, end: usize) -> String {
    let lines: Vec<&str> = text.lines().skip(line - 1).take(end + 1 - line).collect();
    let joined = lines
        .join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // a URL's user info never reaches the log
    let joined = super::download::without_credentials(&joined);
    if joined.chars().count() > 120 {
        format!("{}…", joined.chars().take(120).collect::<String>())
    } else {
        joined
    }
}

/// Whether `step` reads the files of the image it runs on: RUN, COPY,
/// ADD and WORKDIR, or a user or group given by name (looked up in /etc/passwd and
/// /etc/group). A
/// stage none of whose running steps does, on a registry base, never
/// downloads the base's layers unless an output needs their bytes (kaniko
/// does the same).
fn reads_files(step: &Instruction) -> bool {
    let numeric = |spec: &str| {
        spec.split(':')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    };
    match step {
        // an ONBUILD line only records a trigger; a trigger that runs is
        // a step of its own here
        Instruction::Run(_) => true,
        Instruction::User(u) => !numeric(u),
        // where a COPY/ADD lands depends on the base's files: a file
        // named like an existing directory goes inside it, and existing
        // parents (/tmp at 1777) keep their mode and owner
        Instruction::Copy(_) => true,
        // so does what WORKDIR creates: only the missing directories,
        // never an existing one (a WORKDIR /tmp must not make it 755)
        Instruction::Workdir(_) => true,
        _ => false,
    }
}
