//! Build secrets (`--secret`) and forwarded SSH agents (`--ssh`), what
//! `RUN --mount=type=secret` and `RUN --mount=type=ssh` read. The flags
//! take BuildKit's (and the kaniko fork's) syntax:
//!
//! - `--secret id=ID,src=FILE` (also `source=`), `--secret id=ID,env=VAR`,
//!   with an optional `type=file|env`; `--secret id=ID` alone reads the
//!   environment variable ID when it is set, else the file ID, as buildx
//!   does.
//! - `--ssh default` (the agent at `$SSH_AUTH_SOCK`), `--ssh ID=SOCKET`.
//!
//! A secret's value is read when a RUN mounts it, never earlier, and goes
//! only to that RUN: nothing here logs or displays a value, and errors name
//! the id and where the value was to come from, never what it is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a secret's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    File(PathBuf),
    Env(String),
}

/// The secrets and agents a build was given.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    secrets: BTreeMap<String, SecretSource>,
    agents: BTreeMap<String, PathBuf>,
}

/// A `--secret` or `--ssh` value that cannot be used, or a secret that
/// cannot be read. None of them holds a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("--secret {0:?}: want id=ID with src=FILE or env=VAR")]
    SecretFlag(String),
    #[error("--secret {flag:?}: unknown key {key:?} (id, type, src, source, env)")]
    SecretKey { flag: String, key: String },
    #[error("--secret {flag:?}: unknown type {kind:?} (file or env)")]
    SecretType { flag: String, kind: String },
    #[error("--secret id={0} is given twice")]
    SecretTwice(String),
    #[error("--ssh {0:?}: want default, ID, or ID=SOCKET")]
    SshFlag(String),
    #[error(
        "--ssh {flag}: SSH_AUTH_SOCK is not set (start an agent, or name its socket: --ssh {id}=SOCKET)"
    )]
    NoAgent { flag: String, id: String },
    #[error(
        "--ssh {id}={}: not an agent socket ({what}); smelt forwards agent sockets only: \
         load the key into ssh-agent and pass its socket",
        .path.display()
    )]
    NotASocket {
        id: String,
        path: PathBuf,
        what: String,
    },
    #[error("--ssh {0}: only one socket per id")]
    SshSeveral(String),
    #[error("secret {id}: reading {}: {source}", .path.display())]
    Read {
        id: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id}: the environment variable {var} is not set")]
    EnvUnset { id: String, var: String },
}

impl Secrets {
    /// Reads the `--secret` and `--ssh` flags (`env` looks variables up).
    pub fn parse(
        secret_flags: &[String],
        ssh_flags: &[String],
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Secrets, SecretError> {
        let mut out = Secrets::default();
        for flag in secret_flags {
            let (id, source) = parse_secret(flag, &env)?;
            if out.secrets.insert(id.clone(), source).is_some() {
                return Err(SecretError::SecretTwice(id));
            }
        }
        for flag in ssh_flags {
            let (id, path) = parse_ssh(flag, &env)?;
            out.agents.insert(id, path);
        }
        Ok(out)
    }

    /// The value of secret `id`, read now; `None` when no `--secret` gave it.
    pub fn value(&self, id: &str) -> Result<Option<Vec<u8>>, SecretError> {
        match self.secrets.get(id) {
            None => Ok(None),
            Some(SecretSource::File(path)) => {
                fs_err::read(path).map(Some).map_err(|e| SecretError::Read {
                    id: id.to_string(),
                    path: path.clone(),
                    // fs_err's message names the path again
                    source: std::io::Error::new(e.kind(), e.kind().to_string()),
                })
            }
            Some(SecretSource::Env(var)) => std::env::var_os(var)
                .map(|v| Some(std::os::unix::ffi::OsStringExt::into_vec(v)))
                .ok_or_else(|| SecretError::EnvUnset {
                    id: id.to_string(),
                    var: var.clone(),
                }),
        }
    }

    /// The socket of agent `id`, if `--ssh` gave one.
    pub fn agent(&self, id: &str) -> Option<&Path> {
        self.agents.get(id).map(PathBuf::as_path)
    }

    /// Whether any secret or agent was given.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty() && self.agents.is_empty()
    }
}

