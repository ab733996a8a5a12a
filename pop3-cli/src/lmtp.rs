//! `pop3 serve --lmtp-listen ADDR`: mail in, by LMTP (RFC 2033), from Postfix or any MTA.
//!
//! The protocol is `pop3_lmtp::server`'s sans-IO machine; this module moves bytes between a
//! tokio socket and it, and answers its two questions with the store's [`Deliver`]
//! capability: may this recipient receive mail (`RCPT TO`), and store this message for each
//! recipient (after `DATA`, one reply per recipient). A `250` for a recipient is sent only
//! after [`Deliver::deliver`] returned, that is once the message is durable for that user.
//!
//! Recipients: `RCPT TO:<alice@example.org>` is the user `alice@example.org` if the store
//! knows that name, else the user `alice` (the local part), so one passwd-file of plain names
//! serves every domain the MTA routes here.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pop3_lmtp::server::{Config, DeliveryRefusal, Event, RcptRefusal, Server};
use pop3_lmtp::{Mailbox, Path, Reply};
use pop3_server_core::deliver::{Deliver, DeliverError};
use pop3_server_core::maildir::MaildirStore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// How long the client may be silent (RFC 5321 §4.5.3.2 asks servers to wait 5 minutes for
/// a command and 10 for a block of data; one limit of 10 minutes serves both).
const READ_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one write of replies may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(600);
/// LMTP connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 256;

/// Accepts LMTP connections on `listener` until `stop` turns true, then lets the open ones
/// finish their current transaction (the machine is told to say `421`).
pub(crate) async fn serve<D: Deliver>(
    listener: TcpListener,
    deliver: Arc<D>,
    config: Config,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: wait a moment instead of spinning.
                tracing::warn!(error = %e, "lmtp: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (deliver, config, stop) = (deliver.clone(), config.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(e) = session(stream, peer, &*deliver, config, stop).await {
                tracing::debug!(%peer, error = %e, "lmtp: connection ended");
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// This host's name, for the greeting and the `LHLO` reply.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "localhost".into())
}

/// The user a recipient is, or why not.
async fn resolve<D: Deliver>(deliver: &D, path: &Mailbox) -> Result<String, DeliverError> {
    let full = path.to_string();
    match deliver.recipient(&full).await {
        Err(DeliverError::NoSuchUser) if path.domain().is_some() => {
            let local = path.local_part_unquoted();
            deliver.recipient(&local).await.map(|()| local)
        }
        other => other.map(|()| full),
    }
}

fn rcpt_refusal(e: &DeliverError) -> RcptRefusal {
    match e {
        DeliverError::NoSuchUser => RcptRefusal::UnknownUser,
        DeliverError::Temporary(_) => RcptRefusal::Temporary,
        _ => RcptRefusal::Reply(
            Reply::new(550, Some((5, 2, 0)), "Mailbox unavailable").expect("a valid reply"),
        ),
    }
}

fn delivery_refusal(e: &DeliverError) -> DeliveryRefusal {
    match e {
        DeliverError::Temporary(_) => DeliveryRefusal::Temporary,
        DeliverError::TooBig => DeliveryRefusal::Reply(
            Reply::new(552, Some((5, 3, 4)), "Message too big for the mailbox")
                .expect("a valid reply"),
        ),
        DeliverError::NoSuchUser => DeliveryRefusal::Reply(
            Reply::new(550, Some((5, 1, 1)), "User unknown").expect("a valid reply"),
        ),
        _ => DeliveryRefusal::Permanent,
    }
}

/// The message as stored: a `Return-Path:` with the envelope sender, then the message.
/// Made in the body's own buffer: a message of up to the size limit is not held twice.
fn with_return_path(sender: &Path, mut body: Vec<u8>) -> Vec<u8> {
    let header = format!("Return-Path: {sender}\r\n");
    body.splice(0..0, header.into_bytes());
    body
}

async fn session<D: Deliver>(
    mut stream: TcpStream,
    peer: SocketAddr,
    deliver: &D,
    config: Config,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut server = Server::new(config);
    let mut users: HashMap<Mailbox, String> = HashMap::new();
    let mut input = vec![0u8; 16 * 1024];
    let mut out = Vec::new();
    let mut stopping = false;
    loop {
        while let Some(event) = server.poll_event() {
            match event {
                Event::Recipient { path, .. } => {
                    let answer = match resolve(deliver, &path).await {
                        Ok(user) => {
                            users.insert(path, user);
                            Ok(())
                        }
                        Err(e) => {
                            tracing::info!(%peer, recipient = %path, error = %e, "lmtp: recipient refused");
                            Err(rcpt_refusal(&e))
                        }
                    };
                    server
                        .accept_recipient(answer)
                        .expect("the machine asked for this answer");
                }
                Event::Message {
                    sender,
                    recipients,
                    body,
                    ..
                } => {
                    let message = with_return_path(&sender, body);
                    let mut results = Vec::with_capacity(recipients.len());
                    for rcpt in &recipients {
                        let user = users.get(rcpt).cloned().unwrap_or_else(|| rcpt.to_string());
                        let result = deliver.deliver(&user, &message).await;
                        match &result {
                            Ok(stored) => tracing::info!(
                                %peer, %user, uid = %stored.uid, size = stored.size,
                                "lmtp: delivered"
                            ),
                            Err(e) => {
                                tracing::warn!(%peer, %user, error = %e, "lmtp: delivery failed")
                            }
                        }
                        results.push(result.map(|_| ()).map_err(|e| delivery_refusal(&e)));
                    }
                    users.clear();
                    server.delivered(results).expect("one result per recipient");
                }
                Event::Closed(_) => {}
                _ => {}
            }
        }
        server.poll_transmit(&mut out);
        if !out.is_empty() {
            tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&out))
                .await
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
            out.clear();
        }
        if server.is_closed() {
            let _ = stream.shutdown().await;
            return Ok(());
        }
        if !server.wants_input() {
            continue;
        }
        let read = tokio::select! {
            r = tokio::time::timeout(READ_TIMEOUT, stream.read(&mut input)) => r,
            _ = stop.wait_for(|s| *s), if !stopping => {
                // Between transactions only: the machine finishes what it has and says 421.
                stopping = true;
                server.shutdown();
                continue;
            }
        };
        match read {
            Ok(Ok(0)) => server.feed_eof(),
            Ok(Ok(n)) => server.feed(&input[..n]),
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                server.shutdown();
            }
        }
    }
}

