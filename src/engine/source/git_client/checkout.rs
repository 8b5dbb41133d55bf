//! A commit's tree written out: files 0644 or 0755, symlinks as symlinks,
//! a gitlink (a submodule's commit) as an empty directory returned to the
//! caller. Every name is checked as git's checkout checks it (not empty,
//! no `/` or NUL, not `.` or `..`, not `.git` in any case), and every
//! write goes through `fs::Root`, beneath the checkout without following
//! a symlink: a tree that names a path through a symlink it made, or twice,
//! fails instead of writing anywhere.

use super::pack::{Kind, Oid, Pack, hex, parse_oid};
use crate::fs::root::Root;
use std::io::Write;

/// A tree's entry.
struct Entry<'a> {
    mode: u32,
    name: &'a [u8],
    oid: Oid,
}

fn entries(data: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let bad = || "a tree in the pack is not git's".to_string();
        let space = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let mode = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .ok_or_else(bad)?;
        rest = &rest[space + 1..];
        let nul = rest.iter().position(|b| *b == 0).ok_or_else(bad)?;
        let name = &rest[..nul];
        rest = &rest[nul + 1..];
        let oid: Oid = rest
            .get(..20)
            .and_then(|o| o.try_into().ok())
            .ok_or_else(bad)?;
        rest = &rest[20..];
        out.push(Entry { mode, name, oid });
    }
    Ok(out)
}

/// An object the checkout needs, of the kind it needs.
fn object(pack: &Pack, oid: &Oid, kind: Kind) -> Result<std::sync::Arc<Vec<u8>>, String> {
    match pack.get(oid)? {
        Some((k, data)) if k == kind => Ok(data),
        Some((k, _)) => Err(format!("object {} is a {k:?}, not a {kind:?}", hex(oid))),
        None => Err(format!(
            "object {} is not in the pack the server sent",
            hex(oid)
        )),
    }
}

/// The tree of `commit` (an annotated tag is peeled to its commit).
pub fn commit_tree(pack: &Pack, commit: &Oid) -> Result<Oid, String> {
    let mut oid = *commit;
    for _ in 0..16 {
        let (kind, data) = pack
            .get(&oid)?
            .ok_or_else(|| format!("commit {} is not in the pack the server sent", hex(&oid)))?;
        let field = |key: &str| {
            data.split(|b| *b == b'\n')
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(key.as_bytes()))
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(parse_oid)
        };
        match kind {
            Kind::Commit => {
                return field("tree ").ok_or_else(|| format!("commit {} names no tree", hex(&oid)));
            }
            Kind::Tag => {
                oid =
                    field("object ").ok_or_else(|| format!("tag {} names no object", hex(&oid)))?;
            }
            k => return Err(format!("{} is a {k:?}, not a commit", hex(&oid))),
        }
    }
    Err("tags nest too deep".to_string())
}

