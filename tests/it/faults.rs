//! Faults between smelt and a real registry: a small HTTP/1.1 proxy (one
//! request per connection, `Connection: close`) in front of the registry
//! and its token server (it rewrites the challenge's realm to itself). It
//! answers 500, resets the connection, stalls, drops the connection in the
//! middle of a blob, flips a byte of a blob or of an upload's body, for the
//! requests a rule matches, and can answer 500 to any kind of request at a
//! rate, decided by a seeded hash of the request so a run is repeatable.
//! Builds retry, or fail naming the blob, and a failed push leaves no
//! manifest behind. The integrity checks of base layers (diff IDs, empty
//! blobs) are here too, with images crafted and pushed by hand.

use crate::harness::{TestContext, http_status, tool};
use crate::registry_server::{Auth, TestRegistry, read_head};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer 500 without asking the registry.
    ServerError,
    /// Answer 404 (`BLOB_UNKNOWN`) without asking the registry.
    NotFound,
    /// Pass the head and 512 bytes of the body, then close.
    Drop,
    /// Flip a byte of the body.
    Corrupt,
    /// Close the connection with a TCP reset before answering.
    Reset,
    /// Wait this long, then relay the request.
    Stall(Duration),
    /// Flip the first byte of the request's body on its way to the registry.
    CorruptUpload,
    /// Answer 400 with ECR's error for a tag that is immutable and set.
    ImmutableTag,
}

/// What a request is: the proxy's rules and its seeded 500s go by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ping,
    Token,
    ManifestGet,
    ManifestHead,
    ManifestPut,
    BlobHead,
    BlobGet,
    UploadPost,
    UploadPatch,
    UploadPut,
    Other,
}

/// The kind of a request and what names it apart from its kind (a digest,
/// a tag, a repository; never an upload's random session id).
fn classify(method: &str, target: &str) -> (Kind, String) {
    // absolute-form requests (a forward proxy's) carry the scheme and host
    let target = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap_or("")
            .to_string()
    };
    let kind = if path.starts_with("/token") {
        return (Kind::Token, param("scope"));
    } else if path == "/v2/" || path == "/v2" {
        Kind::Ping
    } else if let Some((repo, _)) = path.split_once("/blobs/uploads/") {
        return match method {
            "POST" => (Kind::UploadPost, format!("{repo} {}", param("mount"))),
            "PATCH" => (Kind::UploadPatch, repo.to_string()),
            "PUT" => (Kind::UploadPut, param("digest")),
            _ => (Kind::Other, path.to_string()),
        };
    } else if path.contains("/blobs/") {
        match method {
            "HEAD" => Kind::BlobHead,
            "GET" => Kind::BlobGet,
            _ => Kind::Other,
        }
    } else if path.contains("/manifests/") {
        match method {
            "GET" => Kind::ManifestGet,
            "HEAD" => Kind::ManifestHead,
            "PUT" => Kind::ManifestPut,
            _ => Kind::Other,
        }
    } else {
        Kind::Other
    };
    (kind, path.to_string())
}

#[derive(Debug, Clone)]
struct Rule {
    method: &'static str,
    /// The request path contains this (`=PATH`: is exactly PATH).
    path: String,
    /// Or, instead of method and path: requests of this kind.
    kind: Option<Kind>,
    fault: Fault,
    /// How many more requests it applies to.
    times: usize,
}

