//! The signals a long-running `pop3` (`serve`, `fetch --daemon`) listens to: SIGINT and
//! SIGTERM to stop, SIGHUP to reload. Both are listened to from the moment they are made, so
//! make them before anything else starts (a signal that came before would otherwise end the
//! process by its default action).

/// SIGINT and SIGTERM (Ctrl-C where there are no Unix signals).
pub(crate) struct Signals {
    #[cfg(unix)]
    handlers: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Signals {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let handlers = signal(SignalKind::interrupt())
                .and_then(|i| Ok((i, signal(SignalKind::terminate())?)))
                .ok();
            Signals { handlers }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// The next SIGINT or SIGTERM.
    pub(crate) async fn next(&mut self) {
        #[cfg(unix)]
        if let Some((int, term)) = &mut self.handlers {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP, the reload signal (systemd's `ExecReload`, or `kill -HUP`).
pub(crate) struct Hangup {
    #[cfg(unix)]
    handler: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    pub(crate) fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Hangup {
                handler: signal(SignalKind::hangup()).ok(),
            }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    /// The next SIGHUP (never, where there is none).
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(h) = &mut self.handler
            && h.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await;
    }
}