fn parse_secret(
    flag: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(String, SecretSource), SecretError> {
    let (mut id, mut kind, mut src, mut var) = (None, None, None, None);
    for field in flag.split(',') {
        let (key, value) = field
            .split_once('=')
            .ok_or_else(|| SecretError::SecretFlag(flag.to_string()))?;
        let slot = match key.trim().to_ascii_lowercase().as_str() {
            "id" => &mut id,
            "type" => &mut kind,
            "src" | "source" => &mut src,
            "env" => &mut var,
            other => {
                return Err(SecretError::SecretKey {
                    flag: flag.to_string(),
                    key: other.to_string(),
                });
            }
        };
        *slot = Some(value.to_string());
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| SecretError::SecretFlag(flag.to_string()))?;
    let source = match (kind.as_deref(), src, var) {
        (Some("file") | None, Some(path), None) => SecretSource::File(PathBuf::from(path)),
        (Some("env") | None, None, Some(var)) => SecretSource::Env(var),
        // type=env,src=VAR names the variable, as buildx reads it
        (Some("env"), Some(var), None) => SecretSource::Env(var),
        (Some("file"), None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some("env"), None, None) => SecretSource::Env(id.clone()),
        (None, None, None) if env(&id).is_some() => SecretSource::Env(id.clone()),
        (None, None, None) => SecretSource::File(PathBuf::from(&id)),
        (Some(other), _, _) if other != "file" && other != "env" => {
            return Err(SecretError::SecretType {
                flag: flag.to_string(),
                kind: other.to_string(),
            });
        }
        _ => return Err(SecretError::SecretFlag(flag.to_string())),
    };
    Ok((id, source))
}

fn parse_ssh(
    flag: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(String, PathBuf), SecretError> {
    let (id, paths) = match flag.split_once('=') {
        Some((id, paths)) => (id, Some(paths)),
        None => (flag, None),
    };
    if id.is_empty() || id.contains(',') {
        return Err(SecretError::SshFlag(flag.to_string()));
    }
    let path = match paths {
        Some(p) if p.contains(',') => return Err(SecretError::SshSeveral(id.to_string())),
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => match env("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
            Some(sock) => PathBuf::from(sock),
            None => {
                return Err(SecretError::NoAgent {
                    flag: flag.to_string(),
                    id: id.to_string(),
                });
            }
        },
    };
    let what = match fs_err::metadata(&path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => None,
        Ok(m) if m.is_file() => Some("a file: a key?".to_string()),
        Ok(_) => Some("not a socket".to_string()),
        Err(e) => Some(e.kind().to_string()),
    };
    if let Some(what) = what {
        return Err(SecretError::NotASocket {
            id: id.to_string(),
            path,
            what,
        });
    }
    Ok((id.to_string(), path))
}

/// Writes a secret's value to a new file `path` (the directory is the
/// build's own) with the mount's mode and owner, for a RUN to bind.
pub fn write_secret_file(
    path: &Path,
    value: &[u8],
    mode: u32,
    owner: (u32, u32),
) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::io::Write as _;
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(value)?;
    let file = file.into_parts().0;
    std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1))?;
    // after the owner: chown clears set-id bits
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(())
}

/// A socket of the build's own that forwards each connection to an SSH
/// agent, as BuildKit forwards the client's agent: the RUN gets a socket
/// with the mount's owner and mode (BuildKit's default 0600, root) and
/// never the agent's own, which may belong to another user. It stops,
/// and its socket goes, when dropped; connections still open end with the
/// RUN's processes.
#[derive(Debug)]
pub struct AgentProxy {
    path: PathBuf,
    /// The listening socket, shut down to wake the accepting thread.
    listener: std::os::unix::net::UnixListener,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens at `path` (which must not exist) and forwards to `agent`.
    pub fn start(
        agent: &Path,
        path: PathBuf,
        mode: u32,
        owner: (u32, u32),
    ) -> std::io::Result<AgentProxy> {
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1))?;
        fs_err::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let agent = agent.to_path_buf();
        let own = listener.try_clone()?;
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { break };
                match std::os::unix::net::UnixStream::connect(&agent) {
                    Ok(upstream) => forward(conn, upstream),
                    Err(e) => {
                        log::warn!("the SSH agent at {} did not answer: {e}", agent.display());
                    }
                }
            }
        });
        Ok(AgentProxy {
            path,
            listener: own,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket the RUN is given.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // wakes the accepting thread (its accept fails), whether or not
        // the socket's name is still there to connect to
        let _ = rustix::net::shutdown(&self.listener, rustix::net::Shutdown::Read);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = fs_err::remove_file(&self.path);
    }
}

