//! The cache key of a step: sha256 over length-prefixed, named fields,
//! the first of them the previous step's key (the first step builds on
//! the base's). `step_keys` works out every step's key of a stage before
//! any step runs (metadata steps applied to a copy of the config, COPY/ADD
//! sources digested, nothing written or run); `step_key` is one key from
//! what the step sees.

use super::{Cache, CacheError};
use crate::dockerfile::{Budget, Instruction, Located, Source};
use crate::engine::add_git::GitRef;
use crate::engine::copy_sources::{Bodies, CopySources, CopyWords};
use crate::engine::download::is_url;
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
    /// COPY/ADD: the digest of the source files, then a line per URL an
    /// ADD downloads (`URL sha256:…`) or repository it adds
    /// (`URL#REF:DIR COMMIT`), URLs without credentials.
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

    /// Which inputs differ from those an entry was stored with, by name;
    /// a changed download (ADD of a URL) as `URL now DIGEST`, a RUN mount
    /// that changed by its target (`mount /src`).
    pub fn changed_from(&self, labels: &BTreeMap<String, String>) -> Vec<String> {
        let mut changed = Vec::new();
        for (name, v) in self.fields() {
            let stored = labels
                .get(&format!("{LABEL}{}", name.replace(' ', "-")))
                .map(String::as_str);
            if stored == v {
                continue;
            }
            match name {
                "files" => changed.extend(changed_files(v, stored)),
                "mounts" => changed.extend(changed_mounts(v, stored)),
                _ => changed.push(name.to_string()),
            }
        }
        changed
    }

    /// The tag under which the newest entry after `prev` is also stored.
    pub fn next_tag(prev: &str) -> String {
        format!("next-{prev}")
    }
}

/// What changed in a COPY/ADD's sources: the context's digest (`files`),
/// then a line per download, named `URL now DIGEST`.
fn changed_files(now: Option<&str>, then: Option<&str>) -> Vec<String> {
    let ours: Vec<&str> = now.unwrap_or_default().split('\n').collect();
    let theirs: Vec<&str> = then.unwrap_or_default().split('\n').collect();
    let mut changed = Vec::new();
    if ours[0] != theirs[0] {
        changed.push("files".to_string());
    }
    for line in &ours[1..] {
        if !theirs[1..].contains(line) {
            let (url, digest) = line.split_once(' ').unwrap_or((line, ""));
            changed.push(format!("{url} now {digest}"));
        }
    }
    // a download left out
    if changed.is_empty() {
        changed.push("files".to_string());
    }
    changed
}

/// What changed in a RUN's mounts: each target whose line differs, as
/// `mount TARGET`.
fn changed_mounts(now: Option<&str>, then: Option<&str>) -> Vec<String> {
    let lines = |s: Option<&str>| -> Vec<String> {
        s.unwrap_or_default().lines().map(str::to_string).collect()
    };
    let (now, then) = (lines(now), lines(then));
    let mut targets: Vec<&str> = now
        .iter()
        .filter(|l| !then.contains(l))
        .chain(then.iter().filter(|l| !now.contains(l)))
        .map(|l| l.split('\t').next().unwrap_or_default())
        .collect();
    targets.dedup();
    targets.iter().map(|t| format!("mount {t}")).collect()
}

/// The key of a `COPY --link` after `prev`, with what it was made of: as
/// in BuildKit, where the copy onto scratch is an operation of its own,
/// it is made of what the copy reads and where it writes, not of the
/// steps before (nor of variables, user or shell, which only reach it
/// through the expanded instruction). `prev` is kept in the inputs, so a
/// miss is explained against the last entry stored after the same step.
pub fn link_key(prev: &str, view: &StepView<'_>) -> KeyInputs {
    let vars = BTreeMap::new();
    let mut inputs = step_key(
        LINKED,
        &StepView {
            vars: &vars,
            user: "",
            shell: &[],
            ..*view
        },
    );
    inputs.prev = prev.to_string();
    inputs
}

