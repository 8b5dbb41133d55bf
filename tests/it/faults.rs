//! Faults between smelt and a real registry: a small HTTP/1.1 proxy (one
//! request per connection, `Connection: close`) that answers 500, drops
//! the connection in the middle of a blob, or flips a byte of it, for the
//! requests a rule matches. Builds retry, or fail naming the blob, and a
//! failed push leaves no manifest behind.

use crate::harness::{TestContext, http_status, tool};
use crate::registry_server::{Auth, TestRegistry, read_head};
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Answer 500 without asking the registry.
    ServerError,
    /// Pass the head and 512 bytes of the body, then close.
    Drop,
    /// Flip a byte of the body.
    Corrupt,
}

#[derive(Debug, Clone)]
struct Rule {
    method: &'static str,
    /// The request path contains this.
    path: String,
    fault: Fault,
    /// How many more requests it applies to.
    times: usize,
}

#[derive(Clone, Default)]
struct Rules(Arc<Mutex<Vec<Rule>>>, Arc<Mutex<Vec<String>>>);

impl Rules {
    fn add(&self, method: &'static str, path: &str, fault: Fault, times: usize) {
        self.0.lock().unwrap().push(Rule {
            method,
            path: path.to_string(),
            fault,
            times,
        });
    }

    fn take(&self, method: &str, path: &str) -> Option<Fault> {
        self.1.lock().unwrap().push(format!("{method} {path}"));
        let mut rules = self.0.lock().unwrap();
        let rule = rules
            .iter_mut()
            .find(|r| r.times > 0 && r.method == method && path.contains(&r.path))?;
        rule.times -= 1;
        Some(rule.fault)
    }
}

struct Proxy {
    host: String,
    rules: Rules,
}

impl Proxy {
    fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let rules = Rules::default();
        let r = rules.clone();
        let upstream = upstream.to_string();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (r, upstream) = (r.clone(), upstream.clone());
                std::thread::spawn(move || {
                    let _ = relay(client, &upstream, &r);
                });
            }
        });
        Proxy { host, rules }
    }
}

fn relay(client: TcpStream, upstream: &str, rules: &Rules) -> std::io::Result<()> {
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
    if fault == Some(Fault::ServerError) {
        // read the request body first, so closing does not reset the connection
        let length: u64 = head
            .iter()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        std::io::copy(&mut (&mut from_client).take(length), &mut std::io::sink())?;
        let body = br#"{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}"#;
        write!(
            to_client,
            "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        to_client.write_all(body)?;
        return to_client.shutdown(Shutdown::Both);
    }
    let mut server = TcpStream::connect(upstream)?;
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
        let _ = std::io::copy(&mut from_client, &mut to_server);
    });
    let mut from_server = BufReader::new(server);
    let response = read_head(&mut from_server)?;
    let mut out = String::new();
    for line in &response {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    to_client.write_all(out.as_bytes())?;
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
    let seen = proxy.rules.1.lock().unwrap().clone();
    let via = |needle: &str| seen.iter().any(|r| r.contains(needle));
    assert!(
        via(&format!("GET http://{}/v2/base/manifests/1", reg.host))
            && via("PUT http://")
            && via("/v2/app/manifests/1"),
        "{seen:#?}"
    );
}
