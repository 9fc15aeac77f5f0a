//! Command-line arguments and environment variables of an app: a project's
//! and a work unit's ([`AppArgs`], checked on construction), and the
//! command line and environment one copy runs with ([`merge`]).
//!
//! They are part of the work unit, so every copy gets the same ones and
//! execution stays deterministic. The app sees
//! `argv = [project name, project args..., work unit args...]` and the
//! project's variables overridden by the work unit's, in name order.
//!
//! Limits, for a project's part and for a work unit's part alike (so the app
//! sees at most twice as much, plus argv\[0\]): [`MAX_ARGS`] arguments,
//! [`MAX_ENV`] variables and [`MAX_BYTES`] bytes, counted as WASI hands them
//! to the app (each argument and each `NAME=VALUE` with a terminating NUL).

use std::collections::BTreeMap;

/// Most arguments of one part (the project's or a work unit's).
pub const MAX_ARGS: usize = 128;
/// Most environment variables of one part.
pub const MAX_ENV: usize = 128;
/// Most bytes of one part: arguments and `NAME=VALUE`s, each with its NUL.
pub const MAX_BYTES: usize = 32 * 1024;

/// What is wrong with some arguments or variables; each names the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgsError {
    #[error("args[{index}] contains a NUL character")]
    NulInArg { index: usize },
    #[error("env[{index}]: a variable name must not be empty")]
    EmptyName { index: usize },
    #[error("env[{index}]: variable name {name:?} contains '='")]
    EqualsInName { index: usize, name: String },
    #[error("env[{index}]: variable name {name:?} contains a NUL character")]
    NulInName { index: usize, name: String },
    #[error("env[{index}]: the value of {name} contains a NUL character")]
    NulInValue { index: usize, name: String },
    #[error("env[{index}]: variable {name} is given twice")]
    DuplicateName { index: usize, name: String },
    #[error("{count} arguments, above the maximum of {MAX_ARGS}")]
    TooManyArgs { count: usize },
    #[error("{count} environment variables, above the maximum of {MAX_ENV}")]
    TooManyEnv { count: usize },
    #[error("arguments and environment take {bytes} bytes, above the maximum of {MAX_BYTES}")]
    TooLarge { bytes: usize },
}

/// One part of an app's arguments and environment: the project's or a work
/// unit's. Invariants: no NUL anywhere, variable names non-empty, unique and
/// without `=`, within [`MAX_ARGS`], [`MAX_ENV`] and [`MAX_BYTES`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppArgs {
    args: Vec<String>,
    env: BTreeMap<String, String>,
}

impl AppArgs {
    /// Checks arguments and variables (in the order given, so the error
    /// names the first offending entry by its index).
    pub fn new(args: Vec<String>, env: Vec<(String, String)>) -> Result<AppArgs, ArgsError> {
        if let Some(index) = args.iter().position(|arg| arg.contains('\0')) {
            return Err(ArgsError::NulInArg { index });
        }
        let mut map = BTreeMap::new();
        for (index, (name, value)) in env.into_iter().enumerate() {
            if name.is_empty() {
                return Err(ArgsError::EmptyName { index });
            }
            if name.contains('=') {
                return Err(ArgsError::EqualsInName { index, name });
            }
            if name.contains('\0') {
                return Err(ArgsError::NulInName { index, name });
            }
            if value.contains('\0') {
                return Err(ArgsError::NulInValue { index, name });
            }
            if map.contains_key(&name) {
                return Err(ArgsError::DuplicateName { index, name });
            }
            map.insert(name, value);
        }
        if args.len() > MAX_ARGS {
            return Err(ArgsError::TooManyArgs { count: args.len() });
        }
        if map.len() > MAX_ENV {
            return Err(ArgsError::TooManyEnv { count: map.len() });
        }
        let bytes = args.iter().map(|arg| arg.len() + 1).sum::<usize>()
            + map.iter().map(|(name, value)| name.len() + value.len() + 2).sum::<usize>();
        if bytes > MAX_BYTES {
            return Err(ArgsError::TooLarge { bytes });
        }
        Ok(AppArgs { args, env: map })
    }

