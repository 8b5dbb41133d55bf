//! Real registries for the tests: Debian's `docker-registry` (the reference
//! distribution registry) on a free loopback port, plain, with htpasswd
//! basic auth, or behind a token server written here (RS256 JWTs signed by
//! `openssl`, with the certificate in the `x5c` header). Base images are
//! built by smelt from `busybox-static` and pushed with skopeo.

use crate::harness::{TestContext, tool};
use base64::Engine;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const USER: &str = "smelt-user";
pub const PASSWORD: &str = "s3cret-Pa55word";
/// The refresh token the token server accepts (config.json `identitytoken`).
pub const IDENTITY_TOKEN: &str = "refresh-me-9f8e7d";

/// What the token server was asked: (service, scopes, had credentials).
pub type TokenRequest = (String, Vec<String>, bool);
type TokenLog = Arc<Mutex<Vec<TokenRequest>>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    None,
    Htpasswd,
    Token,
}

pub struct TestRegistry {
    /// `127.0.0.1:port`
    pub host: String,
    pub dir: tempfile::TempDir,
    child: Child,
    pub auth: Auth,
    pub token_requests: TokenLog,
    /// skopeo's certificate directory, for a TLS registry.
    pub cert_dir: Option<PathBuf>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Waits until something accepts connections on `host` (`what`, for the
/// message if nothing does within 20 s).
pub fn wait_for(host: &str, what: &str) {
    let start = Instant::now();
    while TcpStream::connect(host).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{what} did not start on {host}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TestRegistry {
    pub fn start(auth: Auth) -> TestRegistry {
        Self::start_with(auth, None)
    }

    /// With `tls`, serves HTTPS with a certificate from [`TestCa`] (and asks
    /// for client certificates when `tls.1`).
    pub fn start_with(auth: Auth, tls: Option<(&TestCa, bool)>) -> TestRegistry {
        Self::launch(auth, tls, true)
    }

    /// A registry that refuses deletes, as the distribution registry does
    /// unless `storage.delete.enabled` is set.
    pub fn start_without_deletes() -> TestRegistry {
        Self::launch(Auth::None, None, false)
    }

    /// The requests this registry served so far, one line each (its
    /// access log: `"METHOD /path?query HTTP/1.1" status …`).
    pub fn access_log(&self) -> Vec<String> {
        fs_err::read_to_string(self.dir.path().join("access.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn launch(auth: Auth, tls: Option<(&TestCa, bool)>, deletes: bool) -> TestRegistry {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd => {
                let line = tool("htpasswd", &["-Bbn", USER, PASSWORD]);
                let path = dir.path().join("htpasswd");
                fs_err::write(&path, line).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: smelt-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token => {
                let key = dir.path().join("key.pem");
                let cert = dir.path().join("cert.pem");
                self_signed("/CN=smelt-test-token", &key, &cert);
                let realm_port = start_token_server(&key, &cert, token_requests.clone());
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{realm_port}/token\n    service: smelt-test\n    issuer: smelt-test-issuer\n    rootcertbundle: {}\n",
                    cert.display()
                )
            }
        };
        let tls_yaml = match tls {
            None => String::new(),
            Some((ca, client_auth)) => {
                let mut y = format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    ca.server_cert.display(),
                    ca.server_key.display()
                );
                if client_auth {
                    y.push_str(&format!(
                        "    clientcas:\n      - {}\n",
                        ca.ca_cert.display()
                    ));
                }
                y
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {deletes}\nhttp:\n  addr: {host}\n{tls_yaml}{auth_yaml}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        fs_err::write(&config_path, config).expect("write registry config");
        let log = fs_err::File::create(dir.path().join("registry.log")).expect("log file");
        // the access log goes to stdout
        let access = fs_err::File::create(dir.path().join("access.log")).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(access.into_parts().0)
            .stderr(log.into_parts().0)
            .spawn()
            .expect(
                "docker-registry is needed by the tests (the README's test command installs it)",
            );
        wait_for(&host, "docker-registry");
        TestRegistry {
            host,
            dir,
            child,
            auth,
            token_requests,
            cert_dir: tls.map(|(ca, _)| ca.cert_dir.clone()),
        }
    }

    /// A docker config directory holding an identity token for this registry.
    pub fn docker_config_identity_token(&self) -> PathBuf {
        let dir = self.dir.path().join("docker-config-identity");
        fs_err::create_dir_all(&dir).expect("mkdir");
        fs_err::write(
            dir.join("config.json"),
            format!(
                r#"{{"auths":{{"{}":{{"auth":"","identitytoken":"{IDENTITY_TOKEN}"}}}}}}"#,
                self.host
            ),
        )
        .expect("write config.json");
        dir
    }

    /// A docker config directory holding this registry's credentials.
    pub fn docker_config(&self) -> PathBuf {
        let dir = self.dir.path().join("docker-config");
        fs_err::create_dir_all(&dir).expect("mkdir");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        fs_err::write(
            dir.join("config.json"),
            format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.host),
        )
        .expect("write config.json");
        dir
    }

    /// skopeo's flags to reach this registry.
    fn skopeo_flags(&self, prefix: &str) -> Vec<String> {
        let mut out = match &self.cert_dir {
            Some(d) => vec![format!("--{prefix}cert-dir={}", d.display())],
            None => vec![format!("--{prefix}tls-verify=false")],
        };
        if self.auth != Auth::None {
            out.push(format!("--{prefix}creds={USER}:{PASSWORD}"));
        }
        out
    }

    /// Runs `skopeo VERB` with this registry's flags for each of `sides`
    /// (`""` for inspect, `"src-"`, `"dest-"` for copy), then `args`.
    pub fn skopeo(&self, verb: &str, sides: &[&str], args: &[&str]) -> String {
        let mut all = vec![verb.to_string()];
        for side in sides {
            all.extend(self.skopeo_flags(side));
        }
        all.extend(args.iter().map(|a| a.to_string()));
        tool(
            "skopeo",
            &all.iter().map(String::as_str).collect::<Vec<_>>(),
        )
    }

    /// Copies an OCI layout into this registry as `name` (repo:tag).
    pub fn push_layout(&self, layout: &Path, name: &str) {
        self.skopeo(
            "copy",
            &["dest-"],
            &[
                "-q",
                &format!("oci:{}", layout.display()),
                &format!("docker://{}/{name}", self.host),
            ],
        );
    }

    /// Pulls `reference` (from this registry) with skopeo into
    /// `dir/pulled` as an OCI layout and unpacks it with umoci into
    /// `dir/rootfs`, which it returns: read back by clients that are not
    /// smelt.
    pub fn pull_rootfs(&self, reference: &str, dir: &Path) -> PathBuf {
        let layout = dir.join("pulled");
        self.skopeo(
            "copy",
            &["src-"],
            &[
                "-q",
                &format!("docker://{reference}"),
                &format!("oci:{}:t1", layout.display()),
            ],
        );
        let rootfs = dir.join("rootfs");
        crate::harness::Layout(layout).unpack("t1", &rootfs);
        rootfs
    }

    /// `skopeo inspect` (raw manifest when `raw`) of `name` here, as JSON.
    pub fn inspect(&self, name: &str, extra: &[&str]) -> serde_json::Value {
        let target = format!("docker://{}/{name}", self.host);
        let mut args = extra.to_vec();
        args.push(&target);
        serde_json::from_str(&self.skopeo("inspect", &[""], &args)).expect("skopeo inspect JSON")
    }

    /// How many layers the image `name` here has.
    pub fn layer_count(&self, name: &str) -> usize {
        self.inspect(name, &[])["Layers"]
            .as_array()
            .map_or(0, Vec::len)
    }

    /// Builds a busybox base image (busybox, /etc/passwd with an `app`
    /// user, ENV and CMD) for `platform` and pushes it as `name`.
    pub fn push_base(&self, name: &str, platform: &str) -> String {
        let t = base_context();
        let layout = t.path("base-oci");
        t.build(&[
            "--no-push",
            "--custom-platform",
            platform,
            "--oci-layout-path",
            layout.to_str().expect("utf8"),
        ])
        .ok();
        self.push_layout(&layout, name);
        format!("{}/{name}", self.host)
    }
}

/// A test CA with a server certificate for 127.0.0.1 and a client
/// certificate, made with openssl; `cert_dir` is skopeo's `--cert-dir`.
pub struct TestCa {
    /// Holds the files while the CA lives.
    _dir: tempfile::TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub cert_dir: PathBuf,
}

impl TestCa {
    pub fn new() -> TestCa {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = |n: &str| dir.path().join(n);
        let s = |p: &Path| p.to_str().expect("utf8").to_string();
        let (ca_key, ca_cert) = (p("ca.key"), p("ca.pem"));
        self_signed("/CN=smelt-test-ca", &ca_key, &ca_cert);
        let issue = |name: &str, subject: &str, ext: &str| -> (PathBuf, PathBuf) {
            let (key, csr, cert, extfile) = (
                p(&format!("{name}.key")),
                p(&format!("{name}.csr")),
                p(&format!("{name}.pem")),
                p(&format!("{name}.ext")),
            );
            fs_err::write(&extfile, ext).expect("write ext");
            tool(
                "openssl",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    subject,
                    "-keyout",
                    &s(&key),
                    "-out",
                    &s(&csr),
                ],
            );
            tool(
                "openssl",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &s(&csr),
                    "-CA",
                    &s(&ca_cert),
                    "-CAkey",
                    &s(&ca_key),
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-out",
                    &s(&cert),
                    "-extfile",
                    &s(&extfile),
                ],
            );
            (cert, key)
        };
        let (server_cert, server_key) = issue(
            "server",
            "/CN=127.0.0.1",
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        );
        let (client_cert, client_key) = issue(
            "client",
            "/CN=smelt-client",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        let cert_dir = p("skopeo-certs");
        fs_err::create_dir_all(&cert_dir).expect("mkdir");
        fs_err::copy(&ca_cert, cert_dir.join("ca.crt")).expect("copy");
        fs_err::copy(&client_cert, cert_dir.join("client.cert")).expect("copy");
        fs_err::copy(&client_key, cert_dir.join("client.key")).expect("copy");
        TestCa {
            _dir: dir,
            ca_cert,
            server_cert,
            server_key,
            client_cert,
            client_key,
            cert_dir,
        }
    }
}

/// Busybox applets the base image links to /bin/busybox (the shell and
/// what the RUN tests call).
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "rm", "mkdir", "id", "touch", "chmod", "chown", "ln", "mv", "cp",
    "env", "true", "false", "sleep", "printf", "test", "pwd", "mknod", "mkfifo", "stat",
];

/// A new RSA key and a self-signed certificate for `subject`, by openssl.
fn self_signed(subject: &str, key: &Path, cert: &Path) {
    tool(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            subject,
            "-keyout",
            key.to_str().expect("utf8"),
            "-out",
            cert.to_str().expect("utf8"),
        ],
    );
}

