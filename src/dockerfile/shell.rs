//! Shell-word processing as docker applies it to Dockerfile arguments: quote
//! removal, escapes, and `$VAR` / `${VAR…}` expansion, with or without word
//! splitting.
//!
//! This is not a shell: there is no command substitution, globbing or
//! arithmetic, exactly as in BuildKit's `shell.Lex`. It must not know about
//! instructions; the parser decides which arguments are expanded.

use super::ignore::{Flavor, Glob};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How deep `${…}` may nest inside another `${…}`'s word. Real Dockerfiles
/// nest two or three deep; each level is a recursion of the scanner, and
/// thousands of levels overflowed the stack.
pub const MAX_NESTING: usize = 64;

/// How long (in bytes) the result of expanding one argument may grow. A
/// doubling `ENV A=${A}${A}` repeated reached gigabytes in seconds; this is
/// far above any real value and below what hurts a machine.
pub const MAX_EXPANDED: usize = 16 << 20;

/// How many bytes all the expansions of one stage may produce together
/// (see [`Budget`]).
pub const MAX_STAGE_EXPANDED: usize = 256 << 20;

/// Where variable values come from.
pub trait Vars {
    /// The value of `name`, or `None` when it is unset.
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl Vars for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Vars for std::collections::HashMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// `KEY=value` pairs, the first match wins (as in an environment list).
impl Vars for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Vars for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// An expansion error; the caller adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("missing '}}' in substitution")]
    MissingBrace,
    #[error("unsupported modifier ({0}) in substitution")]
    BadModifier(char),
    #[error("{name}: {message}")]
    Unset { name: String, message: String },
    #[error("bad substitution: {0}")]
    BadSubstitution(String),
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidEscape { pattern: String, escaped: String },
    #[error("variable substitutions nested more than {MAX_NESTING} deep")]
    TooDeep,
    #[error(
        "pattern substitution on a value longer than {MAX_PATTERN_VALUE} characters or with a pattern longer than {MAX_PATTERN}"
    )]
    PatternTooLong,
    #[error("expansion longer than {limit} bytes")]
    TooLong { limit: usize },
}

impl ShellError {
    /// Whether this is one of the bounds on nesting, length and pattern
    /// work rather than an error in the word.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ShellError::TooDeep | ShellError::TooLong { .. } | ShellError::PatternTooLong
        )
    }
}

/// What all the expansions of one stage may still produce, in bytes: each
/// argument is bounded by [`MAX_EXPANDED`], but a stage has as many
/// arguments as the Dockerfile has words, so the stage's total is bounded
/// too. Clones share the count.
#[derive(Debug, Clone)]
pub struct Budget {
    left: Arc<AtomicUsize>,
    limit: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(MAX_STAGE_EXPANDED)
    }
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(limit)),
            limit,
        }
    }

    /// Takes `n` bytes (of expansion, or of what a step derives from it,
    /// like EXPOSE's port ranges); an error when fewer are left.
    pub fn charge(&self, n: usize) -> Result<(), ShellError> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .map(|_| ())
            .map_err(|_| ShellError::TooLong { limit: self.limit })
    }
}

/// Word processor for one escape character (`\` or `` ` ``).
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    /// Keep quotes and escapes in the output.
    raw: bool,
    /// Leave unset variables as written instead of expanding them to "".
    skip_unset: bool,
    /// Quotes are ordinary characters (heredoc bodies).
    skip_quotes: bool,
}

