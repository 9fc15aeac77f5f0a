//! Names of projects, work units and volunteer accounts, and the text hosts
//! register with: the only place that says what a valid name is.

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
    /// A control character (`char::is_control`: C0 and C1 controls, DEL,
    /// ANSI escapes, the U+001F unit separator...) in text that is stored and
    /// shown to operators.
    #[error("{text:?} contains the control character U+{:04X}; control characters are refused", u32::from(*character))]
    ControlCharacter { text: String, character: char },
}

/// Checks text a host registers with (its name, OS, engine): no control
/// character, so nothing it sends can drive an operator's terminal or join
/// with other identifiers.
pub fn check_printable(text: &str) -> Result<(), NameError> {
    match text.chars().find(|c| c.is_control()) {
        Some(character) => Err(NameError::ControlCharacter { text: text.to_owned(), character }),
        None => Ok(()),
    }
}

/// A volunteer account, in its canonical form: trimmed of surrounding
/// whitespace and Unicode-lowercased, so that "Alice", " alice" and "ALICE"
/// are one account. Stored canonical, so SQL equality is the comparison.
/// Empty: the host stands alone. Control characters are refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Account(String);

impl Account {
    pub fn parse(raw: &str) -> Result<Account, NameError> {
        check_printable(raw)?;
        Ok(Account(Account::canonical(raw)))
    }

    /// The canonical spelling of `raw` (also applied to accounts stored
    /// before accounts were canonical).
    pub fn canonical(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
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
    fn control_characters_are_refused() {
        for (text, refused) in [
            ("host-1", None),
            ("Ünïcode ok", None),
            ("ev\u{1b}[31mil", Some('\u{1b}')),
            ("a\u{1f}b", Some('\u{1f}')),
            ("tab\t", Some('\t')),
            ("new\nline", Some('\n')),
            ("del\u{7f}", Some('\u{7f}')),
            ("c1\u{9b}", Some('\u{9b}')),
        ] {
            let expected = refused.map(|character| NameError::ControlCharacter { text: text.to_owned(), character });
            assert_eq!(check_printable(text).err(), expected, "{text:?}");
            assert_eq!(Account::parse(text).err(), expected, "{text:?}");
        }
        let message = check_printable("a\u{1b}b").unwrap_err().to_string();
        assert_eq!(message, "\"a\\u{1b}b\" contains the control character U+001B; control characters are refused");
    }

    #[test]
    fn accounts_have_one_canonical_form() {
        for (raw, canonical) in [
            ("alice", "alice"),
            ("  Alice ", "alice"),
            ("ALICE", "alice"),
            ("Ünïcode", "ünïcode"),
            ("", ""),
            ("  ", ""),
        ] {
            assert_eq!(Account::parse(raw).map(Account::into_string), Ok(canonical.to_owned()), "{raw:?}");
        }
    }

    #[test]
    fn work_unit_names() {
        assert!(WorkUnitName::parse("0-50000").is_ok());
        assert!(WorkUnitName::parse("file name.txt").is_ok());
        assert!(matches!(WorkUnitName::parse("a\nb"), Err(NameError::BadCharacter { .. })));
    }
}
