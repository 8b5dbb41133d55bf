//! Typed instructions: what each Dockerfile keyword means, its flags and the
//! shape of its arguments (JSON or shell form, `k=v` pairs, …).
//!
//! Arguments stay unexpanded here: expansion needs the variables in scope,
//! which only the engine knows. Parsing errors name the problem; `mod.rs`
//! adds the file and line.

use super::parser::{Heredoc, Node, parse_heredoc_word, split_words_keep_quotes};
use super::syntax::SyntaxError;

/// Exec (`["a", "b"]`) or shell (`a b`) form of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandForm {
    Exec(Vec<String>),
    Shell(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct From {
    pub image: String,
    pub platform: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub command: CommandForm,
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
    pub heredocs: Vec<Heredoc>,
}

/// A COPY/ADD source: a context path (maybe a glob or URL), or an inline
/// heredoc file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(String),
    Inline {
        name: String,
        content: String,
        expand: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Copy {
    /// True for ADD.
    pub is_add: bool,
    pub sources: Vec<Source>,
    pub dest: String,
    /// Whether the arguments were in JSON form.
    pub json: bool,
    pub from: Option<String>,
    pub chown: Option<String>,
    pub chmod: Option<String>,
    pub link: bool,
    pub parents: bool,
    pub excludes: Vec<String>,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    pub unpack: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", cmd]`.
    pub test: Vec<String>,
    /// Durations in nanoseconds, as the image config stores them.
    pub interval: Option<u64>,
    pub timeout: Option<u64>,
    pub start_period: Option<u64>,
    pub start_interval: Option<u64>,
    pub retries: Option<i64>,
}

/// One instruction with its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    From(From),
    Run(Run),
    Copy(Copy),
    /// `KEY=value` pairs, unexpanded, quotes kept.
    Env(Vec<(String, String)>),
    /// `NAME` or `NAME=default`, unexpanded.
    Arg(Vec<(String, Option<String>)>),
    Label(Vec<(String, String)>),
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Cmd(CommandForm),
    Entrypoint(CommandForm),
    Shell(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    Onbuild {
        expression: String,
        trigger: Box<Instruction>,
    },
    Maintainer(String),
}

impl Instruction {
    /// The keyword, upper case.
    pub fn keyword(&self) -> &'static str {
        match self {
            Instruction::From(_) => "FROM",
            Instruction::Run(_) => "RUN",
            Instruction::Copy(c) if c.is_add => "ADD",
            Instruction::Copy(_) => "COPY",
            Instruction::Env(_) => "ENV",
            Instruction::Arg(_) => "ARG",
            Instruction::Label(_) => "LABEL",
            Instruction::Expose(_) => "EXPOSE",
            Instruction::Volume(_) => "VOLUME",
            Instruction::User(_) => "USER",
            Instruction::Workdir(_) => "WORKDIR",
            Instruction::Cmd(_) => "CMD",
            Instruction::Entrypoint(_) => "ENTRYPOINT",
            Instruction::Shell(_) => "SHELL",
            Instruction::StopSignal(_) => "STOPSIGNAL",
            Instruction::Healthcheck(_) => "HEALTHCHECK",
            Instruction::Onbuild { .. } => "ONBUILD",
            Instruction::Maintainer(_) => "MAINTAINER",
        }
    }
}

const KEYWORDS: [&str; 18] = [
    "from",
    "run",
    "copy",
    "add",
    "env",
    "arg",
    "label",
    "expose",
    "volume",
    "user",
    "workdir",
    "cmd",
    "entrypoint",
    "shell",
    "stopsignal",
    "healthcheck",
    "onbuild",
    "maintainer",
];

/// Flags an instruction accepts, and which of them are booleans or lists.
struct FlagSpec {
    strings: &'static [&'static str],
    bools: &'static [&'static str],
    lists: &'static [&'static str],
}

#[derive(Debug, Default)]
struct Flags {
    strings: std::collections::BTreeMap<String, String>,
    bools: std::collections::BTreeMap<String, bool>,
    lists: std::collections::BTreeMap<String, Vec<String>>,
}

impl Flags {
    fn string(&self, name: &str) -> Option<String> {
        self.strings.get(name).cloned()
    }
    fn bool(&self, name: &str) -> bool {
        self.bools.get(name).copied().unwrap_or(false)
    }
    fn list(&self, name: &str) -> Vec<String> {
        self.lists.get(name).cloned().unwrap_or_default()
    }
}

