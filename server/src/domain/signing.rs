//! Signed apps: a project's app module may carry an ed25519 signature by the
//! scientist's project key, over the 32 bytes of the module's SHA-256
//! digest. The coordinator checks it at submission and hands it to workers
//! with every copy; workers verify it before running and pin the key. The
//! coordinator never holds the private key, so it cannot sign another module.

use ed25519_dalek::{Signature, VerifyingKey};

use super::Digest;

/// Length of an ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;
/// Length of an ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

/// Why a submitted signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("app_signature and app_public_key go together: give both or neither")]
    Incomplete,
    #[error("app_public_key is {0} bytes, not an ed25519 public key ({PUBLIC_KEY_BYTES} bytes)")]
    BadPublicKey(usize),
    #[error("app_public_key is not a valid ed25519 public key")]
    InvalidPublicKey,
    #[error("app_signature is {0} bytes, not an ed25519 signature ({SIGNATURE_BYTES} bytes)")]
    BadSignature(usize),
    #[error("app_signature does not verify with app_public_key over the module's SHA-256 digest")]
    DoesNotVerify,
}

/// A signature of an app module that verifies with its public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSignature {
    signature: Vec<u8>,
    public_key: Vec<u8>,
}

impl AppSignature {
    /// Checks `signature` by `public_key` over the module whose digest is
    /// `digest`. Both empty: the app is unsigned (`None`).
    pub fn verify(
        digest: &Digest,
        signature: &[u8],
        public_key: &[u8],
    ) -> Result<Option<AppSignature>, SignatureError> {
        match (signature.is_empty(), public_key.is_empty()) {
            (true, true) => return Ok(None),
            (false, false) => {}
            _ => return Err(SignatureError::Incomplete),
        }
        let key: &[u8; PUBLIC_KEY_BYTES] =
            public_key.try_into().map_err(|_| SignatureError::BadPublicKey(public_key.len()))?;
        let key = VerifyingKey::from_bytes(key).map_err(|_| SignatureError::InvalidPublicKey)?;
        let signature_value =
            Signature::from_slice(signature).map_err(|_| SignatureError::BadSignature(signature.len()))?;
        let message = hex::decode(digest.as_str()).map_err(|_| SignatureError::DoesNotVerify)?;
        key.verify_strict(&message, &signature_value).map_err(|_| SignatureError::DoesNotVerify)?;
        Ok(Some(AppSignature { signature: signature.to_vec(), public_key: public_key.to_vec() }))
    }

    /// A signature read back from the store (checked when it was stored).
    pub fn from_stored(signature: Vec<u8>, public_key: Vec<u8>) -> AppSignature {
        AppSignature { signature, public_key }
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }

    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;
    use crate::domain::app::digest_of;

    #[test]
    fn verify() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let digest = digest_of(b"module");
        let signature = key.sign(&hex::decode(digest.as_str()).expect("hex")).to_bytes();
        let other = digest_of(b"another module");
        let check = |digest: &Digest, signature: &[u8], public: &[u8], expected: Result<bool, SignatureError>| {
            let actual = AppSignature::verify(digest, signature, public).map(|signed| signed.is_some());
            assert_eq!(actual, expected);
        };
        check(&digest, &signature, &public, Ok(true));
        check(&digest, &[], &[], Ok(false));
        check(&other, &signature, &public, Err(SignatureError::DoesNotVerify));
        check(&digest, &signature, &[], Err(SignatureError::Incomplete));
        check(&digest, &[], &public, Err(SignatureError::Incomplete));
        check(&digest, &signature, &public[..31], Err(SignatureError::BadPublicKey(31)));
        check(&digest, &signature[..63], &public, Err(SignatureError::BadSignature(63)));
        let stranger = SigningKey::from_bytes(&[8; 32]).verifying_key().to_bytes();
        check(&digest, &signature, &stranger, Err(SignatureError::DoesNotVerify));
    }
}
