//! The line scanner: bytes in, borrowed parts out. No allocation.

use std::fmt;

#[derive(Debug, PartialEq)]
pub struct AccessLine<'a> {
    pub host: &'a str,
    pub ident: Option<&'a str>,
    pub user: Option<&'a str>,
    pub timestamp_ns: i64,
    pub request: Request<'a>,
    pub status: u16,
    pub size: Option<i64>,
    /// `None`: the line is in the common format (no referrer/agent).
    /// `Some(None)`: the field is `-`.
    pub referrer: Option<Option<&'a str>>,
    pub agent: Option<Option<&'a str>>,
}

#[derive(Debug, PartialEq)]
pub enum Request<'a> {
    Parts {
        method: &'a str,
        path: &'a str,
        protocol: Option<&'a str>,
    },
    /// Anything that is not `METHOD PATH [PROTOCOL]` (`-`, binary junk, …).
    Raw(&'a str),
}

#[derive(Debug, PartialEq, Eq)]
pub struct ParseError {
    pub what: &'static str,
    pub at: usize,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "combined: expected {} at byte {}", self.what, self.at)
    }
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &'static str) -> ParseError {
        ParseError { what, at: self.pos }
    }

    fn skip_spaces(&mut self) {
        while self.s.as_bytes().get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    /// A run of non-space bytes.
    fn word(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.skip_spaces();
        let rest = &self.s[self.pos..];
        let len = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
        if len == 0 {
            return Err(self.err(what));
        }
        self.pos += len;
        Ok(&rest[..len])
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), ParseError> {
        self.skip_spaces();
        if self.s.as_bytes().get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// Text up to `close` (not included), then past it.
    fn until(&mut self, close: u8, what: &'static str) -> Result<&'a str, ParseError> {
        let rest = &self.s[self.pos..];
        let len = rest
            .bytes()
            .position(|b| b == close)
            .ok_or_else(|| self.err(what))?;
        self.pos += len + 1;
        Ok(&rest[..len])
    }

    /// A double-quoted string; `\"` does not end it. An unterminated string at the end of
    /// the line runs to the end (real logs truncate long user agents).
    fn quoted(&mut self, what: &'static str) -> Result<&'a str, ParseError> {
        self.expect(b'"', what)?;
        let bytes = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        while let Some(found) = memchr::memchr2(b'"', b'\\', &bytes[i..]) {
            let at = i + found;
            if bytes[at] == b'"' {
                self.pos = at + 1;
                return Ok(&self.s[start..at]);
            }
            // A backslash: the next byte is escaped.
            i = (at + 2).min(bytes.len());
        }
        self.pos = bytes.len();
        Ok(&self.s[start..])
    }

    fn at_end(&mut self) -> bool {
        self.skip_spaces();
        self.pos >= self.s.len()
    }
}

fn dash(s: &str) -> Option<&str> {
    if s == "-" { None } else { Some(s) }
}

/// Parses one line.
pub fn parse(line: &[u8]) -> Result<AccessLine<'_>, ParseError> {
    let s = std::str::from_utf8(line).map_err(|e| ParseError {
        what: "UTF-8 text",
        at: e.valid_up_to(),
    })?;
    let s = s.trim_end_matches(['\r', '\n']);
    let mut c = Cursor { s, pos: 0 };
    let host = c.word("the client address")?;
    let ident = dash(c.word("the ident field")?);
    let user = dash(c.word("the user field")?);
    c.expect(b'[', "`[` before the time")?;
    let time_at = c.pos;
    let time = c.until(b']', "`]` after the time")?;
    let timestamp_ns = parse_time(time).ok_or(ParseError {
        what: "a time like 17/May/2015:10:05:03 +0000",
        at: time_at,
    })?;
    let request = parse_request(c.quoted("the quoted request")?);
    let status_at = c.pos;
    let status = c
        .word("the status code")?
        .parse::<u16>()
        .map_err(|_| ParseError {
            what: "a numeric status code",
            at: status_at + 1,
        })?;
    let size_at = c.pos;
    let size = match c.word("the response size")? {
        "-" => None,
        n => Some(n.parse::<i64>().map_err(|_| ParseError {
            what: "a numeric size or `-`",
            at: size_at + 1,
        })?),
    };
    let (referrer, agent) = if c.at_end() {
        (None, None)
    } else {
        let referrer = dash(c.quoted("the quoted referrer")?);
        let agent = dash(c.quoted("the quoted user agent")?);
        (Some(referrer), Some(agent))
    };
    Ok(AccessLine {
        host,
        ident,
        user,
        timestamp_ns,
        request,
        status,
        size,
        referrer,
        agent,
    })
}

fn parse_request(raw: &str) -> Request<'_> {
    let mut parts = raw.split(' ');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(path), protocol, None)
            if !method.is_empty()
                && method.bytes().all(|b| b.is_ascii_uppercase())
                && !path.is_empty() =>
        {
            Request::Parts {
                method,
                path,
                protocol,
            }
        }
        _ => Request::Raw(raw),
    }
}