/// Whether git would check out an entry of this name.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.eq_ignore_ascii_case(b".git")
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// Writes `tree` (or its sub-directory `subdir`) at `prefix` in `root`;
/// returns the gitlinks in it (their paths in the repository, their
/// commits). Directories on the way to `subdir` are made; a `subdir` that
/// is not a directory of the tree writes nothing.
pub fn write(
    pack: &Pack,
    tree: &Oid,
    root: &Root,
    prefix: &str,
    subdir: Option<&str>,
) -> Result<Vec<(String, Oid)>, String> {
    let mut tree = *tree;
    let mut at = prefix.to_string();
    let mut repo_path = String::new();
    for part in subdir.unwrap_or("").split('/').filter(|p| !p.is_empty()) {
        let data = object(pack, &tree, Kind::Tree)?;
        let Some(e) = entries(&data)?
            .into_iter()
            .find(|e| e.name == part.as_bytes() && e.mode == 0o40000)
        else {
            return Ok(Vec::new());
        };
        if !valid_name(e.name) {
            return Err(format!("the repository holds a path git refuses: {part:?}"));
        }
        tree = e.oid;
        at = join(&at, part);
        repo_path = join(&repo_path, part);
        root.create_dir(&at, 0o755).map_err(|e| e.to_string())?;
        root.chmod(&at, 0o755).map_err(|e| e.to_string())?;
    }
    let mut gitlinks = Vec::new();
    write_tree(pack, &tree, root, &at, &repo_path, &mut gitlinks)?;
    Ok(gitlinks)
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn write_tree(
    pack: &Pack,
    tree: &Oid,
    root: &Root,
    at: &str,
    repo_path: &str,
    gitlinks: &mut Vec<(String, Oid)>,
) -> Result<(), String> {
    if let Some(s) = crate::engine::interrupt::signal() {
        return Err(format!(
            "stopped by {}",
            crate::engine::interrupt::signal_name(s)
        ));
    }
    let data = object(pack, tree, Kind::Tree)?;
    let mut seen = std::collections::HashSet::new();
    for e in entries(&data)? {
        let name = crate::lexpath::from_bytes(e.name);
        if !seen.insert(e.name) {
            // git fsck's duplicateEntries: a symlink and a directory of
            // one name would have the second written through the first
            return Err(format!(
                "the repository's tree names /{} twice (git fsck refuses such a tree)",
                crate::lexpath::printable(&join(at, &name))
            ));
        }
        if !valid_name(e.name) {
            return Err(format!(
                "the repository holds a path git refuses: {:?} in /{at}",
                crate::lexpath::printable(&name)
            ));
        }
        let rel = join(at, &name);
        let fail = |e: crate::fs::FsError| format!("writing the checkout: {e}");
        match e.mode {
            0o40000 => {
                root.create_dir(&rel, 0o755).map_err(fail)?;
                root.chmod(&rel, 0o755).map_err(fail)?;
                write_tree(pack, &e.oid, root, &rel, &join(repo_path, &name), gitlinks)?;
            }
            0o100644 | 0o100755 | 0o100664 => {
                let mode = if e.mode & 0o100 != 0 { 0o755 } else { 0o644 };
                let blob = object(pack, &e.oid, Kind::Blob)?;
                let mut file = root.create_file(&rel, mode).map_err(fail)?;
                file.write_all(&blob)
                    .map_err(|err| format!("writing the checkout: /{rel}: {err}"))?;
                drop(file);
                root.chmod(&rel, mode).map_err(fail)?;
            }
            0o120000 => {
                let target = object(pack, &e.oid, Kind::Blob)?;
                if target.is_empty() || target.contains(&0) {
                    return Err(format!(
                        "the repository holds a symlink git refuses: /{rel}"
                    ));
                }
                use std::os::unix::ffi::OsStrExt;
                root.symlink(std::ffi::OsStr::from_bytes(&target), &rel)
                    .map_err(fail)?;
            }
            0o160000 => {
                root.create_dir(&rel, 0o755).map_err(fail)?;
                root.chmod(&rel, 0o755).map_err(fail)?;
                gitlinks.push((join(repo_path, &name), e.oid));
            }
            mode => {
                return Err(format!(
                    "the repository holds an entry of unknown mode {mode:o}: /{rel}"
                ));
            }
        }
    }
    Ok(())
}

/// A `.gitmodules` entry.
#[derive(Debug, PartialEq, Eq)]
pub struct Module {
    pub path: String,
    pub url: String,
}

/// The submodules `.gitmodules` of `tree` lists.
pub fn gitmodules(pack: &Pack, tree: &Oid) -> Result<Vec<Module>, String> {
    let data = object(pack, tree, Kind::Tree)?;
    let Some(e) = entries(&data)?
        .into_iter()
        .find(|e| e.name == b".gitmodules" && e.mode & 0o170000 == 0o100000)
    else {
        return Ok(Vec::new());
    };
    let text = object(pack, &e.oid, Kind::Blob)?;
    Ok(parse_gitmodules(&String::from_utf8_lossy(&text)))
}

/// git's config syntax, as much as `.gitmodules` uses: `[submodule
/// "name"]` sections with `path` and `url`.
fn parse_gitmodules(text: &str) -> Vec<Module> {
    let mut out = Vec::new();
    let mut current: Option<(Option<String>, Option<String>)> = None;
    let finish = |c: Option<(Option<String>, Option<String>)>, out: &mut Vec<Module>| {
        if let Some((Some(path), Some(url))) = c {
            out.push(Module { path, url });
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            finish(current.take(), &mut out);
            let is_submodule = line
                .trim_start_matches('[')
                .trim_start()
                .starts_with("submodule");
            current = is_submodule.then_some((None, None));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
            .to_string();
        if let Some((path, url)) = &mut current {
            match key.trim().to_ascii_lowercase().as_str() {
                "path" => *path = Some(value.trim_matches('/').to_string()),
                "url" => *url = Some(value),
                _ => {}
            }
        }
    }
    finish(current.take(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_gitmodules() {
        for bad in [&b""[..], b".", b"..", b".git", b".GiT", b"a/b", b"a\0"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_name(b".gitignore") && valid_name(b"..x"));
        let m = parse_gitmodules(
            "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib.git\n[core]\n\tx = y\n\
             [submodule \"b\"]\n  url = \"https://h/b.git\"\n  path = deps/b\n",
        );
        assert_eq!(
            m,
            [
                Module {
                    path: "lib".into(),
                    url: "../lib.git".into()
                },
                Module {
                    path: "deps/b".into(),
                    url: "https://h/b.git".into()
                }
            ]
        );
    }
}
