//! COPY and ADD: docker's rules for sources (globs, directories copy their
//! contents, a top-level symlink is followed), destinations (a trailing `/`,
//! several sources or an existing directory mean "into"), `--chown`,
//! `--chmod`, hard links kept, and ADD's extraction of local archives.
//!
//! Sources are read and the destination written through `fs::root::Root`
//! (paths resolved by `fs::scope`, the kernel refusing any symlink on the
//! way), and every path written is recorded, so the layer is made from
//! exactly what changed.

use super::context::SourceTree;
use crate::fs::extract::{ExtractOptions, extract_tar};
use crate::fs::ignore::RootIgnores;
use crate::fs::root::Root;
use crate::fs::tree;
use crate::fs::{ChangeSet, compress, scope};
use crate::lexpath;
use rustix::fs::{FileType, Stat};
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;

/// `--chmod`: an octal mode or symbolic clauses (`u+x,go-w`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<(u32, char, u32, bool)>),
}

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, String> {
        if !s.is_empty() && s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            let m = u32::from_str_radix(s, 8).map_err(|_| format!("invalid --chmod {s:?}"))?;
            if m > 0o7777 {
                return Err(format!("invalid --chmod {s:?}: mode out of range"));
            }
            return Ok(Chmod::Octal(m));
        }
        let mut clauses = Vec::new();
        for clause in s.split(',') {
            let who_len = clause
                .find(['+', '-', '='])
                .ok_or_else(|| format!("invalid --chmod {s:?}"))?;
            let mut who = 0;
            for c in clause[..who_len].chars() {
                who |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return Err(format!("invalid --chmod {s:?}")),
                };
            }
            if who == 0 {
                who = 0o7777;
            }
            let op = clause[who_len..]
                .chars()
                .next()
                .ok_or_else(|| format!("invalid --chmod {s:?}"))?;
            let mut perm = 0;
            let mut cap_x = false;
            for c in clause[who_len + 1..].chars() {
                perm |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' => {
                        cap_x = true;
                        0
                    }
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return Err(format!("invalid --chmod {s:?}")),
                };
            }
            clauses.push((who, op, perm, cap_x));
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The mode for a file whose own mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            Chmod::Octal(m) => *m,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for &(who, op, perm, cap_x) in clauses {
                    let mut p = perm;
                    if cap_x && (is_dir || m & 0o111 != 0) {
                        p |= 0o111;
                    }
                    let p = p & who;
                    match op {
                        '+' => m |= p,
                        '-' => m &= !p,
                        _ => m = (m & !who) | p,
                    }
                }
                m
            }
        }
    }
}

/// An inline (heredoc) source, already expanded.
#[derive(Debug, Clone)]
pub struct InlineFile {
    pub name: String,
    pub content: String,
}

/// One COPY or ADD, with everything expanded.
#[derive(Debug)]
pub struct CopyJob<'a> {
    pub src: &'a SourceTree,
    /// The build root written into.
    pub root: &'a Path,
    pub sources: Vec<String>,
    pub inline: Vec<InlineFile>,
    /// Absolute destination in the image; a trailing `/` is kept.
    pub dest: String,
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<Chmod>,
    pub is_add: bool,
    /// Build-time for created parent directories and inline files.
    pub now: i64,
    /// Paths an archive ADD unpacks must leave alone (in place: mounts,
    /// `/proc`, the executor's directory).
    pub skip: Option<&'a RootIgnores>,
}

