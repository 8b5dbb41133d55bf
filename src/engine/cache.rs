//! The layer cache in a registry (kaniko's `--cache`): a key per step,
//! one small image per key in the cache repository, tagged by the key.
//!
//! A step's key is sha256 over length-prefixed fields: the previous key
//! (the first builds on the base image's manifest digest), the instruction
//! after expansion, the build args and env it can see, the platform, the
//! USER/WORKDIR/SHELL it runs with, and for COPY/ADD a digest of the source
//! files: their names, type, mode, owner (a stage's; the context's become
//! root's), size, link target and content (blake3, computed in parallel and
//! reused between the steps of a build). Modification times are left out,
//! so a fresh checkout of the same files hits.
//!
//! An entry is an image with the step's one layer (none when the step
//! changed no file) whose manifest annotations carry what a lookup needs:
//! the layer's diff ID, the step's history entry, when it was stored (for
//! `--cache-ttl`) and the inputs of its key (to explain a later miss).
//!
//! This file owns what an entry is: it is made (`Cache::entry_image`),
//! uploaded (`Cache::upload`), looked up and read (`Cache::lookup`,
//! `parse_entry`) here; `remote.rs` only moves the bytes.

use super::context::SourceTree;
use super::options::{CacheOptions, stored_within};
use super::remote::{Remote, TagAnswers};
use super::{EngineError, Platform};
use crate::image::config::RootFs;
use crate::image::{
    BlobStore, BuiltImage, Descriptor, Digest, History, ImageConfig, Manifest, MediaTypes,
};
use crate::registry::{PushImage, Reference, RegistryError};
use rayon::prelude::*;
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The cache of one build.
#[derive(Debug)]
pub struct Cache {
    pub repo: Reference,
    pub opts: CacheOptions,
    /// Off once the cache registry failed to answer or the cache's time
    /// ran out: no more lookups or uploads this build (each would fail the
    /// same way, slowly).
    switch: CacheSwitch,
    /// How long the build has waited on cache traffic (lookups, hit
    /// layers, the uploads at the end), against `--cache-timeout`.
    waited: Mutex<std::time::Duration>,
    /// Content digests of files read for keys, by path; an entry counts
    /// while size, mtime, ctime and inode are unchanged.
    files: Mutex<HashMap<PathBuf, (FileStamp, [u8; 32])>>,
    /// `--cache-report`: a line per cacheable step.
    report: Mutex<Vec<serde_json::Value>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl FileStamp {
    fn of(m: &std::fs::Metadata) -> FileStamp {
        FileStamp {
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

/// A cache entry found in the registry, as its manifest tells it (one
/// request per lookup): the step's layer (none when the step changed no
/// file), its diff ID and history entry, when it was stored, and the
/// inputs of its key.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    pub source: Reference,
    pub layers: Vec<Descriptor>,
    pub diff_ids: Vec<Digest>,
    pub history: History,
    pub stored: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Turns a build's layer cache off, once, with one warning line; shared
/// with the threads that upload entries.
#[derive(Debug, Clone)]
pub struct CacheSwitch {
    repo: String,
    off: Arc<AtomicBool>,
}

impl CacheSwitch {
    pub fn is_on(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    pub fn turn_off(&self, why: &str) {
        if !self.off.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the layer cache at {} is off for the rest of this build: {why}",
                self.repo
            );
        }
    }
}

/// Builds one key: length-prefixed, named fields over the previous key.
#[derive(Debug)]
pub struct KeyHasher(Sha256);

impl KeyHasher {
    pub fn new(prev: &str) -> KeyHasher {
        let mut k = KeyHasher(Sha256::new());
        k.field("prev", prev.as_bytes());
        k
    }

    pub fn field(&mut self, name: &str, value: &[u8]) -> &mut Self {
        put(&mut self.0, name.as_bytes());
        put(&mut self.0, value);
        self
    }

    /// The key, as 64 hex digits (a valid tag).
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// Adds `part` to `h` with its length first, so no two sequences of parts
/// hash alike.
fn put(h: &mut Sha256, part: &[u8]) {
    h.update((part.len() as u64).to_be_bytes());
    h.update(part);
}

/// What a step's key covers besides the instruction: what it can see.
#[derive(Debug, Clone, Copy)]
pub struct StepView<'a> {
    pub instruction: &'a str,
    /// Build args with values and env, sorted by name.
    pub vars: &'a BTreeMap<String, String>,
    pub platform: &'a Platform,
    pub user: &'a str,
    pub workdir: &'a str,
    pub shell: &'a [String],
    /// COPY/ADD: the digest of the source files.
    pub sources: Option<&'a str>,
}

/// What a step's key was made of, kept in its entry (as labels) so a
/// later miss can say which input changed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyInputs {
    pub key: String,
    pub prev: String,
    pub instruction: String,
    /// sha256 of the args and env it sees.
    pub vars: String,
    pub platform: String,
    pub user: String,
    pub workdir: String,
    pub shell: String,
    /// COPY/ADD: the digest of the source files.
    pub sources: Option<String>,
}

const LABEL: &str = "dev.smelt.cache.";

impl KeyInputs {
    /// The inputs as fields: (name, value), the name as a report gives it.
    fn fields(&self) -> [(&'static str, Option<&str>); 7] {
        [
            ("instruction", Some(&self.instruction)),
            ("args and env", Some(&self.vars)),
            ("platform", Some(&self.platform)),
            ("user", Some(&self.user)),
            ("workdir", Some(&self.workdir)),
            ("shell", Some(&self.shell)),
            ("files", self.sources.as_deref()),
        ]
    }

    /// The inputs as entry labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.fields()
            .iter()
            .filter_map(|(name, v)| {
                v.map(|v| (format!("{LABEL}{}", name.replace(' ', "-")), v.to_string()))
            })
            .collect()
    }

    /// Which inputs differ from those an entry was stored with.
    pub fn changed_from(&self, labels: &BTreeMap<String, String>) -> Vec<&'static str> {
        self.fields()
            .iter()
            .filter(|(name, v)| {
                labels
                    .get(&format!("{LABEL}{}", name.replace(' ', "-")))
                    .map(String::as_str)
                    != *v
            })
            .map(|(name, _)| *name)
            .collect()
    }

    /// The tag under which the newest entry after `prev` is also stored.
    pub fn next_tag(prev: &str) -> String {
        format!("next-{prev}")
    }
}

/// The key of a step after `prev`, with what it was made of.
pub fn step_key(prev: &str, view: &StepView<'_>) -> KeyInputs {
    let mut vars = Sha256::new();
    for (name, value) in view.vars {
        put(&mut vars, name.as_bytes());
        put(&mut vars, value.as_bytes());
    }
    let mut inputs = KeyInputs {
        key: String::new(),
        prev: prev.to_string(),
        instruction: view.instruction.to_string(),
        vars: hex::encode(vars.finalize()),
        platform: view.platform.to_string(),
        user: view.user.to_string(),
        workdir: view.workdir.to_string(),
        shell: view.shell.join(" "),
        sources: view.sources.map(str::to_string),
    };
    let mut k = KeyHasher::new(prev);
    for (name, value) in inputs.fields() {
        if let Some(v) = value {
            k.field(name, v.as_bytes());
        }
    }
    inputs.key = k.finish();
    inputs
}

/// The key a stage starts from.
pub fn base_key(base: &str) -> String {
    let mut k = KeyHasher::new("");
    k.field("base", base.as_bytes());
    k.finish()
}

/// One entry of a source tree, for its digest.
struct TreeEntry {
    name: String,
    meta: String,
    /// A regular file: where it is, and its metadata when walked.
    file: Option<(PathBuf, FileStamp)>,
}

impl Cache {
    pub fn new(opts: CacheOptions) -> Result<Cache, EngineError> {
        let repo = Reference::parse(&opts.repo).map_err(EngineError::Invalid)?;
        Ok(Cache {
            repo: repo.clone(),
            opts,
            switch: CacheSwitch {
                repo: repo.to_string(),
                off: Arc::new(AtomicBool::new(false)),
            },
            waited: Mutex::new(std::time::Duration::ZERO),
            files: Mutex::new(HashMap::new()),
            report: Mutex::new(Vec::new()),
        })
    }

