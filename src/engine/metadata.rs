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
    let fail = |message: &dyn std::fmt::Display| {
        EngineError::step(inputs.file, step.line, step.value.keyword(), message)
    };
    let lexer = inputs.lexer;
    let env_list: &[String] = config.config.env.as_deref().unwrap_or(&[]);
    let view = vars.scope.view(env_list);
    let budget = &vars.budget;
    let word = |w: &str| {
        lexer
            .process_word_in(w, &view, budget)
            .map_err(|e| fail(&e))
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
                vars.scope.env_set(&k);
            }
            format!("ENV {}", parts.join(" "))
        }
        Instruction::Arg(decls) => {
            let mut parts = Vec::new();
            // as BuildKit's dispatchArg: a build arg, else the default
            // (expanded with what the line declared so far), else for a
            // bare ARG the global value (the automatic args among them);
            // a value replaces what the environment has for the name
            for (name, default) in decls {
                let value = match args.take(name) {
                    Some(v) => Some(v),
                    None => match default {
                        Some(d) => Some(
                            lexer
                                .process_word_in(d, &vars.scope.view(env_list), &vars.budget)
                                .map_err(|e| fail(&e))?,
                        ),
                        None => inputs.global_args.get(name).cloned(),
                    },
                };
                parts.push(match &value {
                    Some(v) => format!("{name}={v}"),
                    None => name.clone(),
                });
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
                    .map_err(|e| fail(&e))?
                {
                    // a range is one word and up to 65,536 ports: they
                    // count against the stage's budget before they are
                    // made, at about what each costs kept (64 bytes)
                    let (start, end, proto) = port_range(&w).map_err(|e| fail(&e))?;
                    let count = usize::from(end - start) + 1;
                    budget.charge(count * 64).map_err(|e| fail(&e))?;
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
                    return Err(fail(&"VOLUME specified can not be an empty string"));
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
            check_signal(&s).map_err(|e| fail(&e))?;
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
        Instruction::From(_) => return Err(fail(&"FROM inside a stage")),
        Instruction::Copy(_) | Instruction::Run(_) => {
            return Err(fail(&"not a metadata instruction"));
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

/// A value of EXPOSE or STOPSIGNAL docker refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("invalid proto: {0}")]
    Proto(String),
    #[error("invalid containerPort: {0}")]
    Port(String),
    #[error("invalid range specified for container port: {0}")]
    PortRange(String),
    #[error("invalid signal: {0}")]
    Signal(String),
}

/// An EXPOSE word (`port[-end][/proto]`): its first and last port and its
/// protocol.
fn port_range(spec: &str) -> Result<(u16, u16, String), ValueError> {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(ValueError::Proto(proto));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| ValueError::Port(spec.to_string()))
    };
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(ValueError::PortRange(spec.to_string()));
    }
    Ok((start, end, proto))
}

