//! Command-line arguments and environment variables of the app: the
//! project's (`args` and `[env]` of the manifest) and a work unit's (`args`
//! and `env` of a JSON Lines input), checked here with the coordinator's
//! rules (which checks them again).
//!
//! The app sees `argv = [project name, project args..., work unit args...]`
//! and the project's variables overridden by the work unit's, in name order.
//! Each part (the project's, a work unit's) holds at most [`MAX_ARGS`]
//! arguments, [`MAX_ENV`] variables and [`MAX_BYTES`] bytes, counted as the
//! app receives them (each argument and each `NAME=VALUE` with a terminating
//! NUL); no NUL anywhere, no `=` in a name, no empty name.

use std::collections::BTreeMap;

/// Most arguments of one part (the project's or a work unit's).
pub const MAX_ARGS: usize = 128;
/// Most environment variables of one part.
pub const MAX_ENV: usize = 128;
/// Most bytes of one part: arguments and `NAME=VALUE`s, each with its NUL.
pub const MAX_BYTES: usize = 32 * 1024;

/// Arguments and environment variables of one part, checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArgs {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl AppArgs {
    /// Checks them; the error is the field (`args` or `env`) and the problem,
    /// naming the offending entry.
    pub fn new(args: Vec<String>, env: BTreeMap<String, String>) -> Result<AppArgs, (&'static str, String)> {
        if let Some(index) = args.iter().position(|arg| arg.contains('\0')) {
            return Err(("args", format!("element {index} contains a NUL character")));
        }
        for (name, value) in &env {
            if name.is_empty() {
                return Err(("env", "a variable name must not be empty".to_owned()));
            }
            if name.contains('=') {
                return Err(("env", format!("variable name {name:?} contains '='")));
            }
            if name.contains('\0') {
                return Err(("env", format!("variable name {name:?} contains a NUL character")));
            }
            if value.contains('\0') {
                return Err(("env", format!("the value of {name} contains a NUL character")));
            }
        }
        if args.len() > MAX_ARGS {
            return Err(("args", format!("{} arguments, above the maximum of {MAX_ARGS}", args.len())));
        }
        if env.len() > MAX_ENV {
            return Err(("env", format!("{} variables, above the maximum of {MAX_ENV}", env.len())));
        }
        let bytes = args.iter().map(|arg| arg.len() + 1).sum::<usize>()
            + env.iter().map(|(name, value)| name.len() + value.len() + 2).sum::<usize>();
        if bytes > MAX_BYTES {
            return Err((
                "args",
                format!("arguments and environment take {bytes} bytes, above the maximum of {MAX_BYTES} (32 KiB)"),
            ));
        }
        Ok(AppArgs { args, env })
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The variables, in name order.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty() && self.env.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(args: &[&str], env: &[(&str, &str)], expected: Result<(), &str>) {
        let args = args.iter().map(|&arg| arg.to_owned()).collect();
        let env = env.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect();
        let actual = AppArgs::new(args, env).map(|_| ()).map_err(|(field, problem)| format!("{field}: {problem}"));
        assert_eq!(actual.as_ref().copied().map_err(String::as_str), expected);
    }

    #[test]
    fn validation() {
        check(&[], &[], Ok(()));
        check(&["--steps", "100", ""], &[("MODE", "fast"), ("EMPTY", "")], Ok(()));
        check(&["a", "b\0"], &[], Err("args: element 1 contains a NUL character"));
        check(&[], &[("", "x")], Err("env: a variable name must not be empty"));
        check(&[], &[("A=B", "x")], Err("env: variable name \"A=B\" contains '='"));
        check(&[], &[("A\0", "x")], Err("env: variable name \"A\\0\" contains a NUL character"));
        check(&[], &[("A", "\0")], Err("env: the value of A contains a NUL character"));
        check(&vec!["x"; MAX_ARGS], &[], Ok(()));
        check(&vec!["x"; MAX_ARGS + 1], &[], Err("args: 129 arguments, above the maximum of 128"));
        let names: Vec<String> = (0..=MAX_ENV).map(|i| format!("V{i}")).collect();
        let env: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "")).collect();
        check(&[], &env, Err("env: 129 variables, above the maximum of 128"));
        check(&["x".repeat(MAX_BYTES - 1).as_str()], &[], Ok(()));
        check(
            &["x".repeat(MAX_BYTES).as_str()],
            &[],
            Err("args: arguments and environment take 32769 bytes, above the maximum of 32768 (32 KiB)"),
        );
    }
}
