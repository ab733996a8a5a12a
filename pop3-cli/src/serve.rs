//! `pop3 serve`: Maildirs over POP3, on plain (with STLS) and implicit-TLS listeners, until
//! SIGINT or SIGTERM. Sessions that did not QUIT commit nothing. SIGHUP re-reads the users
//! file and the certificates (`reload`); systemd is told READY/RELOADING/STOPPING and may
//! hand the listeners over (`systemd`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pop3_server_core::backend::{Authenticator, MailStore};
use pop3_server_core::deliver::Deliver;
use pop3_server_core::maildir::MaildirStore;
use pop3_server_core::passwd::PasswdFile;
use pop3_server_core::reload::Reloadable;
use pop3_server_core::session::{Backend, Policy};
use pop3_store_postgres::{PgConfig, PgStore};
use pop3_tokio::BlockingPool;
use pop3_tokio::server::{ServerOptions, serve};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{self, TlsMode};
use crate::reload::{Certs, Reloader, UsersFile};
use crate::signals::{Hangup, Signals};
use crate::{LogFormat, LogLevel, ServeArgs, demo, lmtp, metrics, observe, systemd};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Logs to stderr in `format`, at `level` and above (also for `pop3 fetch --daemon`).
pub(crate) fn init_logging(format: LogFormat, level: LogLevel) {
    use std::io::IsTerminal;
    use tracing_subscriber::filter::LevelFilter;
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_max_level(level)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Raises the open-files limit to its hard maximum: each session holds two descriptors (its
/// socket and its maildrop lock), and distributions start daemons with a soft limit of 1024,
/// which would refuse sessions long before `--max-connections`.
fn raise_open_files_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            // Listeners, the runtime and log files take a few descriptors of their own.
            let fit = usize::try_from(limit.saturating_sub(64) / 2).unwrap_or(usize::MAX);
            if fit < max_connections {
                tracing::warn!(
                    open_files_limit = limit,
                    max_connections,
                    sessions_that_fit = fit,
                    "the open-files limit holds fewer sessions than --max-connections"
                );
            } else {
                tracing::debug!(open_files_limit = limit, "open-files limit");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
}

pub(crate) fn run(mut args: ServeArgs) -> Result<(), Error> {
    init_logging(args.log_format, args.log_level);
    raise_open_files_limit(args.max_connections);
    // Before any thread starts: this clears LISTEN_FDS and LISTEN_PID.
    let inherited = systemd::inherited_listeners()?;
    let is_demo = args.listen.is_empty()
        && args.tls_listen.is_empty()
        && args.maildir_root.is_none()
        && args.users.is_none()
        && args.config.is_none()
        && inherited.is_empty();
    if is_demo {
        let d = demo::setup(Path::new("pop3-demo"))?;
        // Undocumented: tests (and busy machines) move the demo's ports.
        args.listen =
            vec![std::env::var("POP3_DEMO_LISTEN").unwrap_or_else(|_| "127.0.0.1:1110".into())];
        args.tls_listen =
            vec![std::env::var("POP3_DEMO_TLS_LISTEN").unwrap_or_else(|_| "127.0.0.1:1995".into())];
        // Plaintext passwords only on loopback, where they never cross a network.
        args.allow_plaintext_auth = args.listen.iter().chain(&args.tls_listen).all(|a| {
            a.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback())
        });
        args.maildir_root = Some(d.root);
        args.users = Some(d.users);
        args.cert = Some(d.cert);
        args.key = Some(d.key);
    }
    let store = store_of(&args)?;
    let specs = config::listeners(&args)?;
    if specs.is_empty() && inherited.is_empty() {
        return Err("nothing to listen on: give --listen ADDR and/or --tls-listen ADDR".into());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let auth_threads = args.auth_threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let offload: Arc<dyn pop3_server_core::offload::Offload> =
        Arc::new(BlockingPool::new(runtime.handle().clone(), auth_threads));
    let specs = if inherited.is_empty() {
        specs.into_iter().map(|s| (s, None)).collect()
    } else {
        let default_cert = args.cert.clone().zip(args.key.clone());
        systemd::describe(inherited, &specs, default_cert)
    };
    // Each certificate read once, however many listeners use it; SIGHUP re-reads them.
    let mut certs = Certs::default();
    let tls_of = specs
        .iter()
        .map(|(spec, _)| certs.for_listener(spec))
        .collect::<Result<Vec<_>, _>>()?;
    let mut policy = Policy::default();
    policy.rules.plaintext_auth = args.allow_plaintext_auth;
    policy.rules.idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    policy.rules.command_timeout = Duration::from_secs(args.command_timeout.max(1));
    policy.rules.login_timeout = Duration::from_secs(args.login_timeout.max(1));
    policy.max_sessions_per_user = Some(args.max_sessions_per_user).filter(|&n| n > 0);
    policy.implementation = Some(format!("pop3-rs {}", env!("CARGO_PKG_VERSION")));
    policy.login_delay = args.login_delay.filter(|&secs| secs > 0);
    if let Some(expire) = args.expire {
        policy.expire = expire.into();
    }
    policy.maildrop_lock = args.maildrop_lock.map(Into::into).unwrap_or_default();
    // The server's events: logged, and counted when metrics are served.
    let mut registry = prometheus_client::registry::Registry::default();
    let observer = match &args.metrics_listen {
        Some(_) => observe::Telemetry::with_metrics(&mut registry),
        None => observe::Telemetry::logs(),
    };
    let registry = Arc::new(registry);
    let observer: Arc<dyn pop3_server_core::observe::Observer> = Arc::new(observer);
    let mut options = ServerOptions::default();
    options.max_connections = args.max_connections;
    options.max_unauthenticated_per_ip = args.max_unauthenticated_per_ip;
    let listeners = Listeners {
        specs,
        tls_of,
        options,
        registry,
        is_demo,
    };
    match store {
        Store::Maildir { root, users_path } => {
            let users =
                Reloadable::new(PasswdFile::load(&users_path)?.with_offload(offload.clone()));
            let backend = Backend::with_observer(users, MaildirStore::new(&root), policy, observer);
            let deliver = Arc::new(lmtp::PasswdMaildir::new(backend.clone()));
            let reloader = Arc::new(Reloader {
                users: Some(UsersFile {
                    path: users_path,
                    offload,
                    backend: backend.clone(),
                }),
                certs,
            });
            runtime.block_on(serve_all(args, listeners, backend, deliver, reloader))
        }
        Store::Postgres(config) => {
            let store = PgStore::with_handle(config, runtime.handle().clone())
                .map_err(|e| format!("the PostgreSQL store: {e}"))?;
            let applied = runtime
                .block_on(store.migrate())
                .map_err(|e| format!("the PostgreSQL store: migrations: {e}"))?;
            if !applied.is_empty() {
                tracing::info!(?applied, "PostgreSQL schema migrated");
            }
            let backend = Backend::with_observer(store.clone(), store.clone(), policy, observer);
            let reloader = Arc::new(Reloader { users: None, certs });
            runtime.block_on(serve_all(
                args,
                listeners,
                backend,
                Arc::new(store),
                reloader,
            ))
        }
    }
}

/// Where the mail and the users are.
enum Store {
    /// Maildirs under `root`, users from a passwd-file.
    Maildir {
        root: std::path::PathBuf,
        users_path: std::path::PathBuf,
    },
    /// Everything in PostgreSQL (bodies there or in S3).
    Postgres(PgConfig),
}

fn store_of(args: &ServeArgs) -> Result<Store, Error> {
    let from_flag = args.postgres.clone().map(PgConfig::new);
    if let Some(config) = args.postgres_config.as_ref().or(from_flag.as_ref()) {
        if args.maildir_root.is_some() {
            return Err("give a Maildir root or a PostgreSQL store, not both".into());
        }
        if args.users.is_some() {
            return Err("with a PostgreSQL store the users are in the database: \
                        `pop3 import` copies a passwd-file there"
                .into());
        }
        return Ok(Store::Postgres(config.clone()));
    }
    Ok(Store::Maildir {
        root: args
            .maildir_root
            .clone()
            .ok_or("--maildir-root DIR (or a PostgreSQL store) is required")?,
        users_path: args.users.clone().ok_or("--users FILE is required")?,
    })
}

/// The POP3 listeners, as configured, and what they share.
struct Listeners {
    specs: Vec<(config::ListenerSpec, Option<std::net::TcpListener>)>,
    tls_of: Vec<Option<Arc<rustls::ServerConfig>>>,
    options: ServerOptions,
    registry: Arc<prometheus_client::registry::Registry>,
    is_demo: bool,
}

/// Serves the listeners (and LMTP, when asked) over one backend until a signal stops it.
async fn serve_all<A, S, D>(
    args: ServeArgs,
    listeners: Listeners,
    backend: Arc<Backend<A, S>>,
    deliver: Arc<D>,
    reloader: Arc<Reloader>,
) -> Result<(), Error>
where
    A: Authenticator,
    S: MailStore,
    D: Deliver,
{
    let Listeners {
        specs,
        tls_of,
        options,
        registry,
        is_demo,
    } = listeners;
    let mut signals = Signals::new();
    let mut hangup = Hangup::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(addr) = &args.metrics_listen {
        let listener = TcpListener::bind(addr.as_str())
            .await
            .map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
        let local = listener.local_addr()?;
        tracing::info!(%local, "metrics at http://{local}/metrics");
        tokio::spawn(metrics::serve(listener, registry.clone(), stop_rx.clone()));
    }
    let mut servers = Vec::new();
    let mut bound = Vec::new();
    for ((spec, inherited), tls) in specs.into_iter().zip(tls_of) {
        let socket_activated = inherited.is_some();
        let listener = match inherited {
            Some(l) => l
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(l))
                .map_err(|e| format!("socket activation ({}): {e}", spec.name))?,
            None => listen(&spec.address)
                .await
                .map_err(|e| format!("cannot listen on {}: {e}", spec.address))?,
        };
        let local = listener.local_addr()?;
        let (implicit, mut options) = (spec.tls == TlsMode::Implicit, options.clone());
        tracing::info!(
            %local,
            name = %spec.name,
            tls = implicit,
            stls = spec.tls == TlsMode::Starttls,
            socket_activated,
            "listening"
        );
        bound.push((local, implicit));
        // TLS from the first byte, or offered through STLS on a plain listener.
        let implicit = if implicit {
            tls
        } else {
            options.tls = tls;
            None
        };
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        servers.push(tokio::spawn(serve(
            listener,
            backend.clone(),
            implicit,
            options.clone(),
            shutdown,
        )));
    }
    if let Some(addr) = &args.lmtp_listen {
        let listener = listen(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} for LMTP: {e}"))?;
        let local = listener.local_addr()?;
        tracing::info!(%local, "listening for LMTP");
        let mut config = pop3_lmtp::server::Config::default();
        config.hostname = lmtp::hostname();
        config.max_message_size = args.lmtp_max_message_size;
        servers.push(tokio::spawn(lmtp::serve(
            listener,
            deliver.clone(),
            config,
            stop_rx.clone(),
        )));
    }
    if is_demo {
        print_demo(&bound);
    }
    systemd::ready(&format!("serving on {} listeners", bound.len()));
    loop {
        tokio::select! {
            () = signals.next() => break,
            () = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the users file and the certificates");
                systemd::reloading();
                let r = reloader.clone();
                let ok = tokio::task::spawn_blocking(move || r.reload()).await.unwrap_or(false);
                systemd::ready(if ok {
                    "reloaded"
                } else {
                    "reload failed in part: see the log; the previous files stay in force"
                });
            }
        }
    }
    systemd::stopping();
    tracing::info!(
        "shutting down: no new connections; sessions that do not QUIT commit nothing (a second signal stops at once)"
    );
    let _ = stop_tx.send(true);
    let all = async {
        for s in servers {
            let _ = s.await;
        }
    };
    tokio::select! {
        () = all => {}
        // Ending the process commits nothing either: deletions happen only on QUIT.
        () = signals.next() => tracing::info!("second signal: stopping now"),
    }
    Ok(())
}

