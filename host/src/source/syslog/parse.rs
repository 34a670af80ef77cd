//! Syslog messages: RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG`) and
//! RFC 3164 (`<PRI>Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, and the bare `<PRI>TAG: MSG`
//! that many libraries send, Python's `SysLogHandler` among them).
//!
//! A 3164 date has no year: it is given the year that puts it closest to the time of
//! reception, so `Dec 31 23:59:59` received on the 1st of January is last year's. Its
//! time has no zone either: it is read as UTC.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};

/// A parsed message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message<'a> {
    pub facility: u8,
    pub severity: u8,
    /// Nanoseconds since the epoch; `None` when the message has no time.
    pub timestamp: Option<i64>,
    pub host: Option<&'a str>,
    pub app: Option<&'a str>,
    pub procid: Option<&'a str>,
    pub msgid: Option<&'a str>,
    /// RFC 5424 structured data, values unescaped.
    pub structured: Vec<SdElement<'a>>,
    pub msg: &'a [u8],
}

/// An SD-ELEMENT: its SD-ID and its (name, value) parameters.
pub type SdElement<'a> = (&'a str, Vec<(&'a str, String)>);

/// The facility names of RFC 5424, by code.
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Parses one message; `now_ns` resolves a 3164 date's year. `Err` says what is wrong.
pub fn parse(raw: &[u8], now_ns: i64) -> Result<Message<'_>, String> {
    let raw = trim_end(raw);
    let (pri, rest) = priority(raw)?;
    let (facility, severity) = (pri / 8, pri % 8);
    let mut message = if let Some(after) = rest.strip_prefix(b"1 ") {
        rfc5424(after)?
    } else {
        rfc3164(rest, now_ns)
    };
    message.facility = facility;
    message.severity = severity;
    Ok(message)
}

fn trim_end(mut raw: &[u8]) -> &[u8] {
    while let [head @ .., b'\n' | b'\r' | b'\0'] = raw {
        raw = head;
    }
    raw
}

/// `<PRI>`: 0–191, one to three digits.
fn priority(raw: &[u8]) -> Result<(u8, &[u8]), String> {
    let Some(rest) = raw.strip_prefix(b"<") else {
        return Err("no <PRI> at the start".into());
    };
    let end = rest
        .iter()
        .take(4)
        .position(|b| *b == b'>')
        .ok_or("<PRI> is not closed by `>` within 3 digits")?;
    let digits = &rest[..end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err("<PRI> is not a number".into());
    }
    let pri: u16 = std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .ok_or("<PRI> is not a number")?;
    if pri > 191 {
        return Err(format!("<PRI> {pri} is above 191"));
    }
    Ok((pri as u8, &rest[end + 1..]))
}

/// The next space-separated field of a header, as UTF-8.
fn field<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a str, String> {
    let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
    let (head, tail) = rest.split_at(end);
    *rest = tail.strip_prefix(b" ").unwrap_or(tail);
    if head.is_empty() {
        return Err(format!("no {what}"));
    }
    std::str::from_utf8(head).map_err(|_| format!("{what} is not UTF-8"))
}

fn nil(value: &str) -> Option<&str> {
    (value != "-").then_some(value)
}

fn rfc5424(mut rest: &[u8]) -> Result<Message<'_>, String> {
    let time = field(&mut rest, "TIMESTAMP")?;
    let timestamp = match nil(time) {
        None => None,
        Some(time) => {
            Some(rfc3339(time).ok_or_else(|| format!("TIMESTAMP `{time}` is not RFC 3339"))?)
        }
    };
    let host = nil(field(&mut rest, "HOSTNAME")?);
    let app = nil(field(&mut rest, "APP-NAME")?);
    let procid = nil(field(&mut rest, "PROCID")?);
    let msgid = nil(field(&mut rest, "MSGID")?);
    let structured = if let Some(after) = rest.strip_prefix(b"-") {
        rest = after;
        Vec::new()
    } else if rest.first() == Some(&b'[') {
        structured_data(&mut rest)?
    } else {
        return Err("STRUCTURED-DATA is neither `-` nor `[…]`".into());
    };
    let mut msg = rest.strip_prefix(b" ").unwrap_or(rest);
    if let Some(after) = msg.strip_prefix(b"\xEF\xBB\xBF") {
        msg = after;
    }
    Ok(Message {
        timestamp,
        host,
        app,
        procid,
        msgid,
        structured,
        msg,
        ..Message::default()
    })
}

