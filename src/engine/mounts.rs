//! `RUN --mount`: each flag's value parsed with BuildKit's grammar
//! (frontend/dockerfile/instructions/commands_runmount.go) into a
//! [`Mount`], and the mounts of one RUN prepared on the host
//! ([`prepare`]) into what the sandbox binds ([`sandbox::RunMount`]).
//!
//! - `type=bind` (the default): the source (the build context, with
//!   `.dockerignore` applied, or the stage or image `from` names),
//!   read-only unless `rw`. Read-only, it is bound itself (resolved
//!   beneath its tree by the sandbox) when nothing of it is ignored, else
//!   a tree of hard links to what is left; `rw` (and in place, and for
//!   `--security=insecure`) it is a copy in a scratch directory of the
//!   build, so what a RUN writes there is thrown away with it. A file the
//!   context ignores is never visible.
//! - `type=cache`: a directory per (id, uid, gid, mode, from, source)
//!   under the cache directory (`<kaniko-dir>/caches` unless
//!   `--cache-mount-dir`), which outlives the build; a lock file beside
//!   it is `flock`ed shared (`sharing=shared`), exclusively, waiting
//!   (`locked`), or exclusively without waiting, a fresh temporary
//!   directory standing in when it is taken (`private`). With `--cache`
//!   a cache made here is first filled from the cache repository
//!   ([`SharedCaches`], `cache/mounts.rs`), and each one held is reported
//!   there so that what changed is saved when the build ends.
//! - `type=tmpfs`: a tmpfs of `size` bytes (the kernel's default without).
//! - `type=secret` and `type=ssh` are parsed; preparing them is refused
//!   until the secrets module provides their sources.
//!
//! This module never mounts anything (the sandbox does) and never writes
//! into the build root.

use super::context::SourceTree;
use super::copy::{self, CopyJob};
use super::sandbox::{MountSource, RunMount};
use crate::lexpath;
use std::path::{Path, PathBuf};

/// Why a `--mount` value is wrong, or its mount cannot be prepared. The
/// parse errors are BuildKit's texts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MountError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(String),
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyForType { key: String, kind: &'static str },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey { key: String, field: String },
    #[error("unsupported mount type {0:?}")]
    UnknownType(String),
    #[error("unsupported sharing value {0:?}")]
    UnknownSharing(String),
    #[error("invalid value for {key}: {value}")]
    Value { key: String, value: String },
    #[error("invalid value {value} for {key}")]
    Number { key: &'static str, value: String },
    #[error("{what} not allowed for {kind:?} type mounts")]
    NotAllowed {
        what: &'static str,
        kind: &'static str,
    },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretNeeds,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
    #[error("invalid mount target {0:?}")]
    Target(String),
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    /// A variable in a value could not be expanded.
    #[error("{0}")]
    Expand(String),
    #[error("--mount from={from}: not a stage or image this build prepared")]
    NotPrepared { from: String },
    /// A secret that cannot be read (`SecretError`'s text: the id and
    /// where it was to come from, never the value).
    #[error("{0}")]
    Secret(String),
    #[error(
        "secret {0}: not found (give it with --secret id={0},src=FILE or --secret id={0},env=VAR)"
    )]
    SecretMissing(String),
    #[error(
        "no SSH key {0:?} forwarded from the client (give it with --ssh {0}=SOCKET, or --ssh default)"
    )]
    SshMissing(String),
    #[error("--mount target {target}: {source_path} in the {tree}: {message}")]
    Copy {
        target: String,
        source_path: String,
        tree: String,
        message: String,
    },
    #[error("cache mount {id}: {path}: {message}")]
    Cache {
        id: String,
        path: String,
        message: String,
    },
    #[error("--mount target {target}: {path}: {message}")]
    Scratch {
        target: String,
        path: String,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    #[default]
    Shared,
    Private,
    Locked,
}

/// One `--mount` flag, its values expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: Option<String>,
    /// As written (may be relative to the working directory, or empty).
    pub target: String,
    pub read_only: bool,
    /// `type=tmpfs,size=`: bytes.
    pub size: Option<u64>,
    pub id: Option<String>,
    /// `sharing=` as given (`None`: shared).
    pub sharing: Option<Sharing>,
    pub required: bool,
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// The keys BuildKit knows (its suggestions come from this list).
const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Splits a CSV record (Go's encoding/csv rules: fields separated by
/// commas, a field in double quotes may hold commas, `""` is a quote).
fn csv_fields(value: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = value.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => {
                        return Err(MountError::Csv(format!(
                            "extraneous or missing \" in quoted-field: {value}"
                        )));
                    }
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(MountError::Csv(format!(
                        "extraneous or missing \" in quoted-field: {value}"
                    )));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => {
                        return Err(MountError::Csv(format!(
                            "bare \" in non-quoted-field: {value}"
                        )));
                    }
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(key: &str, value: &str) -> Result<bool, MountError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(MountError::Value {
            key: key.to_string(),
            value: value.to_string(),
        }),
    }
}

