//! Expansion table: one row per case, `(input, expected)`, all against the
//! same variables. Written for smelt from the POSIX/BuildKit rules.

use super::*;

fn vars() -> Vec<(String, String)> {
    [
        ("A", "a"),
        ("B", "two words"),
        ("EMPTY", ""),
        ("PATH", "/usr/bin:/bin"),
        ("X_1", "x1"),
        ("FILE", "archive.tar.gz"),
        ("TPL", "<$0>"),
        ("STARS", "a*b*c"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

const WORD: &[(&str, &str)] = &[
    ("plain", "plain"),
    ("$A", "a"),
    ("${A}", "a"),
    ("pre$A", "prea"),
    ("${A}post", "apost"),
    ("$Apost", ""),
    ("$X_1", "x1"),
    ("$UNSET", ""),
    ("${UNSET}", ""),
    ("${UNSET:-def}", "def"),
    ("${EMPTY:-def}", "def"),
    ("${EMPTY-def}", ""),
    ("${UNSET-def}", "def"),
    ("${A:-def}", "a"),
    ("${A:+alt}", "alt"),
    ("${EMPTY:+alt}", ""),
    ("${EMPTY+alt}", "alt"),
    ("${UNSET+alt}", ""),
    ("${UNSET:-$A}", "a"),
    ("${UNSET:-${A}b}", "ab"),
    ("${UNSET:-\"q w\"}", "q w"),
    ("'$A'", "$A"),
    ("\"$A\"", "a"),
    ("\"'$A'\"", "'a'"),
    ("'\"$A\"'", "\"$A\""),
    ("\\$A", "$A"),
    ("\"\\$A\"", "$A"),
    ("\"a\\b\"", "a\\b"),
    ("\"a\\\"b\"", "a\"b"),
    ("a\\ b", "a b"),
    ("\\\\", "\\"),
    ("trailing\\", "trailing"),
    ("$", "$"),
    ("a$", "a$"),
    ("$-", ""),
    ("$1", ""),
    ("$ A", "$ A"),
    ("${B}", "two words"),
    ("\"${B}\"", "two words"),
    ("$PATH:/x", "/usr/bin:/bin:/x"),
    ("${FILE%.gz}", "archive.tar"),
    ("${FILE%%.*}", "archive"),
    ("${FILE#*.}", "tar.gz"),
    ("${FILE##*.}", "gz"),
    ("${FILE/tar/zip}", "archive.zip.gz"),
    ("${A//a/b}", "b"),
    // patterns as BuildKit reads them (Go regexps made from the pattern):
    // `[` is literal, `\/` is a slash and `\}` a brace in the pattern, the
    // replacement keeps its escapes, an empty pattern matches at the start
    ("${FILE//[a-c]/_}", "archive.tar.gz"),
    ("${PATH//\\//-}", "-usr-bin:-bin"),
    ("${PATH/\\//_}", "_usr/bin:/bin"),
    ("${PATH//:/\\/}", "/usr/bin\\//bin"),
    ("${FILE/\\}/x}", "archive.tar.gz"),
    ("${STARS//\\*/-}", "a-b-c"),
    ("${STARS#*\\*}", "b*c"),
    ("${STARS%\\**}", "a*b"),
    ("${FILE/$EMPTY/x}", "xarchive.tar.gz"),
    ("${EMPTY//*/x}", "x"),
    ("${FILE//*/x}", "x"),
    ("${FILE/${A}r/${A}R}", "aRchive.tar.gz"),
    // the replacement is a Go template: $0 is the match
    ("${FILE/tar/$TPL}", "archive.<tar>.gz"),
    // `##` is told after quotes are removed
    ("${FILE#'#'a}", "rchive.tar.gz"),
    ("${FILE/*./}", "gz"),
    ("${FILE/a*/-}", "-"),
    ("${FILE%a*}", "archive.t"),
    ("${FILE%%a*}", ""),
    ("${FILE#*a}", "rchive.tar.gz"),
    ("${FILE##*a}", "r.gz"),
    ("${FILE#x*}", "archive.tar.gz"),
    ("${FILE%?}", "archive.tar.g"),
    ("''", ""),
    ("\"\"", ""),
    ("a'b c'd", "ab cd"),
    ("é$A", "éa"),
];

#[test]
fn process_word_table() {
    let lex = Lexer::new('\\');
    let v = vars();
    for (input, want) in WORD {
        assert_eq!(
            lex.process_word(input, &v).as_deref(),
            Ok(*want),
            "input {input:?}"
        );
    }
}

const WORDS: &[(&str, &[&str])] = &[
    ("a b  c", &["a", "b", "c"]),
    ("$B", &["two", "words"]),
    ("\"$B\"", &["two words"]),
    ("x$B", &["xtwo", "words"]),
    ("'a b' c", &["a b", "c"]),
    ("\"\" x", &["", "x"]),
    ("  ", &[]),
    ("a\\ b c", &["a b", "c"]),
    ("$EMPTY", &[]),
    ("${UNSET:-one two}", &["one", "two"]),
];

#[test]
fn process_words_table() {
    let lex = Lexer::new('\\');
    let v = vars();
    for (input, want) in WORDS {
        let got = lex
            .process_words(input, &v)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(got, *want, "input {input:?}");
    }
}

const ERRORS: &[(&str, &str)] = &[
    ("'open", "single-quote"),
    ("\"open", "double-quote"),
    ("${A", "missing '}'"),
    ("${UNSET:?must be set}", "UNSET: must be set"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ("${EMPTY:?}", "EMPTY: is not allowed to be unset"),
    ("${A:=x}", "unsupported modifier (=)"),
    ("${}", "bad substitution"),
    // BuildKit allows only \*, \?, \\, \/ and \} in a pattern
    (
        "${FILE#\\a}",
        "invalid pattern (\\a) in substitution: invalid escape '\\a'",
    ),
    ("${FILE%x\\q}", "invalid escape"),
    ("${FILE%x\\}", "missing '}'"),
    // a pattern substitution needs its second slash
    ("${FILE/tar}", "missing '/'"),
    ("${FILE//tar}", "missing '/'"),
    ("${FILE/a/b", "missing '}'"),
];

#[test]
fn expansion_errors_table() {
    let lex = Lexer::new('\\');
    let v = vars();
    for (input, want) in ERRORS {
        let err = lex.process_word(input, &v).expect_err(input).to_string();
        assert!(
            err.contains(want),
            "input {input:?}: error {err:?} lacks {want:?}"
        );
    }
}

#[test]
fn backtick_escape_and_raw_mode() {
    let lex = Lexer::new('`');
    let v = vars();
    assert_eq!(lex.process_word("`$A", &v).as_deref(), Ok("$A"));
    assert_eq!(
        lex.process_word("c:\\dir\\$A", &v).as_deref(),
        Ok("c:\\dir\\a")
    );
    let raw = Lexer::new('\\').with_raw();
    assert_eq!(
        raw.process_word("\"q $A\" \\$A", &v).as_deref(),
        Ok("\"q a\" \\$A")
    );
    let skip = Lexer::new('\\').with_skip_unset();
    assert_eq!(
        skip.process_word("$NOPE ${NOPE} $A", &v).as_deref(),
        Ok("$NOPE ${NOPE} a")
    );
}

/// Inputs that must fail however they were crafted, and why: nesting,
/// growth and pattern work are bounded so that a hostile Dockerfile gets an
/// error instead of a stack overflow or gigabytes of memory.
#[test]
fn limits_table() {
    let nested = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
    let big = "a".repeat(MAX_EXPANDED / 4 + 1);
    let long = "a".repeat(MAX_PATTERN_VALUE + 1);
    let vars: Vec<(String, String)> = [("BIG", big.as_str()), ("LONG", long.as_str()), ("A", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let rows: &[(String, Option<ShellError>)] = &[
        (nested(MAX_NESTING), None),
        (nested(MAX_NESTING + 1), Some(ShellError::TooDeep)),
        (nested(5000), Some(ShellError::TooDeep)),
        (
            format!("${{UNSET:-{}}}", nested(MAX_NESTING)),
            Some(ShellError::TooDeep),
        ),
        ("${BIG}${BIG}${BIG}".to_string(), None),
        (
            "${BIG}${BIG}${BIG}${BIG}${BIG}".to_string(),
            Some(ShellError::TooLong {
                limit: MAX_EXPANDED,
            }),
        ),
        (
            "\"${BIG}${BIG}${BIG}${BIG}${BIG}\"".to_string(),
            Some(ShellError::TooLong {
                limit: MAX_EXPANDED,
            }),
        ),
        (
            "${UNSET:-${BIG}${BIG}${BIG}${BIG}${BIG}}".to_string(),
            Some(ShellError::TooLong {
                limit: MAX_EXPANDED,
            }),
        ),
        (
            format!("${{LONG//a/{}}}", "b".repeat(4096)),
            Some(ShellError::PatternTooLong),
        ),
        ("${BIG:0:1}".to_string(), Some(ShellError::BadModifier('0'))),
        ("${LONG%%a}".to_string(), Some(ShellError::PatternTooLong)),
        (
            format!("${{A#{}}}", "*".repeat(MAX_PATTERN + 1)),
            Some(ShellError::PatternTooLong),
        ),
    ];
    let lex = Lexer::new('\\');
    for (input, want) in rows {
        let shown = &input[..input.len().min(40)];
        for split in [false, true] {
            let got = if split {
                lex.process_words(input, &vars).map(|_| ())
            } else {
                lex.process_word(input, &vars).map(|_| ())
            };
            match want {
                None => assert!(got.is_ok(), "{shown:?}: {got:?}"),
                Some(e) => assert_eq!(got.as_ref().err(), Some(e), "{shown:?}"),
            }
        }
    }
    // a replacement repeated for every character grows too
    let short: Vec<(String, String)> = vec![("S".to_string(), "a".repeat(4000))];
    let replace = format!("${{S//?/{}}}", "b".repeat(MAX_EXPANDED / 4000 + 1));
    assert_eq!(
        lex.process_word(&replace, &short),
        Err(ShellError::TooLong {
            limit: MAX_EXPANDED.max(replace.len())
        })
    );
}

#[test]
fn budget_is_shared_by_its_clones() {
    let lex = Lexer::new('\\');
    let vars = vec![("A".to_string(), "abcd".to_string())];
    let budget = Budget::new(14);
    let clone = budget.clone();
    assert_eq!(lex.process_word_in("$A", &vars, &budget).unwrap(), "abcd");
    assert_eq!(
        lex.process_words_in("$A $A", &vars, &clone).unwrap(),
        ["abcd", "abcd"]
    );
    assert_eq!(
        lex.process_word_in("$A", &vars, &budget),
        Err(ShellError::TooLong { limit: 14 })
    );
    // a failed charge takes nothing
    assert_eq!(lex.process_word_in("xy", &vars, &budget).unwrap(), "xy");
}

/// A COPY/ADD heredoc body with an unquoted delimiter, as BuildKit expands
/// it (`ExpandRaw`): variables expand inside quotes too, `\` escapes (and
/// is removed) whatever the Dockerfile's escape character, nothing splits.
const HEREDOC: &[(&str, &str)] = &[
    ("value=$A\n", "value=a\n"),
    ("'$A' \"$A\"\n", "'a' \"a\"\n"),
    ("\\$A \\${A} ${A}\n", "$A ${A} a\n"),
    ("a\\nb\\\\c\n", "anb\\c\n"),
    ("it's \"open\n", "it's \"open\n"),
    ("${UNSET:-'x y'}\n", "'x y'\n"),
    ("$B\n", "two words\n"),
    ("`$A\n", "`a\n"),
];

#[test]
fn heredoc_body_table() {
    let lex = Lexer::heredoc();
    let v = vars();
    for (input, want) in HEREDOC {
        assert_eq!(
            lex.process_word(input, &v).as_deref(),
            Ok(*want),
            "input {input:?}"
        );
    }
}
