//! Compiled modules cached on disk, so a restarted worker runs its first task
//! of an app it has seen without compiling it again (80-120 ms per app).
//!
//! One file per (module digest, engine): `<digest>-<engine key>.cwasm` in the
//! cache directory, where the engine key hashes wasmtime's own compatibility
//! hash (its version, target and every compiler setting, NaN canonicalization
//! among them) and the revision of quorum's patch to wasmtime's code
//! generation, so a file of another engine configuration or of an older
//! wasmtime is not looked at. The file holds that key again, the SHA-256 of
//! the serialized module, then the module; it is used only if the key is
//! this engine's (wasmtime's own check does not cover NaN canonicalization:
//! it accepts such a module from the other engine, tested), the checksum
//! matches and wasmtime accepts it, else it is deleted and the module
//! compiled again. Written to a temporary file and renamed, so a crash leaves
//! no half-written file under a real name.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// A directory of compiled modules.
#[derive(Debug, Clone)]
pub struct CompiledCache {
    dir: PathBuf,
}

/// What [`CompiledCache::load`] found.
pub enum Loaded {
    Module(Module),
    /// No file for this module and engine.
    Missing,
    /// A file that failed its checksum or that wasmtime refused: deleted.
    Refused(String),
}

impl CompiledCache {
    pub fn new(dir: impl Into<PathBuf>) -> CompiledCache {
        CompiledCache { dir: dir.into() }
    }

    /// The file of `digest` compiled by `engine`.
    pub fn path(&self, engine: &Engine, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{:016x}.cwasm", engine_key(engine)))
    }

    /// The module `digest` as `engine` compiled it before, if a good file is there.
    pub fn load(&self, engine: &Engine, digest: &str) -> Loaded {
        let path = self.path(engine, digest);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) => return Loaded::Missing,
        };
        let refuse = |why: String| {
            let _ = std::fs::remove_file(&path);
            Loaded::Refused(why)
        };
        let Some((key, rest)) = bytes.split_first_chunk::<8>() else {
            return refuse("too short".into());
        };
        if u64::from_le_bytes(*key) != engine_key(engine) {
            return refuse("compiled by another engine configuration".into());
        }
        let Some((checksum, module)) = rest.split_at_checked(32) else {
            return refuse("too short".into());
        };
        if Sha256::digest(module).as_slice() != checksum {
            return refuse("checksum mismatch".into());
        }
        // SAFETY: wasmtime requires the bytes to come from `Module::serialize`
        // of a compatible engine. They are what `store` wrote (checksummed
        // above) in the worker's own state directory, and wasmtime checks the
        // engine's version and settings itself before using them.
        match unsafe { Module::deserialize(engine, module) } {
            Ok(module) => Loaded::Module(module),
            Err(error) => refuse(format!("{error:#}")),
        }
    }

    /// Keeps `module` (of `digest`, compiled by `engine`) for the next start.
    pub fn store(&self, engine: &Engine, digest: &str, module: &Module) -> std::io::Result<()> {
        let serialized = module.serialize().map_err(std::io::Error::other)?;
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(engine, digest);
        let temporary = path.with_extension("cwasm.tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&engine_key(engine).to_le_bytes())?;
        file.write_all(&Sha256::digest(&serialized))?;
        file.write_all(&serialized)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    }

    /// Deletes every compiled file of `digest` (its app left the app cache).
    pub fn remove(&self, digest: &str) -> std::io::Result<()> {
        for (path, _) in self.files(digest)? {
            remove_if_there(&path)?;
        }
        Ok(())
    }

    /// Bytes the compiled files of `digest` take (every engine's).
    pub fn size_of(&self, digest: &str) -> std::io::Result<u64> {
        Ok(self.files(digest)?.iter().map(|(_, size)| size).sum())
    }

    /// The compiled files of `digest`, with their sizes.
    fn files(&self, digest: &str) -> std::io::Result<Vec<(PathBuf, u64)>> {
        let prefix = format!("{digest}-");
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        Ok(entries
            .flatten()
            .filter(|entry| entry.file_name().to_str().is_some_and(|name| name.starts_with(&prefix)))
            .map(|entry| (entry.path(), entry.metadata().map_or(0, |m| m.len())))
            .collect())
    }
}

/// The revision of quorum's change to wasmtime's code generation
/// (vendor/README.md): wasmtime's compatibility hash cannot see it, so a
/// module compiled before a change of it is compiled again.
const CODEGEN_REVISION: &str = "preserve-all fuel and epoch checks, cold out-of-gas block, 2";

/// A hash of wasmtime's compatibility hash of `engine` (its version, target
/// and settings) and of [`CODEGEN_REVISION`].
fn engine_key(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    CODEGEN_REVISION.hash(&mut hasher);
    hasher.finish()
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}