pub fn base_context() -> TestContext {
    let t = TestContext::new(
        "FROM scratch\nCOPY bin/ /bin/\nCOPY etc/ /etc/\nENV BASE=yes\nCMD [\"/bin/busybox\",\"sh\"]\n",
    );
    t.file(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:4321::/home/app:/bin/sh\n",
    )
    .file("etc/group", "root:x:0:\napp:x:4321:\nextra:x:777:app\n");
    fs_err::create_dir_all(t.ctx().join("bin")).expect("mkdir bin");
    fs_err::copy(busybox(), t.ctx().join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", t.ctx().join("bin").join(a)).expect("symlink");
    }
    t
}

/// Debian's busybox-static binary.
pub fn busybox() -> &'static str {
    for p in ["/bin/busybox", "/usr/bin/busybox"] {
        if Path::new(p).exists() {
            return p;
        }
    }
    panic!("busybox-static is needed by the tests (the README's test command installs it)");
}

// ---- the token server ------------------------------------------------------

/// The request or status line and headers of an HTTP/1.1 message, up to
/// the blank line (the body stays in `r`).
pub fn read_head<R: BufRead>(r: &mut R) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        lines.push(line.trim_end().to_string());
    }
    Ok(lines)
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sign(key: &Path, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(out.status.success(), "openssl dgst -sign failed");
    out.stdout
}

