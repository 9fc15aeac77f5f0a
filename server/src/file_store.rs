//! The coordinator's file store: input files (and, later, large output
//! files) on disk beside the database, content-addressed by SHA-256, one
//! copy of each content however many projects use it.
//!
//! Layout: `DB.files/` next to the database file `DB`, holding one file per
//! content named by its hex digest, and `DB.files/incoming/` for uploads in
//! progress. An upload is streamed to `incoming/`, hashed as it arrives,
//! checked against the digest and size the client announced, flushed to disk,
//! and only then renamed to its digest: a file under its digest's name is
//! always complete and verified. The database's `files` table records the
//! ones a project may name; a file on disk without a row (a crash between the
//! rename and the row) is harmless, and the next upload of the same bytes
//! completes it.
//!
//! Nothing here is held in memory whole: uploads and downloads go chunk by chunk.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::domain::Digest;

/// Size of the chunks files are streamed in.
pub const CHUNK_BYTES: usize = 1 << 20;

/// What can go wrong with a stored file.
#[derive(Debug, thiserror::Error)]
pub enum FileStoreError {
    #[error("the upload's bytes have digest {actual}, not the {announced} announced")]
    DigestMismatch { announced: String, actual: String },
    #[error("the upload holds {actual} bytes, not the {announced} announced")]
    SizeMismatch { announced: u64, actual: u64 },
    #[error("file {0} is not in the coordinator's file store")]
    Missing(String),
    #[error("offset {offset} is past the end of file {digest} ({size} bytes)")]
    OffsetPastEnd { digest: String, offset: u64, size: u64 },
    #[error("file store {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> FileStoreError + '_ {
    move |source| FileStoreError::Io { path: path.to_owned(), source }
}

/// The file store of one coordinator.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: PathBuf,
}

/// Distinguishes concurrent uploads' temporary files within one process.
static UPLOADS: AtomicU64 = AtomicU64::new(0);

impl FileStore {
    /// The store beside database `db_path` (`DB.files/`), created if missing;
    /// uploads a previous run left unfinished are removed.
    pub async fn beside(db_path: &Path) -> Result<FileStore, FileStoreError> {
        FileStore::open(FileStore::dir_beside(db_path)).await
    }

    /// The store's folder beside database `db_path` (`DB.files/`).
    pub fn dir_beside(db_path: &Path) -> PathBuf {
        crate::database::beside(db_path, ".files")
    }

