//! Running the steps of one stage: each instruction is expanded with the
//! variables it can see, then changes the image config (the metadata
//! instructions, through `metadata::apply`), or writes into the stage's
//! root and becomes a layer (COPY, ADD, RUN, WORKDIR's directory).

use super::cache::Cache;
use super::context::SourceTree;
use super::copy::{self, Chmod, CopyJob, InlineFile};
use super::copy_sources::{Bodies, CopySources, CopyWords};
use super::download::Fetched;
use super::metadata::{self, StageVars};
use super::scope::BuildArgs;
use super::{EngineError, Platform, users};
use super::{mounts, sandbox};
use crate::dockerfile::{CommandForm, Dockerfile, Instruction, Located, Source};
use crate::fs::ignore::RootIgnores;
use crate::fs::root::Root;
use crate::fs::snapshot::{self, SnapshotMode};
use crate::fs::{ChangeSet, FsError, LayerBlob, LayerOptions, scope, tree, write_layer};
use crate::image::config::RunConfig;
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
    /// The build's work directory (stage roots, scratch trees).
    pub work: &'a Path,
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
    /// ADD's downloaded URLs, shared by the cache keys and the steps.
    pub downloads: super::download::Downloads,
    /// Where `RUN --mount=type=cache` directories live (kept between
    /// builds), and a directory of this build for bind copies.
    /// `--secret` and `--ssh`: what secret and ssh mounts read.
    pub secrets: &'a super::secrets::Secrets,
    pub cache_mounts: PathBuf,
    pub mount_scratch: PathBuf,
    /// `--cache`: cache mounts restored from and saved to the cache
    /// repository.
    pub mount_sync: Option<super::cache::MountSync<'a>>,
}

impl BuildEnv<'_> {
    pub fn now(&self) -> i64 {
        self.epoch
            .unwrap_or_else(|| jiff::Timestamp::now().as_second())
    }

    /// What metadata steps are expanded with besides the stage's state.
    pub fn metadata_inputs(&self) -> metadata::Inputs<'_> {
        metadata::Inputs {
            lexer: self.dockerfile.lexer(),
            file: &self.dockerfile.file,
            global_args: self.global_args,
        }
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

/// The state of a stage while its steps run.
#[derive(Debug)]
pub struct StageState {
    /// How the stage is named in logs and errors.
    pub label: String,
    pub root: PathBuf,
    pub config: ImageConfig,
    pub layers: Vec<Descriptor>,
    /// Declared args, whether CMD was set, the expansion budget.
    pub vars: StageVars,
    /// The root's metadata after the last RUN, while nothing else wrote.
    index: Option<snapshot::Index>,
    /// `--single-snapshot`: what the steps so far changed.
    pending: Option<ChangeSet>,
}

