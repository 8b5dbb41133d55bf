//! Build contexts that are not a local directory, fetched into one before
//! the build reads anything: `tar://PATH` (a tar or tar.gz file),
//! `tar://stdin` (standard input), and `https://…` tarballs. A tarball is
//! unpacked with the rules image layers get (`fs::extract`): no entry can
//! land outside the context directory, whatever its name or links say.

use super::EngineError;
use crate::fs::compress::decompressor;
use crate::fs::extract::{ExtractOptions, extract_tar};
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};

/// Where a `--context` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    Dir(PathBuf),
    Tar(PathBuf),
    Stdin,
    Https(String),
}

impl ContextSource {
    /// Reads kaniko's `--context` spellings; `Err` names an unknown scheme.
    pub fn parse(spec: &str) -> Result<ContextSource, String> {
        match spec.split_once("://") {
            None => Ok(ContextSource::Dir(PathBuf::from(spec))),
            Some(("dir", path)) => Ok(ContextSource::Dir(PathBuf::from(path))),
            Some(("tar", "stdin" | "-")) => Ok(ContextSource::Stdin),
            Some(("tar", path)) => Ok(ContextSource::Tar(PathBuf::from(path))),
            Some(("https", _)) if !spec.ends_with(".git") && !spec.contains(".git#") => {
                Ok(ContextSource::Https(spec.to_string()))
            }
            Some((scheme, _)) => Err(format!(
                "--context {spec}: {scheme}:// contexts are not implemented yet \
                 (dir://, tar://, tar://stdin and https:// tarballs are)"
            )),
        }
    }

    /// Fetches and unpacks the context into the empty directory `into`.
    pub fn fetch(&self, into: &Path) -> Result<(), EngineError> {
        match self {
            ContextSource::Dir(_) => Ok(()),
            ContextSource::Tar(path) => {
                let file = fs_err::File::open(path)?;
                unpack(file, into, &format!("tar://{}", path.display()))
            }
            ContextSource::Stdin => unpack(std::io::stdin().lock(), into, "tar://stdin"),
            ContextSource::Https(url) => {
                // an unnamed file: gone however the download or unpack ends
                let mut download = tempfile::tempfile()?;
                fetch_url(url, &mut download)?;
                download.seek(std::io::SeekFrom::Start(0))?;
                unpack(download, into, &shown_url(url))
            }
        }
    }
}

/// Unpacks a tar or tar.gz stream into `into`.
fn unpack<R: Read>(reader: R, into: &Path, what: &str) -> Result<(), EngineError> {
    let fail = |e: &dyn std::fmt::Display| {
        EngineError::Invalid(format!("unpacking the build context {what}: {e}"))
    };
    let reader = decompressor(BufReader::with_capacity(256 << 10, reader)).map_err(|e| fail(&e))?;
    extract_tar(
        reader,
        into,
        "",
        ExtractOptions {
            whiteouts: false,
            chown: None,
            skip: None,
        },
    )
    .map_err(|e| fail(&e))?;
    Ok(())
}

/// Downloads `url` into `to`, streamed.
fn fetch_url(url: &str, to: &mut std::fs::File) -> Result<(), EngineError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let shown = shown_url(url);
    let fail = |e: &dyn std::fmt::Display| {
        EngineError::Invalid(format!("downloading the build context {shown}: {e}"))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(&e))?;
    rt.block_on(async {
        let client = crate::registry::download_client().map_err(|e| fail(&e.without_url()))?;
        let response = client
            .get(url)
            .send()
            .await
            .map_err(|e| fail(&e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(fail(&format!("the server answered {status}")));
        }
        let mut out = std::io::BufWriter::new(to);
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            out.write_all(&chunk.map_err(|e| fail(&e.without_url()))?)?;
        }
        out.flush()?;
        Ok(())
    })
}

/// The URL without user info or query (they may hold credentials).
fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
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
        assert!(ContextSource::parse("s3://b/c.tar.gz").is_err());
        assert!(ContextSource::parse("https://h/r.git").is_err());
        assert_eq!(
            shown_url("https://user:secret@h.example/c.tar.gz?sig=abc"),
            "https://h.example/c.tar.gz"
        );
    }
}
