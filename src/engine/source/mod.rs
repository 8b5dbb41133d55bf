//! Build contexts that are not a local directory, fetched into one before
//! the build reads anything:
//!
//! - `tar://PATH` (a tar or tar.gz file) and `tar://stdin`;
//! - `https://…` tarballs;
//! - git repositories (`git://…`, `https://…/repo.git`), cloned with the
//!   `git` binary, or smelt's own client where there is none ([`git`]);
//! - `s3://`, `gs://` and Azure blob (`https://<account>.blob.core.windows.net/…`)
//!   tarballs, read through `object_store` ([`object`]).
//!
//! A tarball is streamed: a download thread hands chunks over a bounded
//! channel to the unpacker, so downloading, gunzipping and writing files
//! overlap and memory stays at a few chunks. It is unpacked with the rules
//! image layers get (`fs::extract`): no entry can land outside the context
//! directory, whatever its name or links say.

pub mod git;
pub mod object;

use crate::fs::FsError;
use crate::fs::compress::decompressor;
use crate::fs::extract::{ExtractOptions, extract_tar};
use bytes::Bytes;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use git::{GitOptions, GitSource};
pub use object::ObjectSource;

/// Errors reading a `--context` or `--git` value and fetching the context.
/// Each names the context as [`shown_url`] shows it: never user info or a
/// query, which may hold credentials.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "--context {shown}: {scheme}:// contexts are not supported (dir://, tar://, https://, \
         git://, s3://, gs:// and Azure blob URLs are)"
    )]
    Scheme { shown: String, scheme: String },
    #[error("--context {shown}: {scheme}:// is not an object store")]
    NotObjectStore { shown: String, scheme: String },
    #[error("--context {shown}: no bucket (or container) in the URL")]
    NoBucket { shown: String },
    #[error("--context {shown}: no repository in the URL")]
    NoRepository { shown: String },
    #[error("--context {shown}: {part:?}: a second sub-directory")]
    SecondSubdir { shown: String, part: String },
    #[error(
        "--context {shown}: too many '#' parts (want #REF, then a commit id or a sub-directory)"
    )]
    TooManyParts { shown: String },
    #[error("--context {shown}: sub-directory {dir:?} must stay inside the repository")]
    SubdirEscapes { shown: String, dir: String },
    #[error("--git {0}: want key=value")]
    GitSyntax(String),
    #[error("--git {key}={value}: want true or false")]
    GitBool { key: String, value: String },
    #[error(
        "--git {0}: unknown option (branch, single-branch, depth, recurse-submodules and \
         insecure-skip-tls are)"
    )]
    GitOption(String),
    #[error("--git depth={0}: want a number")]
    GitDepth(String),
    /// Cloning failed: what git (or the server through it) said, with
    /// every credential blanked out.
    #[error("git context {shown}: {message}")]
    Git { shown: String, message: String },
    #[error("downloading the build context {what}: {source}")]
    Download {
        what: String,
        #[source]
        source: DownloadError,
    },
    #[error("unpacking the build context {what}: {source}")]
    Unpack {
        what: String,
        #[source]
        source: FsError,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// What parsing a URL fails with (the `url` crate's error, as reqwest has it).
pub type UrlError = <reqwest::Url as std::str::FromStr>::Err;

/// Why a context download failed: what the server or the object store
/// said (their texts name the request, never the credentials, which travel
/// in headers).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The request failed (the URL left out: it may carry a signature).
    #[error("{0}")]
    Http(#[source] reqwest::Error),
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the server answered {status} ({detail})")]
    Refused {
        status: reqwest::StatusCode,
        detail: String,
    },
    /// `what` is "bucket or object" or "container or blob".
    #[error("{what} not found ({detail})")]
    NotFound { what: &'static str, detail: String },
    #[error("authentication refused ({detail})")]
    Unauthenticated { detail: String },
    #[error("access denied ({detail})")]
    Denied { detail: String },
    /// Any other object store failure, in the service's words when its
    /// error body is in the text.
    #[error("{0}")]
    Store(String),
    #[error("setting up the client: {0}")]
    Setup(#[source] object_store::Error),
    #[error("getting GCS credentials: {0}")]
    Credentials(#[source] object_store::Error),
    #[error("{base}: {source}")]
    Endpoint {
        base: String,
        #[source]
        source: UrlError,
    },
    #[error("{0}: not a base URL")]
    NotBaseUrl(String),
    #[error("starting the download: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("the download thread panicked")]
    Panicked,
}

/// Where a `--context` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    Dir(PathBuf),
    Tar(PathBuf),
    Stdin,
    Https(String),
    Git(GitSource),
    Object(ObjectSource),
}

impl ContextSource {
    /// Reads kaniko's `--context` spellings; `Err` names an unknown scheme.
    pub fn parse(spec: &str) -> Result<ContextSource, SourceError> {
        match spec.split_once("://") {
            None => Ok(ContextSource::Dir(PathBuf::from(spec))),
            Some(("dir", path)) => Ok(ContextSource::Dir(PathBuf::from(path))),
            Some(("tar", "stdin" | "-")) => Ok(ContextSource::Stdin),
            Some(("tar", path)) => Ok(ContextSource::Tar(PathBuf::from(path))),
            Some(("git", rest)) => GitSource::parse(None, rest).map(ContextSource::Git),
            Some((scheme @ ("https" | "http"), rest)) if git::is_repository_url(rest) => {
                GitSource::parse(Some(scheme), rest).map(ContextSource::Git)
            }
            Some(("https", rest)) => match ObjectSource::parse_azure(rest) {
                Some(azure) => azure.map(ContextSource::Object),
                None => Ok(ContextSource::Https(spec.to_string())),
            },
            Some(("s3" | "gs", _)) => ObjectSource::parse(spec).map(ContextSource::Object),
            Some((scheme, _)) => Err(SourceError::Scheme {
                shown: shown_url(spec),
                scheme: scheme.to_string(),
            }),
        }
    }

    /// Fetches and unpacks the context into the empty directory `into`;
    /// returns the context directory in it (a git context may also name
    /// a sub-directory).
    ///
    /// The files land in a directory of a random name inside `into`,
    /// which is marked a top of hierarchy (`tree::mark_top_dir`), as build
    /// roots are: ext4 then places it away from the inodes the last build
    /// freed, instead of scanning past them for every file (unpacking a
    /// 50,000-file context went from 3 s to 26 s over three builds in a
    /// row without it).
    pub fn fetch(&self, into: &Path, git: &GitOptions) -> Result<PathBuf, SourceError> {
        crate::fs::tree::mark_top_dir(into);
        let dir = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(into)?
            .keep();
        match self {
            ContextSource::Git(source) => source.fetch(&dir, git),
            _ => self.fetch_tarball(&dir).map(|()| dir),
        }
    }

    fn fetch_tarball(&self, into: &Path) -> Result<(), SourceError> {
        let (what, unpacked) = match self {
            ContextSource::Dir(_) | ContextSource::Git(_) => return Ok(()),
            ContextSource::Tar(path) => {
                let what = format!("tar://{}", path.display());
                let file = fs_err::File::open(path)?;
                let unpacked = unpack(file, into, &what)?;
                (what, unpacked)
            }
            ContextSource::Stdin => {
                let what = "tar://stdin".to_string();
                let unpacked = unpack(std::io::stdin().lock(), into, &what)?;
                (what, unpacked)
            }
            ContextSource::Https(url) => {
                let (what, url) = (shown_url(url), url.clone());
                let unpacked = stream_unpack(&what, into, move |tx| fetch_url(url, tx))?;
                (what, unpacked)
            }
            ContextSource::Object(object) => {
                let (what, source) = (object.shown(), object.clone());
                let unpacked = stream_unpack(&what, into, move |tx| source.download(tx))?;
                (what, unpacked)
            }
        };
        unpacked.log(&what);
        Ok(())
    }
}

/// What an unpack read and wrote.
#[derive(Debug, Clone, Copy)]
struct Unpacked {
    entries: usize,
    bytes: u64,
    seconds: f64,
}

impl Unpacked {
    fn log(&self, what: &str) {
        let seconds = self.seconds.max(1e-9);
        log::info!(
            "context {what}: {} entries from {:.1} MB in {:.2} s ({:.0} entries/s, {:.1} MB/s)",
            self.entries,
            self.bytes as f64 / 1e6,
            self.seconds,
            self.entries as f64 / seconds,
            self.bytes as f64 / 1e6 / seconds,
        );
    }
}

/// Unpacks a tar or tar.gz stream into `into`.
fn unpack<R: Read>(reader: R, into: &Path, what: &str) -> Result<Unpacked, SourceError> {
    let started = Instant::now();
    let bytes = std::cell::Cell::new(0u64);
    let counted = Counted {
        inner: reader,
        bytes: &bytes,
    };
    let reader = decompressor(BufReader::with_capacity(256 << 10, counted))
        .map_err(|e| fail(what, e.into()))?;
    let changes = extract_tar(
        reader,
        into,
        "",
        ExtractOptions {
            whiteouts: false,
            chown: None,
            skip: None,
        },
    )
    .map_err(|e| fail(what, e))?;
    Ok(Unpacked {
        entries: changes.changed.len(),
        bytes: bytes.get(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn fail(what: &str, source: FsError) -> SourceError {
    SourceError::Unpack {
        what: what.to_string(),
        source,
    }
}

/// A reader that counts what passes through it (the compressed size).
struct Counted<'a, R> {
    inner: R,
    bytes: &'a std::cell::Cell<u64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.set(self.bytes.get() + n as u64);
        Ok(n)
    }
}

/// Chunks a download hands over; the bound is what memory holds at most
/// beyond the unpacker's buffers.
const CHUNKS_IN_FLIGHT: usize = 64;

/// The download side of [`stream_unpack`]'s channel.
pub type ChunkSender = tokio::sync::mpsc::Sender<Bytes>;

/// Runs the download `download` makes on a thread of its own (a
/// current-thread runtime), feeding what it sends to the unpacker here.
/// The download awaits room in the channel, so a slow disk slows it down
/// without blocking its runtime. A download error wins over the unpack
/// error it causes (a cut-off stream is reported as the download's
/// failure).
fn stream_unpack<F, Fut>(what: &str, into: &Path, download: F) -> Result<Unpacked, SourceError>
where
    F: FnOnce(ChunkSender) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), DownloadError>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let downloader = std::thread::Builder::new()
        .name("context-download".into())
        .spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DownloadError::Runtime)?
                .block_on(download(tx))
        })?;
    let unpacked = unpack(
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        },
        into,
        what,
    );
    // the receiver is gone: a download still running stops at its next send
    let downloaded = downloader.join().unwrap_or(Err(DownloadError::Panicked));
    match (downloaded, unpacked) {
        (Err(source), _) => Err(SourceError::Download {
            what: what.to_string(),
            source,
        }),
        (Ok(()), result) => result,
    }
}

