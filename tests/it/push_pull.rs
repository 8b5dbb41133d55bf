//! Pulls and pushes against a real registry (Debian's docker-registry):
//! FROM a registry image, pushes checked with skopeo, auth, platforms.

use crate::harness::{
    Layout, Run, TestContext, assert_has_line_starting, assert_has_lines, http_status, tool, tree,
};
use crate::registry_server::{Auth, PASSWORD, TestRegistry, USER};
use std::path::Path;

fn app(base: &str, steps: &str) -> TestContext {
    let t = TestContext::new(&format!("FROM {base}\n{steps}"));
    t.file("hello.txt", "hello from smelt\n");
    t
}

#[test]
fn from_a_registry_image_pushes_without_downloading_the_base() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    // only config steps: a COPY reads the base's files (where it lands
    // depends on them), so it would download the base
    let t = app(
        &base,
        "ENV APP=1\nCMD [\"/bin/busybox\",\"cat\",\"/etc/passwd\"]\n",
    );
    let digest_file = t.path("digest");
    let dest1 = format!("{}/app:1", reg.host);
    let dest2 = format!("{}/other/app:2", reg.host);
    let run = t
        .build(&[
            "--custom-platform=linux/amd64",
            "-d",
            &dest1,
            "-d",
            &dest2,
            "--digest-file",
            digest_file.to_str().unwrap(),
        ])
        .ok();
    let err = run.stderr();
    assert!(err.contains("not unpacking"), "{err}");
    assert!(
        !err.contains("downloaded"),
        "a base layer was downloaded:\n{err}"
    );
    assert!(err.contains("mounted from base"), "{err}");
    assert!(
        err.contains(&format!("Pushed {}/app@sha256:", reg.host)),
        "{err}"
    );

    let base_info = reg.inspect("base:1", &[]);
    let info = reg.inspect("app:1", &[]);
    let digest = fs_err::read_to_string(&digest_file).unwrap();
    assert_eq!(info["Digest"].as_str(), Some(digest.as_str()));
    assert_eq!(reg.inspect("other/app:2", &[])["Digest"], info["Digest"]);
    let layers = info["Layers"].as_array().unwrap();
    let base_layers = base_info["Layers"].as_array().unwrap();
    assert_eq!(layers, base_layers);
    let env: Vec<&str> = info["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        env.contains(&"BASE=yes") && env.contains(&"APP=1"),
        "{env:?}"
    );

    // the pushed image is whole: skopeo copies it out and umoci unpacks it
    let layout = t.path("pulled");
    reg.skopeo(
        "copy",
        &["src-"],
        &[
            "-q",
            &format!("docker://{dest1}"),
            &format!("oci:{}:app", layout.display()),
        ],
    );
    let rootfs = t.path("pulled-rootfs");
    Layout(layout).unpack("app", &rootfs);
    let listing = tree(&rootfs);
    assert_has_line_starting(&listing, &["/bin/busybox 755 0:0 file"]);
}

#[test]
fn named_owners_unpack_the_base_and_read_its_passwd() {
    let reg = TestRegistry::start(Auth::None);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = app(
        &base,
        "COPY --chown=app:app hello.txt /home/app/hello.txt\n",
    );
    // the owner can only come from the base's /etc/passwd
    t.build_outputs(&["--custom-platform=linux/amd64"]);
    let rootfs = t.unpack();
    let listing = tree(&rootfs);
    assert_has_lines(
        &listing,
        &["/home/app/hello.txt 644 1234:4321 file n=1 \"hello from smelt\\n\""],
    );
    assert_has_line_starting(&listing, &["/etc/passwd 644 0:0 file"]);
}

