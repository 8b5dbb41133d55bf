//! The cache key of a step: sha256 over length-prefixed, named fields,
//! the first of them the previous step's key (the first step builds on
//! the base's). `step_keys` works out every step's key of a stage before
//! any step runs (metadata steps applied to a copy of the config, COPY/ADD
//! sources digested, nothing written or run); `step_key` is one key from
//! what the step sees.

use super::{Cache, CacheError};
use crate::dockerfile::{Budget, Instruction, Located, Source};
use crate::engine::copy_sources::{Bodies, CopySources, CopyWords};
use crate::engine::metadata::{self, StageVars};
use crate::engine::scope::BuildArgs;
use crate::engine::stage::{BuildEnv, StageState, run_argv, step_text};
use crate::engine::{EngineError, Platform};
use crate::image::ImageConfig;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// Builds one key: length-prefixed, named fields over the previous key.
#[derive(Debug)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn new(prev: &str) -> KeyHasher {
        let mut k = KeyHasher(Sha256::new());
        k.field("prev", prev.as_bytes());
        k
    }

    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        put(&mut self.0, name.as_bytes());
        put(&mut self.0, value);
        self
    }

    /// The key, as 64 hex digits (a valid tag).
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Adds `part` to `h` with its length first, so no two sequences of parts
/// hash alike.
pub(super) fn put(h: &mut Sha256, part: &[u8]) {
    h.update((part.len() as u64).to_be_bytes());
    h.update(part);
}

/// What a step's key covers besides the instruction: what it can see.
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    pub instruction: &'a str,
    /// Build args with values and env, sorted by name.
    pub vars: &'a BTreeMap<String, String>,
    pub platform: &'a Platform,
    pub user: &'a str,
    pub workdir: &'a str,
    pub shell: &'a [String],
    /// COPY/ADD: the digest of the source files.
    pub sources: Option<&'a str>,
    /// RUN --mount: one line per mount ([`mount_lines`]).
    pub mounts: Option<&'a str>,
}

/// What a step's key was made of, kept in its entry (as labels) so a
/// later miss can say which input changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInputs {
    pub key: String,
    pub prev: String,
    pub instruction: String,
    /// sha256 of the args and env it sees.
    pub vars: String,
    pub platform: String,
    pub user: String,
    pub workdir: String,
    pub shell: String,
    /// COPY/ADD: the digest of the source files.
    pub sources: Option<String>,
    /// RUN --mount: one line per mount, its target first.
    pub mounts: Option<String>,
}

pub(super) const LABEL: &str = "dev.smelt.cache.";

impl KeyInputs {
    /// The inputs as fields: (name, value), the name as a report gives it.
    fn fields(&self) -> [(&'static str, Option<&str>); 8] {
        [
            ("instruction", Some(&self.instruction)),
            ("args and env", Some(&self.vars)),
            ("platform", Some(&self.platform)),
            ("user", Some(&self.user)),
            ("workdir", Some(&self.workdir)),
            ("shell", Some(&self.shell)),
            ("files", self.sources.as_deref()),
            ("mounts", self.mounts.as_deref()),
        ]
    }

    /// The inputs as entry labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.fields()
            .iter()
            .filter_map(|(name, v)| {
                v.map(|v| (format!("{LABEL}{}", name.replace(' ', "-")), v.to_string()))
            })
            .collect()
    }

    /// Which inputs differ from those an entry was stored with; a RUN
    /// mount that changed is named by its target (`mount /src`).
    pub fn changed_from(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut changed = Vec::new();
        for (name, v) in self.fields() {
            let stored = labels
                .get(&format!("{LABEL}{}", name.replace(' ', "-")))
                .map(String::as_str);
            if stored == v {
                continue;
            }
            if name != "mounts" {
                changed.push(name.to_string());
                continue;
            }
            let lines = |s: Option<&str>| -> Vec<String> {
                s.unwrap_or_default().lines().map(str::to_string).collect()
            };
            let (now, then) = (lines(v), lines(stored));
            let mut targets: Vec<&str> = now
                .iter()
                .filter(|l| !then.contains(l))
                .chain(then.iter().filter(|l| !now.contains(l)))
                .map(|l| l.split('\t').next().unwrap_or_default())
                .collect();
            targets.dedup();
            changed.extend(targets.iter().map(|t| format!("mount {t}")));
        }
        changed
    }

