//! The outputs kaniko users rely on: docker-archive (`--tar-path`), OCI
//! layout, digest files; read back by skopeo.

use crate::harness::{TestContext, tool};

#[test]
fn docker_archive_is_read_by_skopeo() {
    let t = TestContext::new("FROM scratch\nCOPY hello.txt /\nENV GREETING=hi\nCMD [\"/hello\"]\n");
    t.file("hello.txt", "hello\n");
    let digest = t.build_outputs(&[]);
    let tar = t.path("image.tar");
    let inspect: serde_json::Value = serde_json::from_str(&tool(
        "skopeo",
        &["inspect", &format!("docker-archive:{}", tar.display())],
    ))
    .expect("json");
    assert_eq!(inspect["Layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(inspect["Os"], "linux");
    let env = inspect["Env"].as_array().expect("Env");
    assert!(env.iter().any(|e| e == "GREETING=hi"), "{env:?}");
    // a full copy out of the archive verifies every blob against its digest
    let copied = t.path("copied");
    tool(
        "skopeo",
        &[
            "copy",
            &format!("docker-archive:{}", tar.display()),
            &format!("oci:{}:x", copied.display()),
        ],
    );
    // the OCI layout holds the very manifest whose digest was printed
    let index = t.index();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "t1"
    );
}

#[test]
fn digest_files_as_kaniko_writes_them() {
    let t = TestContext::new("FROM scratch\nCOPY f /\n");
    t.file("f", "f\n");
    let d = t.path("digest");
    let n = t.path("name-digest");
    let nt = t.path("name-tag-digest");
    let run = t
        .build(&[
            "--no-push",
            "-d",
            "busybox",
            "--destination=127.0.0.1:5000/app:v2",
            "--digest-file",
            d.to_str().expect("utf8"),
            "--image-name-with-digest-file",
            n.to_str().expect("utf8"),
            "--image-name-tag-with-digest-file",
            nt.to_str().expect("utf8"),
        ])
        .ok();
    let digest = run.stdout().trim().to_string();
    assert_eq!(fs_err::read_to_string(&d).expect("digest file"), digest);
    assert_eq!(
        fs_err::read_to_string(&n).expect("file"),
        format!("index.docker.io/library/busybox@{digest}\n127.0.0.1:5000/app@{digest}\n")
    );
    assert_eq!(
        fs_err::read_to_string(&nt).expect("file"),
        format!(
            "index.docker.io/library/busybox:latest@{digest}\n127.0.0.1:5000/app:v2@{digest}\n"
        )
    );
}

#[test]
fn zstd_layers() {
    let t = TestContext::new("FROM scratch\nCOPY f /\n");
    t.file("f", &"zstd ".repeat(1000));
    t.build_outputs(&["--compression", "zstd", "--compression-level", "9"]);
    let manifest = t.manifest();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    // umoci 0.4 predates zstd layers: decompress with the zstd tool and read the tar
    let blob = t.blob_path(manifest["layers"][0]["digest"].as_str().expect("digest"));
    let raw = t.path("layer.tar");
    tool(
        "zstd",
        &[
            "-q",
            "-d",
            blob.to_str().expect("utf8"),
            "-o",
            raw.to_str().expect("utf8"),
        ],
    );
    assert_eq!(
        tool("tar", &["-xOf", raw.to_str().expect("utf8"), "f"]),
        "zstd ".repeat(1000)
    );
    // skopeo reads the whole image, verifying every digest
    tool(
        "skopeo",
        &[
            "copy",
            &format!("oci:{}:t1", t.path("oci").display()),
            &format!("dir:{}", t.path("dir").display()),
        ],
    );
}

#[test]
fn podman_loads_the_docker_archive() {
    let t = TestContext::new("FROM scratch\nCOPY hello.txt /\nENV GREETING=hi\nCMD [\"/hello\"]\n");
    t.file("hello.txt", "hello\n");
    t.build_outputs(&[]);
    let tar = t.path("image.tar");
    let (root, runroot) = (t.path("podman-root"), t.path("podman-run"));
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--storage-driver",
            "vfs",
            "--root",
            root.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
        ];
        all.extend_from_slice(args);
        tool("podman", &all)
    };
    let loaded = podman(&["load", "-q", "-i", tar.to_str().unwrap()]);
    assert!(loaded.contains("example.test/smelt/it:t1"), "{loaded}");
    let inspect: serde_json::Value =
        serde_json::from_str(&podman(&["image", "inspect", "example.test/smelt/it:t1"]))
            .expect("json");
    assert_eq!(inspect[0]["Config"]["Cmd"][0], "/hello");
    assert_eq!(
        inspect[0]["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1)
    );
}
