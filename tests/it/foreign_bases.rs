//! Base images smelt did not write: the docker.io reference daemon builds
//! one (every layer docker's, a whiteout of docker's among them), `docker
//! save`s it, and skopeo pushes the archive to the test registry with
//! Docker's schema 2 media types. smelt builds FROM it, RUNs in it, COPYs
//! into it and copies out of it with `COPY --from`; the pushed result is
//! read back with skopeo and umoci.

use crate::conformance::{docker_build_saved, ensure_oracle};
use crate::harness::{Layout, TestContext, assert_has_lines, assert_no_line_starting, tool, tree};
use crate::registry_server::{Auth, TestRegistry, busybox};
use std::path::Path;

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A tar of a busybox root (applets as symlinks, /etc/passwd), for docker's
/// `ADD` into `FROM scratch`: nothing in it went through smelt.
fn busybox_rootfs_tar(into: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs_err::create_dir_all(root.join("bin")).unwrap();
    fs_err::create_dir_all(root.join("etc")).unwrap();
    fs_err::create_dir_all(root.join("tmp")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    fs_err::copy(busybox(), root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "cat", "ln", "mkdir", "mkfifo", "mknod", "rm", "id", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs_err::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nweb:x:1500:1500::/srv:/bin/sh\n",
    )
    .unwrap();
    fs_err::write(root.join("etc/group"), "root:x:0:\nweb:x:1500:\n").unwrap();
    tool(
        "tar",
        &[
            "-C",
            root.to_str().unwrap(),
            "--numeric-owner",
            "-cf",
            into.to_str().unwrap(),
            ".",
        ],
    );
}

/// Builds `dockerfile` (with `rootfs.tar`, a busybox root, and `caps.tar`,
/// a file `capped` with a security.capability xattr, in its context)
/// with the docker.io reference, `docker save`s it and pushes the archive
/// to `reg` as `name` with skopeo, which keeps Docker's media types.
/// Returns the image's reference.
pub(crate) fn push_docker_built(reg: &TestRegistry, name: &str, dockerfile: &str) -> String {
    ensure_oracle();
    let work = tempfile::tempdir().unwrap();
    let ctx = work.path().join("ctx");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    busybox_rootfs_tar(&ctx.join("rootfs.tar"));
    fs_err::copy(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/conformance/devices-and-capabilities/caps.tar"),
        ctx.join("caps.tar"),
    )
    .unwrap();
    let tag = format!(
        "smelt-foreign/{}:{}",
        name.replace([':', '/'], "-"),
        reg.host.replace([':', '.'], "-")
    );
    let saved = work.path().join("saved.tar");
    docker_build_saved(&tag, &[ctx.into()], &saved, name);
    reg.skopeo(
        "copy",
        &["dest-"],
        &[
            "-q",
            &format!("docker-archive:{}", saved.display()),
            &format!("docker://{}/{name}", reg.host),
        ],
    );
    format!("{}/{name}", reg.host)
}

/// The base of [`from_a_docker_built_base_with_docker_media_types`] and
/// of the `docker-base` conformance case.
const DOCKER_BASE: &str = "FROM scratch\nADD rootfs.tar /\nADD caps.tar /data/\n\
         RUN echo kept > /data/keep && echo doomed > /data/gone \
         && ln /data/keep /data/hard && ln -s keep /data/link && mkfifo /data/fifo \
         && mknod /data/null c 1 3\n\
         RUN rm /data/gone && echo later > /data/later\n\
         ENV FROM_DOCKER=yes\nWORKDIR /data\nUSER web\nCMD [\"sh\"]\n";

/// Pushes [`DOCKER_BASE`] as `docker-base:1`.
pub(crate) fn push_docker_base(reg: &TestRegistry) -> String {
    push_docker_built(reg, "docker-base:1", DOCKER_BASE)
}

/// smelt and docker build the same Dockerfile on the docker-built base
/// and give the same tree and config.
#[test]
fn on_a_docker_built_base_smelt_matches_docker() {
    crate::conformance::differential_on("docker-base", push_docker_base);
}

#[test]
fn from_a_docker_built_base_with_docker_media_types() {
    let reg = TestRegistry::start(Auth::None);
    let base = push_docker_base(&reg);
    // what smelt pulls is docker's schema 2, not an OCI manifest it wrote
    let raw = reg.inspect("docker-base:1", &["--raw"]);
    assert_eq!(raw["mediaType"], DOCKER_MANIFEST, "{raw:#}");
    let layers = raw["layers"].as_array().unwrap();
    // two ADDs, two RUNs, and WORKDIR's empty layer (docker 20.10 writes one)
    assert_eq!(layers.len(), 5, "{raw:#}");
    for l in layers {
        assert_eq!(l["mediaType"], DOCKER_LAYER, "{raw:#}");
    }

    let t = TestContext::new(&format!(
        "FROM {base} AS app\n\
         RUN id -un > /tmp/who && echo \"$FROM_DOCKER $(pwd) $(cat keep)\" > /tmp/seen\n\
         USER root\n\
         COPY ctx.txt ./from-context.txt\n\
         FROM {base}\n\
         USER root\n\
         COPY --from=app /tmp/who /tmp/seen /data/from-app/\n\
         COPY --from={base} /data/ /copied/\n\
         COPY --from=app /data/from-context.txt /copied/\n"
    ));
    t.file("ctx.txt", "from the context\n");
    let dest = format!("{}/app:1", reg.host);
    t.build(&["-d", &dest]).ok();

    // read back by skopeo and umoci, not smelt
    let layout = t.path("pulled");
    reg.skopeo(
        "copy",
        &["src-"],
        &[
            "-q",
            &format!("docker://{dest}"),
            &format!("oci:{}:t1", layout.display()),
        ],
    );
    let layout = Layout(layout);
    let rootfs = t.path("rootfs");
    layout.unpack("t1", &rootfs);
    let listing = tree(&rootfs);
    assert_has_lines(
        &listing,
        &[
            // the base's files, its hard link, symlink and FIFO as docker made them
            "/data/keep 644 0:0 file n=2 \"kept\\n\"",
            "/data/hard 644 0:0 file n=2 \"kept\\n\"",
            "/data/link 777 0:0 link n=1 -> keep",
            "/data/fifo 644 0:0 fifo",
            "/data/null 644 0:0 char 1:3",
            "/data/capped 755 0:0 file n=1 \"cap\\n\" cap=0100000200040000000000000000000000000000",
            "/data/later 644 0:0 file n=1 \"later\\n\"",
            // RUN as the base's USER, in its WORKDIR, with its ENV (COPY
            // --from keeps the owner, as docker does)
            "/data/from-app/who 644 1500:1500 file n=1 \"web\\n\"",
            "/data/from-app/seen 644 1500:1500 file n=1 \"yes /data kept\\n\"",
            // COPY --from the docker-built image itself
            "/copied/keep 644 0:0 file n=2 \"kept\\n\"",
            "/copied/hard 644 0:0 file n=2 \"kept\\n\"",
            "/copied/link 777 0:0 link n=1 -> keep",
            // with its capability, as docker's COPY keeps xattrs
            "/copied/capped 755 0:0 file n=1 \"cap\\n\" cap=0100000200040000000000000000000000000000",
            "/copied/later 644 0:0 file n=1 \"later\\n\"",
            // COPY from the context into the base's WORKDIR, then out again
            "/copied/from-context.txt 644 0:0 file n=1 \"from the context\\n\"",
        ],
    );
    // docker's whiteout in its second RUN layer hides the file
    assert_no_line_starting(&listing, &["/data/gone", "/copied/gone"]);
    let config = layout.config();
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("FROM_DOCKER=yes"), "{config:#}");
    assert_eq!(config["config"]["WorkingDir"], "/data", "{config:#}");
    assert_eq!(config["config"]["User"], "root", "{config:#}");
    // the base's five layers come first, unchanged
    let pushed = reg.inspect("app:1", &[]);
    let base_layers = reg.inspect("docker-base:1", &[])["Layers"].clone();
    let pushed_layers = pushed["Layers"].as_array().unwrap();
    assert_eq!(
        &pushed_layers[..5],
        base_layers.as_array().unwrap().as_slice(),
        "{pushed:#}"
    );
}