    /// The tag under which the newest entry after `prev` is also stored.
    pub fn next_tag(prev: &str) -> String {
        format!("next-{prev}")
    }
}

/// The key of a step after `prev`, with what it was made of.
pub fn step_key(prev: &str, view: &StepView<'_>) -> KeyInputs {
    let mut vars = Sha256::new();
    for (name, value) in view.vars {
        put(&mut vars, name.as_bytes());
        put(&mut vars, value.as_bytes());
    }
    let mut inputs = KeyInputs {
        key: String::new(),
        prev: prev.to_string(),
        instruction: view.instruction.to_string(),
        vars: hex::encode(vars.finalize()),
        platform: view.platform.to_string(),
        user: view.user.to_string(),
        workdir: view.workdir.to_string(),
        shell: view.shell.join(" "),
        sources: view.sources.map(str::to_string),
        mounts: view.mounts.map(str::to_string),
    };
    let mut k = KeyHasher::new(prev);
    for (name, value) in inputs.fields() {
        if let Some(v) = value {
            k.field(name, v.as_bytes());
        }
    }
    inputs.key = k.finish();
    inputs
}

/// The key a stage starts from.
pub fn base_key(base: &str) -> String {
    let mut k = KeyHasher::new("");
    k.field("base", base.as_bytes());
    k.finish()
}

/// The cache key of every step of `steps` run from `state`, worked
/// out on a copy (metadata steps applied, nothing written or run), and
/// the key after the last. `keys[i]` is set for a step whose layer the
/// cache keeps (RUN and WORKDIR with `--cache-run-layers`, COPY/ADD
/// with `--cache-copy-layers`) and whose key could be worked out.
pub fn step_keys(
    state: &StageState,
    env: &BuildEnv<'_>,
    cache: &Cache,
    args: &mut BuildArgs,
    steps: &[&Located<Instruction>],
    copy_from: &CopySources,
    start: String,
) -> Result<(Vec<Option<KeyInputs>>, String), EngineError> {
    // a copy of the config and variables: what metadata steps change
    let mut config = state.config.clone();
    let mut vars = StageVars {
        scope: state.vars.scope.clone(),
        cmd_set: state.vars.cmd_set,
        budget: Budget::default(),
    };
    let inputs = env.metadata_inputs();
    let mut prev = start;
    let mut keys = Vec::new();
    for step in steps {
        let mut mounts = None;
        let (text, sources, cached) = match &step.value {
            Instruction::Run(run) => {
                let argv = run_argv(&config.config, run);
                let mut text = format!("RUN {}", argv.join(" "));
                let mut cached = cache.opts.run_layers;
                if !run.mounts.is_empty() {
                    match mount_lines(&config, &vars, env, cache, run, copy_from) {
                        Ok(lines) => mounts = Some(lines),
                        Err(e) => {
                            // the step itself will say what is wrong
                            log::debug!(
                                "[{}] no cache key for line {}: {e}",
                                state.label,
                                step.line
                            );
                            text.push_str(" unreadable");
                            cached = false;
                        }
                    }
                }
                // what the command can reach changes what it makes
                if let Some(n) = run.network.as_deref().filter(|n| *n != "default") {
                    text.push_str(&format!(" --network={n}"));
                }
                if let Some(s) = run.security.as_deref().filter(|s| *s != "sandbox") {
                    text.push_str(&format!(" --security={s}"));
                }
                (text, None, cached)
            }
            Instruction::Copy(c) => {
                match copy_key_parts(&config, &vars, env, cache, step, c, copy_from) {
                    Ok((text, digest)) => (text, Some(digest), cache.opts.copy_layers),
                    Err(e) => {
                        // the step itself will say what is wrong
                        log::debug!("[{}] no cache key for line {}: {e}", state.label, step.line);
                        (format!("{} unreadable", step_text(step)), None, false)
                    }
                }
            }
            _ => {
                let created_by = metadata::apply(&mut config, &mut vars, args, &inputs, step)?;
                let text = match &step.value {
                    Instruction::Onbuild { .. } => step_text(step),
                    _ => created_by,
                };
                // WORKDIR may make a directory: its layer is kept too
                let cached = matches!(step.value, Instruction::Workdir(_)) && cache.opts.run_layers;
                (text, None, cached)
            }
        };
        let seen = vars.scope.vars(&config.config.env_pairs());
        let shell = metadata::shell(&config.config);
        let key = step_key(
            &prev,
            &StepView {
                instruction: &text,
                vars: &seen,
                platform: env.platform,
                user: &config.config.user,
                workdir: metadata::workdir(&config.config),
                shell: &shell,
                sources: sources.as_deref(),
                mounts: mounts.as_deref(),
            },
        );
        prev = key.key.clone();
        keys.push(cached.then_some(key));
    }
    Ok((keys, prev))
}

