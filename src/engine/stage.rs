//! Running the steps of one stage: each instruction is expanded with the
//! variables it can see, then changes the image config (metadata), or
//! writes into the stage's root and becomes a layer (COPY, ADD, WORKDIR).

use super::cache::{Cache, KeyInputs};
use super::context::SourceTree;
use super::copy::{self, Chmod, CopyJob, InlineFile};
use super::sandbox;
use super::scope::{BuildArgs, StageScope};
use super::{EngineError, Platform, users};
use crate::dockerfile::{Budget, CommandForm, Dockerfile, Instruction, Located, Source};
use crate::fs::ignore::RootIgnores;
use crate::fs::root::Root;
use crate::fs::snapshot::{self, SnapshotMode};
use crate::fs::{ChangeSet, LayerOptions, scope, tree, write_layer};
use crate::image::config::{Empty, HealthConfig};
use crate::image::manifest::{DOCKER_LAYER_GZIP, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use crate::image::{BlobStore, Descriptor, History, ImageConfig, MediaTypes};
use crate::lexpath;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Settings shared by every stage of a build.
#[derive(Debug)]
pub struct BuildEnv<'a> {
    pub dockerfile: &'a Dockerfile,
    pub store: &'a BlobStore,
    pub context: &'a SourceTree,
    pub layer: LayerOptions,
    pub media_types: MediaTypes,
    pub platform: &'a Platform,
    /// Value for `created` fields; `None` means the current time.
    pub epoch: Option<i64>,
    /// Global (pre-FROM) args after expansion, on top of the automatic
    /// platform args.
    pub global_args: &'a BTreeMap<String, String>,
    /// What a RUN's snapshot counts as a change.
    pub snapshot_mode: SnapshotMode,
    /// What snapshots (and, in place, extraction) leave alone.
    pub ignores: RootIgnores,
    /// The root is `/` of the executor's container and RUN runs there
    /// directly, as in kaniko; otherwise each stage has a root of its own
    /// and RUN runs in a sandbox chrooted into it.
    pub in_place: bool,
    /// `--single-snapshot`: one layer per stage, taken at its end.
    pub single_snapshot: bool,
    /// `--image-fs-extract-retry`: attempts at unpacking a base after the first.
    pub extract_retries: u32,
    /// Set when a stage failed or a signal came (`engine::interrupt`): the
    /// stages stop at their next step, and a running RUN is killed.
    pub cancelled: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// `--cache`: the layer cache in a registry.
    pub cache: Option<Cache>,
}

impl BuildEnv<'_> {
    pub fn now(&self) -> i64 {
        self.epoch
            .unwrap_or_else(|| jiff::Timestamp::now().as_second())
    }

    pub fn created(&self) -> String {
        match self.epoch {
            Some(t) => jiff::Timestamp::from_second(t)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            None => jiff::Timestamp::now().to_string(),
        }
    }
}

/// Where `COPY --from` reads: the roots of the stages a stage reads, by
/// index, and the images it copies from, unpacked, by reference.
#[derive(Debug, Clone, Default)]
pub struct CopySources {
    pub stages: BTreeMap<usize, PathBuf>,
    pub images: BTreeMap<String, PathBuf>,
}

impl CopySources {
    /// The tree `COPY --from=<from>` reads (a stage by name or index, else
    /// an image), if this build prepared it.
    pub fn tree(&self, df: &Dockerfile, from: &str) -> Option<SourceTree> {
        let (root, what) = match df.stage_index(from) {
            Some(i) => (self.stages.get(&i)?, "stage"),
            None => (self.images.get(from)?, "image"),
        };
        Some(SourceTree::stage(root.clone(), format!("{what} {from}")))
    }
}

