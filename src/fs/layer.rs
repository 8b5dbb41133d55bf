//! Writes a layer blob from a change set: a deterministic tar (sorted
//! entries, PAX records for long names, large ids and xattrs, hard links as
//! links, whiteouts for deletions) streamed through the compressor into the
//! blob store, with the diff ID (uncompressed digest) and the blob digest
//! computed in the same pass. No layer is ever held in memory.

use super::root::{Dir, Root};
use super::{ChangeSet, Compression, FsError, io_at};
use crate::image::{BlobStore, Digest, HashingWriter};
use crate::lexpath;
use rustix::fs::FileType;
use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What file modification times go into the tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MtimePolicy {
    /// As on disk (whole seconds).
    #[default]
    Keep,
    /// Every entry gets this time (`--reproducible`).
    Fixed(i64),
    /// Times after this one are clamped to it (`SOURCE_DATE_EPOCH`).
    Clamp(i64),
}

impl MtimePolicy {
    fn apply(self, mtime: i64) -> i64 {
        match self {
            MtimePolicy::Keep => mtime,
            MtimePolicy::Fixed(t) => t,
            MtimePolicy::Clamp(t) => mtime.min(t),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LayerOptions {
    pub compression: Compression,
    pub mtime: MtimePolicy,
}

/// A finished layer blob in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// Digest of the compressed blob.
    pub digest: Digest,
    /// Size of the compressed blob.
    pub size: u64,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    pub compression: Compression,
    /// Number of tar entries.
    pub entries: usize,
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// One tar entry to write.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Item {
    /// A path present in the root.
    Path(String),
    /// An empty marker file (whiteout or opaque marker) with its parent's owner.
    Marker { rel: String, parent: String },
}

impl Item {
    fn rel(&self) -> &str {
        match self {
            Item::Path(r) | Item::Marker { rel: r, .. } => r,
        }
    }
}

/// Writes the layer for `changes` (paths relative to `root`) into `store`.
pub fn write_layer(
    root: &Path,
    changes: &ChangeSet,
    store: &BlobStore,
    opts: LayerOptions,
) -> Result<LayerBlob, FsError> {
    let mut paths: BTreeSet<String> = BTreeSet::new();
    let add_parents = |rel: &str, paths: &mut BTreeSet<String>| {
        let mut cur = rel;
        while let Some(i) = cur.rfind('/') {
            cur = &cur[..i];
            if !paths.insert(cur.to_string()) {
                break;
            }
        }
    };
    for rel in &changes.changed {
        paths.insert(rel.clone());
        add_parents(rel, &mut paths);
    }
    let mut items: Vec<Item> = Vec::new();
    for rel in &changes.deleted {
        let (parent, name) = lexpath::split_last(rel);
        add_parents(rel, &mut paths);
        items.push(Item::Marker {
            rel: lexpath::child(parent, &format!("{WHITEOUT_PREFIX}{name}")),
            parent: parent.to_string(),
        });
    }
    for dir in &changes.opaque {
        paths.insert(dir.clone());
        add_parents(dir, &mut paths);
        items.push(Item::Marker {
            rel: lexpath::child(dir, OPAQUE_MARKER),
            parent: dir.clone(),
        });
    }
    items.extend(paths.into_iter().map(Item::Path));
    items.sort_by(|a, b| a.rel().cmp(b.rel()));

    let tmp = store.temp_file()?;
    let file = tmp
        .reopen()
        .map_err(io_at(tmp.path(), "opening temporary blob"))?;
    let blob_hasher = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
    let encoder = opts
        .compression
        .encoder(blob_hasher)
        .map_err(io_at(tmp.path(), "starting compression"))?;
    let mut tar = tar::Builder::new(HashingWriter::new(encoder));
    let root = Root::open(root)?;
    let mut writer = EntryWriter {
        root: &root,
        last_dir: None,
        opts,
        links: HashMap::new(),
    };
    for item in &items {
        writer.write(&mut tar, item)?;
    }
    let done = |e: io::Error| FsError::path(tmp.path().display(), format!("finishing layer: {e}"));
    let diff_hasher = tar.into_inner().map_err(done)?;
    let (encoder, diff_id, _) = diff_hasher.finish();
    let blob_hasher = encoder.finish().map_err(done)?;
    let (mut buf, digest, size) = blob_hasher.finish();
    buf.flush().map_err(done)?;
    drop(buf);
    store.commit(tmp, &digest)?;
    Ok(LayerBlob {
        digest,
        size,
        diff_id,
        compression: opts.compression,
        entries: items.len(),
    })
}

struct EntryWriter<'a> {
    /// Read through [`Root`]: a changed path under a symlink (a directory
    /// a later entry replaced) fails instead of reading past the link.
    root: &'a Root,
    /// The directory of the last entry, held open (entries are sorted, so
    /// a directory's come together).
    last_dir: Option<Dir<'a>>,
    opts: LayerOptions,
    /// (device, inode) of multiply-linked files already written → their name.
    links: HashMap<(u64, u64), String>,
}

impl<'a> EntryWriter<'a> {
    /// The open parent directory of `rel` and its last element.
    fn dir_of<'r>(&mut self, rel: &'r str) -> Result<(&Dir<'a>, &'r str), FsError> {
        let (parent, name) = lexpath::split_last(rel);
        if self.last_dir.as_ref().is_none_or(|d| d.rel() != parent) {
            self.last_dir = Some(self.root.dir(parent)?);
        }
        match &self.last_dir {
            Some(d) => Ok((d, name)),
            // set just above
            None => Err(FsError::path(format!("/{parent}"), "not open")),
        }
    }

