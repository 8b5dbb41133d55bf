//! Parser table: each row is a Dockerfile and a compact rendering of what it
//! must parse to (or the error it must give). Cases written for smelt from
//! docker's documented Dockerfile rules.

use super::*;

fn form(c: &CommandForm) -> String {
    match c {
        CommandForm::Exec(v) => format!("exec{v:?}"),
        CommandForm::Shell(s) => format!("shell{s:?}"),
    }
}

fn render_inst(i: &Instruction) -> String {
    match i {
        Instruction::From(f) => {
            let mut s = format!("FROM {}", f.image);
            if let Some(p) = &f.platform {
                s += &format!(" platform={p}");
            }
            if let Some(n) = &f.name {
                s += &format!(" as={n}");
            }
            s
        }
        Instruction::Run(r) => {
            let mut s = format!("RUN {}", form(&r.command));
            for m in &r.mounts {
                s += &format!(" mount={m}");
            }
            if let Some(n) = &r.network {
                s += &format!(" network={n}");
            }
            if let Some(n) = &r.security {
                s += &format!(" security={n}");
            }
            for h in &r.heredocs {
                s += &format!(
                    " heredoc({},chomp={},expand={}){:?}",
                    h.name,
                    h.chomp,
                    h.expand,
                    h.body()
                );
            }
            s
        }
        Instruction::Copy(c) => {
            let srcs: Vec<String> = c
                .sources
                .iter()
                .map(|s| match s {
                    Source::Path(p) => p.clone(),
                    Source::Inline {
                        name,
                        content,
                        expand,
                    } => {
                        format!(
                            "<<{name}{}{}",
                            if *expand { "" } else { "(raw)" },
                            content.replace('\n', "⏎")
                        )
                    }
                })
                .collect();
            let mut s = format!("{} {srcs:?} -> {}", i.keyword(), c.dest);
            for (k, v) in [
                ("from", &c.from),
                ("chown", &c.chown),
                ("chmod", &c.chmod),
                ("checksum", &c.checksum),
            ] {
                if let Some(v) = v {
                    s += &format!(" {k}={v}");
                }
            }
            for (k, v) in [
                ("link", c.link),
                ("parents", c.parents),
                ("keep-git-dir", c.keep_git_dir),
                ("json", c.json),
            ] {
                if v {
                    s += &format!(" {k}");
                }
            }
            for e in &c.excludes {
                s += &format!(" exclude={e}");
            }
            s
        }
        Instruction::Env(kv) => format!("ENV {kv:?}"),
        Instruction::Label(kv) => format!("LABEL {kv:?}"),
        Instruction::Arg(kv) => format!("ARG {kv:?}"),
        Instruction::Expose(p) => format!("EXPOSE {p:?}"),
        Instruction::Volume(v) => format!("VOLUME {v:?}"),
        Instruction::User(u) => format!("USER {u:?}"),
        Instruction::Workdir(w) => format!("WORKDIR {w:?}"),
        Instruction::Cmd(c) => format!("CMD {}", form(c)),
        Instruction::Entrypoint(c) => format!("ENTRYPOINT {}", form(c)),
        Instruction::Shell(v) => format!("SHELL {v:?}"),
        Instruction::StopSignal(s) => format!("STOPSIGNAL {s:?}"),
        Instruction::Maintainer(s) => format!("MAINTAINER {s:?}"),
        Instruction::Healthcheck(h) => format!(
            "HEALTHCHECK {:?} i={:?} t={:?} sp={:?} si={:?} r={:?}",
            h.test, h.interval, h.timeout, h.start_period, h.start_interval, h.retries
        ),
        Instruction::Onbuild {
            expression,
            trigger,
        } => format!("ONBUILD {expression:?} => {}", render_inst(trigger)),
    }
}

