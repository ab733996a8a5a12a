//! `pop3 deliver`: a mail delivery agent (MDA). One message on standard input goes into one
//! user's maildrop in the store `pop3 serve` serves, durably, or not at all; the exit status
//! says which, with the codes of `sysexits.h` that MTAs understand: Postfix's
//! `mailbox_command`, procmail's `|` recipes, fetchmail's and getmail's `mda`.
//!
//! The store is a Maildir root (`--maildir-root`) or the one a `pop3 serve` configuration file
//! names (`--config`: `[store] maildir_root`, or `[store.postgres]`).
//!
//! A leading mbox `From ` line (what Postfix's local(8) and procmail put before a message
//! handed to a command) is the envelope, not the message, and is dropped, as dovecot-lda does.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use pop3_server_core::deliver::{Deliver, DeliverError};
use pop3_server_core::maildir::MaildirStore;

/// `EX_DATAERR`: the input is not acceptable (too big).
pub(crate) const EX_DATAERR: u8 = 65;
/// `EX_NOUSER`: no such user.
pub(crate) const EX_NOUSER: u8 = 67;
/// `EX_UNAVAILABLE`: a permanent failure of the store.
pub(crate) const EX_UNAVAILABLE: u8 = 69;
/// `EX_IOERR`: standard input could not be read.
pub(crate) const EX_IOERR: u8 = 74;
/// `EX_TEMPFAIL`: try again later (the MTA keeps the message queued).
pub(crate) const EX_TEMPFAIL: u8 = 75;
/// `EX_CONFIG`: the configuration is wrong.
pub(crate) const EX_CONFIG: u8 = 78;

/// `pop3 deliver`'s arguments.
#[derive(clap::Args, Debug)]
pub(crate) struct DeliverArgs {
    /// The recipient: the maildrop's user name.
    #[arg(long, value_name = "USER")]
    pub(crate) user: String,
    /// The store named in this `pop3 serve` configuration file.
    #[arg(long, value_name = "FILE", required_unless_present = "maildir_root")]
    pub(crate) config: Option<PathBuf>,
    /// User U's maildrop is the Maildir DIR/U (instead of --config's store).
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    pub(crate) maildir_root: Option<PathBuf>,
    /// Refuse (EX_DATAERR) a message larger than this many octets.
    #[arg(long, value_name = "OCTETS", default_value_t = 64 << 20)]
    pub(crate) max_size: u64,
}

/// A failure and its exit status.
struct Failure {
    status: u8,
    message: String,
}

fn fail(status: u8, message: impl Into<String>) -> Failure {
    Failure {
        status,
        message: message.into(),
    }
}

fn delivery_failure(e: DeliverError) -> Failure {
    let status = match e {
        DeliverError::NoSuchUser => EX_NOUSER,
        DeliverError::TooBig => EX_DATAERR,
        DeliverError::Temporary(_) => EX_TEMPFAIL,
        _ => EX_UNAVAILABLE,
    };
    fail(status, e.to_string())
}

/// The message without a leading mbox `From ` envelope line.
fn strip_envelope(message: &[u8]) -> &[u8] {
    if message.starts_with(b"From ") {
        match memchr::memchr(b'\n', message) {
            Some(i) => &message[i + 1..],
            None => &[],
        }
    } else {
        message
    }
}

fn read_message(max: u64) -> Result<Vec<u8>, Failure> {
    let mut message = Vec::new();
    std::io::stdin()
        .lock()
        .take(max.saturating_add(1))
        .read_to_end(&mut message)
        .map_err(|e| fail(EX_IOERR, format!("cannot read the message: {e}")))?;
    if message.len() as u64 > max {
        return Err(fail(
            EX_DATAERR,
            format!("the message is larger than {max} octets"),
        ));
    }
    Ok(message)
}

/// Where the message goes.
enum Store {
    Maildir(PathBuf),
    Postgres(pop3_store_postgres::PgConfig),
}

fn store_of(args: &DeliverArgs) -> Result<Store, Failure> {
    if let Some(root) = &args.maildir_root {
        return Ok(Store::Maildir(root.clone()));
    }
    let path = args
        .config
        .as_ref()
        .expect("clap requires --config or --maildir-root");
    match crate::config::store_of_file(path).map_err(|e| fail(EX_CONFIG, e))? {
        (_, Some(pg)) => Ok(Store::Postgres(pg)),
        (Some(root), None) => Ok(Store::Maildir(root)),
        (None, None) => Err(fail(
            EX_CONFIG,
            format!("{}: no [store] maildir_root or postgres", path.display()),
        )),
    }
}

fn deliver(args: &DeliverArgs) -> Result<(), Failure> {
    let store = store_of(args)?;
    let message = read_message(args.max_size)?;
    let message = strip_envelope(&message);
    let stored = match store {
        Store::Maildir(root) => {
            pop3_server_core::block_on(MaildirStore::new(root).deliver(&args.user, message))
        }
        Store::Postgres(config) => {
            // The store runs its I/O on a small runtime of its own.
            let store = pop3_store_postgres::PgStore::new(config)
                .map_err(|e| fail(EX_CONFIG, format!("the PostgreSQL store: {e}")))?;
            pop3_server_core::block_on(store.deliver(&args.user, message))
        }
    };
    stored.map(|_| ()).map_err(delivery_failure)
}

/// Runs `pop3 deliver`; the exit status follows `sysexits.h`.
pub(crate) fn run(args: DeliverArgs) -> ExitCode {
    match deliver(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("pop3 deliver: {}: {}", args.user, f.message);
            ExitCode::from(f.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_line_is_dropped_and_nothing_else() {
        assert_eq!(
            strip_envelope(b"From a@b Sat Jan  3 01:05:34 1996\nSubject: x\n"),
            b"Subject: x\n"
        );
        assert_eq!(strip_envelope(b"Subject: x\n"), b"Subject: x\n");
        assert_eq!(strip_envelope(b">From x\n"), b">From x\n");
        assert_eq!(strip_envelope(b"From x"), b"");
    }

    #[test]
    fn store_errors_map_to_sysexits() {
        let status = |e| delivery_failure(e).status;
        assert_eq!(status(DeliverError::NoSuchUser), EX_NOUSER);
        assert_eq!(status(DeliverError::TooBig), EX_DATAERR);
        assert_eq!(status(DeliverError::Temporary("x".into())), EX_TEMPFAIL);
        assert_eq!(status(DeliverError::Permanent("x".into())), EX_UNAVAILABLE);
    }
}
