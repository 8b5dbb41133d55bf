//! Which variables an instruction sees: build args and ENV, scoped as docker
//! scopes them. ARGs before the first FROM are visible only in FROM lines
//! unless a stage declares them again; `--build-arg` overrides a declared
//! ARG's default; a stage built on another inherits its ARGs (BuildKit; a
//! bare redeclaration takes the global value); of an ARG and an ENV of the
//! same name, the one set last wins (the ARG never reaches the config); the
//! proxy args are predefined; the platform args are automatic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Args that need no ARG line (docker's predefined args).
pub const PREDEFINED: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The args given on the command line, and which of them were used.
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    given: BTreeMap<String, String>,
    used: BTreeSet<String>,
}

impl BuildArgs {
    pub fn new(given: BTreeMap<String, String>) -> Self {
        Self {
            given,
            used: BTreeSet::new(),
        }
    }

    /// The value given for `name`, marking it used.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let v = self.given.get(name).cloned();
        if v.is_some() {
            self.used.insert(name.to_string());
        }
        v
    }

    /// The value given for `name`, not marking it used (a value given for
    /// an automatic arg replaces it everywhere, declared or not).
    pub fn given(&self, name: &str) -> Option<String> {
        self.given.get(name).cloned()
    }

    /// The predefined (proxy) args given: RUN sees them without an ARG line,
    /// and they stay out of the history, as in docker.
    pub fn predefined(&self) -> Vec<(String, String)> {
        self.given
            .iter()
            .filter(|(k, _)| PREDEFINED.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Counts as used what `other` (a copy that ran a stage) used.
    pub fn merge_used(&mut self, other: &BuildArgs) {
        self.used.extend(other.used.iter().cloned());
    }

    /// Given args no ARG declared (docker warns about them).
    pub fn unused(&self) -> Vec<String> {
        self.given
            .keys()
            .filter(|k| !self.used.contains(*k) && !PREDEFINED.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

/// Args BuildKit never puts in the steps' environment.
const NON_ENV: [&str; 2] = ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

/// The variables of one stage: its declared args, and what its steps'
/// environment holds besides the config's Env.
///
/// BuildKit keeps one environment per stage (the LLB state's): the base
/// image's Env, then every ENV and every ARG that has a value (a
/// `--build-arg`, its default, or the global value), each replacing what
/// the name held. RUN runs with it and every later word expands with it;
/// the image config gets only the ENVs. So an ARG declared after an ENV
/// (or an inherited Env) of the same name wins until an ENV sets the name
/// again. A stage built on another starts from that stage's environment
/// with the config's Env applied again on top: an ARG the parent declared
/// is still set, unless the config has the name.
#[derive(Debug, Clone, Default)]
pub struct StageScope {
    /// Declared args in order; `None` is declared without a value.
    pub args: Vec<(String, Option<String>)>,
    /// Each name an ENV or a valued ARG set in this stage (or the stage it
    /// builds on): when (`seq`), and the value when an ARG set it last
    /// (`None`: an ENV did, and the config's Env holds the value).
    set: HashMap<String, (u64, Option<String>)>,
    /// The last `seq` handed out.
    seq: u64,
    /// The `seq` of the config's Env entries no step of the stage set (the
    /// base image's, or the parent stage's applied again).
    base: u64,
}

impl StageScope {
    /// Declares `name` (again) with the value it gets, if any: a value
    /// goes into the environment, replacing an ENV's.
    pub fn declare(&mut self, name: &str, value: Option<String>) {
        match self.args.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => {
                if value.is_some() {
                    slot.1.clone_from(&value);
                }
            }
            None => self.args.push((name.to_string(), value.clone())),
        }
        if let Some(v) = value
            && !NON_ENV.contains(&name)
        {
            self.seq += 1;
            self.set.insert(name.to_string(), (self.seq, Some(v)));
        }
    }

    /// An ENV set `name` (in the config's Env, which holds the value).
    pub fn env_set(&mut self, name: &str) {
        self.seq += 1;
        self.set.insert(name.to_string(), (self.seq, None));
    }

    /// The scope a stage built on this one starts with, `env` being its
    /// config's Env: BuildKit applies the Env again on top of the parent's
    /// environment, so an ARG of a name the Env has no longer wins.
    pub fn for_child(mut self, env: &[String]) -> Self {
        for kv in env {
            self.set.remove(env_key(kv));
        }
        self.seq += 1;
        self.base = self.seq;
        self
    }

    /// The value `name` has in the environment of `env` (a config's Env).
    fn lookup<'a>(&'a self, name: &str, env: &'a [String]) -> Option<&'a str> {
        if let Some((_, Some(v))) = self.set.get(name) {
            return Some(v);
        }
        env.iter().rev().find_map(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if kv == name => Some(""),
            _ => None,
        })
    }

    /// The environment RUN gets, `env` being the config's Env: each name
    /// once, in the order BuildKit's list has them (by when each was last
    /// set; the config's own entries first, in their order).
    pub fn environment(&self, env: &[String]) -> Vec<(String, String)> {
        let mut out: Vec<(u64, String, String)> = Vec::with_capacity(env.len());
        let mut seen = std::collections::HashSet::new();
        for kv in env.iter().rev() {
            let k = env_key(kv);
            if !seen.insert(k) {
                continue;
            }
            let (seq, value) = match self.set.get(k) {
                Some((seq, Some(v))) => (*seq, v.as_str()),
                Some((seq, None)) => (*seq, env_value(kv)),
                None => (self.base, env_value(kv)),
            };
            out.push((seq, k.to_string(), value.to_string()));
        }
        out.reverse();
        for (k, (seq, v)) in &self.set {
            if let Some(v) = v
                && !seen.contains(k.as_str())
            {
                out.push((*seq, k.clone(), v.clone()));
            }
        }
        // stable: the config's entries nothing set keep their order
        out.sort_by_key(|(seq, _, _)| *seq);
        out.into_iter().map(|(_, k, v)| (k, v)).collect()
    }

    /// Variables for expansion without copying them (see
    /// [`Self::environment`]). Building a map per step cost O(variables)
    /// per step: 20,000 `ENV` lines took minutes.
    pub fn view<'a>(&'a self, env: &'a [String]) -> ScopeVars<'a> {
        ScopeVars { scope: self, env }
    }

    /// The environment as a map (`env` as the config's Env pairs): what a
    /// step's cache key holds.
    pub fn vars(&self, env: &[(String, String)]) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = env.iter().cloned().collect();
        for (k, (_, v)) in &self.set {
            if let Some(v) = v {
                vars.insert(k.clone(), v.clone());
            }
        }
        vars
    }
}

/// The name of a `KEY=value` entry.
fn env_key(kv: &str) -> &str {
    kv.split_once('=').map_or(kv, |(k, _)| k)
}

/// The value of a `KEY=value` entry (empty without `=`).
fn env_value(kv: &str) -> &str {
    kv.split_once('=').map_or("", |(_, v)| v)
}

/// [`StageScope::view`]: what an instruction's words expand with.
#[derive(Debug, Clone, Copy)]
pub struct ScopeVars<'a> {
    scope: &'a StageScope,
    env: &'a [String],
}