/// `17/May/2015:10:05:03 +0000` → nanoseconds since the Unix epoch.
pub fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { t.get(r)?.parse::<i64>().ok() };
    let day = num(0..2)?;
    let month = match &t[3..6] {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year = num(7..11)?;
    let (hour, min, sec) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset = sign * (num(22..24)? * 3600 + num(24..26)? * 60);
    if !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = runnel_plugin_sdk::time::days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset;
    secs.checked_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)""#;

    #[test]
    fn parses_a_combined_line() {
        let l = parse(LINE.as_bytes()).unwrap();
        assert_eq!(l.host, "83.149.9.216");
        assert_eq!((l.ident, l.user), (None, None));
        // 2015-05-17T10:05:03Z
        assert_eq!(l.timestamp_ns, 1_431_857_103_000_000_000);
        assert_eq!(
            l.request,
            Request::Parts {
                method: "GET",
                path: "/presentations/logstash-monitorama-2013/images/kibana-search.png",
                protocol: Some("HTTP/1.1"),
            }
        );
        assert_eq!((l.status, l.size), (200, Some(203023)));
        assert_eq!(
            l.referrer,
            Some(Some(
                "http://semicomplete.com/presentations/logstash-monitorama-2013/"
            ))
        );
        assert_eq!(
            l.agent,
            Some(Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)"))
        );
    }

    #[test]
    fn parses_common_format_and_dashes() {
        let l = parse(br#"10.0.0.1 id frank [10/Oct/2000:13:55:36 -0700] "GET /x HTTP/1.0" 304 -"#)
            .unwrap();
        assert_eq!((l.ident, l.user), (Some("id"), Some("frank")));
        assert_eq!(l.size, None);
        assert_eq!((l.referrer, l.agent), (None, None));
        // 2000-10-10T20:55:36Z
        assert_eq!(l.timestamp_ns, 971_211_336_000_000_000);
    }

    #[test]
    fn odd_requests_are_kept_raw() {
        let l = parse(br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "-" 408 - "-" "-""#).unwrap();
        assert_eq!(l.request, Request::Raw("-"));
        assert_eq!((l.referrer, l.agent), (Some(None), Some(None)));
    }

    #[test]
    fn unterminated_agent_runs_to_end_of_line() {
        let l = parse(br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 5 "-" "Googlebot/2.1"#)
            .unwrap();
        assert_eq!(l.agent, Some(Some("Googlebot/2.1")));
    }

    #[test]
    fn escaped_quotes_do_not_end_a_field() {
        let l = parse(
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a\"b HTTP/1.1" 200 5 "-" "x""#,
        )
        .unwrap();
        assert!(matches!(
            l.request,
            Request::Parts {
                path: r#"/a\"b"#,
                ..
            }
        ));
    }

    #[test]
    fn malformed_lines_name_what_is_missing() {
        assert_eq!(parse(b"").unwrap_err().what, "the client address");
        assert_eq!(
            parse(b"1.2.3.4 - - 17/May").unwrap_err().what,
            "`[` before the time"
        );
        assert!(parse(b"1.2.3.4 - - [yesterday] \"GET / HTTP/1.1\" 200 1").is_err());
        assert_eq!(
            parse(br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" OK 1"#)
                .unwrap_err()
                .what,
            "a numeric status code"
        );
        assert_eq!(parse(b"\xff\xfe").unwrap_err().what, "UTF-8 text");
    }

    #[test]
    fn every_line_of_the_vendored_access_log_parses() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/data/apache_access/apache_logs"
        );
        let data = std::fs::read_to_string(path).expect("the vendored test data (tests/data)");
        let mut n = 0;
        for (i, line) in data.lines().enumerate() {
            parse(line.as_bytes()).unwrap_or_else(|e| panic!("line {}: {e}: {line}", i + 1));
            n += 1;
        }
        assert_eq!(n, 10_000);
    }
}