/// Delivery for `pop3 serve` over Maildir: the users are those of the server's passwd-file
/// (as it is now: a SIGHUP's reload counts), and a user's maildir is created at their first
/// delivery.
pub(crate) struct PasswdMaildir {
    backend: Arc<pop3_server_core::session::Backend<crate::reload::Users, MaildirStore>>,
    store: MaildirStore,
}

impl PasswdMaildir {
    pub(crate) fn new(
        backend: Arc<pop3_server_core::session::Backend<crate::reload::Users, MaildirStore>>,
    ) -> PasswdMaildir {
        let store = backend.store.clone().create_missing(true);
        PasswdMaildir { backend, store }
    }

    fn known(&self, user: &str) -> Result<(), DeliverError> {
        match self.backend.auth.current().get(user) {
            Some(_) => Ok(()),
            None => Err(DeliverError::NoSuchUser),
        }
    }
}

impl Deliver for PasswdMaildir {
    async fn recipient(&self, user: &str) -> Result<(), DeliverError> {
        self.known(user)
    }

    async fn deliver(
        &self,
        user: &str,
        message: &[u8],
    ) -> Result<pop3_server_core::deliver::Delivered, DeliverError> {
        self.known(user)?;
        // Blocking file I/O with fsyncs: off the async workers.
        let store = self.store.clone();
        let (user, message) = (user.to_string(), message.to_vec());
        tokio::task::spawn_blocking(move || store.deliver_now(&user, &message))
            .await
            .map_err(|e| DeliverError::Temporary(format!("delivery task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pop3_lmtp::Domain;

    #[test]
    fn the_return_path_carries_the_envelope_sender() {
        let sender = Path::Mailbox(Mailbox::parse("bob@example.org").unwrap());
        assert_eq!(
            with_return_path(&sender, b"Subject: x\r\n\r\nhi\r\n".to_vec()),
            b"Return-Path: <bob@example.org>\r\nSubject: x\r\n\r\nhi\r\n"
        );
        assert_eq!(
            with_return_path(&Path::Null, b"x\r\n".to_vec()),
            b"Return-Path: <>\r\nx\r\n"
        );
    }

    #[test]
    fn a_recipient_is_the_full_address_or_else_its_local_part() {
        let root = tempfile::tempdir().unwrap();
        for user in ["alice", "carol@example.org"] {
            std::fs::create_dir(root.path().join(user)).unwrap();
        }
        let store = MaildirStore::new(root.path());
        let domain = || Domain::new("example.org").unwrap();
        let resolve = |local: &str| {
            pop3_server_core::block_on(resolve(&store, &Mailbox::new(local, domain()).unwrap()))
        };
        assert_eq!(resolve("alice").unwrap(), "alice");
        assert_eq!(resolve("carol").unwrap(), "carol@example.org");
        assert_eq!(resolve("dave"), Err(DeliverError::NoSuchUser));
    }
}