fn cert_der(cert: &Path) -> Vec<u8> {
    let pem = fs_err::read_to_string(cert).expect("read cert");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("cert base64")
}

/// Starts the token server; returns its port. It checks the service, asks
/// for basic credentials, and grants what the scopes ask for.
fn start_token_server(key: &Path, cert: &Path, requests: TokenLog) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
    let port = listener.local_addr().expect("addr").port();
    let key = key.to_path_buf();
    let x5c = base64::engine::general_purpose::STANDARD.encode(cert_der(cert));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = serve_token(stream, &key, &x5c, &requests);
        }
    });
    port
}

fn serve_token(
    stream: TcpStream,
    key: &Path,
    x5c: &str,
    requests: &Mutex<Vec<TokenRequest>>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let head = read_head(&mut reader)?;
    let mut lines = head.iter().map(String::as_str);
    let request_line = lines.next().unwrap_or("").to_string();
    let method = request_line.split_whitespace().next().unwrap_or("");
    let target = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // GET: query parameters and basic credentials; POST: the OAuth2 form
    // with a refresh token (docker's identity token), scopes space-separated
    let form = if method == "POST" {
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        String::from_utf8_lossy(&body).into_owned()
    } else {
        target
            .split_once('?')
            .map(|(_, q)| q.to_string())
            .unwrap_or_default()
    };
    let mut service = String::new();
    let mut scopes = Vec::new();
    let mut grant = (String::new(), String::new());
    for pair in form.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "service" => service = v,
            "scope" => scopes.extend(v.split(' ').filter(|s| !s.is_empty()).map(str::to_string)),
            "grant_type" => grant.0 = v,
            "refresh_token" => grant.1 = v,
            _ => {}
        }
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let authed = if method == "POST" {
        grant.0 == "refresh_token" && grant.1 == IDENTITY_TOKEN
    } else {
        header("authorization").as_deref() == Some(expected.as_str())
    };
    requests
        .lock()
        .expect("lock")
        .push((service.clone(), scopes.clone(), authed));
    let mut out = stream;
    if !target.starts_with("/token") || service != "smelt-test" {
        return out.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    if !authed {
        let body = br#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
        write!(
            out,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        return out.write_all(body);
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|s| {
            let mut parts = s.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({
                "type": kind,
                "name": name,
                "actions": actions.split(',').collect::<Vec<_>>(),
            }))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "smelt-test-issuer",
        "sub": USER,
        "aud": "smelt-test",
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", rand_suffix()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = sign(key, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64url(&signature));
    let body = if method == "POST" {
        serde_json::json!({"access_token": token, "expires_in": 300}).to_string()
    } else {
        serde_json::json!({"token": token, "expires_in": 300}).to_string()
    };
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // drain anything else the client sent
    let _ = reader.read(&mut [0u8; 0]);
    Ok(())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- images pushed by hand ---------------------------------------------------

/// One HTTP/1.1 request to `host` (`Connection: close`): the status, the
/// header lines and the body.
pub fn http(
    host: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<String>, Vec<u8>) {
    let mut stream = TcpStream::connect(host).expect("connect");
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    stream.write_all(body).expect("send body");
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).expect("response head");
    let status = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut out = Vec::new();
    reader.read_to_end(&mut out).expect("response body");
    (status, head, out)
}

/// `sha256:HEX` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A gzip-compressed tar holding `files` (path, content), and its diff ID.
pub fn gzip_layer(files: &[(&str, &str)]) -> (Vec<u8>, String) {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, path, content.as_bytes())
            .expect("tar entry");
    }
    let raw = tar.into_inner().expect("tar");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).expect("gzip");
    (gz.finish().expect("gzip"), sha256(&raw))
}

