//! From Dockerfile text to raw nodes: parser directives, comments, line
//! continuations, builder flags and heredoc bodies, each node with the lines
//! it came from.
//!
//! Docker's (BuildKit's `frontend/dockerfile/parser`) rules, rewritten. This
//! layer does not know what an instruction means; `instruction.rs` turns
//! nodes into typed instructions.

use super::shell::Lexer;
use super::{DockerfileError, Located, SyntaxError};

/// Parser directives from the top of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<String>,
    pub escape: char,
    pub check: Option<String>,
}

impl Default for Directives {
    fn default() -> Self {
        Self {
            syntax: None,
            escape: '\\',
            check: None,
        }
    }
}

/// A heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, quotes removed.
    pub name: String,
    /// Body, one `\n` after every line, exactly as written.
    pub content: String,
    /// `<<-`: leading tabs are stripped from the body.
    pub chomp: bool,
    /// False when the delimiter was quoted: no variable expansion.
    pub expand: bool,
}

impl Heredoc {
    /// The body as the instruction sees it (tabs stripped for `<<-`).
    pub fn body(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// One instruction as written, before it is given a meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The instruction keyword, lower case.
    pub cmd: String,
    /// `--name[=value]` flags in order, quotes removed.
    pub flags: FlagList,
    /// Everything after the keyword and flags, continuations joined.
    pub rest: String,
    /// The whole logical line as written (continuations joined).
    pub original: String,
    pub heredocs: Vec<Heredoc>,
}

/// The result of reading a Dockerfile.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub directives: Directives,
    pub nodes: Vec<Located<Node>>,
    pub warnings: Vec<String>,
}

const HEREDOC_COMMANDS: [&str; 3] = ["run", "copy", "add"];

fn is_space(c: char) -> bool {
    c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\u{b}' || c == '\u{c}'
}

/// A `# name=value` parser directive, if the line is one.
fn directive(line: &str) -> Option<(String, String)> {
    let body = line.trim_start_matches(is_space).strip_prefix('#')?;
    let body = body.trim_start_matches(is_space);
    let eq = body.find('=')?;
    let name = body[..eq].trim_end_matches(is_space);
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let value = body[eq + 1..].trim_matches(is_space);
    if value.is_empty() {
        return None;
    }
    Some((name.to_ascii_lowercase(), value.to_string()))
}

/// Strips a trailing escape character (and blanks after it); true when the
/// line continues.
fn strip_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    match trimmed.strip_suffix(escape) {
        Some(head) => (head.to_string(), true),
        None => (line.to_string(), false),
    }
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(is_space).starts_with('#')
}

/// Reads Dockerfile text. `file` names the file in errors.
pub fn parse(text: &str, file: &str) -> Result<Parsed, DockerfileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.trim_end_matches(['\r', '\n']))
        .collect();
    // a final newline does not start another line
    let count = if text.ends_with('\n') {
        lines.len() - 1
    } else {
        lines.len()
    };
    let err = |line: usize, source: SyntaxError| DockerfileError::Parse {
        file: file.to_string(),
        line,
        source,
    };

    let mut directives = Directives::default();
    let mut seen = std::collections::BTreeSet::new();
    let mut i = 0;
    // directives: only a run of `# key=value` lines at the very top
    while i < count {
        let Some((name, value)) = directive(lines[i]) else {
            break;
        };
        if matches!(name.as_str(), "escape" | "syntax" | "check") && !seen.insert(name.clone()) {
            return Err(err(i + 1, SyntaxError::DuplicateDirective(name)));
        }
        match name.as_str() {
            "escape" => {
                directives.escape = match value.as_str() {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(err(i + 1, SyntaxError::BadEscape(value)));
                    }
                }
            }
            "syntax" => directives.syntax = Some(value),
            "check" => directives.check = Some(value),
            _ => {}
        }
        i += 1;
    }

    let escape = directives.escape;
    let mut nodes = Vec::new();
    let mut warnings = Vec::new();
    while i < count {
        let start = i + 1;
        let first = lines[i];
        i += 1;
        if is_comment(first) || first.trim_matches(is_space).is_empty() {
            continue;
        }
        let (mut line, mut more) = strip_continuation(first.trim_start_matches(is_space), escape);
        let mut empty_continuation = false;
        while more && i < count {
            let next = lines[i];
            i += 1;
            if is_comment(next) {
                continue;
            }
            if next.trim_matches(is_space).is_empty() {
                empty_continuation = true;
                continue;
            }
            let (part, cont) = strip_continuation(next, escape);
            line.push_str(&part);
            more = cont;
        }
        if empty_continuation {
            warnings.push(format!("{file}:{start}: empty continuation line found; it will become an error in a future release"));
        }
        if line.trim_matches(is_space).is_empty() {
            continue;
        }
        let mut node = split_node(&line).map_err(|m| err(start, m))?;
        if HEREDOC_COMMANDS.contains(&node.cmd.as_str())
            && !node.rest.trim_start().starts_with('[')
            && line.contains("<<")
        {
            let markers = heredoc_markers(&line).map_err(|m| err(start, m))?;
            for (name, chomp, expand) in markers {
                let mut content = String::new();
                let mut terminated = false;
                while i < count {
                    let body = lines[i];
                    i += 1;
                    let candidate = if chomp {
                        body.trim_start_matches('\t')
                    } else {
                        body
                    };
                    if candidate == name {
                        terminated = true;
                        break;
                    }
                    content.push_str(body);
                    content.push('\n');
                }
                if !terminated {
                    return Err(err(start, SyntaxError::UnterminatedHeredoc(name)));
                }
                node.heredocs.push(Heredoc {
                    name,
                    content,
                    chomp,
                    expand,
                });
            }
        }
        nodes.push(Located {
            line: start,
            end_line: i.max(start),
            value: node,
        });
    }
    Ok(Parsed {
        directives,
        nodes,
        warnings,
    })
}

