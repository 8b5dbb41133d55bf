//! Object-store servers on loopback for the object context tests: moto
//! (S3), gcp-storage-emulator (GCS) and Azurite (Azure blob), installed
//! by the README's test command (scripts/test.sh) under
//! `target/emulators`, or where `SMELT_EMULATORS` says.

use crate::registry_server::free_port;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Azurite's well-known development account and key (public, in its docs).
pub const AZURE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

fn root() -> PathBuf {
    std::env::var_os("SMELT_EMULATORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/emulators"))
}

/// The venv's Python (moto, gcp-storage-emulator, azure-storage-blob).
pub fn python() -> PathBuf {
    root().join("venv/bin/python")
}

fn program(rel: &str) -> PathBuf {
    let path = root().join(rel);
    assert!(
        path.exists(),
        "{} is missing: the README's test command (scripts/test.sh) installs the emulators",
        path.display()
    );
    path
}

/// An emulator process on a loopback port, killed when dropped.
pub struct Emulator {
    pub port: u16,
    child: Child,
    _data: tempfile::TempDir,
}

impl Emulator {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts `rel` (under the emulators' directory) on a free loopback
    /// port with the arguments `args` gives for that port and a data
    /// directory; waits until it listens.
    fn start(rel: &str, args: impl FnOnce(String, &Path) -> Vec<String>) -> Emulator {
        let program = program(rel);
        let port = free_port();
        let data = tempfile::tempdir().unwrap();
        let log = fs_err::File::create(data.path().join("emulator.log"))
            .unwrap()
            .into_parts()
            .0;
        let child = Command::new(&program)
            .args(args(port.to_string(), data.path()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
        let mut emulator = Emulator {
            port,
            child,
            _data: data,
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = emulator.child.try_wait() {
                panic!("{} exited: {status}", program.display());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{} did not listen on {port}",
                program.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        emulator
    }

    /// moto's S3 server.
    pub fn s3() -> Emulator {
        Self::start("venv/bin/moto_server", |port, _| {
            ["-H", "127.0.0.1", "-p", &port].map(String::from).to_vec()
        })
    }

    /// gcp-storage-emulator, in memory.
    pub fn gcs() -> Emulator {
        Self::start("venv/bin/gcp-storage-emulator", |port, _| {
            [
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--in-memory",
            ]
            .map(String::from)
            .to_vec()
        })
    }

    /// Azurite's blob service, storing in the data directory.
    pub fn azure() -> Emulator {
        Self::start("node/node_modules/.bin/azurite-blob", |port, data| {
            let data = data.display().to_string();
            [
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port,
                "--location",
                &data,
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ]
            .map(String::from)
            .to_vec()
        })
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
