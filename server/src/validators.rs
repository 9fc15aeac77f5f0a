//! Custom validators: WebAssembly modules supplied by projects that say
//! whether two outputs agree. They run in the same deterministic sandbox as
//! apps (`quorum-sandbox`), compiled once per module and cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use quorum_sandbox::{Sandbox, Validator};

use crate::domain::ResultId;
use crate::domain::lifecycle::ResultCopy;
use crate::domain::validator::Comparator;

/// Why a custom validator could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot start the WebAssembly engine: {0}")]
    Engine(String),
    #[error("custom validator {digest}: {message}")]
    Module { digest: String, message: String },
}

/// Compiled custom validators by module digest, and the engine that runs them.
#[derive(Clone, Default)]
pub struct Validators {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    sandbox: Option<Arc<Sandbox>>,
    compiled: HashMap<String, Arc<Validator>>,
}

impl Validators {
    /// The compiled validator for `digest`, compiling `module()` the first time.
    pub fn get(&self, digest: &str, module: impl FnOnce() -> Vec<u8>) -> Result<Arc<Validator>, Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(validator) = inner.compiled.get(digest) {
            return Ok(validator.clone());
        }
        let sandbox = match &inner.sandbox {
            Some(sandbox) => sandbox.clone(),
            None => {
                let sandbox = Arc::new(Sandbox::new().map_err(|e| Error::Engine(e.to_string()))?);
                inner.sandbox = Some(sandbox.clone());
                sandbox
            }
        };
        let validator = Arc::new(
            Validator::new(&sandbox, &module())
                .map_err(|e| Error::Module { digest: digest.to_owned(), message: e.to_string() })?,
        );
        inner.compiled.insert(digest.to_owned(), validator.clone());
        Ok(validator)
    }
}

/// Compares outputs with a project's validator module. A comparison that
/// fails (trap, limit) counts as disagreement and is logged: it cannot be
/// blamed on either result.
pub struct Custom {
    pub validator: Arc<Validator>,
    /// The output of every successful result of the work unit.
    pub outputs: HashMap<ResultId, Vec<u8>>,
}

impl Comparator for Custom {
    fn outputs_agree(&self, a: &ResultCopy, b: &ResultCopy) -> bool {
        let (Some(output_a), Some(output_b)) = (self.outputs.get(&a.id), self.outputs.get(&b.id)) else {
            return false;
        };
        match self.validator.compare(output_a, output_b) {
            Ok(agree) => agree,
            Err(error) => {
                tracing::warn!(result_a = %a.id, result_b = %b.id, %error, "custom validator failed; counted as disagreement");
                false
            }
        }
    }
}
