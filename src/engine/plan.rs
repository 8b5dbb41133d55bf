//! The stage plan: which stages the target needs, what each one starts
//! from or copies from, an order that puts every stage after what it
//! reads, and how many later stages read each one (so a stage's root can
//! be moved to its only reader, or removed once nobody needs it).
//!
//! References resolve as BuildKit resolves them: a name may point at any
//! stage of the file, earlier or later; a number only at an earlier one;
//! anything else is an image. A cycle, a stage that refers to itself, a
//! number out of range and an unknown `--target` are errors that name the
//! Dockerfile line, raised before anything is built.
//!
//! ONBUILD triggers a stage inherits run first in it, and a trigger's
//! `COPY --from` is a reference of that stage like its own (dockerfile
//! frontend 1.11/1.12): a stage built on a stage inherits that stage's
//! ONBUILD lines, known from the file; one built on an image inherits the
//! image's, known once it is resolved ([`Plan::add_image_triggers`]), and
//! a stage they name joins the plan then.

use super::EngineError;
use crate::dockerfile::{Budget, Copy, Dockerfile, Instruction, Located, Source};
use std::collections::{BTreeMap, BTreeSet};

/// What a stage reads from another place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ref {
    Stage(usize),
    /// An image from a registry (its reference after global-arg expansion).
    Image(String),
}

/// One `COPY --from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRef {
    pub from: Ref,
    pub line: usize,
    /// Its source paths as written (with `--parents`, the directory its
    /// pattern needs: `ParentsSource::kept_path`); `None` when one holds a variable (its
    /// value is known only when the step runs).
    pub sources: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct StageRefs {
    /// `FROM`: an earlier stage, an image, or `None` for scratch.
    pub base: Option<Ref>,
    /// Its own `COPY --from`s and its triggers'.
    pub copies: Vec<CopyRef>,
    /// The ONBUILD triggers it inherits, to run before its own steps, each
    /// at the stage's FROM line (as BuildKit reports them).
    pub triggers: Vec<Located<Instruction>>,
}

/// What later stages read of a stage's (or a `COPY --from` image's) files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keep {
    Nothing,
    /// All of it: it is a later stage's base, or a source
    /// that reads it is known only when its step runs.
    Whole,
    /// The paths these `COPY --from` sources match, each with its line.
    Paths(Vec<(String, usize)>),
}

