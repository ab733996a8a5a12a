//! systemd integration: readiness notifications (`sd_notify`) and socket activation.
//!
//! Notifications go through the `sd-notify` crate: besides the datagram to `$NOTIFY_SOCKET`
//! (abstract socket names included), `Type=notify-reload` needs `MONOTONIC_USEC` with
//! `RELOADING=1`, the `CLOCK_MONOTONIC` time, which the standard library does not expose
//! and this workspace (no `unsafe`) could not read itself. Without `$NOTIFY_SOCKET` nothing is
//! sent.
//!
//! Socket activation: `listenfd` turns the descriptors systemd hands over (`LISTEN_FDS`,
//! checked against `LISTEN_PID`, from descriptor 3) into listeners after checking that each is
//! a TCP listening socket (a raw descriptor cannot become a `TcpListener` without `unsafe`);
//! their names come from `LISTEN_FDNAMES` (the `.socket` unit's `FileDescriptorName=`).

use std::net::TcpListener;
use std::path::PathBuf;

use crate::config::{ListenerSpec, TlsMode};

pub(crate) use notify::{ready, reloading, stopping};

#[cfg(unix)]
mod notify {
    use sd_notify::NotifyState;

    /// Tells the service manager the server is ready (all listeners open).
    pub(crate) fn ready(status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// Tells the service manager a reload has begun: `RELOADING=1` and `MONOTONIC_USEC`, as
    /// `Type=notify-reload` expects; [`ready`] ends it.
    pub(crate) fn reloading() {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the monotonic clock for systemd");
                send(&[NotifyState::Reloading]);
            }
        }
    }

    /// Tells the service manager the server is stopping.
    pub(crate) fn stopping() {
        send(&[NotifyState::Stopping]);
    }

    fn send(state: &[NotifyState<'_>]) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(error = %e, "cannot notify systemd (NOTIFY_SOCKET)");
        }
    }
}

/// No service manager to tell, off Unix.
#[cfg(not(unix))]
mod notify {
    pub(crate) fn ready(_status: &str) {}
    pub(crate) fn reloading() {}
    pub(crate) fn stopping() {}
}

/// The listening sockets systemd handed over, each with its name (`"unknown"` when
/// `LISTEN_FDNAMES` does not give one). Empty when the process was not socket-activated.
/// Call it before any thread starts: it removes `LISTEN_FDS` and `LISTEN_PID` from the
/// environment.
pub(crate) fn inherited_listeners() -> Result<Vec<(TcpListener, String)>, String> {
    // Read before listenfd clears the other variables.
    let names = std::env::var("LISTEN_FDNAMES").ok();
    let mut fds = listenfd::ListenFd::from_env();
    let count = fds.len();
    let names: Vec<String> = match names {
        Some(n) if count > 0 => n.split(':').map(str::to_string).collect(),
        _ => vec!["unknown".into(); count],
    };
    if names.len() != count {
        return Err(format!(
            "LISTEN_FDNAMES names {} sockets, LISTEN_FDS {count}",
            names.len()
        ));
    }
    let mut out = Vec::with_capacity(count);
    for (i, name) in names.into_iter().enumerate() {
        match fds.take_tcp_listener(i) {
            Ok(Some(l)) => out.push((l, name)),
            Ok(None) => {}
            Err(e) => {
                return Err(format!(
                    "socket activation: descriptor {} ({name}): {e}",
                    i + 3
                ));
            }
        }
    }
    Ok(out)
}

/// What to serve on each socket systemd handed over: the configured listener of its name
/// (`FileDescriptorName=`), else the one of its address, else what its name says alone
/// (`pop3s`: implicit TLS; anything else: plain text, with STLS when a certificate is
/// configured). The configured addresses are not bound.
pub(crate) fn describe(
    inherited: Vec<(TcpListener, String)>,
    configured: &[ListenerSpec],
    default_cert: Option<(PathBuf, PathBuf)>,
) -> Vec<(ListenerSpec, Option<TcpListener>)> {
    inherited
        .into_iter()
        .map(|(l, name)| {
            let local = l.local_addr().ok();
            let spec = configured
                .iter()
                .find(|s| s.name == name)
                .or_else(|| {
                    configured
                        .iter()
                        .find(|s| local.is_some() && s.address.parse().ok() == local)
                })
                .cloned()
                .unwrap_or_else(|| {
                    let tls = match (name.as_str(), &default_cert) {
                        ("pop3s", _) => TlsMode::Implicit,
                        (_, Some(_)) => TlsMode::Starttls,
                        (_, None) => TlsMode::None,
                    };
                    ListenerSpec {
                        address: String::new(),
                        tls,
                        cert: default_cert.clone().filter(|_| tls != TlsMode::None),
                        name,
                    }
                });
            (spec, Some(l))
        })
        .collect()
}
