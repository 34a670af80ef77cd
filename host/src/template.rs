//! Templates that say where an event goes, from the event itself: a file path
//! `/var/log/runnel/{name}/%Y-%m-%d.log`, later an HDFS bucket or a Kafka topic.
//!
//! | in the template | becomes |
//! |---|---|
//! | `%Y` `%m` `%d` `%H` `%M` `%S` | the event's time (UTC; the time of writing when the event has none): year, month, day, hour, minute, second, zero-padded |
//! | `%%` | `%` |
//! | `{name}` | the event's name |
//! | `{fields.KEY}` | the top-level field `KEY` when it is a string, number or boolean |
//! | `{tags.KEY}` | the tag `KEY` |
//!
//! A missing field or tag becomes `_`. What a template inserts is made safe for a path
//! segment: `/`, `\`, [`MARKER`] (`~`) and control characters become `_`, and a value of
//! `.` or `..` becomes `_`, so an event can never name a place outside the template's
//! directories.
//!
//! **Bounded.** File systems refuse a path segment over 255 bytes (`ENAMETOOLONG`), HDFS
//! too. An inserted value over [`MAX_VALUE_BYTES`], and then a whole rendered segment
//! (between two `/`) over [`MAX_SEGMENT_BYTES`], is cut and its tail replaced by
//! `~h` and 16 hex digits of the SHA-256 of the whole value: the same value always
//! renders the same, two long values that differ render differently, and 255 − 180
//! bytes stay free for what a sink adds to a name (`.~<ms>.gz.tmp`, in-use suffixes).
//!
//! **The marker.** No event can put a `~` into a rendered text: the only `~` in one is
//! that of a hash tail (`~h…`) or of the template's own text, and the sinks that derive
//! names from a rendered path (rolled files: `PATH.~<ms>`) refuse a template whose text
//! holds one ([`Template::literal_has_marker`]). So a derived name can never be the
//! rendered path of another event.

use crate::event::Event;
use std::fmt::Write;

/// The character no event can insert (see the module's notes).
pub const MARKER: char = '~';

/// The longest an inserted value renders (bytes); a longer one is cut and hashed.
pub const MAX_VALUE_BYTES: usize = 128;

/// The longest a rendered path segment is (bytes); a longer one is cut and hashed.
pub const MAX_SEGMENT_BYTES: usize = 180;

/// `~h` and 16 hex digits.
const HASH_TAIL_BYTES: usize = 18;

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Time(TimeField),
    Name,
    Field(String),
    Tag(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeField {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
}

/// Why a template does not parse (the message names the place).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("unknown time escape `%{0}` (use %Y %m %d %H %M %S, or %% for a %)")]
    UnknownEscape(char),
    #[error("a `%` at the end (write %% for a %)")]
    TrailingPercent,
    #[error("`{{` without its `}}`")]
    Unclosed,
    #[error("unknown placeholder `{{{0}}}` (use {{name}}, {{fields.KEY}} or {{tags.KEY}})")]
    UnknownPlaceholder(String),
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let part = match c {
                '%' => match chars.next() {
                    Some('%') => {
                        literal.push('%');
                        continue;
                    }
                    Some('Y') => Part::Time(TimeField::Year),
                    Some('m') => Part::Time(TimeField::Month),
                    Some('d') => Part::Time(TimeField::Day),
                    Some('H') => Part::Time(TimeField::Hour),
                    Some('M') => Part::Time(TimeField::Minute),
                    Some('S') => Part::Time(TimeField::Second),
                    Some(other) => return Err(TemplateError::UnknownEscape(other)),
                    None => return Err(TemplateError::TrailingPercent),
                },
                '{' => {
                    let rest = chars.as_str();
                    let end = rest.find('}').ok_or(TemplateError::Unclosed)?;
                    let inner = &rest[..end];
                    chars = rest[end + 1..].chars();
                    match inner.split_once('.') {
                        _ if inner == "name" => Part::Name,
                        Some(("fields", key)) if !key.is_empty() => Part::Field(key.to_owned()),
                        Some(("tags", key)) if !key.is_empty() => Part::Tag(key.to_owned()),
                        _ => return Err(TemplateError::UnknownPlaceholder(inner.to_owned())),
                    }
                }
                c => {
                    literal.push(c);
                    continue;
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(part);
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }
}

impl Template {
    /// Whether every event renders the same (no escape, no placeholder).
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Literal(_)))
    }

    /// The template's own text (not what it inserts), run by run.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Literal(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// Whether the template's own text (not what it inserts) holds [`MARKER`].
    pub fn literal_has_marker(&self) -> bool {
        self.literals().any(|text| text.contains(MARKER))
    }

    /// The text before the first escape or placeholder: the same for every event.
    pub fn literal_prefix(&self) -> &str {
        match self.parts.first() {
            Some(Part::Literal(text)) => text,
            _ => "",
        }
    }

    /// Writes what the template makes of `event` into `out`; `now_ns` (ns since the
    /// epoch) stands for the time of an event that has none. Every segment of what it
    /// writes is at most [`MAX_SEGMENT_BYTES`] long.
    pub fn render(&self, event: &Event, now_ns: i64, out: &mut String) {
        let start = out.len();
        self.render_parts(event, now_ns, out);
        bound_segments(out, start);
    }

    fn render_parts(&self, event: &Event, now_ns: i64, out: &mut String) {
        let mut time = None;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Time(field) => {
                    let t = *time.get_or_insert_with(|| utc(event.timestamp.unwrap_or(now_ns)));
                    let _ = match field {
                        TimeField::Year => write!(out, "{:04}", t.year()),
                        TimeField::Month => write!(out, "{:02}", u8::from(t.month())),
                        TimeField::Day => write!(out, "{:02}", t.day()),
                        TimeField::Hour => write!(out, "{:02}", t.hour()),
                        TimeField::Minute => write!(out, "{:02}", t.minute()),
                        TimeField::Second => write!(out, "{:02}", t.second()),
                    };
                }
                Part::Name => push_segment(out, |s| s.push_str(&event.name)),
                Part::Field(key) => push_segment(out, |s| event.fields.scalar_text(key, s)),
                Part::Tag(key) => push_segment(out, |s| {
                    event.tags.get(key).map(|v| s.push_str(v)).is_some()
                }),
            }
        }
    }
}

