//! The build's local content store: blobs on disk named by digest, written
//! through a temporary file and renamed into place when their digest is known.

use super::{Digest, ImageError};
use std::path::{Path, PathBuf};

/// Blobs under `<dir>/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    /// Opens (creating) a store in `dir`.
    pub fn open(dir: &Path) -> Result<BlobStore, ImageError> {
        fs_err::create_dir_all(dir.join("sha256"))?;
        fs_err::create_dir_all(dir.join("tmp"))?;
        Ok(BlobStore {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the blob `digest` lives (whether or not it exists yet).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.algorithm()).join(digest.hex())
    }

    /// A new temporary file inside the store, to be committed with
    /// [`BlobStore::commit`] once its digest is known.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, ImageError> {
        let dir = self.dir.join("tmp");
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
            ImageError::Io(std::io::Error::new(
                e.kind(),
                format!("creating a temporary blob in {}: {e}", dir.display()),
            ))
        })
    }

    /// Moves a finished temporary file into place under `digest`.
    pub fn commit(
        &self,
        file: tempfile::NamedTempFile,
        digest: &Digest,
    ) -> Result<PathBuf, ImageError> {
        let dest = self.path(digest);
        file.persist(&dest).map_err(|e| {
            ImageError::Io(std::io::Error::new(
                e.error.kind(),
                format!("storing blob {digest} at {}: {}", dest.display(), e.error),
            ))
        })?;
        Ok(dest)
    }

    /// Puts blob `digest` of `from` (another store) into this one: a hard
    /// link on the same filesystem, else a copy renamed into place.
    pub fn link_from(&self, from: &BlobStore, digest: &Digest) -> Result<(), ImageError> {
        let to = self.path(digest);
        if to.exists() {
            return Ok(());
        }
        let source = from.path(digest);
        if fs_err::hard_link(&source, &to).is_err() {
            let tmp = self.temp_file()?;
            fs_err::copy(&source, tmp.path())?;
            self.commit(tmp, digest)?;
        }
        Ok(())
    }

    /// Stores small bytes (configs, manifests) and returns their digest.
    pub fn put(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::sha256(bytes);
        let path = self.path(&digest);
        if !path.exists() {
            let tmp = self.temp_file()?;
            fs_err::write(tmp.path(), bytes)?;
            self.commit(tmp, &digest)?;
        }
        Ok(digest)
    }
}
