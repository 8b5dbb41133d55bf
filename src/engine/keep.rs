//! Keeping only what later stages read of a finished stage (or of a
//! `COPY --from` image): the paths its `COPY --from` sources match, with
//! the symlinks followed to reach them, so the same sources resolve the
//! same way in the kept tree. Everything else of the root is dropped.
//!
//! A source that matches nothing fails here, naming the COPY line, before
//! the stage that reads it starts.

use super::EngineError;
use super::context::{SourceTree, SourceTreeError};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What was kept, for the log.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    /// Top-level paths kept (subtrees and files).
    pub paths: usize,
    /// Entries in them, and the bytes of their regular files.
    pub entries: u64,
    pub bytes: u64,
}

/// How the kept paths leave `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Renamed out of a root that is removed afterwards.
    Move,
    /// Copied, leaving the root as it is (`/` in place).
    Copy,
}

/// A source that matched nothing: its COPY's line and why.
#[derive(Debug)]
pub struct Missing {
    pub line: usize,
    pub message: SourceTreeError,
}

/// What to keep of a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Real paths matched, none inside another, sorted.
    pub tops: Vec<String>,
    /// Symlinks followed to reach them, outside `tops`.
    pub links: Vec<String>,
}

/// The real paths `sources` match in `tree`, and the symlinks followed to
/// reach them. `None` when a source names the whole root.
pub fn select(
    tree: &SourceTree,
    sources: &[(String, usize)],
) -> Result<Option<Selection>, Missing> {
    let mut links = Vec::new();
    let mut reals = Vec::new();
    // a glob matching nothing is only an error when nothing else of its
    // COPY matches (BuildKit skips it next to other sources)
    let mut empty: Vec<(usize, &str)> = Vec::new();
    let mut matched_lines = Vec::new();
    for (source, line) in sources {
        let matches = tree
            .expand_matches(source, &mut links)
            .map_err(|message| Missing {
                line: *line,
                message,
            })?;
        if matches.is_empty() {
            empty.push((*line, source));
        } else {
            matched_lines.push(*line);
        }
        reals.extend(matches.into_iter().map(|m| m.real));
    }
    if let Some((line, source)) = empty.into_iter().find(|(l, _)| !matched_lines.contains(l)) {
        return Err(Missing {
            line,
            message: tree.nothing_matches(source),
        });
    }
    if reals.iter().any(String::is_empty) {
        return Ok(None);
    }
    let tops = outermost(reals);
    links.sort();
    links.dedup();
    links.retain(|l| !tops.iter().any(|t| is_within(l, t)));
    Ok(Some(Selection { tops, links }))
}

/// Puts the selection's paths (with their subtrees) and links (recreated)
/// of `from` at the same paths under the empty directory `into`.
pub fn transfer(
    from: &Path,
    into: &Path,
    selection: &Selection,
    how: Transfer,
) -> Result<Kept, EngineError> {
    let Selection { tops, links } = selection;
    let mut kept = Kept {
        paths: tops.len(),
        ..Kept::default()
    };
    // the paths were resolved in this root, so none runs through a
    // symlink: the kernel checks that before anything moves or is copied
    // by path (nothing has written into the finished stage since)
    let root = crate::fs::root::Root::open(from)?;
    for rel in tops.iter().chain(links) {
        root.lstat(rel)?;
    }
    for link in links {
        let target = fs_err::read_link(from.join(link))?;
        make_parents(into, link)?;
        std::os::unix::fs::symlink(&target, into.join(link))
            .map_err(|e| EngineError::Invalid(format!("keeping /{link}: {e}")))?;
    }
    let mut to_copy = Vec::new();
    for top in tops {
        count(&from.join(top), &mut kept)?;
        make_parents(into, top)?;
        if how == Transfer::Move {
            match fs_err::rename(from.join(top), into.join(top)) {
                Ok(()) => continue,
                // another filesystem: copied below
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {}
                Err(e) => return Err(e.into()),
            }
        }
        to_copy.push(top.as_str());
    }
    if !to_copy.is_empty() {
        // one `cp` for all, so hard links between the paths stay links
        copy_paths(from, &to_copy, into)?;
    }
    Ok(kept)
}

