//! `pop3 fetch --import-uidls KIND:FILE`: moving from mpop or fetchmail without fetching
//! again what they fetched (with their `keep`), by recording their UIDLs in our target's
//! record, as if we had stored those messages.
//!
//! - `mpop:FILE`, mpop's `uidls_file` (`~/.mpop_uidls` by default): comment lines start with
//!   `#`; a line starting with a space begins a list, ` <count> <host> <user>`, and the
//!   count lines after it are the UIDLs, one a line.
//! - `fetchmail:FILE`, fetchmail's `.fetchids` (`--idfile`): one `<user>@<host> <uidl>` a
//!   line (the user may hold `@`, and may be quoted).
//!
//! Only the entries of each account's own host (compared without regard to case) and user
//! are taken.

use std::path::Path;

use crate::fetch::{Error, Plan};
use crate::sink::key;
use crate::target::{self, Owner};

/// Who and what: the UIDLs of one (host, user).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) host: String,
    pub(crate) user: String,
    pub(crate) uidl: String,
}

/// mpop's UIDLs file.
pub(crate) fn parse_mpop(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut current: Option<(String, String, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if let Some(head) = line.strip_prefix(' ') {
            if let Some((_, _, left)) = &current
                && *left > 0
            {
                return Err(format!(
                    "line {}: a new list before the last one ended",
                    n + 1
                ));
            }
            let mut parts = head.splitn(3, ' ');
            let (Some(count), Some(host), Some(user)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("line {}: expected \" count host user\"", n + 1));
            };
            let count = count
                .parse()
                .map_err(|_| format!("line {}: {count:?} is not a count", n + 1))?;
            current = Some((host.to_string(), user.to_string(), count));
            continue;
        }
        if line.is_empty() {
            continue;
        }
        match &mut current {
            Some((host, user, left)) if *left > 0 => {
                *left -= 1;
                out.push(Entry {
                    host: host.clone(),
                    user: user.clone(),
                    uidl: line.to_string(),
                });
            }
            _ => return Err(format!("line {}: a UIDL outside a list", n + 1)),
        }
    }
    Ok(out)
}

/// fetchmail's `.fetchids`.
pub(crate) fn parse_fetchmail(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || format!("line {}: expected \"user@host uidl\"", n + 1);
        let (who, uidl) = line.rsplit_once(' ').ok_or_else(bad)?;
        let (user, host) = who.trim().rsplit_once('@').ok_or_else(bad)?;
        let user = user
            .strip_prefix('"')
            .and_then(|u| u.strip_suffix('"'))
            .unwrap_or(user);
        out.push(Entry {
            host: host.to_string(),
            user: user.to_string(),
            uidl: uidl.to_string(),
        });
    }
    Ok(out)
}

/// Reads `spec` (`mpop:FILE` or `fetchmail:FILE`).
fn read(spec: &str) -> Result<(&str, Vec<Entry>), Error> {
    let (kind, file) = spec
        .split_once(':')
        .ok_or("--import-uidls takes mpop:FILE or fetchmail:FILE")?;
    let text =
        std::fs::read_to_string(Path::new(file)).map_err(|e| format!("cannot read {file}: {e}"))?;
    let entries = match kind {
        "mpop" => parse_mpop(&text),
        "fetchmail" => parse_fetchmail(&text),
        _ => {
            return Err(
                format!("--import-uidls {kind}:...: expected mpop:FILE or fetchmail:FILE").into(),
            );
        }
    }
    .map_err(|e| format!("{file}: {e}"))?;
    Ok((file, entries))
}

/// Records, for each account of `plan`, the UIDLs `spec` holds for its host and user.
pub(crate) fn run(plan: &Plan, spec: &str, quiet: bool) -> Result<(), Error> {
    let (file, entries) = read(spec)?;
    let mut imported = 0;
    for a in &plan.accounts {
        let keys: Vec<String> = entries
            .iter()
            .filter(|e| e.host.eq_ignore_ascii_case(&a.url.host) && e.user == a.user)
            .map(|e| key(&a.url.host, &a.user, &e.uidl))
            .collect();
        if keys.is_empty() {
            continue;
        }
        let mut t = target::open(
            &a.target,
            &Owner {
                host: &a.url.host,
                user: &a.user,
                account: &a.name,
                state_dir: &plan.state_dir,
            },
        )
        .map_err(|e| format!("{}: {e}", a.name))?;
        t.import(&keys)
            .map_err(|e| format!("{}: cannot write the record: {e}", a.name))?;
        imported += 1;
        if !quiet {
            println!(
                "{}: {} UIDLs of {}@{} recorded as fetched ({}): they will not be fetched again",
                a.name,
                keys.len(),
                a.user,
                a.url.host,
                a.target.describe()
            );
        }
    }
    if imported == 0 {
        let mut have: Vec<String> = entries
            .iter()
            .map(|e| format!("{}@{}", e.user, e.host))
            .collect();
        have.dedup();
        return Err(format!(
            "{file} has no UIDLs for {} (it has: {})",
            plan.accounts
                .iter()
                .map(|a| format!("{}@{}", a.user, a.url.host))
                .collect::<Vec<_>>()
                .join(", "),
            if have.is_empty() {
                "none".to_string()
            } else {
                have.join(", ")
            }
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpop_file() {
        let text = "# This file was generated by mpop version 1.4.18.\n#\n 2 127.0.0.1 alice\n1700000000.M1P9.test\n1700000001.M2P9.test\n 1 pop.example.com bob smith\nabc\n 0 other x\n";
        let e = parse_mpop(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            Entry {
                host: "127.0.0.1".into(),
                user: "alice".into(),
                uidl: "1700000000.M1P9.test".into()
            }
        );
        assert_eq!(e[2].user, "bob smith");
        assert!(parse_mpop(" 2 h u\nonly-one\n 1 h u\nx\n").is_err());
        assert!(parse_mpop("stray\n").is_err());
    }

    #[test]
    fn fetchmail_file() {
        let text = "alice@127.0.0.1 1700000000.M1P9.test\n\"a@b.c\"@pop.example.com <x@y>\n";
        let e = parse_fetchmail(text).unwrap();
        assert_eq!(e[0].user, "alice");
        assert_eq!(e[0].host, "127.0.0.1");
        assert_eq!(e[1].user, "a@b.c");
        assert_eq!(e[1].host, "pop.example.com");
        assert_eq!(e[1].uidl, "<x@y>");
        assert!(parse_fetchmail("nonsense\n").is_err());
    }
}
