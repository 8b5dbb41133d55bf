//! `smelt cache prune` against the test registry: entries of several ages
//! (made by builds, then aged by pushing their manifests back with an
//! earlier time stored), a manifest that is no cache entry, `--dry-run`,
//! `--keep-last`, the image repositories left alone, a tag list served
//! page by page, and a registry that refuses deletes. And each layer crossing the wire once: a build with
//! `--cache` and a destination on the same registry uploads every layer
//! once and mounts it into the other repository.

use crate::harness::{TestContext, smelt_bin};
use crate::registry_server::read_head;
use crate::registry_server::{Auth, TestRegistry, config_with_diff_ids, gzip_layer, http};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const STORED: &str = "dev.smelt.cache.stored";

fn build(t: &TestContext, reg: &TestRegistry, dest: &str) -> String {
    t.build(&[
        "--cache",
        "--cache-repo",
        &format!("{}/cache", reg.host),
        "--destination",
        &format!("{}/{dest}", reg.host),
    ])
    .ok()
    .stderr()
}

/// `smelt cache prune --cache-repo HOST/cache ARGS`: exit code, stdout, stderr.
fn prune(reg: &TestRegistry, args: &[&str]) -> (i32, String, String) {
    prune_with(
        &format!("{}/cache", reg.host),
        args,
        &reg.dir.path().join("no-docker-config"),
    )
}

