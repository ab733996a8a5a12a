//! Turning the events of one client command into its result, once for every adapter.
//!
//! An adapter's method enqueues a command in the [`crate::client::Client`], then feeds the
//! events it produces to a collector until the command's `Done`; the collector's
//! [`Collect::finish`] is the method's result. The adapters differ only in how they move bytes.
//!
//! ```
//! use std::time::Instant;
//! use pop3_proto::client::{Client, ClientConfig, Event};
//! use pop3_proto::collect::{Collect, Listing};
//!
//! # let now = Instant::now();
//! # let mut client = Client::new(ClientConfig::default(), now);
//! # client.handle_input(b"+OK\r\n", now);
//! # while client.poll_event().is_some() {}
//! # client.user(pop3_proto::Atom::new("u").unwrap()).unwrap();
//! # client.poll_transmit(now, &mut Vec::new());
//! # client.handle_input(b"+OK\r\n", now);
//! # while client.poll_event().is_some() {}
//! # client.pass(pop3_proto::Secret::new(pop3_proto::Text::new("p").unwrap())).unwrap();
//! # client.poll_transmit(now, &mut Vec::new());
//! # client.handle_input(b"+OK\r\n", now);
//! # while client.poll_event().is_some() {}
//! let h = client.list(None).unwrap();
//! client.poll_transmit(now, &mut Vec::new());
//! client.handle_input(b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n", now);
//! let mut listing = Listing::default();
//! while let Some(ev) = client.poll_event() {
//!     if matches!(ev, Event::Done { handle } if handle == h) {
//!         break;
//!     }
//!     listing.event(ev).unwrap();
//! }
//! assert_eq!(listing.finish().unwrap().len(), 2);
//! ```

use std::io;

use crate::client::Event;
use crate::types::{Capability, ScanListing, Stat, UidListing};

/// Collects one command's events into its result.
pub trait Collect {
    /// The command's result.
    type Output;

    /// One event of the command (not its `Ok`/`Err` status line, nor `Done`, which the driver
    /// handles). An error (from a caller's body sink) stops the command.
    fn event(&mut self, ev: Event<'_>) -> io::Result<()>;

    /// The result, once the command is done; `None` if the reply lacked it.
    fn finish(self) -> Option<Self::Output>;
}

/// A command with no result beyond `+OK` (USER, DELE, RSET, NOOP, QUIT...).
#[derive(Debug, Default)]
pub struct Nothing;

impl Collect for Nothing {
    type Output = ();

    fn event(&mut self, _: Event<'_>) -> io::Result<()> {
        Ok(())
    }

    fn finish(self) -> Option<()> {
        Some(())
    }
}

/// `STAT`.
#[derive(Debug, Default)]
pub struct StatReply(Option<Stat>);

impl Collect for StatReply {
    type Output = Stat;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::Stat { stat, .. } = ev {
            self.0 = Some(stat);
        }
        Ok(())
    }

    fn finish(self) -> Option<Stat> {
        self.0
    }
}

/// A multi-line `LIST`.
#[derive(Debug, Default)]
pub struct Listing(Vec<ScanListing>);

impl Collect for Listing {
    type Output = Vec<ScanListing>;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::ListingItem { item, .. } = ev {
            self.0.push(item);
        }
        Ok(())
    }

    fn finish(self) -> Option<Vec<ScanListing>> {
        Some(self.0)
    }
}

/// `LIST n`.
#[derive(Debug, Default)]
pub struct OneListing(Option<ScanListing>);

impl Collect for OneListing {
    type Output = ScanListing;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::ListingItem { item, .. } = ev {
            self.0 = Some(item);
        }
        Ok(())
    }

    fn finish(self) -> Option<ScanListing> {
        self.0
    }
}

/// A multi-line `UIDL`.
#[derive(Debug, Default)]
pub struct Uids(Vec<UidListing>);

impl Collect for Uids {
    type Output = Vec<UidListing>;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::UidlItem { item, .. } = ev {
            self.0.push(item);
        }
        Ok(())
    }

    fn finish(self) -> Option<Vec<UidListing>> {
        Some(self.0)
    }
}

/// `UIDL n`.
#[derive(Debug, Default)]
pub struct OneUid(Option<UidListing>);

impl Collect for OneUid {
    type Output = UidListing;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::UidlItem { item, .. } = ev {
            self.0 = Some(item);
        }
        Ok(())
    }

    fn finish(self) -> Option<UidListing> {
        self.0
    }
}

/// `CAPA`.
#[derive(Debug, Default)]
pub struct Capabilities(Vec<Capability>);

impl Collect for Capabilities {
    type Output = Vec<Capability>;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::Capability { capability, .. } = ev {
            self.0.push(capability);
        }
        Ok(())
    }

    fn finish(self) -> Option<Vec<Capability>> {
        Some(self.0)
    }
}

/// `RETR` or `TOP`: each body chunk goes to the sink as it arrives (never collected); the
/// result is the message's size.
#[derive(Debug)]
pub struct Body<F> {
    sink: F,
    octets: u64,
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Body<F> {
    /// Streams the body into `sink`.
    pub fn new(sink: F) -> Self {
        Body { sink, octets: 0 }
    }
}

impl<F: FnMut(&[u8]) -> io::Result<()>> Collect for Body<F> {
    type Output = u64;

    fn event(&mut self, ev: Event<'_>) -> io::Result<()> {
        if let Event::BodyChunk { bytes, .. } = ev {
            self.octets += bytes.len() as u64;
            (self.sink)(bytes)?;
        }
        Ok(())
    }

    fn finish(self) -> Option<u64> {
        Some(self.octets)
    }
}

/// One piece of a message fetched in a batch (`fetch_many` in the adapters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk<'a> {
    /// Message octets, in order.
    Data(&'a [u8]),
    /// The message is complete.
    End,
}
