//! What `pop3 serve` does with the server's events ([`pop3_server_core::observe`]): one
//! `tracing` event per fact, with stable messages and field names (the same in `--log-format
//! text` and `json`), and, with `--metrics-listen`, Prometheus metrics ([`Metrics`]).
//!
//! The log events (message, level: fields). Every one starts with `remote_ip`, `remote_port`,
//! `local_ip`, `local_port`, in that order (an address not known is `-`, a port not known is
//! left out), so a filter can anchor on the client's address right after the message
//! (`contrib/fail2ban/pop3.conf` does). Numbers are numbers in JSON.
//!
//! | message | level | fields after the addresses |
//! |---|---|---|
//! | `connection accepted` | DEBUG | `tls` (implicit-TLS listener: `true`/`false`) |
//! | `connection refused` | WARN | `reason` (`too_many_connections`, `too_many_from_address`) |
//! | `connection evicted` | INFO | |
//! | `tls handshake failed` | INFO (`closed`, `timeout`: DEBUG) | `stls`, `kind` (`protocol`, `io`, `closed`, `timeout`), `error` |
//! | `stls done` | DEBUG | `tls` (the version, e.g. `TLSv1.3`) |
//! | `login succeeded` | INFO | `user` (quoted), `mechanism`, `tls` (`none`, `TLSv1.3`, ...), `auth_us` |
//! | `login failed` | INFO | `user` (quoted, as the client sent it), `mechanism`, `reason`, `tls`, `auth_us` |
//! | `message sent` | DEBUG | `command` (`retr`, `top`), `octets` |
//! | `session ended` | INFO | `user` (quoted; `""` if nobody logged in), `reason`, `tls`, `duration_ms`, `top`, `top_octets`, `retr`, `retr_octets`, `deleted`, `committed`, `messages`, `size` |
//! | `connection closed` | DEBUG | |
//!
//! At the default level (INFO) a session writes two lines, as Dovecot does: its login (or
//! failed logins) and its end, which carry the addresses and the TLS state too; the
//! connection's own lines are DEBUG, since each line costs the server time in a benchmark of
//! short sessions.
//!
//! `mechanism` is `USER` (USER/PASS), `APOP` or the SASL mechanism; `reason` of a failed
//! login is `credentials` (unknown user and wrong password alike), `login_delay`, `in_use`,
//! `too_many_sessions`, `auth_unavailable` or `maildrop_unavailable`; `reason` of a session's
//! end is `quit`, `commit_failed`, `drop`, `autologout`, `command_timeout`, `login_timeout`,
//! `too_many_errors`, `too_many_auth_failures`, `evicted`, `shutdown` or `store_error`.
//! User names come from the client: they are written quoted and escaped (`user="bob"`), so
//! that no name can forge a field or a line. No secret is ever logged.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use pop3_server_core::observe::{
    ConnectionInfo, Event, LoginFailed, LoginSucceeded, Observer, SessionSummary, TlsFailure,
    TlsFailureKind,
};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The observer of `pop3 serve`: logs every event, and counts it when metrics are on.
pub(crate) struct Telemetry {
    metrics: Option<Metrics>,
}

impl Telemetry {
    /// Logs only.
    pub(crate) fn logs() -> Self {
        Telemetry { metrics: None }
    }

    /// Logs, and the metrics registered in `registry`.
    pub(crate) fn with_metrics(registry: &mut Registry) -> Self {
        Telemetry {
            metrics: Some(Metrics::register(registry)),
        }
    }
}

impl Observer for Telemetry {
    fn event(&self, event: &Event<'_>) {
        log(event);
        if let Some(m) = &self.metrics {
            m.record(event);
        }
    }
}

// -------------------------------------------------------------------------------------------
// Logs

/// An IP address or `-`.
struct Ip(Option<SocketAddr>);

impl fmt::Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => fmt::Display::fmt(&a.ip().to_canonical(), f),
            None => f.write_str("-"),
        }
    }
}

