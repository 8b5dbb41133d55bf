//! Entry points for the fuzz targets in `fuzz/` (and the replay of their
//! corpora in this crate's tests). Not an API: each function takes the
//! fuzzer's bytes and drives the real code, panicking only on a bug.
//!
//! A target is one row of [`TARGETS`]: `fuzz/fuzz_targets/<name>.rs`
//! calls the function, `fuzz/corpus/<name>/` holds its seeds and
//! `fuzz/regressions/<name>/` the inputs that once failed.

use crate::dockerfile::ignore::{Flavor, Glob};
use crate::dockerfile::{Budget, DockerIgnore, Dockerfile, Instruction, Located, Source};
use crate::engine::metadata::{self, Inputs, StageVars};
use crate::engine::plan::Plan;
use crate::engine::scope::BuildArgs;
use crate::image::ImageConfig;
use std::collections::BTreeMap;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (the directory names under `fuzz/`) and
/// the function it runs.
pub const TARGETS: &[(&str, Target)] = &[
    ("dockerfile", dockerfile),
    ("dockerignore", dockerignore),
    ("extract", extract),
];

/// Parses the bytes as a Dockerfile, then expands every argument of every
/// instruction as a build does: the global ARGs with some build args, the
/// stage plan, then each stage's steps in order with its ARG and ENV scope
/// and one expansion budget per stage.
pub fn dockerfile(data: &[u8]) {
    let Ok(df) = Dockerfile::parse_bytes(data, "Dockerfile") else {
        return;
    };
    let lexer = df.lexer();
    let mut args = BuildArgs::new(
        [
            ("A", "a b"),
            ("B", "${A}"),
            ("HTTP_PROXY", "http://p"),
            ("EMPTY", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    );
    let mut global: BTreeMap<String, String> =
        [("TARGETPLATFORM", "linux/amd64"), ("TARGETARCH", "amd64")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    let budget = Budget::default();
    for meta in &df.meta_args {
        for (name, default) in &meta.value {
            let value = match args.take(name) {
                Some(v) => Some(v),
                None => match default {
                    Some(d) => match lexer.process_word_in(d, &global, &budget) {
                        Ok(v) => Some(v),
                        Err(_) => return,
                    },
                    None => None,
                },
            };
            if let Some(v) = value {
                global.insert(name.clone(), v);
            }
        }
    }
    if Plan::new(&df, None, &global).is_err() {
        return;
    }
    let inputs = Inputs {
        lexer,
        file: &df.file,
        global_args: &global,
    };
    for stage in &df.stages {
        let mut state = Stage {
            config: ImageConfig::default(),
            vars: StageVars::default(),
        };
        if let Some(p) = &stage.from.value.platform
            && lexer
                .process_word_in(p, &global, &state.vars.budget)
                .is_err()
        {
            continue;
        }
        for step in &stage.steps {
            if state.step(step, &mut args, &inputs).is_err() {
                break;
            }
        }
    }
}

/// Why a step's expansion stopped (the target then moves on: only a
/// panic is a finding).
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error(transparent)]
    Expand(#[from] crate::dockerfile::ShellError),
    #[error(transparent)]
    Apply(#[from] crate::engine::EngineError),
}

/// A stage's config and variables while its steps are expanded.
#[derive(Clone)]
struct Stage {
    config: ImageConfig,
    vars: StageVars,
}

impl Stage {
    /// Expands a step as a build does: a metadata step through the
    /// engine's own [`metadata::apply`], a COPY/ADD's words here (the
    /// engine expands them as it copies).
    fn step(
        &mut self,
        step: &Located<Instruction>,
        args: &mut BuildArgs,
        inputs: &Inputs<'_>,
    ) -> Result<(), StepError> {
        match &step.value {
            Instruction::Copy(c) => {
                let env_list: &[String] = self.config.config.env.as_deref().unwrap_or(&[]);
                let vars = self.vars.scope.view(env_list);
                let budget = &self.vars.budget;
                let word = |w: &str| inputs.lexer.process_word_in(w, &vars, budget);
                for s in &c.sources {
                    match s {
                        Source::Path(p) => {
                            word(p)?;
                        }
                        Source::Inline {
                            content, expand, ..
                        } => {
                            if *expand {
                                crate::dockerfile::Lexer::heredoc()
                                    .process_word_in(content, &vars, budget)?;
                            }
                        }
                    }
                }
                word(&c.dest)?;
                for w in [&c.from, &c.chown, &c.chmod].into_iter().flatten() {
                    word(w)?;
                }
            }
            Instruction::Run(_) | Instruction::From(_) => {}
            Instruction::Onbuild { trigger, .. } => {
                // a trigger runs in the stage built on this image: expand it
                // with what this stage sees, without changing this stage
                // (the budget is shared)
                let mut later = self.clone();
                let trigger = Located {
                    line: step.line,
                    end_line: step.end_line,
                    value: (**trigger).clone(),
                };
                later.step(&trigger, args, inputs)?;
                metadata::apply(&mut self.config, &mut self.vars, args, inputs, step)?;
            }
            _ => {
                metadata::apply(&mut self.config, &mut self.vars, args, inputs, step)?;
            }
        }
        Ok(())
    }
}

/// `.dockerignore` text, a NUL, then context paths one a line: parses the
/// patterns and asks about each path. Each pattern line is also compiled as
/// shell, COPY-source and `.dockerignore` glob, and the one-pass matcher
/// (`Glob::prefix_matches`) must agree with a backtracking one on every
/// path and each of its prefixes.
pub fn dockerignore(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (patterns, paths) = text.split_once('\0').unwrap_or((&text, ""));
    if let Ok(ignore) = DockerIgnore::parse(patterns) {
        ignore.has_exceptions();
        for path in paths.lines() {
            ignore.is_excluded(path);
        }
    }
    // the backtracking matcher recurses once per token: short ones only
    let short = |s: &&str| s.len() <= 256;
    for pattern in patterns.lines().filter(short).take(8) {
        for flavor in [Flavor::Shell, Flavor::GoPath, Flavor::DockerIgnore] {
            let Some(glob) = Glob::new(pattern, flavor) else {
                continue;
            };
            for path in paths.lines().filter(short).take(8) {
                let chars: Vec<char> = path.chars().collect();
                let hits = glob.prefix_matches(&chars);
                for (n, hit) in hits.iter().enumerate() {
                    let prefix: String = chars[..n].iter().collect();
                    assert_eq!(
                        *hit,
                        glob.matches_backtracking(&prefix),
                        "{flavor:?} glob {pattern:?} on {prefix:?}"
                    );
                }
            }
        }
    }
}

/// Names the extractor target builds entries from: links out of the
/// root, `..`, whiteout names, and a placeholder for the canary's
/// absolute path.
const NAME_TOKENS: [&str; 16] = [
    "esc",
    "a",
    "sub",
    "..",
    ".",
    ".wh.",
    ".wh..",
    ".wh..wh..opq",
    "/",
    "@CANARY",
    "secret",
    "bin",
    "x\u{ff}",
    "//",
    ".wh.esc",
    "../..",
];

/// Builds two layers of crafted entries from the bytes (each entry: a
/// kind, a name and a link target of up to four tokens, a body) and
/// extracts them, one after the other, into a root with a canary
/// directory beside it; panics if anything outside the root changed.
pub fn extract(data: &[u8]) {
    use crate::fs::extract::{ExtractOptions, extract_tar};
    let Ok(outer) = tempfile::tempdir() else {
        return;
    };
    let root = outer.path().join("root");
    let canary = outer.path().join("canary");
    if fs_err::create_dir_all(&root).is_err()
        || fs_err::create_dir_all(canary.join("sub")).is_err()
        || fs_err::write(canary.join("secret"), b"host").is_err()
    {
        return;
    }
    let canary_abs = canary.display().to_string();
    let before = tree_state(outer.path());
    let mut bytes = data.iter().copied();
    let whiteouts = bytes.next().is_some_and(|b| b & 1 == 0);
    for _layer in 0..2 {
        let tar = crafted_tar(&mut bytes, &canary_abs);
        let _ = extract_tar(
            tar.as_slice(),
            &root,
            "",
            ExtractOptions {
                whiteouts,
                ..ExtractOptions::default()
            },
        );
        if bytes.len() == 0 {
            break;
        }
    }
    // the root itself may change in any way; nothing beside it may
    let after = tree_state(outer.path());
    assert_eq!(
        before, after,
        "an extraction changed something outside the root"
    );
}

/// Up to 12 entries read from `bytes`.
fn crafted_tar(bytes: &mut impl ExactSizeIterator<Item = u8>, canary: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let token_path = |bytes: &mut dyn Iterator<Item = u8>| {
        let n = bytes.next().unwrap_or(0) % 5;
        let mut s = String::new();
        for _ in 0..n {
            let t = NAME_TOKENS[usize::from(bytes.next().unwrap_or(0)) % NAME_TOKENS.len()];
            if !s.is_empty() && !s.ends_with('/') {
                s.push('/');
            }
            s.push_str(if t == "@CANARY" { canary } else { t });
        }
        s
    };
    for _ in 0..12 {
        let Some(kind) = bytes.next() else { break };
        let name = token_path(bytes);
        let link = token_path(bytes);
        let size = usize::from(bytes.next().unwrap_or(0) % 4);
        let kind = match kind % 6 {
            0 => tar::EntryType::Regular,
            1 => tar::EntryType::Directory,
            2 => tar::EntryType::Symlink,
            3 => tar::EntryType::Link,
            4 => tar::EntryType::Fifo,
            _ => tar::EntryType::Regular,
        };
        let mut h = tar::Header::new_gnu();
        let name_bytes = name.as_bytes();
        let link_bytes = link.as_bytes();
        if name_bytes.len() > 100 || link_bytes.len() > 100 {
            continue;
        }
        h.as_mut_bytes()[..name_bytes.len()].copy_from_slice(name_bytes);
        h.as_mut_bytes()[157..157 + link_bytes.len()].copy_from_slice(link_bytes);
        h.set_entry_type(kind);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(7);
        let body = vec![
            b'x';
            if kind == tar::EntryType::Regular {
                size
            } else {
                0
            }
        ];
        h.set_size(body.len() as u64);
        h.set_cksum();
        if b.append(&h, body.as_slice()).is_err() {
            break;
        }
    }
    b.into_inner().unwrap_or_default()
}

/// Every path under `dir` but its `root`, with type, size, mode, mtime
/// and contents.
fn tree_state(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p == dir.join("root") {
            // the root itself may change in any way
            continue;
        }
        let Ok(m) = fs_err::symlink_metadata(&p) else {
            continue;
        };
        let data = if m.is_file() {
            fs_err::read(&p).unwrap_or_default()
        } else {
            Vec::new()
        };
        out.push(format!(
            "{} {:o} {} {} {data:?}",
            p.display(),
            m.mode(),
            m.size(),
            m.mtime()
        ));
        if m.is_dir()
            && let Ok(rd) = fs_err::read_dir(&p)
        {
            todo.extend(rd.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::TARGETS;

    /// Every seed and regression input of every fuzz target, through the
    /// same function the target runs: CI replays them on stable.
    #[test]
    fn fuzz_corpora_replay() {
        let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        for (name, run) in TARGETS {
            let mut count = 0;
            for kind in ["corpus", "regressions"] {
                let dir = fuzz.join(kind).join(name);
                let Ok(entries) = fs_err::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let path = entry.unwrap().path();
                    let data = fs_err::read(&path).unwrap();
                    let done = std::panic::catch_unwind(|| run(&data));
                    assert!(done.is_ok(), "{name}: {} failed", path.display());
                    count += 1;
                }
            }
            assert!(count > 0, "{name}: no corpus under {}", fuzz.display());
        }
    }
}
