//! Project keys and app signatures: `quorum keygen` makes an ed25519 key pair
//! (the private key stays with the scientist, in a file only its owner can
//! read); `quorum submit` signs the app module with it. The signature is
//! over the 32 bytes of the module's SHA-256 digest, which is what workers
//! verify before running the module.
//!
//! Files: the private key is its 32-byte seed in base64 on one line (mode
//! 0600); the public key, `FILE.pub`, is its 32 bytes in base64 on one line,
//! the form `quorum-worker --trust-key PROJECT=BASE64` takes.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer as _, SigningKey};
use rand::Rng as _;
use sha2::Digest as _;

/// An app's signature and the public key that verifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub signature: Vec<u8>,
    pub public_key: Vec<u8>,
}

/// The public key file beside a private key file: `FILE.pub`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Makes a key pair: the private key at `out` (mode 0600, refusing to
/// replace an existing file) and the public key at `out.pub`. Returns the
/// public key in base64.
pub fn keygen(out: &Path) -> anyhow::Result<String> {
    let mut seed = [0_u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = SigningKey::from_bytes(&seed);
    let public = BASE64.encode(key.verifying_key().to_bytes());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| format!("cannot create the key file {}", out.display()))?;
    writeln!(file, "{}", BASE64.encode(seed)).with_context(|| format!("cannot write {}", out.display()))?;
    let public_path = public_key_path(out);
    std::fs::write(&public_path, format!("{public}\n"))
        .with_context(|| format!("cannot write {}", public_path.display()))?;
    Ok(public)
}

/// Reads a private key file, refusing one that group or others may read.
pub fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = crate::token::read_private(path, "key file")?;
    let seed = BASE64
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .with_context(|| format!("key file {} does not hold a key made by `quorum keygen`", path.display()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Signs `module` (its SHA-256 digest) with `key`.
pub fn sign(key: &SigningKey, module: &[u8]) -> Signed {
    let digest = sha2::Sha256::digest(module);
    Signed { signature: key.sign(&digest).to_bytes().to_vec(), public_key: key.verifying_key().to_bytes().to_vec() }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, VerifyingKey};

    use super::*;

    #[test]
    fn keygen_sign_and_verify() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("project.key");
        let public = keygen(&path).expect("keygen");
        assert_eq!(std::fs::metadata(&path).expect("metadata").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(public_key_path(&path)).expect("read").trim(), public);
        assert!(keygen(&path).is_err(), "an existing key is never replaced");

        let key = read_key(&path).expect("read the key");
        let signed = sign(&key, b"module");
        let verifying =
            VerifyingKey::from_bytes(&signed.public_key.clone().try_into().expect("32 bytes")).expect("a key");
        assert_eq!(BASE64.encode(&signed.public_key), public);
        let signature = Signature::from_slice(&signed.signature).expect("64 bytes");
        verifying.verify_strict(&sha2::Sha256::digest(b"module"), &signature).expect("verifies");
        assert!(verifying.verify_strict(&sha2::Sha256::digest(b"other"), &signature).is_err());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = format!("{:#}", read_key(&path).expect_err("an open key file"));
        assert!(error.contains("accessible by group or others (mode 644)"), "{error}");
    }
}
