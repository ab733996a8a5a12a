//! Names: user-name validation, the parts of a Maildir file name, and their ordering.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::ffi::OsStr;

use pop3_proto::Uid;
use sha2::{Digest, Sha256};

/// The longest user name accepted, in octets (the usual file-name limit).
pub(crate) const MAX_USER_LEN: usize = 255;

/// Whether `user` can name a directory directly under the root and nothing else: non-empty,
/// at most [`MAX_USER_LEN`] octets, no `/`, `\`, NUL or other control character, and no
/// leading `.` (which also rules out `.` and `..`, and Maildir++ folder names).
pub(crate) fn valid_user(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= MAX_USER_LEN
        && !user.starts_with('.')
        && !user
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

/// The octets of a file name. Maildir is a Unix format; elsewhere a name that is not Unicode
/// is taken lossily (it then cannot be found again by exact name, which only costs a rescan).
pub(crate) fn os_bytes(name: &OsStr) -> Cow<'_, [u8]> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Cow::Borrowed(name.as_bytes())
    }
    #[cfg(not(unix))]
    {
        match name.to_string_lossy() {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        }
    }
}

/// The unique name of a Maildir file: everything before the first `:` (which starts the
/// `:2,FLAGS` info part). Renames that change flags or move the file from `new/` to `cur/`
/// keep it.
pub(crate) fn unique_part(file_name: &[u8]) -> &[u8] {
    match memchr::memchr(b':', file_name) {
        Some(i) => &file_name[..i],
        None => file_name,
    }
}

/// The POP3 unique-id of a message: its unique name when that is a legal unique-id (1 to 70
/// octets of 0x21..=0x7E), otherwise the first 16 octets of the SHA-256 of the unique name in
/// 32 lower-case hex digits. Both depend on the unique name alone, so they never change.
pub(crate) fn uid_for(unique: &[u8]) -> Uid {
    if let Ok(uid) = Uid::new(unique) {
        return uid;
    }
    let digest = Sha256::digest(unique);
    let mut hex = Vec::with_capacity(32);
    for b in digest.iter().take(16) {
        hex.push(HEX[usize::from(b >> 4)]);
        hex.push(HEX[usize::from(b & 0xf)]);
    }
    // 32 hex digits are always a legal unique-id.
    Uid::new(hex).unwrap_or_else(|_| unreachable!("hex digits are a valid unique-id"))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The size fields of a unique name, as Dovecot and Courier write them:
/// `1700000000.M1P2.host,S=<physical size>,W=<size with CRLF line ends>`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SizeHints {
    /// `S=`: the file's length.
    pub(crate) physical: Option<u64>,
    /// `W=` (Dovecot): the length with every line end counted as CRLF.
    pub(crate) crlf: Option<u64>,
}

pub(crate) fn size_hints(unique: &[u8]) -> SizeHints {
    let mut hints = SizeHints::default();
    for field in unique.split(|&b| b == b',').skip(1) {
        let (slot, digits) = match field {
            [b'S', b'=', rest @ ..] => (&mut hints.physical, rest),
            [b'W', b'=', rest @ ..] => (&mut hints.crlf, rest),
            _ => continue,
        };
        if let Some(value) = parse_u64(digits) {
            *slot = Some(value);
        }
    }
    hints
}

/// A decimal number of 1 to 20 digits that fits in a u64.
pub(crate) fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Orders unique names by delivery: runs of digits compare as numbers, other octets as
/// octets. Names start with the delivery time in seconds, and Dovecot and Courier follow it
/// with `.M<microseconds>` unpadded, so a plain octet order would put `M99` after `M100000`.
/// Names that are equal as numbers (leading zeros) fall back to the octet order, so the
/// order is total.
pub(crate) fn delivery_order(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i].is_ascii_digit() && b[j].is_ascii_digit() {
            let (si, sj) = (i, j);
            while i < a.len() && a[i].is_ascii_digit() {
                i += 1;
            }
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            let x = trim_zeros(&a[si..i]);
            let y = trim_zeros(&b[sj..j]);
            let ord = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            if a[i] != b[j] {
                return a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
    }
    (a.len() - i).cmp(&(b.len() - j)).then_with(|| a.cmp(b))
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        for ok in [
            "alice",
            "a.b",
            "b..",
            "x@example.org",
            "é",
            &"u".repeat(255),
        ] {
            assert!(valid_user(ok), "{ok:?}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "../x",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            "a\u{7f}",
            &"u".repeat(256),
            &"é".repeat(128),
        ] {
            assert!(!valid_user(bad), "{bad:?}");
        }
    }

    #[test]
    fn unique_names_and_hints() {
        assert_eq!(
            unique_part(b"123.M4P5.h,S=10,W=12:2,RS"),
            b"123.M4P5.h,S=10,W=12"
        );
        assert_eq!(unique_part(b"123.M4P5.h"), b"123.M4P5.h");
        assert_eq!(
            size_hints(b"123.M4P5.h,S=10,W=12"),
            SizeHints {
                physical: Some(10),
                crlf: Some(12)
            }
        );
        assert_eq!(size_hints(b"123.h,S=x,W="), SizeHints::default());
        assert_eq!(size_hints(b"S=5.h"), SizeHints::default());
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }

    #[test]
    fn uids() {
        assert_eq!(uid_for(b"123.M4P5.h").as_str(), "123.M4P5.h");
        let long = [b'a'; 71];
        let hashed = uid_for(&long);
        assert_eq!(hashed.as_bytes().len(), 32);
        assert!(hashed.as_bytes().iter().all(u8::is_ascii_hexdigit));
        assert_eq!(hashed, uid_for(&long));
        assert_ne!(hashed, uid_for(&long[1..]));
        assert_eq!(uid_for(b"has space").as_bytes().len(), 32);
        assert_eq!(uid_for(b"").as_bytes().len(), 32);
    }

    #[test]
    fn order() {
        let mut names: Vec<&[u8]> = vec![
            b"1700000001.M5P1.h",
            b"999999999.M1P1.h",
            b"1700000000.M100000P1.h",
            b"1700000000.M99P1.h",
            b"1700000000.M099P1.h",
        ];
        names.sort_by(|a, b| delivery_order(a, b));
        let expected: Vec<&[u8]> = vec![
            b"999999999.M1P1.h",
            b"1700000000.M099P1.h",
            b"1700000000.M99P1.h",
            b"1700000000.M100000P1.h",
            b"1700000001.M5P1.h",
        ];
        assert_eq!(names, expected);
    }
}