/// `[id name="value" …][id …]`, values with `\"`, `\\` and `\]` escapes.
fn structured_data<'a>(rest: &mut &'a [u8]) -> Result<Vec<SdElement<'a>>, String> {
    let mut elements = Vec::new();
    while let Some(after) = rest.strip_prefix(b"[") {
        *rest = after;
        let end = rest
            .iter()
            .position(|b| *b == b' ' || *b == b']')
            .ok_or("an SD-ELEMENT is not closed")?;
        let id = std::str::from_utf8(&rest[..end]).map_err(|_| "an SD-ID is not UTF-8")?;
        if id.is_empty() {
            return Err("an SD-ELEMENT has no SD-ID".into());
        }
        *rest = &rest[end..];
        let mut params = Vec::new();
        loop {
            match rest.first() {
                Some(b']') => {
                    *rest = &rest[1..];
                    break;
                }
                Some(b' ') => *rest = &rest[1..],
                Some(_) => {
                    let eq = rest
                        .iter()
                        .position(|b| *b == b'=')
                        .ok_or_else(|| format!("a parameter of [{id}] has no `=`"))?;
                    let name = std::str::from_utf8(&rest[..eq])
                        .map_err(|_| format!("a parameter name of [{id}] is not UTF-8"))?;
                    *rest = rest[eq + 1..]
                        .strip_prefix(b"\"")
                        .ok_or_else(|| format!("[{id} {name}=…] is not quoted"))?;
                    let mut value = Vec::new();
                    loop {
                        match rest {
                            [b'\\', c @ (b'"' | b'\\' | b']'), tail @ ..] => {
                                value.push(*c);
                                *rest = tail;
                            }
                            [b'"', tail @ ..] => {
                                *rest = tail;
                                break;
                            }
                            [c, tail @ ..] => {
                                value.push(*c);
                                *rest = tail;
                            }
                            [] => return Err(format!("[{id} {name}=\"…] is not closed")),
                        }
                    }
                    let value = String::from_utf8(value)
                        .map_err(|_| format!("[{id} {name}] is not UTF-8"))?;
                    params.push((name, value));
                }
                None => return Err(format!("[{id} …] is not closed")),
            }
        }
        elements.push((id, params));
    }
    Ok(elements)
}

