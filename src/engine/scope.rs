//! Which variables an instruction sees: build args and ENV, scoped as docker
//! scopes them. ARGs before the first FROM are visible only in FROM lines
//! unless a stage declares them again; `--build-arg` overrides a declared
//! ARG's default; a stage built on another inherits its ARGs (BuildKit; a
//! bare redeclaration takes the global value first); ENV wins over an ARG
//! of the same name; the proxy args are predefined; the platform args are
//! automatic.

use std::collections::{BTreeMap, BTreeSet};

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

/// The variables of one stage: declared args (in order) with their values.
#[derive(Debug, Clone, Default)]
pub struct StageScope {
    /// Declared args; `None` is declared without a value.
    pub args: Vec<(String, Option<String>)>,
}

impl StageScope {
    /// Declares `name` (again); a later declaration replaces the value.
    pub fn declare(&mut self, name: &str, value: Option<String>) {
        match self.args.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.args.push((name.to_string(), value)),
        }
    }

    /// The value `name` is declared with.
    pub fn value(&self, name: &str) -> Option<String> {
        self.args
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.clone())
    }

    /// Variables for expansion without copying them: ENV (`KEY=value`
    /// entries, the last of a key winning), else a declared arg's value.
    /// Building a map per step cost O(variables) per step: 20,000 `ENV`
    /// lines took minutes.
    pub fn view<'a>(&'a self, env: &'a [String]) -> ScopeVars<'a> {
        ScopeVars { scope: self, env }
    }

    /// Variables for expansion: args with values, then ENV on top.
    pub fn vars(&self, env: &[(String, String)]) -> BTreeMap<String, String> {
        let mut vars: BTreeMap<String, String> = self
            .args
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
            .collect();
        for (k, v) in env {
            vars.insert(k.clone(), v.clone());
        }
        vars
    }
}

/// [`StageScope::view`]: what an instruction's words expand with.
#[derive(Debug, Clone, Copy)]
pub struct ScopeVars<'a> {
    scope: &'a StageScope,
    env: &'a [String],
}

impl crate::dockerfile::Vars for ScopeVars<'_> {
    fn lookup(&self, name: &str) -> Option<&str> {
        let from_env = self
            .env
            .iter()
            .rev()
            .find_map(|kv| match kv.split_once('=') {
                Some((k, v)) if k == name => Some(v),
                None if kv == name => Some(""),
                _ => None,
            });
        from_env.or_else(|| {
            self.scope
                .args
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Vars;

    #[test]
    fn view_sees_what_vars_holds() {
        let mut scope = StageScope::default();
        scope.declare("A", Some("arg".to_string()));
        scope.declare("B", Some("arg-b".to_string()));
        scope.declare("C", None);
        let env: Vec<String> = ["B=env-b", "PATH=/x", "D", "PATH=/y"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let pairs: Vec<(String, String)> = env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect();
        let map = scope.vars(&pairs);
        let view = scope.view(&env);
        for name in ["A", "B", "C", "D", "PATH", "E"] {
            assert_eq!(view.lookup(name), map.lookup(name), "{name}");
        }
    }
}