/// Splits a logical line into keyword, flags and the rest.
fn split_node(line: &str) -> Result<Node, SyntaxError> {
    let trimmed = line.trim_matches(is_space);
    let (cmd, rest) = match trimmed.find(is_space) {
        Some(p) => (&trimmed[..p], trimmed[p..].trim_start_matches(is_space)),
        None => (trimmed, ""),
    };
    let (flags, rest) = extract_flags(rest)?;
    Ok(Node {
        cmd: cmd.to_ascii_lowercase(),
        flags,
        rest: rest.to_string(),
        original: trimmed.to_string(),
        heredocs: Vec::new(),
    })
}

/// Leading `--flag[=value]` words; quotes inside them are removed and `\`
/// escapes the next character. A bare `--` ends the flags.
/// Builder flags in order: name and value (`None` for a bare `--name`).
pub type FlagList = Vec<(String, Option<String>)>;

fn extract_flags(rest: &str) -> Result<(FlagList, &str), SyntaxError> {
    let mut flags = Vec::new();
    let mut pos;
    let bytes: Vec<(usize, char)> = rest.char_indices().collect();
    let mut k = 0;
    loop {
        while k < bytes.len() && is_space(bytes[k].1) {
            k += 1;
        }
        if k >= bytes.len() {
            pos = rest.len();
            break;
        }
        pos = bytes[k].0;
        if !rest[pos..].starts_with("--") {
            break;
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while k < bytes.len() {
            let c = bytes[k].1;
            match quote {
                None if is_space(c) => break,
                None if c == '\'' || c == '"' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ if c == '\\' => {
                    k += 1;
                    if let Some(&(_, n)) = bytes.get(k) {
                        word.push(n);
                    }
                }
                _ => word.push(c),
            }
            k += 1;
        }
        if word == "--" {
            pos = bytes.get(k).map_or(rest.len(), |b| b.0);
            break;
        }
        let body = &word[2..];
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        if name.is_empty() {
            return Err(SyntaxError::BadFlag(word.to_string()));
        }
        flags.push((name, value));
    }
    Ok((flags, rest[pos..].trim_start_matches(is_space)))
}

/// The heredoc markers (`<<EOF`, `<<-"EOF"`, …) in an instruction line, in
/// order: (name, chomp, expand).
fn heredoc_markers(line: &str) -> Result<Vec<(String, bool, bool)>, SyntaxError> {
    let raw = Lexer::new('\\').with_raw().with_skip_unset();
    let words = raw.process_words(line, &Vec::new())?;
    let mut out = Vec::new();
    for word in words {
        if let Some(h) = parse_heredoc_word(&word)? {
            out.push(h);
        }
    }
    Ok(out)
}

/// Whether `word` is a heredoc marker; returns (name, chomp, expand).
pub(crate) fn parse_heredoc_word(word: &str) -> Result<Option<(String, bool, bool)>, SyntaxError> {
    let digits = word.chars().take_while(char::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let plain = Lexer::new('\\').with_skip_unset();
    let words = plain.process_words(rest, &Vec::new())?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = Lexer::new('\\').with_raw().with_skip_unset();
    let raw_words = raw.process_words(rest, &Vec::new())?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let expand = raw_words.len() == 1 && quotes(&words[0]) == quotes(&raw_words[0]);
    Ok(Some((words[0].clone(), chomp, expand)))
}

/// Splits on blanks, keeping quotes and escapes in the words (docker's
/// `parseWords`, used for `ENV`, `LABEL` and `ARG`).
pub(crate) fn split_words_keep_quotes(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut blank_ok = false;
    let mut quote: Option<char> = None;
    let mut k = 0;
    while k < chars.len() {
        let c = chars[k];
        k += 1;
        match quote {
            None => {
                if is_space(c) {
                    if in_word && (blank_ok || !word.is_empty()) {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                in_word = true;
                if c == '\'' || c == '"' {
                    quote = Some(c);
                    blank_ok = true;
                }
                if c == escape {
                    if k == chars.len() {
                        continue;
                    }
                    word.push(c);
                    word.push(chars[k]);
                    k += 1;
                    continue;
                }
                word.push(c);
            }
            Some(q) => {
                if c == q {
                    quote = None;
                }
                if c == escape && q != '\'' {
                    if k == chars.len() {
                        quote = None;
                        continue;
                    }
                    word.push(c);
                    word.push(chars[k]);
                    k += 1;
                    continue;
                }
                word.push(c);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}