fn parse_flags(node: &Node, spec: &FlagSpec) -> Result<Flags, SyntaxError> {
    let mut flags = Flags::default();
    for (name, value) in &node.flags {
        let n = name.as_str();
        if spec.bools.contains(&n) {
            let v = match value.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(_) => {
                    return Err(SyntaxError::NotABool {
                        flag: n.to_string(),
                        value: value.clone().unwrap_or_default(),
                    });
                }
            };
            flags.bools.insert(n.to_string(), v);
        } else if spec.strings.contains(&n) || spec.lists.contains(&n) {
            let Some(v) = value.clone() else {
                return Err(SyntaxError::FlagWithoutValue(n.to_string()));
            };
            if spec.lists.contains(&n) {
                flags.lists.entry(n.to_string()).or_default().push(v);
            } else if flags.strings.insert(n.to_string(), v).is_some() {
                return Err(SyntaxError::DuplicateFlag(n.to_string()));
            }
        } else {
            return Err(SyntaxError::UnknownFlag(n.to_string()));
        }
    }
    Ok(flags)
}

const NO_FLAGS: FlagSpec = FlagSpec {
    strings: &[],
    bools: &[],
    lists: &[],
};

fn is_blank(c: char) -> bool {
    c.is_whitespace()
}

/// The arguments split on blanks (docker's `parseStringsWhitespaceDelimited`).
fn fields(rest: &str) -> Vec<String> {
    rest.split(is_blank)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// A JSON array of strings, if `rest` is one. `Err` when it is a JSON array
/// holding something other than strings.
fn json_array(rest: &str) -> Result<Option<Vec<String>>, SyntaxError> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(None);
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Err(_) => Ok(None),
        Ok(values) => values
            .into_iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s),
                _ => Err(SyntaxError::JsonNotStrings),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
    }
}

fn command_form(rest: &str) -> Result<CommandForm, SyntaxError> {
    Ok(match json_array(rest)? {
        Some(v) => CommandForm::Exec(v),
        None => CommandForm::Shell(rest.to_string()),
    })
}

/// JSON list or blank-separated words (COPY, ADD, VOLUME); the bool says JSON.
fn json_or_fields(rest: &str) -> Result<(Vec<String>, bool), SyntaxError> {
    Ok(match json_array(rest)? {
        Some(v) => (v, true),
        None => (fields(rest), false),
    })
}

/// `KEY=value …` or the old `KEY value` form, for ENV and LABEL.
fn name_values(
    rest: &str,
    keyword: &str,
    escape: char,
) -> Result<Vec<(String, String)>, SyntaxError> {
    let words = split_words_keep_quotes(rest, escape);
    let Some(first) = words.first() else {
        return Err(SyntaxError::Arguments {
            keyword: keyword.to_string(),
            rule: "requires at least one argument",
        });
    };
    if !first.contains('=') {
        // old form: the first blank splits name and value
        let trimmed = rest.trim_start();
        let Some(p) = trimmed.find(is_blank) else {
            return Err(SyntaxError::Arguments {
                keyword: keyword.to_string(),
                rule: "must have two arguments",
            });
        };
        let (name, value) = (&trimmed[..p], trimmed[p..].trim_start());
        if value.is_empty() {
            return Err(SyntaxError::Arguments {
                keyword: keyword.to_string(),
                rule: "must have two arguments",
            });
        }
        return Ok(vec![(name.to_string(), value.to_string())]);
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(SyntaxError::BlankName(keyword.to_string())),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(SyntaxError::NoEquals(w)),
        })
        .collect()
}

fn one_arg(rest: &str, keyword: &str) -> Result<String, SyntaxError> {
    let v = rest.trim();
    if v.is_empty() {
        return Err(SyntaxError::Arguments {
            keyword: keyword.to_string(),
            rule: "requires exactly one argument",
        });
    }
    Ok(v.to_string())
}

