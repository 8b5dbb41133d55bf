//! ADD of a URL: the file is downloaded once per build, streamed to a
//! temporary file in the work directory while it is hashed (sha256), and
//! kept there for both of its users: the step's cache key (whose input is
//! the content digest, so the download happens while keys are worked
//! out) and the step itself, which copies it into the root. A
//! `--checksum` is checked before anything reaches the root.
//!
//! The client is the one the `https://` context download uses
//! (`registry::download_client`: the same CA roots, the proxy environment,
//! redirects followed); user info in the URL is sent as basic auth and
//! never shown: errors name the URL as [`shown_url`] shows it.

use super::source::{DownloadError, shown_url};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Why a URL could not be added.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{url}: not a valid URL")]
    BadUrl { url: String },
    /// The request failed or the server refused it; `detail` is the cause
    /// chain (refused connection, DNS failure, status), never the URL.
    #[error("downloading {url}: {detail}")]
    Download { url: String, detail: String },
    #[error("downloading {url}: writing {}: {source}", path.display())]
    Write {
        url: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// BuildKit's words.
    #[error("digest mismatch for {url}: {actual} (expected: {expected})")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
}

/// A `--checksum` value that is not a digest (BuildKit's words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChecksumError {
    #[error("invalid checksum digest format")]
    Format,
    #[error("unsupported digest algorithm")]
    Algorithm,
}

/// Checks a `--checksum` for a URL: `sha256:` and 64 lower-case hex
/// digits (the only algorithm BuildKit's ADD takes).
pub fn parse_checksum(value: &str) -> Result<String, ChecksumError> {
    let (algo, hex) = value.split_once(':').ok_or(ChecksumError::Format)?;
    if algo.is_empty() || hex.is_empty() {
        return Err(ChecksumError::Format);
    }
    if algo != "sha256" {
        return Err(ChecksumError::Algorithm);
    }
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(ChecksumError::Format);
    }
    Ok(value.to_string())
}

/// Whether ADD downloads `source` as a file (an `http(s)://` URL that is
/// not a git repository).
pub fn is_url(source: &str) -> bool {
    (source.starts_with("http://") || source.starts_with("https://"))
        && !super::add_git::is_repository(source)
}