/// Why a RUN failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    Failed { command: String, code: i32 },
    #[error("the sandbox for \"{command}\" failed to start (exit code {code})")]
    SandboxStart { command: String, code: i32 },
    #[error(transparent)]
    User(#[from] users::UserError),
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
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
            vars: StageVars::default(),
            index: None,
            pending: None,
        }
    }

    /// The working directory steps run in (`/` when the config has none).
    fn workdir(&self) -> &str {
        metadata::workdir(&self.config.config)
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
        let fail = |message: &dyn std::fmt::Display| {
            EngineError::step(file, step.line, step.value.keyword(), message)
        };
        // the stages' own steps were judged before the build began; an
        // ONBUILD trigger of a base image is judged here, as it fires
        if let Some(refused) = super::unsupported::invalid(&step.value) {
            return Err(fail(&refused));
        }
        let created_by;
        let changes: Option<ChangeSet>;
        match &step.value {
            Instruction::Copy(c) => {
                let env_list: &[String] = self.config.config.env.as_deref().unwrap_or(&[]);
                let vars = self.vars.scope.view(env_list);
                let lexer = env.dockerfile.lexer();
                let words = CopyWords::expand(c, lexer, &vars, &self.vars.budget, Bodies::Expanded)
                    .map_err(|e| fail(&e))?;
                words.check_remote(c.is_add).map_err(|e| fail(&e))?;
                let mut dest = lexpath::join(self.workdir(), &words.dest);
                if (words.dest.ends_with('/') || words.dest.ends_with("/.") || words.dest == ".")
                    && !dest.ends_with('/')
                {
                    dest.push('/');
                }
                let owner = match &words.chown {
                    Some(spec) => Some(users::resolve(&self.root, spec).map_err(|e| fail(&e))?),
                    None => None,
                };
                let chmod = match &words.chmod {
                    Some(m) => Some(Chmod::parse(m).map_err(|e| fail(&e))?),
                    None => None,
                };
                let src = copy_from
                    .source_tree(env.dockerfile, env.context, words.from.as_deref())
                    .map_err(|e| fail(&e))?;
                let mut sources = Vec::new();
                let mut inline = Vec::new();
                let mut remote = std::collections::HashMap::new();
                for s in words.sources {
                    match s {
                        Source::Path(p) => {
                            let checksum = words.checksum.as_deref();
                            if c.is_add && super::download::is_url(&p) {
                                let file = env.downloads.get(&p, checksum).map_err(|e| fail(&e))?;
                                remote.insert(sources.len(), Fetched::File(file));
                            } else if c.is_add && super::add_git::is_repository(&p) {
                                let repo = super::add_git::GitRef::parse(&p)
                                    .and_then(|g| {
                                        env.downloads.git.checkout(&g, checksum, c.keep_git_dir)
                                    })
                                    .map_err(|e| fail(&e))?;
                                remote.insert(sources.len(), Fetched::Repository(repo));
                            }
                            sources.push(p);
                        }
                        Source::Inline { name, content, .. } => {
                            inline.push(InlineFile { name, content });
                        }
                    }
                }
                let excludes = crate::dockerfile::DockerIgnore::from_patterns(&c.excludes)
                    .map_err(|e| fail(&e))?;
                let linked = is_linked(c, words.chmod.as_deref());
                let scratch = match linked {
                    true => Some(scratch_root(env.work).map_err(|e| fail(&e))?),
                    false => None,
                };
                let job = CopyJob {
                    src: &src,
                    root: scratch.as_ref().map_or(&self.root, |s| s.path()),
                    sources,
                    inline,
                    dest,
                    owner,
                    chmod,
                    is_add: c.is_add,
                    now: env.now(),
                    skip: (env.in_place && !linked).then_some(&env.ignores),
                    excludes: &excludes,
                    parents: c.parents,
                    remote,
                    unpack: c.unpack,
                };
                let copied = copy::run(&job).map_err(|e| fail(&e))?;
                created_by = step_text(step);
                if let Some(scratch) = scratch {
                    self.index = None;
                    return self
                        .commit_linked(env, created_by, copied, scratch.path())
                        .map_err(|e| fail(&e));
                }
                changes = Some(copied);
            }
            Instruction::Run(run) => {
                let argv = run_argv(&self.config.config, run);
                created_by = format!("RUN {} # buildkit", argv.join(" "));
                changes = Some(
                    self.run(env, run, &argv, &args.predefined(), copy_from)
                        .map_err(|e| fail(&e))?,
                );
            }
            inst => {
                created_by = self.run_metadata(env, args, step)?;
                // WORKDIR makes its directory (as the config's user)
                let wd = self.config.config.working_dir.as_str();
                changes = if matches!(inst, Instruction::Workdir(_)) && wd != "/" {
                    let owner = match self.config.config.user.as_str() {
                        "" => (0, 0),
                        u => users::resolve(&self.root, u).map_err(|e| fail(&e))?,
                    };
                    Some(mkdir_all(&self.root, wd, owner, env.now()).map_err(|e| fail(&e))?)
                } else {
                    None
                };
            }
        }
        if !matches!(step.value, Instruction::Run(_)) && changes.is_some() {
            // COPY, ADD, WORKDIR wrote without a walk: the index is stale
            self.index = None;
        }
        self.commit(env, created_by, changes, &step.value)
    }

    /// Runs the metadata part of a step (its config change) and nothing
    /// else; returns the history text (a cached WORKDIR leaves its history
    /// entry to the cache entry).
    pub fn run_metadata(
        &mut self,
        env: &BuildEnv<'_>,
        args: &mut BuildArgs,
        step: &Located<Instruction>,
    ) -> Result<String, EngineError> {
        metadata::apply(
            &mut self.config,
            &mut self.vars,
            args,
            &env.metadata_inputs(),
            step,
        )
    }

    /// Takes a step's result from a cache entry instead of running it: its
    /// layer (applied to the root when `extract`) and history entry.
    pub fn apply_cached(
        &mut self,
        env: &BuildEnv<'_>,
        remote: &super::remote::Remote,
        entry: &super::cache::CacheEntry,
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

    /// Runs a command in the sandbox and snapshots what it changed.
    fn run(
        &mut self,
        env: &BuildEnv<'_>,
        run: &crate::dockerfile::Run,
        argv: &[String],
        proxies: &[(String, String)],
        copy_from: &CopySources,
    ) -> Result<ChangeSet, StepError> {
        let (uid, gid, groups) = users::run_user(&self.root, &self.config.config.user)?;
        let workdir = self.workdir().to_string();
        let root = Root::open(&self.root)?;
        let rel = scope::resolve_in(&root, &workdir, true)?;
        tree::mkdir_all(&root, &rel, (0, 0), 0o755)?;
        // the Env with the ARGs that came after it (BuildKit's precedence)
        let env_list: &[String] = self.config.config.env.as_deref().unwrap_or(&[]);
        let mut run_env = self.vars.scope.environment(env_list);
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
        let mounts = self.run_mounts(env, run)?;
        let workdir_now = workdir.clone();
        let tree = |from: Option<&str>| {
            copy_from
                .source_tree(env.dockerfile, env.context, from)
                .map(std::borrow::Cow::into_owned)
                .map_err(|_| mounts::MountError::NotPrepared {
                    from: from.unwrap_or_default().to_string(),
                })
        };
        let shared = super::cache::SharedMounts::of(env);
        let mount_env = mounts::MountEnv {
            caches: &env.cache_mounts,
            scratch: &env.mount_scratch,
            now: env.now(),
            secrets: env.secrets,
            copies_only: env.in_place || run.security.as_deref() == Some("insecure"),
            shared: shared.as_ref().map(|s| s as &dyn mounts::SharedCaches),
        };
        let prepared = mounts::prepare(&mounts, &workdir_now, &tree, &mount_env)?;
        for (k, v) in &prepared.env {
            run_env.retain(|(e, _)| e != k);
            run_env.push((k.clone(), v.clone()));
        }
        if let Some(sock) = &prepared.ssh_auth_sock
            && !run_env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK")
        {
            run_env.push(("SSH_AUTH_SOCK".to_string(), sock.clone()));
        }
        let before = match self.index.take() {
            Some(i) => i,
            None => snapshot::walk(&self.root, &env.ignores)?,
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
            // `default` and `host` are both the host's network, as in
            // kaniko and BuildKit's host entitlement
            network_none: run.network.as_deref() == Some("none"),
            insecure: run.security.as_deref() == Some("insecure"),
            mounts: prepared.mounts.clone(),
        };
        let code = sandbox::run(&spec, &format!("[{}] ", self.label), &env.cancelled);
        // caches unlocked, bind copies (and what the RUN wrote in them) gone
        drop(prepared);
        let code = code?;
        if code != 0 {
            let command = argv.join(" ");
            return Err(if code == sandbox::SETUP_FAILED {
                StepError::SandboxStart { command, code }
            } else {
                StepError::Failed { command, code }
            });
        }
        let started = std::time::Instant::now();
        let after = snapshot::walk(&self.root, &env.ignores)?;
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

    /// The RUN's `--mount` values, parsed with their variables expanded as
    /// the step sees them.
    pub fn run_mounts(
        &self,
        env: &BuildEnv<'_>,
        run: &crate::dockerfile::Run,
    ) -> Result<Vec<mounts::Mount>, mounts::MountError> {
        let env_list: &[String] = self.config.config.env.as_deref().unwrap_or(&[]);
        let vars = self.vars.scope.view(env_list);
        parse_mounts(env, run, &vars, &self.vars.budget)
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

    /// `COPY --link`: the files were copied into `scratch`, an empty
    /// directory, as BuildKit copies onto `scratch` before it merges: the
    /// layer is that tree (the parent directories the copy made included,
    /// whatever the stage has there), and it is applied to the root as any
    /// layer is unpacked, so the root is what an image puller sees.
    fn commit_linked(
        &mut self,
        env: &BuildEnv<'_>,
        created_by: String,
        changes: ChangeSet,
        scratch: &Path,
    ) -> Result<(), EngineError> {
        let mut history = History {
            created: Some(env.created()),
            created_by: Some(created_by),
            ..History::default()
        };
        if changes.is_empty() {
            history.empty_layer = true;
            self.config.history.push(history);
            return Ok(());
        }
        let blob = write_layer(scratch, &changes, env.store, env.layer)?;
        let layer = self.layer_descriptor(env, &blob);
        let diff_ids = [blob.diff_id.clone()];
        super::remote::extract_layer(
            super::remote::ImageLayers {
                image: "the COPY --link layer",
                layers: std::slice::from_ref(&layer),
                diff_ids: &diff_ids,
            },
            0,
            env.store,
            &self.root,
            env.in_place.then_some(&env.ignores),
        )?;
        if env.single_snapshot {
            // the paths are the root's now: the stage's one layer takes them
            self.pending
                .get_or_insert_with(ChangeSet::default)
                .extend(changes);
            history.empty_layer = true;
        } else {
            self.config.rootfs.diff_ids.push(blob.diff_id);
            self.layers.push(layer);
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
        let layer = self.layer_descriptor(env, &blob);
        self.config.rootfs.diff_ids.push(blob.diff_id);
        self.layers.push(layer);
        Ok(())
    }

    /// A layer just written, as the manifest lists it (and logged).
    fn layer_descriptor(&self, env: &BuildEnv<'_>, blob: &LayerBlob) -> Descriptor {
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
        Descriptor::new(media_type, blob.digest.clone(), blob.size)
    }
}

/// Whether a COPY/ADD is built as `--link` asks: BuildKit ignores the
/// flag when `--chmod` is given (dockerfile2llb's `dispatchCopy` merges
/// only without it).
pub(crate) fn is_linked(c: &crate::dockerfile::Copy, chmod: Option<&str>) -> bool {
    c.link && chmod.is_none()
}

/// An empty directory in the work directory for a `COPY --link`, removed
/// when dropped.
fn scratch_root(work: &Path) -> Result<tempfile::TempDir, FsError> {
    let dir = tempfile::Builder::new()
        .prefix("link-")
        .tempdir_in(work)
        .map_err(crate::fs::io_at(
            work,
            "creating a directory for COPY --link",
        ))?;
    fs_err::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    Ok(dir)
}

/// The argv of a RUN: exec form as is; shell form through SHELL, with
/// heredoc bodies as the shell would read them (a RUN that is only a
/// heredoc runs its body as the script).
pub(crate) fn run_argv(config: &RunConfig, run: &crate::dockerfile::Run) -> Vec<String> {
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
            metadata::with_shell(config, &CommandForm::Shell(script))
        }
        form => metadata::with_shell(config, form),
    }
}

/// The `--mount` values of `run`, parsed, expanded with `vars`.
pub(crate) fn parse_mounts(
    env: &BuildEnv<'_>,
    run: &crate::dockerfile::Run,
    vars: &dyn crate::dockerfile::Vars,
    budget: &crate::dockerfile::Budget,
) -> Result<Vec<mounts::Mount>, mounts::MountError> {
    let lexer = env.dockerfile.lexer();
    run.mounts
        .iter()
        .map(|m| {
            mounts::parse(m, &mut |v| {
                lexer
                    .process_word_in(v, vars, budget)
                    .map_err(|e| e.to_string())
            })
        })
        .collect()
}

/// The instruction as written, for history and logs.
pub(crate) fn step_text(step: &Located<Instruction>) -> String {
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
            let text = format!("{} {} {}", step.value.keyword(), srcs.join(" "), c.dest);
            // a URL's user info never reaches the history
            super::download::without_credentials(&text)
        }
        other => other.keyword().to_string(),
    }
}

/// WORKDIR's `mkdir -p` inside the root, recording what was created; times
/// are set deepest first, once nothing more is created inside.
fn mkdir_all(root: &Path, abs: &str, owner: (u32, u32), now: i64) -> Result<ChangeSet, FsError> {
    let root = Root::open(root)?;
    let rel = scope::resolve_in(&root, abs, true)?;
    let created = tree::mkdir_all(&root, &rel, owner, 0o755)?;
    let mut changes = ChangeSet::default();
    for dir in created.iter().rev() {
        root.set_mtime(dir, now)?;
        changes.add(dir);
    }
    Ok(changes)
}