/// 500s at a rate: a request is failed when a hash of the seed, its kind
/// and key, and how many such requests came before it falls under the
/// rate, so the same build sees the same faults whatever the interleaving
/// of its connections. The first request of each kind is always failed,
/// so every kind sees at least one.
#[derive(Debug)]
struct Chaos {
    seed: u64,
    percent: u64,
    seen: HashMap<(Kind, String), u64>,
    first: BTreeSet<Kind>,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl Chaos {
    fn fails(&mut self, kind: Kind, key: &str) -> bool {
        if kind == Kind::Other {
            return false;
        }
        if self.first.insert(kind) {
            return true;
        }
        let n = self.seen.entry((kind, key.to_string())).or_default();
        *n += 1;
        // FNV-1a of the kind and key, then mixed with the seed and count
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in format!("{kind:?} {key}").bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        splitmix(self.seed ^ h ^ n.wrapping_mul(0x9e37_79b9)) % 100 < self.percent
    }
}

#[derive(Clone, Default)]
pub struct Rules {
    rules: Arc<Mutex<Vec<Rule>>>,
    /// Every request seen: `METHOD target`.
    pub seen: Arc<Mutex<Vec<String>>>,
    /// Every fault injected, by kind of request.
    pub injected: Arc<Mutex<Vec<(Kind, Fault)>>>,
    chaos: Arc<Mutex<Option<Chaos>>>,
}

impl Rules {
    pub fn add(&self, method: &'static str, path: &str, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            method,
            path: path.to_string(),
            kind: None,
            fault,
            times,
        });
    }

    /// `fault` for the next `times` requests of `kind`.
    pub fn add_kind(&self, kind: Kind, fault: Fault, times: usize) {
        self.rules.lock().unwrap().push(Rule {
            method: "",
            path: String::new(),
            kind: Some(kind),
            fault,
            times,
        });
    }

    /// 500s for `percent` of the requests of every kind, seeded.
    pub fn chaos(&self, seed: u64, percent: u64) {
        *self.chaos.lock().unwrap() = Some(Chaos {
            seed,
            percent,
            seen: HashMap::new(),
            first: BTreeSet::new(),
        });
    }

    /// `fault` for every request of every kind from now on.
    pub fn all(&self, fault: Fault) {
        use Kind::*;
        for kind in [
            Ping,
            Token,
            ManifestGet,
            ManifestHead,
            ManifestPut,
            BlobHead,
            BlobGet,
            UploadPost,
            UploadPatch,
            UploadPut,
        ] {
            self.add_kind(kind, fault, usize::MAX);
        }
    }

    /// The kinds of request that got a fault.
    pub fn faulted_kinds(&self) -> BTreeSet<Kind> {
        self.injected
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| *k)
            .collect()
    }

    fn take(&self, method: &str, target: &str) -> Option<Fault> {
        self.seen.lock().unwrap().push(format!("{method} {target}"));
        let (kind, key) = classify(method, target);
        let fault = self.rule(method, target, kind).or_else(|| {
            self.chaos
                .lock()
                .unwrap()
                .as_mut()
                .is_some_and(|c| c.fails(kind, &key))
                .then_some(Fault::ServerError)
        });
        if let Some(f) = fault {
            self.injected.lock().unwrap().push((kind, f));
        }
        fault
    }

    fn rule(&self, method: &str, target: &str, kind: Kind) -> Option<Fault> {
        let mut rules = self.rules.lock().unwrap();
        let rule = rules.iter_mut().find(|r| {
            r.times > 0
                && match r.kind {
                    Some(k) => k == kind,
                    None => {
                        r.method == method
                            && match r.path.strip_prefix('=') {
                                Some(exact) => target == exact,
                                None => target.contains(&r.path),
                            }
                    }
                }
        })?;
        rule.times -= 1;
        Some(rule.fault)
    }
}

pub struct Proxy {
    pub host: String,
    pub rules: Rules,
}

impl Proxy {
    pub fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let rules = Rules::default();
        let r = rules.clone();
        let upstream = upstream.to_string();
        // the token server, once a challenge named it
        let token_server: Arc<Mutex<Option<String>>> = Arc::default();
        let me = host.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (r, upstream, me) = (r.clone(), upstream.clone(), me.clone());
                let token_server = token_server.clone();
                std::thread::spawn(move || {
                    let _ = relay(client, &upstream, &me, &token_server, &r);
                });
            }
        });
        Proxy { host, rules }
    }
}

/// Reads and drops a request's body (as its Content-Length says), so that
/// closing the connection afterwards does not reset it.
fn drain_body<R: Read>(head: &[String], from_client: &mut R) -> std::io::Result<()> {
    let length: u64 = head
        .iter()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    std::io::copy(&mut from_client.take(length), &mut std::io::sink())?;
    Ok(())
}

