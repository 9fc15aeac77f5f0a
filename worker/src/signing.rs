//! Whether to run an app module: the signature check the worker makes before
//! every task, a pure function of the assignment, the module and what the
//! worker trusts.
//!
//! Policy:
//! - A signed app runs only if its ed25519 signature (over the 32 bytes of
//!   the module's SHA-256 digest) verifies with the key it came with, and
//!   that key is the project's trusted key (`--trust-key PROJECT=BASE64`)
//!   or, without one, the key pinned for this coordinator and project the
//!   first time (pinned then).
//! - An unsigned app runs unless the worker requires signatures
//!   (`--require-signed`) or the project's key is trusted or pinned: a
//!   project that signed once cannot silently stop signing.
//!
//! A refusal names its reason; the task is reported as a client error and
//! nothing runs.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// What the worker trusts, from its flags.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Keys given with `--trust-key PROJECT=BASE64`, by project name.
    pub keys: HashMap<String, [u8; 32]>,
    /// `--require-signed`: refuse unsigned apps.
    pub require_signed: bool,
}

/// Parses `PROJECT=BASE64` (a 32-byte ed25519 public key, as `quorum keygen` prints it).
pub fn parse_trust_key(text: &str) -> Result<(String, [u8; 32]), String> {
    let (project, key) = text.split_once('=').ok_or("expected PROJECT=BASE64")?;
    if project.is_empty() {
        return Err("empty project name".to_owned());
    }
    let bytes = BASE64.decode(key.trim()).map_err(|error| format!("not base64: {error}"))?;
    let key: [u8; 32] = bytes.try_into().map_err(|_| "not a 32-byte ed25519 public key".to_owned())?;
    VerifyingKey::from_bytes(&key).map_err(|_| "not a valid ed25519 public key".to_owned())?;
    Ok((project.to_owned(), key))
}

/// The verdict on one module: `Ok(Some(key))` run it and pin `key` (if not
/// pinned yet), `Ok(None)` run it (unsigned), `Err(reason)` refuse it.
pub fn check(
    project: &str,
    module: &[u8],
    signature: &[u8],
    public_key: &[u8],
    pinned: Option<&[u8]>,
    trust: &Trust,
) -> Result<Option<Vec<u8>>, String> {
    let trusted = trust.keys.get(project).map(|key| key.as_slice());
    let expected = trusted.or(pinned);
    if signature.is_empty() && public_key.is_empty() {
        if trust.require_signed {
            return Err("app refused: it is unsigned and this worker requires signed apps (--require-signed)".into());
        }
        if expected.is_some() {
            return Err(format!(
                "app refused: it is unsigned, but project {project:?} signed its app with a key this worker {}",
                if trusted.is_some() { "trusts" } else { "pinned" }
            ));
        }
        return Ok(None);
    }
    let key: [u8; 32] = public_key
        .try_into()
        .map_err(|_| format!("app refused: its public key is {} bytes, not 32", public_key.len()))?;
    let key_value = VerifyingKey::from_bytes(&key).map_err(|_| "app refused: invalid public key".to_owned())?;
    let signature_value = Signature::from_slice(signature)
        .map_err(|_| format!("app refused: its signature is {} bytes, not 64", signature.len()))?;
    let digest = Sha256::digest(module);
    if key_value.verify_strict(&digest, &signature_value).is_err() {
        return Err(format!(
            "app refused: signature does not verify (module sha256 {}, key {})",
            hex::encode(digest),
            BASE64.encode(key)
        ));
    }
    if let Some(expected) = expected
        && expected != key.as_slice()
    {
        return Err(format!(
            "app refused: project {project:?} key changed: signed by {}, but this worker {} {}",
            BASE64.encode(key),
            if trusted.is_some() { "trusts" } else { "pinned" },
            BASE64.encode(expected)
        ));
    }
    Ok(Some(key.to_vec()))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    #[test]
    fn verdicts() {
        let key_a = SigningKey::from_bytes(&[1; 32]);
        let key_b = SigningKey::from_bytes(&[2; 32]);
        let (a, b) = (key_a.verifying_key().to_bytes(), key_b.verifying_key().to_bytes());
        let module = b"module";
        let sign = |key: &SigningKey, module: &[u8]| key.sign(&Sha256::digest(module)).to_bytes().to_vec();
        let sig_a = sign(&key_a, module);
        let sig_b = sign(&key_b, module);
        let open = Trust::default();
        let strict = Trust { require_signed: true, ..Trust::default() };
        let trusting_a = Trust { keys: [("p".to_owned(), a)].into(), require_signed: false };
        // The verdict, with a refusal shortened to the words after "app refused: ".
        let check = |module: &[u8], sig: &[u8], key: &[u8], pinned: Option<&[u8]>, trust: &Trust| {
            super::check("p", module, sig, key, pinned, trust).map_err(|reason| {
                let reason = reason.strip_prefix("app refused: ").expect("refusals say so");
                reason.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            })
        };
        // Signed, first time: run and pin; then the same key runs.
        assert_eq!(check(module, &sig_a, &a, None, &open), Ok(Some(a.to_vec())));
        assert_eq!(check(module, &sig_a, &a, Some(&a), &open), Ok(Some(a.to_vec())));
        assert_eq!(check(module, &sig_a, &a, None, &trusting_a), Ok(Some(a.to_vec())));
        // A tampered module, a key changed since pinned or unlike the trusted one.
        assert_eq!(check(b"tampered", &sig_a, &a, None, &open), Err("signature does not".to_owned()));
        assert_eq!(check(module, &sig_b, &b, Some(&a), &open), Err("project \"p\" key".to_owned()));
        assert_eq!(check(module, &sig_b, &b, None, &trusting_a), Err("project \"p\" key".to_owned()));
        assert_eq!(check(module, &sig_a, &b, None, &open), Err("signature does not".to_owned()));
        // Unsigned: runs, unless signatures are required or the project signed before.
        assert_eq!(check(module, &[], &[], None, &open), Ok(None));
        assert_eq!(check(module, &[], &[], None, &strict), Err("it is unsigned".to_owned()));
        assert_eq!(check(module, &[], &[], Some(&a), &open), Err("it is unsigned,".to_owned()));
        assert_eq!(check(module, &[], &[], None, &trusting_a), Err("it is unsigned,".to_owned()));
        // Malformed.
        assert_eq!(check(module, &sig_a, &a[..5], None, &open), Err("its public key".to_owned()));
        assert_eq!(check(module, &sig_a[..5], &a, None, &open), Err("its signature is".to_owned()));
    }

    #[test]
    fn trust_keys() {
        let key = SigningKey::from_bytes(&[1; 32]).verifying_key().to_bytes();
        let text = format!("primes={}", BASE64.encode(key));
        assert_eq!(parse_trust_key(&text), Ok(("primes".to_owned(), key)));
        assert!(parse_trust_key("primes").is_err());
        assert!(parse_trust_key("=abc").is_err());
        assert!(parse_trust_key("primes=abc").is_err());
        assert!(parse_trust_key(&format!("p={}", BASE64.encode([0_u8; 31]))).is_err());
    }
}
