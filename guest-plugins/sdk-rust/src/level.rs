//! Level names: the one table every plugin uses to read a level out of text.

use crate::bindings::types::Level;

/// Level names and their common aliases (syslog's and log4j's), matched
/// case-insensitively.
const NAMES: &[(&str, Level)] = &[
    ("trace", Level::Trace),
    ("debug", Level::Debug),
    ("info", Level::Info),
    ("warn", Level::Warn),
    ("warning", Level::Warn),
    ("error", Level::Error),
    ("err", Level::Error),
    ("fatal", Level::Fatal),
    ("critical", Level::Fatal),
    ("crit", Level::Fatal),
    ("emerg", Level::Fatal),
    ("alert", Level::Fatal),
    ("panic", Level::Fatal),
    ("unknown", Level::Unknown),
];

/// The level a name denotes (surrounding whitespace ignored), or `None` for a name that
/// is not a level.
pub fn level_by_name(name: &str) -> Option<Level> {
    let name = name.trim();
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, level)| level)
}

/// The level a text from a log line names; text that is not a level is
/// [`Level::Unknown`].
pub fn level_from_text(text: &str) -> Level {
    level_by_name(text).unwrap_or(Level::Unknown)
}

/// The canonical (lowercase) name of a level.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
        Level::Fatal => "fatal",
        Level::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_aliases_and_unknown_text() {
        let cases = [
            ("TRACE", Level::Trace),
            ("debug", Level::Debug),
            ("INFO ", Level::Info),
            ("Warning", Level::Warn),
            ("ERR", Level::Error),
            ("emerg", Level::Fatal),
            ("alert", Level::Fatal),
            ("panic", Level::Fatal),
            ("crit", Level::Fatal),
            ("critical", Level::Fatal),
            ("verbose", Level::Unknown),
        ];
        for (text, level) in cases {
            assert_eq!(level_from_text(text), level, "{text:?}");
        }
        assert_eq!(level_by_name("verbose"), None);
        assert_eq!(level_by_name("unknown"), Some(Level::Unknown));
        for level in [Level::Trace, Level::Warn, Level::Fatal, Level::Unknown] {
            assert_eq!(level_by_name(level_name(level)), Some(level));
        }
    }
}
