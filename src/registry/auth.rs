//! Who we are to a registry: credentials from docker's `config.json`
//! (`auths`, `credHelpers`, `credsStore`, read through the
//! `docker_credential` crate), the registry's `WWW-Authenticate` challenge,
//! and the bearer-token flow with tokens cached per registry and scope.
//!
//! Secrets stay in this file: [`Credential`] and cached tokens print as
//! `<redacted>`, and errors name the realm's host and the scope, never a
//! header or a token.

use super::RegistryError;
use base64::Engine;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A credential for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken` in config.json).
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    fn basic_header(&self) -> Option<String> {
        match self {
            Credential::Basic { username, password } => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
            )),
            Credential::IdentityToken(_) => None,
        }
    }
}

/// The key docker's config.json uses for a registry (Docker Hub's is the
/// old v1 index URL).
fn config_key(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    }
}

/// The credential docker would use for `registry`, else the first of
/// kaniko's credential helpers (`helpers`; `None`: all of them) that has one.
pub fn lookup_credential_with(registry: &str, helpers: Option<&[String]>) -> Option<Credential> {
    if let Some(c) = lookup_credential(registry) {
        return Some(c);
    }
    let all = super::cred_helpers::DEFAULT.map(str::to_string);
    let (names, chosen) = match helpers {
        Some(h) => (h, true),
        None => (&all[..], false),
    };
    names
        .iter()
        .filter(|n| !n.is_empty())
        .find_map(|name| super::cred_helpers::credential(name, registry, chosen))
}

/// The credential docker would use for `registry`, if any.
pub fn lookup_credential(registry: &str) -> Option<Credential> {
    match docker_credential::get_credential(config_key(registry)) {
        Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
            Some(Credential::Basic { username, password })
        }
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
            Some(Credential::IdentityToken(token))
        }
        Err(e) => {
            // the helper's output may hold secrets: name the kind only
            let kind = match e {
                docker_credential::CredentialRetrievalError::HelperFailure { helper, .. } => {
                    format!("{helper} failed")
                }
                other => format!("{other:?}"),
            };
            log::debug!("no credentials for {registry} ({kind}); going anonymous");
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Bearer,
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: Scheme,
    pub realm: String,
    pub service: Option<String>,
}

/// Parses `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let scheme = if scheme.eq_ignore_ascii_case("bearer") {
        Scheme::Bearer
    } else if scheme.eq_ignore_ascii_case("basic") {
        Scheme::Basic
    } else {
        return None;
    };
    let params = parse_params(rest);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(k))
            .map(|(_, v)| v.clone())
    };
    Some(Challenge {
        scheme,
        realm: get("realm").unwrap_or_default(),
        service: get("service"),
    })
}

/// `k="v", k2=v2` with quoted values that may hold commas and escapes.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
    out
}

struct Token {
    value: String,
    good_until: Instant,
}

/// What the registry wants, what we have, and the tokens it gave us.
#[derive(Default)]
pub(crate) struct Authenticator {
    /// Per registry: `None` once we know it needs no auth.
    challenges: Mutex<HashMap<String, Option<Challenge>>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
    /// Keyed by registry and the scopes asked for.
    tokens: Mutex<HashMap<String, Token>>,
    /// `--credential-helpers` (`None`: all).
    helpers: Option<Vec<String>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authenticator { <redacted> }")
    }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // a panic while holding one of these maps leaves plain data behind
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Authenticator {
    /// One that asks `helpers` after config.json.
    pub(crate) fn with_helpers(helpers: Option<Vec<String>>) -> Authenticator {
        Authenticator {
            helpers,
            ..Default::default()
        }
    }

    /// Whether the registry's challenge is known yet (`Some(None)`: no auth).
    pub(crate) fn challenge(&self, registry: &str) -> Option<Option<Challenge>> {
        locked(&self.challenges).get(registry).cloned()
    }

    pub(crate) fn set_challenge(&self, registry: &str, challenge: Option<Challenge>) {
        locked(&self.challenges).insert(registry.to_string(), challenge);
    }

    /// The credential for `registry`, looked up once. The lookup may run a
    /// credential helper and wait for it, so it runs on tokio's blocking
    /// pool, not on a worker.
    async fn credential(&self, registry: &str) -> Option<Credential> {
        if let Some(c) = locked(&self.credentials).get(registry) {
            return c.clone();
        }
        let owned = registry.to_string();
        let helpers = self.helpers.clone();
        let c =
            tokio::task::spawn_blocking(move || lookup_credential_with(&owned, helpers.as_deref()))
                .await
                .unwrap_or_else(|e| {
                    log::debug!("credential lookup for {registry} did not finish: {e}");
                    None
                });
        locked(&self.credentials).insert(registry.to_string(), c.clone());
        c
    }

    /// Drops the cached token for these scopes (after a 401 with it).
    pub(crate) fn forget_token(&self, registry: &str, scopes: &[String]) {
        locked(&self.tokens).remove(&token_key(registry, scopes));
    }

    /// The `Authorization` header for a request needing `scopes`, fetching
    /// a token when the registry uses bearer auth. `None`: send none.
    pub(crate) async fn header(
        &self,
        http: &reqwest::Client,
        registry: &str,
        scopes: &[String],
    ) -> Result<Option<String>, RegistryError> {
        let Some(Some(challenge)) = self.challenge(registry) else {
            return Ok(None);
        };
        let credential = self.credential(registry).await;
        match challenge.scheme {
            Scheme::Basic => Ok(credential.as_ref().and_then(Credential::basic_header)),
            Scheme::Bearer => {
                let key = token_key(registry, scopes);
                if let Some(t) = locked(&self.tokens).get(&key)
                    && t.good_until > Instant::now()
                {
                    return Ok(Some(format!("Bearer {}", t.value)));
                }
                let token = fetch_token(http, &challenge, credential.as_ref(), scopes).await?;
                let value = format!("Bearer {}", token.value);
                locked(&self.tokens).insert(key, token);
                Ok(Some(value))
            }
        }
    }
}

