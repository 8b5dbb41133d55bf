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
    /// Per-input digests, kept in the entry (one annotation) to name the
    /// input that changed at a later miss.
    #[serde(skip)]
    pub record: InputRecord,
    /// The tag the newest entry made for this step (by its place in the
    /// Dockerfile, whatever its inputs) is also stored under
    /// ([`line_tag`]), where a later miss finds what to compare with.
    #[serde(skip)]
    pub line_tag: Option<String>,
}

/// What an entry records of its key's inputs, input by input, so a miss
/// can name what changed without the earlier inputs themselves: short
/// digests (48 bits: enough to tell a change, not to be looked up).
/// Bounded ([`InputRecord::to_annotation`]): at most [`RECORD_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputRecord {
    /// The stage's base as shown: an image digest, `scratch PLATFORM`,
    /// `stage NAME`.
    #[serde(default)]
    pub base: String,
    /// The stage's first key, then the key after each step before this
    /// one, each shortened: where two builds of the stage part.
    #[serde(default)]
    pub chain: Vec<String>,
    /// The args and env this step sees, by name: `arg DIGEST` or `env DIGEST`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The files of each COPY/ADD since the last step the cache keeps, up
    /// to this one, by step index in the stage.
    #[serde(default)]
    pub files: BTreeMap<usize, FileRecord>,
}

/// The most bytes an entry's [`InputRecord`] takes (as JSON): the files
/// of earlier steps go first, then every file, then the variables.
pub const RECORD_BYTES: usize = 48 * 1024;
/// The most names a [`FileRecord`] lists, and the most bytes they take.
const FILE_ENTRIES: usize = 256;
const FILE_BYTES: usize = 16 * 1024;
/// The most steps a stage's chain is recorded for.
const CHAIN_STEPS: usize = 512;

/// The short digests of what a COPY/ADD reads: one per entry by its name
/// (`depth` 0) when there are at most [`FILE_ENTRIES`] in
/// [`FILE_BYTES`]; otherwise one per group of entries sharing their first
/// `depth` path components, the deepest grouping that fits (a merkle
/// level: a group's digest is over its members'). Empty when not even
/// the top level fits.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileRecord {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: usize,
    pub digests: BTreeMap<String, String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The first 48 bits of a digest, as 12 hex digits.
pub(super) fn short(bytes: &[u8]) -> String {
    hex::encode(&bytes[..bytes.len().min(6)])
}

impl FileRecord {
    /// The record of `entries` (name, digest of metadata and content), in
    /// walk order.
    pub fn of(entries: &[(String, [u8; 32])]) -> FileRecord {
        let fits = |m: &BTreeMap<String, String>| {
            m.len() <= FILE_ENTRIES && m.keys().map(|k| k.len() + 18).sum::<usize>() <= FILE_BYTES
        };
        let every: BTreeMap<String, String> =
            entries.iter().map(|(n, d)| (n.clone(), short(d))).collect();
        if fits(&every) {
            return FileRecord {
                depth: 0,
                digests: every,
            };
        }
        // more components, more groups: the deepest level that fits
        let deepest = entries
            .iter()
            .map(|(n, _)| n.split('/').count())
            .max()
            .unwrap_or(0);
        let mut best = FileRecord::default();
        for depth in 1..deepest {
            let mut groups: BTreeMap<String, Sha256> = BTreeMap::new();
            for (n, d) in entries {
                let group: Vec<&str> = n.split('/').take(depth).collect();
                let h = groups.entry(group.join("/")).or_default();
                put(h, n.as_bytes());
                h.update(d);
            }
            let digests: BTreeMap<String, String> = groups
                .into_iter()
                .map(|(g, h)| (g, short(&h.finalize())))
                .collect();
            if !fits(&digests) {
                break;
            }
            best = FileRecord { depth, digests };
        }
        best
    }

    /// What differs from `then`, as a phrase naming the first two entries
    /// and how many more; `None` when the two cannot be compared (one
    /// not recorded, or grouped differently) or nothing differs.
    pub fn changed_from(&self, then: &FileRecord) -> Option<String> {
        if self.digests.is_empty() || then.digests.is_empty() || self.depth != then.depth {
            return None;
        }
        let name = |n: &str| {
            if self.depth == 0 {
                n.to_string()
            } else {
                format!("something under {n}")
            }
        };
        let mut names: BTreeMap<&str, ()> = BTreeMap::new();
        names.extend(self.digests.keys().map(|k| (k.as_str(), ())));
        names.extend(then.digests.keys().map(|k| (k.as_str(), ())));
        let changes: Vec<String> = names
            .keys()
            .filter_map(|n| match (then.digests.get(*n), self.digests.get(*n)) {
                (Some(a), Some(b)) if a != b => Some(format!("{} changed ({a}→{b})", name(n))),
                (None, Some(_)) => Some(format!("{} added", name(n))),
                (Some(_), None) => Some(format!("{} removed", name(n))),
                _ => None,
            })
            .collect();
        first_two(&changes)
    }
}

