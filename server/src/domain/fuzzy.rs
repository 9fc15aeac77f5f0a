//! Fuzzy comparison of outputs, for projects whose results are floating-point
//! numbers that honest hosts may print slightly differently.
//!
//! An output is parsed once, in the project's `Format`, into a `Parsed` value;
//! two parsed outputs agree when they have the same shape and every pair of
//! numbers is within the project's `Tolerance`. An output that does not parse
//! is an error, which the caller records as a validate error.
//!
//! Agreement within a tolerance is not transitive (a ~ b and b ~ c do not give
//! a ~ c); `validator::find_agreement` applies BOINC's rule with any relation,
//! taking each candidate in turn as a pivot, so it serves both validators.

use std::collections::BTreeMap;

/// How far apart two numbers may be and still agree: within `absolute` of each
/// other, or within `relative` times the larger magnitude.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Allowed difference as a fraction of the larger magnitude (`1e-9` is nine digits).
    relative: f64,
    /// Allowed difference in absolute terms, so that values near zero can agree.
    absolute: f64,
}

impl Tolerance {
    /// A tolerance; both bounds must be finite and non-negative. `(0.0, 0.0)`
    /// makes numbers agree only when they are equal (`0.0` equals `-0.0`).
    pub fn new(relative: f64, absolute: f64) -> Result<Tolerance, FuzzyError> {
        for (bound, value) in [("relative", relative), ("absolute", absolute)] {
            // `is_finite` is false for NaN too.
            let valid = value.is_finite() && value >= 0.0;
            if !valid {
                return Err(FuzzyError::InvalidTolerance { bound, value });
            }
        }
        Ok(Tolerance { relative, absolute })
    }

    pub fn relative(&self) -> f64 {
        self.relative
    }

    pub fn absolute(&self) -> f64 {
        self.absolute
    }

    /// Whether two numbers agree. NaN agrees only with NaN (whatever its bit
    /// pattern, which differs across CPUs), and an infinity only with the same
    /// infinity.
    fn numbers_agree(&self, a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() {
            return a.is_nan() && b.is_nan();
        }
        if a.is_infinite() || b.is_infinite() {
            return a == b;
        }
        // May overflow to infinity for far-apart huge numbers, which then
        // (correctly) exceeds any finite bound.
        let difference = (a - b).abs();
        difference <= self.absolute || difference <= self.relative * a.abs().max(b.abs())
    }
}

/// How a project's outputs are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Tokens separated by whitespace. A token that parses as an `f64` is a
    /// number (including `inf`, `-inf` and `NaN`); any other token is text and
    /// must be equal. The amount and kind of whitespace does not matter.
    Whitespace,
    /// One JSON value. Objects must have the same keys, arrays the same length,
    /// strings, booleans and nulls must be equal, numbers within tolerance.
    Json,
}

/// An output read in its project's format, ready to be compared.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed(Body);

#[derive(Clone, Debug, PartialEq)]
enum Body {
    Tokens(Vec<Token>),
    Json(JsonValue),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
}

/// A JSON value with its numbers already converted to `f64`, and its keys
/// sorted whatever map serde_json was built with.
#[derive(Clone, Debug, PartialEq)]
enum JsonValue {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<JsonValue>),
    Object(BTreeMap<String, JsonValue>),
}

/// Why an output or a tolerance was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FuzzyError {
    #[error("{bound} tolerance must be a finite non-negative number, not {value}")]
    InvalidTolerance { bound: &'static str, value: f64 },
    #[error("output is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    /// serde_json's message, which gives the line and column.
    #[error("output is not valid JSON: {0}")]
    NotJson(String),
}

/// Reads an output in `format`. Numbers are parsed exactly from their text:
/// `str::parse::<f64>` for tokens, serde_json's `f64` conversion for JSON
/// (which refuses numbers beyond the `f64` range).
pub fn parse(format: Format, output: &[u8]) -> Result<Parsed, FuzzyError> {
    let text = std::str::from_utf8(output).map_err(|e| FuzzyError::NotUtf8 { valid_up_to: e.valid_up_to() })?;
    let body = match format {
        Format::Whitespace => Body::Tokens(text.split_whitespace().map(token).collect()),
        Format::Json => {
            // serde_json limits nesting to 128 levels, which bounds the recursion in
            // `from_value` and `json_agree`.
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| FuzzyError::NotJson(e.to_string()))?;
            Body::Json(from_value(value)?)
        }
    };
    Ok(Parsed(body))
}

