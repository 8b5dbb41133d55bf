//! Content digests (`sha256:<hex>`) and a writer that computes one on the way.

use sha2::{Digest as _, Sha256};
use std::fmt;
use std::io::{self, Write};

/// A string that is not a digest smelt accepts; each names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: missing algorithm")]
    NoAlgorithm(String),
    #[error("invalid digest {digest:?}: unsupported algorithm {algorithm:?}")]
    Algorithm { digest: String, algorithm: String },
    #[error("invalid digest {digest:?}: want {len} lower-case hex digits")]
    Hex { digest: String, len: usize },
}

/// A content digest such as `sha256:e3b0…`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256(bytes: &[u8]) -> Digest {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// From a finished hasher.
    pub fn from_sha256(hasher: Sha256) -> Digest {
        Digest(format!("sha256:{}", hex::encode(hasher.finalize())))
    }

    /// Parses `algorithm:hex`; only sha256 and sha512 are accepted.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let (alg, hex) = s
            .split_once(':')
            .ok_or_else(|| DigestError::NoAlgorithm(s.to_string()))?;
        let len = match alg {
            "sha256" => 64,
            "sha512" => 128,
            _ => {
                return Err(DigestError::Algorithm {
                    digest: s.to_string(),
                    algorithm: alg.to_string(),
                });
            }
        };
        if hex.len() != len
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(DigestError::Hex {
                digest: s.to_string(),
                len,
            });
        }
        Ok(Digest(s.to_string()))
    }

    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(a, _)| a)
    }

    /// The hex part, which names the blob in layouts and archives.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, h)| h)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

/// Passes bytes through to `inner` while computing their sha256 and count.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The writer back, with the digest and byte count of what went through.
    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_sha256(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty() {
        let d = Digest::sha256(b"");
        assert_eq!(
            d.as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
        assert_eq!(
            Digest::parse("sha256:abc").unwrap_err().to_string(),
            "invalid digest \"sha256:abc\": want 64 lower-case hex digits"
        );
        assert_eq!(
            Digest::parse("md5:00").unwrap_err().to_string(),
            "invalid digest \"md5:00\": unsupported algorithm \"md5\""
        );
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"").expect("vec write");
        assert_eq!(w.finish().1, d);
    }
}
