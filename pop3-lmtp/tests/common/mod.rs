//! Shared helpers: a toy store that answers the server machine's events by the recipient's
//! local part, and drivers that run a session over given input.

#![allow(dead_code, unreachable_pub)]

use pop3_lmtp::server::{Config, DeliveryRefusal, Event, RcptRefusal, Server};
use pop3_lmtp::{Mailbox, Path};

/// A store that answers by local part: `unknown*` is refused `550`, `temp*` `451`, `full*`
/// `552` at RCPT; `dtemp*` fails delivery temporarily, `dperm*` permanently; others pass.
#[derive(Debug, Default)]
pub struct Store {
    /// Messages delivered: (sender, recipients, body).
    pub delivered: Vec<(Path, Vec<Mailbox>, Vec<u8>)>,
    pub closed: Option<pop3_lmtp::server::CloseReason>,
}

impl Store {
    pub fn rcpt(path: &Mailbox) -> Result<(), RcptRefusal> {
        let l = path.local_part();
        if l.starts_with("unknown") {
            Err(RcptRefusal::UnknownUser)
        } else if l.starts_with("temp") {
            Err(RcptRefusal::Temporary)
        } else if l.starts_with("full") {
            Err(RcptRefusal::MailboxFull)
        } else {
            Ok(())
        }
    }

    pub fn deliver(path: &Mailbox) -> Result<(), DeliveryRefusal> {
        let l = path.local_part();
        if l.starts_with("dtemp") {
            Err(DeliveryRefusal::Temporary)
        } else if l.starts_with("dperm") {
            Err(DeliveryRefusal::Permanent)
        } else {
            Ok(())
        }
    }

    /// Answers every pending event; returns how many there were.
    pub fn serve(&mut self, server: &mut Server) -> usize {
        let mut n = 0;
        while let Some(ev) = server.poll_event() {
            n += 1;
            match ev {
                Event::Recipient { path, .. } => {
                    server.accept_recipient(Self::rcpt(&path)).unwrap();
                }
                Event::Message {
                    sender,
                    recipients,
                    body,
                    ..
                } => {
                    let results = recipients.iter().map(Self::deliver).collect();
                    self.delivered.push((sender, recipients, body));
                    server.delivered(results).unwrap();
                }
                Event::Closed(r) => self.closed = Some(r),
                _ => unreachable!(),
            }
        }
        n
    }
}

/// Runs `input` through a fresh server, in the given chunks, answering events after every
/// chunk; returns the output (greeting included) and the store.
pub fn session_chunks(config: Config, chunks: &[&[u8]], eof: bool) -> (Vec<u8>, Store) {
    let mut server = Server::new(config);
    let mut store = Store::default();
    let mut out = Vec::new();
    for c in chunks {
        server.feed(c);
        store.serve(&mut server);
        server.poll_transmit(&mut out);
        store.serve(&mut server);
    }
    if eof {
        server.feed_eof();
    }
    loop {
        let events = store.serve(&mut server);
        let before = out.len();
        server.poll_transmit(&mut out);
        if out.len() == before && events == 0 {
            break;
        }
    }
    (out, store)
}

/// [`session_chunks`] with the input in one piece, no EOF.
pub fn session(config: Config, input: &[u8]) -> (String, Store) {
    let (out, store) = session_chunks(config, &[input], false);
    (String::from_utf8(out).expect("ASCII replies"), store)
}

/// A config with hostname `mx.test`.
pub fn config() -> Config {
    let mut c = Config::default();
    c.hostname = "mx.test".into();
    c
}

/// The replies of a session, one per line, greeting dropped.
pub fn replies(out: &str) -> Vec<&str> {
    out.split_terminator("\r\n").skip(1).collect()
}