/// What a `COPY --link` key is made over instead of the previous key.
const LINKED: &str = "COPY --link";

/// The key the steps after a `COPY --link` build on: the previous key and
/// the link's own, since they see both.
pub fn after_link(prev: &str, link: &KeyInputs) -> String {
    let mut k = KeyHasher::new(prev);
    k.field("link", link.key.as_bytes());
    k.finish()
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
        let mut linked = false;
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
                    Ok((text, digest, link)) => {
                        linked = link;
                        (text, Some(digest), cache.opts.copy_layers)
                    }
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
        let view = StepView {
            instruction: &text,
            vars: &seen,
            platform: env.platform,
            user: &config.config.user,
            workdir: metadata::workdir(&config.config),
            shell: &shell,
            sources: sources.as_deref(),
            mounts: mounts.as_deref(),
        };
        let key = if linked {
            let key = link_key(&prev, &view);
            prev = after_link(&prev, &key);
            key
        } else {
            let key = step_key(&prev, &view);
            prev = key.key.clone();
            key
        };
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
) -> Result<(String, String, bool), CacheError> {
    let seen = vars.scope.vars(&config.config.env_pairs());
    let words = CopyWords::expand(
        c,
        env.dockerfile.lexer(),
        &seen,
        &vars.budget,
        Bodies::AsWritten,
    )?;
    words.check_remote(c.is_add)?;
    let mut text = String::from(step.value.keyword());
    for (flag, value) in [
        ("from", &words.from),
        ("chown", &words.chown),
        ("chmod", &words.chmod),
        ("checksum", &words.checksum),
    ] {
        if let Some(v) = value {
            text.push_str(&format!(" --{flag}={v}"));
        }
    }
    let linked = crate::engine::stage::is_linked(c, words.chmod.as_deref());
    if linked {
        text.push_str(" --link");
    }
    if c.parents {
        text.push_str(" --parents");
    }
    if c.keep_git_dir {
        text.push_str(" --keep-git-dir");
    }
    if let Some(unpack) = c.unpack {
        text.push_str(&format!(" --unpack={unpack}"));
    }
    // as written: BuildKit expands no variables in them
    for pattern in &c.excludes {
        text.push_str(&format!(" --exclude={pattern}"));
    }
    // an ADD's URL: downloaded now, keyed by its content (the text names
    // it without credentials)
    let mut downloads = String::new();
    let mut paths: Vec<String> = Vec::new();
    for s in &words.sources {
        match s {
            Source::Path(p) if c.is_add && is_url(p) => {
                let file = env.downloads.get(p, words.checksum.as_deref())?;
                text.push_str(&format!(" {}", file.shown));
                downloads.push_str(&format!("\n{} {}", file.shown, file.digest));
            }
            // a repository: keyed by the commit its ref names now
            Source::Path(p) if c.is_add && crate::engine::add_git::is_repository(p) => {
                let repo = GitRef::parse(p)?;
                let commit = env.downloads.git.commit(&repo, words.checksum.as_deref())?;
                let name = repo.key_name();
                text.push_str(&format!(" {name}"));
                downloads.push_str(&format!("\n{name} {commit}"));
            }
            Source::Path(p) => {
                text.push_str(&format!(" {p}"));
                paths.push(p.clone());
            }
            Source::Inline { name, content, .. } => {
                text.push_str(&format!(" <<{name} {content:?}"));
            }
        }
    }
    text.push_str(&format!(" {}", words.dest));
    let tree = copy_from.source_tree(env.dockerfile, env.context, words.from.as_deref())?;
    let mut digest = if paths.is_empty() {
        String::new()
    } else {
        let excludes = crate::dockerfile::DockerIgnore::from_patterns(&c.excludes)?;
        cache.sources_digest(&tree, &paths, &excludes, c.parents)?
    };
    digest.push_str(&downloads);
    Ok((text, digest, linked))
}