fn relay(
    client: TcpStream,
    upstream: &str,
    me: &str,
    token_server: &Mutex<Option<String>>,
    rules: &Rules,
) -> std::io::Result<()> {
    let mut from_client = BufReader::new(client.try_clone()?);
    let head = read_head(&mut from_client)?;
    let Some(first) = head.first() else {
        return Ok(());
    };
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let fault = rules.take(&method, &path);
    let mut to_client = client;
    match fault {
        Some(Fault::Reset) => {
            // SO_LINGER 0: close sends RST instead of FIN
            socket2::SockRef::from(&to_client).set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        Some(Fault::Stall(d)) => std::thread::sleep(d),
        Some(f @ (Fault::ServerError | Fault::NotFound | Fault::ImmutableTag)) => {
            drain_body(&head, &mut from_client)?;
            let (status, code, message) = match f {
                Fault::NotFound => ("404 Not Found", "BLOB_UNKNOWN", "injected fault"),
                Fault::ImmutableTag => (
                    "400 Bad Request",
                    "TAG_INVALID",
                    "The image tag '1' already exists in the 'app' repository and cannot be overwritten because the tag is immutable.",
                ),
                _ => ("500 Internal Server Error", "UNKNOWN", "injected fault"),
            };
            let body = format!(r#"{{"errors":[{{"code":"{code}","message":"{message}"}}]}}"#);
            write!(
                to_client,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            to_client.write_all(body.as_bytes())?;
            return to_client.shutdown(Shutdown::Both);
        }
        _ => {}
    }
    let to_token_server = classify(&method, &path).0 == Kind::Token;
    let target = if to_token_server {
        match token_server.lock().unwrap().clone() {
            Some(t) => t,
            None => return Ok(()),
        }
    } else {
        upstream.to_string()
    };
    let mut server = TcpStream::connect(&target)?;
    let mut request = String::new();
    for line in &head {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            request.push_str(line);
            request.push_str("\r\n");
        }
    }
    request.push_str("Connection: close\r\n\r\n");
    server.write_all(request.as_bytes())?;
    let mut to_server = server.try_clone()?;
    std::thread::spawn(move || {
        if fault == Some(Fault::CorruptUpload) {
            let mut first = [0u8; 1];
            if from_client.read_exact(&mut first).is_ok() {
                first[0] ^= 0xff;
                let _ = to_server.write_all(&first);
            }
        }
        let _ = std::io::copy(&mut from_client, &mut to_server);
    });
    let mut from_server = BufReader::new(server);
    let response = read_head(&mut from_server)?;
    let mut out = String::new();
    for line in &response {
        // the token server is reached through the proxy too
        if line.to_ascii_lowercase().starts_with("www-authenticate:")
            && let Some(at) = line.find("realm=\"http://")
        {
            let rest = &line[at + "realm=\"http://".len()..];
            let end = rest.find('/').unwrap_or(rest.len());
            *token_server.lock().unwrap() = Some(rest[..end].to_string());
            out.push_str(&line.replacen(&rest[..end], me, 1));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    to_client.write_all(out.as_bytes())?;
    // the body as long as the answer says (a server that keeps its end
    // open after it, as the token server does, would wait for us forever)
    let status = response
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    let length: Option<u64> = if method == "HEAD" || status == "204" || status == "304" {
        Some(0)
    } else {
        response
            .iter()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
    };
    let mut from_server = from_server.take(length.unwrap_or(u64::MAX));
    let mut sent = 0usize;
    let mut buf = [0u8; 16 << 10];
    loop {
        let n = from_server.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        match fault {
            Some(Fault::Drop) if sent + n > 512 => {
                to_client.write_all(&chunk[..512 - sent])?;
                break;
            }
            Some(Fault::Corrupt) if sent <= 100 && sent + n > 100 => {
                chunk[100 - sent] ^= 0xff;
            }
            _ => {}
        }
        to_client.write_all(chunk)?;
        sent += n;
    }
    to_client.shutdown(Shutdown::Both)
}

/// The base's biggest layer (busybox), the one worth breaking.
fn big_layer(reg: &TestRegistry) -> String {
    let raw = reg.inspect("base:1", &["--raw"]);
    raw["layers"]
        .as_array()
        .unwrap()
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn app(proxy: &Proxy) -> TestContext {
    // a named owner makes the build unpack (so download) the base
    let t = TestContext::new(&format!(
        "FROM {}/base:1\nCOPY --chown=app hello.txt /hello.txt\n",
        proxy.host
    ));
    t.file("hello.txt", "hi\n");
    t
}

#[test]
fn pulls_retry_server_errors_dropped_connections_and_damaged_bytes() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    let layer = big_layer(&reg);
    proxy.rules.add("GET", &layer, Fault::ServerError, 1);
    proxy.rules.add("GET", &layer, Fault::Drop, 1);
    proxy.rules.add("GET", &layer, Fault::Corrupt, 1);
    // with --image-download-retry the three faults fit in the attempts
    let t = app(&proxy);
    let run = t
        .build(&[
            "--custom-platform=linux/amd64",
            "--no-push",
            "--image-download-retry=1",
            "--oci-layout-path",
            t.path("oci").to_str().unwrap(),
        ])
        .ok();
    let err = run.stderr();
    assert_eq!(err.matches("retrying").count(), 3, "{err}");
    assert!(err.contains("the registry answered 500"), "{err}");
    assert!(err.contains("digest mismatch"), "{err}");
    // and the image is whole
    tool(
        "skopeo",
        &[
            "inspect",
            &format!("oci:{}:latest", t.path("oci").display()),
        ],
    );
}

#[test]
fn a_blob_that_stays_damaged_fails_the_build_naming_it() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    let layer = big_layer(&reg);
    proxy.rules.add("GET", &layer, Fault::Corrupt, 100);
    let t = app(&proxy);
    let run = t.build(&["--custom-platform=linux/amd64", "--no-push"]);
    assert_eq!(run.code(), 1);
    let err = run.stderr();
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.contains(&format!("blob {layer}")) && last.contains("digest mismatch: expected"),
        "{err}"
    );
}

#[test]
fn a_failed_push_leaves_no_manifest_behind() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    // every upload of the new layer fails; the mounted base needs none
    proxy
        .rules
        .add("PUT", "/v2/app/blobs/uploads/", Fault::ServerError, 100);
    let t = TestContext::new(&format!(
        "FROM {}/base:1\nCOPY hello.txt /hello.txt\n",
        proxy.host
    ));
    t.file("hello.txt", "hi\n");
    let dest = format!("{}/app:1", proxy.host);
    let run = t.build(&["--custom-platform=linux/amd64", "-d", &dest]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let err = run.stderr();
    assert!(
        err.lines()
            .last()
            .is_some_and(|l| l.contains("blob sha256:") && l.contains("500")),
        "{err}"
    );
    let status = http_status(&[&format!("http://{}/v2/app/manifests/1", reg.host)]);
    assert_eq!(status, "404", "a manifest was pushed after a failed upload");

    // a transient failure is retried and the push completes
    let proxy = Proxy::start(&reg.host);
    proxy
        .rules
        .add("PUT", "/v2/app/blobs/uploads/", Fault::ServerError, 2);
    let dest = format!("{}/app:1", proxy.host);
    let run = t
        .build(&["--custom-platform=linux/amd64", "-d", &dest])
        .ok();
    assert!(run.stderr().contains("retrying"), "{}", run.stderr());
    assert_eq!(reg.layer_count("app:1"), 3);
}

#[test]
fn http_proxy_from_the_environment_is_used() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    // the proxy relays absolute-form requests too: a forward proxy for HTTP
    let proxy = Proxy::start(&reg.host);
    let t = TestContext::new(&format!(
        "FROM {}/base:1\nCOPY hello.txt /hello.txt\n",
        reg.host
    ));
    t.file("hello.txt", "hi\n");
    let dest = format!("{}/app:1", reg.host);
    let proxy_url = format!("http://{}", proxy.host);
    t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &["--custom-platform=linux/amd64", "-d", &dest],
        &[("HTTP_PROXY", &proxy_url), ("NO_PROXY", "")],
    )
    .ok();
    let seen = proxy.rules.seen.lock().unwrap().clone();
    let via = |needle: &str| seen.iter().any(|r| r.contains(needle));
    assert!(
        via(&format!("GET http://{}/v2/base/manifests/1", reg.host))
            && via("PUT http://")
            && via("/v2/app/manifests/1"),
        "{seen:#?}"
    );
}

