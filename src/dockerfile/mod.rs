//! The Dockerfile front end: parsing (directives, continuations, heredocs,
//! JSON and shell forms), typed instructions with their line numbers, shell
//! word expansion, and `.dockerignore` patterns.
//!
//! It knows nothing of filesystems, registries or how a build runs: the
//! engine feeds it text and variables and gets instructions and strings back.

pub mod ignore;
pub mod instruction;
pub mod parser;
pub mod shell;
pub mod syntax;

pub use ignore::DockerIgnore;
pub use instruction::{CommandForm, Copy, From, Healthcheck, Instruction, Run, Source};
pub use parser::{Directives, Heredoc};
pub use shell::{Budget, Lexer, ShellError, Vars};
pub use syntax::SyntaxError;

/// The largest Dockerfile read, in bytes. The longest real ones are tens
/// of kilobytes; everything parsed or expanded from a Dockerfile grows with
/// it.
pub const MAX_DOCKERFILE: usize = 16 << 20;

/// A Dockerfile's bytes as text: they must be UTF-8 and at most
/// [`MAX_DOCKERFILE`] bytes; the error names the line where they are not
/// (and never shows the bytes).
pub fn text_of<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, DockerfileError> {
    let line_at = |offset: usize| 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
    if bytes.len() > MAX_DOCKERFILE {
        return Err(DockerfileError::Parse {
            file: file.to_string(),
            line: line_at(MAX_DOCKERFILE),
            source: SyntaxError::TooBig(MAX_DOCKERFILE),
        });
    }
    std::str::from_utf8(bytes).map_err(|e| DockerfileError::Parse {
        file: file.to_string(),
        line: line_at(e.valid_up_to()),
        source: SyntaxError::NotUtf8,
    })
}

/// ARG declarations: names with optional (unexpanded) defaults.
pub type ArgDecls = Vec<(String, Option<String>)>;

/// A value with the Dockerfile lines it came from (1-based, inclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub line: usize,
    pub end_line: usize,
    pub value: T,
}

/// Errors of the Dockerfile front end; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    #[error("{file}:{line}: {source}")]
    Parse {
        file: String,
        line: usize,
        #[source]
        source: SyntaxError,
    },
    #[error("{file}:{line}: {source}")]
    Expand {
        file: String,
        line: usize,
        #[source]
        source: ShellError,
    },
    #[error("{file}: {source}")]
    Ignore {
        file: String,
        #[source]
        source: ignore::IgnoreError,
    },
}

/// One build stage: its FROM line and the instructions after it.
#[derive(Debug, Clone)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lower case (stage names match case-insensitively).
    pub name: Option<String>,
    pub from: Located<From>,
    pub steps: Vec<Located<Instruction>>,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    /// The file name used in errors.
    pub file: String,
    pub directives: Directives,
    /// `ARG`s before the first `FROM`: visible in FROM lines only.
    pub meta_args: Vec<Located<ArgDecls>>,
    pub stages: Vec<Stage>,
    pub warnings: Vec<String>,
}

impl Dockerfile {
    /// Parses a Dockerfile as read from disk ([`text_of`]).
    pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<Dockerfile, DockerfileError> {
        Self::parse(text_of(bytes, file)?, file)
    }

    /// Parses Dockerfile text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Dockerfile, DockerfileError> {
        text_of(text.as_bytes(), file)?;
        let parsed = parser::parse(text, file)?;
        let escape = parsed.directives.escape;
        let err = |line: usize, source: SyntaxError| DockerfileError::Parse {
            file: file.to_string(),
            line,
            source,
        };
        let mut meta_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in &parsed.nodes {
            let inst =
                instruction::from_node(&node.value, escape).map_err(|m| err(node.line, m))?;
            match inst {
                Instruction::From(from) => {
                    let name = from.name.as_ref().map(|n| n.to_ascii_lowercase());
                    if let Some(n) = &name {
                        if !valid_stage_name(n) {
                            return Err(err(node.line, SyntaxError::StageName(n.clone())));
                        }
                        if stages.iter().any(|s| s.name.as_deref() == Some(n)) {
                            return Err(err(node.line, SyntaxError::DuplicateStage(n.clone())));
                        }
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name,
                        from: at(node, from),
                        steps: Vec::new(),
                    });
                }
                Instruction::Arg(args) if stages.is_empty() => meta_args.push(at(node, args)),
                other => match stages.last_mut() {
                    Some(stage) => stage.steps.push(at(node, other)),
                    None => {
                        return Err(err(
                            node.line,
                            SyntaxError::BeforeFrom(other.keyword().to_string()),
                        ));
                    }
                },
            }
        }
        if stages.is_empty() {
            let line = parsed.nodes.last().map_or(1, |n| n.line);
            let message = if parsed.nodes.is_empty() {
                SyntaxError::Empty
            } else {
                SyntaxError::NoFrom
            };
            return Err(err(line, message));
        }
        Ok(Dockerfile {
            file: file.to_string(),
            directives: parsed.directives,
            meta_args,
            stages,
            warnings: parsed.warnings,
        })
    }

    /// The stage named `name` (`AS` names match case-insensitively).
    pub fn stage_named(&self, name: &str) -> Option<usize> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .position(|s| s.name.as_deref() == Some(lower.as_str()))
    }

    /// The stage a `FROM` or `COPY --from` word names: its `AS` name
    /// (case-insensitively) or its index.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.stage_named(name).or_else(|| {
            name.parse::<usize>()
                .ok()
                .filter(|&i| i < self.stages.len())
        })
    }

    /// A lexer using this file's escape character.
    pub fn lexer(&self) -> Lexer {
        Lexer::new(self.directives.escape)
    }
}

fn at<T, U>(node: &Located<U>, value: T) -> Located<T> {
    Located {
        line: node.line,
        end_line: node.end_line,
        value,
    }
}

/// Stage names: a letter, then letters, digits, `-`, `_` and `.`. Upper
/// case is accepted (kaniko does; names compare case-insensitively).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests;
