//! The metadata instructions (ENV, ARG, LABEL, EXPOSE, VOLUME, USER,
//! STOPSIGNAL, MAINTAINER, SHELL, CMD, ENTRYPOINT, HEALTHCHECK, ONBUILD and
//! the config part of WORKDIR): what each does to the image config and to
//! the stage's variables, and the history text it leaves. [`apply`] is a
//! function of the config, the stage's variables, the build args and the
//! instruction; it never touches a file, so running a step, taking a
//! WORKDIR from the cache and working out cache keys all call it, and the
//! key computation cannot reach the root, the sandbox or the snapshot.

use super::EngineError;
use super::scope::{BuildArgs, StageScope};
use crate::dockerfile::{Budget, CommandForm, Instruction, Lexer, Located};
use crate::image::ImageConfig;
use crate::image::config::{Empty, HealthConfig, RunConfig};
use crate::lexpath;
use std::collections::BTreeMap;

/// What a stage's steps carry from one to the next besides the image
/// config: its declared args, whether it set CMD, and what its expansions
/// may still produce.
#[derive(Debug, Clone, Default)]
pub struct StageVars {
    pub scope: StageScope,
    /// A CMD of this stage set the command: a later ENTRYPOINT keeps it
    /// (one inherited from the base is dropped).
    pub cmd_set: bool,
    /// What the stage's expansions may still produce in total (shared by
    /// clones).
    pub budget: Budget,
}

/// What a step is expanded with besides the stage's state.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The Dockerfile's word lexer (its escape character).
    pub lexer: Lexer,
    /// The Dockerfile's name, for errors.
    pub file: &'a str,
    /// Global (pre-FROM) args after expansion, on top of the automatic
    /// platform args.
    pub global_args: &'a BTreeMap<String, String>,
}

/// Applies the metadata instruction `step` to `config` and `vars`, taking
/// the build args an ARG declares from `args`; returns the history text
/// (`created_by`; empty for ONBUILD, which leaves no history entry). Any
/// other instruction (COPY, ADD, RUN, FROM) is refused. An error names the
/// step's line; the config may then be part-changed.
pub fn apply(
    config: &mut ImageConfig,
    vars: &mut StageVars,
    args: &mut BuildArgs,
    inputs: &Inputs<'_>,
    step: &Located<Instruction>,
) -> Result<String, EngineError> {
    let fail =
        |message: String| EngineError::step(inputs.file, step.line, step.value.keyword(), message);
    let lexer = inputs.lexer;
    let env_list: &[String] = config.config.env.as_deref().unwrap_or(&[]);
    let view = vars.scope.view(env_list);
    let budget = &vars.budget;
    let word = |w: &str| {
        lexer
            .process_word_in(w, &view, budget)
            .map_err(|e| fail(e.to_string()))
    };
    let created_by = match &step.value {
        Instruction::Env(pairs) => {
            let mut parts = Vec::new();
            let mut expanded = Vec::new();
            for (k, v) in pairs {
                let (k, v) = (word(k)?, word(v)?);
                parts.push(format!("{k}={v}"));
                expanded.push((k, v));
            }
            for (k, v) in expanded {
                config.config.env_set(&k, &v);
            }
            format!("ENV {}", parts.join(" "))
        }
        Instruction::Arg(decls) => {
            let mut parts = Vec::new();
            // declared once the words are expanded (they see the scope
            // before this line), in order
            let mut declared: Vec<(&String, Option<String>)> = Vec::new();
            for (name, default) in decls {
                let value = match args.take(name) {
                    Some(v) => Some(v),
                    None => match default {
                        Some(d) => Some(word(d)?),
                        // global ARGs (the automatic platform args among
                        // them), else the value it has (from the parent stage
                        // or earlier on this line)
                        None => inputs.global_args.get(name).cloned().or_else(|| {
                            match declared.iter().rev().find(|(n, _)| *n == name) {
                                Some((_, v)) => v.clone(),
                                None => vars.scope.value(name),
                            }
                        }),
                    },
                };
                parts.push(match &value {
                    Some(v) => format!("{name}={v}"),
                    None => name.clone(),
                });
                declared.push((name, value));
            }
            for (name, value) in declared {
                vars.scope.declare(name, value);
            }
            format!("ARG {}", parts.join(" "))
        }
        Instruction::Label(pairs) => {
            let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
            let mut parts = Vec::new();
            for (k, v) in pairs {
                let (k, v) = (word(k)?, word(v)?);
                parts.push(format!("{k}={v}"));
                labels.insert(k, v);
            }
            format!("LABEL {}", parts.join(" "))
        }
        Instruction::Expose(ports) => {
            let mut all = Vec::new();
            for p in ports {
                for w in lexer
                    .process_words_in(p, &view, budget)
                    .map_err(|e| fail(e.to_string()))?
                {
                    // a range is one word and up to 65,536 ports: they
                    // count against the stage's budget before they are
                    // made, at about what each costs kept (64 bytes)
                    let (start, end, proto) = port_range(&w).map_err(fail)?;
                    let count = usize::from(end - start) + 1;
                    budget.charge(count * 64).map_err(|e| fail(e.to_string()))?;
                    all.extend((start..=end).map(|p| format!("{p}/{proto}")));
                }
            }
            let exposed = config
                .config
                .exposed_ports
                .get_or_insert_with(BTreeMap::new);
            for p in &all {
                exposed.insert(p.clone(), Empty {});
            }
            format!("EXPOSE {}", all.join(" "))
        }
        Instruction::Volume(vols) => {
            let mut expanded = Vec::new();
            for v in vols {
                let v = word(v)?;
                if v.is_empty() {
                    return Err(fail(
                        "VOLUME specified can not be an empty string".to_string(),
                    ));
                }
                expanded.push(v);
            }
            let volumes = config.config.volumes.get_or_insert_with(BTreeMap::new);
            for v in &expanded {
                volumes.insert(v.clone(), Empty {});
            }
            format!("VOLUME [{}]", expanded.join(" "))
        }
        Instruction::User(u) => {
            let u = word(u)?;
            let text = format!("USER {u}");
            config.config.user = u;
            text
        }
        Instruction::StopSignal(s) => {
            let s = word(s)?;
            check_signal(&s).map_err(fail)?;
            let text = format!("STOPSIGNAL {s}");
            config.config.stop_signal = s;
            text
        }
        Instruction::Maintainer(m) => {
            config.author = Some(m.clone());
            format!("MAINTAINER {m}")
        }
        Instruction::Shell(sh) => {
            config.config.shell = Some(sh.clone());
            format!("SHELL [{}]", sh.join(" "))
        }
        Instruction::Cmd(form) => {
            let argv = with_shell(&config.config, form);
            let text = format!("CMD {}", go_quoted(&argv));
            config.config.cmd = Some(argv);
            config.config.args_escaped = true;
            vars.cmd_set = true;
            text
        }
        Instruction::Entrypoint(form) => {
            let argv = with_shell(&config.config, form);
            let text = format!("ENTRYPOINT {}", go_quoted(&argv));
            config.config.entrypoint = Some(argv);
            if !vars.cmd_set {
                config.config.cmd = None;
            }
            text
        }
        Instruction::Healthcheck(h) => {
            config.config.healthcheck = Some(HealthConfig {
                test: h.test.clone(),
                interval: h.interval.unwrap_or(0),
                timeout: h.timeout.unwrap_or(0),
                start_period: h.start_period.unwrap_or(0),
                start_interval: h.start_interval.unwrap_or(0),
                retries: h.retries.unwrap_or(0),
            });
            format!("HEALTHCHECK {}", go_quoted(&h.test))
        }
        Instruction::Onbuild { expression, .. } => {
            config
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(expression.clone());
            String::new()
        }
        Instruction::Workdir(w) => {
            let w = word(w)?;
            let wd = lexpath::join(workdir(&config.config), &w);
            let text = format!("WORKDIR {wd}");
            config.config.working_dir = wd;
            text
        }
        Instruction::From(_) => return Err(fail("FROM inside a stage".to_string())),
        Instruction::Copy(_) | Instruction::Run(_) => {
            return Err(fail("not a metadata instruction".to_string()));
        }
    };
    Ok(created_by)
}

