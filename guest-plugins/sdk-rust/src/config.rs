//! [`Config`]: typed access to the TOML table a plugin gets at `create`.

use crate::bindings::types::Tree;
use crate::value::{Value, decode_tree};

/// A plugin's config table. Accessors name the offending key in their errors, and
/// [`Config::deny_unknown`] rejects keys the plugin does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    members: Vec<(String, Value)>,
}

impl Config {
    /// Decodes the tree the host passed to `create`.
    pub fn from_tree(tree: &Tree) -> Result<Self, String> {
        match decode_tree(tree).map_err(|e| format!("config: {e}"))? {
            Value::Object(members) => Ok(Self { members }),
            other => Err(format!(
                "config: expected a table, got {}",
                other.type_name()
            )),
        }
    }

    /// An empty config (for native tests).
    pub fn empty() -> Self {
        Self {
            members: Vec::new(),
        }
    }

    /// A config from members (for native tests).
    pub fn from_members<K: Into<String>>(members: impl IntoIterator<Item = (K, Value)>) -> Self {
        Self {
            members: members.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Fails on the first key not in `known`.
    pub fn deny_unknown(&self, known: &[&str]) -> Result<(), String> {
        match self
            .members
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((key, _)) => Err(format!(
                "config: unknown key `{key}` (known keys: {})",
                known.join(", ")
            )),
            None => Ok(()),
        }
    }

    pub fn str(&self, key: &str) -> Result<Option<&str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(key, "a string", other)),
        }
    }

    pub fn bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(key, "a boolean", other)),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Int(i)) => Ok(Some(*i)),
            Some(other) => Err(wrong_type(key, "an integer", other)),
        }
    }

    /// A list of strings.
    pub fn strings(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Str(s) => Ok(s.clone()),
                    other => Err(wrong_type(key, "a list of strings", other)),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some(other) => Err(wrong_type(key, "a list of strings", other)),
        }
    }

    /// A table of string keys to values.
    pub fn table(&self, key: &str) -> Result<Option<&[(String, Value)]>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(members)) => Ok(Some(members)),
            Some(other) => Err(wrong_type(key, "a table", other)),
        }
    }
}

fn wrong_type(key: &str, expected: &str, got: &Value) -> String {
    format!(
        "config: `{key}` must be {expected}, got {}",
        got.type_name()
    )
}
