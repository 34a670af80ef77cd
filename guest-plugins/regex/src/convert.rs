//! Capture text → typed field values.

/// The type a capture converts to (config `types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Int,
    Float,
    Bool,
}

impl Kind {
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "string" => Some(Kind::String),
            "int" => Some(Kind::Int),
            "float" => Some(Kind::Float),
            "bool" => Some(Kind::Bool),
            _ => None,
        }
    }
}

/// One converted capture. Strings are byte offsets into the line, so a buffer of fields
/// can be reused from line to line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Field {
    Null,
    Str(usize, usize),
    Int(i64),
    /// Above `i64::MAX` only.
    Uint(u64),
    Float(f64),
    Bool(bool),
}

/// Converts `text`, which starts at byte `start` of the line. The error is what the text
/// is not (`"an int"`).
pub fn convert(kind: Kind, text: &str, start: usize) -> Result<Field, &'static str> {
    match kind {
        Kind::String => Ok(Field::Str(start, start + text.len())),
        Kind::Int => int(text).ok_or("an int"),
        Kind::Float => float(text).ok_or("a float"),
        Kind::Bool => bool(text).ok_or("a bool"),
    }
}

fn int(text: &str) -> Option<Field> {
    match text.parse::<i64>() {
        Ok(i) => Some(Field::Int(i)),
        Err(_) => text.parse::<u64>().ok().map(Field::Uint),
    }
}

fn float(text: &str) -> Option<Field> {
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Field::Float)
}

fn bool(text: &str) -> Option<Field> {
    if text.eq_ignore_ascii_case("true") {
        Some(Field::Bool(true))
    } else if text.eq_ignore_ascii_case("false") {
        Some(Field::Bool(false))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(Kind::from_name("int"), Some(Kind::Int));
        assert_eq!(Kind::from_name("float"), Some(Kind::Float));
        assert_eq!(Kind::from_name("bool"), Some(Kind::Bool));
        assert_eq!(Kind::from_name("string"), Some(Kind::String));
        assert_eq!(Kind::from_name("integer"), None);
        assert_eq!(Kind::from_name("Int"), None);
    }

    #[test]
    fn conversions() {
        assert_eq!(convert(Kind::String, "abc", 4), Ok(Field::Str(4, 7)));
        assert_eq!(convert(Kind::Int, "-42", 0), Ok(Field::Int(-42)));
        assert_eq!(convert(Kind::Int, "+7", 0), Ok(Field::Int(7)));
        assert_eq!(
            convert(Kind::Int, "18446744073709551615", 0),
            Ok(Field::Uint(u64::MAX))
        );
        assert_eq!(convert(Kind::Int, "18446744073709551616", 0), Err("an int"));
        assert_eq!(convert(Kind::Int, "1.5", 0), Err("an int"));
        assert_eq!(convert(Kind::Int, "", 0), Err("an int"));
        assert_eq!(convert(Kind::Float, "1.5e3", 0), Ok(Field::Float(1500.0)));
        assert_eq!(convert(Kind::Float, "3", 0), Ok(Field::Float(3.0)));
        assert_eq!(convert(Kind::Float, "NaN", 0), Err("a float"));
        assert_eq!(convert(Kind::Float, "inf", 0), Err("a float"));
        assert_eq!(convert(Kind::Float, "1,5", 0), Err("a float"));
        assert_eq!(convert(Kind::Bool, "TRUE", 0), Ok(Field::Bool(true)));
        assert_eq!(convert(Kind::Bool, "false", 0), Ok(Field::Bool(false)));
        assert_eq!(convert(Kind::Bool, "yes", 0), Err("a bool"));
    }
}