/// How a word is processed.
#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    /// Keep quote characters in the output (heredoc bodies).
    raw_quotes: bool,
    /// Keep escape characters in the output (heredoc bodies).
    raw_escapes: bool,
    /// Split into words on unquoted whitespace.
    split: bool,
    skip_unset: bool,
    /// Quotes are ordinary characters (heredoc bodies).
    skip_quotes: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw: false,
            skip_unset: false,
            skip_quotes: false,
        }
    }

    /// The lexer of a COPY/ADD heredoc body whose delimiter is not quoted
    /// (BuildKit's `ExpandRaw`): `\` escapes whatever the Dockerfile's
    /// escape character, and removes itself (`\$X` gives `$X`); quotes
    /// are ordinary characters, so `'$X'` expands too.
    pub fn heredoc() -> Self {
        Self {
            skip_quotes: true,
            ..Self::new('\\')
        }
    }

    /// Keeps quotes and escape characters in the output (heredoc bodies).
    pub fn with_raw(mut self) -> Self {
        self.raw = true;
        self
    }

    /// Leaves unset variables as written (`$X` stays `$X`).
    pub fn with_skip_unset(mut self) -> Self {
        self.skip_unset = true;
        self
    }

    fn mode(&self, split: bool) -> Mode {
        Mode {
            raw_quotes: self.raw,
            raw_escapes: self.raw,
            split,
            skip_unset: self.skip_unset,
            skip_quotes: self.skip_quotes,
        }
    }

    /// Expands variables and removes quotes; the result is one word.
    pub fn process_word(&self, word: &str, vars: &dyn Vars) -> Result<String, ShellError> {
        let words = self.run(word, vars, self.mode(false))?;
        Ok(words.into_iter().next().unwrap_or_default())
    }

    /// [`Self::process_word`], charging the result's length to `budget`.
    pub fn process_word_in(
        &self,
        word: &str,
        vars: &dyn Vars,
        budget: &Budget,
    ) -> Result<String, ShellError> {
        let out = self.process_word(word, vars)?;
        budget.charge(out.len())?;
        Ok(out)
    }

    /// Expands variables and removes quotes, then splits on unquoted
    /// whitespace (also whitespace that came from an unquoted expansion).
    pub fn process_words(&self, word: &str, vars: &dyn Vars) -> Result<Vec<String>, ShellError> {
        self.run(word, vars, self.mode(true))
    }

    /// [`Self::process_words`], charging the words' length to `budget`.
    pub fn process_words_in(
        &self,
        word: &str,
        vars: &dyn Vars,
        budget: &Budget,
    ) -> Result<Vec<String>, ShellError> {
        let out = self.process_words(word, vars)?;
        budget.charge(out.iter().map(String::len).sum())?;
        Ok(out)
    }

    fn run(&self, word: &str, vars: &dyn Vars, mode: Mode) -> Result<Vec<String>, ShellError> {
        let chars: Vec<char> = word.chars().collect();
        let mut state = Scan {
            chars: &chars,
            pos: 0,
            escape: self.escape,
            vars,
            mode,
            depth: 0,
            // the input itself always fits: a long literal word is the
            // Dockerfile's own size, bounded when it is read
            limit: MAX_EXPANDED.max(word.len()),
        };
        let mut words = Words::default();
        state.process(None, &mut words)?;
        Ok(words.finish(mode.split))
    }
}

/// The words being built; tracks whether the current word has begun so
/// that `""` yields an empty word rather than none.
#[derive(Default)]
struct Words {
    done: Vec<String>,
    cur: String,
    started: bool,
    /// Bytes of the finished words.
    done_len: usize,
}

impl Words {
    fn push_raw(&mut self, s: &str) {
        self.cur.push_str(s);
        self.started = true;
    }
    fn push_char(&mut self, c: char) {
        self.cur.push(c);
        self.started = true;
    }
    /// Text from an unquoted expansion: whitespace in it separates words.
    fn push_split(&mut self, s: &str, split: bool) {
        if !split {
            self.push_raw(s);
            return;
        }
        for c in s.chars() {
            if c.is_whitespace() {
                self.end_word();
            } else {
                self.push_char(c);
            }
        }
    }
    fn end_word(&mut self) {
        if self.started {
            self.done_len += self.cur.len();
            self.done.push(std::mem::take(&mut self.cur));
            self.started = false;
        }
    }
    fn len(&self) -> usize {
        self.done_len + self.cur.len()
    }
    fn finish(mut self, split: bool) -> Vec<String> {
        if split {
            self.end_word();
            self.done
        } else {
            vec![self.cur]
        }
    }
}

struct Scan<'a> {
    chars: &'a [char],
    pos: usize,
    escape: char,
    vars: &'a dyn Vars,
    mode: Mode,
    /// How many `${…}` words enclose the scan position.
    depth: usize,
    /// The most bytes the output (and any value built on the way) may hold.
    limit: usize,
}