/// docker's `units.RAMInBytes`: a number (decimals allowed) with an
/// optional binary unit (`k`, `m`, `g`, `t`, `p`; `i` and `b` allowed).
pub(crate) fn ram_in_bytes(value: &str) -> Option<u64> {
    let s = value.trim_end_matches(['b', 'B']);
    let s = s.strip_suffix(['i', 'I']).unwrap_or(s);
    let (num, unit) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], Some(c.to_ascii_lowercase())),
        _ => (s, None),
    };
    let num = num.trim_end_matches(' ');
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        None => 1.0,
        Some('k') => 1024.0,
        Some('m') => 1024.0 * 1024.0,
        Some('g') => 1024.0f64.powi(3),
        Some('t') => 1024.0f64.powi(4),
        Some('p') => 1024.0f64.powi(5),
        Some(_) => return None,
    };
    // a size: truncated as Go's int64 conversion does
    Some((n * mult) as u64)
}

fn number(key: &'static str, value: &str, radix: u32) -> Result<u32, MountError> {
    u32::from_str_radix(value, radix).map_err(|_| MountError::Number {
        key,
        value: value.to_string(),
    })
}

/// Parses one `--mount` value, expanding each `key=value`'s value with
/// `expand` (BuildKit expands the values, never the keys or bare words).
pub fn parse(
    value: &str,
    expand: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Mount, MountError> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: String::new(),
        read_only: false,
        size: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    let secretish = |k: MountType| matches!(k, MountType::Secret | MountType::Ssh);
    for field in csv_fields(value)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => m.read_only = true,
                "readwrite" | "rw" => m.read_only = false,
                "required" if secretish(m.kind) => m.required = true,
                "required" => {
                    return Err(MountError::KeyForType {
                        key,
                        kind: m.kind.name(),
                    });
                }
                _ => return Err(MountError::NotKeyValue(field.clone())),
            }
            if key != "required" {
                ro_auto = false;
            }
            continue;
        };
        let value = expand(value).map_err(MountError::Expand)?;
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(MountError::UnknownType(value)),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = value,
            "readonly" | "ro" => {
                m.read_only = parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !parse_bool(&key, &value)?;
                ro_auto = false;
            }
            "required" if secretish(m.kind) => m.required = parse_bool(&key, &value)?,
            "size" if m.kind == MountType::Tmpfs => {
                m.size = Some(ram_in_bytes(&value).ok_or(MountError::Value { key, value })?);
            }
            "required" | "size" => {
                return Err(MountError::KeyForType {
                    key,
                    kind: m.kind.name(),
                });
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountError::UnknownSharing(value)),
                });
            }
            "mode" => m.mode = Some(number("mode", &value, 8)?),
            "uid" => m.uid = Some(number("uid", &value, 10)?),
            "gid" => m.gid = Some(number("gid", &value, 10)?),
            "env" => m.env = Some(value),
            _ => {
                debug_assert!(!KEYS.contains(&key.as_str()));
                return Err(MountError::UnknownKey {
                    key,
                    field: field.clone(),
                });
            }
        }
    }
    let file_info = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info {
        for (what, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::NotAllowed {
                    what,
                    kind: m.kind.name(),
                });
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(MountError::SecretFrom);
        }
        if m.sharing.is_some() {
            return Err(MountError::SecretSharing);
        }
        if m.source.is_none() && m.target.is_empty() && m.id.is_none() {
            return Err(MountError::SecretNeeds);
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(MountError::SecretSourceAndId);
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(m.kind.name()));
    }
    Ok(m)
}

/// Judges a `--mount` value as written, as BuildKit's parser does before
/// anything is built: a `from=` with a variable is refused, and a value
/// without variables must parse (one with them is judged when its step
/// runs, expanded).
pub fn check_as_written(value: &str) -> Result<(), MountError> {
    if let Some(from) = from_as_written(value)
        && from.find('$').is_some_and(|i| i != from.len() - 1)
    {
        return Err(MountError::FromVariable);
    }
    if value.contains('$') {
        return Ok(());
    }
    parse(value, &mut |v| Ok(v.to_string())).map(drop)
}

/// The `from=` of a `--mount` value as written, if any (the plan resolves
/// it like `COPY --from`).
pub fn from_as_written(value: &str) -> Option<String> {
    let fields = csv_fields(value).ok()?;
    fields.iter().rev().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        k.eq_ignore_ascii_case("from").then(|| v.to_string())
    })
}

/// The `target=` (or `dst=`, `destination=`) of a `--mount` value as
/// written, if any.
pub fn target_as_written(value: &str) -> Option<String> {
    let fields = csv_fields(value).ok()?;
    fields.iter().rev().find_map(|f| {
        let (k, v) = f.split_once('=')?;
        matches!(
            k.to_ascii_lowercase().as_str(),
            "target" | "dst" | "destination"
        )
        .then(|| v.to_string())
    })
}

impl Mount {
    /// The absolute target in the root: relative to `workdir` when not
    /// absolute, cleaned; `/` is refused as BuildKit refuses it.
    pub fn target_in(&self, workdir: &str) -> Result<String, MountError> {
        let target = lexpath::join(&lexpath::join("/", workdir), &self.target);
        if target == "/" {
            return Err(MountError::Target(target));
        }
        Ok(target)
    }