/// The working directory steps run in (`/` when the config has none).
pub fn workdir(config: &RunConfig) -> &str {
    match config.working_dir.as_str() {
        "" => "/",
        wd => wd,
    }
}

/// SHELL, else `/bin/sh -c`.
pub fn shell(config: &RunConfig) -> Vec<String> {
    config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".to_string(), "-c".to_string()])
}

/// A command's argv: exec form as is, shell form through [`shell`].
pub fn with_shell(config: &RunConfig, form: &CommandForm) -> Vec<String> {
    match form {
        CommandForm::Exec(v) => v.clone(),
        CommandForm::Shell(s) => {
            let mut sh = shell(config);
            sh.push(s.clone());
            sh
        }
    }
}

/// An EXPOSE word (`port[-end][/proto]`): its first and last port and its
/// protocol.
fn port_range(spec: &str) -> Result<(u16, u16, String), String> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {spec}"))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(format!(
            "invalid range specified for container port: {spec}"
        ));
    }
    Ok((start, end, proto))
}

/// A STOPSIGNAL value docker accepts: a signal name (with or without
/// `SIG`), a number from 1 to 64, or a word still holding a `$`.
fn check_signal(s: &str) -> Result<(), String> {
    const NAMES: [&str; 31] = [
        "HUP", "INT", "QUIT", "ILL", "TRAP", "ABRT", "IOT", "BUS", "FPE", "KILL", "USR1", "SEGV",
        "USR2", "PIPE", "ALRM", "TERM", "STKFLT", "CHLD", "CONT", "STOP", "TSTP", "TTIN", "TTOU",
        "URG", "XCPU", "XFSZ", "VTALRM", "PROF", "WINCH", "IO", "PWR",
    ];
    if s.contains('$') {
        return Ok(());
    }
    if let Ok(n) = s.parse::<u32>() {
        return if n > 0 && n <= 64 {
            Ok(())
        } else {
            Err(format!("invalid signal: {s}"))
        };
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(format!("invalid signal: {s}"))
    }
}

/// Formats like Go's `%q` on a string slice (BuildKit's history text).
fn go_quoted(args: &[String]) -> String {
    let parts: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes() {
        assert_eq!(port_range("80"), Ok((80, 80, "tcp".to_string())));
        assert_eq!(port_range("53/UDP"), Ok((53, 53, "udp".to_string())));
        assert_eq!(
            port_range("8000-8002/tcp"),
            Ok((8000, 8002, "tcp".to_string()))
        );
        assert!(port_range("http").is_err());
        assert!(port_range("80/icmp").is_err());
        assert!(
            check_signal("SIGTERM").is_ok()
                && check_signal("9").is_ok()
                && check_signal("SIGNOPE").is_err()
        );
    }
}