/// `2026-11-27T07:50:00.123456Z` or with `+01:00`: nanoseconds since the epoch.
fn rfc3339(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        let digits = text.get(range)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut at = 19;
    let mut nanos = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while b.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        let frac = &text[start..at];
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        nanos = frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32);
    }
    let offset_secs: i64 = match &text[at..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6 && matches!(zone.as_bytes()[0], b'+' | b'-') => {
            let hours = num(at + 1..at + 3)? as i64;
            let minutes = num(at + 4..at + 6)? as i64;
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (hours * 3600 + minutes * 60)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(year as i32, month, day)?;
    let local = date.and_hms_nano_opt(hour, minute, second.min(59), nanos)?;
    let utc = Utc.from_utc_datetime(&local).timestamp_nanos_opt()?;
    Some(utc - offset_secs * 1_000_000_000)
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `Mmm dd hh:mm:ss` (day space-padded or not): the time in the year closest to `now`.
fn bsd_time(b: &[u8], now_ns: i64) -> Option<(i64, usize)> {
    let month = MONTHS.iter().position(|m| b.get(..3) == Some(&m[..]))? as u32 + 1;
    let mut at = 3;
    while b.get(at) == Some(&b' ') {
        at += 1;
    }
    let day_start = at;
    while b.get(at).is_some_and(u8::is_ascii_digit) {
        at += 1;
    }
    let day: u32 = std::str::from_utf8(&b[day_start..at]).ok()?.parse().ok()?;
    if b.get(at) != Some(&b' ') {
        return None;
    }
    let clock = b.get(at + 1..at + 9)?;
    if clock[2] != b':' || clock[5] != b':' {
        return None;
    }
    let two = |i: usize| -> Option<u32> {
        let d = &clock[i..i + 2];
        d.iter()
            .all(u8::is_ascii_digit)
            .then(|| ((d[0] - b'0') * 10 + (d[1] - b'0')) as u32)
    };
    let (hour, minute, second) = (two(0)?, two(3)?, two(6)?);
    let now = Utc.timestamp_nanos(now_ns);
    let best = [now.year() - 1, now.year(), now.year() + 1]
        .into_iter()
        .filter_map(|year| {
            let at =
                NaiveDate::from_ymd_opt(year, month, day)?.and_hms_opt(hour, minute, second)?;
            Utc.from_utc_datetime(&at).timestamp_nanos_opt()
        })
        .min_by_key(|t| (t - now_ns).unsigned_abs())?;
    Some((best, at + 9))
}

/// `TAG[PID]:` (or `TAG:`) at the start of a 3164 message's content.
fn tag(b: &[u8]) -> Option<(&str, Option<&str>, usize)> {
    let end = b
        .iter()
        .take(64)
        .position(|c| !(c.is_ascii_alphanumeric() || b"_-./".contains(c)))?;
    if end == 0 {
        return None;
    }
    let name = std::str::from_utf8(&b[..end]).ok()?;
    match b[end] {
        b':' => Some((name, None, end + 1)),
        b'[' => {
            let close = b[end..].iter().take(24).position(|c| *c == b']')? + end;
            let pid = std::str::from_utf8(&b[end + 1..close]).ok()?;
            (b.get(close + 1) == Some(&b':')).then_some((name, Some(pid), close + 2))
        }
        _ => None,
    }
}

/// RFC 3164, leniently: a date (or none), a host (when the next word is not a tag), a
/// tag (or none); whatever else is the message.
fn rfc3164(rest: &[u8], now_ns: i64) -> Message<'_> {
    let mut message = Message::default();
    let mut rest = rest;
    if let Some((timestamp, used)) = bsd_time(rest, now_ns) {
        message.timestamp = Some(timestamp);
        rest = rest[used..].strip_prefix(b" ").unwrap_or(&rest[used..]);
        if tag(rest).is_none() {
            let end = rest.iter().position(|b| *b == b' ').unwrap_or(rest.len());
            if let Ok(host) = std::str::from_utf8(&rest[..end])
                && !host.is_empty()
            {
                message.host = Some(host);
                rest = rest[end..].strip_prefix(b" ").unwrap_or(&rest[end..]);
            }
        }
    }
    if let Some((app, pid, used)) = tag(rest) {
        message.app = Some(app);
        message.procid = pid;
        rest = rest[used..].strip_prefix(b" ").unwrap_or(&rest[used..]);
    }
    message.msg = rest;
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_760_000_000_000_000; // 2026-11-27T03:33:20Z

    fn at(text: &str) -> i64 {
        rfc3339(text).unwrap()
    }

    #[test]
    fn rfc5424_with_structured_data_and_a_bom() {
        let raw = b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut=\"3\" eventSource=\"Appl\\\"ication\" eventID=\"1011\"][x@1 a=\"b\\]c\"] \xEF\xBB\xBFAn application event\n";
        let m = parse(raw, NOW).unwrap();
        assert_eq!((m.facility, m.severity), (20, 5));
        assert_eq!(m.timestamp, Some(1_065_910_455_003_000_000));
        assert_eq!(m.host, Some("mymachine.example.com"));
        assert_eq!(m.app, Some("evntslog"));
        assert_eq!(m.procid, None);
        assert_eq!(m.msgid, Some("ID47"));
        assert_eq!(m.structured.len(), 2);
        assert_eq!(m.structured[0].0, "exampleSDID@32473");
        assert_eq!(
            m.structured[0].1[1],
            ("eventSource", "Appl\"ication".to_owned())
        );
        assert_eq!(m.structured[1].1[0], ("a", "b]c".to_owned()));
        assert_eq!(m.msg, b"An application event");
        let m = parse(
            b"<34>1 2003-08-24T05:14:15.000003-07:00 host su 42 - - 'su root' failed",
            NOW,
        )
        .unwrap();
        assert_eq!(m.timestamp, Some(at("2003-08-24T12:14:15.000003Z")));
        assert_eq!((m.procid, m.msgid), (Some("42"), None));
        assert_eq!(m.msg, b"'su root' failed");
        let m = parse(b"<13>1 - - - - - -", NOW).unwrap();
        assert_eq!((m.timestamp, m.host, m.msg), (None, None, &b""[..]));
    }

    #[test]
    fn rfc3164_as_logger_and_python_send_it() {
        let m = parse(
            b"<13>Nov 27 03:30:00 gateway-7 myapp[4242]: disk at 91%",
            NOW,
        )
        .unwrap();
        assert_eq!((m.facility, m.severity), (1, 5));
        assert_eq!(m.timestamp, Some(at("2026-11-27T03:30:00Z")));
        assert_eq!(m.host, Some("gateway-7"));
        assert_eq!((m.app, m.procid), (Some("myapp"), Some("4242")));
        assert_eq!(m.msg, b"disk at 91%");
        let m = parse(b"<14>Nov  7 01:02:03 plc tag: x", NOW).unwrap();
        assert_eq!(m.timestamp, Some(at("2026-11-07T01:02:03Z")));
        // Python's SysLogHandler: no date, no host.
        let m = parse(b"<11>sensor.reader: value out of range\x00", NOW).unwrap();
        assert_eq!((m.severity, m.timestamp, m.host), (3, None, None));
        assert_eq!(m.app, Some("sensor.reader"));
        assert_eq!(m.msg, b"value out of range");
        // No tag: all of it is the message.
        let m = parse(b"<14>just words here", NOW).unwrap();
        assert_eq!((m.app, m.msg), (None, &b"just words here"[..]));
    }

    #[test]
    fn a_yearless_date_takes_the_year_closest_to_its_reception() {
        let new_year = at("2027-01-01T00:00:30Z");
        let m = parse(b"<13>Dec 31 23:59:50 h a: late", new_year).unwrap();
        assert_eq!(m.timestamp, Some(at("2026-12-31T23:59:50Z")));
        let old_year = at("2026-12-31T23:59:50Z");
        let m = parse(b"<13>Jan  1 00:00:05 h a: early", old_year).unwrap();
        assert_eq!(m.timestamp, Some(at("2027-01-01T00:00:05Z")));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        for (raw, why) in [
            (&b"no pri"[..], "no <PRI>"),
            (b"<1234>x", "not closed"),
            (b"<192>x", "above 191"),
            (b"<1a>x", "not a number"),
            (b"<13>1 yesterday h a - - - m", "not RFC 3339"),
            (
                b"<13>1 2003-10-11T22:14:15Z h a - - [id k=\"v",
                "not closed",
            ),
            (b"<13>1 2003-10-11T22:14:15Z h a - - oops", "neither"),
            (b"<13>1 2003-10-11T22:14:15Z", "no HOSTNAME"),
        ] {
            let e = parse(raw, NOW).unwrap_err();
            assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(raw));
        }
    }
}