/// `text` with the user info of every `scheme://user:password@host` in
/// it left out, for logs and history (a Dockerfile may carry a URL's
/// credentials, or an ARG may).
pub fn without_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c == '"' || c == '\'' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        out.push_str(
            authority
                .rsplit_once('@')
                .map_or(authority, |(_, host)| host),
        );
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The name ADD gives a downloaded file when the destination is a
/// directory: the URL path's last segment (percent-decoded, trailing
/// slashes ignored), else `__unnamed__`, as BuildKit's dockerfile
/// frontend names it (it never reads `Content-Disposition`).
pub fn file_name(url: &str) -> String {
    let path = reqwest::Url::parse(url)
        .ok()
        .map(|u| {
            percent_encoding::percent_decode_str(u.path())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." && base != ".." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// A downloaded file, kept in the work directory until the build ends.
#[derive(Debug)]
pub struct Downloaded {
    /// The URL as errors and the cache show it.
    pub shown: String,
    /// `sha256:…` of the content.
    pub digest: String,
    /// From `Last-Modified`, else 0 (BuildKit's choice).
    pub mtime: i64,
    /// The name from the URL path ([`file_name`]).
    pub name: String,
    file: tempfile::NamedTempFile,
}

impl Downloaded {
    pub fn open(&self) -> std::io::Result<std::fs::File> {
        self.file.reopen()
    }
}

/// Values made once per key by the first caller that needs one, the
/// others asking for that key waiting for it (two stages adding one URL
/// at once download it once); a failure is not kept, so a later caller
/// tries again.
#[derive(Debug)]
pub struct OncePerKey<K, V> {
    slots: Mutex<HashMap<K, Arc<Mutex<Option<V>>>>>,
}

impl<K, V> Default for OncePerKey<K, V> {
    fn default() -> Self {
        OncePerKey {
            slots: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + std::hash::Hash + Clone, V: Clone> OncePerKey<K, V> {
    /// The value for `key`, made by `make` if no caller made it yet.
    pub fn get_or_try<Q, E>(&self, key: &Q, make: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + std::hash::Hash + ToOwned<Owned = K> + ?Sized,
    {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match slots.get(key) {
                Some(slot) => Arc::clone(slot),
                None => Arc::clone(slots.entry(key.to_owned()).or_default()),
            }
        };
        let mut value = slot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(v) = &*value {
            return Ok(v.clone());
        }
        let made = make()?;
        *value = Some(made.clone());
        Ok(made)
    }
}

/// The downloads of one build, by URL, and its git repositories.
#[derive(Debug)]
pub struct Downloads {
    dir: PathBuf,
    done: OncePerKey<String, Arc<Downloaded>>,
    /// ADD's git repositories (`add_git.rs`).
    pub git: super::add_git::Repositories,
}

/// What an ADD fetched for one of its sources.
#[derive(Debug, Clone)]
pub enum Fetched {
    File(Arc<Downloaded>),
    Repository(Arc<super::add_git::Checkout>),
}

impl Downloads {
    /// Downloads go to `dir` (made on first use), checkouts to `dir/git`
    /// (an SSH repository through the agent at `ssh_auth_sock`, if given).
    pub fn new(dir: PathBuf, ssh_auth_sock: Option<PathBuf>) -> Downloads {
        Downloads {
            git: super::add_git::Repositories::new(dir.join("git"), ssh_auth_sock),
            dir,
            done: OncePerKey::default(),
        }
    }

    /// The file at `url`, downloaded now or earlier in this build, checked
    /// against `checksum` (a `sha256:` digest) if given.
    pub fn get(&self, url: &str, checksum: Option<&str>) -> Result<Arc<Downloaded>, RemoteError> {
        let file = self
            .done
            .get_or_try(url, || self.fetch(url).map(Arc::new))?;
        if let Some(expected) = checksum
            && expected != file.digest
        {
            return Err(RemoteError::Checksum {
                url: file.shown.clone(),
                expected: expected.to_string(),
                actual: file.digest.clone(),
            });
        }
        Ok(file)
    }

    fn fetch(&self, url: &str) -> Result<Downloaded, RemoteError> {
        let shown = shown_url(url);
        let started = std::time::Instant::now();
        let write = |source| RemoteError::Write {
            url: shown.clone(),
            path: self.dir.clone(),
            source,
        };
        fs_err::create_dir_all(&self.dir).map_err(write)?;
        let file = tempfile::Builder::new()
            .prefix("add-")
            .tempfile_in(&self.dir)
            .map_err(write)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(write)?;
        let (digest, mtime, size) =
            runtime.block_on(download(url, &shown, file.as_file(), file.path()))?;
        log::info!(
            "downloaded {shown}: {:.1} MB in {:.2} s, {digest}",
            size as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        Ok(Downloaded {
            name: file_name(url),
            shown,
            digest,
            mtime,
            file,
        })
    }
}

/// The error's text and its causes', as `a: b: c` (reqwest's own text
/// says only "error sending request").
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// GETs `url` (its user info as basic auth) into `out` (at `out_path`);
/// returns the content's digest, its time and size.
async fn download(
    url: &str,
    shown: &str,
    out: &std::fs::File,
    out_path: &std::path::Path,
) -> Result<(String, i64, u64), RemoteError> {
    use futures_util::StreamExt;
    use std::io::Write;
    let failed = |e: DownloadError| RemoteError::Download {
        url: shown.to_string(),
        detail: chain(&e),
    };
    let http = |e: reqwest::Error| failed(DownloadError::Http(e.without_url()));
    let mut parsed = reqwest::Url::parse(url).map_err(|_| RemoteError::BadUrl {
        url: shown.to_string(),
    })?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(parsed.username());
    let password = parsed.password().map(decode);
    // an error here means no user info could be set: nothing to remove
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let client = crate::registry::download_client().map_err(http)?;
    let mut request = client.get(parsed);
    if !user.is_empty() || password.is_some() {
        request = request.basic_auth(user, password);
    }
    let response = request.send().await.map_err(http)?;
    let status = response.status();
    if !status.is_success() {
        return Err(failed(DownloadError::Status(status)));
    }
    let mtime = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| jiff::fmt::rfc2822::parse(v).ok())
        .map_or(0, |t| t.timestamp().as_second());
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut writer = std::io::BufWriter::with_capacity(256 << 10, out);
    let mut body = std::pin::pin!(response.bytes_stream());
    let write = |source| RemoteError::Write {
        url: shown.to_string(),
        path: out_path.to_path_buf(),
        source,
    };
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(http)?;
        hash.update(&chunk);
        size += chunk.len() as u64;
        writer.write_all(&chunk).map_err(write)?;
    }
    writer.flush().map_err(write)?;
    Ok((
        format!("sha256:{}", hex::encode(hash.finalize())),
        mtime,
        size,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_url_path() {
        let rows = [
            ("https://h/a/b.tar.gz", "b.tar.gz"),
            ("https://h/a/b/", "b"),
            ("https://h/a%20b?x=1#f", "a b"),
            ("https://h", "__unnamed__"),
            ("https://h/", "__unnamed__"),
            ("https://u:p@h/x", "x"),
        ];
        for (url, name) in rows {
            assert_eq!(file_name(url), name, "{url}");
        }
    }

    #[test]
    fn credentials_are_left_out_of_texts() {
        assert_eq!(
            without_credentials("ADD https://u:p%20w@h:1/x?t=1 git://a@b/r.git /d"),
            "ADD https://h:1/x?t=1 git://b/r.git /d"
        );
        assert_eq!(without_credentials("RUN echo a@b ://@"), "RUN echo a@b ://");
        assert_eq!(without_credentials("COPY a b"), "COPY a b");
    }

    #[test]
    fn each_key_is_made_once_by_the_first_caller_and_failures_are_not_kept() {
        let once: OncePerKey<String, usize> = OncePerKey::default();
        let made = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let v = once.get_or_try("k", || {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Ok::<_, ()>(made.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1)
                    });
                    assert_eq!(v, Ok(1));
                });
            }
        });
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(
            once.get_or_try("e", || Err::<usize, _>("down")),
            Err("down")
        );
        assert_eq!(once.get_or_try("e", || Ok::<_, &str>(7)), Ok(7));
    }

    #[test]
    fn checksums_are_sha256_digests() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(parse_checksum(&ok).unwrap(), ok);
        assert_eq!(parse_checksum("abc"), Err(ChecksumError::Format));
        assert_eq!(parse_checksum("sha256:abc"), Err(ChecksumError::Format));
        assert_eq!(
            parse_checksum(&format!("sha512:{}", "a".repeat(128))),
            Err(ChecksumError::Algorithm)
        );
    }

    #[test]
    fn urls_and_repositories_are_told_apart() {
        assert!(is_url("https://h/x.tar"));
        assert!(is_url("http://h/x"));
        assert!(!is_url("https://h/r.git"));
        assert!(!is_url("https://h/r.git#main:dir"));
        assert!(!is_url("git@h:r.git"));
        assert!(!is_url("x/y"));
    }
}
