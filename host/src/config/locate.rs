//! Maps a key path (`sources.web.channels`) to its line in the config text, so every
//! config error can say where it is.

use toml::de::{DeTable, DeValue};

/// Line lookups into one config text.
pub struct Locator<'a> {
    text: &'a str,
    root: Option<toml::Spanned<DeTable<'a>>>,
}

impl<'a> Locator<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }

    /// The line where the value at `path` is written (the key's line for table members,
    /// the element's line for array items given as decimal segments).
    pub fn line(&self, path: &[&str]) -> Option<usize> {
        let root = self.root.as_ref()?;
        let mut table: &DeTable<'_> = root.get_ref();
        let mut line = None;
        let mut current: Option<&DeValue<'_>> = None;
        for seg in path {
            let next = match current {
                None => Some(table),
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            };
            if let Some(t) = next {
                let (key, value) = t.iter().find(|(k, _)| k.get_ref().as_ref() == *seg)?;
                line = Some(self.line_of(key.span().start));
                table = t;
                current = Some(value.get_ref());
                continue;
            }
            match current {
                Some(DeValue::Array(items)) => {
                    let index: usize = seg.parse().ok()?;
                    let item = items.get(index)?;
                    line = Some(self.line_of(item.span().start));
                    current = Some(item.get_ref());
                }
                _ => return line,
            }
        }
        let _ = table;
        line
    }
}

impl Locator<'_> {
    /// The key path written at `line` (1-based), read from the text itself: for errors
    /// found before the config could be parsed (a duplicate key, a bad value). A table
    /// header line gives the table's path; a `key = value` line gives the key under the
    /// last header above it.
    pub fn key_at_line(&self, line: usize) -> Option<String> {
        let mut table = String::new();
        for (i, text) in self.text.lines().enumerate().take(line) {
            let text = text.trim();
            let header = text
                .strip_prefix("[[")
                .and_then(|t| t.split_once("]]"))
                .or_else(|| text.strip_prefix('[').and_then(|t| t.split_once(']')));
            if let Some((name, _)) = header {
                table = name.trim().replace(['"', '\'', ' '], "");
                if i + 1 == line {
                    return Some(table);
                }
                continue;
            }
            if i + 1 == line {
                let (key, _) = text.split_once('=')?;
                let key = key.trim().trim_matches(['"', '\'']);
                if key.is_empty() {
                    return None;
                }
                return Some(if table.is_empty() {
                    key.to_owned()
                } else {
                    format!("{table}.{key}")
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_nested_tables_and_array_items() {
        let text = "[agent]\nname = \"a\"\n\n[sources.web]\ntype = \"stdin\"\nchannels = [\n  \"x\",\n  \"y\",\n]\n";
        let l = Locator::new(text);
        assert_eq!(l.line(&["agent", "name"]), Some(2));
        assert_eq!(l.line(&["sources", "web", "type"]), Some(5));
        assert_eq!(l.line(&["sources", "web", "channels", "1"]), Some(8));
        assert_eq!(l.line(&["sources", "nope"]), None);
        assert_eq!(l.key_at_line(2).as_deref(), Some("agent.name"));
        assert_eq!(l.key_at_line(4).as_deref(), Some("sources.web"));
        assert_eq!(l.key_at_line(5).as_deref(), Some("sources.web.type"));
    }
}
