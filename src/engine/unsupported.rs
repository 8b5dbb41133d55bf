//! Refusing, before any step runs, what no builder would build: a build
//! that would fail at its tenth step fails at once, naming the file and
//! line, instead of after minutes of work (and never half-pushed).

use super::EngineError;
use super::copy_sources::CopyWords;
use crate::dockerfile::instruction::{Instruction, Source};
use crate::dockerfile::{Dockerfile, Located};

/// The first instruction of the stages `built` that no builder would
/// build (a mode or value BuildKit refuses too). ONBUILD lines are only recorded here; a trigger is
/// judged when it fires, at the FROM of the stage that inherits it, before
/// that stage's first step.
pub fn refuse(df: &Dockerfile, built: impl IntoIterator<Item = usize>) -> Result<(), EngineError> {
    for i in built {
        let Some(stage) = df.stages.get(i) else {
            continue;
        };
        for step in &stage.steps {
            if let Some(refused) = invalid(&step.value) {
                return Err(refusal(df, step, &refused));
            }
        }
    }
    Ok(())
}

fn refusal(df: &Dockerfile, step: &Located<Instruction>, refused: &Refused) -> EngineError {
    EngineError::step(&df.file, step.line, step.value.keyword(), refused)
}

/// Why a step cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// A value no docker accepts either (BuildKit's words).
    #[error("invalid network mode {0:?}")]
    Network(String),
    #[error("security {0:?} is not valid")]
    Security(String),
    /// A URL or `--checksum` where BuildKit refuses one, judged as written
    /// (words holding a variable are judged when the step runs).
    #[error(transparent)]
    Sources(#[from] super::copy_sources::CopySourceError),
    /// A `--mount` value BuildKit's parser refuses (its words).
    #[error("{0}")]
    Mount(String),
}

/// What in `inst` no builder would build (a mode no builder knows, a
/// value BuildKit's parser or frontend refuses), if anything.
pub fn invalid(inst: &Instruction) -> Option<Refused> {
    match inst {
        Instruction::Run(run) => {
            for m in &run.mounts {
                if let Err(e) = super::mounts::check_as_written(m) {
                    return Some(Refused::Mount(e.to_string()));
                }
            }
            match run.network.as_deref() {
                None | Some("default") | Some("host") | Some("none") => {}
                Some(other) => return Some(Refused::Network(other.to_string())),
            }
            match run.security.as_deref() {
                None | Some("sandbox") | Some("insecure") => {}
                Some(other) => return Some(Refused::Security(other.to_string())),
            }
            None
        }
        Instruction::Copy(c) => {
            let written = |w: &str| !w.contains('$');
            let plain = c.checksum.as_deref().is_none_or(written)
                && c.sources.iter().all(|s| match s {
                    Source::Path(p) => written(p),
                    Source::Inline { .. } => true,
                });
            if !plain {
                return None;
            }
            let words = CopyWords {
                sources: c.sources.clone(),
                dest: c.dest.clone(),
                from: None,
                chown: None,
                chmod: None,
                checksum: c.checksum.clone(),
            };
            words.check_remote(c.is_add).err().map(Refused::Sources)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_refusal(text: &str) -> Option<String> {
        let df = Dockerfile::parse_bytes(text.as_bytes(), "Dockerfile").expect("parse");
        refuse(&df, 0..df.stages.len()).err().map(|e| e.to_string())
    }

    #[test]
    fn refusals_name_the_line_and_the_feature() {
        let rows: &[(&str, Option<&str>)] = &[
            ("FROM a\nRUN true\nCOPY x /y\nADD x.tar /\n", None),
            (
                "FROM a\nRUN --network=host true\nRUN --network=default --security=sandbox true\n",
                None,
            ),
            (
                "FROM a\nRUN true\nRUN --mount=type=cache,target=/c --mount=target=/b true\n",
                None,
            ),
            (
                "FROM a\nRUN true\nRUN --mount=type=cache,target=/c,colour=red true\n",
                Some("Dockerfile:3: RUN: unexpected key 'colour' in 'colour=red'"),
            ),
            (
                "FROM a\nRUN --mount=from=$S,target=/c true\n",
                Some(
                    "Dockerfile:2: RUN: 'from' doesn't support variable expansion, define alias stage instead",
                ),
            ),
            (
                "FROM a\nRUN true\nRUN --mount=type=secret,id=x true\n",
                None,
            ),
            (
                "FROM a\nRUN --network=none true\nRUN --security=insecure true\n",
                None,
            ),
            (
                "FROM a\nRUN --network=bridge true\n",
                Some("Dockerfile:2: RUN: invalid network mode \"bridge\""),
            ),
            (
                "FROM a\nRUN --security=root true\n",
                Some("Dockerfile:2: RUN: security \"root\" is not valid"),
            ),
            ("FROM a\nCOPY --parents a/./b /\n", None),
            (
                "FROM a\nCOPY --exclude=*.md --exclude=!README.md . /\n",
                None,
            ),
            ("FROM a\nADD https://example.com/x /x\n", None),
            (
                "FROM a\nADD --checksum=sha256:0 https://example.com/x /x\n",
                Some("Dockerfile:2: ADD: invalid checksum digest format"),
            ),
            (
                "FROM a\nRUN true\nADD --checksum=abc0 local.txt /x\n",
                Some("Dockerfile:3: ADD: checksum requires HTTP(S) or Git sources"),
            ),
            (
                "FROM a\nADD --checksum=abc0 git@h:r.git https://h/x /x\n",
                Some("Dockerfile:2: ADD: checksum can't be specified for multiple sources"),
            ),
            ("FROM a\nARG C\nADD --checksum=$C local.txt /x\n", None),
            ("FROM a\nADD https://u:pw@example.com/r.git#main /x\n", None),
            (
                "FROM a\nADD --keep-git-dir git@example.com:r.git /x\n",
                None,
            ),
            (
                "FROM a\nCOPY https://example.com/x /x\n",
                Some("Dockerfile:2: COPY: source can't be a URL for COPY"),
            ),
            ("FROM a\nONBUILD RUN --mount=type=secret,id=x true\n", None),
            (
                "FROM a AS one\nRUN true\nFROM a\nRUN --mount=type=ssh,target=/t true\n",
                None,
            ),
        ];
        for (text, want) in rows {
            assert_eq!(first_refusal(text).as_deref(), *want, "{text}");
        }
    }

    #[test]
    fn stages_not_built_are_not_judged() {
        let df = Dockerfile::parse_bytes(
            b"FROM a AS unused\nRUN --mount=type=nfs,target=/c true\nFROM a\nRUN true\n",
            "Dockerfile",
        )
        .expect("parse");
        assert!(refuse(&df, [1]).is_ok());
        assert!(refuse(&df, [0, 1]).is_err());
    }
}
