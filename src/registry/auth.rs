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
    let all = DEFAULT_HELPERS.map(str::to_string);
    let (names, chosen) = match helpers {
        Some(h) => (h, true),
        None => (&all[..], false),
    };
    names
        .iter()
        .filter(|n| !n.is_empty())
        .find_map(|name| helper_credential(name, registry, chosen))
}

/// kaniko's fork's helpers, in its order.
const DEFAULT_HELPERS: [&str; 5] = ["env", "google", "ecr", "acr", "gitlab"];

/// What helper `name` (the fork's names, or the helper binaries' own:
/// gcr, ecr-login, acr-env) knows for `registry`. `chosen`: the user named
/// the helpers, so one that cannot run says why.
fn helper_credential(name: &str, registry: &str, chosen: bool) -> Option<Credential> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match name {
        "env" => env_helper(registry, env),
        "gitlab" => gitlab_helper(registry, env),
        "google" | "gcr" if is_google(registry) => run_helper("gcr", registry, chosen)
            .or_else(|| gce_metadata_token(env("GCE_METADATA_HOST")))
            .or_else(|| {
                missing(
                    chosen,
                    "google",
                    registry,
                    "docker-credential-gcr is not on PATH and no GCE metadata server answered",
                )
            }),
        "ecr" | "ecr-login" if is_ecr(registry) => {
            run_helper("ecr-login", registry, chosen).or_else(|| {
                missing(
                    chosen,
                    "ecr",
                    registry,
                    "docker-credential-ecr-login is not on PATH (smelt does not sign AWS requests itself)",
                )
            })
        }
        "acr" | "acr-env" if registry.ends_with(".azurecr.io") => {
            run_helper("acr-env", registry, chosen).or_else(|| {
                missing(
                    chosen,
                    "acr",
                    registry,
                    "docker-credential-acr-env is not on PATH",
                )
            })
        }
        "google" | "gcr" | "ecr" | "ecr-login" | "acr" | "acr-env" => None,
        other => {
            log::warn!("--credential-helpers {other:?}: unknown helper, skipped (use env, google, ecr, acr or gitlab)");
            None
        }
    }
}

/// Says that a helper the user chose cannot run for `registry`.
fn missing(chosen: bool, name: &str, registry: &str, why: &str) -> Option<Credential> {
    let text = format!("credential helper {name} for {registry}: {why}; going on without it");
    if chosen {
        log::warn!("{text}");
    } else {
        log::debug!("{text}");
    }
    None
}

/// The fork's `env` helper: `KANIKO_<HOST>_USER` and `KANIKO_<HOST>_PASSWORD`,
/// the host upper-cased with `-` and `.` as `_`, trying each parent domain
/// (`KANIKO_EXAMPLE_COM_USER` serves `registry.example.com`).
fn env_helper(registry: &str, env: impl Fn(&str) -> Option<String>) -> Option<Credential> {
    let host = registry.to_uppercase().replace('-', "_");
    let parts: Vec<&str> = host.split('.').collect();
    (0..parts.len()).find_map(|i| {
        let key = parts[i..].join("_");
        let username = env(&format!("KANIKO_{key}_USER"))?;
        let password = env(&format!("KANIKO_{key}_PASSWORD"))?;
        Some(Credential::Basic { username, password })
    })
}

/// The `gitlab` helper: a GitLab CI job's registry credentials for its
/// registry (`CI_REGISTRY`: `CI_REGISTRY_USER`/`CI_REGISTRY_PASSWORD`, else
/// `gitlab-ci-token` and `CI_JOB_TOKEN`) and its dependency proxy.
fn gitlab_helper(registry: &str, env: impl Fn(&str) -> Option<String>) -> Option<Credential> {
    let same = |v: Option<String>| v.is_some_and(|h| h.trim_end_matches('/') == registry);
    if same(env("CI_REGISTRY")) {
        let (username, password) = match (env("CI_REGISTRY_USER"), env("CI_REGISTRY_PASSWORD")) {
            (Some(u), Some(p)) => (u, p),
            _ => ("gitlab-ci-token".to_string(), env("CI_JOB_TOKEN")?),
        };
        return Some(Credential::Basic { username, password });
    }
    if same(env("CI_DEPENDENCY_PROXY_SERVER")) {
        return Some(Credential::Basic {
            username: env("CI_DEPENDENCY_PROXY_USER")?,
            password: env("CI_DEPENDENCY_PROXY_PASSWORD")?,
        });
    }
    None
}