    /// Whether misses are explained (a report, or `--verbosity debug`):
    /// the newest entry after the same previous key is fetched and its
    /// inputs compared.
    pub fn explains(&self) -> bool {
        self.opts.report.is_some() || log::log_enabled!(log::Level::Debug)
    }

    /// Adds a step to the report.
    pub fn record(&self, line: serde_json::Value) {
        if self.opts.report.is_some() {
            self.report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line);
        }
    }

    /// Writes `--cache-report`.
    pub fn write_report(&self) {
        let Some(path) = &self.opts.report else {
            return;
        };
        let steps = std::mem::take(
            &mut *self
                .report
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let doc = serde_json::json!({ "cache": self.repo.to_string(), "steps": steps });
        let written = serde_json::to_vec_pretty(&doc)
            .map_err(std::io::Error::other)
            .and_then(|bytes| fs_err::write(path, bytes));
        if let Err(e) = written {
            log::warn!("writing the cache report {}: {e}", path.display());
        }
    }

    /// Whether the cache registry still answers.
    pub fn usable(&self) -> bool {
        self.switch.is_on()
    }

    /// Turns the cache off for the rest of the build.
    pub fn give_up(&self, why: &str) {
        self.switch.turn_off(why);
    }

    /// What turns the cache off, for a cache upload's thread.
    pub fn switch(&self) -> CacheSwitch {
        self.switch.clone()
    }

    /// Runs `op`, a cache operation the build waits for, with what is left
    /// of `--cache-timeout` (`None`, and the cache is turned off, when
    /// nothing is), and counts the time it took.
    pub fn waiting<T>(&self, op: impl FnOnce(std::time::Duration) -> T) -> Option<T> {
        let left = {
            let waited = self
                .waited
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.opts.timeout.saturating_sub(*waited)
        };
        if left.is_zero() {
            self.give_up("the layer cache's time (--cache-timeout) ran out");
            return None;
        }
        let started = std::time::Instant::now();
        let out = op(left);
        *self
            .waited
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) += started.elapsed();
        Some(out)
    }