impl Scan<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Processes until `stop` (consumed) or the end of input.
    fn process(&mut self, stop: Option<char>, out: &mut Words) -> Result<bool, ShellError> {
        while let Some(c) = self.peek() {
            if Some(c) == stop {
                self.pos += 1;
                return Ok(true);
            }
            match c {
                '\'' if !self.mode.skip_quotes => self.single_quote(out)?,
                '"' if !self.mode.skip_quotes => self.double_quote(out)?,
                '$' => {
                    let value = self.dollar()?;
                    self.check(out.len() + value.len())?;
                    out.push_split(&value, self.mode.split);
                }
                c if c == self.escape => {
                    self.pos += 1;
                    match self.next() {
                        // a trailing escape character is dropped
                        None => {}
                        Some(n) => {
                            if self.mode.raw_escapes {
                                out.push_char(c);
                            }
                            out.push_char(n);
                        }
                    }
                }
                c if self.mode.split && c.is_whitespace() => {
                    self.pos += 1;
                    out.end_word();
                }
                c => {
                    self.pos += 1;
                    out.push_char(c);
                }
            }
        }
        Ok(false)
    }

    fn single_quote(&mut self, out: &mut Words) -> Result<(), ShellError> {
        self.pos += 1;
        out.started = true;
        if self.mode.raw_quotes {
            out.push_char('\'');
        }
        loop {
            match self.next() {
                None => return Err(ShellError::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.mode.raw_quotes {
                        out.push_char('\'');
                    }
                    return Ok(());
                }
                Some(c) => out.push_char(c),
            }
        }
    }

    fn double_quote(&mut self, out: &mut Words) -> Result<(), ShellError> {
        self.pos += 1;
        out.started = true;
        if self.mode.raw_quotes {
            out.push_char('"');
        }
        loop {
            match self.peek() {
                None => return Err(ShellError::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.mode.raw_quotes {
                        out.push_char('"');
                    }
                    return Ok(());
                }
                Some('$') => {
                    let value = self.dollar()?;
                    self.check(out.len() + value.len())?;
                    out.push_raw(&value);
                }
                Some(c) if c == self.escape => {
                    self.pos += 1;
                    match self.peek() {
                        None => {}
                        Some(n) if n == '"' || n == '$' || n == self.escape => {
                            self.pos += 1;
                            if self.mode.raw_escapes {
                                out.push_char(c);
                            }
                            out.push_char(n);
                        }
                        Some(_) => out.push_char(c),
                    }
                }
                Some(c) => {
                    self.pos += 1;
                    out.push_char(c);
                }
            }
        }
    }

    /// Reads a variable name: letters, digits and `_`; a leading digit run
    /// or one special parameter character is a name of its own.
    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if name.is_empty() && c.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!') {
                self.pos += 1;
                name.push(c);
                return name;
            }
            if !(c.is_alphanumeric() || c == '_') {
                break;
            }
            self.pos += 1;
            name.push(c);
        }
        name
    }

    fn check(&self, len: usize) -> Result<(), ShellError> {
        if len > self.limit {
            return Err(ShellError::TooLong { limit: self.limit });
        }
        Ok(())
    }

    /// The text of a word inside `${…}` up to the closing brace.
    fn inner_word(&mut self) -> Result<String, ShellError> {
        self.inner_word_until('}', false)?
            .ok_or(ShellError::MissingBrace)
    }

    /// The text of a word inside `${…}` up to `stop` (`None` when the input
    /// ends first); with `raw_escapes` the escape characters stay in it (a
    /// pattern's, which say what is literal).
    fn inner_word_until(
        &mut self,
        stop: char,
        raw_escapes: bool,
    ) -> Result<Option<String>, ShellError> {
        if self.depth >= MAX_NESTING {
            return Err(ShellError::TooDeep);
        }
        let mut w = Words::default();
        let mode = self.mode;
        self.mode.split = false;
        self.mode.raw_escapes = raw_escapes;
        self.depth += 1;
        let found = self.process(Some(stop), &mut w);
        self.depth -= 1;
        self.mode = mode;
        Ok(found?.then_some(w.cur))
    }

    fn dollar(&mut self) -> Result<String, ShellError> {
        self.pos += 1; // the '$'
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.vars.lookup(&name) {
                Some(v) => v.to_string(),
                None if self.mode.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the '{'
        let name = self.name();
        if name.is_empty() {
            return Err(ShellError::BadSubstitution(self.rest_of_brace()));
        }
        let value = self.vars.lookup(&name).map(str::to_string);
        match self.next() {
            None => Err(ShellError::MissingBrace),
            Some('}') => Ok(match value {
                Some(v) => v,
                None if self.mode.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':') => {
                let modifier = self.next().ok_or(ShellError::MissingBrace)?;
                let word = self.inner_word()?;
                let set_nonempty = value.as_deref().is_some_and(|v| !v.is_empty());
                match modifier {
                    '-' => Ok(if set_nonempty {
                        value.unwrap_or_default()
                    } else {
                        word
                    }),
                    '+' => Ok(if set_nonempty { word } else { String::new() }),
                    '?' if set_nonempty => Ok(value.unwrap_or_default()),
                    '?' => Err(unset_error(name, word)),
                    other => Err(ShellError::BadModifier(other)),
                }
            }
            Some('-') => {
                let word = self.inner_word()?;
                Ok(value.unwrap_or(word))
            }
            Some('+') => {
                let word = self.inner_word()?;
                Ok(if value.is_some() { word } else { String::new() })
            }
            Some('?') => {
                let word = self.inner_word()?;
                value.ok_or_else(|| unset_error(name, word))
            }
            Some(op @ ('#' | '%')) => {
                // as BuildKit: the pattern keeps its escapes, and `##`/`%%`
                // is told by the expanded pattern's first character
                let pattern = self
                    .inner_word_until('}', true)?
                    .ok_or(ShellError::MissingBrace)?;
                let (longest, pattern) = match pattern.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, pattern.as_str()),
                };
                let value = value.unwrap_or_default();
                if op == '#' {
                    trim_prefix(&value, pattern, longest)
                } else {
                    trim_suffix(&value, pattern, longest)
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.pos += 1;
                }
                // the pattern ends at the first unescaped `/` (`\/` is a
                // slash in it), the replacement at `}`; both keep their
                // escapes, and the replacement keeps them in the result,
                // as BuildKit's lexer does
                let pattern = self
                    .inner_word_until('/', true)?
                    .ok_or(ShellError::MissingSlash)?;
                let replacement = self
                    .inner_word_until('}', true)?
                    .ok_or(ShellError::MissingBrace)?;
                replace_pattern(
                    &value.unwrap_or_default(),
                    &pattern,
                    &replacement,
                    all,
                    self.limit,
                )
            }
            Some(other) => {
                let mut text = format!("${{{name}{other}");
                text.push_str(&self.rest_of_brace());
                Err(ShellError::BadSubstitution(text))
            }
        }
    }

    fn rest_of_brace(&mut self) -> String {
        let mut s = String::new();
        while let Some(c) = self.next() {
            s.push(c);
            if c == '}' {
                break;
            }
        }
        s
    }
}

