//! kaniko's credential helpers (`--credential-helpers`), tried after
//! docker's `config.json`: `env` and `gitlab` read the environment;
//! `google`, `ecr` and `acr` run the cloud's `docker-credential-*` helper
//! when it is on `PATH`, else make the cloud's token exchange themselves
//! with the environment's credentials:
//!
//! - google: an OAuth2 access token (service account key in
//!   `GOOGLE_APPLICATION_CREDENTIALS`, else the GCE/GKE metadata server),
//!   used as `oauth2accesstoken`;
//! - ecr: `GetAuthorizationToken`, SigV4-signed with the credentials
//!   `object_store` finds (environment, web identity, ECS, instance
//!   metadata);
//! - acr: an Entra ID token (client secret, or workload identity's
//!   federated token) exchanged at the registry's `/oauth2/exchange` for
//!   a refresh token.
//!
//! Every failure is one line naming the helper and the registry (a warning
//! when the user named the helpers), never a secret.

use super::auth::Credential;
use base64::Engine;
use std::time::Duration;

/// kaniko's fork's helpers, in its order.
pub(crate) const DEFAULT: [&str; 5] = ["env", "google", "ecr", "acr", "gitlab"];

/// What helper `name` (the fork's names, or the helper binaries' own:
/// gcr, ecr-login, acr-env) knows for `registry`. `chosen`: the user named
/// the helpers, so one that cannot run says why.
pub(crate) fn credential(name: &str, registry: &str, chosen: bool) -> Option<Credential> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let exchanged = |helper: &str, r: Result<Credential, String>| match r {
        Ok(c) => Some(c),
        Err(why) => missing(chosen, helper, registry, &why),
    };
    match name {
        "env" => env_helper(registry, env),
        "gitlab" => gitlab_helper(registry, env),
        "google" | "gcr" if is_google(registry) => {
            run_helper("gcr", registry, chosen).or_else(|| {
                // public images on gcr.io are common: without a key file,
                // ask the metadata server only where there is one
                if env("GOOGLE_APPLICATION_CREDENTIALS").is_none() && !metadata_server_answers() {
                    return missing(
                        chosen,
                        "google",
                        registry,
                        "docker-credential-gcr is not on PATH, GOOGLE_APPLICATION_CREDENTIALS is not set and no metadata server answers",
                    );
                }
                exchanged("google", block_on(google_token()))
            })
        }
        "ecr" | "ecr-login" if is_ecr(registry) => run_helper("ecr-login", registry, chosen)
            .or_else(|| {
                exchanged(
                    "ecr",
                    block_on(ecr_token(registry, env("AWS_ENDPOINT_URL_ECR"))),
                )
            }),
        "acr" | "acr-env" if is_acr(registry) => {
            run_helper("acr-env", registry, chosen).or_else(|| {
                let base = format!("https://{registry}");
                exchanged("acr", block_on(acr_token(registry, &base, &env)))
            })
        }
        "google" | "gcr" | "ecr" | "ecr-login" | "acr" | "acr-env" => None,
        other => {
            log::warn!(
                "--credential-helpers {other:?}: unknown helper, skipped (use env, google, ecr, acr or gitlab)"
            );
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

fn is_acr(registry: &str) -> bool {
    let h = host_only(registry);
    h.ends_with(".azurecr.io") || h.ends_with(".azurecr.cn") || h.ends_with(".azurecr.us")
}

/// Runs `f` to completion from the blocking thread a credential lookup
/// runs on (`Authenticator::credential` puts it on tokio's blocking pool).
fn block_on<T>(f: impl Future<Output = Result<T, String>>) -> Result<T, String> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting a runtime: {e}"))?
            .block_on(f),
    }
}

/// A client for the token exchanges: the registry clients' CA roots, and
/// a short time limit (a helper must not hold a build up).
fn client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("smelt/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tls_certs_only(super::client::ca_roots().iter().cloned())
        .build()
        .map_err(|e| format!("making an HTTP client: {e}"))
}

/// The JSON body of a successful answer; else what failed (the status and
/// the service's own words, which hold no secret of ours).
async fn json_answer(
    what: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<serde_json::Value, String> {
    let response = response.map_err(|e| format!("{what}: {e}"))?;
    let status = response.status();
    let text = response.text().await.map_err(|e| format!("{what}: {e}"))?;
    if !status.is_success() {
        let said: String = text.chars().take(300).collect();
        return Err(format!("{what}: {status}: {said}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{what}: not JSON: {e}"))
}

/// Whether something listens where the GCE metadata server would
/// (`GCE_METADATA_HOST`, else 169.254.169.254:80), within 300 ms.
fn metadata_server_answers() -> bool {
    let host = std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "169.254.169.254".into());
    let host = if host.contains(':') {
        host
    } else {
        format!("{host}:80")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&host)
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
        })
}

