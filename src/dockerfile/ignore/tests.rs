//! `.dockerignore` table: (patterns, path, excluded). Cases written for
//! smelt from docker's documented rules.

use super::*;

const CASES: &[(&str, &str, bool)] = &[
    ("*.tmp", "top.tmp", true),
    ("*.tmp", "a/b.tmp", false),
    ("**/*.tmp", "a/b/c.tmp", true),
    ("**/*.tmp", "top.tmp", true),
    ("**", "anything/at/all", true),
    ("a/**", "a/b/c", true),
    ("a/**", "b/a/c", false),
    ("a/**/c", "a/c", true),
    ("a/**/c", "a/x/y/c", true),
    ("a/**/c", "a/x/y/d", false),
    ("drop", "drop/deep/d2", true),
    ("drop", "dropped", false),
    ("/drop", "drop/d1", true),
    ("./drop", "drop/d1", true),
    ("drop/", "drop/d1", true),
    ("logs/*.log\n!logs/important.log", "logs/x.log", true),
    (
        "logs/*.log\n!logs/important.log",
        "logs/important.log",
        false,
    ),
    (
        "!logs/important.log\nlogs/*.log",
        "logs/important.log",
        true,
    ),
    ("*\n!keep", "keep/k1", false),
    ("*\n!keep", "other", true),
    ("# comment\n*.md", "README.md", true),
    ("# *.md", "README.md", false),
    (" *.md ", "README.md", true),
    ("?.txt", "a.txt", true),
    ("?.txt", "ab.txt", false),
    ("[a-c].txt", "b.txt", true),
    ("[a-c].txt", "d.txt", false),
    ("[^a-c].txt", "d.txt", true),
    ("\\*.txt", "*.txt", true),
    ("\\*.txt", "a.txt", false),
    ("a/*/c", "a/b/c", true),
    ("a/*/c", "a/b/x/c", false),
    ("*/b", "a/b/c", true),
    ("nested/a/b/*.tmp", "nested/a/b/c.tmp", true),
    ("../x", "x", false),
    ("", "x", false),
    ("x\n!x/y", "x/y", false),
    ("x\n!x/y", "x/z", true),
    ("*.log\n!*.log\nkeep/k2.log", "keep/k2.log", true),
    ("Dockerfile", "Dockerfile", true),
    // patternmatcher's suffix match: `**` then only literal characters
    // takes any path ending in them
    ("**.log", "a/b/x.log", true),
    ("**.log", "x.log", true),
    ("**.log", "x.log.1", false),
    ("**foo", "barfoo", true),
    ("**foo", "a/barfoo/c", true),
    ("**/foo", "foo", true),
    ("**/foo", "a/b/foo", true),
    ("**/foo", "barfoo", false),
    ("**/foo.txt\n!**/keep/foo.txt", "keep/foo.txt", false),
    ("**/foo.txt\n!**/keep/foo.txt", "a/foo.txt", true),
    // decided from the top down as BuildKit's walk does: the second `x`
    // was not tried on the parent (already excluded there), and the path
    // itself does not match it, so the exception stands
    ("x\n!x/y\nx", "x/y", false),
    ("x\n!x/y\nx", "x/y/z", false),
    ("x\n!x/y\nx", "x/w", true),
    ("a/*\n!a/b/c", "a/b/c/d", false),
    ("a/*\n!a/b/c", "a/b/d", true),
    // with any glob after it, `**` is `(.*/)?` again
    ("**x*.log", "ax.log", false),
    ("**x*.log", "a/x1.log", true),
];

