//! Block-parallel gzip, as pigz does it: the input is cut into 1 MiB
//! blocks, each compressed as raw deflate on a worker thread with the last
//! 32 KiB of the block before it as its dictionary and ended by a sync
//! flush (so blocks join on byte boundaries); the last block finishes the
//! stream. The writer keeps the order, the CRC-32 and the size, and puts
//! the gzip header and trailer around it.
//!
//! The output depends on the input and the level only, never on the number
//! of threads or their timing, so layers stay reproducible. Memory is
//! bounded by the blocks in flight (two per worker).

use crossbeam_channel::{Receiver, Sender, bounded};
use flate2::{Compress, FlushCompress, Status};
use std::collections::VecDeque;
use std::io::{self, Write};
use std::thread::JoinHandle;

const BLOCK: usize = 1 << 20;
const DICT: usize = 32 << 10;

struct Job {
    dict: Vec<u8>,
    data: Vec<u8>,
    reply: Sender<io::Result<Vec<u8>>>,
}

struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    fn new(threads: usize, level: u32) -> Pool {
        let (jobs, queue) = bounded::<Job>(threads * 2);
        let workers = (0..threads)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for job in queue {
                        let out = deflate_block(&job.dict, &job.data, level, false);
                        // the writer may have gone away on an error: nothing to tell
                        let _ = job.reply.send(out);
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(jobs),
            workers,
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// Compresses `data` as raw deflate primed with `dict`; ends with a sync
/// flush, or finishes the stream when `last`.
fn deflate_block(dict: &[u8], data: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(flate2::Compression::new(level), false);
    if !dict.is_empty() {
        c.set_dictionary(dict).map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    loop {
        let used = usize::try_from(c.total_in()).map_err(io::Error::other)?;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let status = c
            .compress_vec(&data[used..], &mut out, flush)
            .map_err(io::Error::other)?;
        let done = usize::try_from(c.total_in()).map_err(io::Error::other)? == data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            _ if !last && done && out.len() < out.capacity() => return Ok(out),
            _ => {}
        }
    }
}

/// A gzip writer that compresses blocks on several threads.
pub struct ParallelGzEncoder<W: Write> {
    inner: W,
    level: u32,
    threads: usize,
    block: Vec<u8>,
    /// The tail of the block before `block`, its dictionary.
    dict: Vec<u8>,
    crc: crc32fast::Hasher,
    size: u64,
    pool: Option<Pool>,
    pending: VecDeque<Receiver<io::Result<Vec<u8>>>>,
}

impl<W: Write> std::fmt::Debug for ParallelGzEncoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParallelGzEncoder")
            .field("level", &self.level)
            .field("threads", &self.threads)
            .field("size", &self.size)
            .finish()
    }
}

impl<W: Write> ParallelGzEncoder<W> {
    /// Writes the gzip header (mtime 0, OS unknown, as flate2 does) to `inner`.
    pub fn new(mut inner: W, level: u32, threads: usize) -> io::Result<Self> {
        let xfl = if level >= 9 {
            2
        } else if level <= 1 {
            4
        } else {
            0
        };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        Ok(ParallelGzEncoder {
            inner,
            level,
            threads: threads.max(1),
            block: Vec::with_capacity(BLOCK),
            dict: Vec::new(),
            crc: crc32fast::Hasher::new(),
            size: 0,
            pool: None,
            pending: VecDeque::new(),
        })
    }

    /// Hands the full block to a worker (or compresses it here with one thread).
    fn dispatch(&mut self) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK));
        let tail = data[data.len().saturating_sub(DICT)..].to_vec();
        let dict = std::mem::replace(&mut self.dict, tail);
        if self.threads == 1 {
            let out = deflate_block(&dict, &data, self.level, false)?;
            return self.inner.write_all(&out);
        }
        let (threads, level) = (self.threads, self.level);
        let pool = self.pool.get_or_insert_with(|| Pool::new(threads, level));
        let (reply, result) = bounded(1);
        let job = Job { dict, data, reply };
        pool.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| io::Error::other("the gzip workers stopped"))?;
        self.pending.push_back(result);
        while self.pending.len() > self.threads * 2 {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        if let Some(r) = self.pending.pop_front() {
            let out = r
                .recv()
                .map_err(|_| io::Error::other("a gzip worker died"))??;
            self.inner.write_all(&out)?;
        }
        Ok(())
    }

    /// Compresses what is left, writes the trailer and returns the writer.
    pub fn finish(mut self) -> io::Result<W> {
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let last = deflate_block(&self.dict, &self.block, self.level, true)?;
        self.inner.write_all(&last)?;
        let crc = self.crc.clone().finalize();
        self.inner.write_all(&crc.to_le_bytes())?;
        // ISIZE is the size modulo 2^32 (RFC 1952)
        self.inner.write_all(&(self.size as u32).to_le_bytes())?;
        self.pool = None;
        Ok(self.inner)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(BLOCK - self.block.len());
        self.block.extend_from_slice(&buf[..n]);
        self.crc.update(&buf[..n]);
        self.size += n as u64;
        if self.block.len() == BLOCK {
            self.dispatch()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn data(len: usize) -> Vec<u8> {
        // half text, half noise: something to compress and something not
        let mut x: u32 = 12345;
        (0..len)
            .map(|i| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                if (i / 4096) % 2 == 0 {
                    b"the quick brown fox "[i % 20]
                } else {
                    (x >> 16) as u8
                }
            })
            .collect()
    }

    fn compress(input: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut e = ParallelGzEncoder::new(Vec::new(), 1, threads).unwrap();
        for c in input.chunks(chunk.max(1)) {
            e.write_all(c).unwrap();
        }
        e.finish().unwrap()
    }

    #[test]
    fn round_trips_and_does_not_depend_on_threads() {
        for len in [0, 1, 1000, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 777] {
            let input = data(len);
            let one = compress(&input, 1, 65536);
            let four = compress(&input, 4, 7777);
            assert_eq!(one, four, "len {len}");
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&one[..])
                .read_to_end(&mut out)
                .unwrap();
            assert!(out == input, "len {len}: round trip differs");
        }
    }

    #[test]
    fn gzip_reads_it() {
        let input = data(2 * BLOCK + 5);
        let gz = compress(&input, 2, 100_000);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        fs_err::write(&path, &gz).unwrap();
        let out = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(out.stdout == input);
    }
}