    /// Looks `tags` (keys, or `next-` tags) up in the cache repository,
    /// 8 at a time, within `limit`. Each answer: an entry, `None` (no such
    /// tag), or what went wrong (a malformed entry too). The layers of the
    /// entries found are remembered as in the cache repository, for the
    /// push to mount.
    pub fn lookup(
        &self,
        remote: &Remote,
        tags: &[String],
        limit: std::time::Duration,
    ) -> Result<TagAnswers<CacheEntry>, EngineError> {
        let manifests = remote.cache_manifests(&self.repo, tags, limit)?;
        let answers: TagAnswers<CacheEntry> = manifests
            .into_iter()
            .zip(tags)
            .map(|(answer, tag)| {
                let r = Reference {
                    tag: Some(tag.clone()),
                    ..self.repo.clone()
                };
                answer.and_then(|bytes| bytes.map(|b| parse_entry(&r, &b)).transpose())
            })
            .collect();
        for e in answers.iter().flatten().flatten() {
            remote.remember(&e.layers, &e.source);
        }
        Ok(answers)
    }

    /// Starts uploading an entry (`entry_image`), tagged with each of
    /// `tags` (the key first), in the background; an upload that times
    /// out turns the cache off.
    pub fn upload(
        &self,
        remote: &Remote,
        tags: &[String],
        image: PushImage,
        store: &BlobStore,
    ) -> Result<(), EngineError> {
        let switch = self.switch.clone();
        remote.cache_upload(&self.repo, tags, image, store, move |why| {
            switch.turn_off(why);
        })
    }

    /// Waits for the uploads, at most `limit` (then turns the cache off);
    /// returns how many succeeded.
    pub fn wait_uploads(&self, remote: &Remote, limit: std::time::Duration) -> usize {
        remote.wait_uploads(&self.repo, limit, &|why| self.switch.turn_off(why))
    }

    /// Whether an entry is younger than `--cache-ttl`.
    pub fn fresh(&self, entry: &CacheEntry) -> bool {
        entry
            .stored
            .as_deref()
            .is_some_and(|stored| stored_within(stored, self.opts.ttl))
    }

