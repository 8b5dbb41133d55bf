//! What snapshots, extraction and the wipe between stages leave alone in a
//! build root. In a root of its own (chroot mode) that is only the
//! `--ignore-path`s and the sandbox's `/proc`, `/sys` and `/dev`. In place
//! (the root is `/` of the executor's container) it is also every mount
//! point (`/etc/resolv.conf`, a Kubernetes secret, a CI volume), the
//! executor's own directory, the build context and `/var/run`, as kaniko
//! leaves them.

use super::FsError;
use super::root::Root;
use std::collections::BTreeSet;
use std::path::Path;

/// Relative paths (no leading `/`) with their subtrees.
#[derive(Debug, Clone, Default)]
pub struct RootIgnores {
    /// Never recorded, entered, written or removed.
    pub ignored: BTreeSet<String>,
    /// Recorded by snapshots but never entered (kernel filesystems:
    /// `proc`, `sys`, `dev`). Extraction in place leaves them alone too.
    pub shallow: BTreeSet<String>,
}

impl RootIgnores {
    /// `--ignore-path`s (relative) plus the kernel filesystems.
    pub fn new(ignore_paths: &[String]) -> RootIgnores {
        RootIgnores {
            ignored: ignore_paths.iter().cloned().collect(),
            shallow: ["proc", "sys", "dev"].map(String::from).into(),
        }
    }

    /// Also leaves `path` alone when it lies strictly inside `root`.
    pub fn add_inside(&mut self, root: &Path, path: &Path) {
        if let Ok(rel) = path.strip_prefix(root) {
            let rel = crate::lexpath::in_root(&crate::lexpath::from_os(rel.as_os_str()));
            if !rel.is_empty() {
                self.ignored.insert(rel);
            }
        }
    }

    /// Also leaves alone every mount point strictly inside `root`.
    pub fn add_mount_points(&mut self, root: &Path) -> Result<(), FsError> {
        for m in mount_points()? {
            self.add_inside(root, Path::new(&m));
        }
        Ok(())
    }

    /// Whether `rel` or a directory above it is ignored or shallow: what
    /// extraction in place must not touch.
    pub fn covers(&self, rel: &str) -> bool {
        let mut cur = rel;
        loop {
            if self.ignored.contains(cur) || self.shallow.contains(cur) {
                return true;
            }
            match cur.rsplit_once('/') {
                Some((parent, _)) => cur = parent,
                None => return false,
            }
        }
    }

    /// Whether something left alone lies strictly under `rel`.
    fn holds_kept(&self, rel: &str) -> bool {
        let prefix = format!("{rel}/");
        self.ignored
            .iter()
            .chain(&self.shallow)
            .any(|p| p.starts_with(&prefix))
    }
}

/// The mount points of this process's mount namespace, from
/// `/proc/self/mountinfo` (field 5, octal escapes decoded).
pub fn mount_points() -> Result<Vec<String>, FsError> {
    let text = fs_err::read_to_string("/proc/self/mountinfo")?;
    Ok(parse_mountinfo(&text))
}

fn parse_mountinfo(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_octal)
        .collect()
}

/// `\040` and friends, as the kernel escapes space, tab, newline and `\`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Removes everything under `root` that `ignores` does not keep, entering
/// only the directories that hold something kept (kaniko's
/// DeleteFilesystem between the stages of an in-place build).
pub fn wipe(root: &Path, ignores: &RootIgnores) -> Result<(), FsError> {
    clear_dir(&Root::open(root)?, "", ignores, &|_| false)
}

/// Removes what is under `rel` except what `ignores` keeps and what `keep`
/// says to keep (by relative path). A missing directory is empty already.
pub fn clear_dir(
    root: &Root,
    rel: &str,
    ignores: &RootIgnores,
    keep: &dyn Fn(&str) -> bool,
) -> Result<(), FsError> {
    if !root.is_dir(rel)? {
        return Ok(());
    }
    for (name, kind) in root.read_dir(rel)? {
        let child = crate::lexpath::child(rel, &name);
        if keep(&child) || ignores.ignored.contains(&child) || ignores.shallow.contains(&child) {
            continue;
        }
        if ignores.holds_kept(&child) && kind == rustix::fs::FileType::Directory {
            clear_dir(root, &child, ignores, keep)?;
        } else {
            root.remove(&child)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_fields_are_decoded() {
        let text = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    30 22 0:5 / /etc/resolv.conf rw - tmpfs tmpfs rw\n\
                    31 22 0:6 / /mnt/with\\040space rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mountinfo(text),
            ["/", "/etc/resolv.conf", "/mnt/with space"]
        );
    }

    #[test]
    fn wipe_keeps_ignored_paths_and_their_parents() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in ["etc/ssl", "kaniko/x", "proc/1", "usr/bin", "workspace/src"] {
            fs_err::create_dir_all(r.join(d)).unwrap();
        }
        for f in ["etc/passwd", "etc/resolv.conf", "usr/bin/sh", "top"] {
            fs_err::write(r.join(f), "x").unwrap();
        }
        let mut ig = RootIgnores::new(&["workspace".to_string()]);
        ig.add_inside(r, &r.join("kaniko"));
        ig.add_inside(r, &r.join("etc/resolv.conf"));
        ig.add_inside(r, r);
        assert!(ig.covers("proc/1/status") && ig.covers("kaniko") && !ig.covers("etc"));
        wipe(r, &ig).unwrap();
        let mut left: Vec<String> = walkdir(r);
        left.sort();
        assert_eq!(
            left,
            [
                "etc",
                "etc/resolv.conf",
                "kaniko",
                "kaniko/x",
                "proc",
                "proc/1",
                "workspace",
                "workspace/src"
            ]
        );
    }

    fn walkdir(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![String::new()];
        while let Some(rel) = todo.pop() {
            for e in fs_err::read_dir(root.join(&rel)).unwrap() {
                let e = e.unwrap();
                let child = crate::lexpath::child(&rel, &e.file_name().to_string_lossy());
                if e.file_type().unwrap().is_dir() {
                    todo.push(child.clone());
                }
                out.push(child);
            }
        }
        out
    }
}