    fn write<W: Write>(&mut self, tar: &mut tar::Builder<W>, item: &Item) -> Result<(), FsError> {
        let (rel, meta_path) = match item {
            Item::Path(rel) => (rel.as_str(), rel.as_str()),
            Item::Marker { rel, parent } => (rel.as_str(), parent.as_str()),
        };
        let meta = match item {
            Item::Path(_) => {
                let (dir, name) = self.dir_of(rel)?;
                dir.lstat(name)?
            }
            Item::Marker { .. } => self.root.lstat(meta_path)?,
        };
        let meta = meta.ok_or_else(|| {
            FsError::path(format!("/{meta_path}"), "changed, but no longer there")
        })?;
        let mut header = tar::Header::new_ustar();
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        header.set_mtime(0);
        set_ids(&mut header, &mut pax, meta.st_uid, meta.st_gid);
        let mtime = self.opts.mtime.apply(meta.st_mtime);
        if (0..0o77777777777).contains(&mtime) {
            header.set_mtime(mtime as u64);
        } else {
            pax.push(("mtime".to_string(), mtime.to_string().into_bytes()));
        }

        if let Item::Marker { .. } = item {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(0o644);
            header.set_size(0);
            return finish(tar, header, pax, rel, io::empty());
        }

        let ft = FileType::from_raw_mode(meta.st_mode);
        header.set_mode(meta.st_mode & 0o7777);
        let mut name = rel.to_string();
        // every name of a file, symlink or special file linked more than
        // once after the first is a hard link to it (docker's rule: a
        // `cp -al` of a tree with symlinks keeps them linked)
        let linkable = matches!(
            ft,
            FileType::RegularFile
                | FileType::Symlink
                | FileType::Fifo
                | FileType::CharacterDevice
                | FileType::BlockDevice
        );
        if linkable && meta.st_nlink > 1 {
            let key = (meta.st_dev, meta.st_ino);
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                set_link(&mut header, &mut pax, &lexpath::to_bytes(&first));
                self.add_xattrs(rel, &mut pax)?;
                return finish(tar, header, pax, &name, io::empty());
            }
            self.links.insert(key, rel.to_string());
        }
        match ft {
            FileType::Directory => {
                header.set_entry_type(tar::EntryType::Directory);
                name.push('/');
            }
            FileType::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                let (dir, name) = self.dir_of(rel)?;
                let target = dir.read_link(name)?;
                set_link(&mut header, &mut pax, target.as_bytes());
            }
            FileType::RegularFile => {
                header.set_entry_type(tar::EntryType::Regular);
                let size = meta.st_size as u64;
                if size > 0o77777777777 {
                    pax.push(("size".to_string(), size.to_string().into_bytes()));
                    header.set_size(0);
                } else {
                    header.set_size(size);
                }
                self.add_xattrs(rel, &mut pax)?;
                let (dir, base) = self.dir_of(rel)?;
                let file = dir.open_file(base)?;
                let reader = ExactReader {
                    inner: file,
                    left: size,
                    path: format!("/{rel}"),
                };
                return finish(tar, header, pax, &name, reader);
            }
            FileType::Fifo => header.set_entry_type(tar::EntryType::Fifo),
            FileType::CharacterDevice | FileType::BlockDevice => {
                header.set_entry_type(if ft == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                let dev = meta.st_rdev;
                let full = self.root.path().join(rel);
                header
                    .set_device_major(rustix::fs::major(dev))
                    .map_err(io_at(&full, "device number"))?;
                header
                    .set_device_minor(rustix::fs::minor(dev))
                    .map_err(io_at(&full, "device number"))?;
            }
            // sockets cannot be archived; docker skips them too
            _ => return Ok(()),
        }
        header.set_size(0);
        self.add_xattrs(rel, &mut pax)?;
        finish(tar, header, pax, &name, io::empty())
    }
}