/// `smelt cache prune --cache-repo REPO ARGS` with the docker config
/// directory `config`: exit code, stdout, stderr.
fn prune_with(repo: &str, args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(smelt_bin())
        .args(["cache", "prune", "--cache-repo", repo])
        .args(args)
        .env("NO_COLOR", "1")
        .env("DOCKER_CONFIG", config)
        .output()
        .expect("run smelt");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn tags(reg: &TestRegistry, repo: &str) -> Vec<String> {
    let (status, head, body) = http(&reg.host, "GET", &format!("/v2/{repo}/tags/list"), &[], b"");
    assert_eq!(status, 200, "{head:?}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let mut tags: Vec<String> = v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    tags
}

fn manifest(reg: &TestRegistry, repo: &str, tag: &str) -> (u16, Vec<u8>) {
    let (status, _, body) = http(
        &reg.host,
        "GET",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Accept", MANIFEST)],
        b"",
    );
    (status, body)
}

/// The cache's tags by what their entry's RUN wrote (`created_by`), each
/// with its manifest.
fn entries(reg: &TestRegistry) -> BTreeMap<String, (Vec<String>, serde_json::Value)> {
    let mut out: BTreeMap<String, (Vec<String>, serde_json::Value)> = BTreeMap::new();
    for tag in tags(reg, "cache") {
        let (status, body) = manifest(reg, "cache", &tag);
        assert_eq!(status, 200, "{tag}");
        let m: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let Some(history) = m["annotations"]["dev.smelt.cache.history"].as_str() else {
            continue;
        };
        let created_by = serde_json::from_str::<serde_json::Value>(history).unwrap()["created_by"]
            .as_str()
            .unwrap()
            .to_string();
        out.entry(created_by).or_insert((Vec::new(), m)).0.push(tag);
    }
    out
}

/// Pushes the entry back under each of its tags with a time stored
/// `days` ago (a new manifest digest; the tags move to it).
fn age(reg: &TestRegistry, tags: &[String], mut m: serde_json::Value, days: i64) {
    let then = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - days * 86_400;
    let stamp = jiff::Timestamp::from_second(then).unwrap().to_string();
    m["annotations"][STORED] = serde_json::Value::String(stamp);
    let bytes = serde_json::to_vec(&m).unwrap();
    for tag in tags {
        let (status, head, _) = http(
            &reg.host,
            "PUT",
            &format!("/v2/cache/manifests/{tag}"),
            &[("Content-Type", MANIFEST)],
            &bytes,
        );
        assert_eq!(status, 201, "{head:?}");
    }
}

/// The tags whose entry's RUN contains `text`.
fn tags_of(all: &BTreeMap<String, (Vec<String>, serde_json::Value)>, text: &str) -> Vec<String> {
    all.iter()
        .find(|(by, _)| by.contains(text))
        .map(|(_, (tags, _))| tags.clone())
        .unwrap_or_else(|| panic!("no entry for {text} in {all:?}"))
}

#[test]
fn prune_removes_only_old_entries_keeps_the_newest_and_leaves_images_and_foreign_manifests() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo month > /a\nRUN echo days > /b\n"
    ));
    build(&t, &reg, "app:1");
    let built = entries(&reg);
    assert_eq!(built.len(), 2, "{built:?}");
    for (text, days) in [("month", 30), ("days", 10)] {
        let by = created_by_of(&built, text);
        age(&reg, &built[&by].0, built[&by].1.clone(), days);
    }
    // a fresh entry, after the same base key: it takes that key's next- tag
    let fresh = TestContext::new(&format!("FROM {base}\nRUN echo fresh > /c\n"));
    build(&fresh, &reg, "app:2");
    let all = entries(&reg);
    assert_eq!(all.len(), 3, "{all:?}");
    let month = tags_of(&all, "month");
    let days = tags_of(&all, "days");
    // and an old manifest that no smelt wrote
    let (layer, diff_id) = gzip_layer(&[("foreign", "x")]);
    let mut config = config_with_diff_ids(&[&diff_id]);
    config["created"] = "2001-01-01T00:00:00Z".into();
    reg.push_raw("cache", "foreign", &config, &[(MANIFEST_LAYER, layer)]);

    let before = tags(&reg, "cache");
    let app_before = manifest(&reg, "app", "1");
    assert_eq!(app_before.0, 200);

    // a dry run says what would go and deletes nothing
    let (code, out, err) = prune(&reg, &["--older-than", "7d", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let key = |tags: &[String]| {
        tags.iter()
            .find(|t| !t.starts_with("next-"))
            .unwrap()
            .clone()
    };
    assert!(
        out.contains(&format!("would remove {}/cache:{}", reg.host, key(&month))),
        "{out}"
    );
    assert!(out.contains("stored 30d 0h ago"), "{out}");
    assert!(out.contains("stored 10d 0h ago"), "{out}");
    assert!(
        out.contains("would remove 2 cache entries (1 kept, 1 other manifest left alone)"),
        "{out}"
    );
    assert!(out.contains("nothing was deleted"), "{out}");
    assert!(
        out.contains("left alone") && out.contains(":foreign: not a smelt cache entry"),
        "{out}"
    );
    assert_eq!(tags(&reg, "cache"), before);

    // the newest two stay whatever their age: only the month-old goes
    let (code, out, err) = prune(&reg, &["--older-than", "7d", "--keep-last", "2"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("removed 1 cache entry (2 kept"), "{out}");
    assert!(
        out.contains(&format!("removed {}/cache:{}", reg.host, key(&month))),
        "{out}"
    );
    // its config and layer are named by no other manifest
    let m = &all[&created_by_of(&all, "month")].1;
    let size: u64 = std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| d["size"].as_u64().unwrap())
        .sum();
    let shown = if size < 1000 {
        format!("{size} B")
    } else {
        format!("{:.1} kB", size as f64 / 1000.0)
    };
    assert!(
        out.contains(&format!(
            "about {shown} freed once the registry garbage-collects"
        )),
        "{out}"
    );
    let now = tags(&reg, "cache");
    for tag in &month {
        assert!(!now.contains(tag), "{tag} is still there: {now:?}");
    }
    for tag in &days {
        assert!(now.contains(tag), "{tag} went: {now:?}");
    }

    // then without --keep-last the ten-day-old entry goes too
    let (code, out, err) = prune(&reg, &["--older-than", "1w"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("removed 1 cache entry (1 kept, 1 other manifest"),
        "{out}"
    );
    let now = tags(&reg, "cache");
    for tag in &days {
        assert!(!now.contains(tag), "{tag} is still there: {now:?}");
    }
    // left: the fresh entry's tags and the foreign manifest, whatever its age
    let left = entries(&reg);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(tags_of(&left, "fresh").iter().all(|t| now.contains(t)));
    assert!(now.contains(&"foreign".to_string()), "{now:?}");
    // even asked to remove everything, the foreign manifest stays
    let (code, out, _) = prune(&reg, &["--older-than", "0", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("would remove 1 cache entry (0 kept, 1 other"),
        "{out}"
    );

    // an image repository named by mistake: nothing in it is an entry
    let (code, out, err) = prune_with(
        &format!("{}/app", reg.host),
        &["--older-than", "0"],
        &reg.dir.path().join("no-docker-config"),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("removed 0 cache entries (0 kept, 2 other manifests left alone)"),
        "{out}"
    );
    assert!(err.contains("holds no smelt cache entry"), "{err}");

    // the image repository is untouched: its tags, its manifest, its layers
    assert_eq!(tags(&reg, "app"), ["1", "2"]);
    assert_eq!(manifest(&reg, "app", "1"), app_before);
    let app: serde_json::Value = serde_json::from_slice(&app_before.1).unwrap();
    for l in app["layers"].as_array().unwrap() {
        let digest = l["digest"].as_str().unwrap();
        let (status, _, _) = http(
            &reg.host,
            "HEAD",
            &format!("/v2/app/blobs/{digest}"),
            &[],
            b"",
        );
        assert_eq!(status, 200, "layer {digest} of app:1");
    }
}

const MANIFEST_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The `created_by` key of the entry whose RUN contains `text`.
fn created_by_of(all: &BTreeMap<String, (Vec<String>, serde_json::Value)>, text: &str) -> String {
    all.keys().find(|k| k.contains(text)).unwrap().clone()
}

#[test]
fn prune_against_a_registry_that_refuses_deletes_says_what_to_change() {
    let reg = TestRegistry::start_without_deletes();
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!("FROM {base}\nRUN echo x > /x\n"));
    build(&t, &reg, "app:1");
    let before = tags(&reg, "cache");
    assert!(!before.is_empty());
    let (code, out, err) = prune(&reg, &["--older-than", "0"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("refuses to delete manifests"), "{err}");
    assert!(err.contains("UNSUPPORTED"), "{err}");
    assert!(err.contains("storage: delete: enabled: true"), "{err}");
    assert_eq!(tags(&reg, "cache"), before);
    // a dry run needs no deletes
    let (code, out, err) = prune(&reg, &["--older-than", "0", "--dry-run"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("would remove 1 cache entry"), "{out}");
}

#[test]
fn each_layer_crosses_the_wire_once_with_the_cache_on_the_destination_registry() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    // a layer big enough to be seen going twice (incompressible)
    let t = TestContext::new(&format!(
        "FROM {base}\n\
         RUN head -c 3000000 /dev/urandom > /big\n\
         RUN echo small > /small\n"
    ));
    let log = build(&t, &reg, "app:1");
    let (status, body) = manifest(&reg, "app", "1");
    assert_eq!(status, 200);
    let app: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let layers: Vec<String> = app["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    let built = &layers[layers.len() - 2..];
    let access = reg.access_log();
    for digest in built {
        let puts: Vec<&String> = access
            .iter()
            .filter(|l| {
                l.contains("\"PUT /v2/")
                    && l.contains(&digest.replace("sha256:", "digest=sha256%3A"))
            })
            .collect();
        assert_eq!(
            puts.len(),
            1,
            "layer {digest} uploaded {} times: {access:#?}",
            puts.len()
        );
        let mounts: Vec<&String> = access
            .iter()
            .filter(|l| {
                l.contains(&format!(
                    "\"POST /v2/app/blobs/uploads/?mount={digest}&from=cache"
                )) && l.contains("\" 201 ")
            })
            .collect();
        assert_eq!(
            mounts.len(),
            1,
            "layer {digest} not mounted into app: {access:#?}"
        );
        let short = &digest["sha256:".len().."sha256:".len() + 12];
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(short)).collect();
        assert_eq!(
            lines.iter().filter(|l| l.contains(" uploaded (")).count(),
            1,
            "{lines:#?}"
        );
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.contains(" mounted from cache"))
                .count(),
            1,
            "{lines:#?}"
        );
    }
    // one Pushed line per repository and manifest
    let mut pushed: Vec<&str> = log.lines().filter(|l| l.contains("Pushed ")).collect();
    let all = pushed.len();
    pushed.sort();
    pushed.dedup();
    assert_eq!(all, pushed.len(), "a Pushed line repeats: {pushed:#?}");
}

/// A relay in front of `upstream` that answers tag lists itself, at most
/// `page` tags a page with `Link: <…>; rel="next"`, as registries that cap
/// `n` do (the distribution registry 2.8 sends the whole list, whatever
/// `n` says). Everything else goes to the registry as it came. Returns its
/// host and how many tag-list pages it served.
fn paging_relay(upstream: &str, page: usize) -> (String, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let pages = Arc::new(Mutex::new(0));
    let (upstream, served) = (upstream.to_string(), Arc::clone(&pages));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let _ = relay(stream, &upstream, page, &served);
        }
    });
    (host, pages)
}

