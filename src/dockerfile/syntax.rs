//! What is wrong with a Dockerfile's text: each error as docker words it,
//! carried to the user with the file and line by
//! [`DockerfileError::Parse`](super::DockerfileError::Parse).

use super::shell::ShellError;

#[derive(Debug, thiserror::Error)]
pub enum SyntaxError {
    #[error("the Dockerfile is larger than {0} bytes")]
    TooBig(usize),
    #[error("not valid UTF-8")]
    NotUtf8,
    #[error("the Dockerfile has no instructions")]
    Empty,
    #[error("the Dockerfile has no FROM instruction")]
    NoFrom,
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    BadEscape(String),
    #[error("unterminated heredoc {0}")]
    UnterminatedHeredoc(String),
    #[error("heredoc {0} has no body")]
    HeredocWithoutBody(String),
    #[error("{0} cannot accept a heredoc as a destination")]
    HeredocDestination(String),
    #[error(transparent)]
    Lex(#[from] ShellError),
    #[error("invalid flag {0:?}")]
    BadFlag(String),
    #[error("expecting boolean value for flag {flag}, not: {value}")]
    NotABool { flag: String, value: String },
    #[error("missing a value on flag: {0}")]
    FlagWithoutValue(String),
    #[error("duplicate flag specified: {0}")]
    DuplicateFlag(String),
    #[error("unknown flag: {0}")]
    UnknownFlag(String),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStrings,
    /// `{keyword} {rule}`: "requires at least one argument" and the like.
    #[error("{keyword} {rule}")]
    Arguments { keyword: String, rule: &'static str },
    #[error(
        "{keyword} requires at least two arguments, but only {} provided. Destination could not be determined",
        if *given == 0 { "none was" } else { "one was" }
    )]
    NoDestination { keyword: String, given: usize },
    #[error("{0} names can not be blank")]
    BlankName(String),
    #[error("syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    NoEquals(String),
    #[error("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")]
    OnbuildChain,
    #[error("{0} isn't allowed as an ONBUILD trigger")]
    OnbuildTrigger(String),
    #[error("unknown instruction: {name}{}", hint.as_ref().map(|h| format!(" (did you mean {h}?)")).unwrap_or_default())]
    UnknownInstruction { name: String, hint: Option<String> },
    #[error("HEALTHCHECK NONE takes no arguments")]
    HealthcheckNoneArgs,
    #[error("unknown type {0:?} in HEALTHCHECK (try CMD)")]
    HealthcheckType(String),
    #[error("missing command after HEALTHCHECK CMD")]
    HealthcheckNoCommand,
    #[error("invalid duration {value:?} for --{flag}")]
    BadDuration { flag: String, value: String },
    #[error("--{flag} {value:?} cannot be less than 1ms")]
    DurationTooShort { flag: String, value: String },
    #[error("invalid value {0:?} for --retries")]
    BadRetries(String),
    #[error("--retries cannot be negative ({0})")]
    NegativeRetries(i64),
    #[error(
        "invalid name for build stage: {0:?}, name can't start with a number or contain symbols"
    )]
    StageName(String),
    #[error("duplicate stage name {0:?}")]
    DuplicateStage(String),
    #[error("{0} before the first FROM: no build stage in current context")]
    BeforeFrom(String),
    /// An ONBUILD's own instruction, parsed as a Dockerfile of one line.
    #[error(transparent)]
    Nested(Box<super::DockerfileError>),
}