/// The first two of `changes` and how many more, or `None`.
fn first_two(changes: &[String]) -> Option<String> {
    match changes.len() {
        0 => None,
        1 | 2 => Some(changes.join(", ")),
        n => Some(format!("{} and {} more", changes[..2].join(", "), n - 2)),
    }
}

impl InputRecord {
    /// The variables that differ from `then`'s, by kind and name (never
    /// their values), or `None`.
    pub fn vars_changed_from(&self, then: &InputRecord) -> Option<String> {
        let mut names: Vec<&String> = self.vars.keys().chain(then.vars.keys()).collect();
        names.sort();
        names.dedup();
        let kind = |v: &str| v.split(' ').next().unwrap_or("arg").to_string();
        let changes: Vec<String> = names
            .into_iter()
            .filter_map(|n| match (then.vars.get(n), self.vars.get(n)) {
                (Some(a), Some(b)) if a != b => Some(format!("{} {n} changed", kind(b))),
                (None, Some(b)) => Some(format!("{} {n} set", kind(b))),
                (Some(a), None) => Some(format!("{} {n} unset", kind(a))),
                _ => None,
            })
            .collect();
        first_two(&changes)
    }

    /// The record as an annotation's value, within [`RECORD_BYTES`]: the
    /// files of earlier steps are left out first, then this step's, then
    /// the variables, then the chain.
    pub fn to_annotation(&self) -> Option<String> {
        let mut r = self.clone();
        loop {
            let text = serde_json::to_string(&r).ok()?;
            if text.len() <= RECORD_BYTES {
                return Some(text);
            }
            if r.files.pop_first().is_some() {
                continue;
            }
            if !r.vars.is_empty() {
                r.vars.clear();
                continue;
            }
            if !r.chain.is_empty() {
                r.chain.clear();
                continue;
            }
            return None;
        }
    }
}