    /// The digest of what `sources` match in `tree`: every entry's name
    /// (as it lands under the destination), type, mode, owner (a stage's
    /// only), size, link target and content.
    pub fn sources_digest(&self, tree: &SourceTree, sources: &[String]) -> Result<String, String> {
        let mut entries = Vec::new();
        for source in sources {
            // a glob matching nothing next to other sources is skipped (the
            // step itself fails when nothing at all matches)
            for m in tree.expand_allow_empty(source)? {
                let name = crate::lexpath::base_name(&m.name).to_string();
                collect(tree, &m.real, &name, &mut entries)?;
            }
        }
        let contents: Vec<Option<[u8; 32]>> = entries
            .par_iter()
            .map(|e| {
                e.file
                    .as_ref()
                    .map(|(p, stamp)| self.file_digest(p, *stamp))
                    .transpose()
            })
            .collect::<Result<_, String>>()?;
        let mut h = Sha256::new();
        for (e, content) in entries.iter().zip(contents) {
            put(&mut h, e.name.as_bytes());
            put(&mut h, e.meta.as_bytes());
            h.update(content.unwrap_or([0; 32]));
        }
        Ok(hex::encode(h.finalize()))
    }

    /// The blake3 of the file at `path`, whose metadata `stamp` the walk
    /// read; reused while the stamp is unchanged.
    fn file_digest(&self, path: &Path, stamp: FileStamp) -> Result<[u8; 32], String> {
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        if let Some((s, d)) = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(path)
            && *s == stamp
        {
            return Ok(*d);
        }
        let mut hasher = blake3::Hasher::new();
        hasher
            .update_reader(fs_err::File::open(path).map_err(err)?)
            .map_err(err)?;
        let digest = *hasher.finalize().as_bytes();
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(path.to_path_buf(), (stamp, digest));
        Ok(digest)
    }

    /// The image that stores a step's result under its key: `layer` (with
    /// its diff ID) if the step made one, and its history entry.
    pub fn entry_image(
        &self,
        store: &BlobStore,
        platform: &Platform,
        layer: Option<(Descriptor, Digest)>,
        history: History,
        inputs: &KeyInputs,
    ) -> Result<PushImage, EngineError> {
        let (layers, diff_ids) = match layer {
            Some((d, diff)) => (vec![d], vec![diff]),
            None => (Vec::new(), Vec::new()),
        };
        let stored = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second())
            .map_err(|e| EngineError::Invalid(e.to_string()))?
            .to_string();
        // the manifest tells a lookup everything (one request); the config
        // says the same for other tools
        let mut annotations = inputs.labels();
        annotations.insert(format!("{LABEL}stored"), stored.clone());
        annotations.insert(
            format!("{LABEL}history"),
            serde_json::to_string(&history).map_err(std::io::Error::other)?,
        );
        if let Some(diff) = diff_ids.first() {
            annotations.insert(format!("{LABEL}diff-id"), diff.to_string());
        }
        let mut config = ImageConfig {
            created: Some(stored),
            architecture: platform.arch.clone(),
            os: platform.os.clone(),
            variant: platform.variant.clone(),
            rootfs: RootFs {
                diff_ids,
                ..RootFs::default()
            },
            history: vec![history],
            ..ImageConfig::default()
        };
        config.config.labels = Some(inputs.labels());
        let image =
            BuiltImage::assemble(store, &config, layers, MediaTypes::Oci, Some(annotations))?;
        // the step's layer was made in this build: nowhere else holds it
        Ok(PushImage::of(&image, |_| None))
    }
}

/// Reads a cache entry from its manifest.
pub fn parse_entry(r: &Reference, bytes: &[u8]) -> Result<CacheEntry, RegistryError> {
    let bad = |message: String| RegistryError::Invalid {
        what: r.to_string(),
        message,
    };
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("the cache entry's manifest is malformed: {e}")))?;
    let annotations = manifest.annotations.unwrap_or_default();
    let history = annotations
        .get(&format!("{LABEL}history"))
        .and_then(|h| serde_json::from_str::<History>(h).ok())
        .ok_or_else(|| bad("the cache entry has no history (not made by smelt?)".to_string()))?;
    let diff_ids = match annotations.get(&format!("{LABEL}diff-id")) {
        Some(d) => vec![Digest::parse(d).map_err(bad)?],
        None => Vec::new(),
    };
    if diff_ids.len() != manifest.layers.len() {
        return Err(bad(
            "the cache entry should hold at most one layer, with its diff ID".to_string(),
        ));
    }
    Ok(CacheEntry {
        source: r.clone(),
        layers: manifest
            .layers
            .iter()
            .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
            .collect(),
        diff_ids,
        history,
        stored: annotations.get(&format!("{LABEL}stored")).cloned(),
        annotations,
    })
}