/// A RUN's mounts as its key sees them, as BuildKit keys them: one line
/// per mount, `target<TAB>options<TAB>content`, where a bind's content is
/// the digest of the files it shows (the context's, with `.dockerignore`
/// applied, or the stage's or image's) and a cache's or tmpfs's is empty
/// (their options only: what a cache holds never takes part).
fn mount_lines(
    config: &ImageConfig,
    vars: &StageVars,
    env: &BuildEnv<'_>,
    cache: &Cache,
    run: &crate::dockerfile::Run,
    copy_from: &CopySources,
) -> Result<String, CacheError> {
    use crate::engine::mounts::MountType;
    let env_list: &[String] = config.config.env.as_deref().unwrap_or(&[]);
    let seen = vars.scope.view(env_list);
    let workdir = metadata::workdir(&config.config);
    let mounts = crate::engine::stage::parse_mounts(env, run, &seen, &vars.budget)?;
    let mut lines = Vec::new();
    for m in &mounts {
        let target = m.target_in(workdir)?;
        let content = if m.kind == MountType::Bind {
            let tree = copy_from.source_tree(env.dockerfile, env.context, m.from.as_deref())?;
            let source = crate::lexpath::join("/", m.source.as_deref().unwrap_or("/"));
            let none = crate::dockerfile::DockerIgnore::default();
            cache.sources_digest(&tree, &[source], &none, false)?
        } else {
            String::new()
        };
        lines.push(format!("{target}\t{}\t{content}", m.key_text(&target)));
    }
    Ok(lines.join("\n"))
}

/// A COPY/ADD as its key sees it: the expanded instruction, and the
/// digest of its source files.
fn copy_key_parts(
    config: &ImageConfig,
    vars: &StageVars,
    env: &BuildEnv<'_>,
    cache: &Cache,
    step: &Located<Instruction>,
    c: &crate::dockerfile::Copy,
    copy_from: &CopySources,
) -> Result<(String, String), CacheError> {
    let seen = vars.scope.vars(&config.config.env_pairs());
    let words = CopyWords::expand(
        c,
        env.dockerfile.lexer(),
        &seen,
        &vars.budget,
        Bodies::AsWritten,
    )?;
    let mut text = String::from(step.value.keyword());
    for (flag, value) in [
        ("from", &words.from),
        ("chown", &words.chown),
        ("chmod", &words.chmod),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(" --{flag}={v}"));
        }
    }
    if c.link {
        text.push_str(" --link");
    }
    if c.parents {
        text.push_str(" --parents");
    }
    // as written: BuildKit expands no variables in them
    for pattern in &c.excludes {
        text.push_str(&format!(" --exclude={pattern}"));
    }
    for s in &words.sources {
        match s {
            Source::Path(p) => text.push_str(&format!(" {p}")),
            Source::Inline { name, content, .. } => {
                text.push_str(&format!(" <<{name} {content:?}"));
            }
        }
    }
    text.push_str(&format!(" {}", words.dest));
    let tree = copy_from.source_tree(env.dockerfile, env.context, words.from.as_deref())?;
    let paths: Vec<String> = words.paths().map(str::to_string).collect();
    let digest = if paths.is_empty() {
        String::new()
    } else {
        let excludes = crate::dockerfile::DockerIgnore::from_patterns(&c.excludes)?;
        cache.sources_digest(&tree, &paths, &excludes, c.parents)?
    };
    Ok((text, digest))
}
