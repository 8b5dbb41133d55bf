//! COPY and ADD: docker's rules for sources (globs, directories copy their
//! contents, a top-level symlink is followed), destinations (a trailing `/`,
//! several sources or an existing directory mean "into"), `--chown`,
//! `--chmod`, hard links kept, and ADD's extraction of local archives.
//!
//! Writes go into the build root through `fs::scope`, and every path
//! written is recorded, so the layer is made from exactly what changed.

use super::context::SourceTree;
use crate::fs::extract::{ExtractOptions, extract_tar};
use crate::fs::ignore::RootIgnores;
use crate::fs::tree::{self, remove_any};
use crate::fs::{ChangeSet, compress, scope};
use crate::lexpath;
use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
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
        if job.is_add && is_remote(source) {
            return Err(format!(
                "ADD from a URL or git repository ({source}) is not implemented yet"
            ));
        }
        matched.extend(job.src.expand(source)?);
    }
    let count = matched.len() + job.inline.len();
    let dest_clean = lexpath::clean(&job.dest);
    let slash = job.dest.ends_with('/') || job.dest.ends_with("/.") || job.dest == ".";
    let dest_followed = scope::resolve(job.root, &dest_clean, true).map_err(|e| e.to_string())?;
    let dest_is_dir = job.root.join(&dest_followed).is_dir();
    let into = slash || count > 1 || dest_is_dir;
    if count > 1 && !slash && !dest_is_dir && job.sources.len() + job.inline.len() > 1 {
        return Err(format!(
            "when using {} with more than one source file, the destination must be a directory and end with a /",
            if job.is_add { "ADD" } else { "COPY" }
        ));
    }
    let mut w = Writer {
        job,
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
        let full = job.src.path(&m.real);
        let meta = fs_err::metadata(&full).map_err(|e| e.to_string())?;
        if meta.is_dir() {
            let dest_rel = w.prepare_dir(&dest_clean, &full)?;
            w.copy_dir_contents(&m.real, &dest_rel)?;
        } else if job.is_add && is_tar_archive(&full) {
            let dest_rel = w.prepare_dir(&dest_clean, &full)?;
            w.extract(&full, &dest_rel)?;
        } else {
            let target = if into {
                lexpath::child(&dest_clean, lexpath::base_name(&m.name))
            } else {
                dest_clean.clone()
            };
            let dest_rel = w.target(&target)?;
            w.copy_entry(&full, &meta, &dest_rel)?;
        }
    }
    w.finish()?;
    Ok(w.changes)
}

fn is_remote(source: &str) -> bool {
    source.starts_with("http://")
        || source.starts_with("https://")
        || source.starts_with("git@")
        || source.contains(".git#")
}

