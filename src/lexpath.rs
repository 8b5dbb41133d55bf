//! Lexical operations on slash-separated paths, with Go's `path.Clean`
//! semantics (which docker applies to Dockerfile and `.dockerignore` paths).
//!
//! Pure string work: nothing here touches a filesystem or resolves links.

/// Returns the shortest path equivalent to `path` by purely lexical
/// processing: repeated slashes collapse, `.` elements go, `..` eats the
/// element before it (and at the root stays at the root). An empty result
/// is `"."`.
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_string();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Joins `rel` onto `base` unless `rel` is absolute, then cleans.
pub fn join(base: &str, rel: &str) -> String {
    if rel.starts_with('/') {
        clean(rel)
    } else {
        clean(&format!("{base}/{rel}"))
    }
}

/// The path made relative to `/` and cleaned, with `..` that would climb
/// above the root dropped: what a path inside an image or context means.
/// The root itself is `""`.
pub fn in_root(path: &str) -> String {
    let c = clean(&format!("/{path}"));
    c.trim_start_matches('/').to_string()
}

/// `name` under `parent`, both relative and clean; either may be empty
/// (the empty string is the root).
pub fn child(parent: &str, name: &str) -> String {
    match (parent.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (_, true) => parent.to_string(),
        _ => format!("{parent}/{name}"),
    }
}

/// Splits a relative path into its parent (`""` at the top) and last element.
pub fn split_last(rel: &str) -> (&str, &str) {
    match rel.rfind('/') {
        Some(i) => (&rel[..i], &rel[i + 1..]),
        None => ("", rel),
    }
}

/// The last element of a cleaned path (`"/"` for the root).
pub fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "." } else { "/" };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//a//b/", "/a/b"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("../a", "../a"),
            ("/../a", "/a"),
            ("a/b/../../..", ".."),
            ("./foo/", "foo"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn in_root_never_climbs() {
        assert_eq!(in_root("../../etc/passwd"), "etc/passwd");
        assert_eq!(in_root("/"), "");
        assert_eq!(in_root("a/../.."), "");
        assert_eq!(join("/srv", "app"), "/srv/app");
        assert_eq!(join("/srv", "/x/../y"), "/y");
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(base_name("/"), "/");
        assert_eq!(child("", "a"), "a");
        assert_eq!(child("a", ""), "a");
        assert_eq!(child("a", "b"), "a/b");
        assert_eq!(split_last("a/b/c"), ("a/b", "c"));
        assert_eq!(split_last("c"), ("", "c"));
    }
}