/// A docker config directory giving the token registry's credentials to
/// `host` (the proxy in front of it).
fn credentials_for(dir: &std::path::Path, host: &str) -> std::path::PathBuf {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        crate::registry_server::USER,
        crate::registry_server::PASSWORD
    ));
    let config = dir.join("proxy-docker-config");
    fs_err::create_dir_all(&config).unwrap();
    fs_err::write(
        config.join("config.json"),
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    config
}

#[test]
fn a_reset_on_the_first_request_to_a_registry_is_retried() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    // the first ping of each direction (pull, then push) is reset
    proxy.rules.add("GET", "=/v2/", Fault::Reset, 2);
    let t = app(&proxy);
    let dest = format!("{}/app:1", proxy.host);
    let run = t
        .build(&["--custom-platform=linux/amd64", "-d", &dest])
        .ok();
    let err = run.stderr();
    assert_eq!(
        proxy.rules.injected.lock().unwrap().len(),
        2,
        "{:#?}",
        proxy.rules.seen.lock().unwrap()
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("reaching") && l.contains("retrying"))
            .count(),
        2,
        "{err}"
    );
    assert_eq!(reg.layer_count("app:1"), 3);
}

#[test]
fn pulls_and_pushes_survive_30_percent_server_errors_on_every_kind_of_request() {
    let reg = TestRegistry::start(Auth::Token);
    reg.push_base("base:1", "linux/amd64");
    for seed in [1, 2] {
        let proxy = Proxy::start(&reg.host);
        proxy.rules.chaos(seed, 30);
        // a slow answer is not a failure
        proxy
            .rules
            .add_kind(Kind::ManifestGet, Fault::Stall(Duration::from_secs(1)), 1);
        proxy
            .rules
            .add_kind(Kind::UploadPut, Fault::Stall(Duration::from_secs(1)), 1);
        let t = TestContext::new(&format!(
            "FROM {}/base:1\nRUN echo {seed} > /seed\nCOPY hello.txt /hello.txt\n",
            proxy.host
        ));
        t.file("hello.txt", "hi\n");
        let config = credentials_for(t.dir.path(), &proxy.host);
        let dest = format!("{}/app:{seed}", proxy.host);
        let run = t.build_with(
            crate::harness::smelt_bin(),
            &["build"],
            &[
                "--custom-platform=linux/amd64",
                "--push-retry=3",
                "--image-download-retry=3",
                "-d",
                &dest,
            ],
            &[("DOCKER_CONFIG", config.to_str().unwrap())],
        );
        let err = run.stderr();
        assert_eq!(run.code(), 0, "seed {seed}:\n{err}");
        let faulted = proxy.rules.faulted_kinds();
        for kind in [
            Kind::Ping,
            Kind::Token,
            Kind::ManifestGet,
            Kind::ManifestPut,
            Kind::BlobHead,
            Kind::BlobGet,
            Kind::UploadPost,
            Kind::UploadPut,
        ] {
            assert!(faulted.contains(&kind), "seed {seed}: no fault on {kind:?}");
        }
        let injected = proxy.rules.injected.lock().unwrap().len();
        assert!(
            err.matches("retrying").count() >= injected - 2,
            "seed {seed}: {injected} faults:\n{err}"
        );
        // the image is whole: skopeo copies it, checking every digest
        let layout = t.path("copy");
        reg.skopeo(
            "copy",
            &["src-"],
            &[
                "-q",
                &format!("docker://{}/app:{seed}", reg.host),
                &format!("oci:{}", layout.display()),
            ],
        );
        assert_eq!(
            reg.inspect(&format!("app:{seed}"), &[])["Layers"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
    }
}

#[test]
fn a_corrupted_upload_is_sent_again_and_ends_with_the_right_digest() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("base:1", "linux/amd64");
    let proxy = Proxy::start(&reg.host);
    // twice: the first try and the first new session both arrive damaged
    proxy
        .rules
        .add_kind(Kind::UploadPut, Fault::CorruptUpload, 2);
    let t = TestContext::new(&format!(
        "FROM {}/base:1\nCOPY hello.txt /hello.txt\n",
        proxy.host
    ));
    t.file("hello.txt", "hi\n");
    let dest = format!("{}/app:1", proxy.host);
    let run = t
        .build(&["--custom-platform=linux/amd64", "-d", &dest])
        .ok();
    let err = run.stderr();
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("DIGEST_INVALID") && l.contains("again (attempt"))
            .count(),
        2,
        "{err}"
    );
    let layout = t.path("copy");
    reg.skopeo(
        "copy",
        &["src-"],
        &[
            "-q",
            &format!("docker://{}/app:1", reg.host),
            &format!("oci:{}", layout.display()),
        ],
    );
    let out = TestContext::new(&format!("FROM {}/app:1\n", reg.host));
    out.build_outputs(&[]);
    assert_eq!(
        fs_err::read_to_string(out.unpack().join("hello.txt")).unwrap(),
        "hi\n"
    );
}

