//! A received pack (`PACK` version 2 or 3), read from the file it was
//! saved to: indexed once (object headers, zlib streams inflated through
//! flate2's `Decompress`, which says how much input each stream took),
//! every object's id computed as git does (`SHA-1("<type> <size>\0" +
//! data)`), `OFS_DELTA` and `REF_DELTA` objects resolved against their
//! bases, and the trailing SHA-1 of the pack checked.
//!
//! Memory: the index (an offset and a header per object, a map from id
//! to offset), the object being read and the chain of bases it is a delta
//! of, and a cache of recently resolved objects of at most [`CACHE_BYTES`]
//! (emptied when full). The pack itself stays on disk; no object is read
//! into memory to compute the id of a whole (non-delta) object.

use flate2::{Decompress, FlushDecompress, Status};
use sha1::{Digest, Sha1};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// A SHA-1 object id.
pub type Oid = [u8; 20];

/// An object's type and contents.
pub type Object = (Kind, Arc<Vec<u8>>);

/// What recently resolved objects may take in memory.
const CACHE_BYTES: usize = 64 << 20;
/// A longer delta chain is refused (git makes them at most 4095 long).
const MAX_CHAIN: usize = 10_000;
/// An object's declared size is trusted for a buffer at most this large
/// up front; beyond, the buffer grows as the data comes.
const PREALLOC: u64 = 16 << 20;

/// Object types as the pack numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Commit,
    Tree,
    Blob,
    Tag,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Commit => "commit",
            Kind::Tree => "tree",
            Kind::Blob => "blob",
            Kind::Tag => "tag",
        }
    }
}

pub fn hex(oid: &Oid) -> String {
    hex::encode(oid)
}

pub fn parse_oid(s: &str) -> Option<Oid> {
    let mut oid = [0u8; 20];
    hex::decode_to_slice(s, &mut oid).ok()?;
    Some(oid)
}

/// The id git gives an object.
pub fn object_id(kind: Kind, data: &[u8]) -> Oid {
    let mut h = Sha1::new();
    h.update(format!("{} {}\0", kind.name(), data.len()).as_bytes());
    h.update(data);
    h.finalize().into()
}

#[derive(Debug, Clone, Copy)]
enum Base {
    Whole(Kind),
    Offset(u64),
    Id(Oid),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    base: Base,
    /// Where its zlib stream starts.
    data_at: u64,
    size: u64,
}

/// A pack on disk, indexed.
#[derive(Debug)]
pub struct Pack {
    file: std::fs::File,
    entries: HashMap<u64, Entry>,
    ids: HashMap<Oid, u64>,
    cache: std::cell::RefCell<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    objects: HashMap<u64, Object>,
    bytes: usize,
}

/// A reader that counts what it has handed out.
struct Counting<R> {
    inner: R,
    at: u64,
}

