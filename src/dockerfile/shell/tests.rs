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
