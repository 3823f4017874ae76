//! Time formats of the REST API: ISO 8601 UTC with microseconds (`timeStarted`) and
//! HTTP dates (`Last-Modified`, `If-Modified-Since`). Pure calendar arithmetic on Unix
//! time, UTC only.

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// (year, month 1-12, day 1-31) of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-21T10:34:35.200014Z` from microseconds since the epoch.
pub fn iso8601_us(us: u64) -> String {
    let secs = (us / 1_000_000) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// `Tue, 24 Nov 2026 15:55:19 GMT` from seconds since the epoch.
pub fn http_date(secs: u64) -> String {
    let secs = secs as i64;
    let days = secs.div_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let s = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(mo - 1) as usize],
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Parses an IMF-fixdate (`Tue, 24 Nov 2026 15:55:19 GMT`); `None` for anything else.
/// Lenient where MySQL Router 9.7.4 is (checked side by side): one-digit or signed
/// day and time fields, a 4-digit year, anything after `GMT`. The fields are at most
/// 2 characters (the year 4 digits): a header is outside input, and a 19-digit number
/// would overflow the day arithmetic.
pub fn parse_http_date(s: &str) -> Option<u64> {
    fn small(s: &str) -> Option<i64> {
        if s.is_empty() || s.len() > 2 {
            return None;
        }
        s.parse().ok()
    }
    let rest = s.trim().split_once(", ")?.1;
    let mut it = rest.split(' ');
    let d = small(it.next()?)?;
    let mon = it.next()?;
    let m = MONTHS.iter().position(|x| *x == mon)? as u32 + 1;
    let y = it.next()?;
    if y.len() != 4 || !y.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = y.parse().ok()?;
    let mut hms = it.next()?.split(':').map(small);
    let (h, mi, se) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let t = days_from_civil(y, m, d as u32) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_mysql_router() {
        // 2026-11-24T15:55:19.082607Z, the timeStarted of a captured /router/status.
        let us = 1_795_535_719_082_607;
        assert_eq!(iso8601_us(us), "2026-11-24T15:55:19.082607Z");
        assert_eq!(http_date(us / 1_000_000), "Tue, 24 Nov 2026 15:55:19 GMT");
        assert_eq!(
            parse_http_date("Tue, 24 Nov 2026 15:55:19 GMT"),
            Some(us / 1_000_000)
        );
        assert_eq!(iso8601_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(parse_http_date("yesterday"), None);
        assert_eq!(parse_http_date("Tue, 24 Nov 2026 25:00:00 GMT"), None);
    }

    /// Found while writing the HTTP fuzz target (its corpus keeps the input as seed
    /// `ims_huge_year`): a year of 19 digits overflowed the day arithmetic (a panic
    /// with overflow checks, a wrapped date without).
    #[test]
    fn junk_dates_are_refused_not_computed() {
        for y in [
            "9223372036854775807",
            "-9223372036854775808",
            "12001",
            "201",
            "-500",
        ] {
            let s = format!("Tue, 24 Nov {y} 15:55:19 GMT");
            assert_eq!(parse_http_date(&s), None, "{s}");
        }
        for s in [
            "Tue, 24 Nov 2026 -9223372036854775808:00:00 GMT",
            "Tue, 24 Nov 2026 15:555:19 GMT",
            "Tue, 999 Nov 2026 15:55:19 GMT",
        ] {
            assert_eq!(parse_http_date(s), None, "{s}");
        }
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Wed, 31 Dec 1969 23:59:59 GMT"), None);
        assert_eq!(
            parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(253_402_300_799)
        );
    }

    /// `If-Modified-Since` values MySQL Router 9.7.4 took as a date before its start
    /// (it answered 200) or not (304), recorded side by side.
    #[test]
    fn accepts_what_mysql_router_accepts() {
        let started = 1_795_535_719; // 2026-11-24
        for (date, newer) in [
            ("Mon, 01 Jan 2001 00:00:00 GMT", true),
            ("Mon, 01 Jan 2001 0:00:00 GMT", true),
            ("Mon, 1 Jan 2001 00:00:00 GMT", true),
            ("Mon, 01 Jan 12001 00:00:00 GMT", false),
            ("Mon, 01 Jan 201 00:00:00 GMT", false),
            ("Mon, 01 Jan 2001 00:00:00 GMT x", true),
            ("Mon, 01 Jan 9223372036854775807 00:00:00 GMT", false),
            ("Mon, 01 Jan 2001 -1:00:00 GMT", true),
            ("Monday, 01-Jan-01 00:00:00 GMT", false),
            ("Mon Jan  1 00:00:00 2001", false),
        ] {
            assert_eq!(
                parse_http_date(date).is_some_and(|t| started > t),
                newer,
                "{date}"
            );
        }
    }
}
