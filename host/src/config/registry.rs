//! The component registries' machinery: each source, channel and sink type has its own
//! config struct in its own module; a registry (one line per type) maps `type = "..."`
//! to that struct. Settings are read with their key path tracked, so every error — an
//! unknown key, a value of the wrong type or range — names its key and line.

use std::fmt;

/// Problems found in one component's settings, with key paths relative to the
/// component (`["capacity"]`, `["headers", "x-a"]`).
#[derive(Debug, Default)]
pub struct Problems {
    pub(super) found: Vec<(Vec<String>, String)>,
}

impl Problems {
    /// A problem with the setting `key`.
    pub fn at(&mut self, key: &str, message: impl Into<String>) {
        self.found.push((vec![key.to_owned()], message.into()));
    }

    /// A problem with a nested setting.
    pub fn at_path(&mut self, path: &[&str], message: impl Into<String>) {
        self.found.push((
            path.iter().map(|s| (*s).to_owned()).collect(),
            message.into(),
        ));
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// Checks `value` is in `range` (inclusive), naming `key` otherwise.
    pub fn range<T: PartialOrd + fmt::Display + Copy>(
        &mut self,
        key: &str,
        value: T,
        min: T,
        max: T,
    ) {
        if value < min || value > max {
            self.at(key, format!("must be between {min} and {max} (is {value})"));
        }
    }
}

/// A settings error from deserializing one component, with the key path it is at.
#[derive(Debug)]
pub struct SettingError {
    pub path: Vec<String>,
    pub message: String,
}

/// Deserializes a component's settings from its table, tracking the key path of any
/// error. `what` names the component type for messages (`a \`file\` source`).
pub fn deserialize<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    what: &str,
) -> Result<T, SettingError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let mut path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        let inner = e.into_inner();
        let message = inner.message().trim_end().to_owned();
        // serde reports an unknown key at its parent: name the key itself.
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((key, _)) = rest.split_once('`')
        {
            if path.last().map(String::as_str) != Some(key) {
                path.push(key.to_owned());
            }
            return SettingError {
                message: format!("`{key}` is not a setting of {what}: {message}"),
                path,
            };
        }
        SettingError { path, message }
    })
}

/// Declares a registry of component types: an enum with one variant per type, each
/// holding that type's config struct, plus its type names and dispatch to `$Trait`.
/// Adding a type is one new module and one line here.
macro_rules! registry {
    (
        $(#[$meta:meta])*
        pub enum $Enum:ident: $Trait:path, $kind:literal {
            $($tag:literal => $Variant:ident($Config:ty),)+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq)]
        pub enum $Enum {
            $($Variant($Config),)+
        }

        impl $Enum {
            /// Every `type` this registry knows.
            pub const TYPES: &'static [&'static str] = &[$($tag),+];

            /// The `type` of this component.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Self::$Variant(_) => $tag,)+
                }
            }

            /// Reads the settings of a component of type `tag`; `None` for an unknown
            /// type.
            pub fn parse(
                tag: &str,
                table: toml::Table,
            ) -> Option<Result<Self, $crate::config::registry::SettingError>> {
                match tag {
                    $($tag => Some(
                        $crate::config::registry::deserialize::<$Config>(
                            table,
                            concat!("a `", $tag, "` ", $kind),
                        )
                        .map(Self::$Variant),
                    ),)+
                    _ => None,
                }
            }

            /// The type's config, behind the component trait.
            pub fn config(&self) -> &dyn $Trait {
                match self {
                    $(Self::$Variant(c) => c,)+
                }
            }
        }
    };
}

pub(crate) use registry;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        capacity: Option<usize>,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Nested {
        depth: u32,
    }

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn errors_name_their_key_path() {
        let e = deserialize::<Sample>(table("capacity = -1"), "a thing").unwrap_err();
        assert_eq!(e.path, ["capacity"]);
        assert!(e.message.contains("-1"), "{}", e.message);

        let e = deserialize::<Sample>(table("nested = { depth = \"x\" }"), "a thing").unwrap_err();
        assert_eq!(e.path, ["nested", "depth"]);

        let e = deserialize::<Sample>(table("capasity = 5"), "a thing").unwrap_err();
        assert_eq!(e.path, ["capasity"]);
        assert!(
            e.message
                .starts_with("`capasity` is not a setting of a thing")
        );
    }
}