fn host_only(registry: &str) -> &str {
    registry.rsplit_once(':').map_or(registry, |(h, _)| h)
}

fn is_google(registry: &str) -> bool {
    let h = host_only(registry);
    h == "gcr.io" || h.ends_with(".gcr.io") || h.ends_with("-docker.pkg.dev")
}

fn is_ecr(registry: &str) -> bool {
    let h = host_only(registry);
    h.contains(".dkr.ecr") && (h.ends_with(".amazonaws.com") || h.ends_with(".amazonaws.com.cn"))
}

/// Runs `docker-credential-<helper> get` for `registry` when it is on PATH.
fn run_helper(helper: &str, registry: &str, chosen: bool) -> Option<Credential> {
    use std::io::Write;
    let program = format!("docker-credential-{helper}");
    let mut child = std::process::Command::new(&program)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(registry.as_bytes());
    }
    let out = child.wait_with_output().ok()?;
    if !out.status.success() {
        // its output may hold secrets: name the helper only
        let text = format!("{program} found no credentials for {registry}");
        if chosen {
            log::warn!("{text}");
        } else {
            log::debug!("{text}");
        }
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Reply {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let reply: Reply = serde_json::from_slice(&out.stdout).ok()?;
    Some(if reply.username == "<token>" {
        Credential::IdentityToken(reply.secret)
    } else {
        Credential::Basic {
            username: reply.username,
            password: reply.secret,
        }
    })
}

/// An access token of the instance's service account from the GCE (or GKE
/// workload identity) metadata server: a plain HTTP GET, as Google's
/// libraries make it; `host` overrides the server (`GCE_METADATA_HOST`).
fn gce_metadata_token(host: Option<String>) -> Option<Credential> {
    use std::io::{Read, Write};
    let host = host.unwrap_or_else(|| "169.254.169.254".to_string());
    let addr = if host.contains(':') {
        host.clone()
    } else {
        format!("{host}:80")
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
        .ok()?
        .next()?;
    let timeout = Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET /computeMetadata/v1/instance/service-accounts/default/token HTTP/1.0\r\n\
         Host: {host}\r\nMetadata-Flavor: Google\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response).ok()?;
    let text = String::from_utf8(response).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return None;
    }
    #[derive(serde::Deserialize)]
    struct Token {
        access_token: String,
    }
    let token: Token = serde_json::from_str(body).ok()?;
    Some(Credential::Basic {
        username: "oauth2accesstoken".to_string(),
        password: token.access_token,
    })
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

fn form_encode(s: &str) -> String {
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
    fn env_and_gitlab_helpers_read_the_forks_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let basic = |u: &str, p: &str| {
            Some(Credential::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        let env = vars(&[
            ("KANIKO_EXAMPLE_COM_USER", "u1"),
            ("KANIKO_EXAMPLE_COM_PASSWORD", "p1"),
            ("KANIKO_MY_REG_EXAMPLE_ORG_USER", "u2"),
            ("KANIKO_MY_REG_EXAMPLE_ORG_PASSWORD", "p2"),
        ]);
        assert_eq!(env_helper("registry.example.com", env), basic("u1", "p1"));
        assert_eq!(env_helper("my-reg.example.org", env), basic("u2", "p2"));
        assert_eq!(env_helper("example.net", env), None);
        let ci = vars(&[
            ("CI_REGISTRY", "registry.gitlab.example"),
            ("CI_JOB_TOKEN", "job-tok"),
        ]);
        assert_eq!(
            gitlab_helper("registry.gitlab.example", ci),
            basic("gitlab-ci-token", "job-tok")
        );
        assert_eq!(gitlab_helper("other.example", ci), None);
        assert!(is_google("europe-docker.pkg.dev") && is_google("eu.gcr.io:443"));
        assert!(is_ecr("123456789012.dkr.ecr.eu-west-1.amazonaws.com"));
        assert!(!is_ecr("ecr.example.com"));
    }

    #[test]
    fn docker_hub_uses_the_v1_key() {
        assert_eq!(config_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(config_key("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(form_encode("a b/c"), "a%20b%2Fc");
    }
}