/// google: an access token for the cloud-platform scope, from the
/// credentials Google's libraries find (a service account key, else the
/// metadata server), through `object_store`'s GCP provider.
async fn google_token() -> Result<Credential, String> {
    let gcs = object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name("smelt-credential-helper")
        .build()
        .map_err(|e| format!("no Google credentials: {e}"))?;
    let token = gcs
        .credentials()
        .get_credential()
        .await
        .map_err(|e| format!("no Google access token: {e}"))?;
    Ok(Credential::Basic {
        username: "oauth2accesstoken".to_string(),
        password: token.bearer.clone(),
    })
}

/// The region of an ECR registry host (`ACCOUNT.dkr.ecr[-fips].REGION.amazonaws.com[.cn]`).
fn ecr_region(registry: &str) -> Option<&str> {
    let h = host_only(registry);
    let rest = h.split_once(".dkr.")?.1;
    let mut parts = rest.split('.');
    let service = parts.next()?;
    (service == "ecr" || service == "ecr-fips")
        .then(|| parts.next())
        .flatten()
}

/// ecr: `GetAuthorizationToken` for the registry's region, signed with the
/// AWS credentials `object_store` finds; the token is `AWS:password`.
/// `endpoint` overrides the API's address (`AWS_ENDPOINT_URL_ECR`).
async fn ecr_token(registry: &str, endpoint: Option<String>) -> Result<Credential, String> {
    let region = ecr_region(registry).ok_or("not an ECR registry host")?;
    let suffix = if host_only(registry).ends_with(".cn") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    let endpoint = endpoint.unwrap_or_else(|| format!("https://api.ecr.{region}.{suffix}/"));
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name("smelt-credential-helper")
        .with_region(region)
        .build()
        .map_err(|e| format!("no AWS credentials: {e}"))?;
    let credential = s3
        .credentials()
        .get_credential()
        .await
        .map_err(|e| format!("no AWS credentials: {e}"))?;
    ecr_exchange(&credential, region, &endpoint).await
}

