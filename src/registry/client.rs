//! One HTTP client per registry and direction, as kaniko's flags configure
//! it (plain HTTP, TLS verification, extra CA certificates, client
//! certificates), the request loop that answers auth challenges, and
//! retries with backoff.
//!
//! Pull and push live in their own files; this one knows how to reach a
//! registry and be let in, nothing about images.

use super::RegistryError;
use super::auth::{Authenticator, parse_challenge};
use super::error::registry_message;
use super::progress::Progress;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Whether a request reads from a registry or writes to it; kaniko's
/// `--insecure` and `--skip-tls-verify` are for pushes, the `-pull`
/// variants for pulls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Pull,
    Push,
}

/// How to reach registries: kaniko's registry flags.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// `--insecure`: push over plain HTTP.
    pub insecure_push: bool,
    /// `--insecure-pull`: pull over plain HTTP.
    pub insecure_pull: bool,
    /// `--insecure-registry`: plain HTTP for these registries both ways.
    pub insecure_registries: Vec<String>,
    /// `--skip-tls-verify`
    pub skip_verify_push: bool,
    /// `--skip-tls-verify-pull`
    pub skip_verify_pull: bool,
    /// `--skip-tls-verify-registry`
    pub skip_verify_registries: Vec<String>,
    /// `--registry-certificate host=ca.pem`
    pub certificates: Vec<(String, PathBuf)>,
    /// `--registry-client-cert host=cert.pem,key.pem`
    pub client_certs: Vec<(String, PathBuf, PathBuf)>,
    /// `--registry-mirror`: tried in order for Docker Hub images.
    pub mirrors: Vec<String>,
    /// `--registry-map from=to1;to2`: tried in order for `from`'s images.
    pub registry_maps: Vec<(String, Vec<String>)>,
    /// `--skip-default-registry-fallback`: do not fall back to the
    /// original registry when every mirror failed.
    pub skip_default_fallback: bool,
    /// `--image-download-retry`: extra attempts per download.
    pub download_retries: u32,
    /// `--push-retry`: extra attempts per upload.
    pub push_retries: u32,
    /// `--push-ignore-immutable-tag-errors`: a manifest push the registry
    /// refuses because the tag is immutable counts as done.
    pub ignore_immutable_tags: bool,
    /// `--credential-helpers`: the helpers tried after config.json (`None`:
    /// all of them; an empty name turns them off).
    pub credential_helpers: Option<Vec<String>>,
    /// Draw progress bars (stderr is a terminal) instead of log lines.
    pub progress_bars: bool,
    /// A request that does not connect, or goes this long without a byte
    /// from the registry, fails and is not tried again (the layer cache's
    /// registry, which is not worth waiting for); `None`: 30 s to connect,
    /// 120 s between reads, and a timeout is retried like any broken
    /// connection.
    pub request_timeout: Option<Duration>,
}

/// Attempts every request gets before the `--*-retry` flags add more
/// (go-containerregistry, under kaniko, retries transient errors 3 times).
pub(crate) const BUILT_IN_ATTEMPTS: u32 = 3;

/// Where one registry is reached in one direction.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// `https://host:port` or `http://host:port`
    pub base: String,
    pub http: reqwest::Client,
    /// For blob uploads (pushes only): the same client without reqwest's
    /// read timeout, which runs from the start of a request to its answer
    /// and so would cut off an upload that takes longer; uploads time out
    /// when neither side makes progress instead (`Registry::send_upload`).
    pub upload: Option<reqwest::Client>,
    /// The registry as references name it (`docker.io`), the key for auth.
    pub registry: String,
}

/// A registry client shared by every pull and push of a build.
#[derive(Debug)]
pub struct Registry {
    pub(crate) settings: Settings,
    pub(crate) auth: Authenticator,
    endpoints: tokio::sync::Mutex<HashMap<(String, Direction), Arc<Endpoint>>>,
    pub(crate) progress: Progress,
}