fn token(text: &str) -> Token {
    match text.parse::<f64>() {
        Ok(number) => Token::Number(number),
        Err(_) => Token::Text(text.to_owned()),
    }
}

fn from_value(value: serde_json::Value) -> Result<JsonValue, FuzzyError> {
    Ok(match value {
        serde_json::Value::Null => JsonValue::Null,
        serde_json::Value::Bool(b) => JsonValue::Bool(b),
        // `as_f64` is `None` only with serde_json's `arbitrary_precision`
        // feature (off here), for a number beyond the `f64` range.
        serde_json::Value::Number(number) => JsonValue::Number(
            number.as_f64().ok_or_else(|| FuzzyError::NotJson(format!("number {number} is out of range")))?,
        ),
        serde_json::Value::String(s) => JsonValue::String(s),
        serde_json::Value::Array(items) => {
            JsonValue::Array(items.into_iter().map(from_value).collect::<Result<_, _>>()?)
        }
        serde_json::Value::Object(map) => JsonValue::Object(
            map.into_iter().map(|(key, value)| Ok((key, from_value(value)?))).collect::<Result<_, FuzzyError>>()?,
        ),
    })
}

/// Whether two parsed outputs agree within `tolerance`. Outputs parsed in
/// different formats never agree. The relation is symmetric and reflexive but
/// not transitive.
pub fn agree(a: &Parsed, b: &Parsed, tolerance: &Tolerance) -> bool {
    match (&a.0, &b.0) {
        (Body::Tokens(a), Body::Tokens(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| tokens_agree(a, b, tolerance))
        }
        (Body::Json(a), Body::Json(b)) => json_agree(a, b, tolerance),
        (Body::Tokens(_), Body::Json(_)) | (Body::Json(_), Body::Tokens(_)) => false,
    }
}

fn tokens_agree(a: &Token, b: &Token, tolerance: &Tolerance) -> bool {
    match (a, b) {
        (Token::Number(a), Token::Number(b)) => tolerance.numbers_agree(*a, *b),
        (Token::Text(a), Token::Text(b)) => a == b,
        (Token::Number(_), Token::Text(_)) | (Token::Text(_), Token::Number(_)) => false,
    }
}