impl<R: BufRead> Counting<R> {
    fn byte(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| format!("reading the pack: {e}"))?;
        self.at += 1;
        Ok(b[0])
    }

    fn exact(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.inner
            .read_exact(buf)
            .map_err(|e| format!("reading the pack: {e}"))?;
        self.at += buf.len() as u64;
        Ok(())
    }

    /// Inflates one zlib stream of `size` bytes, handing its output to
    /// `sink`; consumes exactly the stream's input.
    fn inflate(&mut self, size: u64, mut sink: impl FnMut(&[u8])) -> Result<(), String> {
        let mut z = Decompress::new(true);
        let mut out = vec![0u8; 64 << 10];
        let mut produced = 0u64;
        loop {
            let input = self
                .inner
                .fill_buf()
                .map_err(|e| format!("reading the pack: {e}"))?;
            let (before_in, before_out) = (z.total_in(), z.total_out());
            let status = z
                .decompress(input, &mut out, FlushDecompress::None)
                .map_err(|e| format!("a corrupt object in the pack: {e}"))?;
            let used = (z.total_in() - before_in) as usize;
            let made = (z.total_out() - before_out) as usize;
            let at_end = input.is_empty();
            self.inner.consume(used);
            self.at += used as u64;
            produced += made as u64;
            if produced > size {
                return Err("an object in the pack is larger than its header says".to_string());
            }
            sink(&out[..made]);
            match status {
                Status::StreamEnd => break,
                _ if at_end && used == 0 && made == 0 => {
                    return Err("the pack ends inside an object".to_string());
                }
                _ => {}
            }
        }
        if produced != size {
            return Err("an object in the pack is smaller than its header says".to_string());
        }
        Ok(())
    }

    /// An object's header: its type number and size.
    fn header(&mut self) -> Result<(u8, u64), String> {
        let mut b = self.byte()?;
        let kind = (b >> 4) & 7;
        let mut size = u64::from(b & 15);
        let mut shift = 4;
        while b & 0x80 != 0 {
            b = self.byte()?;
            if shift > 57 {
                return Err("an object size in the pack overflows".to_string());
            }
            size |= u64::from(b & 0x7f) << shift;
            shift += 7;
        }
        Ok((kind, size))
    }

    /// `OFS_DELTA`'s distance back to the base.
    fn offset(&mut self) -> Result<u64, String> {
        let mut b = self.byte()?;
        let mut n = u64::from(b & 0x7f);
        while b & 0x80 != 0 {
            b = self.byte()?;
            n = n
                .checked_add(1)
                .and_then(|n| n.checked_mul(128))
                .ok_or("a delta offset in the pack overflows")?
                | u64::from(b & 0x7f);
        }
        Ok(n)
    }
}

fn kind_of(n: u8) -> Option<Kind> {
    Some(match n {
        1 => Kind::Commit,
        2 => Kind::Tree,
        3 => Kind::Blob,
        4 => Kind::Tag,
        _ => return None,
    })
}

impl Pack {
    /// Indexes the pack saved at `path`.
    pub fn open(path: &Path) -> Result<Pack, String> {
        let file = fs_err::File::open(path)
            .map_err(|e| e.to_string())?
            .into_parts()
            .0;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let mut r = Counting {
            inner: BufReader::with_capacity(256 << 10, &file),
            at: 0,
        };
        let mut head = [0u8; 12];
        r.exact(&mut head)
            .map_err(|_| "the server sent no pack".to_string())?;
        if &head[..4] != b"PACK" || !matches!(head[7], 2 | 3) || head[4..7] != [0, 0, 0] {
            return Err("the server's pack is not a version 2 pack".to_string());
        }
        let count = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let mut hasher = Sha1::new();
        hasher.update(head);
        let mut entries = HashMap::new();
        let mut ids = HashMap::new();
        let mut deltas = Vec::new();
        for _ in 0..count {
            let at = r.at;
            let (kind, size) = r.header()?;
            let base = match kind {
                6 => {
                    let back = r.offset()?;
                    Base::Offset(
                        at.checked_sub(back)
                            .filter(|_| back > 0)
                            .ok_or("a delta in the pack points before the pack")?,
                    )
                }
                7 => {
                    let mut oid = [0u8; 20];
                    r.exact(&mut oid)?;
                    Base::Id(oid)
                }
                n => Base::Whole(
                    kind_of(n)
                        .ok_or_else(|| format!("an object of unknown type {n} in the pack"))?,
                ),
            };
            let data_at = r.at;
            match base {
                Base::Whole(kind) => {
                    let mut h = Sha1::new();
                    h.update(format!("{} {size}\0", kind.name()).as_bytes());
                    r.inflate(size, |d| h.update(d))?;
                    ids.insert(h.finalize().into(), at);
                }
                _ => {
                    r.inflate(size, |_| {})?;
                    deltas.push(at);
                }
            }
            entries.insert(
                at,
                Entry {
                    base,
                    data_at,
                    size,
                },
            );
        }
        // the checksum covers every byte before it: hash them again from
        // the file (sequential, in the page cache)
        let body = r.at;
        if body + 20 != len {
            return Err(format!(
                "the pack has {} bytes after its {count} objects (want its 20-byte checksum)",
                len.saturating_sub(body)
            ));
        }
        let mut f = &file;
        f.seek(SeekFrom::Start(12))
            .map_err(|e| format!("reading the pack: {e}"))?;
        let mut rest = f.take(body - 12);
        std::io::copy(&mut rest, &mut HashWriter(&mut hasher))
            .map_err(|e| format!("reading the pack: {e}"))?;
        let mut trailer = [0u8; 20];
        f.read_exact(&mut trailer)
            .map_err(|e| format!("reading the pack: {e}"))?;
        let sum: Oid = hasher.finalize().into();
        if sum != trailer {
            return Err(format!(
                "the pack's checksum is {} but its contents hash to {}",
                hex(&trailer),
                hex(&sum)
            ));
        }
        log::debug!(
            "git pack: {count} objects ({} deltas), {len} bytes",
            deltas.len()
        );
        let pack = Pack {
            file,
            entries,
            ids,
            cache: Default::default(),
        };
        pack.resolve_ids(deltas)
    }