/// The host that serves a registry's API.
pub(crate) fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Registry {
    pub fn new(settings: Settings) -> Registry {
        let auth = Authenticator::with_helpers(settings.credential_helpers.clone());
        let progress = Progress::new(settings.progress_bars);
        Registry {
            settings,
            auth,
            endpoints: tokio::sync::Mutex::new(HashMap::new()),
            progress,
        }
    }

    fn listed(list: &[String], registry: &str) -> bool {
        list.iter()
            .any(|r| r == registry || api_host(r) == api_host(registry))
    }

    /// How long a request may go without progress (`request_timeout`, or
    /// 120 s between reads).
    pub(crate) fn idle_timeout(&self) -> Duration {
        self.settings
            .request_timeout
            .unwrap_or(Duration::from_secs(120))
    }

    /// A client for `registry` in direction `dir`; `read_timeout`: with
    /// reqwest's read timeout (every client but the one for uploads).
    fn http_client(
        &self,
        registry: &str,
        dir: Direction,
        read_timeout: bool,
    ) -> Result<reqwest::Client, RegistryError> {
        let s = &self.settings;
        let what = format!("setting up a client for {registry}");
        let skip_verify = Self::listed(&s.skip_verify_registries, registry)
            || match dir {
                Direction::Pull => s.skip_verify_pull,
                Direction::Push => s.skip_verify_push,
            };
        let mut extra = Vec::new();
        for (host, path) in &s.certificates {
            if host == registry {
                let pem = fs_err::read(path).map_err(|e| RegistryError::io(&what, e))?;
                extra.push(reqwest::Certificate::from_pem(&pem).map_err(|e| {
                    RegistryError::invalid(&what, format!("reading {}: {e}", path.display()))
                })?);
            }
        }
        let mut identity = None;
        for (host, cert, key) in &s.client_certs {
            if host == registry {
                let mut pem = fs_err::read(cert).map_err(|e| RegistryError::io(&what, e))?;
                pem.push(b'\n');
                pem.extend(fs_err::read(key).map_err(|e| RegistryError::io(&what, e))?);
                identity = Some(reqwest::Identity::from_pem(&pem).map_err(|e| {
                    RegistryError::invalid(
                        &what,
                        format!("reading {} and {}: {e}", cert.display(), key.display()),
                    )
                })?);
            }
        }
        let connect = s.request_timeout.unwrap_or(Duration::from_secs(30));
        let read = self.idle_timeout();
        let builder = || {
            let b = reqwest::Client::builder()
                .user_agent(concat!("smelt/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(connect)
                .tls_danger_accept_invalid_certs(skip_verify);
            let b = if read_timeout {
                b.read_timeout(read)
            } else {
                b
            };
            match &identity {
                Some(id) => b.identity(id.clone()),
                None => b,
            }
        };
        let roots = ca_roots().iter().cloned().chain(extra);
        builder()
            .tls_certs_only(roots)
            .build()
            .map_err(|e| RegistryError::transport(&what, &e))
    }

    /// The endpoint for `registry`, pinged once to learn its scheme and
    /// auth challenge.
    pub(crate) async fn endpoint(
        &self,
        registry: &str,
        dir: Direction,
    ) -> Result<Arc<Endpoint>, RegistryError> {
        let mut endpoints = self.endpoints.lock().await;
        if let Some(e) = endpoints.get(&(registry.to_string(), dir)) {
            return Ok(e.clone());
        }
        let http = self.http_client(registry, dir, true)?;
        let upload = match dir {
            Direction::Push => Some(self.http_client(registry, dir, false)?),
            Direction::Pull => None,
        };
        let host = api_host(registry);
        let insecure = Self::listed(&self.settings.insecure_registries, registry)
            || match dir {
                Direction::Pull => self.settings.insecure_pull,
                Direction::Push => self.settings.insecure_push,
            };
        // plain HTTP only when allowed (a flag or a loopback registry, as
        // go-containerregistry does), and only after HTTPS failed to connect
        let schemes: &[&str] = if insecure || is_loopback(host) {
            &["https", "http"]
        } else {
            &["https"]
        };
        let what = format!("reaching {registry}");
        // the ping is retried like every other request: a reset on the
        // first connection must not end the build
        let attempts = BUILT_IN_ATTEMPTS
            + match dir {
                Direction::Pull => self.settings.download_retries,
                Direction::Push => self.settings.push_retries,
            };
        let (base, challenge) = self
            .retrying(attempts, &what, || {
                self.ping(&http, host, schemes, registry, &what)
            })
            .await?;
        if self.auth.challenge(registry).is_none() {
            self.auth.set_challenge(registry, challenge);
        }
        let e = Arc::new(Endpoint {
            base,
            http,
            upload,
            registry: registry.to_string(),
        });
        endpoints.insert((registry.to_string(), dir), e.clone());
        Ok(e)
    }

    /// `GET /v2/` with each of `schemes` in turn: the base URL of the
    /// first that answers, and its auth challenge.
    async fn ping(
        &self,
        http: &reqwest::Client,
        host: &str,
        schemes: &[&str],
        registry: &str,
        what: &str,
    ) -> Result<(String, Option<super::auth::Challenge>), RegistryError> {
        let mut last: Option<RegistryError> = None;
        for scheme in schemes {
            let base = format!("{scheme}://{host}");
            match http.get(format!("{base}/v2/")).send().await {
                Ok(response) => {
                    let status = response.status();
                    // an HTTPS server asked in plain HTTP (Go's answer is a
                    // 400): the TLS failure before is the one to name, and
                    // a server that ends the handshake at once most often
                    // wants a client certificate
                    if *scheme == "http"
                        && status == reqwest::StatusCode::BAD_REQUEST
                        && let Some(tls) = last.take()
                    {
                        let tls = tls.to_string();
                        let tls = tls.strip_prefix(&format!("{what}: ")).unwrap_or(&tls);
                        return Err(RegistryError::invalid(
                            what,
                            format!(
                                "{tls}; the registry speaks only HTTPS and ended the TLS \
                                 connection: if it asks for a client certificate, give one \
                                 with --registry-client-cert={registry}=cert.pem,key.pem"
                            ),
                        ));
                    }
                    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    {
                        return Err(fail(response, what).await);
                    }
                    let challenge = if status == reqwest::StatusCode::UNAUTHORIZED {
                        response
                            .headers()
                            .get(reqwest::header::WWW_AUTHENTICATE)
                            .and_then(|h| h.to_str().ok())
                            .and_then(parse_challenge)
                    } else {
                        None
                    };
                    return Ok((base, challenge));
                }
                Err(e) => {
                    let err = RegistryError::transport(what, &e);
                    log::debug!("{scheme}: {err}");
                    // a plain-HTTP server answering the TLS handshake, and
                    // plain HTTP not allowed: say which flag allows it
                    if *scheme == "https"
                        && !schemes.contains(&"http")
                        && err.to_string().contains("InvalidContentType")
                    {
                        let text = err.to_string();
                        let text = text.strip_prefix(&format!("{what}: ")).unwrap_or(&text);
                        return Err(RegistryError::invalid(
                            what,
                            format!(
                                "{text}; the registry answers in plain HTTP, which is used \
                                 only when allowed: --insecure-registry={registry} (or \
                                 --insecure-pull, --insecure)"
                            ),
                        ));
                    }
                    // a TLS server we do not trust: plain HTTP would not help
                    if *scheme == "https" && err.to_string().contains("certificate") {
                        let text = err.to_string();
                        let text = text.strip_prefix(&format!("{what}: ")).unwrap_or(&text);
                        return Err(RegistryError::invalid(
                            what,
                            format!(
                                "{text}; trust its CA with --registry-certificate={registry}=ca.pem, \
                                 or skip verification with --skip-tls-verify-registry={registry}"
                            ),
                        ));
                    }
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::invalid(what, "no scheme to try")))
    }

    /// Sends the request `build` makes, with the auth `scopes` need; on a
    /// 401 learns the new challenge, drops the token and sends once more.
    pub(crate) async fn send<F>(
        &self,
        ep: &Endpoint,
        scopes: &[String],
        what: &str,
        build: F,
    ) -> Result<reqwest::Response, RegistryError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError>,
    {
        self.send_via(ep, None, scopes, what, build).await
    }

    /// [`Registry::send`] for a blob upload: through the endpoint's upload
    /// client, failing with a time-out only when `progress` (ticked by the
    /// body as it is read) stood still and no answer came for the idle
    /// timeout.
    pub(crate) async fn send_upload<F>(
        &self,
        ep: &Endpoint,
        progress: &Activity,
        scopes: &[String],
        what: &str,
        build: F,
    ) -> Result<reqwest::Response, RegistryError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError>,
    {
        self.send_via(ep, Some(progress), scopes, what, build).await
    }

    async fn send_via<F>(
        &self,
        ep: &Endpoint,
        progress: Option<&Activity>,
        scopes: &[String],
        what: &str,
        build: F,
    ) -> Result<reqwest::Response, RegistryError>
    where
        F: Fn(&reqwest::Client) -> Result<reqwest::RequestBuilder, RegistryError>,
    {
        let http = match (progress, &ep.upload) {
            (Some(_), Some(upload)) => upload,
            _ => &ep.http,
        };
        let mut fresh = false;
        loop {
            let header = self.auth.header(&ep.http, &ep.registry, scopes).await?;
            let mut request = build(http)?;
            if let Some(h) = header {
                request = request.header(reqwest::header::AUTHORIZATION, h);
            }
            let sent = async {
                request
                    .send()
                    .await
                    .map_err(|e| RegistryError::transport(what, &e))
            };
            let response = match progress {
                Some(p) => self.while_progressing(p, what, sent).await?,
                None => sent.await?,
            };
            if response.status() != reqwest::StatusCode::UNAUTHORIZED || fresh {
                return Ok(response);
            }
            fresh = true;
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|h| h.to_str().ok())
                .and_then(parse_challenge);
            if challenge.is_none() {
                return Ok(response);
            }
            self.auth.set_challenge(&ep.registry, challenge);
            self.auth.forget_token(&ep.registry, scopes);
        }
    }
}

/// A count that a request body ticks as it is read, so a watchdog can tell
/// a slow upload from a stalled one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity(Arc<std::sync::atomic::AtomicU64>);

impl Activity {
    pub(crate) fn tick(&self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Registry {
    /// Awaits `f`, failing with a time-out once `progress` stood still for
    /// the idle timeout.
    async fn while_progressing<T>(
        &self,
        progress: &Activity,
        what: &str,
        f: impl Future<Output = Result<T, RegistryError>>,
    ) -> Result<T, RegistryError> {
        let idle = self.idle_timeout();
        let mut f = std::pin::pin!(f);
        let mut seen = progress.count();
        loop {
            match tokio::time::timeout(idle, f.as_mut()).await {
                Ok(r) => return r,
                Err(_) if progress.count() != seen => seen = progress.count(),
                Err(_) => {
                    return Err(RegistryError::TimedOut {
                        what: what.to_string(),
                        message: format!("no progress for {} s", idle.as_secs()),
                    });
                }
            }
        }
    }

    /// Runs `op` up to `attempts` times while it fails with a retryable
    /// error, waiting 0.25 s, 0.5 s, 1 s, … (at most 8 s) between tries.
    /// With a request timeout set, a request that timed out is not tried
    /// again.
    pub(crate) async fn retrying<T, F, Fut>(
        &self,
        attempts: u32,
        what: &str,
        mut op: F,
    ) -> Result<T, RegistryError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, RegistryError>>,
    {
        let mut delay = Duration::from_millis(250);
        let mut tried = 0;
        loop {
            tried += 1;
            match op().await {
                Ok(v) => return Ok(v),
                Err(e) if self.retryable(&e) && tried < attempts.max(1) => {
                    log::warn!(
                        "{e}; retrying {what} in {:.2} s (attempt {} of {attempts})",
                        delay.as_secs_f64(),
                        tried + 1
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(8));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether trying `e`'s request again may help, for this client.
    pub(crate) fn retryable(&self, e: &RegistryError) -> bool {
        match e {
            RegistryError::TimedOut { .. } => self.settings.request_timeout.is_none(),
            e => e.is_retryable(),
        }
    }
}

/// Turns a response with an unexpected status into an error carrying what
/// the registry said.
pub(crate) async fn fail(response: reqwest::Response, what: &str) -> RegistryError {
    let status = response.status();
    let body = response.bytes().await.unwrap_or_default();
    let message = registry_message(&body);
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
        RegistryError::Unauthorized {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        }
    } else {
        RegistryError::Status {
            what: what.to_string(),
            status: status.as_u16(),
            message,
        }
    }
}

/// The distribution API's scope for a repository.
pub(crate) fn scope(repository: &str, push: bool) -> String {
    if push {
        format!("repository:{repository}:pull,push")
    } else {
        format!("repository:{repository}:pull")
    }
}

/// A client for plain downloads (an `https://` build context): the same
/// CA roots as registry clients, no registry settings.
pub fn download_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("smelt/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .tls_certs_only(ca_roots().iter().cloned())
        .build()
}

/// Makes ring rustls's crypto provider for the process (reqwest is built
/// without one), once.
fn install_crypto_provider() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        // an error means a provider is installed already: that one serves
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The CA roots every client trusts, read once per process: the
/// system's (`SSL_CERT_FILE`, `SSL_CERT_DIR`, the distribution's bundle,
/// where the platform verifier would look), else, in a minimal container
/// (the executor image) that has none, the Mozilla roots built into smelt.
/// Reading them once matters: a build makes a client per registry and
/// direction, and each read of /etc/ssl/certs is ~150 files.
pub(crate) fn ca_roots() -> &'static [reqwest::Certificate] {
    static ROOTS: std::sync::OnceLock<Vec<reqwest::Certificate>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        ca_roots_der()
            .iter()
            .filter_map(|der| reqwest::Certificate::from_der(der).ok())
            .collect()
    })
}

/// [`ca_roots`] as DER, for clients smelt does not build itself (the
/// object-store context client).
pub fn ca_roots_der() -> &'static [Vec<u8>] {
    install_crypto_provider();
    static ROOTS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let system: Vec<Vec<u8>> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|der| der.to_vec())
            .collect();
        if system.is_empty() {
            log::warn!(
                "no CA certificates found on this system (SSL_CERT_FILE, SSL_CERT_DIR, \
                 /etc/ssl/certs); using the Mozilla roots built into smelt"
            );
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|der| der.to_vec())
                .collect()
        } else {
            system
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_times_out_when_it_stops_progressing_not_when_it_is_slow() {
        let registry = Registry::new(Settings {
            request_timeout: Some(Duration::from_millis(200)),
            ..Settings::default()
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let activity = Activity::default();
        // ticks every 50 ms for 1 s: five idle timeouts long, never idle
        let slow = async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                activity.tick();
            }
            Ok(())
        };
        rt.block_on(registry.while_progressing(&activity, "upload", slow))
            .unwrap();
        let stalled = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let err = rt
            .block_on(registry.while_progressing(&activity, "upload", stalled))
            .unwrap_err();
        assert!(matches!(err, RegistryError::TimedOut { .. }), "{err}");
        assert!(!registry.retryable(&err));
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com"));
        assert!(!is_loopback("10.0.0.1:5000"));
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
    }
}