#[test]
fn a_base_layer_that_does_not_match_its_diff_id_fails_naming_both() {
    use crate::registry_server::{config_with_diff_ids, gzip_layer, sha256};
    let reg = TestRegistry::start(Auth::None);
    let (blob, diff_id) = gzip_layer(&[("hello", "hi\n")]);
    let wrong = sha256(b"something else");
    let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    let good = reg.push_raw(
        "good",
        "1",
        &config_with_diff_ids(&[&diff_id]),
        &[(gzip, blob.clone())],
    );
    let bad = reg.push_raw(
        "bad",
        "1",
        &config_with_diff_ids(&[&wrong]),
        &[(gzip, blob.clone())],
    );
    let layer = sha256(&blob);
    let through_stage = |image: &str| {
        TestContext::new(&format!(
            "FROM {image} AS b\nFROM scratch\nCOPY --from=b /hello /hello\n"
        ))
    };
    // the image made right builds
    through_stage(&good).build_outputs(&[]);
    // made wrong, it fails at its FROM, naming image, layer and both IDs
    for (t, at) in [
        (through_stage(&bad), ":1: FROM: "),
        (
            TestContext::new(&format!("FROM scratch\nCOPY --from={bad} /hello /hello\n")),
            ":2: COPY: ",
        ),
    ] {
        let run = t.build(&["--no-push"]);
        assert_eq!(run.code(), 1, "{}", run.stderr());
        let err = run.stderr();
        let last = err.lines().last().unwrap_or("");
        for part in [at, bad.as_str(), &layer, &diff_id, &wrong] {
            assert!(last.contains(part), "{part} not in: {last}");
        }
    }
}

