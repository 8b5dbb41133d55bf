//! `.dockerignore` files and the glob patterns docker uses.
//!
//! Docker's rules (moby's `ignorefile` and `patternmatcher`): a line starting
//! with `#` is a comment, patterns are trimmed and cleaned (`./` and a leading
//! `/` removed), `!` makes an exception, the last matching pattern wins, `**`
//! matches any number of directories (`**` then only literal characters:
//! any path ending in them), and a pattern that matches a parent
//! directory matches everything below it (decided top down, as BuildKit's
//! context walk does). This module only matches strings;
//! walking the context is the engine's job.

use crate::lexpath;

/// An error in a `.dockerignore` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    #[error("line {line}: illegal exclusion pattern: \"!\"")]
    EmptyExclusion { line: usize },
    #[error("line {line}: syntax error in pattern {pattern:?}")]
    BadPattern { line: usize, pattern: String },
    /// A COPY/ADD `--exclude` pattern (BuildKit's "invalid excludepatterns").
    #[error("--exclude={pattern:?}: invalid exclude pattern")]
    BadExclude { pattern: String },
}

/// How a glob treats `/` and `**`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// Shell pattern in `${V#pattern}`: `*` matches anything.
    Shell,
    /// Go's `filepath.Match` (COPY sources): `*` and `?` stop at `/`.
    GoPath,
    /// `.dockerignore`: like `GoPath`, plus `**` for any depth.
    DockerIgnore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `**` followed by more pattern: any run of whole directories, or none.
    AnyDirs,
    /// `**` at the end: anything.
    AnyTail,
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    toks: Vec<Tok>,
    flavor: Flavor,
}

