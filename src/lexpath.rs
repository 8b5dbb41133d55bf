//! Lexical operations on slash-separated paths, with Go's `path.Clean`
//! semantics (which docker applies to Dockerfile and `.dockerignore` paths).
//!
//! Pure string work: nothing here touches a filesystem or resolves links.
//!
//! File names are bytes, not always UTF-8. A name that is not is carried
//! in a `String` losslessly ([`from_bytes`] / [`to_bytes`]): each byte of
//! an invalid sequence becomes one of the 128 last code points of plane 16
//! (U+10FF80 + byte - 0x80), which real names never use; the rare name
//! that does use them has those characters escaped the same way, byte by
//! byte, so decoding gives back exactly the bytes that were encoded. `/`,
//! `.` and `..` are ASCII and untouched, so the operations below work on
//! encoded names as on any other.

use std::borrow::Cow;

/// The first code point standing for a raw byte (byte 0x80).
const RAW_BASE: u32 = 0x10_FF80;

fn is_raw(c: char) -> bool {
    u32::from(c) >= RAW_BASE
}

fn push_raw(out: &mut String, byte: u8) {
    // 0x10FF80..=0x10FFFF are all valid scalar values
    out.extend(char::from_u32(RAW_BASE + u32::from(byte) - 0x80));
}

/// A file name's bytes as a `String`, losslessly (see the module doc).
pub fn from_bytes(bytes: &[u8]) -> String {
    // every code point at or above RAW_BASE starts with 0xF4
    if !bytes.contains(&0xF4)
        && let Ok(s) = std::str::from_utf8(bytes)
    {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if is_raw(c) {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_raw(&mut out, b);
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            push_raw(&mut out, *b);
        }
    }
    out
}

/// `s` for a message: bytes that are not UTF-8 as `\xNN`, control
/// characters escaped, so no raw byte of a name reaches a terminal.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| is_raw(c) || c.is_control()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_raw(c) {
            out.push_str(&format!("\\x{:02x}", u32::from(c) - RAW_BASE + 0x80));
        } else if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// An OS string (a file name or link target) as a `String`, losslessly.
pub fn from_os(name: &std::ffi::OsStr) -> String {
    from_bytes(std::os::unix::ffi::OsStrExt::as_bytes(name))
}

/// The bytes a [`from_bytes`] string stands for.
pub fn to_bytes(s: &str) -> Cow<'_, [u8]> {
    if !s.as_bytes().contains(&0xF4) {
        return Cow::Borrowed(s.as_bytes());
    }
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        if is_raw(c) {
            // RAW_BASE + 0x7F at most: the byte fits
            out.push((u32::from(c) - RAW_BASE + 0x80) as u8);
        } else {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
    Cow::Owned(out)
}

/// [`to_bytes`] as an OS string, for the file system.
pub fn to_os(s: &str) -> Cow<'_, std::ffi::OsStr> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    match to_bytes(s) {
        Cow::Borrowed(b) => Cow::Borrowed(std::ffi::OsStr::from_bytes(b)),
        Cow::Owned(v) => Cow::Owned(std::ffi::OsString::from_vec(v)),
    }
}

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

    #[test]
    fn names_that_are_not_utf8_round_trip() {
        let cases: [&[u8]; 7] = [
            b"plain",
            b"caf\xc3\xa9",
            b"latin1-\xe9t\xe9",
            b"\xff\xfe/\x80",
            // a real U+10FF80 and U+10FFFF, escaped byte by byte
            "x\u{10FF80}y\u{10FFFF}".as_bytes(),
            b"\xf4\x8f\xbe",
            b"",
        ];
        let mut seen = std::collections::HashSet::new();
        for bytes in cases {
            let s = from_bytes(bytes);
            assert_eq!(to_bytes(&s).as_ref(), bytes, "{s:?}");
            assert!(seen.insert(s), "two names encode the same");
        }
        assert_eq!(from_bytes(b"a/b"), "a/b");
        assert_eq!(child(&from_bytes(b"d\xff"), "x"), from_bytes(b"d\xff/x"));
    }
}
