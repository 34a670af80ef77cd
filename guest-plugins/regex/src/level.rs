//! Level names → [`Level`].

use runnel_plugin_sdk::types::Level;

/// Level names, matched case-insensitively.
const LEVEL_NAMES: &[(&str, Level)] = &[
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
];

/// The level a text names (surrounding whitespace ignored); unknown text is
/// [`Level::Unknown`].
pub fn level_from_text(text: &str) -> Level {
    let text = text.trim();
    LEVEL_NAMES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map_or(Level::Unknown, |&(_, level)| level)
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
    }
}