fn json_agree(a: &JsonValue, b: &JsonValue, tolerance: &Tolerance) -> bool {
    match (a, b) {
        (JsonValue::Null, JsonValue::Null) => true,
        (JsonValue::Bool(a), JsonValue::Bool(b)) => a == b,
        (JsonValue::Number(a), JsonValue::Number(b)) => tolerance.numbers_agree(*a, *b),
        (JsonValue::String(a), JsonValue::String(b)) => a == b,
        (JsonValue::Array(a), JsonValue::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| json_agree(a, b, tolerance))
        }
        // Both maps iterate in key order, so equal key sets pair up in step.
        (JsonValue::Object(a), JsonValue::Object(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|((key_a, a), (key_b, b))| key_a == key_b && json_agree(a, b, tolerance))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ResultId;

    use Format::{Json, Whitespace};

    fn tolerance(relative: f64, absolute: f64) -> Tolerance {
        Tolerance::new(relative, absolute).expect("test tolerances are valid")
    }

    /// Parses both outputs and compares them: `Ok(agree)`, or the first parse
    /// error. Also checks that agreement is symmetric and reflexive.
    fn check(format: Format, (relative, absolute): (f64, f64), a: &[u8], b: &[u8], expected: Result<bool, FuzzyError>) {
        let tolerance = tolerance(relative, absolute);
        let found = parse(format, a).and_then(|a| parse(format, b).map(|b| (a, b))).map(|(a, b)| {
            assert_eq!(agree(&a, &b, &tolerance), agree(&b, &a, &tolerance), "symmetry");
            assert!(agree(&a, &a, &tolerance) && agree(&b, &b, &tolerance), "reflexivity");
            agree(&a, &b, &tolerance)
        });
        let (a, b) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
        assert_eq!(found, expected, "{format:?} {a:?} vs {b:?} within {tolerance:?}");
    }

    const EXACT: (f64, f64) = (0.0, 0.0);

    fn not_json(message: &str) -> Result<bool, FuzzyError> {
        Err(FuzzyError::NotJson(message.to_owned()))
    }

    #[test]
    fn whitespace_outputs() {
        check(Whitespace, EXACT, b"1 2.5 -3", b"1 2.5 -3", Ok(true));
        check(Whitespace, EXACT, b"1 2.5 -3\n", b"  1\t2.50\n-3e0 ", Ok(true));
        check(Whitespace, EXACT, b"0.0", b"-0.0", Ok(true));
        check(Whitespace, EXACT, b"1.0", b"1.0000000000000002", Ok(false));
        check(Whitespace, EXACT, b"", b"", Ok(true));
        check(Whitespace, EXACT, b"", b" \n\t", Ok(true));
        // Within relative: 1e-9 of the larger magnitude.
        check(Whitespace, (1e-9, 0.0), b"1000000", b"1000000.0009", Ok(true));
        check(Whitespace, (1e-9, 0.0), b"1000000", b"1000000.0011", Ok(false));
        check(Whitespace, (1e-9, 0.0), b"-1000000", b"-1000000.0009", Ok(true));
        check(Whitespace, (0.5, 0.0), b"1", b"2", Ok(true));
        check(Whitespace, (0.5, 0.0), b"1", b"-1", Ok(false));
        // Within absolute, where relative alone fails near zero.
        check(Whitespace, (1e-9, 1e-12), b"0", b"1e-13", Ok(true));
        check(Whitespace, (1e-9, 1e-12), b"1e-13", b"-1e-13", Ok(true));
        check(Whitespace, (1e-9, 0.0), b"0", b"1e-13", Ok(false));
        check(Whitespace, (0.0, 0.5), b"10", b"10.5", Ok(true));
        // Outside both.
        check(Whitespace, (1e-9, 1e-12), b"1 2 3", b"1 2 3.001", Ok(false));
        check(Whitespace, (1e-3, 1e-3), b"100", b"100.2", Ok(false));
        // Far-apart huge numbers whose difference overflows.
        check(Whitespace, (1.5, 0.0), b"1e308", b"-1e308", Ok(false));
        check(Whitespace, (2.0, 0.0), b"1e308", b"-1e308", Ok(true));
        // Different token counts.
        check(Whitespace, (0.1, 0.1), b"1 2", b"1 2 3", Ok(false));
        check(Whitespace, (0.1, 0.1), b"1", b"", Ok(false));
        // Text tokens must be equal, and a number never equals text.
        check(Whitespace, (0.1, 0.1), b"energy= 1.0 converged", b"energy= 1.05 converged", Ok(true));
        check(Whitespace, (0.1, 0.1), b"energy= 1.0 converged", b"Energy= 1.0 converged", Ok(false));
        check(Whitespace, (0.1, 0.1), b"x 1", b"1 x", Ok(false));
        check(Whitespace, (0.1, 0.1), b"1,", b"1", Ok(false));
        check(Whitespace, EXACT, b"1.0.0", b"1.0.0", Ok(true));
        check(Whitespace, EXACT, b"1.0.0", b"1.0", Ok(false));
        // NaN agrees only with NaN, whatever its spelling or sign.
        check(Whitespace, (1.0, 1.0), b"NaN", b"nan", Ok(true));
        check(Whitespace, (1.0, 1.0), b"NaN", b"-NaN", Ok(true));
        check(Whitespace, (1.0, 1.0), b"NaN", b"0", Ok(false));
        check(Whitespace, (1e300, 1e300), b"NaN", b"inf", Ok(false));
        // Infinities agree only with the same infinity, whatever the tolerance.
        check(Whitespace, EXACT, b"inf", b"infinity", Ok(true));
        check(Whitespace, EXACT, b"-inf", b"-Infinity", Ok(true));
        check(Whitespace, (1e300, 1e300), b"inf", b"-inf", Ok(false));
        check(Whitespace, (1e300, 1e300), b"inf", b"1.7976931348623157e308", Ok(false));
        // Unparsable output.
        check(Whitespace, EXACT, b"1 \xff 2", b"1 2", Err(FuzzyError::NotUtf8 { valid_up_to: 2 }));
        check(Whitespace, EXACT, b"1 2", b"\xc3", Err(FuzzyError::NotUtf8 { valid_up_to: 0 }));
    }

    #[test]
    fn json_outputs() {
        check(Json, EXACT, br#"{"a": 1, "b": [true, null, "x"]}"#, br#"{"b":[true,null,"x"],"a":1.0}"#, Ok(true));
        check(Json, EXACT, b"1", b"1.0", Ok(true));
        check(Json, EXACT, b"0.1", b"1e-1", Ok(true));
        check(Json, EXACT, b"1", b"1.0000000000000002", Ok(false));
        // Nested numbers within tolerance, relative or absolute.
        let a = br#"{"energy": -76.02, "forces": [[0.0, 1e-14], [3.5, -2.0]], "steps": 12}"#;
        let b = br#"{"steps": 12, "forces": [[1e-13, 0.0], [3.5000000001, -2.0000000001]], "energy": -76.0200000001}"#;
        check(Json, (1e-9, 1e-12), a, b, Ok(true));
        check(Json, (1e-9, 0.0), a, b, Ok(false));
        check(Json, (0.0, 1e-12), a, b, Ok(false));
        let c = br#"{"energy": -76.02, "forces": [[0.0, 1e-14], [3.6, -2.0]], "steps": 12}"#;
        check(Json, (1e-9, 1e-12), a, c, Ok(false));
        // Objects need the same keys, arrays the same length.
        check(Json, (0.1, 0.1), br#"{"a": 1}"#, br#"{"b": 1}"#, Ok(false));
        check(Json, (0.1, 0.1), br#"{"a": 1}"#, br#"{"a": 1, "b": 1}"#, Ok(false));
        check(Json, (0.1, 0.1), br#"{"a": {"b": 1}}"#, br#"{"a": {"c": 1}}"#, Ok(false));
        check(Json, (0.1, 0.1), br#"{}"#, br#"{}"#, Ok(true));
        check(Json, (0.1, 0.1), b"[1, 2]", b"[1, 2, 3]", Ok(false));
        check(Json, (0.1, 0.1), b"[1, 2]", b"[2, 1]", Ok(false));
        check(Json, (0.1, 0.1), b"[]", b"[]", Ok(true));
        // Strings, booleans and nulls must be equal; types must match.
        check(Json, (0.1, 0.1), br#"["x"]"#, br#"["y"]"#, Ok(false));
        check(Json, (0.1, 0.1), br#""1""#, b"1", Ok(false));
        check(Json, (0.1, 0.1), b"true", b"false", Ok(false));
        check(Json, (0.1, 0.1), b"null", b"0", Ok(false));
        check(Json, (0.1, 0.1), b"null", b"null", Ok(true));
        check(Json, (0.1, 0.1), b"[1]", br#"{"0": 1}"#, Ok(false));
        // Large integers are compared as f64, like every other number.
        check(Json, EXACT, b"18446744073709551615", b"1.8446744073709552e19", Ok(true));
        check(Json, (1e-9, 0.0), b"-9007199254740993", b"-9007199254740992", Ok(true));
        // Unparsable output: not JSON (NaN and infinities are not JSON), trailing data, beyond f64, not UTF-8.
        check(Json, EXACT, b"", b"1", not_json("EOF while parsing a value at line 1 column 0"));
        check(Json, EXACT, b"1", b"NaN", not_json("expected value at line 1 column 1"));
        check(Json, EXACT, b"1 2", b"1", not_json("trailing characters at line 1 column 3"));
        check(Json, EXACT, b"[1, 2", b"1", not_json("EOF while parsing a list at line 1 column 5"));
        check(Json, EXACT, b"1e400", b"1", not_json("number out of range at line 1 column 5"));
        check(Json, EXACT, b"\"\xff\"", b"1", Err(FuzzyError::NotUtf8 { valid_up_to: 1 }));
    }

    #[test]
    fn json_numbers_are_parsed_exactly() {
        // Each has a nearest f64 that a naive significand-times-power-of-ten
        // conversion misses; serde_json must agree with `str::parse`.
        for text in ["2.2250738585072011e-308", "9007199254740993", "0.30000000000000004", "1.7976931348623157e308"] {
            let Ok(Parsed(Body::Json(JsonValue::Number(number)))) = parse(Json, text.as_bytes()) else {
                panic!("{text} is a JSON number");
            };
            let expected: f64 = text.parse().expect("a valid f64");
            assert_eq!(number.to_bits(), expected.to_bits(), "{text}");
        }
    }

    #[test]
    fn formats_do_not_mix() {
        let tolerance = tolerance(0.1, 0.1);
        let tokens = parse(Whitespace, b"1").expect("a token");
        let json = parse(Json, b"1").expect("a JSON number");
        assert!(!agree(&tokens, &json, &tolerance));
        assert!(!agree(&json, &tokens, &tolerance));
    }

    #[test]
    fn tolerances() {
        assert!(Tolerance::new(0.0, 0.0).is_ok());
        assert_eq!(Tolerance::new(1e-9, 1e-12).map(|t| (t.relative(), t.absolute())), Ok((1e-9, 1e-12)));
        let refused = [
            (-1e-9, 0.0, "relative", -1e-9),
            (0.0, -0.5, "absolute", -0.5),
            (f64::INFINITY, 0.0, "relative", f64::INFINITY),
            (0.0, f64::NEG_INFINITY, "absolute", f64::NEG_INFINITY),
        ];
        for (relative, absolute, bound, value) in refused {
            assert_eq!(Tolerance::new(relative, absolute), Err(FuzzyError::InvalidTolerance { bound, value }));
        }
        // NaN never equals itself, so match instead of comparing.
        assert!(matches!(
            Tolerance::new(f64::NAN, 0.0),
            Err(FuzzyError::InvalidTolerance { bound: "relative", value }) if value.is_nan()
        ));
        assert!(matches!(
            Tolerance::new(0.0, f64::NAN),
            Err(FuzzyError::InvalidTolerance { bound: "absolute", value }) if value.is_nan()
        ));
        assert_eq!(
            Tolerance::new(-1.0, 0.0).map_err(|e| e.to_string()),
            Err("relative tolerance must be a finite non-negative number, not -1".to_owned())
        );
    }

    /// Whitespace outputs given ids 1, 2, ... in order (the ids passed to
    /// `find_agreement` are shuffled, to check it sorts them).
    fn check_agreement(outputs: &[&str], agreement_size: usize, tolerance: Tolerance, expected: Option<&[i64]>) {
        let parsed: Vec<Parsed> =
            outputs.iter().map(|output| parse(Whitespace, output.as_bytes()).expect("test outputs parse")).collect();
        let mut candidates: Vec<(ResultId, &Parsed)> =
            parsed.iter().enumerate().map(|(i, p)| (ResultId(i as i64 + 1), p)).collect();
        candidates.reverse();
        let found =
            crate::domain::validator::find_agreement(&candidates, agreement_size, |a, b| agree(a, b, &tolerance)).map(
                |agreement| {
                    let mut ids = vec![agreement.canonical];
                    ids.extend(agreement.members.into_iter().filter(|&id| id != agreement.canonical));
                    ids
                },
            );
        let expected = expected.map(|ids| ids.iter().map(|&i| ResultId(i)).collect::<Vec<_>>());
        assert_eq!(found, expected, "{outputs:?} with agreement size {agreement_size} within {tolerance:?}");
    }

    #[test]
    fn agreement_groups() {
        let t = tolerance(0.0, 0.15);
        // Two candidates.
        check_agreement(&["1.0", "1.1"], 2, t, Some(&[1, 2]));
        check_agreement(&["1.0", "1.2"], 2, t, None);
        check_agreement(&["1.0", "1.2"], 1, t, Some(&[1]));
        // Three candidates, all agreeing.
        check_agreement(&["1.0", "1.05", "1.1"], 2, t, Some(&[1, 2, 3]));
        // Not transitive: a ~ b, b ~ c, a !~ c. b is the pivot of the largest group.
        check_agreement(&["1.0", "1.1", "1.2"], 2, t, Some(&[2, 1, 3]));
        check_agreement(&["1.0", "1.1", "1.2"], 3, t, Some(&[2, 1, 3]));
        // Ties go to the earliest pivot.
        check_agreement(&["1.0", "1.1", "1.26"], 2, t, Some(&[1, 2]));
        check_agreement(&["1.0", "1.1", "5.0", "5.1"], 2, t, Some(&[1, 2]));
        check_agreement(&["1.0", "1.3", "1.4"], 2, t, Some(&[2, 3]));
        // The pivot, not the earliest member, comes first and becomes canonical.
        check_agreement(&["1.0", "1.3", "1.4", "1.5"], 2, t, Some(&[3, 2, 4]));
        check_agreement(&["1.0", "2.0", "3.0"], 2, t, None);
        check_agreement(&["1.0", "2.0", "3.0"], 1, t, Some(&[1]));
        check_agreement(&["NaN", "1.0", "nan"], 2, t, Some(&[1, 3]));
        check_agreement(&[], 1, t, None);
    }
}
