//! Resolving a path inside a build root the way the kernel would inside a
//! chroot: symlinks are followed, but an absolute link or `..` never leaves
//! the root. Every write into a root goes through here first; the path it
//! gives holds no symlink, and [`super::root::Root`] acts on it with the
//! kernel refusing any symlink that appeared since.

use super::FsError;
use super::root::Root;
use std::collections::VecDeque;
use std::path::Path;

const MAX_LINKS: usize = 255;

/// Resolves `path` (taken relative to `root`, may hold symlinks and `..`)
/// to the real path under `root`, relative and without a leading `/`
/// (`""` is the root itself). The last element is followed when it is a
/// symlink only if `follow_last`. Missing elements are kept as written.
pub fn resolve(root: &Path, path: &str, follow_last: bool) -> Result<String, FsError> {
    resolve_in(&Root::open(root)?, path, follow_last)
}

/// [`resolve`] in an open root.
pub fn resolve_in(root: &Root, path: &str, follow_last: bool) -> Result<String, FsError> {
    resolve_traced_in(root, path, follow_last, &mut Vec::new())
}

/// [`resolve`], also pushing onto `followed` the real path of every symlink
/// followed on the way (so the same resolution can be rebuilt elsewhere).
pub fn resolve_traced(
    root: &Path,
    path: &str,
    follow_last: bool,
    followed: &mut Vec<String>,
) -> Result<String, FsError> {
    resolve_traced_in(&Root::open(root)?, path, follow_last, followed)
}

/// [`resolve_traced`] in an open root.
pub fn resolve_traced_in(
    root: &Root,
    path: &str,
    follow_last: bool,
    followed: &mut Vec<String>,
) -> Result<String, FsError> {
    let mut todo: VecDeque<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop_front() {
        match part.as_str() {
            "." => continue,
            ".." => {
                cur.pop();
                continue;
            }
            _ => {}
        }
        let is_last = todo.is_empty();
        cur.push(part);
        if is_last && !follow_last {
            break;
        }
        let rel = cur.join("/");
        if root.kind(&rel)? != Some(rustix::fs::FileType::Symlink) {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            return Err(FsError::path(
                format!("/{path}"),
                "too many levels of symbolic links",
            ));
        }
        let target = crate::lexpath::from_os(&root.read_link(&rel)?);
        followed.push(rel);
        cur.pop();
        if target.starts_with('/') {
            cur.clear();
        }
        for (i, p) in target.split('/').filter(|s| !s.is_empty()).enumerate() {
            todo.insert(i, p.to_string());
        }
    }
    Ok(cur.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_stay_inside_the_root() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = t.path();
        fs_err::create_dir_all(r.join("l/real")).expect("mkdir");
        symlink("/l/real", r.join("l/abs-dir")).expect("symlink");
        symlink("real", r.join("l/rel")).expect("symlink");
        symlink("../../../../etc", r.join("escape")).expect("symlink");
        symlink("/l/loop2", r.join("l/loop1")).expect("symlink");
        symlink("/l/loop1", r.join("l/loop2")).expect("symlink");
        assert_eq!(
            resolve(r, "/l/abs-dir/x.txt", true).expect("ok"),
            "l/real/x.txt"
        );
        assert_eq!(resolve(r, "l/rel/x", false).expect("ok"), "l/real/x");
        assert_eq!(resolve(r, "l/abs-dir", false).expect("ok"), "l/abs-dir");
        assert_eq!(resolve(r, "l/abs-dir", true).expect("ok"), "l/real");
        assert_eq!(resolve(r, "escape/passwd", true).expect("ok"), "etc/passwd");
        assert_eq!(resolve(r, "../../x", true).expect("ok"), "x");
        assert!(resolve(r, "l/loop1/x", true).is_err());
        assert_eq!(resolve(r, "/", true).expect("ok"), "");
    }
}