/// Copies both ways between a RUN's connection and the agent's, each way
/// on a thread of its own, until either side closes.
fn forward(conn: std::os::unix::net::UnixStream, upstream: std::os::unix::net::UnixStream) {
    let pair = conn
        .try_clone()
        .and_then(|c| Ok((c, upstream.try_clone()?)));
    let Ok((conn_back, upstream_back)) = pair else {
        return;
    };
    let one_way = |mut from: std::os::unix::net::UnixStream,
                   mut to: std::os::unix::net::UnixStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    one_way(conn, upstream);
    one_way(upstream_back, conn_back);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "SET").then(|| "value".to_string())
    }

    /// A flag and what it reads as: (id, source), or part of the error.
    type Row<'a> = (&'a str, Result<(&'a str, SecretSource), &'a str>);

    #[test]
    fn secret_flags_read_as_buildkit_reads_them() {
        let rows: &[Row<'_>] = &[
            ("id=a,src=/f", Ok(("a", SecretSource::File("/f".into())))),
            (
                "id=a,source=/f,type=file",
                Ok(("a", SecretSource::File("/f".into()))),
            ),
            (
                "id=a,env=TOKEN",
                Ok(("a", SecretSource::Env("TOKEN".into()))),
            ),
            (
                "type=env,id=a,src=TOKEN",
                Ok(("a", SecretSource::Env("TOKEN".into()))),
            ),
            ("id=SET", Ok(("SET", SecretSource::Env("SET".into())))),
            (
                "id=unset",
                Ok(("unset", SecretSource::File("unset".into()))),
            ),
            (
                "src=/f",
                Err("--secret \"src=/f\": want id=ID with src=FILE or env=VAR"),
            ),
            ("id=a,src=/f,env=V", Err("want id=ID")),
            ("id=a,type=vault", Err("unknown type \"vault\"")),
            ("id=a,path=/f", Err("unknown key \"path\"")),
            ("a", Err("want id=ID")),
        ];
        for (flag, want) in rows {
            let got = parse_secret(flag, &env);
            match (got, want) {
                (Ok((id, src)), Ok((want_id, want_src))) => {
                    assert_eq!((id.as_str(), &src), (*want_id, want_src), "{flag}");
                }
                (Err(e), Err(want)) => assert!(e.to_string().contains(want), "{flag}: {e}"),
                (got, want) => panic!("{flag}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_secret_is_read_when_asked_and_its_errors_never_show_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        fs_err::write(&file, "s3cr3t-value").expect("write");
        let secrets = Secrets::parse(
            &[
                format!("id=file,src={}", file.display()),
                format!("id=gone,src={}", dir.path().join("nope").display()),
                "id=var,env=SMELT_TEST_SURELY_UNSET_VARIABLE".to_string(),
            ],
            &[],
            env,
        )
        .expect("parse");
        assert_eq!(
            secrets.value("file").expect("read").as_deref(),
            Some(&b"s3cr3t-value"[..])
        );
        assert!(secrets.value("other").expect("no error").is_none());
        let gone = secrets.value("gone").expect_err("missing file").to_string();
        assert!(gone.starts_with("secret gone: reading "), "{gone}");
        let unset = secrets.value("var").expect_err("unset").to_string();
        assert_eq!(
            unset,
            "secret var: the environment variable SMELT_TEST_SURELY_UNSET_VARIABLE is not set"
        );
    }

    #[test]
    fn ssh_flags_name_agent_sockets_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("agent.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        let key = dir.path().join("id_ed25519");
        fs_err::write(&key, "key").expect("write");
        let with_sock = |name: &str| (name == "SSH_AUTH_SOCK").then(|| sock.display().to_string());
        let s = Secrets::parse(&[], &["default".to_string()], with_sock).expect("default");
        assert_eq!(s.agent("default"), Some(sock.as_path()));
        let s = Secrets::parse(&[], &[format!("gh={}", sock.display())], env).expect("id=sock");
        assert_eq!(s.agent("gh"), Some(sock.as_path()));
        let e = Secrets::parse(&[], &["default".to_string()], env).expect_err("no agent");
        assert!(e.to_string().contains("SSH_AUTH_SOCK is not set"), "{e}");
        let e = Secrets::parse(&[], &[format!("default={}", key.display())], env)
            .expect_err("a key file");
        assert!(e.to_string().contains("a file: a key?"), "{e}");
    }

    #[test]
    fn the_agent_proxy_forwards_with_its_own_mode_and_goes_when_dropped() {
        use std::io::{Read as _, Write as _};
        let dir = tempfile::tempdir().expect("tempdir");
        let agent = dir.path().join("agent.sock");
        let listener = std::os::unix::net::UnixListener::bind(&agent).expect("bind");
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut asked = [0u8; 4];
                if conn.read_exact(&mut asked).is_ok() {
                    let _ = conn.write_all(&[b"re:", &asked[..]].concat());
                }
            }
        });
        let at = dir.path().join("proxy.sock");
        let proxy = AgentProxy::start(&agent, at.clone(), 0o600, (1234, 4321)).expect("start");
        let meta = fs_err::metadata(&at).expect("stat");
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(
            (meta.mode() & 0o7777, meta.uid(), meta.gid()),
            (0o600, 1234, 4321)
        );
        for _ in 0..2 {
            let mut c = std::os::unix::net::UnixStream::connect(proxy.path()).expect("connect");
            c.write_all(b"ping").expect("write");
            let mut answer = [0u8; 7];
            c.read_exact(&mut answer).expect("read");
            assert_eq!(&answer, b"re:ping");
        }
        drop(proxy);
        assert!(!at.exists(), "the socket should go with the proxy");
    }
}
