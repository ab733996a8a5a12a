//! `pop3 fetch --daemon` against `pop3 serve`: accounts polled on their interval, a failing
//! one backed off without holding up the others, SIGHUP re-reading the configuration, SIGTERM
//! stopping after the message in hand with nothing lost or delivered twice; and the shipped
//! systemd units verify.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::{BIN, PASSWORD, Server, account, maildrop, on_server, write_private};

/// A daemon whose log goes to a file; killed on drop.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(home: &Path, config: &Path) -> Daemon {
        let log = home.join("daemon.log");
        let child = Command::new(BIN)
            .args(["fetch", "--daemon", "--log-level", "debug", "--config"])
            .arg(config)
            .env("HOME", home)
            .env("XDG_STATE_HOME", home.join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Daemon { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (at most 30 s) for `cond`.
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&str) -> bool) {
        let start = Instant::now();
        loop {
            let log = self.log();
            if cond(&log) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the daemon exited ({status}) waiting for {what}:\n{log}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "waiting for {what}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// SIGTERM, and the exit status (within 30 s).
    fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let start = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the daemon does not stop:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn files(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// The `retry_in=…s` values of the log's failures of `account`, in order.
fn retries(log: &str, account: &str) -> Vec<f64> {
    log.lines()
        .filter(|l| l.contains("fetch failed") && l.contains(&format!("account={account}")))
        .filter_map(|l| {
            let v = l.split("retry_in=").nth(1)?;
            v.split('s').next()?.parse().ok()
        })
        .collect()
}

#[test]
fn polls_backs_off_reloads_and_stops_cleanly() {
    let server = Server::start_tls();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = h.join("fetch.toml");
    let good = account(
        &server,
        "good",
        &format!(
            "password_command = \"echo {PASSWORD}\"\nkeep = true\ninterval = \"1s\"\nmaildir = \"good\""
        ),
    );
    let bad = account(
        &server,
        "bad",
        "password_command = \"echo wrong\"\nkeep = true\nmaildir = \"bad\"",
    );
    write_private(&config, &format!("interval = \"1s\"\n{good}{bad}"));
    let mut d = Daemon::start(h, &config);
    d.wait_for("the first fetch", |_| files(&h.join("good/new")) == 3);
    // A new message is fetched at the next poll.
    std::fs::write(
        maildrop(&server).join("new/1800000000.M1P1.new"),
        "Subject: new\n\nnew\n",
    )
    .unwrap();
    d.wait_for("the new message", |_| files(&h.join("good/new")) == 4);
    // The failing account backs off: 2 s, then 4 s (±10 %), while the good one goes on.
    d.wait_for("two failures", |log| retries(log, "bad").len() >= 2);
    let r = retries(&d.log(), "bad");
    assert!(
        (1.7..=2.3).contains(&r[0]) && (3.5..=4.5).contains(&r[1]),
        "{r:?}"
    );
    assert!(d.log().contains("login failed"), "{}", d.log());
    // SIGHUP: the bad account goes, a new one comes.
    let third = account(
        &server,
        "third",
        &format!("password_command = \"echo {PASSWORD}\"\nkeep = true\nmbox = \"third.mbox\""),
    );
    write_private(&config, &format!("interval = \"1s\"\n{good}{third}"));
    d.signal("-HUP");
    d.wait_for("the reload", |log| {
        log.contains("reload: configuration read")
    });
    d.wait_for("the new account's fetch", |_| {
        std::fs::read_to_string(h.join("third.mbox"))
            .is_ok_and(|t| t.matches("\nSubject: ").count() >= 4)
    });
    // A bad file is refused, the previous configuration stays.
    write_private(&config, "bogus = 1\n");
    d.signal("-HUP");
    d.wait_for("the refused reload", |log| {
        log.contains("reload: configuration refused") && log.contains("unknown field `bogus`")
    });
    let status = d.stop();
    assert!(status.success(), "{status}: {}", d.log());
    assert!(d.log().contains("stopped"), "{}", d.log());
    assert_eq!(on_server(&server), 4, "keep = true");
}

#[test]
fn sigterm_stops_after_the_message_in_hand() {
    let server = Server::start_tls();
    let total = 3 + 40;
    for i in 0..40 {
        std::fs::write(
            maildrop(&server).join(format!("new/18000000{i:02}.M{i}P1.more")),
            format!("Subject: more {i}\n\nbody {i}\n"),
        )
        .unwrap();
    }
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = h.join("out");
    std::fs::create_dir(&out).unwrap();
    let config = h.join("fetch.toml");
    // A slow MDA: the stop comes while messages are still to go.
    write_private(
        &config,
        &account(
            &server,
            "slow",
            &format!(
                "password_command = \"echo {PASSWORD}\"\nmda = \"sleep 0.1; cat > $(mktemp {}/m.XXXXXX)\"",
                out.display()
            ),
        ),
    );
    let mut d = Daemon::start(h, &config);
    d.wait_for("a few deliveries", |_| files(&out) >= 3);
    let status = d.stop();
    assert!(status.success(), "{status}: {}", d.log());
    let delivered = files(&out);
    assert!(delivered < total, "the stop came too late to test anything");
    // Every delivered message was deleted, nothing else: no loss, no duplicate next time.
    assert_eq!(on_server(&server) + delivered, total, "{}", d.log());
    assert!(d.log().contains("stopping"), "{}", d.log());
}

/// The shipped units parse (`systemd-analyze verify`).
#[test]
fn shipped_fetch_units_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/systemd");
    for (unit, as_name) in [
        ("pop3-fetch.service", "pop3-fetch.service"),
        ("pop3-fetch-once.service", "pop3-fetch-once.service"),
        ("pop3-fetch@.service", "pop3-fetch@work.service"),
        ("pop3-fetch.timer", "pop3-fetch.timer"),
    ] {
        let body = std::fs::read_to_string(contrib.join(unit)).unwrap();
        // verify checks that ExecStart's program exists.
        std::fs::write(
            dir.path().join(as_name),
            body.replace("/usr/local/bin/pop3", BIN),
        )
        .unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args([
            "verify",
            "pop3-fetch.service",
            "pop3-fetch-once.service",
            "pop3-fetch@work.service",
            "pop3-fetch.timer",
        ])
        .current_dir(dir.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let service = std::fs::read_to_string(contrib.join("pop3-fetch.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/local/bin/pop3 fetch --daemon"));
    assert!(service.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let timer = std::fs::read_to_string(contrib.join("pop3-fetch.timer")).unwrap();
    assert!(timer.contains("Unit=pop3-fetch-once.service"));
}