impl Glob {
    /// Compiles `pattern`; `None` when its syntax is bad (an unclosed class).
    pub(crate) fn new(pattern: &str, flavor: Flavor) -> Option<Glob> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            i += 1;
            match c {
                '*' if flavor == Flavor::DockerIgnore && chars.get(i) == Some(&'*') => {
                    i += 1;
                    if chars.get(i) == Some(&'/') {
                        i += 1;
                    }
                    toks.push(if i >= chars.len() {
                        Tok::AnyTail
                    } else {
                        Tok::AnyDirs
                    });
                }
                '*' => {
                    if toks.last() != Some(&Tok::Star) {
                        toks.push(Tok::Star);
                    }
                }
                '?' => toks.push(Tok::One),
                '\\' => match chars.get(i) {
                    Some(&n) => {
                        i += 1;
                        toks.push(Tok::Lit(n));
                    }
                    None => {
                        if flavor == Flavor::GoPath {
                            return None;
                        }
                        toks.push(Tok::Lit('\\'));
                    }
                },
                '[' => {
                    let (tok, next) = parse_class(&chars, i)?;
                    toks.push(tok);
                    i = next;
                }
                c => toks.push(Tok::Lit(c)),
            }
        }
        Some(Glob { toks, flavor })
    }

    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        self.prefix_matches(&text)[text.len()]
    }

    /// The same answer by memoized backtracking, which recurses once per
    /// pattern token: only for checking [`Self::prefix_matches`] against
    /// (the fuzz target does), on short patterns.
    pub(crate) fn matches_backtracking(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let mut failed = std::collections::HashSet::new();
        self.match_at(0, &text, 0, &mut failed)
    }

    /// The same pattern read backwards: it matches the reversed texts.
    pub(crate) fn reversed(&self) -> Glob {
        let mut toks = self.toks.clone();
        toks.reverse();
        Glob {
            toks,
            flavor: self.flavor,
        }
    }

    /// Which prefixes of `text` the whole pattern matches: `out[n]` for
    /// `text[..n]`. One pass over `text` with the set of pattern positions
    /// reached (a Thompson NFA), so `O(text × pattern)` however many `*`
    /// there are; it stops once no position is left.
    pub(crate) fn prefix_matches(&self, text: &[char]) -> Vec<bool> {
        let k = self.toks.len();
        let mut out = vec![false; text.len() + 1];
        // now: pattern positions reached; inside: `**/` positions within
        // their `.*` (something read since they began, no slash closing
        // them yet), which, unlike one just reached, cannot be skipped
        let mut now = States::new(k);
        let mut inside = States::new(k);
        let mut next = States::new(k);
        let mut next_inside = States::new(k);
        self.enter(&mut now, 0);
        out[0] = now.has(k);
        for (n, &c) in text.iter().enumerate() {
            next.clear();
            next_inside.clear();
            let slash_stop = c == '/' && self.stops_at_slash();
            for &i in inside.list.iter() {
                // `(.*/)?`: keep reading, or leave after a slash
                next_inside.insert(i);
                if c == '/' {
                    self.enter(&mut next, i + 1);
                }
            }
            for &i in now.list.iter() {
                let Some(tok) = self.toks.get(i) else {
                    continue;
                };
                let (stay, advance) = match tok {
                    Tok::Lit(l) => (false, *l == c),
                    Tok::One => (false, !slash_stop),
                    Tok::Star => (!slash_stop, false),
                    Tok::AnyTail => (true, false),
                    Tok::AnyDirs => {
                        next_inside.insert(i);
                        (false, c == '/')
                    }
                    Tok::Class { negated, items } => {
                        let hit = items.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                        (false, !slash_stop && hit != *negated)
                    }
                };
                if stay {
                    self.enter(&mut next, i);
                }
                if advance {
                    self.enter(&mut next, i + 1);
                }
            }
            if next.list.is_empty() && next_inside.list.is_empty() {
                break;
            }
            std::mem::swap(&mut now, &mut next);
            std::mem::swap(&mut inside, &mut next_inside);
            out[n + 1] = now.has(k);
        }
        out
    }

    /// Reaches position `i`, and those after it reachable without reading:
    /// past a `*`, `**` or `**/` just reached.
    fn enter(&self, set: &mut States, mut i: usize) {
        loop {
            set.insert(i);
            match self.toks.get(i) {
                Some(Tok::Star | Tok::AnyTail | Tok::AnyDirs) => i += 1,
                _ => break,
            }
        }
    }

    fn stops_at_slash(&self) -> bool {
        self.flavor != Flavor::Shell
    }

    fn match_at(
        &self,
        ti: usize,
        text: &[char],
        si: usize,
        failed: &mut std::collections::HashSet<(usize, usize)>,
    ) -> bool {
        if failed.contains(&(ti, si)) {
            return false;
        }
        let ok = match self.toks.get(ti) {
            None => si == text.len(),
            Some(Tok::Lit(c)) => {
                text.get(si) == Some(c) && self.match_at(ti + 1, text, si + 1, failed)
            }
            Some(Tok::One) => match text.get(si) {
                Some('/') if self.stops_at_slash() => false,
                Some(_) => self.match_at(ti + 1, text, si + 1, failed),
                None => false,
            },
            Some(Tok::Star) => {
                let mut end = si;
                loop {
                    if self.match_at(ti + 1, text, end, failed) {
                        break true;
                    }
                    match text.get(end) {
                        Some('/') if self.stops_at_slash() => break false,
                        Some(_) => end += 1,
                        None => break false,
                    }
                }
            }
            Some(Tok::AnyTail) => true,
            Some(Tok::AnyDirs) => {
                // `(.*/)?`: nothing, or anything that ends with a slash
                self.match_at(ti + 1, text, si, failed)
                    || (si..text.len())
                        .filter(|&k| text[k] == '/')
                        .any(|k| self.match_at(ti + 1, text, k + 1, failed))
            }
            Some(Tok::Class { negated, items }) => match text.get(si) {
                Some('/') if self.stops_at_slash() => false,
                Some(&c) => {
                    let inside = items.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                    inside != *negated && self.match_at(ti + 1, text, si + 1, failed)
                }
                None => false,
            },
        };
        if !ok {
            failed.insert((ti, si));
        }
        ok
    }
}

/// A set of pattern positions: a list to walk and a flag per position.
struct States {
    list: Vec<usize>,
    on: Vec<bool>,
}

impl States {
    fn new(k: usize) -> Self {
        Self {
            list: Vec::new(),
            on: vec![false; k + 1],
        }
    }
    fn insert(&mut self, i: usize) {
        if !self.on[i] {
            self.on[i] = true;
            self.list.push(i);
        }
    }
    fn has(&self, i: usize) -> bool {
        self.on[i]
    }
    fn clear(&mut self) {
        for i in self.list.drain(..) {
            self.on[i] = false;
        }
    }
}