/// Copies a stage root into a child stage's (empty) root, keeping owners,
/// modes, times, links and xattrs (`cp -a`).
pub fn copy_tree(from: &Path, to: &Path) -> Result<(), EngineError> {
    // `from/.` into the existing `to`: the contents, and the root's own
    // owner, mode and times
    let mut cmd = std::process::Command::new("cp");
    cmd.arg("-a")
        .arg("--reflink=auto")
        .arg(from.join("."))
        .arg(to);
    run_cp(cmd, from, to)
}

/// Copies `rels` of `from` (with their subtrees) to the same paths under
/// `into`, as `cp -a --parents` would: owners, modes, times (seconds, as
/// layers carry them), symlinks, FIFOs and device nodes, xattrs, and the
/// hard links among the copied files. In process: in the executor image
/// (FROM scratch) there is no `cp` to start.
fn copy_paths(from: &Path, rels: &[&str], into: &Path) -> Result<(), EngineError> {
    let mut copy = TreeCopy {
        src: crate::fs::root::Root::open(from)?,
        dst: crate::fs::root::Root::open(into)?,
        linked: std::collections::HashMap::new(),
        dirs: Vec::new(),
    };
    for rel in rels {
        copy.entry(rel)?;
    }
    // directories' times last, the deepest first: filling a directory
    // changed its mtime
    for (rel, mtime) in copy.dirs.iter().rev() {
        copy.dst.set_mtime(rel, *mtime)?;
    }
    Ok(())
}

struct TreeCopy {
    src: crate::fs::root::Root,
    dst: crate::fs::root::Root,
    /// The first copy of each file with more than one link, by (dev, ino).
    linked: std::collections::HashMap<(u64, u64), String>,
    /// Directories copied, parents before children, with their mtimes.
    dirs: Vec<(String, i64)>,
}

impl TreeCopy {
    fn entry(&mut self, rel: &str) -> Result<(), EngineError> {
        use rustix::fs::FileType;
        let st = self.src.lstat(rel)?.ok_or_else(|| {
            EngineError::Invalid(format!("keeping /{rel}: it went away while copied"))
        })?;
        let kind = FileType::from_raw_mode(st.st_mode);
        let mode = st.st_mode & 0o7777;
        if kind != FileType::Directory && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.linked.get(&key) {
                self.dst.hard_link(first, rel)?;
                return Ok(());
            }
            self.linked.insert(key, rel.to_string());
        }
        match kind {
            FileType::Directory => {
                self.dst.create_dir(rel, 0o700)?;
                for (name, _) in self.src.read_dir(rel)? {
                    self.entry(&format!("{rel}/{name}"))?;
                }
                self.dirs.push((rel.to_string(), st.st_mtime));
            }
            FileType::RegularFile => {
                let mut r = self.src.open_file(rel)?;
                let mut w = self.dst.create_file(rel, 0o600)?;
                std::io::copy(&mut r, &mut w)
                    .map_err(|e| EngineError::Invalid(format!("keeping /{rel}: {e}")))?;
            }
            FileType::Symlink => self.dst.symlink(&self.src.read_link(rel)?, rel)?,
            kind => self.dst.mknod(rel, kind, mode, st.st_rdev)?,
        }
        // owner, then mode (a chown clears set-id bits), then xattrs (it
        // clears security.capability too)
        self.dst.chown(rel, st.st_uid, st.st_gid)?;
        if kind != FileType::Symlink {
            self.dst.chmod(rel, mode)?;
        }
        for (key, value) in self.src.xattrs(rel)? {
            if let Err(e) = self.dst.set_xattr(rel, &key, &value) {
                log::debug!("not kept: {e}");
            }
        }
        if kind != FileType::Directory {
            self.dst.set_mtime(rel, st.st_mtime)?;
        }
        Ok(())
    }
}

fn run_cp(mut cmd: std::process::Command, from: &Path, to: &Path) -> Result<(), EngineError> {
    let what = || format!("copying {} to {}", from.display(), to.display());
    let status = cmd
        .status()
        .map_err(|e| EngineError::Invalid(format!("{}: {e}", what())))?;
    if !status.success() {
        return Err(EngineError::Invalid(format!(
            "{} failed ({status})",
            what()
        )));
    }
    Ok(())
}

/// Counts the entries and file bytes of the tree at `path`.
fn count(path: &Path, kept: &mut Kept) -> Result<(), EngineError> {
    let meta = fs_err::symlink_metadata(path)?;
    kept.entries += 1;
    if meta.is_file() {
        kept.bytes += meta.size();
    } else if meta.is_dir() {
        for entry in fs_err::read_dir(path)? {
            count(&entry?.path(), kept)?;
        }
    }
    Ok(())
}