/// Binds `addr` with a deep accept queue: a burst of connections (thousands of clients at
/// once) must wait in the kernel, not be dropped half-open (tokio's default backlog is 1024;
/// the kernel caps this at `net.core.somaxconn`).
async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for sa in tokio::net::lookup_host(addr).await? {
        let socket = if sa.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket.bind(sa).and_then(|()| socket.listen(8192)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

/// How to call this program again in a printed command: `pop3` when it was found on the
/// `PATH`, else the path it was started by (`target/debug/pop3` under `cargo run`).
fn self_name() -> String {
    let arg0 = std::env::args().next().unwrap_or_default();
    if arg0.is_empty() || !arg0.contains('/') {
        "pop3".into()
    } else {
        arg0
    }
}

fn print_demo(bound: &[(std::net::SocketAddr, bool)]) {
    let port = |tls: bool, default: u16| {
        bound
            .iter()
            .find(|(_, t)| *t == tls)
            .map_or(default, |(a, _)| a.port())
    };
    let (plain, tls) = (port(false, 1110), port(true, 1995));
    let me = self_name();
    let messages = ["new", "cur"]
        .iter()
        .filter_map(|d| std::fs::read_dir(Path::new("pop3-demo/mail/demo").join(d)).ok())
        .map(|d| d.count())
        .sum::<usize>();
    println!(
        "pop3 demo server: user demo, password demo, {messages} messages in ./pop3-demo/mail/demo"
    );
    if messages == 0 {
        println!("  (the demo maildir is empty: remove ./pop3-demo to start over)");
    }
    println!("  127.0.0.1:{plain}: plain text with STLS; 127.0.0.1:{tls}: implicit TLS");
    println!("  certificate: ./pop3-demo/cert.pem (self-signed for localhost and 127.0.0.1)");
    println!();
    println!("Try it:");
    println!("  curl -k --ssl-reqd pop3://127.0.0.1:{plain}/1 -u demo:demo");
    println!(
        "  DEMO_PASSWORD=demo {me} fetch pop3s://demo@127.0.0.1:{tls} --insecure --keep --password-env DEMO_PASSWORD --maildir ./mail"
    );
    println!();
    println!("Ctrl-C stops the server.");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
