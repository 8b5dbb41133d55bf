//! kaniko's executor subcommands besides the build: `login` (a registry's
//! credentials into `$DOCKER_CONFIG/config.json`) and `push` (an OCI
//! layout or docker archive an earlier build wrote, to registries); and
//! smelt's own `cache prune` (the layer cache's old entries deleted
//! through the registry API, `engine/cache/prune.rs`).

use super::flags::{LogFlags, RegistryFlags};
use super::{EXIT_BUILD, EXIT_OK, EXIT_USAGE};
use crate::image::manifest::{
    DOCKER_MANIFEST, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use crate::image::{BlobStore, Descriptor, Digest, HashingWriter, Manifest};
use crate::registry::{PushBlob, PushImage, Reference};
use base64::Engine;
use clap::{ArgAction, Args};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `login REGISTRY -u USER -p PASS | --password-stdin`.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct LoginFlags {
    /// The registry (host[:port]); docker.io is stored under Docker Hub's key.
    pub registry: String,
    /// Username for the registry.
    #[arg(short = 'u', long, default_value = "")]
    pub username: String,
    /// Password for the registry (prefer --password-stdin: a command line
    /// is visible to other processes).
    #[arg(short = 'p', long, default_value = "")]
    pub password: String,
    /// Read the password from stdin (one trailing newline is dropped).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub password_stdin: bool,
}

/// `push PATH -d DEST`.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct PushFlags {
    /// An OCI image layout (a directory, as --oci-layout-path writes) or a
    /// docker archive (a file, as --tar-path writes).
    pub path: PathBuf,
    /// Registry reference to push to; repeatable.
    #[arg(short = 'd', long = "destination", action = ArgAction::Append, required = true)]
    pub destinations: Vec<String>,
    /// Skip the check of push permissions (smelt checks none before pushing).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub skip_push_permission_check: bool,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Why `login` or `push` failed.
#[derive(Debug, thiserror::Error)]
enum SubError {
    #[error("username required")]
    NoUsername,
    #[error("a password must be supplied via --password or --password-stdin")]
    NoPassword,
    #[error("only one of --password or --password-stdin may be specified")]
    TwoPasswords,
    #[error("password is blank")]
    BlankPassword,
    #[error("reading the password from stdin: {0}")]
    Stdin(#[source] std::io::Error),
    #[error("{}: {source}", .path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a docker config file: {source}", .path.display())]
    ConfigJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: {message}", .path.display())]
    Image { path: PathBuf, message: String },
}

impl SubError {
    fn image(path: &Path, message: impl std::fmt::Display) -> SubError {
        SubError::Image {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// The docker config directory: `$DOCKER_CONFIG`, else `/kaniko/.docker`
/// for the executor image's binary, else `~/.docker`.
pub fn docker_config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if std::env::current_exe().is_ok_and(|p| p.starts_with("/kaniko")) {
        return PathBuf::from("/kaniko/.docker");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".docker")
}

/// `login`: stores the credentials; prints what it did, never the password.
pub fn login(f: &LoginFlags) -> i32 {
    match store_login(f, &docker_config_dir()) {
        Ok(path) => {
            println!("Login Succeeded ({} in {})", f.registry, path.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: login {}: {e}", f.registry);
            match e {
                SubError::Config { .. } | SubError::ConfigJson { .. } | SubError::Stdin(_) => {
                    EXIT_BUILD
                }
                _ => EXIT_USAGE,
            }
        }
    }
}

/// Merges `auths[registry]` into `dir/config.json` (created 0600 when
/// missing); every other entry and key is kept.
fn store_login(f: &LoginFlags, dir: &Path) -> Result<PathBuf, SubError> {
    if f.username.is_empty() {
        return Err(SubError::NoUsername);
    }
    let password = match (f.password.is_empty(), f.password_stdin) {
        (true, false) => return Err(SubError::NoPassword),
        (false, true) => return Err(SubError::TwoPasswords),
        (false, false) => f.password.clone(),
        (true, true) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
                .map_err(SubError::Stdin)?;
            let text = text.strip_suffix('\n').unwrap_or(&text);
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.is_empty() {
                return Err(SubError::BlankPassword);
            }
            text.to_string()
        }
    };
    let path = dir.join("config.json");
    let io = |source| SubError::Config {
        path: path.clone(),
        source,
    };
    let mut config: serde_json::Value = match fs_err::read(&path) {
        Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::json!({}),
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| SubError::ConfigJson {
            path: path.clone(),
            source,
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
        Err(e) => return Err(io(e)),
    };
    let key = match f.registry.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => "https://index.docker.io/v1/",
        other => other,
    };
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", f.username));
    let not_object = || SubError::Image {
        path: path.clone(),
        message: "not a docker config file: want a JSON object with an \"auths\" object".into(),
    };
    let auths = config
        .as_object_mut()
        .ok_or_else(not_object)?
        .entry("auths")
        .or_insert_with(|| serde_json::json!({}));
    auths
        .as_object_mut()
        .ok_or_else(not_object)?
        .insert(key.to_string(), serde_json::json!({ "auth": auth }));
    fs_err::create_dir_all(dir).map_err(io)?;
    // written whole beside it and renamed: a reader never sees half of it
    let tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(io)?;
    let bytes = serde_json::to_vec_pretty(&config).map_err(|e| io(e.into()))?;
    fs_err::write(tmp.path(), bytes).map_err(io)?;
    tmp.persist(&path).map_err(|e| io(e.error))?;
    Ok(path)
}

/// Starts the logger and makes the registry settings `registry` gives
/// (the `KANIKO_*` environment applied), or says why not and gives the
/// usage error's exit code.
fn start(log: &LogFlags, registry: &RegistryFlags) -> Result<crate::registry::Settings, i32> {
    let usage = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        EXIT_USAGE
    };
    let progress_bars = log.init().map_err(|e| usage(&e))?;
    let mut registry = registry.clone();
    registry.apply_env(false);
    super::registry_settings(&registry, progress_bars).map_err(|e| usage(&e))
}

/// `push`: reads the image at `f.path` and pushes it to every destination.
pub fn push(f: &PushFlags) -> i32 {
    let settings = match start(&f.log, &f.registry) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut destinations = Vec::new();
    for d in &f.destinations {
        match Reference::parse(d) {
            Ok(r) => destinations.push(r),
            Err(e) => {
                eprintln!("error: --destination {d}: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let work = match tempfile::Builder::new().prefix("smelt-push-").tempdir() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: creating a temporary directory: {e}");
            return EXIT_BUILD;
        }
    };
    let result = BlobStore::open(&work.path().join("blobs"))
        .map_err(|e| SubError::image(&f.path, e))
        .and_then(|store| Ok((load_image(&f.path, &store)?, store)));
    let (image, store) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: push: {e}");
            return EXIT_BUILD;
        }
    };
    let remote = crate::engine::remote::Remote::new(settings);
    match remote.push(&destinations, &image, &store) {
        Ok(digest) => {
            println!("{digest}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error pushing image: {e}");
            EXIT_BUILD
        }
    }
}

/// The image at `path` (an OCI layout directory or a docker archive) with
/// its blobs in `store`.
fn load_image(path: &Path, store: &BlobStore) -> Result<PushImage, SubError> {
    let meta = fs_err::metadata(path).map_err(|e| SubError::image(path, e))?;
    if meta.is_dir() {
        load_layout(path, store)
    } else {
        load_archive(path, store)
    }
}

/// The first image of an OCI layout's `index.json`, as written: the
/// manifest's bytes (and so its digest) are the ones pushed.
fn load_layout(dir: &Path, store: &BlobStore) -> Result<PushImage, SubError> {
    let err = |m: String| SubError::image(dir, m);
    let index: crate::image::manifest::Index = read_json(&dir.join("index.json"))
        .map_err(|e| err(format!("not an OCI image layout: {e}")))?;
    let entry = index
        .manifests
        .first()
        .ok_or_else(|| err("index.json names no image".into()))?;
    if entry.media_type != OCI_MANIFEST && entry.media_type != DOCKER_MANIFEST {
        return Err(err(format!(
            "index.json's first entry is a {}, not an image manifest",
            entry.media_type
        )));
    }
    let blob = |d: &Digest| dir.join("blobs").join(d.algorithm()).join(d.hex());
    let manifest_bytes = fs_err::read(blob(&entry.digest)).map_err(|e| err(e.to_string()))?;
    if Digest::sha256(&manifest_bytes) != entry.digest {
        return Err(err(format!(
            "manifest {} does not match its digest",
            entry.digest
        )));
    }
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| err(format!("manifest {}: {e}", entry.digest)))?;
    let mut blobs = Vec::new();
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        let from = blob(&d.digest);
        let to = store.path(&d.digest);
        if !to.exists() && fs_err::hard_link(&from, &to).is_err() {
            fs_err::copy(&from, &to).map_err(|e| err(format!("blob {}: {e}", d.digest)))?;
        }
        blobs.push(PushBlob {
            descriptor: d.clone(),
            source: None,
        });
    }
    Ok(PushImage {
        manifest_bytes,
        manifest_media_type: manifest.media_type,
        blobs,
    })
}