fn relay(
    stream: TcpStream,
    upstream: &str,
    page: usize,
    served: &Mutex<usize>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let head = read_head(&mut reader)?;
    let mut parts = head.first().map(|l| l.split(' ')).into_iter().flatten();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let header = |name: &str| {
        head.iter().skip(1).find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().to_string())
        })
    };
    let mut body = vec![
        0;
        header("content-length")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    ];
    reader.read_exact(&mut body)?;
    let mut out = stream;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method == "GET" && path.ends_with("/tags/list") {
        let (_, _, all) = http(upstream, "GET", path, &[], b"");
        let all: serde_json::Value = serde_json::from_slice(&all).unwrap();
        let mut tags: Vec<String> = all["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        tags.sort();
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(str::to_string)
        };
        let n = param("n")
            .and_then(|n| n.parse().ok())
            .unwrap_or(page)
            .min(page);
        let after: Vec<&String> = tags
            .iter()
            .filter(|t| param("last").is_none_or(|last| **t > last))
            .collect();
        let this: Vec<&String> = after.iter().take(n).copied().collect();
        let link = match (after.len() > n, this.last()) {
            (true, Some(last)) => {
                format!("Link: <{path}?n={n}&last={last}>; rel=\"next\"\r\n")
            }
            _ => String::new(),
        };
        *served.lock().unwrap() += 1;
        let json = serde_json::json!({"name": "cache", "tags": this}).to_string();
        return write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{link}Connection: close\r\n\r\n{json}",
            json.len()
        );
    }
    let forwarded: Vec<(String, String)> = head
        .iter()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| {
            !["host", "connection", "content-length"].contains(&k.to_ascii_lowercase().as_str())
        })
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect();
    let headers: Vec<(&str, &str)> = forwarded
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (_, response_head, response_body) = http(upstream, method, target, &headers, &body);
    for line in &response_head {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            write!(out, "{line}\r\n")?;
        }
    }
    write!(out, "Connection: close\r\n\r\n")?;
    out.write_all(&response_body)
}