impl TestRegistry {
    /// Puts a blob here with a monolithic upload; returns its digest.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256(bytes);
        let (status, head, _) = http(
            &self.host,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        );
        assert_eq!(status, 202, "starting an upload: {head:?}");
        let location = head
            .iter()
            .find_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("location"))
                    .map(|(_, v)| v.trim().to_string())
            })
            .expect("Location");
        let location = location
            .strip_prefix(&format!("http://{}", self.host))
            .unwrap_or(&location)
            .to_string();
        let sep = if location.contains('?') { '&' } else { '?' };
        let (status, head, _) = http(
            &self.host,
            "PUT",
            &format!("{location}{sep}digest={digest}"),
            &[("Content-Type", "application/octet-stream")],
            bytes,
        );
        assert_eq!(status, 201, "uploading {digest}: {head:?}");
        digest
    }

    /// Pushes an image made by hand as `repo:tag`, checked by nothing on
    /// the way (skopeo might): `layers` as (media type, blob), the config
    /// as given (its `rootfs` too). Returns the reference.
    pub fn push_raw(
        &self,
        repo: &str,
        tag: &str,
        config: &serde_json::Value,
        layers: &[(&str, Vec<u8>)],
    ) -> String {
        let config_bytes = serde_json::to_vec(config).expect("config JSON");
        let config_digest = self.put_blob(repo, &config_bytes);
        let descriptors: Vec<serde_json::Value> = layers
            .iter()
            .map(|(media_type, blob)| {
                serde_json::json!({
                    "mediaType": media_type,
                    "digest": self.put_blob(repo, blob),
                    "size": blob.len(),
                })
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_bytes.len(),
            },
            "layers": descriptors,
        });
        let (status, head, body) = http(
            &self.host,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
            &serde_json::to_vec(&manifest).expect("manifest JSON"),
        );
        assert_eq!(
            status,
            201,
            "pushing the manifest: {head:?} {}",
            String::from_utf8_lossy(&body)
        );
        format!("{}/{repo}:{tag}", self.host)
    }
}

/// A linux/amd64 config whose `rootfs.diff_ids` are `diff_ids`.
pub fn config_with_diff_ids(diff_ids: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
}