/// Runs the copy; returns what changed, or a message for the user.
pub fn run(job: &CopyJob<'_>) -> Result<ChangeSet, String> {
    let mut matched = Vec::new();
    for source in &job.sources {
        if job.is_add && super::unsupported::is_remote(source) {
            return Err(format!(
                "ADD from a URL or git repository ({source}) is not implemented yet"
            ));
        }
        matched.extend(job.src.expand(source)?);
    }
    let count = matched.len() + job.inline.len();
    let dest_clean = lexpath::clean(&job.dest);
    let slash = job.dest.ends_with('/') || job.dest.ends_with("/.") || job.dest == ".";
    let dst = Root::open(job.root).map_err(|e| e.to_string())?;
    let src = Root::open(&job.src.root).map_err(|e| e.to_string())?;
    let dest_followed = scope::resolve_in(&dst, &dest_clean, true).map_err(|e| e.to_string())?;
    let dest_is_dir = dst.is_dir(&dest_followed).map_err(|e| e.to_string())?;
    let into = slash || count > 1 || dest_is_dir;
    if count > 1 && !slash && !dest_is_dir && job.sources.len() + job.inline.len() > 1 {
        return Err(format!(
            "when using {} with more than one source file, the destination must be a directory and end with a /",
            if job.is_add { "ADD" } else { "COPY" }
        ));
    }
    let mut w = Writer {
        job,
        dst: &dst,
        src: &src,
        changes: ChangeSet::default(),
        links: HashMap::new(),
        dir_times: Vec::new(),
    };
    for inline in &job.inline {
        let target = if into {
            lexpath::child(&dest_clean, &inline.name)
        } else {
            dest_clean.clone()
        };
        w.write_inline(&target, inline)?;
    }
    for m in matched {
        // hard links are kept within one match, as BuildKit's copier (one
        // per match) keeps them: two matches of one inode are two files
        w.links.clear();
        let meta = src
            .lstat(&m.real)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{:?}: not found in {}", m.name, job.src.label))?;
        if kind(&meta) == FileType::Directory {
            let dest_rel = w.prepare_dir(&dest_clean, &meta)?;
            w.copy_dir_contents(&m.real, &dest_rel)?;
        } else if job.is_add
            && kind(&meta) == FileType::RegularFile
            && is_tar_archive(&src, &m.real)
        {
            let dest_rel = w.prepare_dir(&dest_clean, &meta)?;
            w.extract(&m.real, &dest_rel)?;
        } else {
            let target = if into {
                lexpath::child(&dest_clean, lexpath::base_name(&m.name))
            } else {
                dest_clean.clone()
            };
            let dest_rel = w.target(&target)?;
            w.copy_entry(&m.real, &meta, &dest_rel)?;
        }
    }
    w.finish()?;
    Ok(w.changes)
}

fn kind(meta: &Stat) -> FileType {
    FileType::from_raw_mode(meta.st_mode)
}

/// Whether `rel` in `src` is a tar, possibly gzip/bzip2/xz/zstd compressed
/// (by content, as docker decides it, not by name).
fn is_tar_archive(src: &Root, rel: &str) -> bool {
    let Ok(file) = src.open_file(rel) else {
        return false;
    };
    let Ok(mut reader) = compress::decompressor(std::io::BufReader::new(file)) else {
        return false;
    };
    let mut block = [0u8; 512];
    if reader.read_exact(&mut block).is_err() {
        return false;
    }
    let header = tar::Header::from_byte_slice(&block);
    let Ok(stored) = header.cksum() else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    stored == sum && block.iter().any(|&b| b != 0)
}

struct Writer<'a, 'b> {
    job: &'b CopyJob<'a>,
    /// The build root written into.
    dst: &'b Root,
    /// The tree read from.
    src: &'b Root,
    changes: ChangeSet,
    /// Source (device, inode) → destination of files with several links.
    links: HashMap<(u64, u64), String>,
    /// Directories whose times are set once their contents are written.
    dir_times: Vec<(String, i64)>,
}

impl Writer<'_, '_> {
    /// Resolves a destination file path: parents through symlinks (inside the
    /// root), the last element as written; creates missing parents.
    fn target(&mut self, abs: &str) -> Result<String, String> {
        let (parent, base) = lexpath::split_last(abs);
        let parent_rel = scope::resolve_in(self.dst, parent, true).map_err(|e| e.to_string())?;
        self.mkdir_parents(&parent_rel)?;
        Ok(lexpath::child(&parent_rel, base))
    }

    /// Removes what is at `rel` in the destination, and forgets what this
    /// copy wrote under it.
    fn remove(&mut self, rel: &str) -> Result<(), String> {
        self.dst.remove(rel).map_err(|e| e.to_string())?;
        self.changes.forget_below(rel);
        Ok(())
    }

    /// Makes sure the destination directory exists. A new one takes the
    /// owner and times of the source directory (`src_dir`) but mode 0755
    /// (after `--chmod`), as BuildKit creates it (checked against docker
    /// build: a 0555 source directory still gives a 0755 destination).
    fn prepare_dir(&mut self, abs: &str, src_dir: &Stat) -> Result<String, String> {
        let rel = scope::resolve_in(self.dst, abs, true).map_err(|e| e.to_string())?;
        match self.dst.kind(&rel).map_err(|e| e.to_string())? {
            Some(FileType::Directory) => return Ok(rel),
            Some(_) => self.remove(&rel)?,
            None => {}
        }
        self.mkdir_parents(lexpath::split_last(&rel).0)?;
        self.dst
            .create_dir(&rel, 0o755)
            .map_err(|e| e.to_string())?;
        self.apply_meta(&rel, src_dir, 0o755, true)?;
        Ok(rel)
    }