impl StageRefs {
    /// The stages this one reads.
    pub fn stages(&self) -> BTreeSet<usize> {
        self.base
            .iter()
            .chain(self.copies.iter().map(|c| &c.from))
            .filter_map(|r| match r {
                Ref::Stage(i) => Some(*i),
                Ref::Image(_) => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub target: usize,
    /// Further stages to build (kaniko's `--target a,b`: the first is the
    /// image, the others are built too), each before the target.
    pub also: Vec<usize>,
    /// The stages to build, each after the stages it reads.
    pub order: Vec<usize>,
    pub refs: BTreeMap<usize, StageRefs>,
    /// For each stage built, how many planned stages read it.
    pub readers: BTreeMap<usize, usize>,
    /// Every stage's references, needed or not (a trigger found later may
    /// bring one in).
    every: BTreeMap<usize, StageRefs>,
}

impl Plan {
    pub fn new(
        df: &Dockerfile,
        target: Option<&str>,
        global: &BTreeMap<String, String>,
    ) -> Result<Plan, EngineError> {
        let file = &df.file;
        let target = match target {
            None => df.stages.len() - 1,
            Some(t) => df.stage_index(t).ok_or_else(|| {
                EngineError::Invalid(format!("failed to reach build target {t} in {file}"))
            })?,
        };
        let mut every = BTreeMap::new();
        // the names kept here are expanded: bounded together, as a stage's
        let budget = Budget::default();
        for i in 0..df.stages.len() {
            every.insert(i, stage_refs(df, i, global, &budget)?);
        }
        // a stage built on a stage runs that stage's ONBUILD lines first
        for i in 0..df.stages.len() {
            let Some(Ref::Stage(p)) = every[&i].base else {
                continue;
            };
            let expressions: Vec<String> = df.stages[p]
                .steps
                .iter()
                .filter_map(|s| match &s.value {
                    Instruction::Onbuild { expression, .. } => Some(expression.clone()),
                    _ => None,
                })
                .collect();
            let what = format!("stage {}", label(df, p));
            set_triggers(df, &mut every, i, &what, &expressions, global, &budget)?;
        }
        let mut plan = Plan {
            target,
            also: Vec::new(),
            order: Vec::new(),
            refs: BTreeMap::new(),
            readers: BTreeMap::new(),
            every,
        };
        plan.settle(df)?;
        Ok(plan)
    }

    /// Every stage's base image (global args expanded), needed or not:
    /// what kaniko's warmer fetches for `--dockerfile`.
    pub fn base_images(&self) -> BTreeSet<String> {
        self.every
            .values()
            .filter_map(|r| match &r.base {
                Some(Ref::Image(image)) => Some(image.clone()),
                _ => None,
            })
            .collect()
    }

    /// Builds the stages named in `names` too (kaniko's further
    /// `--target`s); an unknown one is an error as the target's is.
    pub fn also_build(&mut self, df: &Dockerfile, names: &[String]) -> Result<(), EngineError> {
        for t in names {
            let i = df.stage_index(t).ok_or_else(|| {
                EngineError::Invalid(format!("failed to reach build target {t} in {}", df.file))
            })?;
            if i != self.target && !self.also.contains(&i) {
                self.also.push(i);
            }
        }
        self.settle(df)
    }

    /// Gives stage `i`, built on a registry image, the image's ONBUILD
    /// `triggers`; a stage their `COPY --from` names joins the plan (its
    /// own base is then still to resolve).
    pub fn add_image_triggers(
        &mut self,
        df: &Dockerfile,
        i: usize,
        image: &str,
        triggers: &[String],
        global: &BTreeMap<String, String>,
    ) -> Result<(), EngineError> {
        let what = format!("image {image}");
        let budget = Budget::default();
        set_triggers(df, &mut self.every, i, &what, triggers, global, &budget)?;
        self.settle(df)
    }

    /// The order, the needed stages' references and their readers, from
    /// every stage's references: depth-first from the target, failing on
    /// a cycle.
    fn settle(&mut self, df: &Dockerfile) -> Result<(), EngineError> {
        let mut order = Vec::new();
        let mut state: BTreeMap<usize, bool> = BTreeMap::new(); // false: in progress
        for &i in &self.also {
            visit(df, &self.every, i, &mut state, &mut order)?;
        }
        visit(df, &self.every, self.target, &mut state, &mut order)?;
        let refs: BTreeMap<usize, StageRefs> = self
            .every
            .iter()
            .filter(|(i, _)| state.contains_key(i))
            .map(|(i, r)| (*i, r.clone()))
            .collect();
        let mut readers: BTreeMap<usize, usize> = order.iter().map(|&i| (i, 0)).collect();
        for r in refs.values() {
            for s in r.stages() {
                *readers.entry(s).or_default() += 1;
            }
        }
        self.order = order;
        self.refs = refs;
        self.readers = readers;
        Ok(())
    }

    /// Whether stage `i` is built.
    pub fn needs(&self, i: usize) -> bool {
        self.refs.contains_key(&i)
    }

    /// Whether stage `i`'s files are read by a later stage.
    pub fn is_read(&self, i: usize) -> bool {
        self.readers.get(&i).is_some_and(|&n| n > 0)
    }

    /// What the planned stages read of `r` once it is built (a stage) or
    /// unpacked (a `COPY --from` image).
    pub fn keep(&self, r: &Ref) -> Keep {
        // an image that is also a FROM base is unpacked apart for that
        let is_base =
            matches!(r, Ref::Stage(_)) && self.refs.values().any(|s| s.base.as_ref() == Some(r));
        if is_base {
            return Keep::Whole;
        }
        let mut paths = Vec::new();
        for c in self.refs.values().flat_map(|s| &s.copies) {
            if c.from != *r {
                continue;
            }
            let Some(sources) = &c.sources else {
                return Keep::Whole;
            };
            paths.extend(sources.iter().map(|s| (s.clone(), c.line)));
        }
        if paths.is_empty() {
            Keep::Nothing
        } else {
            Keep::Paths(paths)
        }
    }
}

fn visit(
    df: &Dockerfile,
    refs: &BTreeMap<usize, StageRefs>,
    i: usize,
    state: &mut BTreeMap<usize, bool>,
    order: &mut Vec<usize>,
) -> Result<(), EngineError> {
    match state.get(&i) {
        Some(true) => return Ok(()),
        Some(false) => {
            let stage = &df.stages[i];
            return Err(EngineError::Invalid(format!(
                "{}:{}: circular dependency detected on stage {}",
                df.file,
                stage.from.line,
                stage.name.clone().unwrap_or_else(|| i.to_string())
            )));
        }
        None => {}
    }
    state.insert(i, false);
    for dep in refs.get(&i).map(StageRefs::stages).unwrap_or_default() {
        visit(df, refs, dep, state, order)?;
    }
    state.insert(i, true);
    order.push(i);
    Ok(())
}

/// What stage `i` starts from and copies from.
fn stage_refs(
    df: &Dockerfile,
    i: usize,
    global: &BTreeMap<String, String>,
    budget: &Budget,
) -> Result<StageRefs, EngineError> {
    let stage = &df.stages[i];
    let lexer = df.lexer();
    let err = |line: usize, message: String| {
        EngineError::Invalid(format!("{}:{line}: {message}", df.file))
    };
    let image = lexer
        .process_word_in(&stage.from.value.image, global, budget)
        .map_err(|e| err(stage.from.line, e.to_string()))?;
    let base = if image.eq_ignore_ascii_case("scratch") {
        None
    } else if let Some(s) = df.stage_named(&image) {
        if s == i {
            return Err(err(
                stage.from.line,
                format!("circular dependency detected on stage {image}"),
            ));
        }
        Some(Ref::Stage(s))
    } else {
        Some(Ref::Image(image))
    };
    let mut copies = Vec::new();
    for step in &stage.steps {
        if let Instruction::Copy(c) = &step.value
            && let Some(r) = copy_ref(df, i, step.line, c, false, global, budget)?
        {
            copies.push(r);
        }
        // a RUN --mount from= reads that stage or image as COPY --from does
        if let Instruction::Run(run) = &step.value {
            for m in &run.mounts {
                let Some(from) = super::mounts::from_as_written(m) else {
                    continue;
                };
                // BuildKit mounts only a stage dispatched before this one
                let named = df.stage_named(&from).or_else(|| from.parse::<usize>().ok());
                if named.is_some_and(|s| s >= i) {
                    return Err(err(
                        step.line,
                        format!(
                            "cannot mount from stage {from:?} to {:?}, stage needs to be defined before current command",
                            super::mounts::target_as_written(m).unwrap_or_default()
                        ),
                    ));
                }
                let c = Copy {
                    from: Some(from),
                    ..Copy::default()
                };
                if let Some(mut r) = copy_ref(df, i, step.line, &c, false, global, budget)? {
                    // the whole tree: its source path may hold a variable
                    r.sources = None;
                    copies.push(r);
                }
            }
        }
    }
    Ok(StageRefs {
        base,
        copies,
        triggers: Vec::new(),
    })
}

/// The `COPY --from` of `c`, a step of stage `i` at `line` (a trigger's:
/// `trigger`), if it has one. A trigger's number may name any other stage,
/// as BuildKit looks triggers up once every stage is known.
fn copy_ref(
    df: &Dockerfile,
    i: usize,
    line: usize,
    c: &Copy,
    trigger: bool,
    global: &BTreeMap<String, String>,
    budget: &Budget,
) -> Result<Option<CopyRef>, EngineError> {
    let err = |message: String| EngineError::Invalid(format!("{}:{line}: {message}", df.file));
    let Some(from) = &c.from else {
        return Ok(None);
    };
    // stage args may take part too; global ones are what a plan can know
    let from = match df.lexer().process_word_in(from, global, budget) {
        Ok(f) => f,
        Err(e) if e.is_limit() => return Err(err(e.to_string())),
        // a stage arg may be what is missing: the step itself will say
        Err(_) => from.clone(),
    };
    let r = if let Some(s) = df.stage_named(&from) {
        if s == i {
            return Err(err(format!(
                "COPY --from={from}: a stage cannot copy from itself"
            )));
        }
        Ref::Stage(s)
    } else if let Ok(n) = from.parse::<usize>() {
        if n >= df.stages.len() && trigger {
            return Err(err(format!(
                "COPY --from={from} (an ONBUILD trigger): invalid stage index {n}"
            )));
        }
        if n == i || n >= df.stages.len() || (n > i && !trigger) {
            return Err(err(format!(
                "COPY --from={from}: refers to the current or a later stage (use its name)"
            )));
        }
        Ref::Stage(n)
    } else {
        Ref::Image(from)
    };
    let mut sources = Some(Vec::new());
    for source in &c.sources {
        if let Source::Path(p) = source {
            // --parents keeps what is below the pattern's literal part
            let kept = if c.parents {
                super::context::ParentsSource::parse(p)
                    .ok()
                    .map(|s| s.kept_path())
            } else {
                Some(p.clone())
            };
            match (&mut sources, kept) {
                (Some(list), Some(kept)) if !p.contains('$') => list.push(kept),
                _ => sources = None,
            }
        }
    }
    Ok(Some(CopyRef {
        from: r,
        line,
        sources,
    }))
}

/// Parses the ONBUILD `expressions` stage `i` inherits from `what` into
/// its triggers, and adds their `COPY --from`s to its references.
fn set_triggers(
    df: &Dockerfile,
    every: &mut BTreeMap<usize, StageRefs>,
    i: usize,
    what: &str,
    expressions: &[String],
    global: &BTreeMap<String, String>,
    budget: &Budget,
) -> Result<(), EngineError> {
    let line = df.stages[i].from.line;
    let triggers = parse_triggers(what, expressions, line)?;
    let mut copies = Vec::new();
    for t in &triggers {
        if let Instruction::Copy(c) = &t.value
            && let Some(r) = copy_ref(df, i, line, c, true, global, budget)?
        {
            copies.push(r);
        }
    }
    // once per stage: its base is a stage or an image, never both
    let Some(refs) = every.get_mut(&i) else {
        return Ok(());
    };
    copies.append(&mut refs.copies);
    refs.copies = copies;
    refs.triggers = triggers;
    Ok(())
}

/// ONBUILD trigger expressions (as an image config records them) parsed
/// as the steps they stand for, each one on its own as BuildKit does, all
/// placed at `line`. `what` names where they come from in errors.
pub fn parse_triggers(
    what: &str,
    expressions: &[String],
    line: usize,
) -> Result<Vec<Located<Instruction>>, EngineError> {
    let mut steps = Vec::with_capacity(expressions.len());
    for expression in expressions {
        let text = format!("FROM scratch\n{expression}\n");
        let df = Dockerfile::parse(&text, &format!("ONBUILD triggers of {what}"))?;
        let mut parsed: Vec<_> = df.stages.into_iter().flat_map(|s| s.steps).collect();
        if parsed.len() != 1 {
            return Err(EngineError::Invalid(format!(
                "ONBUILD trigger of {what} should be a single expression: {expression:?}"
            )));
        }
        for step in &mut parsed {
            step.line = line;
            step.end_line = line;
        }
        steps.append(&mut parsed);
    }
    Ok(steps)
}

/// How a stage is named: its `AS` name, else its index.
fn label(df: &Dockerfile, i: usize) -> String {
    df.stages[i].name.clone().unwrap_or_else(|| i.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str, target: Option<&str>) -> Result<Plan, String> {
        let df = Dockerfile::parse(text, "Dockerfile").unwrap();
        Plan::new(&df, target, &BTreeMap::new()).map_err(|e| e.to_string())
    }

    #[test]
    fn order_puts_readers_after_what_they_read_and_counts_readers() {
        let p = plan(
            "FROM scratch AS final\nCOPY --from=gen /a /a\nCOPY --from=img:1 /b /b\n\
             FROM scratch AS gen\nFROM scratch AS unused\nFROM gen AS last\nCOPY --from=final /a /c\n",
            None,
        )
        .unwrap();
        assert_eq!(p.order, [1, 0, 3]);
        assert!(!p.needs(2));
        assert_eq!(p.readers[&1], 2);
        assert!(!p.is_read(3));
        assert_eq!(p.refs[&0].copies[1].from, Ref::Image("img:1".to_string()));
    }

    #[test]
    fn keep_is_what_the_readers_read() {
        let p = plan(
            "FROM scratch AS a\nFROM scratch AS b\nFROM scratch AS c\nFROM a AS d\n\
             COPY --from=b /x /y/ /z/\nCOPY --from=c /$V /v\nCOPY --from=b /w /w\n\
             COPY --from=img /i /i\n",
            None,
        )
        .unwrap();
        let paths = |list: &[(&str, usize)]| {
            Keep::Paths(list.iter().map(|(s, l)| (s.to_string(), *l)).collect())
        };
        assert_eq!(p.keep(&Ref::Stage(0)), Keep::Whole, "a base");
        assert_eq!(
            p.keep(&Ref::Stage(1)),
            paths(&[("/x", 5), ("/y/", 5), ("/w", 7)])
        );
        assert_eq!(
            p.keep(&Ref::Stage(2)),
            Keep::Whole,
            "a source with a variable"
        );
        assert_eq!(p.keep(&Ref::Stage(3)), Keep::Nothing, "the target");
        assert_eq!(p.keep(&Ref::Image("img".to_string())), paths(&[("/i", 8)]));
        // an image that is also a base: its FROM unpacks it apart
        let p = plan("FROM img AS a\nFROM a\nCOPY --from=img /i /i\n", None).unwrap();
        assert_eq!(p.keep(&Ref::Image("img".to_string())), paths(&[("/i", 3)]));
        let p = plan("FROM scratch AS a\nFROM scratch\n", None).unwrap();
        assert_eq!(p.keep(&Ref::Stage(0)), Keep::Nothing);
    }

    #[test]
    fn triggers_a_stage_inherits_are_its_references_too() {
        // stage 3 runs `rec`'s ONBUILD lines: their COPY --from names
        // `made` (by name) and stage 2 (a number, later than `rec`)
        let text = "FROM img AS rec\nONBUILD COPY --from=made /m /m\nONBUILD COPY --from=2 /o /o\n\
                    ONBUILD RUN true\nFROM img AS made\nFROM img AS other\nFROM doesnt:exist\n\
                    FROM rec\n";
        let df = Dockerfile::parse(text, "Dockerfile").unwrap();
        let p = Plan::new(&df, None, &BTreeMap::new()).unwrap();
        assert!(!p.needs(3), "an unreachable stage");
        assert_eq!(p.refs[&4].stages(), BTreeSet::from([0, 1, 2]));
        let keywords: Vec<_> = p.refs[&4]
            .triggers
            .iter()
            .map(|t| t.value.keyword())
            .collect();
        assert_eq!(keywords, ["COPY", "COPY", "RUN"]);
        assert!(
            p.refs[&4].triggers.iter().all(|t| t.line == 8),
            "at the FROM line"
        );
        assert!(p.refs[&0].triggers.is_empty(), "a stage never runs its own");
        assert_eq!(
            p.keep(&Ref::Stage(1)),
            Keep::Paths(vec![("/m".to_string(), 8)])
        );
        assert_eq!(p.order.last(), Some(&4));

        // an image's triggers, known once it is resolved, bring in `made`
        let text = "FROM img AS made\nFROM doesnt:exist\nFROM base:1\n";
        let df = Dockerfile::parse(text, "Dockerfile").unwrap();
        let mut p = Plan::new(&df, None, &BTreeMap::new()).unwrap();
        assert_eq!(p.order, [2]);
        p.add_image_triggers(
            &df,
            2,
            "base:1",
            &["COPY --from=made /x /y".to_string()],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(p.order, [0, 2]);
        assert!(!p.needs(1));
        assert_eq!(p.readers[&0], 1);
        // a trigger naming the stage that runs it is a cycle
        let e = p
            .add_image_triggers(
                &df,
                0,
                "img",
                &["COPY --from=2 / /".to_string()],
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert!(e.to_string().contains("circular dependency"), "{e}");
        let e = parse_triggers("image x", &["RUN a\nRUN b".to_string()], 1).unwrap_err();
        assert!(e.to_string().contains("single expression"), "{e}");
    }

    #[test]
    fn a_mount_from_a_later_stage_fails_as_buildkit_says() {
        let e = plan(
            "FROM scratch AS a\nRUN --mount=from=b,target=/x true\nFROM scratch AS b\n",
            None,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "Dockerfile:2: cannot mount from stage \"b\" to \"/x\", stage needs to be defined before current command"
        );
        let p = plan(
            "FROM scratch AS a\nFROM scratch\nRUN --mount=from=a,target=/x --mount=from=img,dst=/y true\n",
            None,
        )
        .unwrap();
        assert_eq!(p.refs[&1].stages(), BTreeSet::from([0]));
        assert_eq!(p.refs[&1].copies[1].from, Ref::Image("img".to_string()));
    }

    #[test]
    fn bad_references_fail_naming_the_line() {
        let e = plan("FROM scratch AS a\nCOPY --from=b / /\nFROM a AS b\n", None).unwrap_err();
        assert_eq!(e, "Dockerfile:3: circular dependency detected on stage b");
        let e = plan("FROM scratch AS a\nCOPY --from=1 / /\nFROM scratch\n", None).unwrap_err();
        assert!(
            e.starts_with("Dockerfile:2: COPY --from=1: refers to the current"),
            "{e}"
        );
        let e = plan("FROM scratch AS a\nCOPY --from=A / /\n", None).unwrap_err();
        assert!(e.contains("cannot copy from itself"), "{e}");
        let e = plan("FROM scratch AS a\n", Some("nope")).unwrap_err();
        assert_eq!(e, "failed to reach build target nope in Dockerfile");
    }
}