/// The TLS state of a connection: `none`, or the version (`TLSv1.3`; `TLS` when unknown).
fn tls(c: &ConnectionInfo) -> &'static str {
    match (c.tls, c.tls_version) {
        (false, _) => "none",
        (true, Some(v)) => v,
        (true, None) => "TLS",
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Writes one event with its fixed message and fields (see the module docs). `%` fields are
/// ours (numbers, addresses, fixed names); `user` comes from the client and is recorded as a
/// `&str`, which the formatters quote and escape.
fn log(event: &Event<'_>) {
    let c = event.connection();
    let (rip, lip) = (Ip(c.remote), Ip(c.local));
    let (rport, lport) = (c.remote.map(|a| a.port()), c.local.map(|a| a.port()));
    match event {
        Event::Accepted(_) => tracing::debug!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            tls = c.tls,
            "connection accepted"
        ),
        Event::Refused(_, reason) => tracing::warn!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            reason = %reason.as_str(),
            "connection refused"
        ),
        Event::Evicted(_) => tracing::info!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            "connection evicted"
        ),
        Event::TlsFailed(TlsFailure {
            stls, kind, error, ..
        }) => {
            let error = error.map(tracing::field::display);
            if matches!(kind, TlsFailureKind::Closed | TlsFailureKind::Timeout) {
                tracing::debug!(
                    remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
                    stls, kind = %kind.as_str(), error,
                    "tls handshake failed"
                );
            } else {
                tracing::info!(
                    remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
                    stls, kind = %kind.as_str(), error,
                    "tls handshake failed"
                );
            }
        }
        Event::TlsStarted(_) => tracing::debug!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            tls = %tls(c),
            "stls done"
        ),
        Event::LoginSucceeded(LoginSucceeded {
            user,
            mechanism,
            auth_time,
            ..
        }) => tracing::info!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            user, mechanism = %mechanism, tls = %tls(c), auth_us = micros(*auth_time),
            "login succeeded"
        ),
        Event::LoginFailed(LoginFailed {
            user,
            mechanism,
            reason,
            auth_time,
            ..
        }) => tracing::info!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            user, mechanism = %mechanism, reason = %reason.as_str(), tls = %tls(c),
            auth_us = auth_time.map(micros),
            "login failed"
        ),
        Event::MessageSent(m) => tracing::debug!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            command = %m.command.as_str(), octets = m.octets,
            "message sent"
        ),
        Event::SessionEnded(s) => tracing::info!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            user = s.user.unwrap_or(""), reason = %s.reason.as_str(), tls = %tls(c),
            duration_ms = u64::try_from(s.duration.as_millis()).unwrap_or(u64::MAX),
            top = s.top, top_octets = s.top_octets, retr = s.retr, retr_octets = s.retr_octets,
            deleted = s.deleted, committed = s.committed, messages = s.messages, size = s.size,
            "session ended"
        ),
        Event::Closed(_) => tracing::debug!(
            remote_ip = %rip, remote_port = rport, local_ip = %lip, local_port = lport,
            "connection closed"
        ),
        _ => {}
    }
}

// -------------------------------------------------------------------------------------------
// Metrics

/// A listener's address as a label value (`127.0.0.1:110`), formatted as it is encoded: no
/// allocation per connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ListenerAddr(Option<SocketAddr>);