#[test]
fn prune_follows_the_tag_list_page_by_page() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = TestContext::new(&format!(
        "FROM {base}\nRUN echo 1 > /1\nRUN echo 2 > /2\nRUN echo 3 > /3\n"
    ));
    build(&t, &reg, "app:1");
    let all = tags(&reg, "cache");
    // each entry: its key, `next-` and `line-` tags
    assert_eq!(all.len(), 9, "{all:?}");
    let (relay, pages) = paging_relay(&reg.host, 2);
    let (code, stdout, stderr) = prune_with(
        &format!("{relay}/cache"),
        &["--older-than", "0"],
        &reg.dir.path().join("no-docker-config"),
    );
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    // five pages of two tags, every entry found and removed
    assert!(
        stderr.contains(&format!("9 tags in {relay}/cache")),
        "{stderr}"
    );
    assert_eq!(*pages.lock().unwrap(), 5);
    assert!(
        stdout.contains("removed 3 cache entries (0 kept"),
        "{stdout}"
    );
    assert!(tags(&reg, "cache").is_empty());
}

#[test]
fn prune_asks_a_token_server_for_delete_with_the_stored_credentials() {
    let reg = TestRegistry::start(Auth::Token);
    let base = reg.push_base("base:1", "linux/amd64");
    let config = reg.docker_config();
    let t = TestContext::new(&format!("FROM {base}\nRUN echo x > /x\n"));
    let config_dir = config.to_str().unwrap();
    let cache = format!("{}/cache", reg.host);
    let dest = format!("{}/app:1", reg.host);
    t.build_with(
        smelt_bin(),
        &["build"],
        &["--cache", "--cache-repo", &cache, "--destination", &dest],
        &[("DOCKER_CONFIG", config_dir)],
    )
    .ok();
    // without credentials the registry refuses, naming what
    let (code, out, err) = prune(&reg, &["--older-than", "0"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(err.contains("unauthorized"), "{err}");
    let (code, out, err) = prune_with(
        &format!("{}/cache", reg.host),
        &["--older-than", "0"],
        &config,
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("removed 1 cache entry"), "{out}");
    assert!(!err.contains(crate::registry_server::PASSWORD), "{err}");
    let listed: serde_json::Value = serde_json::from_str(&reg.skopeo(
        "list-tags",
        &[""],
        &[&format!("docker://{}/cache", reg.host)],
    ))
    .unwrap();
    assert_eq!(listed["Tags"], serde_json::json!([]), "{listed}");
    let asked = reg.token_requests.lock().unwrap().clone();
    assert!(
        asked.iter().any(|(_, scopes, authed)| *authed
            && scopes.contains(&"repository:cache:delete".to_string())),
        "{asked:?}"
    );
}
