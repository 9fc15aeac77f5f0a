//! An app: a WebAssembly module, identified by the SHA-256 of its bytes and
//! checked to be a WASI command before anything is stored.

use sha2::{Digest as _, Sha256};
use wasmparser::{ExternalKind, Parser, Payload, Validator, WasmFeatures};

use super::Digest;

/// Largest app module accepted.
pub const MAX_MODULE_BYTES: usize = 64 << 20;

/// Why a module was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppError {
    #[error("app module is empty")]
    Empty,
    #[error("app module is {0} bytes, above the maximum of {MAX_MODULE_BYTES}")]
    TooLarge(usize),
    #[error("app is not a valid WebAssembly module: {0}")]
    Invalid(String),
    #[error("app has no exported function `_start` (it must be a WASI command module)")]
    NoStart,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_hex(hex::encode(Sha256::digest(bytes)))
}

/// Checks that `module` is a valid core WebAssembly module (no threads, no
/// relaxed SIMD: both would break determinism) exporting a `_start` function.
pub fn check_module(module: &[u8]) -> Result<(), AppError> {
    if module.is_empty() {
        return Err(AppError::Empty);
    }
    if module.len() > MAX_MODULE_BYTES {
        return Err(AppError::TooLarge(module.len()));
    }
    let features = WasmFeatures::default()
        - WasmFeatures::THREADS
        - WasmFeatures::RELAXED_SIMD
        - WasmFeatures::SHARED_EVERYTHING_THREADS;
    Validator::new_with_features(features).validate_all(module).map_err(|e| AppError::Invalid(e.to_string()))?;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| AppError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding: wasmparser::Encoding::Component, .. } => {
                return Err(AppError::Invalid("a component, not a core module".into()));
            }
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.map_err(|e| AppError::Invalid(e.to_string()))?;
                    if export.name == "_start" && export.kind == ExternalKind::Func {
                        return Ok(());
                    }
                }
            }
            _ => {}
        }
    }
    Err(AppError::NoStart)
}

#[cfg(test)]
mod tests {
    use super::*;

    // (module (func (export "_start")))
    const COMMAND: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00,
        0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];
    // (module (func (export "main")))
    const NO_START: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x03, 0x02, 0x01, 0x00,
        0x07, 0x08, 0x01, 0x04, b'm', b'a', b'i', b'n', 0x00, 0x00, 0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b,
    ];

    #[test]
    fn accepts_a_command_module() {
        assert_eq!(check_module(COMMAND), Ok(()));
    }

    #[test]
    fn refuses_bad_modules() {
        assert_eq!(check_module(b""), Err(AppError::Empty));
        assert!(matches!(check_module(b"not wasm at all"), Err(AppError::Invalid(_))));
        assert!(matches!(check_module(&COMMAND[..COMMAND.len() - 1]), Err(AppError::Invalid(_))));
        assert_eq!(check_module(NO_START), Err(AppError::NoStart));
    }

    #[test]
    fn digest_is_lowercase_hex_sha256() {
        assert_eq!(digest_of(b"abc").as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