fn utc(ns: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// Appends what `write` writes (`_` when it writes nothing or reports a missing value),
/// made safe as one path segment and at most [`MAX_VALUE_BYTES`] long.
fn push_segment<R: Into<Found>>(out: &mut String, write: impl FnOnce(&mut String) -> R) {
    let start = out.len();
    let found: Found = write(out).into();
    let value = &out[start..];
    if !found.0 || value.is_empty() || value == "." || value == ".." {
        out.truncate(start);
        out.push('_');
        return;
    }
    if value.chars().any(unsafe_in_segment) {
        let safe: String = value
            .chars()
            .map(|c| if unsafe_in_segment(c) { '_' } else { c })
            .collect();
        out.truncate(start);
        out.push_str(&safe);
    }
    bound(out, start, MAX_VALUE_BYTES);
}

/// Cuts `out[start..]` to at most `max` bytes when it is longer: its head (cut on a
/// character boundary), then `~h` and 16 hex digits of the SHA-256 of all of it.
fn bound(out: &mut String, start: usize, max: usize) {
    if out.len() - start <= max {
        return;
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &out.as_bytes()[start..]);
    let mut keep = start + max - HASH_TAIL_BYTES;
    while !out.is_char_boundary(keep) {
        keep -= 1;
    }
    out.truncate(keep);
    out.push(MARKER);
    out.push('h');
    for byte in &digest.as_ref()[..8] {
        let _ = write!(out, "{byte:02x}");
    }
}

/// Bounds every `/`-separated segment of `out[start..]` to [`MAX_SEGMENT_BYTES`].
fn bound_segments(out: &mut String, start: usize) {
    if out.len() - start <= MAX_SEGMENT_BYTES
        || out[start..]
            .split('/')
            .all(|segment| segment.len() <= MAX_SEGMENT_BYTES)
    {
        return;
    }
    let rendered = out.split_off(start);
    for (i, segment) in rendered.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        let at = out.len();
        out.push_str(segment);
        bound(out, at, MAX_SEGMENT_BYTES);
    }
}

/// Whether a value was there to write.
struct Found(bool);

impl From<()> for Found {
    fn from(_: ()) -> Self {
        Found(true)
    }
}

impl From<bool> for Found {
    fn from(found: bool) -> Self {
        Found(found)
    }
}