    /// `mkdir -p` of a root-relative directory: new ones are 0755, owned by
    /// the `--chown` owner, stamped with the build time.
    fn mkdir_parents(&mut self, rel: &str) -> Result<(), String> {
        let owner = self.job.owner.unwrap_or((0, 0));
        for dir in tree::mkdir_all(self.dst, rel, owner, 0o755).map_err(|e| e.to_string())? {
            self.dir_times.push((dir.clone(), self.job.now));
            self.changes.add(&dir);
        }
        Ok(())
    }

    fn owner_for(&self, meta: &Stat) -> (u32, u32) {
        match self.job.owner {
            Some(o) => o,
            None if self.job.src.keep_owner => (meta.st_uid, meta.st_gid),
            None => (0, 0),
        }
    }

    /// Owner, mode (after `--chmod`) and, for files, times.
    /// `mode` is the mode before `--chmod`: the source's, or 0755 for a
    /// directory COPY creates.
    fn apply_meta(
        &mut self,
        rel: &str,
        meta: &Stat,
        mode: u32,
        is_dir: bool,
    ) -> Result<(), String> {
        let (uid, gid) = self.owner_for(meta);
        self.dst.chown(rel, uid, gid).map_err(|e| e.to_string())?;
        if kind(meta) != FileType::Symlink {
            let mode = match &self.job.chmod {
                Some(c) => c.apply(mode, is_dir),
                None => mode & 0o7777,
            };
            self.dst.chmod(rel, mode).map_err(|e| e.to_string())?;
        }
        if is_dir {
            self.dir_times.push((rel.to_string(), meta.st_mtime));
        } else {
            self.dst
                .set_mtime(rel, meta.st_mtime)
                .map_err(|e| e.to_string())?;
        }
        self.changes.add(rel);
        Ok(())
    }