/// The state of a stage while its steps run.
#[derive(Debug)]
pub struct StageState {
    /// How the stage is named in logs and errors.
    pub label: String,
    pub root: PathBuf,
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    pub scope: StageScope,
    cmd_set: bool,
    /// The root's metadata after the last RUN, while nothing else wrote.
    index: Option<snapshot::Index>,
    /// Working out cache keys on a copy: metadata only, nothing written.
    dry: bool,
    /// `--single-snapshot`: what the steps so far changed.
    pending: Option<ChangeSet>,
    /// What the stage's expansions may still produce in total.
    budget: Budget,
}

/// The config of an empty (`FROM scratch`) image, as BuildKit makes it.
pub fn scratch_config(platform: &Platform) -> ImageConfig {
    let mut config = ImageConfig {
        architecture: platform.arch.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        ..ImageConfig::default()
    };
    config.config.working_dir = "/".to_string();
    config.config.env = Some(vec![format!("PATH={DEFAULT_PATH}")]);
    config
}

impl StageState {
    pub fn new(label: String, root: PathBuf, config: ImageConfig, layers: Vec<Descriptor>) -> Self {
        Self {
            label,
            root,
            config,
            layers,
            scope: StageScope::default(),
            cmd_set: false,
            index: None,
            dry: false,
            pending: None,
            budget: Budget::default(),
        }
    }

    /// The working directory steps run in (`/` when the config has none).
    fn workdir(&self) -> &str {
        match self.config.config.working_dir.as_str() {
            "" => "/",
            wd => wd,
        }
    }