    pub async fn open(dir: PathBuf) -> Result<FileStore, FileStoreError> {
        let incoming = dir.join("incoming");
        if tokio::fs::try_exists(&incoming).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&incoming).await.map_err(io_error(&incoming))?;
        }
        tokio::fs::create_dir_all(&incoming).await.map_err(io_error(&incoming))?;
        Ok(FileStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the file of `digest` lives (whether or not it is there).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.as_str())
    }

    /// Whether the file of `digest` is stored.
    pub async fn contains(&self, digest: &Digest) -> bool {
        tokio::fs::try_exists(self.path(digest)).await.unwrap_or(false)
    }

    /// Starts an upload of a file announced as `digest`, `size` bytes.
    pub async fn upload(&self, digest: Digest, size: u64) -> Result<Upload, FileStoreError> {
        let n = UPLOADS.fetch_add(1, Ordering::Relaxed);
        let temp = self.dir.join("incoming").join(format!("{}-{}-{n}", digest.as_str(), std::process::id()));
        let file = tokio::fs::File::create(&temp).await.map_err(io_error(&temp))?;
        Ok(Upload { file, temp, target: self.path(&digest), digest, size, written: 0, hasher: Sha256::new() })
    }

    /// Opens the file of `digest` at `offset`, with its size.
    pub async fn open_at(&self, digest: &Digest, offset: u64) -> Result<(tokio::fs::File, u64), FileStoreError> {
        let path = self.path(digest);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(FileStoreError::Missing(digest.to_string()));
            }
            Err(error) => return Err(io_error(&path)(error)),
        };
        let size = file.metadata().await.map_err(io_error(&path))?.len();
        if offset > size {
            return Err(FileStoreError::OffsetPastEnd { digest: digest.to_string(), offset, size });
        }
        file.seek(io::SeekFrom::Start(offset)).await.map_err(io_error(&path))?;
        Ok((file, size))
    }

    /// Reads the next chunk (at most [`CHUNK_BYTES`]) of an open file; empty at the end.
    pub async fn read_chunk(file: &mut tokio::fs::File) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0; CHUNK_BYTES];
        let mut filled = 0;
        while filled < chunk.len() {
            let n = file.read(&mut chunk[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        chunk.truncate(filled);
        Ok(chunk)
    }
}

/// An upload in progress; dropped unfinished, it leaves only a temporary
/// file, removed at once (or at the next start).
pub struct Upload {
    file: tokio::fs::File,
    temp: PathBuf,
    target: PathBuf,
    digest: Digest,
    size: u64,
    written: u64,
    hasher: Sha256,
}

impl Upload {
    /// Appends a chunk; refuses bytes beyond the announced size.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), FileStoreError> {
        let written = self.written + chunk.len() as u64;
        if written > self.size {
            return Err(FileStoreError::SizeMismatch { announced: self.size, actual: written });
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await.map_err(io_error(&self.temp))?;
        self.written = written;
        Ok(())
    }

    /// Checks the size and the digest, makes the bytes durable, and puts the
    /// file under its digest's name.
    pub async fn finish(mut self) -> Result<(Digest, u64), FileStoreError> {
        if self.written != self.size {
            return Err(FileStoreError::SizeMismatch { announced: self.size, actual: self.written });
        }
        let actual = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if actual != self.digest.as_str() {
            return Err(FileStoreError::DigestMismatch { announced: self.digest.to_string(), actual });
        }
        self.file.flush().await.map_err(io_error(&self.temp))?;
        self.file.sync_all().await.map_err(io_error(&self.temp))?;
        tokio::fs::rename(&self.temp, &self.target).await.map_err(io_error(&self.target))?;
        if let Some(dir) = self.target.parent()
            && let Ok(dir) = tokio::fs::File::open(dir).await
        {
            dir.sync_all().await.map_err(io_error(&self.target))?;
        }
        Ok((self.digest.clone(), self.size))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // After `finish` the temporary file was renamed: nothing to remove.
        let _ = std::fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_of(bytes: &[u8]) -> Digest {
        Digest::from_hex(hex::encode(Sha256::digest(bytes)))
    }

    #[tokio::test]
    async fn an_upload_lands_under_its_digest_only_when_verified() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::beside(&dir.path().join("quorum.db")).await.unwrap();
        let bytes = vec![7u8; CHUNK_BYTES + 10];
        let digest = digest_of(&bytes);

        let mut upload = store.upload(digest.clone(), bytes.len() as u64).await.unwrap();
        upload.write(&bytes[..100]).await.unwrap();
        drop(upload);
        assert!(!store.contains(&digest).await, "an unfinished upload is not stored");

        let wrong = digest_of(b"other");
        let mut upload = store.upload(wrong.clone(), bytes.len() as u64).await.unwrap();
        upload.write(&bytes).await.unwrap();
        assert!(matches!(upload.finish().await, Err(FileStoreError::DigestMismatch { .. })));
        assert!(!store.contains(&wrong).await);

        let mut upload = store.upload(digest.clone(), 5).await.unwrap();
        assert!(matches!(upload.write(&bytes).await, Err(FileStoreError::SizeMismatch { .. })));
        drop(upload);

        let mut upload = store.upload(digest.clone(), bytes.len() as u64).await.unwrap();
        for chunk in bytes.chunks(4096) {
            upload.write(chunk).await.unwrap();
        }
        assert_eq!(upload.finish().await.unwrap(), (digest.clone(), bytes.len() as u64));
        assert!(store.contains(&digest).await);
        let leftovers = std::fs::read_dir(store.dir().join("incoming")).unwrap().count();
        assert_eq!(leftovers, 0, "no temporary file stays behind");

        let (mut file, size) = store.open_at(&digest, CHUNK_BYTES as u64).await.unwrap();
        assert_eq!(size, bytes.len() as u64);
        assert_eq!(FileStore::read_chunk(&mut file).await.unwrap().len(), 10);
        assert!(matches!(store.open_at(&digest, size + 1).await, Err(FileStoreError::OffsetPastEnd { .. })));
        assert!(matches!(store.open_at(&wrong, 0).await, Err(FileStoreError::Missing(_))));
    }
}