    /// Copies one non-directory entry (or an empty directory's shell) from
    /// `src_rel` to `dest_rel`.
    fn copy_entry(&mut self, src_rel: &str, meta: &Stat, dest_rel: &str) -> Result<(), String> {
        let ft = kind(meta);
        let is_dir = ft == FileType::Directory;
        let existing = self.dst.kind(dest_rel).map_err(|e| e.to_string())?;
        let dir_there = existing == Some(FileType::Directory);
        if existing.is_some() && !(is_dir && dir_there) {
            self.remove(dest_rel)?;
        }
        let err = |e: crate::fs::FsError| e.to_string();
        match ft {
            FileType::Directory => {
                if !dir_there {
                    self.dst.create_dir(dest_rel, 0o755).map_err(err)?;
                }
            }
            FileType::Symlink => {
                let target = self.src.read_link(src_rel).map_err(err)?;
                self.dst.symlink(&target, dest_rel).map_err(err)?;
            }
            FileType::RegularFile => {
                let key = (meta.st_dev, meta.st_ino);
                if meta.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        self.dst.hard_link(first, dest_rel).map_err(err)?;
                        self.changes.add(dest_rel);
                        return Ok(());
                    }
                    self.links.insert(key, dest_rel.to_string());
                }
                let mut from = self.src.open_file(src_rel).map_err(err)?;
                let mut to = self.dst.create_file(dest_rel, 0o600).map_err(err)?;
                std::io::copy(&mut from, &mut to)
                    .map_err(|e| format!("/{dest_rel}: copying from {src_rel}: {e}"))?;
            }
            FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice => {
                self.dst
                    .mknod(dest_rel, ft, meta.st_mode & 0o7777, meta.st_rdev)
                    .map_err(err)?;
            }
            // sockets are not copied
            _ => return Ok(()),
        }
        self.apply_meta(dest_rel, meta, meta.st_mode, is_dir)
    }

    /// Copies the contents of source directory `src_rel` into `dest_rel`,
    /// skipping what `.dockerignore` excludes.
    fn copy_dir_contents(&mut self, src_rel: &str, dest_rel: &str) -> Result<(), String> {
        let mut entries: Vec<String> = self
            .src
            .read_dir(src_rel)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        entries.sort();
        for name in entries {
            let child_src = lexpath::child(src_rel, &name);
            let child_dest = lexpath::child(dest_rel, &name);
            let Some(meta) = self.src.lstat(&child_src).map_err(|e| e.to_string())? else {
                continue;
            };
            let is_dir = kind(&meta) == FileType::Directory;
            if self.job.src.is_excluded(&child_src) {
                if is_dir && self.job.src.may_include_below() {
                    self.copy_excluded_dir(&child_src, &child_dest, &meta)?;
                }
                continue;
            }
            self.copy_entry(&child_src, &meta, &child_dest)?;
            if is_dir {
                self.copy_dir_contents(&child_src, &child_dest)?;
            }
        }
        Ok(())
    }

    /// An excluded directory may hold re-included files (`!` patterns):
    /// it is created only if something below it is copied.
    fn copy_excluded_dir(
        &mut self,
        src_rel: &str,
        dest_rel: &str,
        meta: &Stat,
    ) -> Result<(), String> {
        let before = self.changes.changed.len();
        let created = self
            .dst
            .kind(dest_rel)
            .map_err(|e| e.to_string())?
            .is_none();
        if created {
            self.dst
                .create_dir(dest_rel, 0o755)
                .map_err(|e| e.to_string())?;
        }
        self.copy_dir_contents(src_rel, dest_rel)?;
        if self.changes.changed.len() == before {
            if created {
                self.dst.remove(dest_rel).map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        self.apply_meta(dest_rel, meta, meta.st_mode, true)
    }

    fn write_inline(&mut self, abs: &str, inline: &InlineFile) -> Result<(), String> {
        let rel = self.target(abs)?;
        if self.dst.kind(&rel).map_err(|e| e.to_string())?.is_some() {
            self.remove(&rel)?;
        }
        let err = |e: crate::fs::FsError| e.to_string();
        let mut f = self.dst.create_file(&rel, 0o600).map_err(err)?;
        std::io::Write::write_all(&mut f, inline.content.as_bytes())
            .map_err(|e| format!("/{rel}: {e}"))?;
        drop(f);
        let (uid, gid) = self.job.owner.unwrap_or((0, 0));
        self.dst.chown(&rel, uid, gid).map_err(err)?;
        let mode = self
            .job
            .chmod
            .as_ref()
            .map_or(0o644, |c| c.apply(0o644, false));
        self.dst.chmod(&rel, mode).map_err(err)?;
        self.dst.set_mtime(&rel, self.job.now).map_err(err)?;
        self.changes.add(&rel);
        Ok(())
    }

    fn extract(&mut self, archive_rel: &str, dest_rel: &str) -> Result<(), String> {
        let file = self.src.open_file(archive_rel).map_err(|e| e.to_string())?;
        let mut reader = std::io::BufReader::new(file);
        reader.fill_buf().map_err(|e| e.to_string())?;
        let stream = compress::decompressor(reader).map_err(|e| e.to_string())?;
        let opts = ExtractOptions {
            whiteouts: false,
            chown: self.job.owner,
            skip: self.job.skip,
        };
        let changes =
            extract_tar(stream, self.job.root, dest_rel, opts).map_err(|e| e.to_string())?;
        self.changes.extend(changes);
        Ok(())
    }

    /// Sets directory times deepest first, so writing children does not
    /// disturb them.
    fn finish(&mut self) -> Result<(), String> {
        self.dir_times.sort_by(|a, b| b.0.cmp(&a.0));
        for (rel, t) in std::mem::take(&mut self.dir_times) {
            if self.dst.is_dir(&rel).map_err(|e| e.to_string())? {
                self.dst.set_mtime(&rel, t).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_forms() {
        assert_eq!(
            Chmod::parse("0751").map(|c| c.apply(0o644, false)),
            Ok(0o751)
        );
        assert_eq!(Chmod::parse("755").map(|c| c.apply(0o600, true)), Ok(0o755));
        assert_eq!(
            Chmod::parse("u+x").map(|c| c.apply(0o644, false)),
            Ok(0o744)
        );
        assert_eq!(
            Chmod::parse("go-r").map(|c| c.apply(0o644, false)),
            Ok(0o600)
        );
        assert_eq!(
            Chmod::parse("a=rX").map(|c| c.apply(0o700, true)),
            Ok(0o555)
        );
        assert_eq!(
            Chmod::parse("a=rX").map(|c| c.apply(0o600, false)),
            Ok(0o444)
        );
        assert_eq!(
            Chmod::parse("u=rwx,g=rx,o=").map(|c| c.apply(0o000, false)),
            Ok(0o750)
        );
        assert!(Chmod::parse("9").is_err());
        assert!(Chmod::parse("z+x").is_err());
        assert!(Chmod::parse("77777").is_err());
    }
}
