//! Names of projects and work units: the only place that says what a valid name is.

use std::fmt;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} name is empty")]
    Empty { what: &'static str },
    #[error("{what} name {name:?} is longer than {max} bytes")]
    TooLong { what: &'static str, name: String, max: usize },
    #[error("{what} name {name:?} has a character other than A-Z a-z 0-9 _ . -")]
    BadCharacter { what: &'static str, name: String },
}

/// A project's name: 1 to 64 characters from `[A-Za-z0-9_.-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ProjectName(String);

impl ProjectName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(name: &str) -> Result<ProjectName, NameError> {
        check("project", name, Self::MAX_LEN, |c| c.is_ascii_alphanumeric() || "_.-".contains(c))?;
        Ok(ProjectName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A work unit's name, unique within its project: 1 to 256 printable characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkUnitName(String);

impl WorkUnitName {
    pub const MAX_LEN: usize = 256;

    pub fn parse(name: &str) -> Result<WorkUnitName, NameError> {
        check("work unit", name, Self::MAX_LEN, |c| !c.is_control())?;
        Ok(WorkUnitName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

fn check(what: &'static str, name: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if name.len() > max {
        return Err(NameError::TooLong { what, name: name.to_owned(), max });
    }
    if !name.chars().all(allowed) {
        return Err(NameError::BadCharacter { what, name: name.to_owned() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert!(ProjectName::parse("primes-1.v2_x").is_ok());
        assert_eq!(ProjectName::parse(""), Err(NameError::Empty { what: "project" }));
        assert!(matches!(ProjectName::parse("a b"), Err(NameError::BadCharacter { .. })));
        assert!(matches!(ProjectName::parse(&"a".repeat(65)), Err(NameError::TooLong { .. })));
    }

    #[test]
    fn work_unit_names() {
        assert!(WorkUnitName::parse("0-50000").is_ok());
        assert!(WorkUnitName::parse("file name.txt").is_ok());
        assert!(matches!(WorkUnitName::parse("a\nb"), Err(NameError::BadCharacter { .. })));
    }
}