impl crate::dockerfile::Vars for ScopeVars<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.scope.lookup(name, self.env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Vars;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn view_sees_what_vars_and_the_environment_hold() {
        let mut scope = StageScope::default();
        scope.declare("A", Some("arg".to_string()));
        scope.declare("B", Some("arg-b".to_string()));
        scope.declare("C", None);
        let env = strings(&["B=env-b", "PATH=/x", "D", "PATH=/y"]);
        scope.env_set("B");
        let pairs: Vec<(String, String)> = env
            .iter()
            .map(|kv| (env_key(kv).to_string(), env_value(kv).to_string()))
            .collect();
        let map = scope.vars(&pairs);
        let view = scope.view(&env);
        let listed = scope.environment(&env);
        for name in ["A", "B", "C", "D", "PATH", "E"] {
            assert_eq!(view.lookup(name), map.lookup(name), "{name}");
            assert_eq!(view.lookup(name), listed.lookup(name), "{name}");
        }
    }

    /// One step of a stage: an ENV (the config's Env gets it too), an ARG
    /// with the value it ends up with (or none), or a FROM of the stage so
    /// far (BuildKit applies the config's Env again).
    #[derive(Clone, Copy)]
    enum Step {
        Env(&'static str, &'static str),
        Arg(&'static str, Option<&'static str>),
        Child,
    }
    use Step::*;

    #[test]
    fn the_one_set_last_wins() {
        // base Env, steps, the environment after them (as RUN gets it)
        let rows: &[(&[&str], &[Step], &str)] = &[
            // an ARG after an inherited ENV
            (&["H=up"], &[Arg("H", Some("arg"))], "H=arg"),
            // ARG then ENV; ENV then ARG
            (&[], &[Arg("F", Some("a")), Env("F", "e")], "F=e"),
            (&[], &[Env("F", "e"), Arg("F", Some("a"))], "F=a"),
            // a bare ARG with no value changes nothing
            (&["H=up"], &[Arg("H", None)], "H=up"),
            (
                &[],
                &[
                    Env("F", "e"),
                    Arg("F", Some("a")),
                    Env("F", "e2"),
                    Arg("F", None),
                ],
                "F=e2",
            ),
            // the SBOM args never go in the environment
            (&[], &[Arg("BUILDKIT_SBOM_SCAN_STAGE", Some("true"))], ""),
            // order: by when each name was last set, the base's first
            (
                &["P=/bin", "Q=q"],
                &[Arg("A", Some("1")), Env("P", "/x"), Env("B", "2")],
                "Q=q,A=1,P=/x,B=2",
            ),
            // a child stage keeps the parent's ARGs, but the config's Env
            // applied again wins over an ARG of the same name, and its
            // entries come after the parent's ARGs
            (
                &["H=up"],
                &[Arg("A", Some("1")), Arg("H", Some("arg")), Child],
                "A=1,H=up",
            ),
            (
                &["H=up"],
                &[Arg("H", Some("arg")), Child, Arg("H", Some("again"))],
                "H=again",
            ),
            (
                &[],
                &[Env("E", "e"), Arg("A", Some("1")), Child, Env("N", "n")],
                "A=1,E=e,N=n",
            ),
        ];
        for (base, steps, want) in rows {
            let mut env = strings(base);
            let mut scope = StageScope::default();
            for step in *steps {
                match *step {
                    Env(k, v) => {
                        env.retain(|kv| env_key(kv) != k);
                        env.push(format!("{k}={v}"));
                        scope.env_set(k);
                    }
                    Arg(k, v) => scope.declare(k, v.map(str::to_string)),
                    Child => scope = scope.for_child(&env),
                }
            }
            let got = scope.environment(&env);
            let shown: Vec<String> = got.iter().map(|(k, v)| format!("{k}={v}")).collect();
            assert_eq!(shown.join(","), *want, "{base:?}");
            // what words expand with and what the cache key holds (an
            // ARG's value that reaches RUN is part of RUN's key) agree
            let pairs: Vec<(String, String)> = env
                .iter()
                .map(|kv| (env_key(kv).to_string(), env_value(kv).to_string()))
                .collect();
            let keyed = scope.vars(&pairs);
            assert_eq!(keyed.len(), got.len(), "{base:?}");
            for (k, v) in &got {
                assert_eq!(scope.view(&env).lookup(k), Some(v.as_str()), "{k}");
                assert_eq!(keyed.get(k), Some(v), "{k}");
            }
        }
    }
}