    /// Gives every delta object its id, bases first (a `REF_DELTA` may
    /// name a base that is itself a delta later in the pack).
    fn resolve_ids(mut self, mut pending: Vec<u64>) -> Result<Pack, String> {
        while !pending.is_empty() {
            let mut left = Vec::new();
            for at in &pending {
                match self.object_at(*at) {
                    Ok(Some((kind, data))) => {
                        self.ids.insert(object_id(kind, &data), *at);
                    }
                    Ok(None) => left.push(*at),
                    Err(e) => return Err(e),
                }
            }
            if left.len() == pending.len() {
                return Err(format!(
                    "{} deltas in the pack have a base that is not in it",
                    left.len()
                ));
            }
            pending = left;
        }
        self.cache.borrow_mut().objects.clear();
        Ok(self)
    }

    /// The object `oid`, if the pack holds it.
    pub fn get(&self, oid: &Oid) -> Result<Option<Object>, String> {
        match self.ids.get(oid) {
            Some(at) => self.object_at(*at),
            None => Ok(None),
        }
    }

    /// Inflates the stream of the entry at `at`.
    fn inflate(&self, entry: &Entry) -> Result<Vec<u8>, String> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(entry.data_at))
            .map_err(|e| format!("reading the pack: {e}"))?;
        let mut r = Counting {
            inner: BufReader::with_capacity(64 << 10, f),
            at: entry.data_at,
        };
        let mut data = Vec::with_capacity(entry.size.min(PREALLOC) as usize);
        r.inflate(entry.size, |d| data.extend_from_slice(d))?;
        Ok(data)
    }

    /// The object at `at`, deltas applied; `None` when a `REF_DELTA` base
    /// is not known (yet).
    fn object_at(&self, at: u64) -> Result<Option<Object>, String> {
        // walk back to a whole object (or a cached one)
        let mut chain = Vec::new();
        let mut cur = at;
        let (kind, mut data) = loop {
            if let Some((kind, data)) = self.cache.borrow().objects.get(&cur) {
                break (*kind, Arc::clone(data));
            }
            let entry = self
                .entries
                .get(&cur)
                .ok_or("a delta in the pack points between objects")?;
            match entry.base {
                Base::Whole(kind) => break (kind, Arc::new(self.inflate(entry)?)),
                Base::Offset(base) => {
                    chain.push(*entry);
                    cur = base;
                }
                Base::Id(oid) => {
                    chain.push(*entry);
                    match self.ids.get(&oid) {
                        Some(base) => cur = *base,
                        None => return Ok(None),
                    }
                }
            }
            if chain.len() > MAX_CHAIN {
                return Err("a delta chain in the pack is too long (or a loop)".to_string());
            }
        };
        for entry in chain.iter().rev() {
            let delta = self.inflate(entry)?;
            data = Arc::new(apply_delta(&data, &delta)?);
        }
        let mut cache = self.cache.borrow_mut();
        if cache.bytes + data.len() > CACHE_BYTES {
            cache.objects.clear();
            cache.bytes = 0;
        }
        if data.len() <= CACHE_BYTES / 4 {
            cache.bytes += data.len();
            cache.objects.insert(at, (kind, Arc::clone(&data)));
        }
        Ok(Some((kind, data)))
    }
}