/// Adds the tree at `real` (named `name`) to `out`, children sorted,
/// leaving out what `.dockerignore` excludes as COPY does.
fn collect(
    tree: &SourceTree,
    real: &str,
    name: &str,
    out: &mut Vec<TreeEntry>,
) -> Result<(), String> {
    let path = tree.path(real);
    let meta = fs_err::symlink_metadata(&path).map_err(|e| e.to_string())?;
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else {
        'o'
    };
    let owner = if tree.keep_owner {
        format!("{}:{}", meta.uid(), meta.gid())
    } else {
        String::new()
    };
    let link = if ft.is_symlink() {
        crate::lexpath::from_os(
            fs_err::read_link(&path)
                .map_err(|e| e.to_string())?
                .as_os_str(),
        )
    } else {
        String::new()
    };
    let size = if ft.is_file() { meta.size() } else { 0 };
    out.push(TreeEntry {
        name: name.to_string(),
        meta: format!(
            "{kind} {:o} {owner} {size} {} {link}",
            meta.mode() & 0o7777,
            meta.rdev()
        ),
        file: ft.is_file().then(|| (path, FileStamp::of(&meta))),
    });
    if !ft.is_dir() {
        return Ok(());
    }
    // the entries' own types (no stat each), as COPY reads them
    let mut children: Vec<(String, bool)> = fs_err::read_dir(tree.path(real))
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            (crate::lexpath::from_os(&e.file_name()), is_dir)
        })
        .collect();
    children.sort();
    for (child, is_dir) in children {
        let child_real = crate::lexpath::child(real, &child);
        if tree.is_excluded(&child_real) && !(is_dir && tree.may_include_below()) {
            continue;
        }
        collect(tree, &child_real, &crate::lexpath::child(name, &child), out)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Cache {
        Cache::new(CacheOptions {
            repo: "127.0.0.1:5000/cache".to_string(),
            ttl: std::time::Duration::from_secs(3600),
            run_layers: true,
            copy_layers: true,
            push: true,
            report: None,
            request_timeout: std::time::Duration::from_secs(10),
            timeout: std::time::Duration::from_secs(60),
        })
        .unwrap()
    }

    #[test]
    fn source_digests_follow_content_and_metadata_not_mtimes() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().to_path_buf();
        fs_err::create_dir_all(root.join("app/sub")).unwrap();
        fs_err::write(root.join("app/a.txt"), "a").unwrap();
        fs_err::write(root.join("app/sub/b.txt"), "b").unwrap();
        fs_err::write(root.join("other"), "o").unwrap();
        let tree = SourceTree::context(root.clone(), Default::default());
        let c = cache();
        let sources = ["app".to_string()];
        let first = c.sources_digest(&tree, &sources).unwrap();
        // a new mtime alone: same digest
        filetime::set_file_mtime(
            root.join("app/a.txt"),
            filetime::FileTime::from_unix_time(5, 0),
        )
        .unwrap();
        assert_eq!(c.sources_digest(&tree, &sources).unwrap(), first);
        // a file outside the sources: same digest
        fs_err::write(root.join("other"), "changed").unwrap();
        assert_eq!(c.sources_digest(&tree, &sources).unwrap(), first);
        // content, mode, a new file: new digests
        fs_err::write(root.join("app/sub/b.txt"), "B").unwrap();
        let second = c.sources_digest(&tree, &sources).unwrap();
        assert_ne!(second, first);
        use std::os::unix::fs::PermissionsExt;
        fs_err::set_permissions(
            root.join("app/a.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let third = c.sources_digest(&tree, &sources).unwrap();
        assert_ne!(third, second);
        fs_err::write(root.join("app/new"), "").unwrap();
        assert_ne!(c.sources_digest(&tree, &sources).unwrap(), third);
    }

    #[test]
    fn keys_change_with_every_field() {
        let vars = BTreeMap::from([("A".to_string(), "1".to_string())]);
        let platform = Platform::parse("linux/amd64").unwrap();
        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        let view = StepView {
            instruction: "RUN make",
            vars: &vars,
            platform: &platform,
            user: "",
            workdir: "/",
            shell: &shell,
            sources: None,
        };
        let k = step_key("prev", &view).key;
        assert_eq!(k.len(), 64);
        assert_eq!(k, step_key("prev", &view).key);
        assert_ne!(k, step_key("other", &view).key);
        let vars2 = BTreeMap::from([("A".to_string(), "2".to_string())]);
        for changed in [
            StepView {
                instruction: "RUN make all",
                ..view
            },
            StepView {
                vars: &vars2,
                ..view
            },
            StepView {
                user: "app",
                ..view
            },
            StepView {
                workdir: "/src",
                ..view
            },
            StepView {
                sources: Some("x"),
                ..view
            },
        ] {
            assert_ne!(step_key("prev", &changed).key, k);
        }
        // an entry's labels say which input changed
        let stored = step_key("prev", &view).labels();
        let now = step_key(
            "prev",
            &StepView {
                vars: &vars2,
                user: "app",
                ..view
            },
        );
        assert_eq!(now.changed_from(&stored), ["args and env", "user"]);
    }

    #[test]
    fn an_entry_reads_back_what_entry_image_stored() {
        let t = tempfile::tempdir().unwrap();
        let store = BlobStore::open(t.path()).unwrap();
        let platform = Platform::parse("linux/amd64").unwrap();
        let vars = BTreeMap::new();
        let shell = ["/bin/sh".to_string(), "-c".to_string()];
        let inputs = step_key(
            "prev",
            &StepView {
                instruction: "RUN make",
                vars: &vars,
                platform: &platform,
                user: "",
                workdir: "/",
                shell: &shell,
                sources: None,
            },
        );
        let history = History {
            created_by: Some("RUN make # buildkit".to_string()),
            ..History::default()
        };
        let bytes = b"a layer";
        let layer = Descriptor::new(
            crate::image::manifest::OCI_LAYER_GZIP,
            store.put(bytes).unwrap(),
            bytes.len() as u64,
        );
        let diff_id = Digest::parse(&format!("sha256:{}", "ab".repeat(32))).unwrap();
        let r = Reference::parse(&format!("127.0.0.1:5000/cache:{}", inputs.key)).unwrap();
        let c = cache();

        let image = c
            .entry_image(
                &store,
                &platform,
                Some((layer.clone(), diff_id.clone())),
                history.clone(),
                &inputs,
            )
            .unwrap();
        let entry = parse_entry(&r, &image.manifest_bytes).unwrap();
        assert_eq!(entry.source, r);
        assert_eq!(entry.layers, std::slice::from_ref(&layer));
        assert_eq!(entry.diff_ids, std::slice::from_ref(&diff_id));
        assert_eq!(entry.history, history);
        assert!(c.fresh(&entry), "{:?}", entry.stored);
        assert!(inputs.changed_from(&entry.annotations).is_empty());

        // a step that changed no file: no layer
        let image = c
            .entry_image(&store, &platform, None, history.clone(), &inputs)
            .unwrap();
        let entry = parse_entry(&r, &image.manifest_bytes).unwrap();
        assert!(entry.layers.is_empty() && entry.diff_ids.is_empty());

        // what smelt did not write, or not whole, is refused naming the entry
        let err = |bytes: &[u8]| parse_entry(&r, bytes).unwrap_err().to_string();
        assert!(err(b"not json").contains("malformed"));
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest_bytes).unwrap();
        manifest["annotations"] = serde_json::json!({});
        let e = err(&serde_json::to_vec(&manifest).unwrap());
        assert!(e.contains("no history") && e.contains(&inputs.key), "{e}");
        let with_layer = c
            .entry_image(&store, &platform, Some((layer, diff_id)), history, &inputs)
            .unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&with_layer.manifest_bytes).unwrap();
        manifest["annotations"]
            .as_object_mut()
            .unwrap()
            .remove(&format!("{LABEL}diff-id"));
        assert!(err(&serde_json::to_vec(&manifest).unwrap()).contains("at most one layer"));
    }
}