    /// A cache mount's id: `id=`, else the target cleaned (BuildKit's
    /// `path.Clean(target)`).
    pub fn cache_id(&self) -> String {
        match &self.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => lexpath::clean(&self.target),
        }
    }

    /// What the step's cache key sees of this mount besides a bind's
    /// content: its type and options (never a cache's contents).
    pub fn key_text(&self, target: &str) -> String {
        let mut s = format!("type={},target={target}", self.kind.name());
        if self.read_only {
            s.push_str(",ro");
        }
        for (k, v) in [
            ("from", &self.from),
            ("source", &self.source),
            ("env", &self.env),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(",{k}={v}"));
            }
        }
        match self.kind {
            MountType::Cache => {
                s.push_str(&format!(",id={}", self.cache_id()));
                if let Some(sh) = self.sharing {
                    s.push_str(&format!(",sharing={sh:?}"));
                }
            }
            // the name of a secret or agent, never what it holds
            MountType::Secret | MountType::Ssh => {
                if let Some(id) = &self.id {
                    s.push_str(&format!(",id={id}"));
                }
                if self.required {
                    s.push_str(",required");
                }
            }
            MountType::Bind | MountType::Tmpfs => {}
        }
        for (k, v) in [("mode", self.mode), ("uid", self.uid), ("gid", self.gid)] {
            if let Some(v) = v {
                s.push_str(&format!(",{k}={v}"));
            }
        }
        if let Some(size) = self.size {
            s.push_str(&format!(",size={size}"));
        }
        s
    }
}

/// What preparing a RUN's mounts needs from the build.
#[derive(Debug)]
pub struct MountEnv<'a> {
    /// Where cache mounts live (`--cache-mount-dir`, else
    /// `<kaniko-dir>/caches`); kept between builds.
    pub caches: &'a Path,
    /// A directory of this build for bind copies and private caches.
    pub scratch: &'a Path,
    pub now: i64,
    /// What `--secret` and `--ssh` gave.
    pub secrets: &'a crate::engine::secrets::Secrets,
    /// Binds are always copies: in place (the command's own mount
    /// namespace is made between fork and exec, where nothing can be
    /// resolved beneath a root, or the contents are swapped in), and for
    /// `RUN --security=insecure`, whose CAP_SYS_ADMIN could remount a
    /// read-only bind writable.
    pub copies_only: bool,
    /// `--cache`: where cache mounts are kept beyond this runner.
    pub shared: Option<&'a dyn SharedCaches>,
}

/// A cache mount as it is known beyond this runner: what BuildKit makes a
/// cache of its own (id, `from`, `source`, owner and mode), and the lock
/// file of its directory here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheMountInfo {
    pub id: String,
    pub from: Option<String>,
    pub source: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The directory's lock file (`flock`ed as `sharing` says).
    pub lock: PathBuf,
}

/// Cache mounts kept beyond this runner (`--cache`: in the cache
/// repository, `cache/mounts.rs`).
pub trait SharedCaches: std::fmt::Debug {
    /// Fills `dir`, a cache directory just made here (its owner, mode and
    /// `from`/`source` contents set), with the contents saved elsewhere;
    /// whether there were any. An error leaves `dir` in any state (it is
    /// made again); it is a warning, never a failed RUN.
    fn restore(&self, cache: &CacheMountInfo, dir: &Path) -> Result<bool, String>;
    /// `dir` (the cache's own directory, locked) is used by a RUN of this
    /// build.
    fn used(&self, cache: &CacheMountInfo, dir: &Path);
}

/// The mounts of one RUN, ready for the sandbox, and what keeps them
/// valid until the RUN ends (cache locks, scratch copies): drop it after.
#[derive(Debug, Default)]
pub struct Prepared {
    pub mounts: Vec<RunMount>,
    /// Variables the RUN's environment gets from its mounts (a secret's
    /// `env=`), after the step's own.
    pub env: Vec<(String, String)>,
    /// The sockets forwarding to SSH agents, closed when dropped (before
    /// the directories holding them go).
    _agents: Vec<crate::engine::secrets::AgentProxy>,
    /// Scratch directories, removed when dropped.
    _dirs: Vec<tempfile::TempDir>,
    /// Locked cache lock files, unlocked when dropped (closing them).
    _locks: Vec<fs_err::File>,
    /// `SSH_AUTH_SOCK` for the RUN when its own environment has none: the
    /// first ssh mount's target, as BuildKit sets it.
    pub ssh_auth_sock: Option<String>,
    /// The caches this RUN holds, by directory: a second mount of one
    /// shares the first's lock (a second `flock` would wait for it).
    held: Vec<PathBuf>,
}