/// The paths of `paths` that are not inside another one, sorted.
fn outermost(mut paths: Vec<String>) -> Vec<String> {
    paths.sort();
    paths.dedup();
    let mut tops: Vec<String> = Vec::new();
    for p in paths {
        // sorted: an ancestor comes before everything inside it
        if !tops.last().is_some_and(|t| is_within(&p, t)) {
            tops.push(p);
        }
    }
    tops
}

/// Whether `path` is `dir` or below it (both relative, cleaned).
fn is_within(path: &str, dir: &str) -> bool {
    path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `mkdir -p` of the parent of `rel` under `into` (default owner and mode:
/// a COPY reads only the matched paths' own metadata).
fn make_parents(into: &Path, rel: &str) -> Result<(), EngineError> {
    let (parent, _) = crate::lexpath::split_last(rel);
    if !parent.is_empty() {
        fs_err::create_dir_all(into.join(parent))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn keeps_matches_and_the_links_to_them_and_nothing_else() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        for d in ["real/sub", "dir", "junk"] {
            fs_err::create_dir_all(root.join(d)).unwrap();
        }
        fs_err::write(root.join("real/sub/a"), "a").unwrap();
        fs_err::write(root.join("real/b"), "bb").unwrap();
        fs_err::write(root.join("junk/big"), vec![0u8; 4096]).unwrap();
        fs_err::write(root.join("dir/x.txt"), "x").unwrap();
        fs_err::write(root.join("dir/y.bin"), "y").unwrap();
        symlink("/real", root.join("via")).unwrap();
        symlink("../real/b", root.join("dir/b.txt")).unwrap();
        let tree = SourceTree::stage(root.clone(), "stage s".to_string());
        let sources = [
            ("/via/sub".to_string(), 3),
            ("/dir/*.txt".to_string(), 4),
            ("/real/sub/a".to_string(), 5),
        ];
        let selection = select(&tree, &sources).unwrap().unwrap();
        assert_eq!(selection.tops, ["dir/x.txt", "real/b", "real/sub"]);
        assert_eq!(selection.links, ["dir/b.txt", "via"]);
        let before: Vec<_> = sources
            .iter()
            .map(|(s, _)| tree.expand(s).unwrap())
            .collect();
        let into = t.path().join("kept");
        fs_err::create_dir(&into).unwrap();
        let kept = transfer(&root, &into, &selection, Transfer::Move).unwrap();
        assert_eq!(kept.paths, 3);
        assert_eq!(kept.bytes, 4);
        assert!(!root.join("real/sub").exists());
        assert!(!into.join("junk").exists());
        assert!(!into.join("dir/y.bin").exists());
        // the sources resolve as they did in the stage
        let kept_tree = SourceTree::stage(into.clone(), "kept".to_string());
        for ((source, _), want) in sources.iter().zip(&before) {
            assert_eq!(&kept_tree.expand(source).unwrap(), want, "{source}");
        }
        assert_eq!(
            fs_err::read_to_string(into.join("real/sub/a")).unwrap(),
            "a"
        );
        let missing = select(&tree, &[("/nope/*".to_string(), 9)]).unwrap_err();
        assert_eq!(missing.line, 9);
        assert!(
            select(&tree, &[("/via/..".to_string(), 2)])
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn copying_leaves_the_root_and_keeps_hard_links_between_kept_paths() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        for d in ["a", "b"] {
            fs_err::create_dir_all(root.join(d)).unwrap();
        }
        fs_err::write(root.join("a/f"), "f").unwrap();
        fs_err::hard_link(root.join("a/f"), root.join("b/g")).unwrap();
        let tree = SourceTree::stage(root.clone(), "stage s".to_string());
        let sources = [("/a/f".to_string(), 2), ("/b/*".to_string(), 3)];
        let selection = select(&tree, &sources).unwrap().unwrap();
        let into = t.path().join("kept");
        fs_err::create_dir(&into).unwrap();
        transfer(&root, &into, &selection, Transfer::Copy).unwrap();
        assert!(root.join("a/f").exists());
        let ino = |p: &str| fs_err::metadata(into.join(p)).unwrap().ino();
        assert_eq!(ino("a/f"), ino("b/g"));
        assert_ne!(
            ino("a/f"),
            fs_err::metadata(root.join("a/f")).unwrap().ino()
        );
    }
}