/// The tag of the newest entry for step `index` of stage `stage` of the
/// Dockerfile named `file` on `platform`, whatever its inputs: where a
/// miss finds the entry to compare its inputs with. By place, not by
/// content, so another project's Dockerfile sharing the cache repository
/// may answer (its inputs then read as changed).
pub fn line_tag(file: &str, stage: &str, index: usize, platform: &Platform) -> String {
    let mut k = KeyHasher::new("");
    k.field("file", crate::lexpath::base_name(file).as_bytes());
    k.field("stage", stage.as_bytes());
    k.field("step", index.to_string().as_bytes());
    k.field("platform", platform.to_string().as_bytes());
    format!("line-{}", k.finish())
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
        record: InputRecord::default(),
        line_tag: None,
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
/// out on a copy (metadata steps applied, nothing written or run), the
/// key after the last, and every step's instruction as its key saw it
/// (expanded: what a miss names). `keys[i]` is set for a step whose layer the
/// cache keeps (RUN and WORKDIR with `--cache-run-layers`, COPY/ADD
/// with `--cache-copy-layers`) and whose key could be worked out.
#[allow(clippy::type_complexity)]
pub fn step_keys(
    state: &StageState,
    env: &BuildEnv<'_>,
    cache: &Cache,
    args: &mut BuildArgs,
    steps: &[&Located<Instruction>],
    copy_from: &CopySources,
    start: String,
) -> Result<(Vec<Option<KeyInputs>>, String, Vec<String>), EngineError> {
    // a copy of the config and variables: what metadata steps change
    let mut config = state.config.clone();
    let mut vars = StageVars {
        scope: state.vars.scope.clone(),
        cmd_set: state.vars.cmd_set,
        budget: Budget::default(),
    };
    let inputs = env.metadata_inputs();
    let mut chain = vec![short_key(&start)];
    let mut prev = start;
    let mut keys = Vec::new();
    let mut texts = Vec::new();
    // the files of COPY/ADD steps since the last step the cache keeps
    let mut files: BTreeMap<usize, FileRecord> = BTreeMap::new();
    for (index, step) in steps.iter().enumerate() {
        let mut linked = false;
        let mut shown = None;
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
                    Ok((text, digest, link, record)) => {
                        linked = link;
                        files.insert(index, record);
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
                // what a miss names of an ARG or ENV: as written, not
                // expanded (the values given, which the key sees)
                match &step.value {
                    Instruction::Arg(decls) => {
                        let names: Vec<String> = decls
                            .iter()
                            .map(|(n, d)| d.as_ref().map_or(n.clone(), |d| format!("{n}={d}")))
                            .collect();
                        shown = Some(format!("ARG {}", names.join(" ")));
                    }
                    Instruction::Env(pairs) => {
                        let pairs: Vec<String> =
                            pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        shown = Some(format!("ENV {}", pairs.join(" ")));
                    }
                    _ => {}
                }
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
        let mut key = if linked {
            let key = link_key(&prev, &view);
            prev = after_link(&prev, &key);
            key
        } else {
            let key = step_key(&prev, &view);
            prev = key.key.clone();
            key
        };
        if cached {
            let env_now: BTreeMap<String, String> = config.config.env_pairs().into_iter().collect();
            key.record = InputRecord {
                base: String::new(),
                chain: if chain.len() <= CHAIN_STEPS {
                    chain.clone()
                } else {
                    Vec::new()
                },
                vars: seen
                    .iter()
                    .map(|(name, value)| {
                        // an arg overrides an env of the same name
                        let kind = if env_now.get(name) == Some(value) {
                            "env"
                        } else {
                            "arg"
                        };
                        (
                            name.clone(),
                            format!("{kind} {}", short(&Sha256::digest(value.as_bytes()))),
                        )
                    })
                    .collect(),
                files: std::mem::take(&mut files),
            };
        }
        chain.push(short_key(&prev));
        keys.push(cached.then_some(key));
        texts.push(shown.unwrap_or(text));
    }
    Ok((keys, prev, texts))
}

/// A key (64 hex digits) as the chain records it: its first 12.
pub(super) fn short_key(key: &str) -> String {
    key.chars().take(12).collect()
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
) -> Result<(String, String, bool, FileRecord), CacheError> {
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
    let (mut digest, record) = if paths.is_empty() {
        (String::new(), FileRecord::default())
    } else {
        let excludes = crate::dockerfile::DockerIgnore::from_patterns(&c.excludes)?;
        cache.sources_digest_record(&tree, &paths, &excludes, c.parents)?
    };
    digest.push_str(&downloads);
    Ok((text, digest, linked, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[String], salt: &str) -> Vec<(String, [u8; 32])> {
        names
            .iter()
            .map(|n| {
                let d: [u8; 32] = Sha256::digest(format!("{n}{salt}")).into();
                (n.clone(), d)
            })
            .collect()
    }

    #[test]
    fn a_small_copy_records_every_file_and_names_what_changed() {
        let names: Vec<String> = ["src", "src/a.rs", "src/b.rs", "src/c.rs"]
            .map(String::from)
            .to_vec();
        let then = FileRecord::of(&entries(&names, ""));
        assert_eq!((then.depth, then.digests.len()), (0, 4));
        let mut changed = entries(&names, "");
        changed[2].1 = [7; 32];
        let now = FileRecord::of(&changed);
        let said = now.changed_from(&then).unwrap();
        assert!(said.starts_with("src/b.rs changed ("), "{said}");
        assert!(said.contains(&format!("→{})", "070707070707")), "{said}");
        assert_eq!(now.changed_from(&now), None);
        // four changes: two named, the rest counted
        let all = FileRecord::of(&entries(&names, "x"));
        let said = all.changed_from(&then).unwrap();
        assert!(said.ends_with(" and 2 more"), "{said}");
    }

    #[test]
    fn a_wide_copy_is_recorded_by_the_deepest_grouping_that_fits() {
        let mut names = Vec::new();
        for d in 0..20 {
            names.push(format!("app/d{d}"));
            for f in 0..100 {
                names.push(format!("app/d{d}/f{f}"));
            }
        }
        let then = FileRecord::of(&entries(&names, ""));
        // 2020 entries: grouped by app/dN (20 groups), not by file
        assert_eq!(then.depth, 2, "{then:?}");
        assert_eq!(then.digests.len(), 20);
        let mut changed = entries(&names, "");
        let at = names.iter().position(|n| n == "app/d7/f3").unwrap();
        changed[at].1 = [1; 32];
        let said = FileRecord::of(&changed).changed_from(&then).unwrap();
        assert!(
            said.starts_with("something under app/d7 changed ("),
            "{said}"
        );
        // groupings that differ cannot be compared
        let few = FileRecord::of(&entries(&names[..3], ""));
        assert_eq!(few.changed_from(&then), None);
    }

    #[test]
    fn a_record_stays_within_its_bound_dropping_earlier_files_first() {
        let long: Vec<String> = (0..250)
            .map(|i| format!("{}/{i}", "d".repeat(30)))
            .collect();
        let files = FileRecord::of(&entries(&long, ""));
        assert_eq!(files.depth, 0);
        let record = InputRecord {
            base: "sha256:00".to_string(),
            chain: vec!["0".repeat(12); 100],
            vars: BTreeMap::from([("A".to_string(), "arg 000000000000".to_string())]),
            files: (0..5).map(|i| (i, files.clone())).collect(),
        };
        let text = record.to_annotation().unwrap();
        assert!(text.len() <= RECORD_BYTES, "{}", text.len());
        let back: InputRecord = serde_json::from_str(&text).unwrap();
        // the last step's files (this step's) are kept, the earliest went
        assert!(back.files.contains_key(&4) && !back.files.contains_key(&0));
        assert_eq!((back.chain.len(), back.vars.len()), (100, 1));
    }

    #[test]
    fn changed_variables_are_named_by_kind_never_by_value() {
        let rec = |pairs: &[(&str, &str)]| InputRecord {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..InputRecord::default()
        };
        let then = rec(&[("A", "arg 111111111111"), ("B", "env 222222222222")]);
        let now = rec(&[("A", "arg 333333333333"), ("C", "arg 444444444444")]);
        assert_eq!(
            now.vars_changed_from(&then).unwrap(),
            "arg A changed, env B unset and 1 more"
        );
        assert_eq!(then.vars_changed_from(&then), None);
    }
}