#[test]
fn a_zero_byte_blob_labelled_gzip_is_no_layer() {
    use crate::registry_server::{config_with_diff_ids, sha256};
    let reg = TestRegistry::start(Auth::None);
    let empty = sha256(b"");
    let image = reg.push_raw(
        "empty",
        "1",
        &config_with_diff_ids(&[&empty]),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", Vec::new())],
    );
    let t = TestContext::new(&format!(
        "FROM {image} AS b\nFROM scratch\nCOPY --from=b / /\n"
    ));
    let run = t.build(&["--no-push"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let err = run.stderr();
    let last = err.lines().last().unwrap_or("");
    for part in [
        ":1: FROM: ",
        image.as_str(),
        &format!("layer {empty}"),
        "empty",
    ] {
        assert!(last.contains(part), "{part} not in: {last}");
    }
}

#[test]
fn a_layer_that_is_not_a_tar_fails_naming_the_image_and_layer() {
    use crate::registry_server::{config_with_diff_ids, sha256};
    let reg = TestRegistry::start(Auth::None);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&[0xab; 1000]).unwrap();
    let blob = gz.finish().unwrap();
    let image = reg.push_raw(
        "junk",
        "1",
        &config_with_diff_ids(&[&sha256(&[0xab; 1000])]),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", blob.clone())],
    );
    let t = TestContext::new(&format!("FROM scratch\nCOPY --from={image} / /\n"));
    let run = t.build(&["--no-push"]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let err = run.stderr();
    let last = err.lines().last().unwrap_or("");
    for part in [
        ":2: COPY: ",
        image.as_str(),
        &format!("layer {}", sha256(&blob)),
    ] {
        assert!(last.contains(part), "{part} not in: {last}");
    }
}