#[test]
fn an_index_gives_the_requested_platform() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("multi-amd64:1", "linux/amd64");
    reg.push_base("multi-arm64:1", "linux/arm64/v8");
    // an index over the two, put with skopeo's raw manifests
    let mut entries = Vec::new();
    for (name, arch) in [("multi-amd64:1", "amd64"), ("multi-arm64:1", "arm64")] {
        let digest = reg.inspect(name, &[])["Digest"]
            .as_str()
            .unwrap()
            .to_string();
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": manifest_size(&reg, name),
            "platform": {"architecture": arch, "os": "linux"},
        }));
        // the index's manifests must live in its repository
        reg.skopeo(
            "copy",
            &["src-", "dest-"],
            &[
                "-q",
                &format!("docker://{}/{name}", reg.host),
                &format!("docker://{}/multi:{arch}", reg.host),
            ],
        );
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let status = http_status(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/vnd.oci.image.index.v1+json",
        "--data-binary",
        &index.to_string(),
        &format!("http://{}/v2/multi/manifests/1", reg.host),
    ]);
    assert_eq!(status, "201");

    let arm = reg.inspect("multi-arm64:1", &[]);
    let t = app(
        &format!("{}/multi:1", reg.host),
        "COPY hello.txt /hello.txt\n",
    );
    let dest = format!("{}/app:arm", reg.host);
    t.build(&["--custom-platform=linux/arm64", "-d", &dest])
        .ok();
    let config: serde_json::Value = serde_json::from_str(&reg.skopeo(
        "inspect",
        &[""],
        &["--config", &format!("docker://{dest}")],
    ))
    .unwrap();
    assert_eq!(config["architecture"], "arm64");
    let layers = reg.inspect("app:arm", &[])["Layers"].clone();
    assert_eq!(layers[0], arm["Layers"][0]);

    let run = t.build(&["--custom-platform=linux/s390x", "--no-push"]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("no image for platform linux/s390x")
            && run.stderr().contains("linux/amd64, linux/arm64")
            && run.stderr().contains("Dockerfile:1: FROM")
            && run.stderr().contains(&format!("{}/multi", reg.host)),
        "{}",
        run.stderr()
    );
}

fn manifest_size(reg: &TestRegistry, name: &str) -> u64 {
    let (repo, tag) = name.split_once(':').unwrap();
    let out = tool(
        "curl",
        &[
            "-s",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
            &format!("http://{}/v2/{repo}/manifests/{tag}", reg.host),
        ],
    );
    out.len() as u64
}

#[test]
fn htpasswd_auth_from_docker_config_and_secrets_stay_out_of_logs() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = app(&base, "COPY hello.txt /hello.txt\n");
    let dest = format!("{}/app:1", reg.host);
    let config = reg.docker_config();
    let run = push_with_config(&t, &dest, &config, "trace", &[]);
    let err = run.stderr();
    assert_eq!(run.code(), 0, "{err}");
    assert_secrets_absent(&err);
    assert_eq!(reg.layer_count("app:1"), 3);

    // without credentials the registry's refusal is named
    let run = t.build(&["--custom-platform=linux/amd64", "-d", &dest]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains(&reg.host) && run.stderr().contains("unauthorized"),
        "{}",
        run.stderr()
    );
}

#[test]
fn bearer_tokens_from_a_token_server() {
    let reg = TestRegistry::start(Auth::Token);
    let base = reg.push_base("base:1", "linux/amd64");
    reg.token_requests.lock().unwrap().clear();
    let t = app(&base, "COPY hello.txt /hello.txt\n");
    let dest = format!("{}/app:1", reg.host);
    let config = reg.docker_config();
    let run = push_with_config(&t, &dest, &config, "trace", &[]);
    let err = run.stderr();
    assert_eq!(run.code(), 0, "{err}");
    assert_secrets_absent(&err);
    let requests = reg.token_requests.lock().unwrap().clone();
    assert!(
        requests
            .iter()
            .all(|(service, _, authed)| service == "smelt-test" && *authed)
    );
    let scopes: Vec<String> = requests.iter().flat_map(|(_, s, _)| s.clone()).collect();
    assert!(
        scopes.contains(&"repository:base:pull".to_string()),
        "{scopes:?}"
    );
    assert!(
        scopes.contains(&"repository:app:pull,push".to_string()),
        "{scopes:?}"
    );
    // tokens are cached: a handful of requests, not one per blob
    assert!(requests.len() <= 4, "{requests:?}");
    assert_eq!(reg.layer_count("app:1"), 3);
}