/// Prepares `mounts` (targets resolved against `workdir`); `tree` finds
/// the tree a `from=` names (`None`: the build context).
pub fn prepare(
    mounts: &[Mount],
    workdir: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    env: &MountEnv<'_>,
) -> Result<Prepared, MountError> {
    let mut prepared = Prepared::default();
    let mut agents = 0;
    for m in mounts {
        match m.kind {
            MountType::Secret => {
                prepare_secret(m, workdir, env, &mut prepared)?;
                continue;
            }
            MountType::Ssh => {
                prepare_ssh(m, agents, workdir, env, &mut prepared)?;
                agents += 1;
                continue;
            }
            _ => {}
        }
        let target = m.target_in(workdir)?;
        let source = match m.kind {
            MountType::Bind => match direct_bind(m, &target, tree, env)? {
                Some(source) => source,
                None => {
                    let link = m.read_only && !env.copies_only;
                    let walked = match walk_bind(m, &target, tree, env, link)? {
                        None if link => walk_bind(m, &target, tree, env, false)?,
                        walked => walked,
                    };
                    let (dir, path) = match walked {
                        Some(walked) => walked,
                        None => copy_bind(m, &target, tree, env)?,
                    };
                    prepared._dirs.push(dir);
                    let file = !path.is_dir();
                    MountSource::Bind {
                        source: path,
                        file,
                        within: None,
                        persistent: false,
                    }
                }
            },
            MountType::Cache => {
                let dir = cache_dir(m, &target, tree, env, &mut prepared)?;
                MountSource::Bind {
                    source: dir,
                    file: false,
                    within: None,
                    persistent: true,
                }
            }
            MountType::Tmpfs => MountSource::Tmpfs { size: m.size },
            // prepared above
            MountType::Secret | MountType::Ssh => continue,
        };
        prepared.mounts.push(RunMount {
            target,
            source,
            read_only: m.read_only,
        });
    }
    // parents before what is mounted inside them
    prepared.mounts.sort_by(|a, b| a.target.cmp(&b.target));
    Ok(prepared)
}