/// Whether `path` is a tar, possibly gzip/bzip2/xz/zstd compressed (by
/// content, as docker decides it, not by name).
fn is_tar_archive(path: &Path) -> bool {
    let Ok(file) = fs_err::File::open(path) else {
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
    changes: ChangeSet,
    /// Source (device, inode) → destination of files with several links.
    links: HashMap<(u64, u64), String>,
    /// Directories whose times are set once their contents are written.
    dir_times: Vec<(String, i64)>,
}

impl Writer<'_, '_> {
    fn err(&self, rel: &str, e: impl std::fmt::Display) -> String {
        format!("/{rel}: {e}")
    }

    /// Resolves a destination file path: parents through symlinks (inside the
    /// root), the last element as written; creates missing parents.
    fn target(&mut self, abs: &str) -> Result<String, String> {
        let (parent, base) = lexpath::split_last(abs);
        let parent_rel = scope::resolve(self.job.root, parent, true).map_err(|e| e.to_string())?;
        self.mkdir_parents(&parent_rel)?;
        Ok(lexpath::child(&parent_rel, base))
    }

    /// Makes sure the destination directory exists. A new one takes the
    /// owner and times of `src_dir` but mode 0755 (after `--chmod`), as
    /// BuildKit creates it (checked against docker build: a 0555 source
    /// directory still gives a 0755 destination).
    fn prepare_dir(&mut self, abs: &str, src_dir: &Path) -> Result<String, String> {
        let rel = scope::resolve(self.job.root, abs, true).map_err(|e| e.to_string())?;
        let full = self.job.root.join(&rel);
        if full.is_dir() {
            return Ok(rel);
        }
        if full.symlink_metadata().is_ok() {
            remove_any(&full).map_err(|e| e.to_string())?;
        }
        self.mkdir_parents(lexpath::split_last(&rel).0)?;
        let meta = fs_err::metadata(src_dir).map_err(|e| e.to_string())?;
        fs_err::create_dir(&full).map_err(|e| e.to_string())?;
        self.apply_meta(&rel, &meta, 0o755, true)?;
        Ok(rel)
    }

    /// `mkdir -p` of a root-relative directory: new ones are 0755, owned by
    /// the `--chown` owner, stamped with the build time.
    fn mkdir_parents(&mut self, rel: &str) -> Result<(), String> {
        let owner = self.job.owner.unwrap_or((0, 0));
        for dir in tree::mkdir_all(self.job.root, rel, owner, 0o755).map_err(|e| e.to_string())? {
            self.dir_times.push((dir.clone(), self.job.now));
            self.changes.add(&dir);
        }
        Ok(())
    }

    fn owner_for(&self, meta: &std::fs::Metadata) -> (u32, u32) {
        match self.job.owner {
            Some(o) => o,
            None if self.job.src.keep_owner => (meta.uid(), meta.gid()),
            None => (0, 0),
        }
    }

    /// Owner, mode (after `--chmod`) and, for files, times.
    /// `mode` is the mode before `--chmod`: the source's, or 0755 for a
    /// directory COPY creates.
    fn apply_meta(
        &mut self,
        rel: &str,
        meta: &std::fs::Metadata,
        mode: u32,
        is_dir: bool,
    ) -> Result<(), String> {
        let full = self.job.root.join(rel);
        let (uid, gid) = self.owner_for(meta);
        std::os::unix::fs::lchown(&full, Some(uid), Some(gid)).map_err(|e| self.err(rel, e))?;
        if !meta.file_type().is_symlink() {
            let mode = match &self.job.chmod {
                Some(c) => c.apply(mode, is_dir),
                None => mode & 0o7777,
            };
            fs_err::set_permissions(&full, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
        }
        if is_dir {
            self.dir_times.push((rel.to_string(), meta.mtime()));
        } else {
            tree::set_mtime(&full, meta.mtime()).map_err(|e| e.to_string())?;
        }
        self.changes.add(rel);
        Ok(())
    }

    /// Copies one non-directory entry (or an empty directory's shell) to `dest_rel`.
    fn copy_entry(
        &mut self,
        src: &Path,
        meta: &std::fs::Metadata,
        dest_rel: &str,
    ) -> Result<(), String> {
        let full = self.job.root.join(dest_rel);
        let ft = meta.file_type();
        if let Ok(existing) = full.symlink_metadata()
            && !(ft.is_dir() && existing.is_dir())
        {
            remove_any(&full).map_err(|e| e.to_string())?;
        }
        if ft.is_dir() {
            if !full.is_dir() {
                fs_err::create_dir(&full).map_err(|e| e.to_string())?;
            }
        } else if ft.is_symlink() {
            let target = fs_err::read_link(src).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&target, &full).map_err(|e| self.err(dest_rel, e))?;
        } else if ft.is_file() {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&key) {
                    fs_err::hard_link(self.job.root.join(first), &full)
                        .map_err(|e| e.to_string())?;
                    self.changes.add(dest_rel);
                    return Ok(());
                }
                self.links.insert(key, dest_rel.to_string());
            }
            fs_err::copy(src, &full).map_err(|e| e.to_string())?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let kind = if ft.is_fifo() {
                rustix::fs::FileType::Fifo
            } else if ft.is_char_device() {
                rustix::fs::FileType::CharacterDevice
            } else {
                rustix::fs::FileType::BlockDevice
            };
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &full,
                kind,
                rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777),
                meta.rdev(),
            )
            .map_err(|e| self.err(dest_rel, e))?;
        } else {
            // sockets are not copied
            return Ok(());
        }
        self.apply_meta(dest_rel, meta, meta.mode(), ft.is_dir())
    }

    /// Copies the contents of source directory `src_rel` into `dest_rel`,
    /// skipping what `.dockerignore` excludes.
    fn copy_dir_contents(&mut self, src_rel: &str, dest_rel: &str) -> Result<(), String> {
        let dir = self.job.src.path(src_rel);
        let mut entries: Vec<_> = fs_err::read_dir(&dir)
            .map_err(|e| e.to_string())?
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for name in entries {
            let name = name.to_string_lossy().into_owned();
            let child_src = lexpath::child(src_rel, &name);
            let child_dest = lexpath::child(dest_rel, &name);
            let path = self.job.src.path(&child_src);
            let meta = fs_err::symlink_metadata(&path).map_err(|e| e.to_string())?;
            if self.job.src.is_excluded(&child_src) {
                if meta.is_dir() && self.job.src.may_include_below() {
                    self.copy_excluded_dir(&child_src, &child_dest, &meta)?;
                }
                continue;
            }
            self.copy_entry(&path, &meta, &child_dest)?;
            if meta.is_dir() {
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
        meta: &std::fs::Metadata,
    ) -> Result<(), String> {
        let before = self.changes.changed.len();
        let created = !self.job.root.join(dest_rel).exists();
        if created {
            fs_err::create_dir(self.job.root.join(dest_rel)).map_err(|e| e.to_string())?;
        }
        self.copy_dir_contents(src_rel, dest_rel)?;
        if self.changes.changed.len() == before {
            if created {
                fs_err::remove_dir(self.job.root.join(dest_rel)).map_err(|e| e.to_string())?;
            }
            return Ok(());
        }
        self.apply_meta(dest_rel, meta, meta.mode(), true)
    }

    fn write_inline(&mut self, abs: &str, inline: &InlineFile) -> Result<(), String> {
        let rel = self.target(abs)?;
        let full = self.job.root.join(&rel);
        if full.symlink_metadata().is_ok() {
            remove_any(&full).map_err(|e| e.to_string())?;
        }
        fs_err::write(&full, inline.content.as_bytes()).map_err(|e| e.to_string())?;
        let (uid, gid) = self.job.owner.unwrap_or((0, 0));
        std::os::unix::fs::lchown(&full, Some(uid), Some(gid)).map_err(|e| self.err(&rel, e))?;
        let mode = self
            .job
            .chmod
            .as_ref()
            .map_or(0o644, |c| c.apply(0o644, false));
        fs_err::set_permissions(&full, std::fs::Permissions::from_mode(mode))
            .map_err(|e| e.to_string())?;
        tree::set_mtime(&full, self.job.now).map_err(|e| e.to_string())?;
        self.changes.add(&rel);
        Ok(())
    }

    fn extract(&mut self, archive: &Path, dest_rel: &str) -> Result<(), String> {
        let file = fs_err::File::open(archive).map_err(|e| e.to_string())?;
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
            tree::set_mtime(&self.job.root.join(&rel), t).map_err(|e| e.to_string())?;
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