/// Gives a raw node its meaning.
pub fn from_node(node: &Node, escape: char) -> Result<Instruction, SyntaxError> {
    let rest = node.rest.as_str();
    let no_flags = || parse_flags(node, &NO_FLAGS).map(|_| ());
    Ok(match node.cmd.as_str() {
        "from" => {
            let flags = parse_flags(
                node,
                &FlagSpec {
                    strings: &["platform"],
                    bools: &[],
                    lists: &[],
                },
            )?;
            let words = fields(rest);
            let name = match words.len() {
                1 => None,
                3 if words[1].eq_ignore_ascii_case("as") => Some(words[2].clone()),
                0 => {
                    return Err(SyntaxError::Arguments {
                        keyword: "FROM".to_string(),
                        rule: "requires either one or three arguments",
                    });
                }
                _ => {
                    return Err(SyntaxError::Arguments {
                        keyword: "FROM".to_string(),
                        rule: "requires either one or three arguments",
                    });
                }
            };
            Instruction::From(From {
                image: words[0].clone(),
                platform: flags.string("platform"),
                name,
            })
        }
        "run" => {
            let flags = parse_flags(
                node,
                &FlagSpec {
                    strings: &["network", "security"],
                    bools: &[],
                    lists: &["mount"],
                },
            )?;
            if rest.trim().is_empty() {
                return Err(SyntaxError::Arguments {
                    keyword: "RUN".to_string(),
                    rule: "requires at least one argument",
                });
            }
            Instruction::Run(Run {
                command: command_form(rest)?,
                mounts: flags.list("mount"),
                network: flags.string("network"),
                security: flags.string("security"),
                heredocs: node.heredocs.clone(),
            })
        }
        cmd @ ("copy" | "add") => {
            let is_add = cmd == "add";
            let spec = if is_add {
                FlagSpec {
                    strings: &["chown", "chmod", "checksum"],
                    bools: &["link", "keep-git-dir", "unpack"],
                    lists: &["exclude"],
                }
            } else {
                FlagSpec {
                    strings: &["from", "chown", "chmod"],
                    bools: &["link", "parents"],
                    lists: &["exclude"],
                }
            };
            let flags = parse_flags(node, &spec)?;
            let (args, json) = json_or_fields(rest)?;
            let keyword = cmd.to_ascii_uppercase();
            if args.len() < 2 {
                return Err(SyntaxError::NoDestination {
                    keyword,
                    given: args.len(),
                });
            }
            let Some((dest, srcs)) = args.split_last() else {
                return Err(SyntaxError::NoDestination { keyword, given: 0 });
            };
            if !json && parse_heredoc_word(dest)?.is_some() {
                return Err(SyntaxError::HeredocDestination(keyword));
            }
            let mut heredocs = node.heredocs.iter();
            let mut sources = Vec::new();
            for src in srcs {
                match (json, parse_heredoc_word(src)?) {
                    (false, Some(_)) => {
                        let h = heredocs
                            .next()
                            .ok_or_else(|| SyntaxError::HeredocWithoutBody(src.clone()))?;
                        sources.push(Source::Inline {
                            name: h.name.clone(),
                            content: h.body(),
                            expand: h.expand,
                        });
                    }
                    _ => sources.push(Source::Path(src.clone())),
                }
            }
            Instruction::Copy(Copy {
                is_add,
                sources,
                dest: dest.clone(),
                json,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                parents: flags.bool("parents"),
                excludes: flags.list("exclude"),
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.bools.get("unpack").copied(),
            })
        }
        "env" => {
            no_flags()?;
            Instruction::Env(name_values(rest, "ENV", escape)?)
        }
        "label" => {
            no_flags()?;
            Instruction::Label(name_values(rest, "LABEL", escape)?)
        }
        "arg" => {
            no_flags()?;
            let words = split_words_keep_quotes(rest, escape);
            if words.is_empty() {
                return Err(SyntaxError::Arguments {
                    keyword: "ARG".to_string(),
                    rule: "requires at least one argument",
                });
            }
            let args = words
                .into_iter()
                .map(|w| match w.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (w, None),
                })
                .collect::<Vec<_>>();
            if args.iter().any(|(k, _)| k.is_empty()) {
                return Err(SyntaxError::BlankName("ARG".to_string()));
            }
            Instruction::Arg(args)
        }
        "expose" => {
            no_flags()?;
            let ports = fields(rest);
            if ports.is_empty() {
                return Err(SyntaxError::Arguments {
                    keyword: "EXPOSE".to_string(),
                    rule: "requires at least one argument",
                });
            }
            Instruction::Expose(ports)
        }
        "volume" => {
            no_flags()?;
            let (vols, _) = json_or_fields(rest)?;
            if vols.is_empty() {
                return Err(SyntaxError::Arguments {
                    keyword: "VOLUME".to_string(),
                    rule: "requires at least one argument",
                });
            }
            Instruction::Volume(vols)
        }
        "user" => {
            no_flags()?;
            Instruction::User(one_arg(rest, "USER")?)
        }
        "workdir" => {
            no_flags()?;
            Instruction::Workdir(one_arg(rest, "WORKDIR")?)
        }
        "stopsignal" => {
            no_flags()?;
            Instruction::StopSignal(one_arg(rest, "STOPSIGNAL")?)
        }
        "maintainer" => {
            no_flags()?;
            Instruction::Maintainer(one_arg(rest, "MAINTAINER")?)
        }
        "cmd" => {
            no_flags()?;
            Instruction::Cmd(command_form(rest)?)
        }
        "entrypoint" => {
            no_flags()?;
            Instruction::Entrypoint(command_form(rest)?)
        }
        "shell" => {
            no_flags()?;
            match json_array(rest)? {
                Some(v) if !v.is_empty() => Instruction::Shell(v),
                Some(_) => {
                    return Err(SyntaxError::Arguments {
                        keyword: "SHELL".to_string(),
                        rule: "requires at least one argument",
                    });
                }
                None => {
                    return Err(SyntaxError::Arguments {
                        keyword: "SHELL".to_string(),
                        rule: "requires the arguments to be in JSON form",
                    });
                }
            }
        }
        "healthcheck" => healthcheck(node)?,
        "onbuild" => {
            no_flags()?;
            let expression = onbuild_expression(&node.original);
            if expression.is_empty() {
                return Err(SyntaxError::Arguments {
                    keyword: "ONBUILD".to_string(),
                    rule: "requires at least one argument",
                });
            }
            let inner = super::parser::parse(&expression, "ONBUILD").map_err(|e| match e {
                super::DockerfileError::Parse { source, .. } => source,
                // the parser makes no other error
                other => SyntaxError::Nested(Box::new(other)),
            })?;
            let Some(first) = inner.nodes.first() else {
                return Err(SyntaxError::Arguments {
                    keyword: "ONBUILD".to_string(),
                    rule: "requires at least one argument",
                });
            };
            match first.value.cmd.as_str() {
                "onbuild" => {
                    return Err(SyntaxError::OnbuildChain);
                }
                c @ ("maintainer" | "from") => {
                    return Err(SyntaxError::OnbuildTrigger(c.to_ascii_uppercase()));
                }
                _ => {}
            }
            let trigger = from_node(&first.value, escape)?;
            let mut expression = expression;
            for h in &node.heredocs {
                expression.push('\n');
                expression.push_str(&h.content);
                expression.push_str(&h.name);
            }
            Instruction::Onbuild {
                expression,
                trigger: Box::new(trigger),
            }
        }
        other => {
            let upper = other.to_ascii_uppercase();
            let hint = KEYWORDS
                .iter()
                .find(|k| edit_distance(k, other) <= 2)
                .map(|k| k.to_ascii_uppercase());
            return Err(SyntaxError::UnknownInstruction { name: upper, hint });
        }
    })
}