    /// Runs one step; `copy_from` says where `COPY --from` reads.
    pub fn run_step(
        &mut self,
        env: &BuildEnv<'_>,
        args: &mut BuildArgs,
        step: &Located<Instruction>,
        copy_from: &CopySources,
    ) -> Result<(), EngineError> {
        let file = &env.dockerfile.file;
        let fail =
            |message: String| EngineError::step(file, step.line, step.value.keyword(), message);
        let lexer = env.dockerfile.lexer();
        let env_list: &[String] = self.config.config.env.as_deref().unwrap_or(&[]);
        let vars = self.scope.view(env_list);
        let budget = self.budget.clone();
        let word = |w: &str| {
            lexer
                .process_word_in(w, &vars, &budget)
                .map_err(|e| fail(e.to_string()))
        };
        let mut created_by = String::new();
        let mut changes: Option<ChangeSet> = None;
        match &step.value {
            Instruction::Env(pairs) => {
                let mut parts = Vec::new();
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (word(k)?, word(v)?);
                    parts.push(format!("{k}={v}"));
                    expanded.push((k, v));
                }
                for (k, v) in expanded {
                    self.config.config.env_set(&k, &v);
                }
                created_by = format!("ENV {}", parts.join(" "));
            }
            Instruction::Arg(decls) => {
                let mut parts = Vec::new();
                // declared once the words are expanded (they see the scope
                // before this line), in order
                let mut declared: Vec<(&String, Option<String>)> = Vec::new();
                for (name, default) in decls {
                    let value = match args.take(name) {
                        Some(v) => Some(v),
                        None => match default {
                            Some(d) => Some(word(d)?),
                            // global ARGs (the automatic platform args among
                            // them), else the value it has (from the parent stage
                            // or earlier on this line)
                            None => env.global_args.get(name).cloned().or_else(|| {
                                match declared.iter().rev().find(|(n, _)| *n == name) {
                                    Some((_, v)) => v.clone(),
                                    None => self.scope.value(name),
                                }
                            }),
                        },
                    };
                    parts.push(match &value {
                        Some(v) => format!("{name}={v}"),
                        None => name.clone(),
                    });
                    declared.push((name, value));
                }
                for (name, value) in declared {
                    self.scope.declare(name, value);
                }
                created_by = format!("ARG {}", parts.join(" "));
            }
            Instruction::Label(pairs) => {
                let labels = self.config.config.labels.get_or_insert_with(BTreeMap::new);
                let mut parts = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (word(k)?, word(v)?);
                    parts.push(format!("{k}={v}"));
                    labels.insert(k, v);
                }
                created_by = format!("LABEL {}", parts.join(" "));
            }
            Instruction::Expose(ports) => {
                let mut all = Vec::new();
                for p in ports {
                    for w in lexer
                        .process_words_in(p, &vars, &budget)
                        .map_err(|e| fail(e.to_string()))?
                    {
                        // a range is one word and up to 65,536 ports: they
                        // count against the stage's budget before they are
                        // made, at about what each costs kept (64 bytes)
                        let (start, end, proto) = port_range(&w).map_err(fail)?;
                        let count = usize::from(end - start) + 1;
                        budget.charge(count * 64).map_err(|e| fail(e.to_string()))?;
                        all.extend((start..=end).map(|p| format!("{p}/{proto}")));
                    }
                }
                let exposed = self
                    .config
                    .config
                    .exposed_ports
                    .get_or_insert_with(BTreeMap::new);
                for p in &all {
                    exposed.insert(p.clone(), Empty {});
                }
                created_by = format!("EXPOSE {}", all.join(" "));
            }
            Instruction::Volume(vols) => {
                let mut expanded = Vec::new();
                for v in vols {
                    let v = word(v)?;
                    if v.is_empty() {
                        return Err(fail(
                            "VOLUME specified can not be an empty string".to_string(),
                        ));
                    }
                    expanded.push(v);
                }
                let volumes = self.config.config.volumes.get_or_insert_with(BTreeMap::new);
                for v in &expanded {
                    volumes.insert(v.clone(), Empty {});
                }
                created_by = format!("VOLUME [{}]", expanded.join(" "));
            }
            Instruction::User(u) => {
                let u = word(u)?;
                created_by = format!("USER {u}");
                self.config.config.user = u;
            }
            Instruction::StopSignal(s) => {
                let s = word(s)?;
                check_signal(&s).map_err(fail)?;
                created_by = format!("STOPSIGNAL {s}");
                self.config.config.stop_signal = s;
            }
            Instruction::Maintainer(m) => {
                created_by = format!("MAINTAINER {m}");
                self.config.author = Some(m.clone());
            }
            Instruction::Shell(sh) => {
                created_by = format!("SHELL [{}]", sh.join(" "));
                self.config.config.shell = Some(sh.clone());
            }
            Instruction::Cmd(form) => {
                let args = self.with_shell(form);
                created_by = format!("CMD {}", go_quoted(&args));
                self.config.config.cmd = Some(args);
                self.config.config.args_escaped = true;
                self.cmd_set = true;
            }
            Instruction::Entrypoint(form) => {
                let args = self.with_shell(form);
                created_by = format!("ENTRYPOINT {}", go_quoted(&args));
                self.config.config.entrypoint = Some(args);
                if !self.cmd_set {
                    self.config.config.cmd = None;
                }
            }
            Instruction::Healthcheck(h) => {
                self.config.config.healthcheck = Some(HealthConfig {
                    test: h.test.clone(),
                    interval: h.interval.unwrap_or(0),
                    timeout: h.timeout.unwrap_or(0),
                    start_period: h.start_period.unwrap_or(0),
                    start_interval: h.start_interval.unwrap_or(0),
                    retries: h.retries.unwrap_or(0),
                });
                created_by = format!("HEALTHCHECK {}", go_quoted(&h.test));
            }
            Instruction::Onbuild { expression, .. } => {
                self.config
                    .config
                    .on_build
                    .get_or_insert_with(Vec::new)
                    .push(expression.clone());
            }
            Instruction::Workdir(w) => {
                let w = word(w)?;
                let wd = lexpath::join(self.workdir(), &w);
                created_by = format!("WORKDIR {wd}");
                self.config.config.working_dir = wd.clone();
                if wd != "/" && !self.dry {
                    let owner = match self.config.config.user.as_str() {
                        "" => (0, 0),
                        u => users::resolve(&self.root, u).map_err(fail)?,
                    };
                    changes = Some(mkdir_all(&self.root, &wd, owner, env.now()).map_err(fail)?);
                }
            }
            Instruction::Copy(c) => {
                let mut sources = Vec::new();
                let mut inline = Vec::new();
                for s in &c.sources {
                    match s {
                        Source::Path(p) => sources.push(word(p)?),
                        Source::Inline {
                            name,
                            content,
                            expand,
                        } => {
                            let content = if *expand {
                                lexer
                                    .with_raw()
                                    .process_word_in(content, &vars, &budget)
                                    .map_err(|e| fail(e.to_string()))?
                            } else {
                                content.clone()
                            };
                            inline.push(InlineFile {
                                name: name.clone(),
                                content,
                            });
                        }
                    }
                }
                let dest_word = word(&c.dest)?;
                let mut dest = lexpath::join(self.workdir(), &dest_word);
                if (dest_word.ends_with('/') || dest_word.ends_with("/.") || dest_word == ".")
                    && !dest.ends_with('/')
                {
                    dest.push('/');
                }
                if c.parents {
                    return Err(fail("--parents is not implemented yet".to_string()));
                }
                if !c.excludes.is_empty() {
                    return Err(fail("--exclude is not implemented yet".to_string()));
                }
                if c.checksum.is_some() {
                    return Err(fail("--checksum requires an HTTP(S) or git source, which ADD does not fetch yet".to_string()));
                }
                let owner = match &c.chown {
                    Some(spec) => Some(users::resolve(&self.root, &word(spec)?).map_err(fail)?),
                    None => None,
                };
                let chmod = match &c.chmod {
                    Some(m) => Some(Chmod::parse(&word(m)?).map_err(fail)?),
                    None => None,
                };
                let stage_tree;
                let src = match &c.from {
                    None => env.context,
                    Some(from) => {
                        let from = word(from)?;
                        stage_tree = copy_from.tree(env.dockerfile, &from).ok_or_else(|| {
                            fail(format!(
                                "COPY --from={from}: not a stage or image this build prepared (a --from given by a stage's own ARG cannot be planned)"
                            ))
                        })?;
                        &stage_tree
                    }
                };
                let job = CopyJob {
                    src,
                    root: &self.root,
                    sources,
                    inline,
                    dest,
                    owner,
                    chmod,
                    is_add: c.is_add,
                    now: env.now(),
                    skip: env.in_place.then_some(&env.ignores),
                };
                changes = Some(copy::run(&job).map_err(fail)?);
                created_by = step_text(step);
            }
            Instruction::Run(run) => {
                if !run.mounts.is_empty() {
                    return Err(fail("RUN --mount is not implemented yet".to_string()));
                }
                let argv = self.run_argv(run);
                created_by = format!("RUN {} # buildkit", argv.join(" "));
                changes = Some(self.run(env, &argv, &args.predefined()).map_err(fail)?);
            }
            Instruction::From(_) => return Err(fail("FROM inside a stage".to_string())),
        }
        if !matches!(step.value, Instruction::Run(_)) && changes.is_some() {
            // COPY, ADD, WORKDIR wrote without a walk: the index is stale
            self.index = None;
        }
        self.commit(env, created_by, changes, &step.value)
    }

    /// The cache key of every step of `steps` run from this state, worked
    /// out on a copy (metadata steps applied, nothing written or run), and
    /// the key after the last. `keys[i]` is set for a step whose layer the
    /// cache keeps (RUN and WORKDIR with `--cache-run-layers`, COPY/ADD
    /// with `--cache-copy-layers`) and whose key could be worked out.
    pub fn cache_keys(
        &self,
        env: &BuildEnv<'_>,
        cache: &Cache,
        args: &mut BuildArgs,
        steps: &[&Located<Instruction>],
        copy_from: &CopySources,
        start: String,
    ) -> Result<(Vec<Option<KeyInputs>>, String), EngineError> {
        let mut probe = StageState::new(
            self.label.clone(),
            self.root.clone(),
            self.config.clone(),
            Vec::new(),
        );
        probe.scope = self.scope.clone();
        probe.cmd_set = self.cmd_set;
        probe.dry = true;
        let mut prev = start;
        let mut keys = Vec::new();
        for step in steps {
            let (text, sources, cached) = match &step.value {
                Instruction::Run(run) => {
                    let argv = probe.run_argv(run);
                    let mut text = format!("RUN {}", argv.join(" "));
                    for m in &run.mounts {
                        text.push_str(&format!(" --mount={m:?}"));
                    }
                    (text, None, cache.opts.run_layers)
                }
                Instruction::Copy(c) => {
                    match probe.copy_key_parts(env, cache, step, c, copy_from) {
                        Ok((text, digest)) => (text, Some(digest), cache.opts.copy_layers),
                        Err(e) => {
                            // the step itself will say what is wrong
                            log::debug!(
                                "[{}] no cache key for line {}: {e}",
                                self.label,
                                step.line
                            );
                            (format!("{} unreadable", step_text(step)), None, false)
                        }
                    }
                }
                _ => {
                    probe.run_step(env, args, step, copy_from)?;
                    let text = match &step.value {
                        Instruction::Onbuild { .. } => step_text(step),
                        _ => probe
                            .config
                            .history
                            .last()
                            .and_then(|h| h.created_by.clone())
                            .unwrap_or_else(|| step_text(step)),
                    };
                    // WORKDIR may make a directory: its layer is kept too
                    let cached =
                        matches!(step.value, Instruction::Workdir(_)) && cache.opts.run_layers;
                    (text, None, cached)
                }
            };
            let vars = probe.scope.vars(&probe.config.config.env_pairs());
            let shell = probe.shell();
            let key = super::cache::step_key(
                &prev,
                &super::cache::StepView {
                    instruction: &text,
                    vars: &vars,
                    platform: env.platform,
                    user: &probe.config.config.user,
                    workdir: probe.workdir(),
                    shell: &shell,
                    sources: sources.as_deref(),
                },
            );
            prev = key.key.clone();
            keys.push(cached.then_some(key));
        }
        Ok((keys, prev))
    }

    /// A COPY/ADD as its key sees it: the expanded instruction, and the
    /// digest of its source files.
    fn copy_key_parts(
        &self,
        env: &BuildEnv<'_>,
        cache: &Cache,
        step: &Located<Instruction>,
        c: &crate::dockerfile::Copy,
        copy_from: &CopySources,
    ) -> Result<(String, String), String> {
        let lexer = env.dockerfile.lexer();
        let vars = self.scope.vars(&self.config.config.env_pairs());
        let word = |w: &str| {
            lexer
                .process_word_in(w, &vars, &self.budget)
                .map_err(|e| e.to_string())
        };
        let mut text = String::from(step.value.keyword());
        let mut paths = Vec::new();
        for (flag, value) in [("from", &c.from), ("chown", &c.chown), ("chmod", &c.chmod)] {
            if let Some(v) = value {
                text.push_str(&format!(" --{flag}={}", word(v)?));
            }
        }
        if c.link {
            text.push_str(" --link");
        }
        for s in &c.sources {
            match s {
                Source::Path(p) => {
                    let p = word(p)?;
                    text.push_str(&format!(" {p}"));
                    paths.push(p);
                }
                Source::Inline { name, content, .. } => {
                    text.push_str(&format!(" <<{name} {content:?}"));
                }
            }
        }
        text.push_str(&format!(" {}", word(&c.dest)?));
        let stage_tree;
        let tree = match &c.from {
            None => env.context,
            Some(from) => {
                let from = word(from)?;
                stage_tree = copy_from
                    .tree(env.dockerfile, &from)
                    .ok_or_else(|| format!("--from={from} is not prepared"))?;
                &stage_tree
            }
        };
        let digest = if paths.is_empty() {
            String::new()
        } else {
            cache.sources_digest(tree, &paths)?
        };
        Ok((text, digest))
    }

    /// Runs the metadata part of a step (a WORKDIR's config change) and
    /// nothing else; its history entry is left to the cache entry.
    pub fn run_metadata(
        &mut self,
        env: &BuildEnv<'_>,
        args: &mut BuildArgs,
        step: &Located<Instruction>,
        copy_from: &CopySources,
    ) -> Result<(), EngineError> {
        self.dry = true;
        let done = self.run_step(env, args, step, copy_from);
        self.dry = false;
        done?;
        self.config.history.pop();
        Ok(())
    }

    /// Takes a step's result from a cache entry instead of running it: its
    /// layer (applied to the root when `extract`) and history entry.
    pub fn apply_cached(
        &mut self,
        env: &BuildEnv<'_>,
        remote: &super::remote::Remote,
        entry: &super::remote::CacheEntry,
        extract: bool,
    ) -> Result<(), EngineError> {
        let mut history = entry.history.clone();
        if let (Some(layer), Some(diff_id)) = (entry.layers.first(), entry.diff_ids.first()) {
            if extract {
                let skip = env.in_place.then_some(&env.ignores);
                let layers = super::remote::ImageLayers {
                    image: &format!("cache entry {}", entry.source),
                    layers: std::slice::from_ref(layer),
                    diff_ids: std::slice::from_ref(diff_id),
                };
                remote.unpack(layers, env.store, &self.root, skip)?;
                self.index = None;
            }
            self.layers.push(layer.clone());
            self.config.rootfs.diff_ids.push(diff_id.clone());
            history.empty_layer = false;
        } else {
            history.empty_layer = true;
        }
        self.config.history.push(history);
        Ok(())
    }

    /// The argv of a RUN: exec form as is; shell form through SHELL, with
    /// heredoc bodies as the shell would read them (a RUN that is only a
    /// heredoc runs its body as the script).
    fn run_argv(&self, run: &crate::dockerfile::Run) -> Vec<String> {
        match &run.command {
            CommandForm::Shell(cmd) if !run.heredocs.is_empty() => {
                let body = |h: &crate::dockerfile::Heredoc| {
                    if h.chomp {
                        h.content
                            .lines()
                            .map(|l| format!("{}\n", l.trim_start_matches('\t')))
                            .collect::<String>()
                    } else {
                        h.content.clone()
                    }
                };
                let only = cmd.trim().trim_start_matches("<<").trim_start_matches('-');
                let only = only.trim_matches(|c| c == '"' || c == '\'');
                let script = if run.heredocs.len() == 1 && only == run.heredocs[0].name {
                    body(&run.heredocs[0])
                } else {
                    let mut s = format!("{cmd}\n");
                    for h in &run.heredocs {
                        s.push_str(&h.content);
                        s.push_str(&h.name);
                        s.push('\n');
                    }
                    s
                };
                self.with_shell(&CommandForm::Shell(script))
            }
            form => self.with_shell(form),
        }
    }

    /// Runs a command in the sandbox and snapshots what it changed.
    fn run(
        &mut self,
        env: &BuildEnv<'_>,
        argv: &[String],
        proxies: &[(String, String)],
    ) -> Result<ChangeSet, String> {
        let (uid, gid, groups) = users::run_user(&self.root, &self.config.config.user)?;
        let workdir = self.workdir().to_string();
        let root = Root::open(&self.root).map_err(|e| e.to_string())?;
        let rel = scope::resolve_in(&root, &workdir, true).map_err(|e| e.to_string())?;
        tree::mkdir_all(&root, &rel, (0, 0), 0o755).map_err(|e| e.to_string())?;
        let env_pairs = self.config.config.env_pairs();
        let mut run_env = env_pairs.clone();
        for (k, v) in &self.scope.args {
            if let Some(v) = v
                && !env_pairs.iter().any(|(e, _)| e == k)
            {
                run_env.push((k.clone(), v.clone()));
            }
        }
        for (k, v) in proxies {
            if !run_env.iter().any(|(e, _)| e == k) {
                run_env.push((k.clone(), v.clone()));
            }
        }
        if !run_env.iter().any(|(k, _)| k == "HOME") {
            // as runc does: the user's home from passwd, else /
            run_env.push(("HOME".to_string(), users::home_dir(&self.root, uid)));
        }
        if !run_env.iter().any(|(k, _)| k == "PATH") {
            run_env.push(("PATH".to_string(), DEFAULT_PATH.to_string()));
        }
        let before = match self.index.take() {
            Some(i) => i,
            None => snapshot::walk(&self.root, &env.ignores).map_err(|e| e.to_string())?,
        };
        let spec = sandbox::Spec {
            root: self.root.clone(),
            workdir,
            argv: argv.to_vec(),
            env: run_env,
            uid,
            gid,
            groups,
            in_place: env.in_place,
        };
        let code = sandbox::run(&spec, &format!("[{}] ", self.label), &env.cancelled)?;
        if code != 0 {
            let shown = argv.join(" ");
            return Err(if code == sandbox::SETUP_FAILED {
                format!("the sandbox for \"{shown}\" failed to start (exit code {code})")
            } else {
                format!("process \"{shown}\" did not complete successfully: exit code: {code}")
            });
        }
        let started = std::time::Instant::now();
        let after = snapshot::walk(&self.root, &env.ignores).map_err(|e| e.to_string())?;
        let changes = snapshot::diff(&before, &after, env.snapshot_mode);
        log::debug!(
            "[{}] snapshot of {} paths in {:.3} s: {} changed, {} deleted",
            self.label,
            after.len(),
            started.elapsed().as_secs_f64(),
            changes.changed.len(),
            changes.deleted.len()
        );
        self.index = Some(after);
        Ok(changes)
    }

    /// SHELL, else `/bin/sh -c`.
    fn shell(&self) -> Vec<String> {
        self.config
            .config
            .shell
            .clone()
            .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
    }

    fn with_shell(&self, form: &CommandForm) -> Vec<String> {
        match form {
            CommandForm::Exec(v) => v.clone(),
            CommandForm::Shell(s) => {
                let mut sh = self.shell();
                sh.push(s.clone());
                sh
            }
        }
    }

    /// Adds the history entry and, when files changed, the layer.
    fn commit(
        &mut self,
        env: &BuildEnv<'_>,
        created_by: String,
        changes: Option<ChangeSet>,
        inst: &Instruction,
    ) -> Result<(), EngineError> {
        if matches!(inst, Instruction::Onbuild { .. }) {
            return Ok(());
        }
        let mut history = History {
            created: Some(env.created()),
            created_by: Some(created_by),
            ..History::default()
        };
        let changes = changes.filter(|c| !c.is_empty());
        if env.single_snapshot {
            // one layer at the end of the stage (`finish_snapshot`)
            if let Some(c) = changes {
                self.pending
                    .get_or_insert_with(ChangeSet::default)
                    .extend(c);
            }
            history.empty_layer = true;
            self.config.history.push(history);
            return Ok(());
        }
        match changes {
            Some(changes) => {
                self.add_layer(env, &changes)?;
            }
            None => history.empty_layer = true,
        }
        self.config.history.push(history);
        Ok(())
    }

    /// With `--single-snapshot`: the stage's one layer, of everything its
    /// steps changed, with a history entry of its own.
    pub fn finish_snapshot(&mut self, env: &BuildEnv<'_>) -> Result<(), EngineError> {
        let Some(changes) = self.pending.take().filter(|c| !c.is_empty()) else {
            return Ok(());
        };
        self.add_layer(env, &changes)?;
        self.config.history.push(History {
            created: Some(env.created()),
            created_by: Some("smelt --single-snapshot".to_string()),
            ..History::default()
        });
        Ok(())
    }

    /// Writes `changes` as a layer and adds it to the image.
    fn add_layer(&mut self, env: &BuildEnv<'_>, changes: &ChangeSet) -> Result<(), EngineError> {
        let blob = write_layer(&self.root, changes, env.store, env.layer)?;
        let media_type = match (env.media_types, blob.compression.is_zstd()) {
            (_, true) => OCI_LAYER_ZSTD,
            (MediaTypes::Docker, false) => DOCKER_LAYER_GZIP,
            (MediaTypes::Oci, false) => OCI_LAYER_GZIP,
        };
        log::info!(
            "[{}] layer {} ({} entries, {} bytes)",
            self.label,
            &blob.digest.hex()[..12],
            blob.entries,
            blob.size
        );
        self.config.rootfs.diff_ids.push(blob.diff_id.clone());
        self.layers
            .push(Descriptor::new(media_type, blob.digest, blob.size));
        Ok(())
    }
}

