//! Writing extracted files on several threads. The tar stream is read in
//! order on one thread; a small regular file (up to 1 MiB) is read into
//! memory and handed to a worker that creates it, writes it and sets its
//! owner, mode, xattrs and time. File creation is what extraction waits on
//! (the kernel's work, not ours), and it scales with cores.
//!
//! The reader keeps order where it matters by waiting for every handed-out
//! file ([`Writers::flush`]) before a step that could see one half-written:
//! a whiteout or opaque marker, a hard link, a second entry for the same
//! path, and the symlinks and directory times set at the end.

use super::FsError;
use super::root::Dir;
use crossbeam_channel::{Sender, bounded};
use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};

/// Files larger than this are written by the reading thread, streaming.
pub(crate) const BUFFERED_MAX: u64 = 1 << 20;

/// One file for a worker to write.
#[derive(Debug)]
pub(crate) struct FileJob<'r> {
    /// The directory it goes into, held open.
    pub dir: Arc<Dir<'r>>,
    /// Its name there, with nothing there yet.
    pub name: String,
    pub data: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub mtime: i64,
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl FileJob<'_> {
    /// Creates the file and sets its metadata.
    pub(crate) fn write(&self) -> Result<(), FsError> {
        let mut f = self.dir.create_file(&self.name, 0o600)?;
        f.write_all(&self.data).map_err(|e| {
            let rel = crate::lexpath::child(self.dir.rel(), &self.name);
            FsError::path(format!("/{rel}"), format!("writing: {e}"))
        })?;
        drop(f);
        set_metadata(
            &self.dir,
            &self.name,
            (self.uid, self.gid),
            self.mode,
            &self.xattrs,
            Some(self.mtime),
        )
    }
}

/// What an extracted entry (not a symlink) gets after it is made: owner,
/// then mode (chown clears setuid bits), then xattrs (chown clears
/// capabilities), then the time (`None` for directories, whose times are
/// set once their contents are in).
pub(crate) fn set_metadata(
    dir: &Dir<'_>,
    name: &str,
    (uid, gid): (u32, u32),
    mode: u32,
    xattrs: &[(String, Vec<u8>)],
    mtime: Option<i64>,
) -> Result<(), FsError> {
    dir.chown(name, uid, gid)?;
    dir.chmod(name, mode)?;
    for (k, v) in xattrs {
        dir.set_xattr(name, k, v)?;
    }
    match mtime {
        Some(t) => dir.set_mtime(name, t),
        None => Ok(()),
    }
}

#[derive(Default)]
struct Done {
    count: usize,
    error: Option<FsError>,
}

/// The workers of one extraction (none with one core: files are then
/// written in place, in order).
pub(crate) struct Writers<'r> {
    jobs: Option<Sender<FileJob<'r>>>,
    done: Arc<(Mutex<Done>, Condvar)>,
    dispatched: usize,
    inflight: HashSet<String>,
}

impl<'r> Writers<'r> {
    /// Starts `threads` workers inside `scope` (they end when `self`
    /// drops).
    pub(crate) fn start<'scope>(
        scope: &'scope std::thread::Scope<'scope, '_>,
        threads: usize,
    ) -> Writers<'r>
    where
        'r: 'scope,
    {
        let done: Arc<(Mutex<Done>, Condvar)> = Arc::default();
        let jobs = (threads > 1).then(|| {
            let (tx, rx) = bounded::<FileJob<'r>>(threads * 4);
            for _ in 0..threads {
                let rx = rx.clone();
                let done = done.clone();
                scope.spawn(move || {
                    for job in rx {
                        let result = job.write();
                        let (lock, cv) = &*done;
                        let mut d = lock
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        d.count += 1;
                        if let Err(e) = result
                            && d.error.is_none()
                        {
                            d.error = Some(e);
                        }
                        cv.notify_all();
                    }
                });
            }
            tx
        });
        Writers {
            jobs,
            done,
            dispatched: 0,
            inflight: HashSet::new(),
        }
    }

    /// Whether files go to workers at all.
    pub(crate) fn parallel(&self) -> bool {
        self.jobs.is_some()
    }

    /// Whether a file at `rel` may still be being written.
    pub(crate) fn pending(&self, rel: &str) -> bool {
        self.inflight.contains(rel)
    }

    /// Hands a file to a worker (or writes it here without workers).
    pub(crate) fn dispatch(&mut self, job: FileJob<'r>) -> Result<(), FsError> {
        let Some(tx) = &self.jobs else {
            return job.write();
        };
        self.inflight
            .insert(crate::lexpath::child(job.dir.rel(), &job.name));
        self.dispatched += 1;
        if tx.send(job).is_err() {
            return Err(FsError::path("/", "the file writers stopped"));
        }
        Ok(())
    }

    /// Waits until every file handed out is written; the first error.
    pub(crate) fn flush(&mut self) -> Result<(), FsError> {
        self.inflight.clear();
        let (lock, cv) = &*self.done;
        let mut d = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while d.count < self.dispatched {
            d = cv
                .wait(d)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        match d.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How many writers an extraction uses.
pub(crate) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}