fn set_ids(header: &mut tar::Header, pax: &mut Vec<(String, Vec<u8>)>, uid: u32, gid: u32) {
    const MAX: u32 = 0o7777777;
    header.set_uid(u64::from(uid.min(MAX)));
    header.set_gid(u64::from(gid.min(MAX)));
    if uid > MAX {
        pax.push(("uid".to_string(), uid.to_string().into_bytes()));
    }
    if gid > MAX {
        pax.push(("gid".to_string(), gid.to_string().into_bytes()));
    }
}

fn fits_ustar(bytes: &[u8]) -> bool {
    bytes.len() <= 100 && bytes.is_ascii()
}

fn set_link(header: &mut tar::Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    let field = &mut header.as_old_mut().linkname;
    field.fill(0);
    let n = target.len().min(100);
    field[..n].copy_from_slice(&target[..n]);
    if !fits_ustar(target) {
        pax.push(("linkpath".to_string(), target.to_vec()));
    }
}

impl EntryWriter<'_> {
    fn add_xattrs(&mut self, rel: &str, pax: &mut Vec<(String, Vec<u8>)>) -> Result<(), FsError> {
        let (dir, name) = self.dir_of(rel)?;
        // the host's SELinux label is not part of the image
        pax.extend(
            dir.xattrs(name)?
                .into_iter()
                .filter(|(key, _)| key != "security.selinux")
                .map(|(key, value)| (format!("SCHILY.xattr.{key}"), value)),
        );
        Ok(())
    }
}

fn finish<W: Write, R: Read>(
    tar: &mut tar::Builder<W>,
    mut header: tar::Header,
    mut pax: Vec<(String, Vec<u8>)>,
    name: &str,
    data: R,
) -> Result<(), FsError> {
    let bytes = lexpath::to_bytes(name);
    let bytes = bytes.as_ref();
    {
        let field = &mut header.as_old_mut().name;
        field.fill(0);
        let n = bytes.len().min(100);
        field[..n].copy_from_slice(&bytes[..n]);
    }
    if !fits_ustar(bytes) {
        pax.push(("path".to_string(), bytes.to_vec()));
    }
    let err = |e: io::Error| {
        FsError::path(
            format!("/{}", name.trim_end_matches('/')),
            format!("writing layer entry: {e}"),
        )
    };
    if !pax.is_empty() {
        pax.sort_by(|a, b| a.0.cmp(&b.0));
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(err)?;
    }
    header.set_cksum();
    tar.append(&header, data).map_err(err)
}

/// Yields exactly `left` bytes of a file; a file that shrank while being
/// read is an error instead of a corrupt tar.
struct ExactReader<R> {
    inner: R,
    left: u64,
    path: String,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being archived", self.path),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}