fn unset_error(name: String, word: String) -> ShellError {
    let message = if word.is_empty() {
        "is not allowed to be unset".to_string()
    } else {
        word
    };
    ShellError::Unset { name, message }
}

/// The longest value (in characters) `#`, `%` and `/` work on, and the
/// longest pattern: real ones are versions, paths and file names.
pub const MAX_PATTERN_VALUE: usize = 8 << 10;
pub const MAX_PATTERN: usize = 256;

/// Compiles a `#`, `%` or `/` pattern as BuildKit reads one: `*` and `?`
/// are wildcards, everything else is literal (no `[…]` classes); `\*`,
/// `\?` and `\\` are the literal characters, `\/` and `\}` a slash and a
/// brace, and any other escape is an error.
fn shell_glob(value: &[char], pattern: &str) -> Result<Glob, ShellError> {
    if value.len() > MAX_PATTERN_VALUE || pattern.chars().count() > MAX_PATTERN {
        return Err(ShellError::PatternTooLong);
    }
    let mut glob = String::with_capacity(pattern.len() * 2);
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => glob.push(c),
            '\\' => match chars.peek() {
                // the escape of a separator is not part of the pattern
                Some('}' | '/') => {}
                Some(&n @ ('*' | '?' | '\\')) => {
                    chars.next();
                    glob.push('\\');
                    glob.push(n);
                }
                other => {
                    return Err(ShellError::InvalidEscape {
                        pattern: pattern.to_string(),
                        escaped: other.map(|c| c.to_string()).unwrap_or_default(),
                    });
                }
            },
            c => {
                glob.push('\\');
                glob.push(c);
            }
        }
    }
    // every character but the wildcards is escaped: there is no class to be
    // unclosed, so this never fails
    Glob::new(&glob, Flavor::Shell).ok_or_else(|| ShellError::InvalidEscape {
        pattern: pattern.to_string(),
        escaped: String::new(),
    })
}

