//! The comparison, compiled once from `op` and `value` and applied to one node per event.

use memchr::memmem::Finder;
use runnel_plugin_sdk::NodeValue as Wire;
use runnel_plugin_sdk::Value;
use std::cmp::Ordering;

/// The operators, by config name.
pub const OPS: &[&str] = &[
    "eq", "ne", "lt", "le", "gt", "ge", "exists", "missing", "contains", "prefix",
];

/// What a field is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Num(Num),
    Bytes(Vec<u8>),
    Bool(bool),
}

/// A number, compared exactly across integers and floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

/// A compiled predicate.
#[derive(Debug, Clone)]
pub enum Predicate {
    Exists,
    Missing,
    Eq(Operand),
    Ne(Operand),
    /// Matches when the comparison of field to operand is one of the orderings.
    Cmp(Operand, [bool; 3]),
    Contains(Box<Finder<'static>>),
    Prefix(Vec<u8>),
}

impl Predicate {
    /// Compiles `op` with the config `value`; the error says what is wrong with which key.
    pub fn new(op: &str, value: Option<&Value>) -> Result<Self, String> {
        let required =
            || value.ok_or_else(|| format!("config: `value` is required with op `{op}`"));
        match op {
            "exists" | "missing" => {
                if value.is_some() {
                    return Err(format!("config: `value` is not used with op `{op}`"));
                }
                Ok(if op == "exists" {
                    Self::Exists
                } else {
                    Self::Missing
                })
            }
            "eq" => Ok(Self::Eq(operand(required()?)?)),
            "ne" => Ok(Self::Ne(operand(required()?)?)),
            "lt" | "le" | "gt" | "ge" => {
                let operand = operand(required()?)?;
                if let Operand::Bool(_) = operand {
                    return Err(format!(
                        "config: op `{op}` needs a number or string `value`, got bool"
                    ));
                }
                Ok(Self::Cmp(operand, orderings(op)))
            }
            "contains" | "prefix" => {
                let Value::Str(text) = required()? else {
                    return Err(format!("config: op `{op}` needs a string `value`"));
                };
                Ok(if op == "contains" {
                    Self::Contains(Box::new(Finder::new(text.as_bytes()).into_owned()))
                } else {
                    Self::Prefix(text.as_bytes().to_vec())
                })
            }
            _ => Err(format!(
                "config: `op` must be one of {}, got `{op}`",
                OPS.join(", ")
            )),
        }
    }