/// Renders every instruction after the first FROM, one per line, with its
/// line span; the first FROM line is left out to keep rows short.
fn render(df: &Dockerfile) -> String {
    let mut out = Vec::new();
    for a in &df.meta_args {
        out.push(format!("{}: ARG {:?}", a.line, a.value));
    }
    for (n, stage) in df.stages.iter().enumerate() {
        if n > 0
            || stage.from.value.image != "scratch"
            || stage.from.value.name.is_some()
            || stage.from.value.platform.is_some()
        {
            out.push(format!(
                "{}: {}",
                stage.from.line,
                render_inst(&Instruction::From(stage.from.value.clone()))
            ));
        }
        for s in &stage.steps {
            let span = if s.end_line == s.line {
                s.line.to_string()
            } else {
                format!("{}-{}", s.line, s.end_line)
            };
            out.push(format!("{span}: {}", render_inst(&s.value)));
        }
    }
    out.join("\n")
}

/// (Dockerfile text, expected rendering)
const OK: &[(&str, &str)] = &[
    // FROM
    ("FROM scratch", ""),
    ("FROM busybox", "1: FROM busybox"),
    ("from busybox AS Builder", "1: FROM busybox as=Builder"),
    (
        "FROM --platform=linux/arm64 alpine as b",
        "1: FROM alpine platform=linux/arm64 as=b",
    ),
    (
        "FROM --platform=$BUILDPLATFORM alpine",
        "1: FROM alpine platform=$BUILDPLATFORM",
    ),
    (
        "ARG V=1\nFROM img:$V",
        "1: ARG [(\"V\", Some(\"1\"))]\n2: FROM img:$V",
    ),
    (
        "ARG A B=2\nFROM scratch",
        "1: ARG [(\"A\", None), (\"B\", Some(\"2\"))]",
    ),
    (
        "FROM scratch\nFROM scratch AS two",
        "2: FROM scratch as=two",
    ),
    // RUN
    ("FROM scratch\nRUN echo hi", "2: RUN shell\"echo hi\""),
    (
        "FROM scratch\nRUN [\"echo\", \"hi\"]",
        "2: RUN exec[\"echo\", \"hi\"]",
    ),
    (
        "FROM scratch\nRUN [\"echo\", \"hi\"",
        "2: RUN shell\"[\\\"echo\\\", \\\"hi\\\"\"",
    ),
    ("FROM scratch\nRUN [ \"a\" ]   ", "2: RUN exec[\"a\"]"),
    ("FROM scratch\nRUN []", "2: RUN exec[]"),
    ("FROM scratch\nrun echo lower", "2: RUN shell\"echo lower\""),
    (
        "FROM scratch\nRUN --mount=type=cache,target=/c make",
        "2: RUN shell\"make\" mount=type=cache,target=/c",
    ),
    (
        "FROM scratch\nRUN --mount=type=secret,id=a --mount=type=ssh x",
        "2: RUN shell\"x\" mount=type=secret,id=a mount=type=ssh",
    ),
    (
        "FROM scratch\nRUN --network=none --security=insecure x",
        "2: RUN shell\"x\" network=none security=insecure",
    ),
    (
        "FROM scratch\nRUN --mount=\"type=bind,source=a b\" x",
        "2: RUN shell\"x\" mount=type=bind,source=a b",
    ),
    (
        "FROM scratch\nRUN -- --not-a-flag",
        "2: RUN shell\"--not-a-flag\"",
    ),
    (
        "FROM scratch\nRUN echo --flag-later",
        "2: RUN shell\"echo --flag-later\"",
    ),
    // continuations
    ("FROM scratch\nRUN a \\\n  b", "2-3: RUN shell\"a   b\""),
    ("FROM scratch\nRUN a \\   \n  b", "2-3: RUN shell\"a   b\""),
    (
        "FROM scratch\nRUN a \\\n# comment\n  b",
        "2-4: RUN shell\"a   b\"",
    ),
    (
        "FROM scratch\nRUN a \\\n    # indented comment\n  b",
        "2-4: RUN shell\"a   b\"",
    ),
    ("FROM scratch\nRUN a \\\n\n  b", "2-4: RUN shell\"a   b\""),
    (
        "FROM scratch\nRUN a \\\n  b \\\n  c",
        "2-4: RUN shell\"a   b   c\"",
    ),
    ("FROM scratch\nRUN a \\", "2: RUN shell\"a\""),
    (
        "FROM scratch\nRUN echo a\\\\b",
        "2: RUN shell\"echo a\\\\\\\\b\"",
    ),
    (
        "FROM scratch\r\nRUN a \\\r\n b\r\n",
        "2-3: RUN shell\"a  b\"",
    ),
    (
        "# escape=`\nFROM scratch\nRUN a `\n b",
        "3-4: RUN shell\"a  b\"",
    ),
    (
        "# escape=`\nFROM scratch\nRUN dir c:\\ \nRUN x",
        "3: RUN shell\"dir c:\\\\\"\n4: RUN shell\"x\"",
    ),
    // comments and blanks
    (
        "# hello\nFROM scratch\n\n  # indented\nRUN x # not a comment",
        "5: RUN shell\"x # not a comment\"",
    ),
    ("\u{feff}FROM scratch\nRUN x", "2: RUN shell\"x\""),
    // heredocs
    (
        "FROM scratch\nRUN <<EOF\necho a\necho b\nEOF",
        "2-5: RUN shell\"<<EOF\" heredoc(EOF,chomp=false,expand=true)\"echo a\\necho b\\n\"",
    ),
    (
        "FROM scratch\nRUN <<-EOT sh\n\techo x\n\tEOT",
        "2-4: RUN shell\"<<-EOT sh\" heredoc(EOT,chomp=true,expand=true)\"echo x\\n\"",
    ),
    (
        "FROM scratch\nRUN <<'EOF'\n$X\nEOF",
        "2-4: RUN shell\"<<'EOF'\" heredoc(EOF,chomp=false,expand=false)\"$X\\n\"",
    ),
    (
        "FROM scratch\nRUN <<\"EOF\"\n$X\nEOF",
        "2-4: RUN shell\"<<\\\"EOF\\\"\" heredoc(EOF,chomp=false,expand=false)\"$X\\n\"",
    ),
    (
        "FROM scratch\nRUN cat <<A <<B\na\nA\nb\nB",
        "2-6: RUN shell\"cat <<A <<B\" heredoc(A,chomp=false,expand=true)\"a\\n\" heredoc(B,chomp=false,expand=true)\"b\\n\"",
    ),
    (
        "FROM scratch\nRUN <<EOF\n# kept\n\nEOF\nRUN after",
        "2-5: RUN shell\"<<EOF\" heredoc(EOF,chomp=false,expand=true)\"# kept\\n\\n\"\n6: RUN shell\"after\"",
    ),
    (
        "FROM scratch\nRUN echo \"<<EOF\"",
        "2: RUN shell\"echo \\\"<<EOF\\\"\"",
    ),
    (
        "FROM scratch\nRUN [\"sh\", \"<<EOF\"]\nRUN x",
        "2: RUN exec[\"sh\", \"<<EOF\"]\n3: RUN shell\"x\"",
    ),
    (
        "FROM scratch\nCOPY <<EOF /h/two\nliteral $NAME\nEOF",
        "2-4: COPY [\"<<EOFliteral $NAME⏎\"] -> /h/two",
    ),
    (
        "FROM scratch\nCOPY <<'EOF' /h/three\nnot $NAME\nEOF",
        "2-4: COPY [\"<<EOF(raw)not $NAME⏎\"] -> /h/three",
    ),
    (
        "FROM scratch\nCOPY <<A <<B /dir/\na\nA\nb\nB",
        "2-6: COPY [\"<<Aa⏎\", \"<<Bb⏎\"] -> /dir/",
    ),
    (
        "FROM scratch\nCOPY <<-A /f\n\t\tx\n\tA",
        "2-4: COPY [\"<<Ax⏎\"] -> /f",
    ),
    (
        "FROM scratch\nADD <<EOF /f\nx\nEOF",
        "2-4: ADD [\"<<EOFx⏎\"] -> /f",
    ),
    (
        "FROM scratch\nRUN 3<<EOF cat /dev/fd/3\nx\nEOF",
        "2-4: RUN shell\"3<<EOF cat /dev/fd/3\" heredoc(EOF,chomp=false,expand=true)\"x\\n\"",
    ),
    // COPY / ADD
    (
        "FROM scratch\nCOPY a b /dst/",
        "2: COPY [\"a\", \"b\"] -> /dst/",
    ),
    (
        "FROM scratch\nCOPY [\"spaced name.txt\", \"/dst/with space/\"]",
        "2: COPY [\"spaced name.txt\"] -> /dst/with space/ json",
    ),
    (
        "FROM scratch\nCOPY --from=builder /out /out",
        "2: COPY [\"/out\"] -> /out from=builder",
    ),
    (
        "FROM scratch\nCOPY --chown=nobody:nogroup --chmod=0751 a /a",
        "2: COPY [\"a\"] -> /a chown=nobody:nogroup chmod=0751",
    ),
    (
        "FROM scratch\nCOPY --link --parents a/b ./",
        "2: COPY [\"a/b\"] -> ./ link parents",
    ),
    (
        "FROM scratch\nCOPY --link=false a /",
        "2: COPY [\"a\"] -> /",
    ),
    (
        "FROM scratch\nCOPY --exclude=*.tmp --exclude=x . /",
        "2: COPY [\".\"] -> / exclude=*.tmp exclude=x",
    ),
    (
        "FROM scratch\nADD --checksum=sha256:abc https://x/y /y",
        "2: ADD [\"https://x/y\"] -> /y checksum=sha256:abc",
    ),
    (
        "FROM scratch\nADD --keep-git-dir=true https://x/r.git /r",
        "2: ADD [\"https://x/r.git\"] -> /r keep-git-dir",
    ),
    ("FROM scratch\nADD a.tar.gz /", "2: ADD [\"a.tar.gz\"] -> /"),
    (
        "FROM scratch\nCOPY *.txt /dst/glob/",
        "2: COPY [\"*.txt\"] -> /dst/glob/",
    ),
    (
        "FROM scratch\nCOPY $SRC ${DST}",
        "2: COPY [\"$SRC\"] -> ${DST}",
    ),
    // ENV / LABEL / ARG
    ("FROM scratch\nENV A=1", "2: ENV [(\"A\", \"1\")]"),
    (
        "FROM scratch\nENV A=1 B=\"two words\" C=${A}-x",
        "2: ENV [(\"A\", \"1\"), (\"B\", \"\\\"two words\\\"\"), (\"C\", \"${A}-x\")]",
    ),
    (
        "FROM scratch\nENV D $B and more",
        "2: ENV [(\"D\", \"$B and more\")]",
    ),
    (
        "FROM scratch\nENV D  spaced   value ",
        "2: ENV [(\"D\", \"spaced   value\")]",
    ),
    ("FROM scratch\nENV A=a\\ b", "2: ENV [(\"A\", \"a\\\\ b\")]"),
    (
        "FROM scratch\nENV A='x y' B=\"$A\"",
        "2: ENV [(\"A\", \"'x y'\"), (\"B\", \"\\\"$A\\\"\")]",
    ),
    ("FROM scratch\nENV A=", "2: ENV [(\"A\", \"\")]"),
    (
        "FROM scratch\nENV A=1 \\\n    B=2",
        "2-3: ENV [(\"A\", \"1\"), (\"B\", \"2\")]",
    ),
    (
        "FROM scratch\nLABEL org.example.name=\"metadata case\" version=1 \"quoted key\"=yes",
        "2: LABEL [(\"org.example.name\", \"\\\"metadata case\\\"\"), (\"version\", \"1\"), (\"\\\"quoted key\\\"\", \"yes\")]",
    ),
    (
        "FROM scratch\nLABEL old style value",
        "2: LABEL [(\"old\", \"style value\")]",
    ),
    ("FROM scratch\nARG NAME", "2: ARG [(\"NAME\", None)]"),
    (
        "FROM scratch\nARG NAME=world",
        "2: ARG [(\"NAME\", Some(\"world\"))]",
    ),
    (
        "FROM scratch\nARG A=\"x y\" B",
        "2: ARG [(\"A\", Some(\"\\\"x y\\\"\")), (\"B\", None)]",
    ),
    (
        "FROM scratch\nARG EMPTY=",
        "2: ARG [(\"EMPTY\", Some(\"\"))]",
    ),
    // EXPOSE / VOLUME
    (
        "FROM scratch\nEXPOSE 80 443/tcp 53/udp",
        "2: EXPOSE [\"80\", \"443/tcp\", \"53/udp\"]",
    ),
    ("FROM scratch\nEXPOSE $PORT", "2: EXPOSE [\"$PORT\"]"),
    (
        "FROM scratch\nVOLUME [\"/data\", \"/logs\"]",
        "2: VOLUME [\"/data\", \"/logs\"]",
    ),
    ("FROM scratch\nVOLUME /a /b", "2: VOLUME [\"/a\", \"/b\"]"),
    (
        "FROM scratch\nVOLUME [\"/a\"",
        "2: VOLUME [\"[\\\"/a\\\"\"]",
    ),
    // USER / WORKDIR / STOPSIGNAL / MAINTAINER
    ("FROM scratch\nUSER nobody", "2: USER \"nobody\""),
    ("FROM scratch\nUSER 1000:1000", "2: USER \"1000:1000\""),
    ("FROM scratch\nWORKDIR /srv", "2: WORKDIR \"/srv\""),
    ("FROM scratch\nWORKDIR  app  ", "2: WORKDIR \"app\""),
    ("FROM scratch\nWORKDIR /a b", "2: WORKDIR \"/a b\""),
    (
        "FROM scratch\nSTOPSIGNAL SIGTERM",
        "2: STOPSIGNAL \"SIGTERM\"",
    ),
    ("FROM scratch\nSTOPSIGNAL 9", "2: STOPSIGNAL \"9\""),
    (
        "FROM scratch\nMAINTAINER Jane <j@x>",
        "2: MAINTAINER \"Jane <j@x>\"",
    ),
    // CMD / ENTRYPOINT / SHELL
    (
        "FROM scratch\nCMD [\"default\", \"args\"]",
        "2: CMD exec[\"default\", \"args\"]",
    ),
    ("FROM scratch\nCMD echo hi", "2: CMD shell\"echo hi\""),
    ("FROM scratch\nCMD []", "2: CMD exec[]"),
    (
        "FROM scratch\nENTRYPOINT [\"/bin/echo\", \"entry\"]",
        "2: ENTRYPOINT exec[\"/bin/echo\", \"entry\"]",
    ),
    (
        "FROM scratch\nENTRYPOINT exec top -b",
        "2: ENTRYPOINT shell\"exec top -b\"",
    ),
    ("FROM scratch\nCMD [\"a\\\"b\"]", "2: CMD exec[\"a\\\"b\"]"),
    ("FROM scratch\nCMD [\"\\u00e9\"]", "2: CMD exec[\"é\"]"),
    ("FROM scratch\nCMD ['single']", "2: CMD shell\"['single']\""),
    (
        "FROM scratch\nSHELL [\"/bin/sh\", \"-ec\"]",
        "2: SHELL [\"/bin/sh\", \"-ec\"]",
    ),
    (
        "FROM scratch\nSHELL [\"powershell\", \"-command\"]",
        "2: SHELL [\"powershell\", \"-command\"]",
    ),
    // HEALTHCHECK
    (
        "FROM scratch\nHEALTHCHECK NONE",
        "2: HEALTHCHECK [\"NONE\"] i=None t=None sp=None si=None r=None",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=30s --timeout=3s --retries=2 CMD [\"true\"]",
        "2: HEALTHCHECK [\"CMD\", \"true\"] i=Some(30000000000) t=Some(3000000000) sp=None si=None r=Some(2)",
    ),
    (
        "FROM scratch\nHEALTHCHECK CMD curl -f http://x/ || exit 1",
        "2: HEALTHCHECK [\"CMD-SHELL\", \"curl -f http://x/ || exit 1\"] i=None t=None sp=None si=None r=None",
    ),
    (
        "FROM scratch\nHEALTHCHECK --start-period=1m30s --start-interval=500ms cmd true",
        "2: HEALTHCHECK [\"CMD-SHELL\", \"true\"] i=None t=None sp=Some(90000000000) si=Some(500000000) r=None",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=1.5h CMD x",
        "2: HEALTHCHECK [\"CMD-SHELL\", \"x\"] i=Some(5400000000000) t=None sp=None si=None r=None",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=0 CMD x",
        "2: HEALTHCHECK [\"CMD-SHELL\", \"x\"] i=Some(0) t=None sp=None si=None r=None",
    ),
    // ONBUILD
    (
        "FROM scratch\nONBUILD RUN echo child",
        "2: ONBUILD \"RUN echo child\" => RUN shell\"echo child\"",
    ),
    (
        "FROM scratch\nonbuild  copy a /b",
        "2: ONBUILD \"copy a /b\" => COPY [\"a\"] -> /b",
    ),
    (
        "FROM scratch\nONBUILD ENV A=1",
        "2: ONBUILD \"ENV A=1\" => ENV [(\"A\", \"1\")]",
    ),
    // directives
    (
        "# syntax=docker/dockerfile:1\nFROM scratch\nRUN x",
        "3: RUN shell\"x\"",
    ),
    (
        "#syntax = docker/dockerfile:1.7\n# escape=\\\n# check=skip=all\nFROM scratch",
        "",
    ),
    (
        "# unknown=1\n# escape=`\nFROM scratch\nRUN a `\n b",
        "4-5: RUN shell\"a  b\"",
    ),
    (
        "# comment first\n# escape=`\nFROM scratch\nRUN a \\",
        "4: RUN shell\"a\"",
    ),
    ("\n# escape=`\nFROM scratch\nRUN a \\", "4: RUN shell\"a\""),
    // multi-stage
    (
        "FROM a AS one\nRUN x\nFROM one AS two\nCOPY --from=one /a /b",
        "1: FROM a as=one\n2: RUN shell\"x\"\n3: FROM one as=two\n4: COPY [\"/a\"] -> /b from=one",
    ),
];

#[test]
fn parse_table() {
    for (text, want) in OK {
        let df = Dockerfile::parse(text, "Dockerfile").unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(render(&df), *want, "Dockerfile:\n{text}");
    }
}

/// (Dockerfile text, expected line, expected fragment of the message)
const ERR: &[(&str, usize, &str)] = &[
    ("", 1, "no instructions"),
    ("# just a comment\n", 1, "no instructions"),
    ("RUN x", 1, "no build stage"),
    ("ARG A\nENV B=1\nFROM scratch", 2, "no build stage"),
    ("ARG A", 1, "no FROM"),
    ("FROM", 1, "either one or three arguments"),
    ("FROM a b", 1, "either one or three arguments"),
    ("FROM a AS", 1, "either one or three arguments"),
    ("FROM a IS b", 1, "either one or three arguments"),
    ("FROM a AS 1x", 1, "invalid name for build stage"),
    ("FROM a AS x\nFROM b AS X", 2, "duplicate stage name"),
    ("FROM --plat=x a", 1, "unknown flag: plat"),
    ("FROM scratch\nFOO bar", 2, "unknown instruction: FOO"),
    ("FROM scratch\nCOPPY a b", 2, "did you mean COPY?"),
    ("FROM scratch\nRUN", 2, "RUN requires at least one argument"),
    (
        "FROM scratch\nRUN --mount x",
        2,
        "missing a value on flag: mount",
    ),
    ("FROM scratch\nRUN --bogus=1 x", 2, "unknown flag: bogus"),
    ("FROM scratch\nRUN [1, 2]", 2, "comprised of strings only"),
    ("FROM scratch\nCOPY a", 2, "at least two arguments"),
    ("FROM scratch\nCOPY", 2, "at least two arguments"),
    (
        "FROM scratch\nCOPY --from a b",
        2,
        "missing a value on flag: from",
    ),
    (
        "FROM scratch\nCOPY --from=a --from=b c d",
        2,
        "duplicate flag specified: from",
    ),
    (
        "FROM scratch\nCOPY --link=maybe a b",
        2,
        "expecting boolean value",
    ),
    (
        "FROM scratch\nCOPY --checksum=x a b",
        2,
        "unknown flag: checksum",
    ),
    ("FROM scratch\nADD --from=x a b", 2, "unknown flag: from"),
    (
        "FROM scratch\nCOPY a <<EOF\nx\nEOF",
        2,
        "cannot accept a heredoc as a destination",
    ),
    (
        "FROM scratch\nRUN <<EOF\nnever ends",
        2,
        "unterminated heredoc EOF",
    ),
    ("FROM scratch\nENV", 2, "ENV requires at least one argument"),
    ("FROM scratch\nENV A", 2, "ENV must have two arguments"),
    ("FROM scratch\nENV A=1 B", 2, "can't find = in \"B\""),
    ("FROM scratch\nENV =x", 2, "names can not be blank"),
    (
        "FROM scratch\nLABEL",
        2,
        "LABEL requires at least one argument",
    ),
    ("FROM scratch\nARG", 2, "ARG requires at least one argument"),
    (
        "FROM scratch\nEXPOSE",
        2,
        "EXPOSE requires at least one argument",
    ),
    (
        "FROM scratch\nVOLUME",
        2,
        "VOLUME requires at least one argument",
    ),
    (
        "FROM scratch\nUSER",
        2,
        "USER requires exactly one argument",
    ),
    (
        "FROM scratch\nWORKDIR",
        2,
        "WORKDIR requires exactly one argument",
    ),
    (
        "FROM scratch\nSTOPSIGNAL",
        2,
        "STOPSIGNAL requires exactly one argument",
    ),
    (
        "FROM scratch\nSHELL /bin/sh -c",
        2,
        "SHELL requires the arguments to be in JSON form",
    ),
    (
        "FROM scratch\nSHELL []",
        2,
        "SHELL requires at least one argument",
    ),
    (
        "FROM scratch\nHEALTHCHECK",
        2,
        "HEALTHCHECK requires at least one argument",
    ),
    (
        "FROM scratch\nHEALTHCHECK NONE x",
        2,
        "HEALTHCHECK NONE takes no arguments",
    ),
    (
        "FROM scratch\nHEALTHCHECK RUN x",
        2,
        "unknown type \"RUN\" in HEALTHCHECK",
    ),
    (
        "FROM scratch\nHEALTHCHECK CMD",
        2,
        "missing command after HEALTHCHECK CMD",
    ),
    (
        "FROM scratch\nHEALTHCHECK CMD []",
        2,
        "missing command after HEALTHCHECK CMD",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=1us CMD x",
        2,
        "cannot be less than 1ms",
    ),
    (
        "FROM scratch\nHEALTHCHECK --interval=soon CMD x",
        2,
        "invalid duration",
    ),
    (
        "FROM scratch\nHEALTHCHECK --retries=-1 CMD x",
        2,
        "--retries cannot be negative",
    ),
    (
        "FROM scratch\nHEALTHCHECK --bogus=1 CMD x",
        2,
        "unknown flag: bogus",
    ),
    (
        "FROM scratch\nONBUILD",
        2,
        "ONBUILD requires at least one argument",
    ),
    ("FROM scratch\nONBUILD ONBUILD RUN x", 2, "isn't allowed"),
    (
        "FROM scratch\nONBUILD FROM x",
        2,
        "FROM isn't allowed as an ONBUILD trigger",
    ),
    (
        "FROM scratch\nONBUILD MAINTAINER x",
        2,
        "MAINTAINER isn't allowed as an ONBUILD trigger",
    ),
    ("# escape=x\nFROM scratch", 1, "invalid escape token 'x'"),
    (
        "# escape=`\n# escape=\\\nFROM scratch",
        2,
        "only one escape parser directive",
    ),
    ("FROM scratch\nENV --x=1 A=1", 2, "unknown flag: x"),
    ("FROM scratch\nCMD --help", 2, "unknown flag: help"),
    (
        "FROM scratch\n\nRUN a \\\n b\nBAD x",
        5,
        "unknown instruction: BAD",
    ),
];

#[test]
fn error_table() {
    for (text, line, fragment) in ERR {
        let err = Dockerfile::parse(text, "ctx/Dockerfile")
            .expect_err(text)
            .to_string();
        let prefix = format!("ctx/Dockerfile:{line}: ");
        assert!(
            err.starts_with(&prefix),
            "{text:?}: error {err:?} does not start with {prefix:?}"
        );
        assert!(
            err.contains(fragment),
            "{text:?}: error {err:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn warnings_for_empty_continuation_lines() {
    let df = Dockerfile::parse("FROM scratch\nRUN a \\\n\n b", "Dockerfile").expect("parses");
    assert_eq!(df.warnings.len(), 1);
    assert!(df.warnings[0].starts_with("Dockerfile:2:"));
}

#[test]
fn conformance_dockerfiles_parse() {
    // our own differential case (tests/conformance), every metadata instruction
    let metadata = include_str!("../../tests/conformance/metadata/Dockerfile");
    let df = Dockerfile::parse(metadata, "Dockerfile").expect("parses");
    assert_eq!(df.meta_args.len(), 1);
    assert_eq!(df.stages.len(), 1);
    assert_eq!(df.stages[0].steps.len(), 13);
    let cmd_line = metadata
        .lines()
        .position(|l| l.starts_with("CMD"))
        .expect("a CMD line")
        + 1;
    assert_eq!(df.stages[0].steps[12].line, cmd_line);
}

/// Bytes that are not a Dockerfile smelt will read: the error names the
/// line and shows none of the bytes.
#[test]
fn bytes_table() {
    let huge = {
        let mut v = b"FROM scratch\n".to_vec();
        v.extend(std::iter::repeat_n(b"# comment\n".as_slice(), MAX_DOCKERFILE / 10 + 1).flatten());
        v
    };
    // (bytes, the line and words of the error, or none)
    type Row<'a> = (&'a [u8], Option<(usize, &'a str)>);
    let rows: &[Row] = &[
        (b"FROM scratch\nRUN true\n", None),
        (
            b"FROM scratch\nRUN \xff\xfe secret\n",
            Some((2, "not valid UTF-8")),
        ),
        (
            b"FROM scratch\n\nLABEL a=\xc3\n",
            Some((3, "not valid UTF-8")),
        ),
        (b"\x80", Some((1, "not valid UTF-8"))),
        (&huge, Some((MAX_DOCKERFILE / 10 + 1, "larger than"))),
    ];
    for (bytes, want) in rows {
        let got = Dockerfile::parse_bytes(bytes, "ctx/Dockerfile");
        match want {
            None => assert!(got.is_ok(), "{:?}", got.err()),
            Some((line, fragment)) => {
                let err = got.expect_err("must fail").to_string();
                assert!(
                    err.starts_with(&format!("ctx/Dockerfile:{line}: ")) && err.contains(fragment),
                    "{err:?}"
                );
                assert!(
                    !err.contains('\u{fffd}') && !err.contains("secret"),
                    "{err:?}"
                );
            }
        }
    }
}

/// Deep JSON forms, long continuations and many heredocs: nothing the
/// parser does recurses with the input (serde_json stops at 128 levels, and
/// an array it cannot read is a shell form, as in BuildKit).
#[test]
fn deep_and_long_forms_parse_without_recursion() {
    let deep = format!("{}\"a\"{}", "[".repeat(100_000), "]".repeat(100_000));
    let df = Dockerfile::parse(&format!("FROM scratch\nCMD {deep}\n"), "Dockerfile").unwrap();
    assert!(matches!(
        &df.stages[0].steps[0].value,
        Instruction::Cmd(CommandForm::Shell(s)) if s == &deep
    ));
    let nested = format!("{}\"a\"{}", "[".repeat(50), "]".repeat(50));
    let err = Dockerfile::parse(&format!("FROM scratch\nCMD {nested}\n"), "Dockerfile")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dockerfile:2: ") && err.contains("strings only"),
        "{err}"
    );

    let continued = format!("FROM scratch\nRUN a{}\n", " \\\n b".repeat(100_000));
    let df = Dockerfile::parse(&continued, "Dockerfile").unwrap();
    assert_eq!(df.stages[0].steps[0].end_line, 100_002);

    let markers: String = (0..10_000).map(|i| format!(" <<E{i}")).collect();
    let bodies: String = (0..10_000).map(|i| format!("body\nE{i}\n")).collect();
    let df = Dockerfile::parse(
        &format!("FROM scratch\nRUN cat{markers}\n{bodies}"),
        "Dockerfile",
    )
    .unwrap();
    let Instruction::Run(run) = &df.stages[0].steps[0].value else {
        panic!("not a RUN");
    };
    assert_eq!(run.heredocs.len(), 10_000);
}
