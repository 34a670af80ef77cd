//! One journal entry as `journalctl -o json --all` writes it (one JSON object a line)
//! → an event and the entry's cursor.
//!
//! | journal field | event |
//! |---|---|
//! | `MESSAGE` (text, or an array of bytes when not UTF-8) | body |
//! | `SYSLOG_IDENTIFIER`, else `_SYSTEMD_UNIT`, else `_COMM` | name |
//! | `PRIORITY` (0–7) | level, as syslog severities |
//! | `__REALTIME_TIMESTAMP` (µs) | timestamp |
//! | `_HOSTNAME`, `_SYSTEMD_UNIT`, `SYSLOG_IDENTIFIER`, `_PID` | tags `host`, `unit`, `identifier`, `pid` |
//! | the fields named in `fields` (`["*"]`: all but `__`-prefixed ones) | fields |
//!
//! A field the journal holds several times comes as an array: the first value is used
//! for the name and tags, all are kept in a field.

use crate::event::{Event, Level, Value};
use crate::source::intern::Interner;
use serde_json::Value as Json;
use std::sync::Arc;

/// The journal fields that become the event's name, level, time, tags and body; asked
/// of journalctl (`--output-fields`) beside those the source's `fields` name.
pub const MAPPED_FIELDS: &[&str] = &[
    "MESSAGE",
    "PRIORITY",
    "SYSLOG_IDENTIFIER",
    "_SYSTEMD_UNIT",
    "_COMM",
    "_HOSTNAME",
    "_PID",
];

/// Which journal fields an event keeps as fields.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptFields {
    /// Those named.
    Named(Vec<String>),
    /// All but the journal's own `__` fields.
    All,
}

/// An entry read: the event, and the cursor to resume after it (none when the line
/// was not a journal entry).
pub struct Entry {
    pub event: Event,
    pub cursor: Option<String>,
}

/// Why a line was not an entry (it is kept whole, tagged with this).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EntryError {
    #[error("not a JSON object: {0}")]
    NotJson(String),
    #[error("no __CURSOR")]
    NoCursor,
}

/// Reads one line of `journalctl -o json`. `default_name` names events without an
/// identifier, unit or command; `max_body` cuts the message (the bool says it was).
pub fn parse(
    line: &[u8],
    default_name: &Arc<str>,
    kept: &KeptFields,
    max_body: usize,
    strings: &mut Interner,
) -> Result<(Entry, bool), EntryError> {
    let json: serde_json::Map<String, Json> = match serde_json::from_slice(line) {
        Ok(Json::Object(map)) => map,
        Ok(_) => return Err(EntryError::NotJson("not an object".into())),
        Err(e) => return Err(EntryError::NotJson(e.to_string())),
    };
    let cursor = first_text(&json, "__CURSOR").ok_or(EntryError::NoCursor)?;
    let mut body = json.get("MESSAGE").map(bytes_of).unwrap_or_default();
    let cut = body.len() > max_body;
    body.truncate(max_body);
    let name = ["SYSLOG_IDENTIFIER", "_SYSTEMD_UNIT", "_COMM"]
        .iter()
        .find_map(|f| first_text(&json, f))
        .map_or_else(|| default_name.clone(), |n| strings.get(&n));
    let mut event = Event::from_body(name, body);
    event.level = first_text(&json, "PRIORITY")
        .and_then(|p| p.parse::<u8>().ok())
        .filter(|p| *p <= 7)
        .map_or(Level::Unknown, Level::from_syslog_severity);
    event.timestamp = first_text(&json, "__REALTIME_TIMESTAMP")
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|us| us.checked_mul(1000));
    for (field, tag) in [
        ("_HOSTNAME", "host"),
        ("_SYSTEMD_UNIT", "unit"),
        ("SYSLOG_IDENTIFIER", "identifier"),
        ("_PID", "pid"),
    ] {
        if let Some(value) = first_text(&json, field) {
            strings.tag(&mut event.tags, tag, &value);
        }
    }
    let keep = |field: &str| match kept {
        KeptFields::All => !field.starts_with("__") && field != "MESSAGE",
        KeptFields::Named(names) => names.iter().any(|n| n == field),
    };
    for (field, value) in &json {
        if keep(field) {
            event.fields.insert(field.clone(), value_of(value));
        }
    }
    Ok((
        Entry {
            event,
            cursor: Some(cursor),
        },
        cut,
    ))
}

