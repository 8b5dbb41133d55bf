//! Errors talking to a registry. Each names what was being done (the
//! reference, the blob) and what the registry said; none carries a
//! credential, a token or a request header.

/// An error of the registry client.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered with an unexpected status.
    #[error("{what}: the registry answered {status}{}", said(.message))]
    Status {
        what: String,
        status: u16,
        message: String,
    },
    /// The registry refused our credentials (or asked for some we lack).
    #[error("{what}: unauthorized ({status}){}", said(.message))]
    Unauthorized {
        what: String,
        status: u16,
        message: String,
    },
    /// The connection failed or broke off.
    #[error("{what}: {message}")]
    Transport { what: String, message: String },
    /// The registry did not connect or answer in time.
    #[error("{what}: the registry did not answer in time ({message})")]
    TimedOut { what: String, message: String },
    /// A blob's bytes did not hash to the digest that named it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    Digest {
        what: String,
        expected: String,
        actual: String,
    },
    /// What the registry sent cannot be used (a schema 1 manifest, no
    /// matching platform, malformed JSON).
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
}

fn said(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl RegistryError {
    /// Whether trying again may help: a broken connection, a 5xx, a 429,
    /// bytes that arrived damaged.
    pub fn is_retryable(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => {
                *status >= 500 || *status == 429 || *status == 408
            }
            RegistryError::Transport { .. }
            | RegistryError::TimedOut { .. }
            | RegistryError::Digest { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn transport(what: &str, e: &reqwest::Error) -> RegistryError {
        // without_url: an upload location carries the registry's state token
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        if let Some(url) = e.url() {
            message = message.replace(url.as_str(), "");
        }
        let message = message.replace(" ()", "");
        if e.is_timeout() {
            RegistryError::TimedOut {
                what: what.to_string(),
                message,
            }
        } else {
            RegistryError::Transport {
                what: what.to_string(),
                message,
            }
        }
    }

    pub(crate) fn io(what: &str, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            what: what.to_string(),
            source,
        }
    }

    pub(crate) fn invalid(what: &str, message: impl Into<String>) -> RegistryError {
        RegistryError::Invalid {
            what: what.to_string(),
            message: message.into(),
        }
    }
}

/// The registry's own words from an error body: the distribution API's
/// `{"errors":[{"code","message","detail"}]}`, or the first line of text.
pub(crate) fn registry_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body)
        && !e.errors.is_empty()
    {
        return e
            .errors
            .iter()
            .map(|i| match (i.code.is_empty(), i.message.is_empty()) {
                (false, false) => format!("{}: {}", i.code, i.message),
                (false, true) => i.code.clone(),
                _ => i.message.clone(),
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    let text = String::from_utf8_lossy(body);
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars()
        .take(200)
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_message_reads_distribution_errors() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"x"}}]}"#;
        assert_eq!(registry_message(body), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(registry_message(b"\n  oops\nmore"), "oops");
        assert_eq!(registry_message(b""), "");
    }

    #[test]
    fn retryable_errors() {
        let status = |status| RegistryError::Status {
            what: String::new(),
            status,
            message: String::new(),
        };
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(status(429).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(400).is_retryable());
    }
}