impl EncodeLabelValue for ListenerAddr {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> fmt::Result {
        use fmt::Write;
        match self.0 {
            Some(a) => write!(encoder, "{a}"),
            None => Ok(()),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: ListenerAddr,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    listener: ListenerAddr,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TlsFailureLabels {
    listener: ListenerAddr,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    mechanism: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    command: &'static str,
}

/// A mechanism name as a label value from a fixed set (a label must not take values from
/// the client; the server only ever reports mechanisms it offers, but an embedder's
/// authenticator might offer others: they are `other`).
fn mechanism_label(m: &str) -> &'static str {
    const KNOWN: [&str; 8] = [
        "USER",
        "APOP",
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        "SCRAM-SHA-256",
        "XOAUTH2",
        "OAUTHBEARER",
    ];
    KNOWN.into_iter().find(|k| *k == m).unwrap_or("other")
}

/// The metrics of `pop3 serve` (names as exposed, OpenMetrics text):
///
/// - `pop3_connections_total{listener}`, `pop3_connections_open{listener}`: connections that
///   got a session slot, and those open now;
/// - `pop3_connections_refused_total{listener,reason}`, `pop3_connections_evicted_total{listener}`;
/// - `pop3_tls_handshake_failures_total{listener,kind}`;
/// - `pop3_logins_total{mechanism,result}`: `result` is `ok` or the failure's reason
///   (`credentials`, `login_delay`, `in_use`, ...);
/// - `pop3_auth_duration_seconds`: a histogram of the credential checks' time;
/// - `pop3_sessions_total{reason}`: sessions ended, by how;
/// - `pop3_messages_sent_total{command}`, `pop3_message_bytes_total{command}`: `RETR` and
///   `TOP` bodies sent, and their octets;
/// - `pop3_messages_deleted_total`: removals committed at `QUIT`;
/// - `pop3_commit_failures_total`: `QUIT`s whose removals failed.
pub(crate) struct Metrics {
    connections: Family<ListenerLabels, Counter>,
    open: Family<ListenerLabels, Gauge>,
    refused: Family<RefusedLabels, Counter>,
    evicted: Family<ListenerLabels, Counter>,
    tls_failures: Family<TlsFailureLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    auth_duration: Histogram,
    sessions: Family<ReasonLabels, Counter>,
    messages: Family<CommandLabels, Counter>,
    message_bytes: Family<CommandLabels, Counter>,
    deleted: Counter,
    commit_failures: Counter,
}

impl Metrics {
    fn register(r: &mut Registry) -> Self {
        let m = Metrics {
            connections: Family::default(),
            open: Family::default(),
            refused: Family::default(),
            evicted: Family::default(),
            tls_failures: Family::default(),
            logins: Family::default(),
            // 100 µs to about 13 s: from a {PLAIN} compare to a slow Argon2 under load.
            auth_duration: Histogram::new(exponential_buckets(0.0001, 2.0, 18)),
            sessions: Family::default(),
            messages: Family::default(),
            message_bytes: Family::default(),
            deleted: Counter::default(),
            commit_failures: Counter::default(),
        };
        r.register(
            "pop3_connections",
            "Connections accepted (given a session slot), by listener",
            m.connections.clone(),
        );
        r.register(
            "pop3_connections_open",
            "Connections open now, by listener",
            m.open.clone(),
        );
        r.register(
            "pop3_connections_refused",
            "Connections refused before a session, by listener and reason",
            m.refused.clone(),
        );
        r.register(
            "pop3_connections_evicted",
            "Connections that had not logged in, closed to make room, by listener",
            m.evicted.clone(),
        );
        r.register(
            "pop3_tls_handshake_failures",
            "Failed TLS handshakes (implicit or after STLS), by listener and kind",
            m.tls_failures.clone(),
        );
        r.register(
            "pop3_logins",
            "Logins, by mechanism and result (ok, or why it failed)",
            m.logins.clone(),
        );
        r.register(
            "pop3_auth_duration_seconds",
            "Time the credential checks took",
            m.auth_duration.clone(),
        );
        r.register(
            "pop3_sessions",
            "Sessions ended, by how they ended",
            m.sessions.clone(),
        );
        r.register(
            "pop3_messages_sent",
            "RETR and TOP bodies sent to their end, by command",
            m.messages.clone(),
        );
        r.register(
            "pop3_message_bytes",
            "Message octets sent for RETR and TOP, by command",
            m.message_bytes.clone(),
        );
        r.register(
            "pop3_messages_deleted",
            "Messages removed by a committed QUIT",
            m.deleted.clone(),
        );
        r.register(
            "pop3_commit_failures",
            "QUITs whose removals failed",
            m.commit_failures.clone(),
        );
        m
    }

    fn record(&self, event: &Event<'_>) {
        let listener = || ListenerLabels {
            listener: ListenerAddr(event.connection().local),
        };
        match event {
            Event::Accepted(_) => {
                self.connections.get_or_create(&listener()).inc();
                self.open.get_or_create(&listener()).inc();
            }
            Event::Closed(_) => {
                self.open.get_or_create(&listener()).dec();
            }
            Event::Refused(c, reason) => {
                let labels = RefusedLabels {
                    listener: ListenerAddr(c.local),
                    reason: reason.as_str(),
                };
                self.refused.get_or_create(&labels).inc();
            }
            Event::Evicted(_) => {
                self.evicted.get_or_create(&listener()).inc();
            }
            Event::TlsFailed(f) => {
                let labels = TlsFailureLabels {
                    listener: ListenerAddr(f.connection.local),
                    kind: f.kind.as_str(),
                };
                self.tls_failures.get_or_create(&labels).inc();
            }
            Event::LoginSucceeded(l) => {
                let labels = LoginLabels {
                    mechanism: mechanism_label(l.mechanism),
                    result: "ok",
                };
                self.logins.get_or_create(&labels).inc();
                self.auth_duration.observe(l.auth_time.as_secs_f64());
            }
            Event::LoginFailed(l) => {
                let labels = LoginLabels {
                    mechanism: mechanism_label(l.mechanism),
                    result: l.reason.as_str(),
                };
                self.logins.get_or_create(&labels).inc();
                if let Some(t) = l.auth_time {
                    self.auth_duration.observe(t.as_secs_f64());
                }
            }
            Event::MessageSent(m) => {
                let labels = CommandLabels {
                    command: m.command.as_str(),
                };
                self.messages.get_or_create(&labels).inc();
                self.message_bytes.get_or_create(&labels).inc_by(m.octets);
            }
            Event::SessionEnded(s) => self.session_ended(s),
            _ => {}
        }
    }

    fn session_ended(&self, s: &SessionSummary<'_>) {
        let labels = ReasonLabels {
            reason: s.reason.as_str(),
        };
        self.sessions.get_or_create(&labels).inc();
        self.deleted.inc_by(u64::from(s.committed));
        if s.reason == pop3_server_core::observe::EndReason::CommitFailed {
            self.commit_failures.inc();
        }
    }
}