#[test]
fn dockerignore_table() {
    for (patterns, path, want) in CASES {
        let ig = DockerIgnore::parse(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"));
        assert_eq!(
            ig.is_excluded(path),
            *want,
            "patterns {patterns:?} path {path:?}"
        );
    }
}

#[test]
fn dockerignore_errors() {
    assert_eq!(
        DockerIgnore::parse("ok\n!").unwrap_err(),
        IgnoreError::EmptyExclusion { line: 2 }
    );
    assert!(matches!(
        DockerIgnore::parse("[a-").unwrap_err(),
        IgnoreError::BadPattern { line: 1, .. }
    ));
    assert!(DockerIgnore::parse("a\n!b").is_ok_and(|i| i.has_exceptions()));
}

#[test]
fn copy_globs_do_not_cross_slashes() {
    let g = Glob::new("dir/*.txt", Flavor::GoPath).expect("valid");
    assert!(g.matches("dir/a.txt"));
    assert!(!g.matches("dir/sub/a.txt"));
    let g = Glob::new("**.txt", Flavor::GoPath).expect("valid");
    assert!(!g.matches("a/b.txt"));
}

/// The one-pass matcher against the backtracking one, on the cases where
/// `**/` must end at a slash, and on patterns long enough that recursing
/// once per token would overflow the stack.
#[test]
fn one_pass_matcher_table() {
    let rows: &[(&str, Flavor, &str, bool)] = &[
        ("**/b", Flavor::DockerIgnore, "b", true),
        ("**/b", Flavor::DockerIgnore, "a/b", true),
        ("**/b", Flavor::DockerIgnore, "ab", false),
        ("a/**/b", Flavor::DockerIgnore, "a/b", true),
        ("a/**/b", Flavor::DockerIgnore, "a/x/y/b", true),
        ("a/**/b", Flavor::DockerIgnore, "a/xb", false),
        ("a/**", Flavor::DockerIgnore, "a/x/y", true),
        ("*.go", Flavor::DockerIgnore, "a/b.go", false),
        ("*.go", Flavor::Shell, "a/b.go", true),
        ("a?c", Flavor::GoPath, "a/c", false),
        ("[^a]b", Flavor::GoPath, "/b", false),
        ("[^a]b", Flavor::Shell, "/b", true),
    ];
    for (pattern, flavor, text, want) in rows {
        let glob = Glob::new(pattern, *flavor).unwrap();
        assert_eq!(glob.matches(text), *want, "{pattern:?} {flavor:?} {text:?}");
        assert_eq!(
            glob.matches_backtracking(text),
            *want,
            "{pattern:?} {text:?}"
        );
    }
    let long = "a".repeat(1 << 16);
    for flavor in [Flavor::Shell, Flavor::GoPath, Flavor::DockerIgnore] {
        let glob = Glob::new(&format!("{long}*"), flavor).unwrap();
        assert!(glob.matches(&long));
        assert!(!glob.matches(&long[1..]));
    }
    let ignore = DockerIgnore::parse(&format!("{long}/**\n")).unwrap();
    assert!(ignore.is_excluded(&format!("{long}/x")));
}

/// `--exclude` patterns: no comments, `!` exceptions, a leading `/` kept
/// (patternmatcher matches it against relative paths, so never), bad ones
/// named.
#[test]
fn exclude_flags_read_as_patternmatcher_does() {
    let set = |p: &[&str]| {
        DockerIgnore::from_patterns(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let ex = set(&["#x", " *.md ", "", "!KEEP.md", "/abs", "./dir/"]).unwrap();
    assert!(ex.is_excluded("#x") && ex.is_excluded("a.md") && !ex.is_excluded("KEEP.md"));
    assert!(ex.is_excluded("dir/f") && !ex.is_excluded("abs") && !ex.is_excluded("sub/a.md"));
    assert!(ex.has_exceptions() && !ex.is_empty());
    assert!(set(&[" ", ""]).unwrap().is_empty());
    assert_eq!(
        set(&["ok", "!"]).unwrap_err().to_string(),
        "--exclude=\"!\": invalid exclude pattern"
    );
    assert_eq!(
        set(&["a[", "ok"]).unwrap_err(),
        IgnoreError::BadExclude {
            pattern: "a[".to_string()
        }
    );
}
