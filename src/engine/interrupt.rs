//! What a SIGTERM or SIGINT must stop and remove: the running builds'
//! cancel flags (`BuildEnv::cancelled`) and the directories smelt writes
//! into (work directories, fetched contexts). The engine registers them
//! here as it makes them; the signal thread (`cli/signals.rs`) sets the
//! flags, and, if the build does not wind down in time, removes the
//! directories itself.
//!
//! A directory is registered under the same lock that the signal thread
//! holds while it takes over ([`take_over`]), and created under it too, so
//! there is no moment where it exists on disk but is unknown here.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// The first signal received, 0 for none.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    builds: Vec::new(),
    dirs: Vec::new(),
    next: 0,
    exiting: false,
});

#[derive(Debug)]
struct Registry {
    /// Each running build's cancel flag, and whether it builds in place.
    builds: Vec<(u64, Arc<AtomicBool>, bool)>,
    dirs: Vec<(u64, PathBuf)>,
    next: u64,
    /// The main thread is done (its directories are removed) and exits.
    exiting: bool,
}

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Registry {
    fn id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// The signal received, if one was.
pub fn signal() -> Option<i32> {
    Some(SIGNAL.load(Ordering::SeqCst)).filter(|s| *s != 0)
}

/// `SIGTERM`, `SIGINT`, or `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        2 => "SIGINT".to_string(),
        15 => "SIGTERM".to_string(),
        n => format!("signal {n}"),
    }
}

/// Records the signal (the first one stays) and cancels every running
/// build: stages stop before their next step, a running RUN is killed.
pub fn interrupt(signal: i32) {
    let _ = SIGNAL.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    for (_, flag, _) in &registry().builds {
        flag.store(true, Ordering::SeqCst);
    }
}

/// An entry of the registry, removed when dropped.
#[derive(Debug)]
pub struct Tracked(u64);

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut r = registry();
        r.builds.retain(|(id, _, _)| *id != self.0);
        r.dirs.retain(|(id, _)| *id != self.0);
    }
}

/// Registers a build's cancel flag (set at once if a signal came already).
pub fn track_build(flag: &Arc<AtomicBool>, in_place: bool) -> Tracked {
    let mut r = registry();
    if signal().is_some() {
        flag.store(true, Ordering::SeqCst);
    }
    let id = r.id();
    r.builds.push((id, Arc::clone(flag), in_place));
    Tracked(id)
}

/// A temporary directory the signal thread removes if it has to: removed
/// first, then forgotten, when dropped.
#[derive(Debug)]
pub struct TrackedDir {
    dir: Option<tempfile::TempDir>,
    _entry: Tracked,
}

impl TrackedDir {
    pub fn path(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            // only `drop` takes it
            None => Path::new(""),
        }
    }
}

impl Drop for TrackedDir {
    fn drop(&mut self) {
        // the directory goes before the entry (`_entry`, dropped after this)
        drop(self.dir.take());
    }
}

/// Creates a temporary directory with `make` and registers it, both under
/// the registry's lock. Refused once a signal came.
pub fn temp_dir(
    make: impl FnOnce() -> std::io::Result<tempfile::TempDir>,
) -> std::io::Result<TrackedDir> {
    let mut r = registry();
    if let Some(s) = signal() {
        return Err(std::io::Error::other(format!(
            "stopped by {}",
            signal_name(s)
        )));
    }
    let dir = make()?;
    let id = r.id();
    r.dirs.push((id, dir.path().to_path_buf()));
    Ok(TrackedDir {
        dir: Some(dir),
        _entry: Tracked(id),
    })
}

/// The registry, held by the signal thread while it ends the process: no
/// directory is made or forgotten meanwhile, and the main thread cannot
/// start exiting. `None` when the main thread is exiting already.
pub struct TakeOver(MutexGuard<'static, Registry>);

impl std::fmt::Debug for TakeOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakeOver")
            .field("dirs", &self.dirs())
            .finish()
    }
}

impl TakeOver {
    /// The directories to remove, in the order they were made.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.0.dirs.iter().map(|(_, d)| d.clone()).collect()
    }

    /// Whether a build runs in place (smelt cannot be started again there:
    /// the base's libraries replaced the ones it was linked with).
    pub fn in_place(&self) -> bool {
        self.0.builds.iter().any(|(_, _, in_place)| *in_place)
    }
}

/// See [`TakeOver`].
pub fn take_over() -> Option<TakeOver> {
    let r = registry();
    (!r.exiting).then_some(TakeOver(r))
}

/// Called by the main thread once everything it made is removed: from now
/// on the signal thread leaves the exit to it. Returns the signal received.
pub fn exiting() -> Option<i32> {
    registry().exiting = true;
    signal()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_known_while_they_exist() {
        let base = tempfile::tempdir().unwrap();
        let dir = temp_dir(|| tempfile::tempdir_in(base.path())).unwrap();
        let path = dir.path().to_path_buf();
        assert!(registry().dirs.iter().any(|(_, d)| *d == path));
        drop(dir);
        assert!(!path.exists());
        assert!(!registry().dirs.iter().any(|(_, d)| *d == path));
    }
}
