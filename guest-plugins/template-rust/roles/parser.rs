//! A Runnel parser in Rust: splits `key=value` pairs of a line into fields (digits become
//! integers); a line without any is a parse error (the event keeps its body and gets the
//! `parse_error` tag). A `level` pair sets the event's level.
//!
//! Try it: `printf 'user=ann level=warn\nnothing here\n' | runnel plugin test PLUGIN.wasm`

use runnel_plugin_sdk::parser::{ParseOutput, ParseResult, Parsed};
use runnel_plugin_sdk::types::Lines;
use runnel_plugin_sdk::{Config, Output, level_by_name, span_bytes};

/// The configured plugin: built once in `create`, used for every batch.
#[derive(Debug)]
pub struct KeyValue {
    separator: String,
}

impl KeyValue {
    pub fn new(config: &Config) -> Result<Self, String> {
        config.deny_unknown(&["separator"])?;
        Ok(Self {
            separator: config.str("separator")?.unwrap_or("=").to_owned(),
        })
    }

    /// One result per line, in order.
    pub fn parse(&self, input: &Lines) -> ParseOutput {
        let mut out = Output::new();
        let results = input
            .bodies
            .iter()
            .map(|&body| {
                let line = String::from_utf8_lossy(span_bytes(&input.arena, body));
                let pairs: Vec<(&str, &str)> = line
                    .split_whitespace()
                    .filter_map(|word| word.split_once(self.separator.as_str()))
                    .filter(|(key, _)| !key.is_empty())
                    .collect();
                if pairs.is_empty() {
                    return ParseResult::Error(out.span(b"no key=value pairs"));
                }
                let level = pairs
                    .iter()
                    .find(|(key, _)| *key == "level")
                    .and_then(|(_, value)| level_by_name(value));
                let mut fields = out.object();
                for (key, value) in pairs {
                    match value.parse::<i64>() {
                        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) => fields.int(key, n),
                        _ => fields.str(key, value),
                    };
                }
                ParseResult::Ok(Parsed {
                    fields: fields.finish(),
                    level,
                    timestamp: None,
                    name: None,
                })
            })
            .collect();
        ParseOutput {
            data: out.finish(),
            results,
        }
    }
}

#[cfg(target_arch = "wasm32")]
mod component {
    use runnel_plugin_sdk::parser::{Guest, GuestInstance, Instance, ParseOutput};
    use runnel_plugin_sdk::types::{Lines, Tree};

    struct Plugin;

    impl Guest for Plugin {
        type Instance = super::KeyValue;
    }

    impl GuestInstance for super::KeyValue {
        fn create(config: Tree) -> Result<Instance, String> {
            let config = runnel_plugin_sdk::Config::from_tree(&config)?;
            Ok(Instance::new(super::KeyValue::new(&config)?))
        }

        fn parse(&self, input: Lines) -> ParseOutput {
            super::KeyValue::parse(self, &input)
        }
    }

    runnel_plugin_sdk::export_parser!(Plugin with_types_in runnel_plugin_sdk::bindings::parser);
}

#[cfg(test)]
mod tests {
    use super::*;
    use runnel_plugin_sdk::{Value, decode_value, lines};

    #[test]
    fn pairs_become_fields_and_other_lines_errors() {
        let plugin = KeyValue::new(&Config::empty()).unwrap();
        let out = plugin.parse(&lines(&["user=ann n=3", "nothing here"]));
        let ParseResult::Ok(parsed) = &out.results[0] else {
            panic!("expected a parse");
        };
        assert_eq!(
            decode_value(&out.data.arena, &out.data.nodes, parsed.fields).unwrap(),
            Value::Object(vec![
                ("user".into(), Value::Str("ann".into())),
                ("n".into(), Value::Int(3)),
            ])
        );
        assert!(matches!(out.results[1], ParseResult::Error(_)));
    }
}
