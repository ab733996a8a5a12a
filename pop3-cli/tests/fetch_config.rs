//! `pop3 fetch` with a configuration file of accounts: all fetched at once (one failing never
//! stops the others), `--account`, `--print-config` with secrets redacted, passwords refused in
//! files others can read, errors with file, line and key, `max_size`, `delete_after_days`, and
//! moving from mpop and fetchmail (`--import-uidls`).

use std::path::Path;
use std::process::{Command, Output};

mod support;
use support::{
    BIN, MESSAGES, Options, PASSWORD, Server, account, chmod, on_server, run, served_size, stderr,
    stdout, write_private,
};

fn count_new(md: &Path) -> usize {
    std::fs::read_dir(md.join("new")).map_or(0, |d| d.count())
}

/// `pop3 fetch ARGS` with `HOME`, `XDG_CONFIG_HOME` and `XDG_STATE_HOME` in `home`.
fn fetch(home: &Path, args: &[&str]) -> Output {
    run(Command::new(BIN)
        .arg("fetch")
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state")))
}

#[test]
fn accounts_run_together_and_one_failure_does_not_stop_the_others() {
    let server = Server::start_tls();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("config/pop3")).unwrap();
    let config = h.join("config/pop3/fetch.toml");
    let text = [
        "jobs = 2\n".to_string(),
        account(
            &server,
            "good",
            &format!("password_command = \"echo {PASSWORD}\"\nkeep = true\nmaildir = \"~/Mail/good\""),
        ),
        account(
            &server,
            "wrong",
            "password_command = \"echo wrong\"\nkeep = true\nmaildir = \"Mail/wrong\"",
        ),
        account(
            &server,
            "box",
            &format!("password = \"{PASSWORD}\"\nkeep = true\nmbox = \"~/box\""),
        ),
        account(
            &server,
            "later",
            &format!(
                "password_command = \"x\"\nlmtp = \"lmtp://127.0.0.1:{}\"\nrecipient = \"alice@example.com\"",
                support::free_port()
            ),
        ),
    ]
    .concat();
    write_private(&config, &text);
    // No URL and no --config: $XDG_CONFIG_HOME/pop3/fetch.toml, every account.
    let out = fetch(h, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let (o, e) = (stdout(&out), stderr(&out));
    assert!(o.contains("good: 3 messages fetched"), "{o}\n{e}");
    assert!(o.contains("box: 3 messages fetched"), "{o}\n{e}");
    assert!(e.contains("pop3: error: wrong: login failed"), "{e}");
    // Nothing listens on the LMTP port: that account fails too, on its own.
    assert!(e.contains("pop3: error: later: "), "{e}");
    assert_eq!(count_new(&h.join("Mail/good")), 3);
    assert!(
        std::fs::read_to_string(h.join("box"))
            .unwrap()
            .contains("Subject: three")
    );
    assert_eq!(on_server(&server), 3, "keep = true");
    // One account: only it.
    let out = fetch(h, &["--account", "good"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["good: 0 messages fetched (0 B in 0.0 s), 0 deleted from the server, 3 left"]
    );
    let out = fetch(h, &["--account", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no account \"nope\"")
            && stderr(&out).contains("box, good, later, wrong"),
        "{}",
        stderr(&out)
    );
    // A URL on the command line works as ever, the file unread.
    let out = fetch(
        h,
        &[
            &format!("pop3s://alice@127.0.0.1:{}", server.tls_port.unwrap()),
            "--ca-file",
            server.dir.path().join("cert.pem").to_str().unwrap(),
            "--password-command",
            &format!("echo {PASSWORD}"),
            "--maildir",
            h.join("url").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("3 messages fetched"), "{out:?}");
    assert_eq!(on_server(&server), 0);
    // Flags of a URL are refused with accounts.
    let out = fetch(h, &["--maildir", "x"]);
    assert!(
        stderr(&out).contains("--maildir goes with a URL"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn print_config_redacts_and_a_readable_password_is_refused() {
    let server = Server::start_tls();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = h.join("fetch.toml");
    let pwfile = h.join("pw");
    write_private(&pwfile, &format!("{PASSWORD}\n"));
    let text = [
        "interval = \"10m\"\n".to_string(),
        account(
            &server,
            "a",
            "password = \"sesame-XYZ\"\ndelete_after_days = 7\nmax_size = \"1M\"\nmaildir = \"m\"",
        ),
        account(
            &server,
            "b",
            "password_file = \"pw\"\nmda = \"procmail -d %u\"",
        ),
    ]
    .concat();
    write_private(&config, &text);
    let c = config.to_str().unwrap();
    let out = fetch(h, &["--config", c, "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let o = stdout(&out);
    assert!(!o.contains("sesame"), "{o}");
    assert!(o.contains("password = \"<redacted>\""), "{o}");
    assert!(
        o.contains("[accounts.a]") && o.contains("[accounts.b]"),
        "{o}"
    );
    assert!(o.contains("delete_after_days = 7"), "{o}");
    assert!(o.contains("max_size = 1048576"), "{o}");
    assert!(o.contains("interval = \"10m\""), "{o}");
    assert!(
        o.contains(&format!("password_file = \"{}\"", pwfile.display())),
        "{o}"
    );
    assert!(
        o.contains(&format!("maildir = \"{}\"", h.join("m").display())),
        "{o}"
    );
    assert!(o.contains("tls = \"implicit\""), "{o}");
    // What it prints reads back.
    let printed = h.join("printed.toml");
    let body: String = o
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    write_private(&printed, &body.replace("<redacted>", "x"));
    let again = fetch(
        h,
        &["--config", printed.to_str().unwrap(), "--print-config"],
    );
    assert!(again.status.success(), "{}", stderr(&again));

    // The file readable by others: the password in it is refused, naming file, line, mode.
    chmod(&config, 0o644);
    let out = fetch(h, &["--config", c, "--print-config"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "{c}:5:12: accounts.a.password: a password in a file others can read (mode 0644)"
        )),
        "{e}"
    );
    // A password file readable by others, likewise.
    chmod(&config, 0o600);
    chmod(&pwfile, 0o640);
    let out = fetch(h, &["--config", c, "--print-config"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("accounts.b.password_file: ") && e.contains("(mode 0640)"),
        "{e}"
    );
    // Unknown keys: file, line, column.
    write_private(
        &config,
        &(account(&server, "a", "password_command = \"x\"\nmaildir = \"m\"")
            + "colour = \"blue\"\n"),
    );
    let out = fetch(h, &["--config", c]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("{c}:6:1: unknown field `colour`")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn max_size_and_delete_after_days() {
    let server = Server::start_tls();
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let config = h.join("fetch.toml");
    let c = config.to_str().unwrap();
    // Only the second message is larger than this.
    let max = served_size(MESSAGES[0]).max(served_size(MESSAGES[2]));
    assert!(served_size(MESSAGES[1]) > max);
    write_private(
        &config,
        &account(
            &server,
            "a",
            &format!(
                "password_command = \"echo {PASSWORD}\"\ndelete_after_days = 3\nmax_size = {max}\nmaildir = \"m\""
            ),
        ),
    );
    let out = fetch(h, &["--config", c]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("a: 2 messages fetched")
            && stdout(&out).contains("1 larger than max_size left on the server")
            && stdout(&out).contains("0 deleted from the server, 3 left"),
        "{out:?}"
    );
    assert!(
        stderr(&out).contains("is larger than max_size"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count_new(&h.join("m")), 2);
    // The first-seen dates: one per message on the server.
    let seen = h.join("state/pop3/seen-127.0.0.1-alice");
    let text = std::fs::read_to_string(&seen).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    // Four days later (as far as the state file knows): the stored ones go, the large one
    // stays.
    let old: String = text
        .lines()
        .map(|l| {
            let (k, t) = l.split_once(' ').unwrap();
            format!("{k} {}\n", t.parse::<u64>().unwrap() - 4 * 86_400)
        })
        .collect();
    std::fs::write(&seen, old).unwrap();
    let out = fetch(h, &["--config", c]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("a: 0 messages fetched")
            && stdout(&out).contains("2 deleted from the server, 1 left"),
        "{out:?}"
    );
    assert_eq!(on_server(&server), 1);
    // The dates of deleted messages are forgotten at the next run.
    let out = fetch(h, &["--config", c]);
    assert!(
        stdout(&out).contains("0 deleted from the server, 1 left"),
        "{out:?}"
    );
    assert_eq!(std::fs::read_to_string(&seen).unwrap().lines().count(), 1);
}

#[test]
fn the_shipped_example_reads() {
    let home = tempfile::tempdir().unwrap();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/fetch.toml");
    let out = fetch(home.path(), &["--config", example, "--print-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("[accounts."), "{}", stdout(&out));
}

/// Moving from mpop and from fetchmail (both with keep): their UIDL files, made by running
/// them against `pop3 serve`, are imported, and `pop3 fetch --keep` then fetches only what
/// came after.
#[test]
fn uidls_imported_from_mpop_and_fetchmail_are_not_fetched_again() {
    for tool in ["mpop", "fetchmail"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("{tool} is not installed: skipped");
            return;
        }
    }
    // Plain text (no certificate, so neither tool tries STLS), USER/PASS allowed.
    let server = Server::start(Options::default());
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // mpop, keeping the mail: its UIDL file.
    let mpop_uidls = h.join("mpop_uidls");
    let mpop_md = h.join("mpop-md");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(mpop_md.join(sub)).unwrap();
    }
    let rc = h.join("mpoprc");
    write_private(
        &rc,
        &format!(
            "account default\nhost 127.0.0.1\nport {}\nuser alice\npassword {PASSWORD}\ntls off\nauth user\nkeep on\nuidls_file {}\ndelivery maildir {}\n",
            server.port,
            mpop_uidls.display(),
            mpop_md.display()
        ),
    );
    let out = run(Command::new("mpop")
        .arg("-C")
        .arg(&rc)
        .arg("-q")
        .env("HOME", h));
    assert!(out.status.success(), "mpop: {}", stderr(&out));
    assert_eq!(count_new(&mpop_md), 3);
    // fetchmail, keeping the mail: its .fetchids.
    let fetchids = h.join("fetchids");
    let frc = h.join("fetchmailrc");
    write_private(
        &frc,
        &format!(
            "poll 127.0.0.1 port {} proto pop3 uidl user \"alice\" password \"{PASSWORD}\" sslproto '' mda \"cat > /dev/null\"\n",
            server.port
        ),
    );
    let out = run(Command::new("fetchmail")
        .args(["-k", "--nosyslog", "--fetchmailrc"])
        .arg(&frc)
        .arg("--idfile")
        .arg(&fetchids)
        .env("HOME", h));
    assert!(out.status.success(), "fetchmail: {}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&fetchids).unwrap().lines().count(),
        3
    );
    assert_eq!(on_server(&server), 3);
    // A message arrives after both.
    std::fs::write(
        server.dir.path().join("mail/alice/new/1800000000.M1P1.new"),
        "Subject: after\n\nnew\n",
    )
    .unwrap();
    let url = format!("pop3://alice@127.0.0.1:{}", server.port);
    for (kind, file) in [("mpop", &mpop_uidls), ("fetchmail", &fetchids)] {
        let md = h.join(format!("ours-{kind}"));
        let common = [
            url.as_str(),
            "--tls",
            "none",
            "--password-command",
            &format!("echo {PASSWORD}"),
            "--keep",
            "--maildir",
            md.to_str().unwrap(),
        ];
        let spec = format!("{kind}:{}", file.display());
        let mut args = common.to_vec();
        args.extend(["--import-uidls", &spec]);
        let out = fetch(h, &args);
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        assert!(
            stdout(&out).contains("3 UIDLs of alice@127.0.0.1 recorded as fetched"),
            "{kind}: {out:?}"
        );
        assert_eq!(count_new(&md), 0, "importing fetches nothing");
        let out = fetch(h, &common);
        assert!(out.status.success(), "{kind}: {}", stderr(&out));
        assert!(
            stdout(&out).starts_with("1 messages fetched"),
            "{kind}: {out:?}"
        );
        let got: Vec<String> = std::fs::read_dir(md.join("new"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
            .collect();
        assert_eq!(got, ["Subject: after\n\nnew\n"], "{kind}");
    }
    // An account the file knows nothing of.
    let out = fetch(
        h,
        &[
            &format!("pop3://bob@127.0.0.1:{}", server.port),
            "--maildir",
            h.join("x").to_str().unwrap(),
            "--import-uidls",
            &format!("mpop:{}", mpop_uidls.display()),
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no UIDLs for bob@127.0.0.1 (it has: alice@127.0.0.1)"),
        "{}",
        stderr(&out)
    );
}