/// Parses a class after its `[`; returns the token and the index after `]`.
fn parse_class(chars: &[char], mut i: usize) -> Option<(Tok, usize)> {
    let mut negated = false;
    if chars.get(i) == Some(&'^') {
        negated = true;
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    loop {
        let c = *chars.get(i)?;
        i += 1;
        if c == ']' && !first {
            break;
        }
        first = false;
        let lo = if c == '\\' {
            let e = *chars.get(i)?;
            i += 1;
            e
        } else {
            c
        };
        let mut hi = lo;
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&n| n != ']') {
            i += 1;
            let h = *chars.get(i)?;
            i += 1;
            hi = if h == '\\' {
                let e = *chars.get(i)?;
                i += 1;
                e
            } else {
                h
            };
            if hi < lo {
                return None;
            }
        }
        items.push((lo, hi));
    }
    Some((Tok::Class { negated, items }, i))
}

#[derive(Debug, Clone)]
struct Pattern {
    matcher: Matcher,
    exclusion: bool,
}

/// How one pattern matches a path.
#[derive(Debug, Clone)]
enum Matcher {
    Glob(Glob),
    /// `**` then only literal characters: patternmatcher (since 2021-12,
    /// its "suffix match") takes any path ending in them, so `**.log`
    /// matches `a/b/x.log` and `**foo` matches `barfoo`; with a `/` after
    /// the `**` the path may also be the rest alone (`**/foo` matches
    /// `foo`), as the glob reading gives.
    Suffix(String),
}

impl Matcher {
    fn new(cleaned: &str) -> Option<Matcher> {
        if let Some(rest) = cleaned.strip_prefix("**")
            && !rest.is_empty()
            && !rest.contains(['*', '?', '[', ']', '\\'])
        {
            return Some(Matcher::Suffix(rest.to_string()));
        }
        Glob::new(cleaned, Flavor::DockerIgnore).map(Matcher::Glob)
    }

    fn matches(&self, path: &str) -> bool {
        match self {
            Matcher::Glob(g) => g.matches(path),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
        }
    }
}

/// The patterns of one `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

impl DockerIgnore {
    /// Parses the text of a `.dockerignore` file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line = idx + 1;
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
                if p.is_empty() {
                    return Err(IgnoreError::EmptyExclusion { line });
                }
            }
            let mut cleaned = lexpath::clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let matcher = Matcher::new(&cleaned).ok_or_else(|| IgnoreError::BadPattern {
                line,
                pattern: raw.trim().to_string(),
            })?;
            patterns.push(Pattern { matcher, exclusion });
        }
        Ok(Self { patterns })
    }

    /// The patterns of COPY/ADD `--exclude` flags, as BuildKit's copier
    /// reads them (patternmatcher `New`): each trimmed (an empty one is
    /// skipped) and cleaned, `!` making an exception; no comments, and a
    /// leading `/` is kept (so it matches nothing, as in BuildKit).
    pub fn from_patterns(patterns: &[String]) -> Result<Self, IgnoreError> {
        let mut out = Vec::new();
        for raw in patterns {
            let bad = || IgnoreError::BadExclude {
                pattern: raw.clone(),
            };
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = &p[1..];
                if p.is_empty() {
                    return Err(bad());
                }
            }
            let matcher = Matcher::new(&lexpath::clean(p)).ok_or_else(bad)?;
            out.push(Pattern { matcher, exclusion });
        }
        Ok(Self { patterns: out })
    }

    /// Whether there are no patterns (nothing is excluded).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// True when some pattern is an exception (`!…`): an excluded directory
    /// may then still hold included files, so it must be walked.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether the context path `rel` (slash-separated, relative to the
    /// context root, no leading `./`) is excluded, decided as BuildKit's
    /// context walk does (patternmatcher `MatchesUsingParentResults`):
    /// from the top directory down, each pattern that matched a parent
    /// counts as matching its children; one not yet matched is tried on
    /// the path itself when it could change the answer (an exclusion while
    /// the path is not excluded, an exception while it is), in order, the
    /// last match deciding.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let rel = lexpath::clean(rel);
        let mut carried = vec![false; self.patterns.len()];
        let mut end = 0;
        loop {
            end = match rel[end..].find('/') {
                Some(i) if end + i > 0 => end + i,
                Some(_) => 1,
                None => rel.len(),
            };
            let path = &rel[..end];
            let mut matched = false;
            for (pattern, carry) in self.patterns.iter().zip(carried.iter_mut()) {
                if !*carry {
                    if pattern.exclusion != matched {
                        continue;
                    }
                    *carry = pattern.matcher.matches(path);
                }
                if *carry {
                    matched = !pattern.exclusion;
                }
            }
            if end >= rel.len() {
                return matched;
            }
            end += 1;
        }
    }
}

#[cfg(test)]
mod tests;
