//! Timestamps: the text or number of a member → the event's timestamp.

const NANOS_PER_SEC: i64 = 1_000_000_000;

/// Whole seconds since the epoch → nanoseconds, `None` on overflow.
pub fn seconds_to_ns(secs: i64) -> Option<i64> {
    secs.checked_mul(NANOS_PER_SEC)
}

/// Fractional seconds since the epoch → nanoseconds (rounded), `None` when not finite or
/// out of range.
pub fn float_seconds_to_ns(secs: f64) -> Option<i64> {
    if !secs.is_finite() || secs.abs() >= 9.2e9 {
        return None;
    }
    let whole = secs.trunc();
    let frac = ((secs - whole) * 1e9).round() as i64;
    (whole as i64).checked_mul(NANOS_PER_SEC)?.checked_add(frac)
}

/// An RFC 3339 timestamp (`2024-05-01T10:00:00.123Z`, `2024-05-01 12:00:00+02:00`) →
/// nanoseconds since the epoch. Fractions past nanoseconds are truncated.
pub fn rfc3339_to_ns(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    let (hour, min, sec) = (digits(b, 11, 2)?, digits(b, 14, 2)?, digits(b, 17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let (nanos, rest) = fraction(&b[19..])?;
    let offset = utc_offset_secs(rest)?;
    let secs = runnel_plugin_sdk::time::days_from_civil(year, month, day) * 86_400
        + hour * 3600
        + min * 60
        + sec
        - offset;
    seconds_to_ns(secs)?.checked_add(nanos)
}

/// `len` ASCII digits at `at`.
fn digits(b: &[u8], at: usize, len: usize) -> Option<i64> {
    b.get(at..at + len)?.iter().try_fold(0i64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
    })
}

/// An optional `.fraction`; returns nanoseconds and the bytes after it.
fn fraction(b: &[u8]) -> Option<(i64, &[u8])> {
    let Some(rest) = b.strip_prefix(b".") else {
        return Some((0, b));
    };
    let len = rest.iter().take_while(|d| d.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    let mut nanos = 0i64;
    for i in 0..9 {
        let digit = rest
            .get(i)
            .filter(|_| i < len)
            .map_or(0, |d| i64::from(d - b'0'));
        nanos = nanos * 10 + digit;
    }
    Some((nanos, &rest[len..]))
}

/// `Z`, `z`, `+hh:mm` or `-hh:mm`, and nothing after.
fn utc_offset_secs(b: &[u8]) -> Option<i64> {
    match b {
        [b'Z' | b'z'] => Some(0),
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (hours, mins) = (digits(b, 1, 2)?, digits(b, 4, 2)?);
            if hours > 23 || mins > 59 {
                return None;
            }
            let secs = hours * 3600 + mins * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_utc_and_offsets() {
        // 2024-05-01T10:00:00Z = 1714557600 s.
        let base = 1_714_557_600 * NANOS_PER_SEC;
        assert_eq!(rfc3339_to_ns("2024-05-01T10:00:00Z"), Some(base));
        assert_eq!(
            rfc3339_to_ns("2024-05-01T10:00:00.123Z"),
            Some(base + 123_000_000)
        );
        assert_eq!(
            rfc3339_to_ns("2024-05-01t10:00:00.5z"),
            Some(base + 500_000_000)
        );
        assert_eq!(rfc3339_to_ns("2024-05-01T12:00:00+02:00"), Some(base));
        assert_eq!(rfc3339_to_ns("2024-05-01 07:30:00-02:30"), Some(base));
        assert_eq!(
            rfc3339_to_ns("2024-05-01T10:00:00.123456789123Z"),
            Some(base + 123_456_789)
        );
        assert_eq!(rfc3339_to_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(rfc3339_to_ns("1969-12-31T23:59:59Z"), Some(-NANOS_PER_SEC));
        assert_eq!(
            rfc3339_to_ns("2024-02-29T00:00:00Z"),
            Some(1_709_164_800 * NANOS_PER_SEC)
        );
    }

    #[test]
    fn rfc3339_rejects_malformed_text() {
        for text in [
            "",
            "2024-05-01",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00+0200",
            "2024-05-01T10:00:00.Z",
            "2024-13-01T10:00:00Z",
            "2023-02-29T10:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T10:00:00Zjunk",
            "2024-05-01T10:00:00+25:00",
            "2024-05-01X10:00:00Z",
            "20a4-05-01T10:00:00Z",
            "2024-05-01T10:00:00.123€",
        ] {
            assert_eq!(rfc3339_to_ns(text), None, "{text:?}");
        }
    }

    #[test]
    fn epoch_seconds() {
        assert_eq!(
            seconds_to_ns(1_714_557_600),
            Some(1_714_557_600 * NANOS_PER_SEC)
        );
        assert_eq!(seconds_to_ns(i64::MAX), None);
        assert_eq!(float_seconds_to_ns(1.5), Some(1_500_000_000));
        assert_eq!(float_seconds_to_ns(-1.5), Some(-1_500_000_000));
        let ns = float_seconds_to_ns(1_714_557_600.123).unwrap();
        assert!((ns - 1_714_557_600_123_000_000).abs() < 1_000, "{ns}");
        assert_eq!(float_seconds_to_ns(f64::NAN), None);
        assert_eq!(float_seconds_to_ns(1e300), None);
    }
}