fn trim_prefix(value: &str, pattern: &str, longest: bool) -> Result<String, ShellError> {
    let v: Vec<char> = value.chars().collect();
    let glob = shell_glob(&v, pattern)?;
    let hits = glob.prefix_matches(&v);
    let end = if longest {
        hits.iter().rposition(|&m| m)
    } else {
        hits.iter().position(|&m| m)
    };
    Ok(match end {
        Some(end) => v[end..].iter().collect(),
        None => value.to_string(),
    })
}

fn trim_suffix(value: &str, pattern: &str, longest: bool) -> Result<String, ShellError> {
    let v: Vec<char> = value.chars().collect();
    let glob = shell_glob(&v, pattern)?;
    let reversed: Vec<char> = v.iter().rev().copied().collect();
    // hits[n]: the last n characters match
    let hits = glob.reversed().prefix_matches(&reversed);
    let len = if longest {
        hits.iter().rposition(|&m| m)
    } else {
        hits.iter().position(|&m| m)
    };
    Ok(match len {
        Some(len) => v[..v.len() - len].iter().collect(),
        None => value.to_string(),
    })
}

/// `${V/pattern/replacement}` (`all`: `//`) as BuildKit does it with Go's
/// regexp: the leftmost match, the longest there (greedy wildcards), which
/// may be empty (an empty pattern inserts the replacement); an empty match
/// right after a match is not replaced; in the replacement `$0`, `$name`
/// and `$$` are Go's template expansions (the match, nothing, a `$`).
fn replace_pattern(
    value: &str,
    pattern: &str,
    replacement: &str,
    all: bool,
    limit: usize,
) -> Result<String, ShellError> {
    let v: Vec<char> = value.chars().collect();
    let glob = shell_glob(&v, pattern)?;
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= v.len() {
        let found = (search..=v.len()).find_map(|start| {
            let hits = glob.prefix_matches(&v[start..]);
            hits.iter()
                .rposition(|&m| m)
                .map(|len| (start, start + len))
        });
        let Some((start, end)) = found else { break };
        out.extend(&v[last_end..start]);
        if end > last_end || start == 0 {
            let matched: String = v[start..end].iter().collect();
            go_expand(replacement, &matched, &mut out);
            if out.len() > limit {
                return Err(ShellError::TooLong { limit });
            }
        }
        last_end = end;
        search = if end > search { end } else { search + 1 };
        if !all {
            break;
        }
    }
    out.extend(&v[last_end..]);
    Ok(out)
}

/// Go's `Regexp.Expand` of a replacement for a pattern with no groups:
/// `$$` is a `$`, `$0`/`${0}` the match, any other `$name`/`${name}`
/// nothing, and a `$` that starts none of these stays.
fn go_expand(template: &str, matched: &str, out: &mut String) {
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let (brace, body) = match after.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, after),
        };
        let name_len: usize = body
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .map(char::len_utf8)
            .sum();
        let closed = !brace || body[name_len..].starts_with('}');
        if name_len == 0 || !closed {
            out.push('$');
            rest = after;
            continue;
        }
        if &body[..name_len] == "0" {
            out.push_str(matched);
        }
        rest = &body[name_len + usize::from(brace)..];
    }
    out.push_str(rest);
}

#[cfg(test)]
mod tests;