/// `cache prune`: the layer cache's subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Delete cache entries older than --older-than from the cache repository.
    Prune(Box<CachePruneFlags>),
}

/// `cache prune --cache-repo REPO [--older-than D] [--keep-last N] [--dry-run]`.
#[derive(Debug, Clone, Args)]
#[command(rename_all = "kebab-case")]
pub struct CachePruneFlags {
    /// The cache repository (registry/repository, as the build's --cache-repo).
    #[arg(long, required = true)]
    pub cache_repo: String,
    /// Delete entries stored longer ago than this: 168h, 7d, 2w, 30m
    /// (default: the build's --cache-ttl default, two weeks).
    #[arg(long, default_value = "336h")]
    pub older_than: String,
    /// Keep the newest N entries whatever their age.
    #[arg(long)]
    pub keep_last: Option<usize>,
    /// Report what would be deleted; delete nothing.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false", action = ArgAction::Set)]
    pub dry_run: bool,
    #[command(flatten)]
    pub log: LogFlags,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// `cache …`.
pub fn cache(command: &CacheCommand) -> i32 {
    match command {
        CacheCommand::Prune(f) => cache_prune(f),
    }
}

/// `cache prune`: prints each entry removed (or, with `--dry-run`, to be
/// removed) with its age, the manifests left alone, and the totals.
fn cache_prune(f: &CachePruneFlags) -> i32 {
    use crate::engine::cache::prune::{PruneOptions, parse_age, prune, show_age};
    use crate::registry::human_size;
    let mut settings = match start(&f.log, &f.registry) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // a prune reads and deletes in one repository: --insecure and
    // --skip-tls-verify cover both
    settings.insecure_pull |= settings.insecure_push;
    settings.skip_verify_pull |= settings.skip_verify_push;
    if f.cache_repo.starts_with("oci:") {
        eprintln!(
            "error: --cache-repo {}: cache prune works on a registry repository, not a local layout",
            f.cache_repo
        );
        return EXIT_USAGE;
    }
    let repo = match Reference::parse(&f.cache_repo) {
        Ok(r) if r.tag.is_none() && r.digest.is_none() => r,
        Ok(_) => {
            eprintln!(
                "error: --cache-repo {}: a cache repository has no tag or digest",
                f.cache_repo
            );
            return EXIT_USAGE;
        }
        Err(e) => {
            eprintln!("error: --cache-repo {}: {e}", f.cache_repo);
            return EXIT_USAGE;
        }
    };
    let Some(older_than) = parse_age(&f.older_than) else {
        eprintln!(
            "error: --older-than {}: not a duration (e.g. 168h, 7d, 2w, 30m)",
            f.older_than
        );
        return EXIT_USAGE;
    };
    let opts = PruneOptions {
        repo,
        older_than,
        keep_last: f.keep_last,
        dry_run: f.dry_run,
    };
    let report = match prune(settings, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cache prune {}: {e}", f.cache_repo);
            return EXIT_BUILD;
        }
    };
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for e in &report.removed {
        let (key, others) = e
            .tags
            .split_first()
            .map_or(("", &[][..]), |(k, o)| (k.as_str(), o));
        let also = if others.is_empty() {
            String::new()
        } else {
            format!(" (also tagged {})", others.join(", "))
        };
        println!(
            "{verb} {}:{key}{also}, stored {} ago",
            report.repo,
            show_age(e.age)
        );
    }
    for (tags, why) in &report.skipped {
        println!("left alone {}:{}: {why}", report.repo, tags.join(", "));
    }
    let done = if report.dry_run {
        "; a dry run: nothing was deleted"
    } else {
        ""
    };
    println!(
        "{verb} {} cache entr{} ({} kept, {} other manifest{} left alone): about {} freed once the registry garbage-collects{done}",
        report.removed.len(),
        if report.removed.len() == 1 {
            "y"
        } else {
            "ies"
        },
        report.kept,
        report.skipped.len(),
        if report.skipped.len() == 1 { "" } else { "s" },
        human_size(report.freed),
    );
    if report.removed.is_empty() && report.kept == 0 && !report.skipped.is_empty() {
        ::log::warn!(
            "{} holds no smelt cache entry: is it the cache repository?",
            report.repo
        );
    }
    match &report.error {
        Some(e) => {
            eprintln!("error: cache prune {}: {e}", f.cache_repo);
            EXIT_BUILD
        }
        None => EXIT_OK,
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, String> {
    let bytes = fs_err::read(path).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// A docker archive (`docker save`'s format, or smelt's `--tar-path`):
/// every file goes into `store` by digest as it is read, then
/// `manifest.json` says which are the config and the layers. The image
/// gets an OCI manifest (a compressed layer kept as it is, so smelt's own
/// archive pushes with the digest its build printed).
fn load_archive(path: &Path, store: &BlobStore) -> Result<PushImage, SubError> {
    let err = |m: String| SubError::image(path, m);
    let file = fs_err::File::open(path).map_err(|e| err(e.to_string()))?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    // entry name → (digest, size, first bytes)
    let mut files: BTreeMap<String, (Digest, u64, Vec<u8>)> = BTreeMap::new();
    let entries = tar
        .entries()
        .map_err(|e| err(format!("not a docker archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| err(format!("not a docker archive: {e}")))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry
            .path()
            .map_err(|e| err(e.to_string()))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let tmp = store.temp_file().map_err(|e| err(e.to_string()))?;
        let mut head = vec![0u8; 4];
        let mut writer = HashingWriter::new(std::io::BufWriter::new(tmp));
        let mut first = true;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = std::io::Read::read(&mut entry, &mut buf)
                .map_err(|e| err(format!("{name}: {e}")))?;
            if n == 0 {
                break;
            }
            if first {
                head = buf[..n.min(4)].to_vec();
                first = false;
            }
            std::io::Write::write_all(&mut writer, &buf[..n])
                .map_err(|e| err(format!("{name}: {e}")))?;
        }
        let (out, digest, size) = writer.finish();
        let tmp = out
            .into_inner()
            .map_err(|e| err(format!("{name}: {}", e.error())))?;
        if !store.path(&digest).exists() {
            store.commit(tmp, &digest).map_err(|e| err(e.to_string()))?;
        }
        files.insert(name, (digest, size, head));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        layers: Vec<String>,
    }
    let (manifest_digest, _, _) = files
        .get("manifest.json")
        .ok_or_else(|| err("not a docker archive: no manifest.json".into()))?;
    let entries: Vec<Entry> = read_json(&store.path(manifest_digest)).map_err(err)?;
    let entry = entries
        .first()
        .ok_or_else(|| err("manifest.json names no image".into()))?;
    let get = |name: &str| {
        files.get(name.trim_start_matches("./")).ok_or_else(|| {
            err(format!(
                "manifest.json names {name}, which is not in the archive"
            ))
        })
    };
    let (config_digest, config_size, _) = get(&entry.config)?;
    let mut layers = Vec::new();
    for name in &entry.layers {
        let (digest, size, head) = get(name)?;
        let media_type = if head.starts_with(&[0x1f, 0x8b]) {
            OCI_LAYER_GZIP
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            OCI_LAYER_ZSTD
        } else {
            OCI_LAYER_TAR
        };
        layers.push(Descriptor::new(media_type, digest.clone(), *size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.to_string(),
        config: Descriptor::new(OCI_CONFIG, config_digest.clone(), *config_size),
        layers,
        annotations: None,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| err(e.to_string()))?;
    let blobs = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .map(|d| PushBlob {
            descriptor: d.clone(),
            source: None,
        })
        .collect();
    Ok(PushImage {
        manifest_bytes,
        manifest_media_type: manifest.media_type,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_merges_into_the_config_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        fs_err::write(
            dir.path().join("config.json"),
            r#"{"auths":{"other.example":{"auth":"b3RoZXI6eA=="}},"credHelpers":{"gcr.io":"gcr"}}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let f = LoginFlags {
            registry: "docker.io".into(),
            username: "me".into(),
            password: "pw".into(),
            password_stdin: false,
        };
        let path = store_login(&f, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let v: serde_json::Value = read_json(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v["auths"]["https://index.docker.io/v1/"]["auth"],
            "bWU6cHc="
        );
        assert_eq!(v["auths"]["other.example"]["auth"], "b3RoZXI6eA==");
        assert_eq!(v["credHelpers"]["gcr.io"], "gcr");
        let refuse = |u: &str, p: &str, stdin: bool| {
            let f = LoginFlags {
                registry: "r.example".into(),
                username: u.into(),
                password: p.into(),
                password_stdin: stdin,
            };
            store_login(&f, dir.path()).err().map(|e| e.to_string())
        };
        assert_eq!(refuse("", "x", false).as_deref(), Some("username required"));
        assert_eq!(
            refuse("u", "", false).as_deref(),
            Some("a password must be supplied via --password or --password-stdin")
        );
        assert_eq!(
            refuse("u", "x", true).as_deref(),
            Some("only one of --password or --password-stdin may be specified")
        );
    }
}