#[test]
fn identity_tokens_are_exchanged_with_the_oauth2_form() {
    let reg = TestRegistry::start(Auth::Token);
    let base = reg.push_base("base:1", "linux/amd64");
    reg.token_requests.lock().unwrap().clear();
    let t = app(&base, "COPY hello.txt /hello.txt\n");
    let dest = format!("{}/app:1", reg.host);
    let config = reg.docker_config_identity_token();
    let run = push_with_config(&t, &dest, &config, "trace", &[]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(
        !run.stderr()
            .contains(crate::registry_server::IDENTITY_TOKEN)
    );
    let requests = reg.token_requests.lock().unwrap().clone();
    assert!(!requests.is_empty() && requests.iter().all(|(_, _, authed)| *authed));
    assert!(
        requests
            .iter()
            .any(|(_, s, _)| s.contains(&"repository:app:pull,push".to_string())),
        "{requests:?}"
    );
}

/// Builds `t` and pushes it to `dest` with `config` as DOCKER_CONFIG.
fn push_with_config(
    t: &TestContext,
    dest: &str,
    config: &Path,
    verbosity: &str,
    env: &[(&str, &str)],
) -> Run {
    let verbosity = format!("--verbosity={verbosity}");
    let mut vars = vec![("DOCKER_CONFIG", config.to_str().unwrap())];
    vars.extend_from_slice(env);
    t.build_with(
        crate::harness::smelt_bin(),
        &["build"],
        &["--custom-platform=linux/amd64", "-d", dest, &verbosity],
        &vars,
    )
}

fn assert_secrets_absent(log: &str) {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    assert!(
        !log.contains(&basic),
        "the basic credential is in the log:\n{log}"
    );
    assert!(!log.contains("eyJ"), "a JWT is in the log:\n{log}");
}

#[test]
fn mirrors_and_registry_maps_stand_in_for_the_named_registry() {
    let reg = TestRegistry::start(Auth::None);
    reg.push_base("library/busybox:latest", "linux/amd64");
    reg.push_base("team/base:1", "linux/amd64");
    // Docker Hub's busybox, from the mirror only (no Docker Hub here)
    let t = app("busybox", "COPY hello.txt /hello.txt\n");
    let run = t
        .build(&[
            "--custom-platform=linux/amd64",
            "--no-push",
            "--registry-mirror",
            &reg.host,
            "--skip-default-registry-fallback",
        ])
        .ok();
    assert!(
        run.stderr()
            .contains(&format!("resolved busybox to {}/library/busybox", reg.host)),
        "{}",
        run.stderr()
    );
    // a map from a registry that is down: the first entry fails, the next serves
    let down = format!("127.0.0.1:{}", crate::registry_server::free_port());
    let t = app(
        &format!("{down}/team/base:1"),
        "COPY hello.txt /hello.txt\n",
    );
    let run = t
        .build(&[
            "--custom-platform=linux/amd64",
            "--no-push",
            &format!("--registry-map={down}={down};{down}={}", reg.host),
        ])
        .ok();
    assert!(
        run.stderr().contains("trying the next source")
            && run
                .stderr()
                .contains(&format!("to {}/team/base:1@sha256:", reg.host)),
        "{}",
        run.stderr()
    );
}

#[test]
fn tls_registries_with_kaniko_certificate_flags() {
    use crate::registry_server::TestCa;
    let ca = TestCa::new();
    let reg = TestRegistry::start_with(Auth::None, Some((&ca, false)));
    let base = reg.push_base("base:1", "linux/amd64");
    let t = app(&base, "COPY hello.txt /hello.txt\n");
    let dest = format!("{}/app:1", reg.host);
    // an unknown CA is an error that says so (no fallback to plain HTTP)
    let run = t.build(&["--custom-platform=linux/amd64", "-d", &dest]);
    assert_eq!(run.code(), 1);
    assert!(
        run.stderr().contains("certificate") && run.stderr().contains("--registry-certificate"),
        "{}",
        run.stderr()
    );
    let ca_flag = format!(
        "--registry-certificate={}={}",
        reg.host,
        ca.ca_cert.display()
    );
    t.build(&["--custom-platform=linux/amd64", "-d", &dest, &ca_flag])
        .ok();
    let dest2 = format!("{}/app:2", reg.host);
    t.build(&[
        "--custom-platform=linux/amd64",
        "-d",
        &dest2,
        "--skip-tls-verify",
        "--skip-tls-verify-pull",
    ])
    .ok();
    assert_eq!(
        reg.inspect("app:2", &[])["Layers"],
        reg.inspect("app:1", &[])["Layers"]
    );

    // mutual TLS: the client certificate is asked for
    let reg = TestRegistry::start_with(Auth::None, Some((&ca, true)));
    let base = reg.push_base("base:1", "linux/amd64");
    let t = app(&base, "COPY hello.txt /hello.txt\n");
    let dest = format!("{}/app:1", reg.host);
    let ca_flag = format!(
        "--registry-certificate={}={}",
        reg.host,
        ca.ca_cert.display()
    );
    let run = t.build(&["--custom-platform=linux/amd64", "-d", &dest, &ca_flag]);
    assert_eq!(run.code(), 1, "{}", run.stderr());
    let last = run.stderr().lines().last().unwrap_or_default().to_string();
    // the TLS failure is named once, not hidden by the HTTP fallback's 400
    assert_eq!(
        last.matches(&format!("reaching {}", reg.host)).count(),
        1,
        "{last}"
    );
    assert!(
        last.contains(&format!("FROM: reaching {}", reg.host))
            && last.contains("the registry speaks only HTTPS")
            && last.contains(&format!("--registry-client-cert={}=", reg.host)),
        "{}",
        run.stderr()
    );
    let client_flag = format!(
        "--registry-client-cert={}={},{}",
        reg.host,
        ca.client_cert.display(),
        ca.client_key.display()
    );
    t.build(&[
        "--custom-platform=linux/amd64",
        "-d",
        &dest,
        &ca_flag,
        &client_flag,
    ])
    .ok();
    assert_eq!(reg.layer_count("app:1"), 3);
}

#[test]
fn credential_helpers_named_in_docker_config() {
    let reg = TestRegistry::start(Auth::Htpasswd);
    let base = reg.push_base("base:1", "linux/amd64");
    let t = app(&base, "COPY hello.txt /hello.txt\n");
    // docker-credential-smelt-test answers `get` with the registry's credentials
    let bin = t.path("bin");
    fs_err::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-smelt-test");
    fs_err::write(
        &helper,
        format!(
            "#!/bin/sh\nread server\n[ \"$1\" = get ] && [ \"$server\" = \"{}\" ] || exit 1\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n",
            reg.host
        ),
    )
    .unwrap();
    fs_err::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = t.path("docker-config");
    fs_err::create_dir_all(&config).unwrap();
    fs_err::write(
        config.join("config.json"),
        format!(r#"{{"credHelpers":{{"{}":"smelt-test"}}}}"#, reg.host),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let dest = format!("{}/app:1", reg.host);
    let run = push_with_config(&t, &dest, &config, "debug", &[("PATH", &path)]);
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert_secrets_absent(&run.stderr());
    assert_eq!(reg.layer_count("app:1"), 3);
}