/// A field's first value as text (journalctl writes a field held several times as an
/// array; binary values as arrays of numbers, which are not text).
fn first_text(json: &serde_json::Map<String, Json>, field: &str) -> Option<String> {
    match json.get(field)? {
        Json::String(s) => Some(s.clone()),
        Json::Array(values) => match values.first()? {
            Json::String(s) => Some(s.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// A value's bytes: text as is, an array of byte numbers as those bytes (journalctl's
/// form of a value that is not UTF-8), several values joined by newlines.
fn bytes_of(value: &Json) -> Vec<u8> {
    match value {
        Json::String(s) => s.as_bytes().to_vec(),
        Json::Array(items) if items.iter().all(Json::is_number) => items
            .iter()
            .filter_map(|n| n.as_u64().and_then(|n| u8::try_from(n).ok()))
            .collect(),
        Json::Array(items) => {
            let parts: Vec<Vec<u8>> = items.iter().map(bytes_of).collect();
            parts.join(&b'\n')
        }
        _ => Vec::new(),
    }
}

/// A kept field's value: text stays text, bytes stay bytes, several values an array.
fn value_of(value: &Json) -> Value {
    match value {
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) if !items.is_empty() && items.iter().all(Json::is_number) => {
            Value::Bytes(bytes_of(value))
        }
        Json::Array(items) => Value::Array(items.iter().map(value_of).collect()),
        Json::Null => Value::Null,
        other => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str, kept: &KeptFields) -> (Entry, bool) {
        parse(
            line.as_bytes(),
            &Arc::from("journal"),
            kept,
            32,
            &mut Interner::default(),
        )
        .unwrap()
    }

    #[test]
    fn maps_name_level_time_tags_and_body() {
        let (entry, cut) = read(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","MESSAGE":"Accepted publickey","PRIORITY":"6","SYSLOG_IDENTIFIER":"sshd","_SYSTEMD_UNIT":"ssh.service","_HOSTNAME":"gw1","_PID":"812","_UID":"0"}"#,
            &KeptFields::Named(vec!["_UID".into()]),
        );
        assert!(!cut);
        let e = &entry.event;
        assert_eq!(entry.cursor.as_deref(), Some("s=1;i=2"));
        assert_eq!(&*e.name, "sshd");
        assert_eq!(e.level, Level::Info);
        assert_eq!(e.timestamp, Some(1_700_000_000_123_456_000));
        assert_eq!(e.body, b"Accepted publickey");
        assert_eq!(e.tags.get("host"), Some("gw1"));
        assert_eq!(e.tags.get("unit"), Some("ssh.service"));
        assert_eq!(e.tags.get("identifier"), Some("sshd"));
        assert_eq!(e.tags.get("pid"), Some("812"));
        assert_eq!(
            e.fields.to_map().get("_UID"),
            Some(&Value::String("0".into()))
        );
        assert_eq!(e.fields.to_map().get("_PID"), None);
    }

    #[test]
    fn binary_repeated_and_missing_values() {
        let (entry, cut) = read(
            r#"{"__CURSOR":"c","MESSAGE":[104,105,0,255],"_SYSTEMD_UNIT":["a.service","b.service"],"PRIORITY":"9","X":[1,2]}"#,
            &KeptFields::All,
        );
        let e = &entry.event;
        assert!(!cut);
        assert_eq!(e.body, b"hi\0\xff");
        assert_eq!(&*e.name, "a.service", "the first of a repeated field");
        assert_eq!(e.level, Level::Unknown, "no such priority");
        assert_eq!(e.timestamp, None);
        assert_eq!(e.fields.to_map().get("X"), Some(&Value::Bytes(vec![1, 2])));
        assert!(e.fields.to_map().get("MESSAGE").is_none());
        assert!(e.fields.to_map().get("__CURSOR").is_none());
    }

    #[test]
    fn long_messages_are_cut_and_bad_lines_refused() {
        let long = "x".repeat(100);
        let (entry, cut) = read(
            &format!(r#"{{"__CURSOR":"c","MESSAGE":"{long}"}}"#),
            &KeptFields::All,
        );
        assert!(cut);
        assert_eq!(entry.event.body.len(), 32);
        assert_eq!(&*entry.event.name, "journal");
        let mut strings = Interner::default();
        let name = Arc::from("journal");
        let kept = KeptFields::All;
        for bad in [
            &b"{\"MESSAGE\":\"x\"}"[..],
            b"[1]",
            b"{\"__CURSOR\":\"c\",",
            b"\xff",
        ] {
            assert!(parse(bad, &name, &kept, 32, &mut strings).is_err());
        }
    }
}