/// The unpacker's side of [`stream_unpack`]: the end of the channel is
/// the end of the stream (a failed download is told apart by its thread).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Sends a body's chunks down `tx` until it ends, or until the unpacker
/// stops reading (its error is then the one to tell).
async fn forward<E>(
    body: impl futures_util::Stream<Item = Result<Bytes, E>>,
    tx: &ChunkSender,
    fail: impl Fn(E) -> DownloadError,
) -> Result<(), DownloadError> {
    use futures_util::StreamExt;
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        if tx.send(chunk.map_err(&fail)?).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// Sends `request` and streams a successful answer's body down `tx`; for
/// any other status, `refused(status, body)` says what went wrong.
async fn get_streamed(
    request: reqwest::RequestBuilder,
    tx: &ChunkSender,
    refused: impl FnOnce(reqwest::StatusCode, &str) -> DownloadError,
) -> Result<(), DownloadError> {
    let no_url = |e: reqwest::Error| DownloadError::Http(e.without_url());
    let response = request.send().await.map_err(no_url)?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(refused(status, &body));
    }
    forward(response.bytes_stream(), tx, no_url).await
}

/// Sends `url`'s body down `tx`, streamed.
async fn fetch_url(url: String, tx: ChunkSender) -> Result<(), DownloadError> {
    let client =
        crate::registry::download_client().map_err(|e| DownloadError::Http(e.without_url()))?;
    get_streamed(client.get(&url), &tx, |status, _| {
        DownloadError::Status(status)
    })
    .await
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The URL without user info or query (they may hold credentials).
pub fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = host.rsplit_once('@').map_or(host, |(_, host)| host);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        None => no_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(
            ContextSource::parse("dir:///ws").unwrap(),
            ContextSource::Dir(PathBuf::from("/ws"))
        );
        assert_eq!(
            ContextSource::parse("tar://stdin").unwrap(),
            ContextSource::Stdin
        );
        assert_eq!(
            ContextSource::parse("tar:///c.tar.gz").unwrap(),
            ContextSource::Tar(PathBuf::from("/c.tar.gz"))
        );
        assert!(matches!(
            ContextSource::parse("https://h/c.tar.gz").unwrap(),
            ContextSource::Https(_)
        ));
        assert!(matches!(
            ContextSource::parse("s3://b/c.tar.gz").unwrap(),
            ContextSource::Object(_)
        ));
        assert!(matches!(
            ContextSource::parse("https://acct.blob.core.windows.net/c/ctx.tar.gz").unwrap(),
            ContextSource::Object(_)
        ));
        assert!(matches!(
            ContextSource::parse("https://h/r.git").unwrap(),
            ContextSource::Git(_)
        ));
        assert!(matches!(
            ContextSource::parse("git://h/r.git#refs/heads/x").unwrap(),
            ContextSource::Git(_)
        ));
        assert_eq!(
            ContextSource::parse("ftp://u:pw@h/c.tar.gz?sig=s")
                .unwrap_err()
                .to_string(),
            "--context ftp://h/c.tar.gz: ftp:// contexts are not supported (dir://, tar://, \
             https://, git://, s3://, gs:// and Azure blob URLs are)"
        );
        assert_eq!(
            shown_url("https://user:secret@h.example/c.tar.gz?sig=abc"),
            "https://h.example/c.tar.gz"
        );
        assert_eq!(
            shown_url("https://h.example/a@b/c.tar.gz"),
            "https://h.example/a@b/c.tar.gz"
        );
    }

    #[test]
    fn a_stream_is_read_across_chunks() {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        for part in ["ab", "", "cde"] {
            tx.try_send(Bytes::from(part)).unwrap();
        }
        drop(tx);
        let mut text = String::new();
        ChannelReader {
            rx,
            chunk: Bytes::new(),
        }
        .read_to_string(&mut text)
        .unwrap();
        assert_eq!(text, "abcde");
    }
}
