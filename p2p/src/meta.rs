//! `FileMeta`: what the coordinator computes once per file, from its bytes,
//! and carries to workers in gRPC: the file's BLAKE3 hash (the root of the
//! tree every range a peer sends is verified against) and its size.

use std::fmt;
use std::io::Read;
use std::path::Path;

use crate::error::Error;

/// How many bytes `describe` reads at a time: the file is never whole in
/// memory.
const READ_BUFFER: usize = 1 << 20;

/// The first byte of the encoding, so a later format can be told apart.
const FORMAT_VERSION: u8 = 1;
const ENCODED_LEN: usize = 1 + 32 + 8;

/// A file as peers know it: its BLAKE3 hash and size.
///
/// The project's own digest of the file (SHA-256) stays the coordinator's
/// business; peers verify against the BLAKE3 tree, which can check any
/// 16 KiB range on its own, where a flat digest can check only the whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileMeta {
    hash: [u8; 32],
    size: u64,
}

/// Bytes that are no `FileMeta` encoding.
#[derive(Debug, thiserror::Error)]
#[error("not a file meta: {0}")]
pub struct ParseFileMetaError(&'static str);

impl FileMeta {
    /// Describes the file at `path`, reading it once in 1 MiB pieces.
    ///
    /// This reads and hashes the whole file: call it from a blocking thread
    /// (`tokio::task::spawn_blocking`), never on an async worker thread.
    pub fn describe(path: &Path) -> Result<FileMeta, Error> {
        let io_error = |source| Error::Io { path: path.to_owned(), source };
        let mut file = std::fs::File::open(path).map_err(io_error)?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0; READ_BUFFER];
        let mut size = 0u64;
        loop {
            let n = match file.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            };
            hasher.update(&buffer[..n]);
            size += n as u64;
        }
        Ok(FileMeta { hash: *hasher.finalize().as_bytes(), size })
    }

    /// The meta of bytes already in memory (tests and small files).
    pub fn of_bytes(bytes: &[u8]) -> FileMeta {
        FileMeta { hash: *blake3::hash(bytes).as_bytes(), size: bytes.len() as u64 }
    }

    /// The file's BLAKE3 hash.
    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The encoding carried in gRPC: a version byte, the hash, the size
    /// (little-endian), 41 bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(ENCODED_LEN);
        bytes.push(FORMAT_VERSION);
        bytes.extend_from_slice(&self.hash);
        bytes.extend_from_slice(&self.size.to_le_bytes());
        bytes
    }

    /// Parses [`FileMeta::to_bytes`]' encoding.
    pub fn from_bytes(bytes: &[u8]) -> Result<FileMeta, ParseFileMetaError> {
        if bytes.len() != ENCODED_LEN {
            return Err(ParseFileMetaError("wrong length"));
        }
        if bytes[0] != FORMAT_VERSION {
            return Err(ParseFileMetaError("unknown version"));
        }
        let hash = bytes[1..33].try_into().expect("the length was checked above");
        let size = u64::from_le_bytes(bytes[33..].try_into().expect("the length was checked above"));
        Ok(FileMeta { hash, size })
    }

    #[cfg(feature = "swarm")]
    pub(crate) fn blob_hash(&self) -> iroh_blobs::Hash {
        iroh_blobs::Hash::from_bytes(self.hash)
    }
}

impl fmt::Display for FileMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{} ({} bytes)", hex::encode(self.hash), self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_streams_to_the_same_hash_as_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        for size in [0usize, 1, READ_BUFFER - 1, READ_BUFFER, 3 * READ_BUFFER + 17] {
            let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let path = dir.path().join(format!("f{size}"));
            std::fs::write(&path, &bytes).unwrap();
            assert_eq!(FileMeta::describe(&path).unwrap(), FileMeta::of_bytes(&bytes), "{size}");
        }
    }

    #[test]
    fn bytes_round_trip_and_bad_encodings_are_refused() {
        let meta = FileMeta::of_bytes(b"quorum");
        assert_eq!(FileMeta::from_bytes(&meta.to_bytes()).unwrap(), meta);
        let check = |bytes: Vec<u8>, expected: &str| {
            let error = FileMeta::from_bytes(&bytes).unwrap_err();
            assert_eq!(error.to_string(), format!("not a file meta: {expected}"));
        };
        check(vec![], "wrong length");
        check(meta.to_bytes()[..40].to_vec(), "wrong length");
        let mut other_version = meta.to_bytes();
        other_version[0] = 2;
        check(other_version, "unknown version");
    }

    #[test]
    fn describe_names_a_missing_file() {
        let error = FileMeta::describe(Path::new("/nonexistent/quorum")).unwrap_err();
        assert!(error.to_string().starts_with("/nonexistent/quorum: "), "{error}");
    }
}