    pub fn is_empty(&self) -> bool {
        self.args.is_empty() && self.env.is_empty()
    }

    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// The variables, in name order.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.env
    }
}

/// A copy's command line (`argv`, argv\[0\] included) and environment
/// variables (in name order), as [`merge`] builds them.
pub type Merged = (Vec<String>, Vec<(String, String)>);

/// What one copy runs with: `argv = [program, project args..., work unit
/// args...]` and the project's variables overridden by the work unit's, in
/// name order.
pub fn merge(program: &str, project: &AppArgs, work_unit: &AppArgs) -> Merged {
    let argv = std::iter::once(program.to_owned())
        .chain(project.args.iter().cloned())
        .chain(work_unit.args.iter().cloned())
        .collect();
    let mut env = project.env.clone();
    env.extend(work_unit.env.iter().map(|(name, value)| (name.clone(), value.clone())));
    (argv, env.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|&item| item.to_owned()).collect()
    }

    fn check(args: &[&str], env: &[(&str, &str)], expected: Result<(), &str>) {
        let env = env.iter().map(|&(name, value)| (name.to_owned(), value.to_owned())).collect();
        let actual = AppArgs::new(strings(args), env).map(|_| ()).map_err(|error| error.to_string());
        assert_eq!(actual.as_ref().copied().map_err(String::as_str), expected, "args {args:?}");
    }

    #[test]
    fn validation() {
        check(&[], &[], Ok(()));
        check(&["--steps", "100", ""], &[("MODE", "fast"), ("EMPTY", "")], Ok(()));
        check(&["ok", "a\0b"], &[], Err("args[1] contains a NUL character"));
        check(&[], &[("A", "1"), ("", "x")], Err("env[1]: a variable name must not be empty"));
        check(&[], &[("A=B", "x")], Err("env[0]: variable name \"A=B\" contains '='"));
        check(&[], &[("A\0", "x")], Err("env[0]: variable name \"A\\0\" contains a NUL character"));
        check(&[], &[("A", "x\0")], Err("env[0]: the value of A contains a NUL character"));
        check(&[], &[("A", "1"), ("A", "2")], Err("env[1]: variable A is given twice"));
        let many: Vec<&str> = vec!["x"; MAX_ARGS + 1];
        check(&many, &[], Err("129 arguments, above the maximum of 128"));
        check(&many[..MAX_ARGS], &[], Ok(()));
        let names: Vec<String> = (0..=MAX_ENV).map(|i| format!("V{i}")).collect();
        let env: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "")).collect();
        check(&[], &env, Err("129 environment variables, above the maximum of 128"));
        // Exactly at the byte limit, then one byte over.
        let big = "x".repeat(MAX_BYTES - 1);
        check(&[&big], &[], Ok(()));
        let bigger = "x".repeat(MAX_BYTES);
        check(&[&bigger], &[], Err("arguments and environment take 32769 bytes, above the maximum of 32768"));
        let value = "v".repeat(MAX_BYTES - 3);
        check(&[], &[("A", &value)], Ok(()));
    }

    #[test]
    fn merging() {
        let project = AppArgs::new(
            strings(&["--steps", "100"]),
            vec![("MODE".into(), "fast".into()), ("LEVEL".into(), "1".into())],
        )
        .expect("valid");
        let work_unit =
            AppArgs::new(strings(&["--part", "3"]), vec![("LEVEL".into(), "9".into()), ("A".into(), "a".into())])
                .expect("valid");
        let (argv, env) = merge("demo", &project, &work_unit);
        assert_eq!(argv, strings(&["demo", "--steps", "100", "--part", "3"]));
        assert_eq!(env, vec![("A".into(), "a".into()), ("LEVEL".into(), "9".into()), ("MODE".into(), "fast".into())]);
        let (argv, env) = merge("demo", &AppArgs::default(), &AppArgs::default());
        assert_eq!(argv, strings(&["demo"]));
        assert!(env.is_empty());
    }
}
