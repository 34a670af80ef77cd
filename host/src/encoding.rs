//! Turning events into bytes for sinks: one encoder per format, shared by every sink.

use crate::event::flat::FlatObject;
use crate::event::{Event, Fields, FieldsRepr, Level, Map, Value};
use runnel_flat::kind;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

/// How a sink writes events, one per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The whole event as a JSON object: timestamp, name, level, tags, fields, body.
    Json,
    /// Only the fields, as a JSON object (Fluent Bit's `plain`, Vector's `only_fields`).
    Fields,
    /// The raw body, as read.
    Raw,
    /// A short human-readable line.
    Human,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Format::Json),
            "fields" => Ok(Format::Fields),
            "raw" => Ok(Format::Raw),
            "human" => Ok(Format::Human),
            other => Err(format!(
                "unknown format `{other}` (expected json, fields, raw or human)"
            )),
        }
    }
}

impl Format {
    /// Appends `event`, encoded and newline-terminated, to `out`.
    pub fn encode(self, event: &Event, out: &mut Vec<u8>) {
        match self {
            Format::Json => encode_envelope(event, out),
            Format::Fields => write_fields(out, &event.fields),
            Format::Raw => out.extend_from_slice(&event.body),
            Format::Human => encode_human(event, out),
        }
        out.push(b'\n');
    }
}

