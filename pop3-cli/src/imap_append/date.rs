//! The date a fetched message arrived, for the APPEND's internal date (RFC 3501 §2.3.3), so
//! that mail clients sorting by arrival show the original order, not the day of the move.
//!
//! RFC 5322 dates are parsed by chrono's `DateTime::parse_from_rfc2822`: chrono is already in
//! the dependency graph (imap-types' `DateTime` wraps `chrono::DateTime<FixedOffset>`), it
//! keeps the zone offset the header wrote (which INTERNALDATE carries too, so the server shows
//! the same wall-clock time), and it takes the obsolete syntax of RFC 5322 §4.3 found in old
//! mail (two-digit years, `GMT`/`EST`-style zone names, comments such as `(CEST)`).
//! mailparse's `dateparse` is laxer but returns UTC seconds, losing the offset, and would be
//! a new dependency.

use chrono::FixedOffset;

use super::{DateTime, header};

/// The internal date of `message`: the date of its first (topmost, i.e. the last hop's, the
/// one that delivered it) `Received:` header, after that header's last `;`; or else its
/// `Date:` header. `None` when neither exists or parses (the server then uses the time of
/// the APPEND). Folded header lines are unfolded; only the header section (up to the first
/// empty line) is looked at; header names match case-insensitively.
pub(crate) fn internal_date_of(message: &[u8]) -> Option<DateTime> {
    let mut seen_received = false;
    let mut received = None;
    let mut date = None;
    for (name, value) in header::fields(message) {
        if !seen_received && name.eq_ignore_ascii_case(b"received") {
            // Only the first Received: is the delivering hop's; later ones are older hops.
            // The date-time follows its last `;` (RFC 5322 §3.6.7); without one, or with a
            // date that does not parse, the Date: header is taken instead.
            seen_received = true;
            received = value
                .iter()
                .rposition(|&b| b == b';')
                .and_then(|i| parse_date(&value[i + 1..]));
        } else if date.is_none() && name.eq_ignore_ascii_case(b"date") {
            date = parse_date(&value);
        }
    }
    received.or(date)
}

/// An RFC 5322 date-time (obsolete forms included) as an IMAP date-time. A few forms seen in
/// the wild that chrono refuses are retried: runs of white space (folding), and a zone name
/// after the numeric offset without parentheses (`+0200 CEST`).
fn parse_date(value: &[u8]) -> Option<DateTime> {
    let text = std::str::from_utf8(value).ok()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let normalised = words.join(" ");
    let parsed = chrono::DateTime::parse_from_rfc2822(&normalised).or_else(|e| {
        // `… 10:52:37 +0200 CEST` or `… +0200 (CEST) extra`: drop what follows the offset.
        let offset_at = words
            .iter()
            .rposition(|w| (w.starts_with('+') || w.starts_with('-')) && w.len() == 5)
            .ok_or(e)?;
        chrono::DateTime::parse_from_rfc2822(&words[..=offset_at].join(" "))
    });
    to_imap(parsed.ok()?)
}

/// imap-types' date-time refuses years outside 0..=9999 and offsets with seconds; an RFC 5322
/// date never has fractional seconds.
fn to_imap(dt: chrono::DateTime<FixedOffset>) -> Option<DateTime> {
    DateTime::try_from(dt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> chrono::DateTime<FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn of(message: &str) -> Option<chrono::DateTime<FixedOffset>> {
        internal_date_of(message.as_bytes()).map(|d| *d.as_ref())
    }

    #[test]
    fn first_received_wins_over_date() {
        let m = "Return-Path: <a@b>\r\n\
                 Received: from mx.example.org (mx [192.0.2.1])\r\n\
                 \tby pop.example.net with ESMTPS id 42\r\n\
                 \tfor <b@example.net>; Tue, 1 Jul 2003 10:52:37 +0200 (CEST)\r\n\
                 Received: from older; Mon, 30 Jun 2003 08:00:00 -0000\r\n\
                 Date: Mon, 30 Jun 2003 07:59:00 +0000\r\n\
                 Subject: x\r\n\r\nbody; Wed, 2 Jul 2003 00:00:00 +0000\r\n";
        assert_eq!(of(m), Some(date("2003-07-01T10:52:37+02:00")));
        // The offset is kept, not converted to UTC.
        assert_eq!(
            internal_date_of(m.as_bytes())
                .unwrap()
                .as_ref()
                .offset()
                .local_minus_utc(),
            7200
        );
    }

    #[test]
    fn date_when_no_received() {
        let m = "From: a@b\nDATE:  Fri, 21 Nov 1997 09:55:06 -0600\nSubject: lf only\n\nx\n";
        assert_eq!(of(m), Some(date("1997-11-21T09:55:06-06:00")));
        // Obsolete forms: no day name, two-digit year, a zone name, folding.
        let m = "Date: 21 Nov 97\r\n 09:55:06 GMT\r\n\r\n";
        assert_eq!(of(m), Some(date("1997-11-21T09:55:06+00:00")));
        let m = "Date: Thu, 13 Feb 1969 23:32 -0330 (Newfoundland Time)\r\n\r\n";
        assert_eq!(of(m), Some(date("1969-02-13T23:32:00-03:30")));
        let m = "Date: Tue, 1 Jul 2003 10:52:37 +0200 CEST\r\n\r\n";
        assert_eq!(of(m), Some(date("2003-07-01T10:52:37+02:00")));
    }

    #[test]
    fn unparsable_received_falls_back_to_date() {
        let m = "Received: from x by y; yesterday\r\n\
                 Received: from older; Mon, 30 Jun 2003 08:00:00 -0000\r\n\
                 Date: Mon, 30 Jun 2003 07:59:00 +0000\r\n\r\n";
        assert_eq!(of(m), Some(date("2003-06-30T07:59:00+00:00")));
        let m =
            "Received: from x by y with no date\r\nDate: Mon, 30 Jun 2003 07:59:00 +0000\r\n\r\n";
        assert_eq!(of(m), Some(date("2003-06-30T07:59:00+00:00")));
    }

    #[test]
    fn none() {
        assert_eq!(
            of("Subject: no date\r\n\r\nDate: Mon, 30 Jun 2003 07:59:00 +0000\r\n"),
            None
        );
        assert_eq!(of("Date: garbage\r\n\r\n"), None);
        assert_eq!(of(""), None);
        assert!(internal_date_of(b"Date: \xff\xfe\r\n\r\n").is_none());
    }
}