struct HashWriter<'a>(&'a mut Sha1);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A delta's size fields.
fn varint(d: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut n = 0u64;
    let mut shift = 0;
    loop {
        let b = *d.get(*i).ok_or("a delta in the pack is cut short")?;
        *i += 1;
        if shift > 57 {
            return Err("a delta size in the pack overflows".to_string());
        }
        n |= u64::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(n);
        }
    }
}

/// Git's delta: the base's size, the result's size, then copy (from the
/// base) and insert (literal) instructions.
pub fn apply_delta(base: &[u8], delta: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |what: &str| format!("a delta in the pack {what}");
    let mut i = 0;
    if varint(delta, &mut i)? != base.len() as u64 {
        return Err(bad("is for a base of another size"));
    }
    let size = varint(delta, &mut i)?;
    let mut out = Vec::with_capacity(size.min(PREALLOC) as usize);
    while i < delta.len() {
        let op = delta[i];
        i += 1;
        if op & 0x80 != 0 {
            let mut field = |bits: u8, count: usize| -> Result<usize, String> {
                let mut v = 0usize;
                for k in 0..count {
                    if bits & (1 << k) != 0 {
                        let b = *delta.get(i).ok_or_else(|| bad("is cut short"))?;
                        i += 1;
                        v |= usize::from(b) << (8 * k);
                    }
                }
                Ok(v)
            };
            let offset = field(op, 4)?;
            let len = match field(op >> 4, 3)? {
                0 => 0x10000,
                n => n,
            };
            let piece = offset
                .checked_add(len)
                .and_then(|end| base.get(offset..end))
                .ok_or_else(|| bad("copies from beyond its base"))?;
            out.extend_from_slice(piece);
        } else if op != 0 {
            let n = usize::from(op);
            let piece = delta.get(i..i + n).ok_or_else(|| bad("is cut short"))?;
            out.extend_from_slice(piece);
            i += n;
        } else {
            return Err(bad("has a reserved instruction"));
        }
        if out.len() as u64 > size {
            return Err(bad("makes more than it says"));
        }
    }
    if out.len() as u64 != size {
        return Err(bad("makes less than it says"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_copy_and_insert() {
        let base = b"hello, world\n";
        // base 13, result 17; copy 0..7, insert "there", copy 7..13 (-ish)
        let mut d = vec![13, 17];
        d.extend_from_slice(&[0x80 | 0x10, 7]); // copy offset 0 len 7
        d.extend_from_slice(&[4, b'y', b'o', b'u', b' ']);
        d.extend_from_slice(&[0x80 | 0x01 | 0x10, 7, 6]); // copy offset 7 len 6
        assert_eq!(apply_delta(base, &d).unwrap(), b"hello, you world\n");
        assert!(apply_delta(b"short", &d).is_err());
        let mut beyond = vec![13, 20, 0x80 | 0x01 | 0x10, 10, 10];
        assert!(apply_delta(base, &beyond).is_err());
        beyond[2] = 0;
        assert!(apply_delta(base, &beyond).is_err());
    }

    #[test]
    fn the_trailing_checksum_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        let mut bytes = b"PACK\0\0\0\x02\0\0\0\0".to_vec();
        let sum: Oid = Sha1::digest(&bytes).into();
        bytes.extend_from_slice(&sum);
        fs_err::write(&path, &bytes).unwrap();
        assert!(Pack::open(&path).is_ok());
        *bytes.last_mut().unwrap() ^= 1;
        fs_err::write(&path, &bytes).unwrap();
        assert!(Pack::open(&path).unwrap_err().contains("checksum"));
        fs_err::write(&path, b"PACK\0\0\0\x09").unwrap();
        assert!(Pack::open(&path).is_err());
    }

    #[test]
    fn ids_as_git_makes_them() {
        // `git hash-object` of "hello\n"
        assert_eq!(
            hex(&object_id(Kind::Blob, b"hello\n")),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }
}