fn encode_envelope(event: &Event, out: &mut Vec<u8>) {
    out.push(b'{');
    if let Some(ts) = event.timestamp {
        out.extend_from_slice(b"\"timestamp\":\"");
        write_rfc3339(out, ts);
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(b"\"name\":");
    write_str(out, &event.name);
    out.extend_from_slice(b",\"level\":\"");
    out.extend_from_slice(event.level.as_str().as_bytes());
    out.push(b'"');
    if !event.tags.is_empty() {
        out.extend_from_slice(b",\"tags\":{");
        for (i, (k, v)) in event.tags.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            write_str(out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"fields\":");
    write_fields(out, &event.fields);
    if !event.body.is_empty() {
        out.extend_from_slice(b",\"body\":");
        write_str(out, &String::from_utf8_lossy(&event.body));
    }
    out.push(b'}');
}

fn encode_human(event: &Event, out: &mut Vec<u8>) {
    match event.timestamp {
        Some(ts) => write_rfc3339(out, ts),
        None => out.push(b'-'),
    }
    let _ = write!(
        out,
        " {:<5} {}",
        event.level.as_str().to_uppercase(),
        event.name
    );
    for (k, v) in event.tags.iter() {
        let _ = write!(out, " #{k}={v}");
    }
    if event.fields.is_empty() {
        out.push(b' ');
        out.extend_from_slice(&event.body);
        return;
    }
    for (k, v) in &event.fields.to_map() {
        let _ = write!(out, " {k}=");
        match v {
            Value::String(s) => out.extend_from_slice(s.as_bytes()),
            other => write_value(out, other),
        }
    }
}

/// What a byte becomes in a JSON string: 0 = itself, `u` = `\u00XX`, else `\` + it.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Whether any byte of `word` is a control character, `"` or `\\` (SWAR: a byte is
/// flagged when subtracting from it borrows, i.e. it is below the bound or equal).
fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote & HIGH;
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash & HIGH;
    (below_space | quote | backslash) != 0
}

/// Writes `s` as a JSON string: quotes, backslashes and control characters escaped,
/// everything else copied as it is (it is UTF-8 already).
fn write_str(out: &mut Vec<u8>, s: &str) {
    write_text(out, s.as_bytes());
}

/// [`write_str`] for text held as bytes: a checked wire-form string (UTF-8, checked when
/// the plugin's output was), written without being checked again.
fn write_text(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip eight bytes at a time while none of them needs escaping.
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        i += 1;
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&bytes[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Writes fields as a JSON object, straight from the flat form when they are in it.
pub fn write_fields(out: &mut Vec<u8>, fields: &Fields) {
    match fields.repr() {
        FieldsRepr::Empty => out.extend_from_slice(b"{}"),
        FieldsRepr::Owned(map) => write_map(out, map),
        FieldsRepr::Flat(object) => {
            let mut pos = 0;
            write_flat(out, object, &mut pos);
        }
    }
}

/// Writes the subtree at `pos` of a (checked) flat object as JSON.
fn write_flat(out: &mut Vec<u8>, object: &FlatObject, pos: &mut usize) {
    let node = object.node(*pos);
    *pos += 1;
    match node.kind {
        kind::BOOL if node.payload != 0 => out.extend_from_slice(b"true"),
        kind::BOOL => out.extend_from_slice(b"false"),
        kind::INT => write_value(out, &Value::Int(node.payload as i64)),
        kind::UINT => write_value(out, &Value::from_u64(node.payload)),
        kind::FLOAT => write_value(out, &Value::Float(f64::from_bits(node.payload))),
        kind::STR => write_text(out, object.bytes(node.payload)),
        kind::BYTES => write_str(out, &String::from_utf8_lossy(object.bytes(node.payload))),
        kind::ARRAY => {
            out.push(b'[');
            for i in 0..node.payload {
                if i > 0 {
                    out.push(b',');
                }
                write_flat(out, object, pos);
            }
            out.push(b']');
        }
        kind::OBJECT => {
            out.push(b'{');
            for i in 0..node.payload {
                if i > 0 {
                    out.push(b',');
                }
                write_text(out, object.bytes(object.node(*pos).key));
                out.push(b':');
                write_flat(out, object, pos);
            }
            out.push(b'}');
        }
        _ => out.extend_from_slice(b"null"),
    }
}

fn write_map(out: &mut Vec<u8>, map: &Map) {
    out.push(b'{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v);
    }
    out.push(b'}');
}

/// Writes a value as JSON. Floats keep a decimal point (`1.0`); non-finite floats, which
/// JSON cannot hold, become `null`; bytes become a string (invalid UTF-8 replaced).
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Value::Uint(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Value::Float(f) if f.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, f);
        }
        Value::Float(_) => out.extend_from_slice(b"null"),
        Value::String(s) => write_str(out, s),
        Value::Bytes(b) => write_str(out, &String::from_utf8_lossy(b)),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Reads one event written as a JSON object in the form [`Format::Json`] writes:
/// `name` (default `default_name`), `timestamp` (RFC 3339 text, or nanoseconds since
/// the epoch), `level` (`info`, …), `tags` (an object of strings), `fields` (an object)
/// and `body` (text) — each optional, no other keys.
pub fn decode_json_event(line: &[u8], default_name: &Arc<str>) -> Result<Event, String> {
    let object = match serde_json::from_slice(line) {
        Ok(serde_json::Value::Object(object)) => object,
        Ok(_) => return Err("not a JSON object".into()),
        Err(e) => return Err(format!("not JSON: {e}")),
    };
    let mut event = Event::from_body(default_name.clone(), Vec::new());
    for (key, value) in object {
        let wrong = |expected: &str| format!("`{key}` must be {expected}");
        match (key.as_str(), value) {
            ("name", serde_json::Value::String(name)) => event.name = Arc::from(name),
            ("timestamp", serde_json::Value::String(text)) => {
                let t = time::OffsetDateTime::parse(
                    &text,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|e| format!("`timestamp` {text:?} is not RFC 3339: {e}"))?;
                let ns = i64::try_from(t.unix_timestamp_nanos())
                    .map_err(|_| format!("`timestamp` {text:?} is out of range"))?;
                event.timestamp = Some(ns);
            }
            ("timestamp", serde_json::Value::Number(n)) => {
                event.timestamp =
                    Some(n.as_i64().ok_or_else(|| {
                        wrong("RFC 3339 text or whole nanoseconds since the epoch")
                    })?);
            }
            ("level", serde_json::Value::String(name)) => {
                event.level = Level::from_name(&name)
                    .ok_or_else(|| wrong("trace, debug, info, warn, error, fatal or unknown"))?;
            }
            ("tags", serde_json::Value::Object(tags)) => {
                for (k, v) in tags {
                    match v {
                        serde_json::Value::String(v) => event.tags.set(k, v),
                        _ => return Err(format!("tag `{k}` must be a string")),
                    }
                }
            }
            ("fields", serde_json::Value::Object(fields)) => {
                event.fields = Fields::from(
                    fields
                        .into_iter()
                        .map(|(k, v)| (k, json_to_value(v)))
                        .collect::<Map>(),
                );
            }
            ("body", serde_json::Value::String(body)) => event.body = body.into_bytes(),
            ("name" | "body", _) => return Err(wrong("a string")),
            ("timestamp", _) => {
                return Err(wrong("RFC 3339 text or whole nanoseconds since the epoch"));
            }
            ("level", _) => return Err(wrong("a string")),
            ("tags" | "fields", _) => return Err(wrong("an object")),
            (other, _) => {
                return Err(format!(
                    "unknown key `{other}` (expected name, timestamp, level, tags, fields, body)"
                ));
            }
        }
    }
    Ok(event)
}

/// A JSON value as a field value (integers stay integers, other numbers are floats).
pub(crate) fn json_to_value(value: serde_json::Value) -> Value {
    match value {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::from_u64(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(s),
        serde_json::Value::Array(items) => {
            Value::Array(items.into_iter().map(json_to_value).collect())
        }
        serde_json::Value::Object(members) => Value::Object(
            members
                .into_iter()
                .map(|(k, v)| (k, json_to_value(v)))
                .collect(),
        ),
    }
}

/// Writes nanoseconds since the epoch as RFC 3339 UTC (`2015-05-17T10:05:03Z`, with a
/// fraction only when there is one).
pub fn write_rfc3339(out: &mut Vec<u8>, ts_ns: i64) {
    let secs = ts_ns.div_euclid(1_000_000_000);
    let nanos = ts_ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        let y = y as u32;
        push_digits(out, y / 100);
        push_digits(out, y % 100);
    } else {
        let _ = write!(out, "{y:04}");
    }
    out.push(b'-');
    push_digits(out, m);
    out.push(b'-');
    push_digits(out, d);
    out.push(b'T');
    push_digits(out, (sod / 3600) as u32);
    out.push(b':');
    push_digits(out, (sod % 3600 / 60) as u32);
    out.push(b':');
    push_digits(out, (sod % 60) as u32);
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        out.push(b'.');
        out.extend_from_slice(frac.trim_end_matches('0').as_bytes());
    }
    out.push(b'Z');
}

/// Two decimal digits of `n` (< 100).
fn push_digits(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant); the inverse of
/// [`civil_from_days`].
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod calendar_tests {
    use super::*;

    #[test]
    fn days_and_dates_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(days_from_civil(2015, 5, 17), 16_572);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;

    #[test]
    fn json_events_read_back_what_the_json_format_writes() {
        let mut fields = Map::new();
        fields.insert("status".into(), Value::Int(404));
        fields.insert("ratio".into(), Value::Float(1.0));
        fields.insert("big".into(), Value::Uint(u64::MAX));
        fields.insert("none".into(), Value::Null);
        fields.insert(
            "nested".into(),
            Value::Object(Map::from_iter([(
                "list".to_owned(),
                Value::Array(vec![Value::Bool(true), Value::String("x".into())]),
            )])),
        );
        let mut event = Event::from_body(Arc::from("web"), b"GET / 404".to_vec());
        event.timestamp = Some(1_431_857_103_250_000_000);
        event.level = Level::Warn;
        event.tags.set("host", "gw-7");
        event.fields = Fields::from(fields);
        let mut line = Vec::new();
        Format::Json.encode(&event, &mut line);
        let back = decode_json_event(&line, &Arc::from("default")).unwrap();
        assert_eq!(back, event);
        // Field order is kept.
        let mut again = Vec::new();
        Format::Json.encode(&back, &mut again);
        assert_eq!(again, line);
    }

    #[test]
    fn json_events_take_defaults_offsets_and_nanoseconds() {
        let name = Arc::from("stdin");
        let e = decode_json_event(br#"{"body":"x"}"#, &name).unwrap();
        assert_eq!(
            (&*e.name, e.level, e.timestamp),
            ("stdin", Level::Unknown, None)
        );
        let e = decode_json_event(br#"{"timestamp":"2015-05-17T12:05:03+02:00"}"#, &name).unwrap();
        assert_eq!(e.timestamp, Some(1_431_857_103_000_000_000));
        let e = decode_json_event(br#"{"timestamp":5,"level":"ERROR"}"#, &name).unwrap();
        assert_eq!((e.timestamp, e.level), (Some(5), Level::Error));
    }

    #[test]
    fn bad_json_events_are_refused_naming_the_key() {
        let name = Arc::from("stdin");
        for (line, expected) in [
            (&br#"[1]"#[..], "not a JSON object"),
            (br#"{"#, "not JSON"),
            (br#"{"level":"loud"}"#, "`level`"),
            (br#"{"timestamp":"yesterday"}"#, "not RFC 3339"),
            (br#"{"fields":[1]}"#, "`fields` must be an object"),
            (br#"{"tags":{"a":1}}"#, "tag `a`"),
            (br#"{"colour":"red"}"#, "unknown key `colour`"),
        ] {
            let error = decode_json_event(line, &name).unwrap_err();
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn rfc3339_dates() {
        let mut out = Vec::new();
        write_rfc3339(&mut out, 1_431_857_103_000_000_000);
        assert_eq!(out, b"2015-05-17T10:05:03Z");
        out.clear();
        write_rfc3339(&mut out, -1_500_000_000);
        assert_eq!(out, b"1969-12-31T23:59:58.5Z");
    }

    #[test]
    fn json_keeps_types() {
        let mut event = Event::from_body(Arc::from("app"), Vec::new());
        event.level = Level::Warn;
        event.fields.insert("f", Value::Float(1.0));
        event.fields.insert("n", Value::Null);
        event.fields.insert("a", Value::Array(vec![]));
        event.fields.insert("o", Value::Object(Map::new()));
        event.fields.insert("u", Value::Uint(u64::MAX));
        event.tags.set("host", "gw\"1");
        let mut out = Vec::new();
        Format::Json.encode(&event, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"name\":\"app\",\"level\":\"warn\",\"tags\":{\"host\":\"gw\\\"1\"},\"fields\":{\"f\":1.0,\"n\":null,\"a\":[],\"o\":{},\"u\":18446744073709551615}}\n"
        );
    }

    #[test]
    fn strings_are_escaped_like_serde_json() {
        for s in [
            "plain",
            "quote\" back\\slash",
            "tab\tnl\nnul\u{0}esc\u{1b}del\u{7f}",
            "é😀\u{2028}",
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(s).unwrap()
            );
        }
    }

    #[test]
    fn raw_and_fields_formats() {
        let mut event = Event::from_body(Arc::from("app"), b"line \xff".to_vec());
        event.fields.insert("k", Value::Int(1));
        let mut out = Vec::new();
        Format::Raw.encode(&event, &mut out);
        Format::Fields.encode(&event, &mut out);
        assert_eq!(out, b"line \xff\n{\"k\":1}\n");
    }
}
