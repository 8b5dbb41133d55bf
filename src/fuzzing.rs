//! Entry points for the fuzz targets in `fuzz/` (and the replay of their
//! corpora in this crate's tests). Not an API: each function takes the
//! fuzzer's bytes and drives the real code, panicking only on a bug.
//!
//! A target is one row of [`TARGETS`]: `fuzz/fuzz_targets/<name>.rs`
//! calls the function, `fuzz/corpus/<name>/` holds its seeds and
//! `fuzz/regressions/<name>/` the inputs that once failed.

use crate::dockerfile::ignore::{Flavor, Glob};
use crate::dockerfile::{Budget, DockerIgnore, Dockerfile, Instruction, Lexer, Source};
use crate::engine::plan::Plan;
use crate::engine::scope::{BuildArgs, StageScope};
use crate::image::config::RunConfig;
use std::collections::BTreeMap;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// Every fuzz target: its name (the directory names under `fuzz/`) and
/// the function it runs.
pub const TARGETS: &[(&str, Target)] =
    &[("dockerfile", dockerfile), ("dockerignore", dockerignore)];

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
    for stage in &df.stages {
        let mut state = StageVars {
            lexer,
            scope: StageScope::default(),
            env: RunConfig::default(),
            budget: Budget::default(),
        };
        if let Some(p) = &stage.from.value.platform
            && lexer.process_word_in(p, &global, &state.budget).is_err()
        {
            continue;
        }
        for step in &stage.steps {
            if state.step(&step.value, &mut args, &global).is_err() {
                break;
            }
        }
    }
}

/// A stage's variables while its steps are expanded.
struct StageVars {
    lexer: Lexer,
    scope: StageScope,
    env: RunConfig,
    budget: Budget,
}

impl StageVars {
    fn step(
        &mut self,
        inst: &Instruction,
        args: &mut BuildArgs,
        global: &BTreeMap<String, String>,
    ) -> Result<(), crate::dockerfile::ShellError> {
        let env_list: &[String] = self.env.env.as_deref().unwrap_or(&[]);
        let vars = self.scope.view(env_list);
        let word = |w: &str| self.lexer.process_word_in(w, &vars, &self.budget);
        match inst {
            Instruction::Env(pairs) => {
                let mut expanded = Vec::new();
                for (k, v) in pairs {
                    expanded.push((word(k)?, word(v)?));
                }
                for (k, v) in expanded {
                    self.env.env_set(&k, &v);
                }
            }
            Instruction::Arg(decls) => {
                let mut declared: Vec<(&String, Option<String>)> = Vec::new();
                for (name, default) in decls {
                    let value = match args.take(name) {
                        Some(v) => Some(v),
                        None => match default {
                            Some(d) => Some(word(d)?),
                            None => global.get(name).cloned().or_else(|| {
                                match declared.iter().rev().find(|(n, _)| *n == name) {
                                    Some((_, v)) => v.clone(),
                                    None => self.scope.value(name),
                                }
                            }),
                        },
                    };
                    declared.push((name, value));
                }
                for (name, value) in declared {
                    self.scope.declare(name, value);
                }
            }
            Instruction::Label(pairs) => {
                for (k, v) in pairs {
                    word(k)?;
                    word(v)?;
                }
            }
            Instruction::Expose(ports) => {
                for p in ports {
                    self.lexer.process_words_in(p, &vars, &self.budget)?;
                }
            }
            Instruction::Volume(words) => {
                for w in words {
                    word(w)?;
                }
            }
            Instruction::User(w) | Instruction::Workdir(w) | Instruction::StopSignal(w) => {
                word(w)?;
            }
            Instruction::Copy(c) => {
                for s in &c.sources {
                    match s {
                        Source::Path(p) => {
                            word(p)?;
                        }
                        Source::Inline {
                            content, expand, ..
                        } => {
                            if *expand {
                                self.lexer.with_raw().process_word_in(
                                    content,
                                    &vars,
                                    &self.budget,
                                )?;
                            }
                        }
                    }
                }
                word(&c.dest)?;
                for w in [&c.from, &c.chown, &c.chmod].into_iter().flatten() {
                    word(w)?;
                }
            }
            Instruction::Onbuild { trigger, .. } => {
                // a trigger runs in the stage built on this image: expand it
                // with what this stage sees, without changing this stage
                let mut later = StageVars {
                    lexer: self.lexer,
                    scope: self.scope.clone(),
                    env: self.env.clone(),
                    budget: self.budget.clone(),
                };
                later.step(trigger, args, global)?;
            }
            Instruction::From(_)
            | Instruction::Run(_)
            | Instruction::Cmd(_)
            | Instruction::Entrypoint(_)
            | Instruction::Shell(_)
            | Instruction::Healthcheck(_)
            | Instruction::Maintainer(_) => {}
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
