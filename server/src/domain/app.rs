//! An app: a WebAssembly module, identified by the SHA-256 of its bytes and
//! checked to be a WASI command that imports only what the sandbox provides
//! before anything is stored.

use sha2::{Digest as _, Sha256};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef, Validator, WasmFeatures};

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
    /// Imports the sandbox does not provide, as `module::name`, in the order
    /// of the module's import section: the module could run on no host.
    #[error(
        "module imports what the sandbox does not provide: {} (it provides the functions of WASI preview 1 only)",
        .0.join(", ")
    )]
    UnknownImports(Vec<String>),
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn digest_of(bytes: &[u8]) -> Digest {
    Digest::from_hex(hex::encode(Sha256::digest(bytes)))
}

/// Checks that `module` is a valid core WebAssembly module (no threads, no
/// relaxed SIMD: both would break determinism) exporting a `_start` function
/// and importing only functions of `provided` (`(module, name)` pairs: the
/// sandbox's list, `quorum_sandbox::PROVIDED_IMPORTS`, given by the caller so
/// that the domain does not depend on the sandbox). Every import outside it
/// is named in the error.
pub fn check_module(module: &[u8], provided: &[(&str, &str)]) -> Result<(), AppError> {
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
    let mut has_start = false;
    let mut unknown = Vec::new();
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.map_err(|e| AppError::Invalid(e.to_string()))?;
        match payload {
            Payload::Version { encoding: wasmparser::Encoding::Component, .. } => {
                return Err(AppError::Invalid("a component, not a core module".into()));
            }
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    let import = import.map_err(|e| AppError::Invalid(e.to_string()))?;
                    let is_function = matches!(import.ty, TypeRef::Func(_));
                    if !(is_function && provided.contains(&(import.module, import.name))) {
                        unknown.push(format!("{}::{}", import.module, import.name));
                    }
                }
            }
            Payload::ExportSection(exports) => {
                for export in exports {
                    let export = export.map_err(|e| AppError::Invalid(e.to_string()))?;
                    has_start |= export.name == "_start" && export.kind == ExternalKind::Func;
                }
            }
            _ => {}
        }
    }
    if !unknown.is_empty() {
        return Err(AppError::UnknownImports(unknown));
    }
    if !has_start {
        return Err(AppError::NoStart);
    }
    Ok(())
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

    /// A stand-in for the sandbox's list.
    const PROVIDED: &[(&str, &str)] =
        &[("wasi_snapshot_preview1", "fd_write"), ("wasi_snapshot_preview1", "proc_exit")];

    fn check(wat: &str, expected: Result<(), AppError>) {
        let module = wat::parse_str(wat).expect("valid WAT");
        assert_eq!(check_module(&module, PROVIDED), expected, "{wat}");
    }

    #[test]
    fn accepts_a_command_module() {
        assert_eq!(check_module(COMMAND, PROVIDED), Ok(()));
    }

    #[test]
    fn refuses_bad_modules() {
        assert_eq!(check_module(b"", PROVIDED), Err(AppError::Empty));
        assert!(matches!(check_module(b"not wasm at all", PROVIDED), Err(AppError::Invalid(_))));
        assert!(matches!(check_module(&COMMAND[..COMMAND.len() - 1], PROVIDED), Err(AppError::Invalid(_))));
        assert_eq!(check_module(NO_START, PROVIDED), Err(AppError::NoStart));
    }

    #[test]
    fn imports_are_checked_against_the_provided_list() {
        let start = r#"(func (export "_start"))"#;
        check(
            &format!(
                r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) {start})"#
            ),
            Ok(()),
        );
        // Every offending import is named, in order; functions only.
        check(
            &format!(
                r#"(module
                     (import "env" "external_solver" (func))
                     (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                     (import "wasi_snapshot_preview1" "sock_open" (func (param i32 i32 i32) (result i32)))
                     (import "wasi_snapshot_preview1" "fd_write" (memory 1))
                     {start})"#
            ),
            Err(AppError::UnknownImports(vec![
                "env::external_solver".to_owned(),
                "wasi_snapshot_preview1::sock_open".to_owned(),
                "wasi_snapshot_preview1::fd_write".to_owned(),
            ])),
        );
        // Unknown imports are the first thing said, even without `_start`.
        check(r#"(module (import "env" "f" (func)))"#, Err(AppError::UnknownImports(vec!["env::f".to_owned()])));
        let message = AppError::UnknownImports(vec!["env::a".to_owned(), "env::b".to_owned()]).to_string();
        assert!(message.contains("env::a, env::b"), "{message}");
    }

    #[test]
    fn digest_is_lowercase_hex_sha256() {
        assert_eq!(digest_of(b"abc").as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
