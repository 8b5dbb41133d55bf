//! Image references as docker parses them (`busybox` is
//! `docker.io/library/busybox:latest`), enough to name outputs and write
//! digest files the way kaniko does.

use crate::image::DigestError;
use std::fmt;

/// A string that is not an image reference; each names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid image reference {0:?}: empty name")]
    EmptyName(String),
    #[error(
        "invalid image reference {0:?}: repository names must be lower case letters, digits and separators"
    )]
    Repository(String),
    #[error("invalid image reference {0:?}: invalid tag")]
    Tag(String),
    #[error("invalid image reference {reference:?}: {source}")]
    Digest {
        reference: String,
        #[source]
        source: DigestError,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `docker.io`, `host:port`, `localhost`, …
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(rest[i + 1..].to_string())),
            _ => (rest, None),
        };
        if name.is_empty() {
            return Err(ReferenceError::EmptyName(s.to_string()));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, repo))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), repo.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            "docker.io".to_string()
        } else {
            registry
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(ReferenceError::Repository(s.to_string()));
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(ReferenceError::Tag(s.to_string()));
            }
        }
        if let Some(d) = &digest {
            crate::image::Digest::parse(d).map_err(|source| ReferenceError::Digest {
                reference: s.to_string(),
                source,
            })?;
        }
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The tag, `latest` when none was given.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// The repository as go-containerregistry names it (what kaniko writes
    /// in its digest files): Docker Hub is `index.docker.io`.
    pub fn kaniko_repository(&self) -> String {
        let registry = if self.registry == "docker.io" {
            "index.docker.io"
        } else {
            &self.registry
        };
        format!("{registry}/{}", self.repository)
    }

    /// `repo:tag` in docker's short form, as `docker save` writes RepoTags.
    pub fn familiar_tag(&self) -> String {
        let repo = if self.registry == "docker.io" {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        };
        format!("{repo}:{}", self.tag_or_latest())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_normalisation() {
        let cases = [
            ("busybox", "docker.io/library/busybox", "busybox:latest"),
            ("user/app:1.0", "docker.io/user/app:1.0", "user/app:1.0"),
            ("localhost/app", "localhost/app", "localhost/app:latest"),
            (
                "127.0.0.1:5000/a/b:t",
                "127.0.0.1:5000/a/b:t",
                "127.0.0.1:5000/a/b:t",
            ),
            (
                "index.docker.io/library/x",
                "docker.io/library/x",
                "x:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).expect(input);
            assert_eq!(r.to_string(), full);
            assert_eq!(r.familiar_tag(), familiar);
        }
        assert_eq!(
            Reference::parse("busybox").expect("ok").kaniko_repository(),
            "index.docker.io/library/busybox"
        );
        assert!(Reference::parse("Upper/Case").is_err());
        assert!(Reference::parse("a:b:c").is_err());
        assert_eq!(
            Reference::parse("x@sha256:12").unwrap_err().to_string(),
            "invalid image reference \"x@sha256:12\": invalid digest \"sha256:12\": \
             want 64 lower-case hex digits"
        );
    }
}