/// The instruction as written, for history and logs.
fn step_text(step: &Located<Instruction>) -> String {
    match &step.value {
        Instruction::Copy(c) => {
            let srcs: Vec<String> = c
                .sources
                .iter()
                .map(|s| match s {
                    Source::Path(p) => p.clone(),
                    Source::Inline { name, .. } => format!("<<{name}"),
                })
                .collect();
            format!("{} {} {}", step.value.keyword(), srcs.join(" "), c.dest)
        }
        other => other.keyword().to_string(),
    }
}

/// WORKDIR's `mkdir -p` inside the root, recording what was created; times
/// are set deepest first, once nothing more is created inside.
fn mkdir_all(root: &Path, abs: &str, owner: (u32, u32), now: i64) -> Result<ChangeSet, String> {
    let root = Root::open(root).map_err(|e| e.to_string())?;
    let rel = scope::resolve_in(&root, abs, true).map_err(|e| e.to_string())?;
    let created = tree::mkdir_all(&root, &rel, owner, 0o755).map_err(|e| e.to_string())?;
    let mut changes = ChangeSet::default();
    for dir in created.iter().rev() {
        root.set_mtime(dir, now).map_err(|e| e.to_string())?;
        changes.add(dir);
    }
    Ok(changes)
}

/// EXPOSE's `port[-end][/proto]` into `port/proto` entries.
/// An EXPOSE word: its first and last port and its protocol.
fn port_range(spec: &str) -> Result<(u16, u16, String), String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {spec}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!(
            "invalid range specified for container port: {spec}"
        ));
    }
    Ok((start, end, proto))
}

fn check_signal(s: &str) -> Result<(), String> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
    ];
    if s.contains('$') {
        return Ok(());
    }
    if let Ok(n) = s.parse::<u32>() {
        return if n > 0 && n <= 64 {
            Ok(())
        } else {
            Err(format!("invalid signal: {s}"))
        };
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(format!("invalid signal: {s}"))
    }
}

/// Formats like Go's `%q` on a string slice (BuildKit's history text).
fn go_quoted(args: &[String]) -> String {
    let parts: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes() {
        assert_eq!(port_range("80"), Ok((80, 80, "tcp".to_string())));
        assert_eq!(port_range("53/UDP"), Ok((53, 53, "udp".to_string())));
        assert_eq!(
            port_range("8000-8002/tcp"),
            Ok((8000, 8002, "tcp".to_string()))
        );
        assert!(port_range("http").is_err());
        assert!(port_range("80/icmp").is_err());
        assert!(
            check_signal("SIGTERM").is_ok()
                && check_signal("9").is_ok()
                && check_signal("SIGNOPE").is_err()
        );
    }
}
