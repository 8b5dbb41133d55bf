//! Layer compression: gzip through flate2 on the zlib-rs backend, in
//! parallel blocks ([`super::pargz`]), zstd with libzstd's own worker
//! threads. Both stream; neither holds a layer.

use std::io::{self, Write};

/// How layer blobs are compressed (kaniko's `--compression` and
/// `--compression-level`; a level of -1 means the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip { level: i32 },
    Zstd { level: i32 },
}

/// `--compression` and `--compression-level` values smelt cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    #[error("unknown --compression {0:?}: use gzip or zstd")]
    Unknown(String),
    #[error("--compression-level {level} is out of range for {compression} (-1..{max})")]
    Level {
        compression: &'static str,
        level: i32,
        max: i32,
    },
}

impl Default for Compression {
    fn default() -> Self {
        Compression::Gzip { level: -1 }
    }
}

impl Compression {
    /// Parses kaniko's flag values.
    pub fn from_flags(name: &str, level: i32) -> Result<Compression, CompressionError> {
        let (compression, max) = match name {
            "gzip" => (Compression::Gzip { level }, 9),
            "zstd" => (Compression::Zstd { level }, 22),
            other => return Err(CompressionError::Unknown(other.to_string())),
        };
        if !(-1..=max).contains(&level) {
            return Err(CompressionError::Level {
                compression: compression.name(),
                level,
                max,
            });
        }
        Ok(compression)
    }

    /// The name `--compression` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => "gzip",
            Compression::Zstd { .. } => "zstd",
        }
    }

    pub fn is_zstd(self) -> bool {
        matches!(self, Compression::Zstd { .. })
    }

    /// Starts a compressed stream into `w`.
    pub fn encoder<W: Write>(self, w: W) -> io::Result<Encoder<W>> {
        Ok(match self {
            Compression::Gzip { level } => {
                // go-containerregistry (and so kaniko) defaults to BestSpeed: compression
                // bounds push throughput, and level 1 costs little in size for layers.
                let level = if level < 0 { 1 } else { level as u32 };
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
                Encoder::Gzip(super::pargz::ParallelGzEncoder::new(w, level, threads)?)
            }
            Compression::Zstd { level } => {
                let level = if level < 0 { 3 } else { level };
                let mut enc = zstd::stream::write::Encoder::new(w, level)?;
                let workers = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
                if workers > 1 {
                    enc.multithread(workers)?;
                }
                enc.include_checksum(false)?;
                Encoder::Zstd(enc)
            }
        })
    }
}

/// A compressing writer; [`Encoder::finish`] flushes the trailer.
pub enum Encoder<W: Write> {
    Gzip(super::pargz::ParallelGzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> std::fmt::Debug for Encoder<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoder::Gzip(_) => "Encoder::Gzip",
            Encoder::Zstd(_) => "Encoder::Zstd",
        })
    }
}

impl<W: Write> Encoder<W> {
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip(e) => e.finish(),
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip(e) => e.write(buf),
            Encoder::Zstd(e) => e.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }
}

/// Opens a possibly compressed stream, recognising gzip, bzip2, xz and zstd
/// by their magic bytes; anything else passes through unchanged.
pub fn decompressor<'a, R: io::BufRead + 'a>(mut r: R) -> io::Result<Box<dyn io::Read + 'a>> {
    let head = r.fill_buf()?;
    Ok(match head {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
            Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r))
        }
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
        _ => Box::new(r),
    })
}