fn token_key(registry: &str, scopes: &[String]) -> String {
    let mut s = scopes.to_vec();
    s.sort();
    format!("{registry} {}", s.join(" "))
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

async fn fetch_token(
    http: &reqwest::Client,
    challenge: &Challenge,
    credential: Option<&Credential>,
    scopes: &[String],
) -> Result<Token, RegistryError> {
    let realm_host = reqwest::Url::parse(&challenge.realm)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| challenge.realm.clone());
    let what = format!(
        "getting a token from {realm_host} for {}",
        if scopes.is_empty() {
            "the registry".to_string()
        } else {
            scopes.join(" ")
        }
    );
    let mut query: Vec<(&str, &str)> = Vec::new();
    if let Some(s) = &challenge.service {
        query.push(("service", s));
    }
    for s in scopes {
        query.push(("scope", s));
    }
    let mut realm = reqwest::Url::parse(&challenge.realm)
        .map_err(|e| RegistryError::invalid(&what, format!("bad token realm: {e}")))?;
    if !query.is_empty() {
        realm.query_pairs_mut().extend_pairs(&query);
    }
    let request = match credential {
        Some(Credential::IdentityToken(refresh)) => {
            // the OAuth2 form takes one space-separated scope
            let joined = scopes.join(" ");
            let mut form: Vec<(&str, &str)> = Vec::new();
            if let Some(s) = &challenge.service {
                form.push(("service", s));
            }
            if !joined.is_empty() {
                form.push(("scope", &joined));
            }
            form.extend([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.as_str()),
                ("client_id", "smelt"),
            ]);
            let body = form
                .iter()
                .map(|(k, v)| format!("{k}={}", form_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            http.post(&challenge.realm)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
        }
        Some(c @ Credential::Basic { .. }) => {
            let mut r = http.get(realm);
            if let Some(h) = c.basic_header() {
                r = r.header(reqwest::header::AUTHORIZATION, h);
            }
            r
        }
        None => http.get(realm),
    };
    let response = request
        .send()
        .await
        .map_err(|e| RegistryError::transport(&what, &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| RegistryError::transport(&what, &e))?;
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        return Err(RegistryError::Unauthorized {
            what,
            status: status.as_u16(),
            message: super::error::registry_message(&body),
        });
    }
    if !status.is_success() {
        return Err(RegistryError::Status {
            what,
            status: status.as_u16(),
            message: super::error::registry_message(&body),
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| RegistryError::invalid(&what, format!("malformed token response: {e}")))?;
    let value = if parsed.token.is_empty() {
        parsed.access_token
    } else {
        parsed.token
    };
    if value.is_empty() {
        return Err(RegistryError::invalid(
            &what,
            "the token response holds no token",
        ));
    }
    // the distribution spec's default lifetime is 60 s; renew a little early
    let life = Duration::from_secs(parsed.expires_in.unwrap_or(60).max(60));
    Ok(Token {
        value,
        good_until: Instant::now() + life - Duration::from_secs(10),
    })
}

pub(crate) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge {
                scheme: Scheme::Bearer,
                realm: "https://auth.docker.io/token".to_string(),
                service: Some("registry.docker.io".to_string()),
            })
        );
        let c = parse_challenge(r#"Basic realm="basic-realm""#).map(|c| c.scheme);
        assert_eq!(c, Some(Scheme::Basic));
        let c = parse_challenge(r#"bearer realm=http://h:1/t, service = "a\"b""#);
        assert_eq!(c.as_ref().map(|c| c.realm.as_str()), Some("http://h:1/t"));
        assert_eq!(c.and_then(|c| c.service), Some("a\"b".to_string()));
        assert_eq!(parse_challenge("Negotiate abc"), None);
    }

    #[test]
    fn credentials_do_not_print() {
        let c = Credential::Basic {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Credential::IdentityToken("tok-secret".into());
        assert!(!format!("{t:?}").contains("tok-secret"));
    }

    #[test]
    fn docker_hub_uses_the_v1_key() {
        assert_eq!(config_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(form_encode("a b/c"), "a%20b%2Fc");
    }
}