fn unsafe_in_segment(c: char) -> bool {
    c == '/' || c == '\\' || c == MARKER || c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    fn event() -> Event {
        let mut e = Event::from_body("app/../x".into(), b"line".to_vec());
        // 2026-11-27T03:04:05Z
        e.timestamp = Some(1_795_748_645_000_000_000);
        e.fields.insert("status", Value::Int(404));
        e.fields.insert("path", Value::String("../../etc".into()));
        e.fields.insert("nested", Value::Object(Default::default()));
        e.tags.set("site", "gw-7");
        e
    }

    fn render(template: &str, event: &Event) -> String {
        let t: Template = template.parse().unwrap();
        let mut out = String::new();
        t.render(event, 0, &mut out);
        out
    }

    #[test]
    fn renders_time_name_fields_and_tags() {
        let e = event();
        assert_eq!(
            render("/logs/{tags.site}/%Y/%m/%d/%H%M%S-{fields.status}.log", &e),
            "/logs/gw-7/2026/11/27/030405-404.log"
        );
        assert_eq!(
            render("100%% {fields.missing} {fields.nested}", &e),
            "100% _ _"
        );
        // No event time: the time given for now.
        let mut untimed = event();
        untimed.timestamp = None;
        let t: Template = "%Y-%m-%d".parse().unwrap();
        let mut out = String::new();
        t.render(&untimed, 86_400 * 1_000_000_000, &mut out);
        assert_eq!(out, "1970-01-02");
    }

    #[test]
    fn an_event_cannot_climb_out_of_the_templates_directories() {
        let e = event();
        assert_eq!(
            render("/logs/{name}/{fields.path}", &e),
            "/logs/app_.._x/.._.._etc"
        );
        let mut dots = event();
        dots.name = "..".into();
        assert_eq!(render("/logs/{name}/f", &dots), "/logs/_/f");
    }

    #[test]
    fn long_values_and_segments_are_cut_and_hashed_and_stay_distinct() {
        let mut e = event();
        e.name = "a".repeat(300).into();
        let long = render("/logs/{name}.log", &e);
        let segment = long.strip_prefix("/logs/").unwrap();
        assert_eq!(segment.len(), MAX_VALUE_BYTES + ".log".len(), "{long}");
        assert!(segment.starts_with(&"a".repeat(MAX_VALUE_BYTES - 18)));
        assert!(
            segment.ends_with(".log") && segment.contains("~h"),
            "{segment}"
        );
        assert_eq!(render("/logs/{name}.log", &e), long, "deterministic");
        let mut other = e.clone();
        other.name = format!("{}b", e.name).into();
        assert_ne!(render("/logs/{name}.log", &other), long, "distinct");
        // Several values in one segment: the segment is bounded as a whole.
        let both = render("/logs/{name}{name}{name}/x", &e);
        let segments: Vec<&str> = both.split('/').collect();
        assert_eq!(segments[2].len(), MAX_SEGMENT_BYTES, "{both}");
        assert_eq!(segments[3], "x");
        // A multibyte value is cut on a character boundary.
        e.name = "é".repeat(200).into();
        let cut = render("{name}", &e);
        assert!(cut.len() <= MAX_VALUE_BYTES, "{cut}");
        // A value at the limit is kept as it is.
        e.name = "b".repeat(MAX_VALUE_BYTES).into();
        assert_eq!(render("{name}", &e), *e.name);
    }

    #[test]
    fn an_event_cannot_insert_the_marker() {
        let mut e = event();
        e.name = "billing.~1700000000000".into();
        assert_eq!(render("/logs/{name}", &e), "/logs/billing._1700000000000");
        assert!(
            "/logs/~{name}"
                .parse::<Template>()
                .unwrap()
                .literal_has_marker()
        );
        assert!(
            !"/logs/{name}"
                .parse::<Template>()
                .unwrap()
                .literal_has_marker()
        );
        assert_eq!(
            "/logs/x/{name}/%Y"
                .parse::<Template>()
                .unwrap()
                .literal_prefix(),
            "/logs/x/"
        );
    }

    #[test]
    fn mistakes_are_named() {
        let parse = |t: &str| t.parse::<Template>().unwrap_err().to_string();
        assert!(parse("/x/%Q").contains("`%Q`"));
        assert!(parse("/x/%").contains("at the end"));
        assert!(parse("/x/{name").contains("without"));
        assert!(parse("/x/{host}").contains("`{host}`"));
        assert!(parse("/x/{fields.}").contains("`{fields.}`"));
        assert!("/plain/path.log".parse::<Template>().unwrap().is_static());
        assert!(!"/x/{name}".parse::<Template>().unwrap().is_static());
    }
}