/// `type=secret`, as BuildKit's frontend reads it: the id is `id=` (or
/// `source=`), else the target's last name; the value becomes a file at
/// the target (by default `/run/secrets/ID`, unless only `env=` is
/// given) with mode 0400 and owner 0:0 unless told, read-only, and/or the
/// variable `env=` names. A secret not given is skipped, unless
/// `required`.
fn prepare_secret(
    m: &Mount,
    workdir: &str,
    env: &MountEnv<'_>,
    prepared: &mut Prepared,
) -> Result<(), MountError> {
    let id = match (m.source.as_deref(), m.id.as_deref()) {
        (Some(s), _) if !s.is_empty() => s.to_string(),
        (_, Some(i)) if !i.is_empty() => i.to_string(),
        _ if !m.target.is_empty() => lexpath::base_name(&m.target).to_string(),
        _ => return Err(MountError::SecretNeeds),
    };
    let value = env
        .secrets
        .value(&id)
        .map_err(|e| MountError::Secret(e.to_string()))?;
    let Some(value) = value else {
        if m.required {
            return Err(MountError::SecretMissing(id));
        }
        log::debug!("secret {id} was not given: the RUN runs without it");
        return Ok(());
    };
    if let Some(var) = &m.env {
        prepared
            .env
            .push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
    }
    let target = match (m.target.is_empty(), &m.env) {
        (true, Some(_)) => return Ok(()),
        (true, None) => format!("/run/secrets/{}", lexpath::base_name(&id)),
        (false, _) => m.target_in(workdir)?,
    };
    let dir = scratch_dir(env, &target)?;
    let file = dir.path().join("secret");
    crate::engine::secrets::write_secret_file(
        &file,
        &value,
        m.mode.unwrap_or(0o400),
        (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
    )
    .map_err(|e| MountError::Scratch {
        target: target.clone(),
        path: file.display().to_string(),
        message: e.to_string(),
    })?;
    prepared._dirs.push(dir);
    prepared.mounts.push(RunMount {
        target,
        source: MountSource::Bind {
            source: file,
            file: true,
            within: None,
            persistent: false,
        },
        read_only: true,
    });
    Ok(())
}

/// `type=ssh`, the `n`th of the RUN: a socket of the build's own
/// forwarding to the agent `--ssh` gave for the id (`default` unless
/// `id=`), at the target (by default `/run/buildkit/ssh_agent.N`) with
/// mode 0600 and owner 0:0 unless told; the first one's target is the
/// RUN's `SSH_AUTH_SOCK`. An agent not given is skipped, unless
/// `required`.
fn prepare_ssh(
    m: &Mount,
    n: usize,
    workdir: &str,
    env: &MountEnv<'_>,
    prepared: &mut Prepared,
) -> Result<(), MountError> {
    let id =
        m.id.as_deref()
            .filter(|i| !i.is_empty())
            .unwrap_or("default");
    let Some(agent) = env.secrets.agent(id) else {
        if m.required {
            return Err(MountError::SshMissing(id.to_string()));
        }
        log::debug!("no SSH agent {id} was given: the RUN runs without it");
        return Ok(());
    };
    let target = if m.target.is_empty() {
        format!("/run/buildkit/ssh_agent.{n}")
    } else {
        m.target_in(workdir)?
    };
    let dir = scratch_dir(env, &target)?;
    let socket = dir.path().join("agent.sock");
    let proxy = crate::engine::secrets::AgentProxy::start(
        agent,
        socket.clone(),
        m.mode.unwrap_or(0o600),
        (m.uid.unwrap_or(0), m.gid.unwrap_or(0)),
    )
    .map_err(|e| MountError::Scratch {
        target: target.clone(),
        path: socket.display().to_string(),
        message: e.to_string(),
    })?;
    // the proxy goes before its directory
    prepared._agents.push(proxy);
    prepared._dirs.push(dir);
    if prepared.ssh_auth_sock.is_none() {
        prepared.ssh_auth_sock = Some(target.clone());
    }
    prepared.mounts.push(RunMount {
        target,
        source: MountSource::Bind {
            source: socket,
            file: true,
            within: None,
            persistent: false,
        },
        read_only: false,
    });
    Ok(())
}

/// A fresh scratch directory for a mount.
fn scratch_dir(env: &MountEnv<'_>, target: &str) -> Result<tempfile::TempDir, MountError> {
    let err = |e: std::io::Error| MountError::Scratch {
        target: target.to_string(),
        path: env.scratch.display().to_string(),
        message: e.to_string(),
    };
    fs_err::create_dir_all(env.scratch).map_err(err)?;
    tempfile::Builder::new()
        .prefix("mount-")
        .tempdir_in(env.scratch)
        .map_err(err)
}

/// Copies `m.source` of the tree `m.from` names into `into` (a directory
/// to create, or a file, at `name` under `into`'s parent).
fn copy_tree(
    m: &Mount,
    target: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    root: &Path,
    dest: &str,
    now: i64,
) -> Result<(), MountError> {
    let src = tree(m.from.as_deref())?;
    let source = lexpath::join("/", m.source.as_deref().unwrap_or("/"));
    let no_excludes = crate::dockerfile::DockerIgnore::default();
    let job = CopyJob {
        src: &src,
        root,
        sources: vec![source.clone()],
        inline: Vec::new(),
        dest: dest.to_string(),
        owner: None,
        chmod: None,
        is_add: false,
        now,
        skip: None,
        excludes: &no_excludes,
        parents: false,
        remote: Default::default(),
        unpack: None,
    };
    copy::run(&job).map_err(|e| MountError::Copy {
        target: target.to_string(),
        source_path: source,
        tree: src.label.clone(),
        message: e.to_string(),
    })?;
    Ok(())
}

/// A read-only bind of a stage, an image or a context without
/// `.dockerignore` rules: the source itself, resolved beneath its tree by
/// the sandbox (nothing to hide, nothing to throw away); `None` when it
/// must be walked or copied (`rw`, ignore rules, copies only).
fn direct_bind(
    m: &Mount,
    target: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    env: &MountEnv<'_>,
) -> Result<Option<MountSource>, MountError> {
    if env.copies_only || !m.read_only {
        return Ok(None);
    }
    let src = tree(m.from.as_deref())?;
    if src.ignore.as_ref().is_some_and(|i| !i.is_empty()) {
        return Ok(None);
    }
    let rel = lexpath::in_root(m.source.as_deref().unwrap_or("/"));
    let err = |message: String| MountError::Copy {
        target: target.to_string(),
        source_path: format!("/{rel}"),
        tree: src.label.clone(),
        message,
    };
    let root = rustix::fs::open(
        &src.root,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| err(e.to_string()))?;
    let at = super::sandbox::open_beneath(&root, &rel, rustix::fs::OFlags::PATH)
        .map_err(|e| err(e.to_string()))?;
    let kind = rustix::fs::FileType::from_raw_mode(
        rustix::fs::fstat(&at)
            .map_err(|e| err(e.to_string()))?
            .st_mode,
    );
    let file = match kind {
        rustix::fs::FileType::Directory => false,
        rustix::fs::FileType::RegularFile => true,
        // a device, socket or fifo is copied as BuildKit's snapshot has it
        _ => return Ok(None),
    };
    Ok(Some(MountSource::Bind {
        source: src.root.clone(),
        file,
        within: Some(rel),
        persistent: false,
    }))
}

/// A bind's source as a tree in a scratch directory, of what
/// `.dockerignore` leaves (directories made, symlinks made anew, owners,
/// modes and mtimes kept): files hard-linked when `link` (a read-only
/// bind outside in place: the read-only mount keeps them from being
/// written), else copied (an `rw` bind, whose writes go with the copy, or
/// in place). `None` when it cannot be (a hard link across filesystems, a
/// glob or a special file as the source): the caller copies then.
fn walk_bind(
    m: &Mount,
    target: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    env: &MountEnv<'_>,
    link: bool,
) -> Result<Option<(tempfile::TempDir, PathBuf)>, MountError> {
    let src = tree(m.from.as_deref())?;
    let source = lexpath::join("/", m.source.as_deref().unwrap_or("/"));
    // the copy says what is wrong with a source
    let Ok(matches) = src.expand(&source) else {
        return Ok(None);
    };
    let [found] = matches.as_slice() else {
        return Ok(None);
    };
    let dir = scratch_dir(env, target)?;
    let into = dir.path().join("m");
    let from = src.path(&found.real);
    let linked = match fs_err::symlink_metadata(&from) {
        Ok(meta) if meta.is_file() => put_file(&from, &into, link),
        Ok(meta) if meta.is_dir() => walk_dir(&src, &from, &found.real, &into, link),
        _ => return Ok(None),
    };
    match linked {
        Ok(()) => Ok(Some((dir, into))),
        // across filesystems (the scratch directory is removed with `dir`)
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => Ok(None),
        Err(e) => Err(MountError::Scratch {
            target: target.to_string(),
            path: into.display().to_string(),
            message: e.to_string(),
        }),
    }
}

/// `from` hard-linked (`link`) or copied (mode, owner and mtime kept) at
/// `into`.
fn put_file(from: &Path, into: &Path, link: bool) -> std::io::Result<()> {
    if link {
        return fs_err::hard_link(from, into);
    }
    let meta = fs_err::symlink_metadata(from)?;
    fs_err::copy(from, into)?;
    set_like(into, &meta)
}

/// Gives `into` the owner, mode and mtime `meta` has.
fn set_like(into: &Path, meta: &std::fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    rustix::fs::chown(
        into,
        Some(rustix::process::Uid::from_raw(meta.uid())),
        Some(rustix::process::Gid::from_raw(meta.gid())),
    )?;
    // after the chown, which clears setuid bits
    fs_err::set_permissions(
        into,
        std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
    )?;
    filetime::set_file_mtime(into, filetime::FileTime::from_last_modification_time(meta))
}

/// [`walk_bind`]'s walk of the directory `from` (`rel` in the tree) into
/// `into`; its mode, owner and mtime are set once it is filled.
fn walk_dir(
    src: &SourceTree,
    from: &Path,
    rel: &str,
    into: &Path,
    link: bool,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs_err::symlink_metadata(from)?;
    fs_err::create_dir(into)?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        let name = lexpath::from_os(&entry.file_name());
        let child_rel = lexpath::child(rel, &name);
        let (child, child_into) = (entry.path(), into.join(entry.file_name()));
        let kind = entry.file_type()?;
        let excluded = src.is_excluded(&child_rel);
        if kind.is_dir() {
            if excluded && !src.may_include_below() {
                continue;
            }
            walk_dir(src, &child, &child_rel, &child_into, link)?;
            if excluded {
                // kept only for what an exception brings back
                let _ = fs_err::remove_dir(&child_into);
            }
        } else if excluded {
            continue;
        } else if kind.is_file() {
            put_file(&child, &child_into, link)?;
        } else if kind.is_symlink() {
            fs_err::os::unix::fs::symlink(fs_err::read_link(&child)?, &child_into)?;
            rustix::fs::chownat(
                rustix::fs::CWD,
                &child_into,
                Some(rustix::process::Uid::from_raw(entry.metadata()?.uid())),
                Some(rustix::process::Gid::from_raw(entry.metadata()?.gid())),
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        // a device, fifo or socket of the context is not sent by docker's
        // client either
    }
    set_like(into, &meta)
}

/// A bind's source, copied into a scratch directory: the directory and
/// the copy's path in it (a directory, or a single file).
fn copy_bind(
    m: &Mount,
    target: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    env: &MountEnv<'_>,
) -> Result<(tempfile::TempDir, PathBuf), MountError> {
    let dir = scratch_dir(env, target)?;
    copy_tree(m, target, tree, dir.path(), "/m", env.now)?;
    let path = dir.path().join("m");
    if !path.exists() {
        // an empty source directory leaves nothing to copy
        fs_err::create_dir(&path).map_err(|e| MountError::Scratch {
            target: target.to_string(),
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    Ok((dir, path))
}

/// A cache mount's directory, locked as its `sharing` says (the lock is
/// kept in `prepared`), created when new with its owner, mode and
/// initial contents.
fn cache_dir(
    m: &Mount,
    target: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    env: &MountEnv<'_>,
    prepared: &mut Prepared,
) -> Result<PathBuf, MountError> {
    use rustix::fs::FlockOperation;
    use sha2::Digest as _;
    let id = m.cache_id();
    let err = |path: &Path, message: String| MountError::Cache {
        id: id.clone(),
        path: path.display().to_string(),
        message,
    };
    // one directory per id and per what BuildKit makes a cache of its own
    let mut h = sha2::Sha256::new();
    for part in [
        id.as_str(),
        m.from.as_deref().unwrap_or(""),
        m.source.as_deref().unwrap_or(""),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let (uid, gid, mode) = (
        m.uid.unwrap_or(0),
        m.gid.unwrap_or(0),
        m.mode.unwrap_or(0o755),
    );
    let name = format!("{}-{uid}-{gid}-{mode:o}", &hex::encode(h.finalize())[..32]);
    fs_err::create_dir_all(env.caches).map_err(|e| err(env.caches, e.to_string()))?;
    let dir = env.caches.join(&name);
    if prepared.held.contains(&dir) {
        return Ok(dir);
    }
    let lock_path = env.caches.join(format!("{name}.lock"));
    let info = CacheMountInfo {
        id: id.clone(),
        from: m.from.clone(),
        source: m.source.clone(),
        uid,
        gid,
        mode,
        lock: lock_path.clone(),
    };
    let lock = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| err(&lock_path, e.to_string()))?;
    let flock = |op| rustix::fs::flock(&lock, op).map_err(|e| err(&lock_path, e.to_string()));
    let sharing = m.sharing.unwrap_or_default();
    match sharing {
        Sharing::Private => {
            match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    // in use: a fresh directory of this RUN's own
                    drop(lock);
                    let scratch = scratch_dir(env, target)?;
                    let fresh = scratch.path().join("cache");
                    new_cache(m, target, tree, env, &fresh, (uid, gid, mode))?;
                    prepared._dirs.push(scratch);
                    return Ok(fresh);
                }
                Err(e) => return Err(err(&lock_path, e.to_string())),
            }
        }
        // waits for every other user
        Sharing::Locked => flock(FlockOperation::LockExclusive)?,
        // waits only for a `locked` or `private` user
        Sharing::Shared => flock(FlockOperation::LockShared)?,
    }
    if !dir.is_dir() {
        // made by one user alone: a shared lock becomes exclusive for it
        // (two users may both come here: the second finds it made)
        if sharing == Sharing::Shared {
            flock(FlockOperation::LockExclusive)?;
        }
        if !dir.is_dir() {
            let partial = tempfile::Builder::new()
                .prefix(&format!("{name}.new-"))
                .tempdir_in(env.caches)
                .map_err(|e| err(env.caches, e.to_string()))?;
            let made = partial.path().join("cache");
            new_cache(m, target, tree, env, &made, (uid, gid, mode))?;
            if let Some(shared) = env.shared
                && let Err(why) = shared.restore(&info, &made)
            {
                log::warn!("cache mount {id}: not restored, it starts as new: {why}");
                fs_err::remove_dir_all(&made).map_err(|e| err(&made, e.to_string()))?;
                new_cache(m, target, tree, env, &made, (uid, gid, mode))?;
            }
            fs_err::rename(&made, &dir).map_err(|e| err(&dir, e.to_string()))?;
        }
        if sharing == Sharing::Shared {
            flock(FlockOperation::LockShared)?;
        }
    }
    prepared._locks.push(lock);
    prepared.held.push(dir.clone());
    if let Some(shared) = env.shared {
        shared.used(&info, &dir);
    }
    Ok(dir)
}

/// Makes a new cache directory at `path`: the contents of `from`/`source`
/// when given; owned `uid:gid`, with `mode`, unless it is a source
/// directory.
fn new_cache(
    m: &Mount,
    target: &str,
    tree: &dyn Fn(Option<&str>) -> Result<SourceTree, MountError>,
    env: &MountEnv<'_>,
    path: &Path,
    (uid, gid, mode): (u32, u32, u32),
) -> Result<(), MountError> {
    let err = |message: String| MountError::Cache {
        id: m.cache_id(),
        path: path.display().to_string(),
        message,
    };
    if m.from.is_some() || m.source.is_some() {
        let parent = path.parent().unwrap_or(path);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        copy_tree(m, target, tree, parent, &format!("/{name}"), env.now)?;
    }
    if !path.is_dir() {
        fs_err::create_dir(path).map_err(|e| err(e.to_string()))?;
    }
    // a source directory keeps its own owner and mode (BuildKit sets them
    // only on a cache made from nothing, or from a whole tree)
    let (uid, gid, mode) = match m.source.as_deref().map(lexpath::in_root) {
        Some(rel) if !rel.is_empty() => {
            let src = tree(m.from.as_deref())?;
            let st = rustix::fs::open(
                &src.root,
                rustix::fs::OFlags::PATH
                    | rustix::fs::OFlags::DIRECTORY
                    | rustix::fs::OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .and_then(|root| super::sandbox::open_beneath(&root, &rel, rustix::fs::OFlags::PATH))
            .and_then(|at| rustix::fs::fstat(&at))
            .map_err(|e| err(e.to_string()))?;
            (st.st_uid, st.st_gid, st.st_mode)
        }
        _ => (uid, gid, mode),
    };
    rustix::fs::chown(
        path,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )
    .map_err(|e| err(e.to_string()))?;
    rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode & 0o7777))
        .map_err(|e| err(e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parsed(value: &str) -> Result<Mount, String> {
        let vars = [("T", "/t"), ("ID", "x")];
        parse(value, &mut |v| {
            let mut out = v.to_string();
            for (k, val) in vars {
                out = out.replace(&format!("${k}"), val);
            }
            Ok(out)
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_grammar_is_buildkits() {
        let m = parsed("target=/a").unwrap();
        assert_eq!((m.kind, m.read_only), (MountType::Bind, true));
        let m = parsed("type=bind,target=/a,rw").unwrap();
        assert!(!m.read_only);
        let m = parsed("type=bind,dst=/a,readwrite=true").unwrap();
        assert!(!m.read_only);
        let m = parsed("type=cache,target=$T,id=$ID,sharing=LOCKED,mode=0700,uid=1,gid=2").unwrap();
        assert_eq!(m.target, "/t");
        assert_eq!(m.id.as_deref(), Some("x"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!((m.mode, m.uid, m.gid), (Some(0o700), Some(1), Some(2)));
        assert!(!m.read_only);
        let m = parsed("type=cache,target=/c,ro").unwrap();
        assert!(m.read_only);
        let m = parsed("type=tmpfs,destination=/x,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = parsed("type=secret,id=tok,required,env=TOKEN").unwrap();
        assert!(m.required);
        assert_eq!(m.env.as_deref(), Some("TOKEN"));
        let m = parsed("type=ssh").unwrap();
        assert_eq!(m.kind, MountType::Ssh);
        let m = parsed("\"type=bind\",\"source=a,b\",target=/t").unwrap();
        assert_eq!(m.source.as_deref(), Some("a,b"));
    }

    #[test]
    fn errors_are_buildkits_words() {
        let rows = [
            ("type=nfs,target=/a", "unsupported mount type \"nfs\""),
            (
                "target=/a,colour=red",
                "unexpected key 'colour' in 'colour=red'",
            ),
            (
                "target=/a,bogus",
                "invalid field 'bogus' must be a key=value pair",
            ),
            (
                "target=/a,required",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "target=/a,size=1m",
                "unexpected key 'size' for mount type 'bind'",
            ),
            (
                "type=tmpfs,target=/a,size=lots",
                "invalid value for size: lots",
            ),
            ("target=/a,ro=maybe", "invalid value for ro: maybe"),
            ("type=cache,target=/a,mode=9", "invalid value 9 for mode"),
            ("type=cache,target=/a,uid=-1", "invalid value -1 for uid"),
            (
                "target=/a,mode=0700",
                "mode not allowed for \"bind\" type mounts",
            ),
            (
                "type=tmpfs,target=/a,gid=1",
                "gid not allowed for \"tmpfs\" type mounts",
            ),
            (
                "type=cache,target=/a,sharing=all",
                "unsupported sharing value \"all\"",
            ),
            (
                "target=/a,sharing=locked",
                "invalid cache sharing set for bind mount",
            ),
            (
                "type=secret,from=x,id=a",
                "secret mount should not have a from",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=secret,source=a,id=b",
                "both source and id can't be set",
            ),
            (
                "target=\"/a",
                "failed to parse csv mounts: bare \" in non-quoted-field: target=\"/a",
            ),
        ];
        for (value, want) in rows {
            assert_eq!(parsed(value).unwrap_err(), want, "{value}");
        }
    }

    #[test]
    fn targets_and_cache_ids() {
        let m = parsed("type=cache,target=../../x/").unwrap();
        assert_eq!(m.target_in("/work/dir").unwrap(), "/x");
        assert_eq!(m.cache_id(), "../../x");
        let m = parsed("type=cache,target=/tmp/bli/bla/").unwrap();
        assert_eq!(m.cache_id(), "/tmp/bli/bla");
        assert_eq!(m.target_in("/").unwrap(), "/tmp/bli/bla");
        let m = parsed("type=tmpfs").unwrap();
        assert_eq!(
            m.target_in("/").unwrap_err().to_string(),
            "invalid mount target \"/\""
        );
        assert_eq!(m.target_in("/w").unwrap(), "/w");
        assert_eq!(check_as_written("type=cache,target=/c,mode=$M"), Ok(()));
        assert_eq!(
            check_as_written("from=$STAGE,target=/c"),
            Err(MountError::FromVariable)
        );
        assert_eq!(check_as_written("from=x$,target=/c"), Ok(()));
        assert!(check_as_written("type=cache,target=/c,mode=9").is_err());
        assert_eq!(
            from_as_written("from=build,target=/x").as_deref(),
            Some("build")
        );
    }

    /// Prepares `values` (cache mounts) against `caches`; the first
    /// mount's directory.
    fn cache_of(values: &[&str], caches: &Path, scratch: &Path) -> (Prepared, PathBuf) {
        let mounts: Vec<Mount> = values.iter().map(|v| parsed(v).unwrap()).collect();
        let no_secrets = crate::engine::secrets::Secrets::default();
        let env = MountEnv {
            caches,
            scratch,
            now: 0,
            secrets: &no_secrets,
            copies_only: false,
            shared: None,
        };
        let no_tree = |_: Option<&str>| -> Result<SourceTree, MountError> {
            Err(MountError::NotPrepared {
                from: String::new(),
            })
        };
        let p = prepare(&mounts, "/", &no_tree, &env).unwrap();
        let MountSource::Bind { source, .. } = &p.mounts[0].source else {
            panic!("{:?}", p.mounts);
        };
        let dir = source.clone();
        (p, dir)
    }

    #[test]
    fn cache_sharing_modes() {
        let t = tempfile::tempdir().unwrap();
        let (caches, scratch) = (t.path().join("caches"), t.path().join("scratch"));
        // shared users hold it together
        let (one, dir) = cache_of(&["type=cache,target=/c"], &caches, &scratch);
        let (two, again) = cache_of(&["type=cache,target=/c,sharing=shared"], &caches, &scratch);
        assert_eq!(dir, again);
        assert!(dir.starts_with(&caches));
        drop((one, two));
        // while a locked user holds it, a private one gets a fresh directory
        let (locked, dir) = cache_of(&["type=cache,target=/c,sharing=locked"], &caches, &scratch);
        fs_err::write(dir.join("kept"), "").unwrap();
        let (private, fresh) =
            cache_of(&["type=cache,target=/c,sharing=private"], &caches, &scratch);
        assert_ne!(fresh, dir);
        assert!(fresh.starts_with(&scratch) && !fresh.join("kept").exists());
        drop(private);
        assert!(!fresh.exists(), "the private stand-in outlived its RUN");
        drop(locked);
        // free again: the private user gets the cache itself
        let (_private, now) =
            cache_of(&["type=cache,target=/c,sharing=private"], &caches, &scratch);
        assert_eq!(now, dir);
        // another owner or mode is another cache, made as asked
        let (_other, other) = cache_of(
            &["type=cache,target=/c,uid=7,gid=8,mode=0700"],
            &caches,
            &scratch,
        );
        assert_ne!(other, dir);
        let st = rustix::fs::stat(&other).unwrap();
        assert_eq!((st.st_uid, st.st_gid, st.st_mode & 0o7777), (7, 8, 0o700));
    }

    #[test]
    fn ram_sizes_are_dockers() {
        for (s, want) in [
            ("1024", Some(1024)),
            ("1k", Some(1024)),
            ("1KiB", Some(1024)),
            ("2mb", Some(2 << 20)),
            ("1.5g", Some(3 << 29)),
            ("x", None),
            ("", None),
        ] {
            assert_eq!(ram_in_bytes(s), want, "{s}");
        }
    }
}