/// A STOPSIGNAL value docker accepts: a signal name (with or without
/// `SIG`), a number from 1 to 64, or a word still holding a `$`.
fn check_signal(s: &str) -> Result<(), ValueError> {
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
            Err(ValueError::Signal(s.to_string()))
        };
    }
    let name = s.strip_prefix("SIG").unwrap_or(s);
    if NAMES.contains(&name) || name.starts_with("RTMIN") || name.starts_with("RTMAX") {
        Ok(())
    } else {
        Err(ValueError::Signal(s.to_string()))
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
    use crate::dockerfile::Dockerfile;

    /// Runs the steps of `FROM scratch` + `steps` through [`apply`] from an
    /// empty config, with the build arg `GIVEN=given` and the global arg
    /// `TARGETARCH=amd64`: the last step's history text (or the first
    /// error) and the config and variables after it.
    fn run(steps: &str) -> (Result<String, String>, ImageConfig, StageVars) {
        run_with(steps, StageVars::default())
    }

    /// [`run`] from `vars`.
    fn run_with(
        steps: &str,
        mut vars: StageVars,
    ) -> (Result<String, String>, ImageConfig, StageVars) {
        let text = format!("FROM scratch\n{steps}\n");
        let df = Dockerfile::parse_bytes(text.as_bytes(), "Dockerfile").unwrap();
        let global = BTreeMap::from([("TARGETARCH".to_string(), "amd64".to_string())]);
        let inputs = Inputs {
            lexer: df.lexer(),
            file: &df.file,
            global_args: &global,
        };
        let mut args = BuildArgs::new(BTreeMap::from([("GIVEN".to_string(), "given".to_string())]));
        let mut config = ImageConfig::default();
        let mut last = Ok(String::new());
        for step in &df.stages[0].steps {
            last =
                apply(&mut config, &mut vars, &mut args, &inputs, step).map_err(|e| e.to_string());
            if last.is_err() {
                break;
            }
        }
        (last, config, vars)
    }

    type Field = fn(&ImageConfig, &StageVars) -> String;

    fn env(c: &ImageConfig, _: &StageVars) -> String {
        c.config
            .env
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    }
    fn args(_: &ImageConfig, v: &StageVars) -> String {
        let shown = v.scope.args.iter().map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        });
        shown.collect::<Vec<_>>().join(",")
    }
    fn run_env(c: &ImageConfig, v: &StageVars) -> String {
        let env: &[String] = c.config.env.as_deref().unwrap_or(&[]);
        let shown = v.scope.environment(env).into_iter();
        shown
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
    fn labels(c: &ImageConfig, _: &StageVars) -> String {
        let shown = c
            .config
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"));
        shown.collect::<Vec<_>>().join(",")
    }
    fn ports(c: &ImageConfig, _: &StageVars) -> String {
        let shown = c
            .config
            .exposed_ports
            .iter()
            .flatten()
            .map(|(k, _)| k.clone());
        shown.collect::<Vec<_>>().join(",")
    }
    fn volumes(c: &ImageConfig, _: &StageVars) -> String {
        let shown = c.config.volumes.iter().flatten().map(|(k, _)| k.clone());
        shown.collect::<Vec<_>>().join(",")
    }
    fn user(c: &ImageConfig, _: &StageVars) -> String {
        c.config.user.clone()
    }
    fn signal(c: &ImageConfig, _: &StageVars) -> String {
        c.config.stop_signal.clone()
    }
    fn author(c: &ImageConfig, _: &StageVars) -> String {
        c.author.clone().unwrap_or_default()
    }
    fn shell_of(c: &ImageConfig, _: &StageVars) -> String {
        shell(&c.config).join(",")
    }
    fn cmd(c: &ImageConfig, _: &StageVars) -> String {
        format!("{:?} {:?}", c.config.entrypoint, c.config.cmd)
    }
    fn health(c: &ImageConfig, _: &StageVars) -> String {
        c.config
            .healthcheck
            .as_ref()
            .map(|h| format!("{:?} {} {}", h.test, h.interval, h.retries))
            .unwrap_or_default()
    }
    fn onbuild(c: &ImageConfig, _: &StageVars) -> String {
        c.config
            .on_build
            .iter()
            .flatten()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    }
    fn workdir_of(c: &ImageConfig, _: &StageVars) -> String {
        c.config.working_dir.clone()
    }

    #[test]
    fn each_instruction_changes_the_config_and_says_so_in_history() {
        // steps, the last step's history text or error, what to look at
        // after, and what it holds
        let rows: &[(&str, Result<&str, &str>, Field, &str)] = &[
            // ENV: the words see the env before the line; a key set again
            // keeps its place
            ("ENV A=1 B=x$A", Ok("ENV A=1 B=x"), env, "A=1,B=x"),
            ("ENV A=1\nENV B=$A A=2", Ok("ENV B=1 A=2"), env, "A=2,B=1"),
            (
                "ARG V=arg\nENV V=env W=$V",
                Ok("ENV V=env W=arg"),
                env,
                "V=env,W=arg",
            ),
            ("ENV A=${UNSET:?gone}", Err("Dockerfile:2: ENV: "), env, ""),
            // ARG: a build arg wins over the default, a bare ARG takes the
            // global value, else the one declared earlier on the line
            (
                "ARG GIVEN=default",
                Ok("ARG GIVEN=given"),
                args,
                "GIVEN=given",
            ),
            (
                "ARG TARGETARCH",
                Ok("ARG TARGETARCH=amd64"),
                args,
                "TARGETARCH=amd64",
            ),
            // a bare ARG with no global value adds nothing (BuildKit's
            // history shows it bare); a later default sees an earlier one
            ("ARG A=1 A", Ok("ARG A=1 A"), args, "A=1"),
            ("ARG A=1 B=x$A", Ok("ARG A=1 B=x1"), args, "A=1,B=x1"),
            // ARG and ENV of one name: the one set last is in RUN's
            // environment and expands later words; only ENV in the config
            ("ENV V=env\nARG V=arg", Ok("ARG V=arg"), run_env, "V=arg"),
            ("ENV V=env\nARG V=arg", Ok("ARG V=arg"), env, "V=env"),
            (
                "ENV V=env\nARG V=arg\nLABEL l=$V",
                Ok("LABEL l=arg"),
                labels,
                "l=arg",
            ),
            ("ARG V=arg\nENV V=env", Ok("ENV V=env"), run_env, "V=env"),
            (
                "ENV V=env\nARG V\nLABEL l=$V",
                Ok("LABEL l=env"),
                labels,
                "l=env",
            ),
            (
                "ENV GIVEN=env\nARG GIVEN",
                Ok("ARG GIVEN=given"),
                run_env,
                "GIVEN=given",
            ),
            (
                "ENV TARGETARCH=env\nARG TARGETARCH",
                Ok("ARG TARGETARCH=amd64"),
                run_env,
                "TARGETARCH=amd64",
            ),
            // in the order each name was last set
            (
                "ARG A=1\nENV B=2 C=3\nARG C=4\nENV A=5",
                Ok("ENV A=5"),
                run_env,
                "B=2,C=4,A=5",
            ),
            ("ARG A=1\nARG B=$A C", Ok("ARG B=1 C"), args, "A=1,B=1,C"),
            ("ARG A=${B:?no B}", Err("Dockerfile:2: ARG: "), args, ""),
            // LABEL
            (
                "ARG V=1\nLABEL a=$V b=\"x y\"",
                Ok("LABEL a=1 b=x y"),
                labels,
                "a=1,b=x y",
            ),
            ("LABEL a=1\nLABEL a=2", Ok("LABEL a=2"), labels, "a=2"),
            (
                "LABEL a=${X:?unset}",
                Err("Dockerfile:2: LABEL: "),
                labels,
                "",
            ),
            // EXPOSE: ranges, protocols, several words from one variable
            (
                "EXPOSE 80 53/UDP",
                Ok("EXPOSE 80/tcp 53/udp"),
                ports,
                "53/udp,80/tcp",
            ),
            (
                "ENV P=\"1 2-3/sctp\"\nEXPOSE $P",
                Ok("EXPOSE 1/tcp 2/sctp 3/sctp"),
                ports,
                "1/tcp,2/sctp,3/sctp",
            ),
            (
                "EXPOSE 80/icmp",
                Err("Dockerfile:2: EXPOSE: invalid proto: icmp"),
                ports,
                "",
            ),
            (
                "\nEXPOSE 9-8",
                Err("Dockerfile:3: EXPOSE: invalid range specified for container port: 9-8"),
                ports,
                "",
            ),
            // VOLUME
            ("VOLUME /a /b", Ok("VOLUME [/a /b]"), volumes, "/a,/b"),
            (
                "ENV D=/data\nVOLUME [\"$D\", \"/x\"]",
                Ok("VOLUME [/data /x]"),
                volumes,
                "/data,/x",
            ),
            (
                "VOLUME [\"$NONE\"]",
                Err("Dockerfile:2: VOLUME: VOLUME specified can not be an empty string"),
                volumes,
                "",
            ),
            // USER
            ("ARG U=app\nUSER $U:1", Ok("USER app:1"), user, "app:1"),
            ("USER ${U:?who}", Err("Dockerfile:2: USER: "), user, ""),
            // STOPSIGNAL
            (
                "STOPSIGNAL SIGKILL",
                Ok("STOPSIGNAL SIGKILL"),
                signal,
                "SIGKILL",
            ),
            ("ENV S=9\nSTOPSIGNAL $S", Ok("STOPSIGNAL 9"), signal, "9"),
            (
                "STOPSIGNAL SIGNOPE",
                Err("Dockerfile:2: STOPSIGNAL: invalid signal: SIGNOPE"),
                signal,
                "",
            ),
            (
                "STOPSIGNAL 65",
                Err("Dockerfile:2: STOPSIGNAL: invalid signal: 65"),
                signal,
                "",
            ),
            // MAINTAINER: as written
            ("MAINTAINER me $X", Ok("MAINTAINER me $X"), author, "me $X"),
            // SHELL, then CMD and ENTRYPOINT in shell form through it
            (
                "SHELL [\"/bin/bash\", \"-c\"]",
                Ok("SHELL [/bin/bash -c]"),
                shell_of,
                "/bin/bash,-c",
            ),
            (
                "CMD echo $HOME",
                Ok("CMD [\"/bin/sh\" \"-c\" \"echo $HOME\"]"),
                cmd,
                "None Some([\"/bin/sh\", \"-c\", \"echo $HOME\"])",
            ),
            (
                "SHELL [\"bash\", \"-e\"]\nCMD [\"run\"]",
                Ok("CMD [\"run\"]"),
                cmd,
                "None Some([\"run\"])",
            ),
            (
                "SHELL [\"bash\", \"-e\"]\nENTRYPOINT go",
                Ok("ENTRYPOINT [\"bash\" \"-e\" \"go\"]"),
                cmd,
                "Some([\"bash\", \"-e\", \"go\"]) None",
            ),
            // an ENTRYPOINT keeps a CMD of this stage
            (
                "CMD [\"a\"]\nENTRYPOINT [\"e\"]",
                Ok("ENTRYPOINT [\"e\"]"),
                cmd,
                "Some([\"e\"]) Some([\"a\"])",
            ),
            // HEALTHCHECK
            (
                "HEALTHCHECK --interval=5s --retries=2 CMD true",
                Ok("HEALTHCHECK [\"CMD-SHELL\" \"true\"]"),
                health,
                "[\"CMD-SHELL\", \"true\"] 5000000000 2",
            ),
            (
                "HEALTHCHECK NONE",
                Ok("HEALTHCHECK [\"NONE\"]"),
                health,
                "[\"NONE\"] 0 0",
            ),
            // ONBUILD: kept as written, no history text
            ("ONBUILD RUN echo $X", Ok(""), onbuild, "RUN echo $X"),
            // WORKDIR: relative to the last one, cleaned, expanded
            (
                "WORKDIR /a\nWORKDIR b/../c",
                Ok("WORKDIR /a/c"),
                workdir_of,
                "/a/c",
            ),
            (
                "ENV D=/srv\nWORKDIR $D/app",
                Ok("WORKDIR /srv/app"),
                workdir_of,
                "/srv/app",
            ),
            ("WORKDIR rel", Ok("WORKDIR /rel"), workdir_of, "/rel"),
            (
                "WORKDIR ${D:?where}",
                Err("Dockerfile:2: WORKDIR: "),
                workdir_of,
                "",
            ),
            // not metadata: refused, naming the line
            (
                "\n\nRUN true",
                Err("Dockerfile:4: RUN: not a metadata instruction"),
                env,
                "",
            ),
            (
                "COPY a b",
                Err("Dockerfile:2: COPY: not a metadata instruction"),
                env,
                "",
            ),
        ];
        for (steps, history, field, value) in rows {
            let (got, config, vars) = run(steps);
            match (history, &got) {
                (Ok(want), Ok(got)) => assert_eq!(got, want, "{steps}"),
                (Err(want), Err(got)) => assert!(got.starts_with(want), "{steps}: {got}"),
                _ => panic!("{steps}: {got:?}, not {history:?}"),
            }
            if history.is_ok() {
                assert_eq!(field(&config, &vars), *value, "{steps}");
            }
        }
    }

    #[test]
    fn an_arg_value_that_reaches_run_is_part_of_its_cache_key() {
        let key = |steps: &str| {
            let (got, config, vars) = run(steps);
            assert!(got.is_ok(), "{steps}: {got:?}");
            let seen = vars.scope.vars(&config.config.env_pairs());
            let platform = crate::engine::Platform::parse("linux/amd64").unwrap();
            let view = crate::engine::cache::StepView {
                instruction: "RUN echo $V",
                vars: &seen,
                platform: &platform,
                user: "",
                workdir: "/",
                shell: &[],
                sources: None,
                mounts: None,
            };
            crate::engine::cache::step_key("prev", &view).key
        };
        assert_ne!(key("ARG V=a"), key("ARG V=b"));
        // an ARG after the ENV is what RUN sees: its value is in the key
        assert_ne!(key("ENV V=env\nARG V=a"), key("ENV V=env\nARG V=b"));
        assert_ne!(key("ENV V=env\nARG V=a"), key("ENV V=env"));
        // an ENV after the ARG hides it from RUN (and from the key)
        assert_eq!(key("ARG V=a\nENV V=env"), key("ARG V=b\nENV V=env"));
        // a declared ARG with no value is nothing
        assert_eq!(key("ARG V"), key("LABEL l=1"));
    }

    #[test]
    fn nothing_but_the_config_and_variables_changes() {
        // the same steps from the same state give the same result: the
        // function reads nothing else (no file, no clock)
        let steps = "ARG A=1\nENV B=$A\nWORKDIR /x/$B\nUSER u\nEXPOSE 1-3\nCMD go";
        let (first, a, _) = run(steps);
        let (second, b, _) = run(steps);
        assert_eq!(first, second);
        assert_eq!(a, b);
        assert!(a.history.is_empty() && a.rootfs.diff_ids.is_empty());
        assert_eq!(a.config.working_dir, "/x/1");
    }

    #[test]
    fn expose_ranges_count_against_the_budget() {
        // 64 bytes a port (and the word itself): 1,000 ports fit in 64,032
        // bytes, 1,001 do not
        let small = || StageVars {
            budget: Budget::new(64_032),
            ..StageVars::default()
        };
        let (got, config, _) = run_with("EXPOSE 1-1000", small());
        assert!(got.is_ok(), "{got:?}");
        assert_eq!(config.config.exposed_ports.map(|p| p.len()), Some(1000));
        let (got, _, _) = run_with("EXPOSE 1-1001", small());
        let err = got.unwrap_err();
        assert!(err.starts_with("Dockerfile:2: EXPOSE: "), "{err}");
    }

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