/// The fuzz target of the syslog parser (issue 26): any bytes, and messages built from
/// the grammar's pieces with arbitrary values, never panic; what parses keeps its
/// priority, and its message is a part of the input.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn piece() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            Just(b"<13>".to_vec()),
            Just(b"<191>1 ".to_vec()),
            Just(b"1 ".to_vec()),
            Just(b"- ".to_vec()),
            Just(b"2026-12-07T10:00:00.123456+01:00 ".to_vec()),
            Just(b"Dec 31 23:59:59 ".to_vec()),
            Just(b"[id@1 a=\"b\\\"c\" d=\"\\]\"]".to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b"=\"".to_vec()),
            Just(b"host app[12]: ".to_vec()),
            Just("é\u{FEFF}".as_bytes().to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn any_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..600), now in any::<i64>()) {
            let _ = parse(&raw, now);
        }

        #[test]
        fn grammar_pieces_never_panic(pieces in proptest::collection::vec(piece(), 0..16), now in any::<i64>()) {
            let raw = pieces.concat();
            if let Ok(message) = parse(&raw, now) {
                prop_assert!(message.facility < 24 && message.severity < 8);
                let within = message.msg.is_empty()
                    || raw.windows(message.msg.len()).any(|w| w == message.msg);
                prop_assert!(within, "the message is not a part of the input");
            }
        }
    }
}