/// The signed `GetAuthorizationToken` call itself.
async fn ecr_exchange(
    credential: &object_store::aws::AwsCredential,
    region: &str,
    endpoint: &str,
) -> Result<Credential, String> {
    let body = b"{}".to_vec();
    let mut request = object_store::client::HttpRequest::new(body.clone().into());
    *request.method_mut() = reqwest::Method::POST;
    *request.uri_mut() = endpoint
        .parse()
        .map_err(|e| format!("AWS_ENDPOINT_URL_ECR {endpoint}: {e}"))?;
    let headers = request.headers_mut();
    headers.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert(
        "x-amz-target",
        reqwest::header::HeaderValue::from_static(
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        ),
    );
    object_store::aws::AwsAuthorizer::new(credential, "ecr", region)
        .try_authorize(&mut request, None)
        .map_err(|e| format!("signing GetAuthorizationToken: {e}"))?;
    let http = client()?;
    let mut send = http.post(endpoint).body(body);
    for (name, value) in request.headers() {
        send = send.header(name, value);
    }
    let answer = json_answer("GetAuthorizationToken", send.send().await).await?;
    let token = answer["authorizationData"][0]["authorizationToken"]
        .as_str()
        .ok_or("GetAuthorizationToken: no authorizationToken in the answer")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or("GetAuthorizationToken: the token is not base64 text")?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or("GetAuthorizationToken: the token is not user:password")?;
    Ok(Credential::Basic {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// acr: an Entra ID access token for the registry's audience
/// (`AZURE_CLIENT_ID`, `AZURE_TENANT_ID` and `AZURE_CLIENT_SECRET`, or
/// workload identity's `AZURE_FEDERATED_TOKEN_FILE`; `AZURE_AUTHORITY_HOST`
/// as the Azure SDKs read it), exchanged at `base/oauth2/exchange` for
/// the registry's refresh token.
async fn acr_token(
    registry: &str,
    base: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Credential, String> {
    let (Some(client_id), Some(tenant)) = (env("AZURE_CLIENT_ID"), env("AZURE_TENANT_ID")) else {
        return Err("AZURE_CLIENT_ID and AZURE_TENANT_ID are not set".to_string());
    };
    let mut form = vec![
        ("grant_type", "client_credentials".to_string()),
        ("client_id", client_id),
        (
            "scope",
            "https://containerregistry.azure.net/.default".to_string(),
        ),
    ];
    if let Some(secret) = env("AZURE_CLIENT_SECRET") {
        form.push(("client_secret", secret));
    } else if let Some(file) = env("AZURE_FEDERATED_TOKEN_FILE") {
        let assertion = fs_err::read_to_string(&file)
            .map_err(|e| format!("AZURE_FEDERATED_TOKEN_FILE: {e}"))?;
        form.push((
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ));
        form.push(("client_assertion", assertion.trim().to_string()));
    } else {
        return Err(
            "neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE is set".to_string(),
        );
    }
    let authority = env("AZURE_AUTHORITY_HOST")
        .unwrap_or_else(|| "https://login.microsoftonline.com".to_string());
    let token_url = format!(
        "{}/{tenant}/oauth2/v2.0/token",
        authority.trim_end_matches('/')
    );
    let http = client()?;
    let answer = json_answer(
        "the Entra ID token request",
        http.post(&token_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(encode_form(&form))
            .send()
            .await,
    )
    .await?;
    let access = answer["access_token"]
        .as_str()
        .ok_or("the Entra ID token request: no access_token in the answer")?;
    let exchange = [
        ("grant_type", "access_token".to_string()),
        ("service", host_only(registry).to_string()),
        ("tenant", tenant),
        ("access_token", access.to_string()),
    ];
    let answer = json_answer(
        "the registry's token exchange",
        http.post(format!("{}/oauth2/exchange", base.trim_end_matches('/')))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(encode_form(&exchange))
            .send()
            .await,
    )
    .await?;
    let refresh = answer["refresh_token"]
        .as_str()
        .ok_or("the registry's token exchange: no refresh_token in the answer")?;
    Ok(Credential::IdentityToken(refresh.to_string()))
}

fn encode_form(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", super::auth::form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::{Arc, Mutex};

    /// What the fake service was sent: (request line and headers, body).
    type Seen = Arc<Mutex<Vec<(String, String)>>>;

    /// A one-request-per-connection HTTP server on loopback answering each
    /// request whose path starts with a key with its JSON.
    fn serve(answers: Vec<(&'static str, String)>) -> (String, Seen) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let seen: Seen = Arc::default();
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut reader =
                    BufReader::new(stream.try_clone().unwrap_or_else(|e| panic!("{e}")));
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                let answer = answers
                    .iter()
                    .find(|(p, _)| path.starts_with(p))
                    .map(|(_, a)| a.clone());
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((head, String::from_utf8_lossy(&body).into_owned()));
                let (status, text) = match answer {
                    Some(a) => ("200 OK", a),
                    None => ("404 Not Found", "{}".to_string()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
            }
        });
        (addr, seen)
    }

    #[test]
    fn ecr_signs_get_authorization_token_and_reads_the_token() {
        let token = base64::engine::general_purpose::STANDARD.encode("AWS:ecr-password");
        let (addr, seen) = serve(vec![(
            "/",
            format!(
                r#"{{"authorizationData":[{{"authorizationToken":"{token}","proxyEndpoint":"https://x"}}]}}"#
            ),
        )]);
        let credential = object_store::aws::AwsCredential {
            key_id: "AKIDEXAMPLE".to_string(),
            secret_key: "secret-key-example".to_string(),
            token: Some("session-token-example".to_string()),
        };
        let got = block_on(ecr_exchange(
            &credential,
            "eu-west-1",
            &format!("http://{addr}/"),
        ));
        assert_eq!(
            got,
            Ok(Credential::Basic {
                username: "AWS".into(),
                password: "ecr-password".into()
            })
        );
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let (head, body) = &seen[0];
        let head = head.to_lowercase();
        assert!(head.starts_with("post / "), "{head}");
        assert!(
            head.contains(
                "x-amz-target: amazonec2containerregistry_v20150921.getauthorizationtoken"
            ),
            "{head}"
        );
        assert!(
            head.contains("x-amz-security-token: session-token-example"),
            "{head}"
        );
        assert!(
            head.contains("authorization: aws4-hmac-sha256 credential=akidexample/")
                && head.contains("/eu-west-1/ecr/aws4_request"),
            "{head}"
        );
        assert!(!head.contains("secret-key-example"), "{head}");
        assert_eq!(body, "{}");
        assert_eq!(
            ecr_region("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(
            ecr_region("1.dkr.ecr-fips.us-east-1.amazonaws.com"),
            Some("us-east-1")
        );
        assert_eq!(ecr_region("registry.example.com"), None);
    }

    #[test]
    fn acr_exchanges_an_entra_token_for_a_refresh_token() {
        let (addr, seen) = serve(vec![
            (
                "/tenant-1/oauth2/v2.0/token",
                r#"{"access_token":"entra-access"}"#.to_string(),
            ),
            (
                "/oauth2/exchange",
                r#"{"refresh_token":"acr-refresh"}"#.to_string(),
            ),
        ]);
        let base = format!("http://{addr}");
        let vars = [
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_SECRET", "client-secret"),
            ("AZURE_AUTHORITY_HOST", base.as_str()),
        ];
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let got = block_on(acr_token("myreg.azurecr.io", &base, &env));
        assert_eq!(got, Ok(Credential::IdentityToken("acr-refresh".into())));
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        let (_, token_form) = &seen[0];
        assert!(
            token_form.contains("grant_type=client_credentials")
                && token_form.contains("client_id=client-1")
                && token_form.contains("client_secret=client-secret")
                && token_form
                    .contains("scope=https%3A%2F%2Fcontainerregistry.azure.net%2F.default"),
            "{token_form}"
        );
        let (_, exchange_form) = &seen[1];
        assert_eq!(
            exchange_form,
            "grant_type=access_token&service=myreg.azurecr.io&tenant=tenant-1&access_token=entra-access"
        );
        // nothing to log in with: named
        let none = |_: &str| None;
        assert_eq!(
            block_on(acr_token("myreg.azurecr.io", &base, &none)),
            Err("AZURE_CLIENT_ID and AZURE_TENANT_ID are not set".to_string())
        );
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
}