    /// Whether the field matches; `None` is an absent field.
    pub fn matches(&self, field: Option<(&Wire, &[u8])>) -> bool {
        let Some((value, bytes)) = field else {
            return matches!(self, Self::Missing);
        };
        match self {
            Self::Exists => true,
            Self::Missing => false,
            Self::Eq(operand) => compare(value, bytes, operand) == Some(Ordering::Equal),
            Self::Ne(operand) => compare(value, bytes, operand) != Some(Ordering::Equal),
            Self::Cmp(operand, accept) => {
                compare(value, bytes, operand).is_some_and(|ordering| match ordering {
                    Ordering::Less => accept[0],
                    Ordering::Equal => accept[1],
                    Ordering::Greater => accept[2],
                })
            }
            Self::Contains(finder) => is_text(value) && finder.find(bytes).is_some(),
            Self::Prefix(prefix) => is_text(value) && bytes.starts_with(prefix),
        }
    }
}

/// The orderings (less, equal, greater) an order operator accepts.
fn orderings(op: &str) -> [bool; 3] {
    match op {
        "lt" => [true, false, false],
        "le" => [true, true, false],
        "gt" => [false, false, true],
        _ => [false, true, true],
    }
}

fn operand(value: &Value) -> Result<Operand, String> {
    match value {
        Value::Int(i) => Ok(Operand::Num(Num::Int(i128::from(*i)))),
        Value::Uint(u) => Ok(Operand::Num(Num::Int(i128::from(*u)))),
        Value::Float(f) if f.is_nan() => Err("config: `value` must not be NaN".into()),
        Value::Float(f) => Ok(Operand::Num(Num::Float(*f))),
        Value::Str(s) => Ok(Operand::Bytes(s.as_bytes().to_vec())),
        Value::Bool(b) => Ok(Operand::Bool(*b)),
        other => Err(format!(
            "config: `value` must be an integer, float, string or boolean, got {}",
            other.type_name()
        )),
    }
}

fn is_text(value: &Wire) -> bool {
    matches!(value, Wire::Str(_) | Wire::Bytes(_))
}

/// The number a node holds.
fn number(value: &Wire) -> Option<Num> {
    match *value {
        Wire::Int(i) => Some(Num::Int(i128::from(i))),
        Wire::Uint(u) => Some(Num::Int(i128::from(u))),
        Wire::Float(f) => Some(Num::Float(f)),
        _ => None,
    }
}

/// Field compared with operand; `None` when they are of different kinds or unordered.
/// `bytes` are the text of a string or bytes node.
fn compare(value: &Wire, bytes: &[u8], operand: &Operand) -> Option<Ordering> {
    match operand {
        Operand::Num(n) => cmp_num(number(value)?, *n),
        Operand::Bytes(b) => is_text(value).then(|| bytes.cmp(b.as_slice())),
        Operand::Bool(b) => match value {
            Wire::Boolean(v) => Some(v.cmp(b)),
            _ => None,
        },
    }
}

/// Exact numeric comparison; `None` when a float is NaN.
pub fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
        (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
        (Num::Int(a), Num::Float(b)) => cmp_int_float(a, b),
        (Num::Float(a), Num::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
    }
}

/// 2^127: floats at or past it are beyond every i128.
const TWO_POW_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;

fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if f >= TWO_POW_127 {
        return Some(Ordering::Less);
    }
    if f < -TWO_POW_127 {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // In range, so the conversion is exact.
    match i.cmp(&(whole as i128)) {
        Ordering::Equal => whole.partial_cmp(&f),
        unequal => Some(unequal),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::types::Span;

    const NO_SPAN: Span = Span { offset: 0, len: 0 };

    fn pred(op: &str, value: Value) -> Predicate {
        Predicate::new(op, Some(&value)).expect("valid")
    }

    fn num(p: &Predicate, value: Wire) -> bool {
        p.matches(Some((&value, b"")))
    }

    fn text(p: &Predicate, bytes: &[u8]) -> bool {
        p.matches(Some((&Wire::Str(NO_SPAN), bytes)))
    }

    #[test]
    fn numbers_compare_exactly_across_types() {
        use Ordering::*;
        let cases = [
            (Num::Int(1), Num::Float(1.0), Some(Equal)),
            (Num::Int(1), Num::Float(1.5), Some(Less)),
            (Num::Int(2), Num::Float(1.5), Some(Greater)),
            (Num::Int(-2), Num::Float(-1.5), Some(Less)),
            (Num::Int(-1), Num::Float(-1.5), Some(Greater)),
            (
                Num::Int(i128::from(i64::MAX)),
                Num::Float(9_223_372_036_854_775_807.0),
                Some(Less),
            ),
            (
                Num::Int(i128::from(u64::MAX)),
                Num::Float(1e300),
                Some(Less),
            ),
            (
                Num::Int(i128::from(i64::MIN)),
                Num::Float(-1e300),
                Some(Greater),
            ),
            (Num::Int(0), Num::Float(f64::NAN), None),
            (Num::Float(0.5), Num::Int(0), Some(Greater)),
            (Num::Float(2.0), Num::Float(2.5), Some(Less)),
            (Num::Float(f64::NAN), Num::Float(1.0), None),
            (
                Num::Int(i128::from(u64::MAX)),
                Num::Int(i128::from(i64::MAX)),
                Some(Greater),
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(cmp_num(a, b), expected, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn order_operators() {
        let lt = pred("lt", Value::Int(500));
        let le = pred("le", Value::Int(500));
        let gt = pred("gt", Value::Float(499.5));
        let ge = pred("ge", Value::Int(500));
        assert!(num(&lt, Wire::Int(499)) && !num(&lt, Wire::Int(500)));
        assert!(num(&le, Wire::Int(500)) && !num(&le, Wire::Float(500.1)));
        assert!(num(&gt, Wire::Int(500)) && !num(&gt, Wire::Int(499)));
        assert!(num(&ge, Wire::Uint(u64::MAX)) && !num(&ge, Wire::Float(f64::NAN)));
        // Different kinds never order.
        assert!(!num(&lt, Wire::Str(NO_SPAN)) && !num(&lt, Wire::Null));
        let after = pred("gt", Value::Str("m".into()));
        assert!(text(&after, b"n") && !text(&after, b"a") && !text(&after, b"m"));
    }

    #[test]
    fn equality_across_kinds() {
        let eq = pred("eq", Value::Int(200));
        assert!(num(&eq, Wire::Int(200)) && num(&eq, Wire::Float(200.0)));
        assert!(!num(&eq, Wire::Int(201)) && !text(&eq, b"200"));
        let ne = pred("ne", Value::Int(200));
        assert!(num(&ne, Wire::Int(201)) && text(&ne, b"200") && num(&ne, Wire::Null));
        assert!(!num(&ne, Wire::Float(200.0)));
        let yes = pred("eq", Value::Bool(true));
        assert!(num(&yes, Wire::Boolean(true)) && !num(&yes, Wire::Boolean(false)));
        assert!(!num(&yes, Wire::Int(1)));
        let s = pred("eq", Value::Str("GET".into()));
        assert!(text(&s, b"GET") && !text(&s, b"get"));
        assert!(s.matches(Some((&Wire::Bytes(NO_SPAN), b"GET"))));
    }

    #[test]
    fn text_operators() {
        let contains = pred("contains", Value::Str("time out".into()));
        assert!(text(&contains, b"Notification time out: 3200"));
        assert!(!text(&contains, b"timeout"));
        assert!(!num(&contains, Wire::Int(1)));
        let empty = pred("contains", Value::Str(String::new()));
        assert!(text(&empty, b"") && text(&empty, b"x"));
        let prefix = pred("prefix", Value::Str("/api/".into()));
        assert!(text(&prefix, b"/api/v1") && !text(&prefix, b"/ap") && !text(&prefix, b"x/api/"));
    }

    #[test]
    fn absent_fields_match_only_missing() {
        for op in ["eq", "ne", "lt", "contains", "prefix"] {
            assert!(!pred(op, Value::Str("x".into())).matches(None), "{op}");
        }
        let exists = Predicate::new("exists", None).unwrap();
        let missing = Predicate::new("missing", None).unwrap();
        assert!(!exists.matches(None) && missing.matches(None));
        assert!(exists.matches(Some((&Wire::Null, b""))));
        assert!(!missing.matches(Some((&Wire::Null, b""))));
    }

    #[test]
    fn invalid_combinations_are_config_errors() {
        let err = |op: &str, value: Option<Value>| Predicate::new(op, value.as_ref()).unwrap_err();
        assert_eq!(err("eq", None), "config: `value` is required with op `eq`");
        assert_eq!(
            err("exists", Some(Value::Int(1))),
            "config: `value` is not used with op `exists`"
        );
        assert_eq!(
            err("lt", Some(Value::Bool(true))),
            "config: op `lt` needs a number or string `value`, got bool"
        );
        assert_eq!(
            err("contains", Some(Value::Int(1))),
            "config: op `contains` needs a string `value`"
        );
        assert_eq!(
            err("eq", Some(Value::Array(vec![]))),
            "config: `value` must be an integer, float, string or boolean, got array"
        );
        assert_eq!(
            err("eq", Some(Value::Float(f64::NAN))),
            "config: `value` must not be NaN"
        );
        assert!(err("like", Some(Value::Int(1))).starts_with("config: `op` must be one of eq, ne"));
    }
}