fn onbuild_expression(original: &str) -> String {
    let t = original.trim_start();
    let rest = if t.len() >= 7 && t[..7].eq_ignore_ascii_case("onbuild") {
        &t[7..]
    } else {
        t
    };
    rest.trim_start().to_string()
}

fn healthcheck(node: &Node) -> Result<Instruction, SyntaxError> {
    let rest = node.rest.trim_start();
    let (typ, args) = match rest.find(is_blank) {
        Some(p) => (&rest[..p], rest[p..].trim_start()),
        None => (rest, ""),
    };
    if typ.is_empty() {
        return Err(SyntaxError::Arguments {
            keyword: "HEALTHCHECK".to_string(),
            rule: "requires at least one argument",
        });
    }
    let typ = typ.to_ascii_uppercase();
    if typ == "NONE" {
        if !args.is_empty() {
            return Err(SyntaxError::HealthcheckNoneArgs);
        }
        parse_flags(node, &NO_FLAGS)?;
        return Ok(Instruction::Healthcheck(Healthcheck {
            test: vec!["NONE".to_string()],
            ..Healthcheck::default()
        }));
    }
    let flags = parse_flags(
        node,
        &FlagSpec {
            strings: &[
                "interval",
                "timeout",
                "start-period",
                "start-interval",
                "retries",
            ],
            bools: &[],
            lists: &[],
        },
    )?;
    if typ != "CMD" {
        return Err(SyntaxError::HealthcheckType(typ));
    }
    let test = match command_form(args)? {
        CommandForm::Exec(v) if v.is_empty() => {
            return Err(SyntaxError::HealthcheckNoCommand);
        }
        CommandForm::Exec(v) => std::iter::once("CMD".to_string()).chain(v).collect(),
        CommandForm::Shell(s) if s.trim().is_empty() => {
            return Err(SyntaxError::HealthcheckNoCommand);
        }
        CommandForm::Shell(s) => vec!["CMD-SHELL".to_string(), s],
    };
    let duration = |name: &str| -> Result<Option<u64>, SyntaxError> {
        let Some(v) = flags.string(name) else {
            return Ok(None);
        };
        let Some(ns) = parse_go_duration(&v) else {
            return Err(SyntaxError::BadDuration {
                flag: name.to_string(),
                value: v,
            });
        };
        if ns != 0 && ns < 1_000_000 {
            return Err(SyntaxError::DurationTooShort {
                flag: name.to_string(),
                value: v,
            });
        }
        Ok(Some(ns))
    };
    let retries = match flags.string("retries") {
        None => None,
        Some(v) => {
            let n: i64 = v.parse().map_err(|_| SyntaxError::BadRetries(v.clone()))?;
            if n < 0 {
                return Err(SyntaxError::NegativeRetries(n));
            }
            Some(n)
        }
    };
    Ok(Instruction::Healthcheck(Healthcheck {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    }))
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`) into nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<u64> {
    if s == "0" {
        return Some(0);
    }
    let mut rest = s;
    let mut total: f64 = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(total.round() as u64)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
