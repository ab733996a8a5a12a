//! An MDA: a shell command (`procmail -d %u`) run once per message with the message on its
//! standard input, LF line ends (as procmail, maildrop and `deliver` expect). Its exit status
//! is its answer: 0, delivered; 75 (`EX_TEMPFAIL`), try later (the message stays on the
//! server, reported as deferred); anything else, refused (it stays on the server, reported
//! as failed).
//!
//! The message is not piped to the MDA as it arrives: it is spooled (LF line ends) into an
//! anonymous temporary file in the state directory, unlinked as soon as it is opened, and the
//! MDA is started only once the whole message is there, with that file as its standard input
//! (a regular file: the MDA may read it as it likes, seek in it, or not read it at all). So
//! nothing can hand the MDA a cut message: a message the server stops sending halfway never
//! reaches it (the spool is dropped), and a `pop3 fetch` killed while a message arrives has
//! started no MDA yet, its spool vanishing with the process. Memory stays bounded by the
//! file, whatever the message's size.
//!
//! The MDA's acceptance is durable when it exits 0, so the key is recorded and the record
//! synced right then, before any `DELE`: a run killed afterwards does not deliver the message
//! a second time. The record lives in the state directory (`mda-<host>-<user>`). One window
//! is left that no client can close: a run killed after the MDA started (it goes on, and
//! delivers) and before the record is synced hands the same message to the MDA again at the
//! next run. For a careful MDA to drop that duplicate, each run of the MDA is told the
//! message's dedup key (stable across runs: a hash of the host, the user and the UIDL) in the
//! environment variable `POP3_FETCH_KEY` and as `%k` in the command, and the server's UIDL,
//! when it has them, in `POP3_FETCH_UIDL`. For instance a procmail recipe dropping what it
//! saw already by Message-ID:
//!
//! ```text
//! :0 Wh: msgid.lock
//! | formail -D 8192 msgid.cache
//! ```
//!
//! or a delivery named after the key, which a second copy overwrites instead of adding to:
//! `mda = "cat > ~/Mail/tmp/%k && mv ~/Mail/tmp/%k ~/Mail/new/%k"`. An MDA that exits 0
//! without reading its input (a duplicate dropped) is taken at its word: delivered.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::record::{Record, safe, synced_record_methods};
use super::{MessageInfo, Outcome, Owner, Target, ToLf, begun};

/// `EX_TEMPFAIL` of sysexits.h.
const EX_TEMPFAIL: i32 = 75;
/// How much of the MDA's standard error a report quotes.
const STDERR_KEPT: usize = 2048;
/// The environment variable holding the message's dedup key.
const ENV_KEY: &str = "POP3_FETCH_KEY";
/// The environment variable holding the message's UIDL (unset without one).
const ENV_UIDL: &str = "POP3_FETCH_UIDL";

/// The message begun, spooled as it arrives.
struct Spool {
    key: String,
    uidl: Option<String>,
    /// An unlinked temporary file: it vanishes with its last descriptor.
    file: BufWriter<File>,
    lf: ToLf,
}

/// The MDA target.
pub(crate) struct Mda {
    /// The command as configured: `%u`, `%a` and `%k` are filled in for each message.
    command: String,
    user: String,
    account: String,
    /// Where the spool files are made (the state directory).
    spool_dir: PathBuf,
    record: Record,
    current: Option<Spool>,
    scratch: Vec<u8>,
}

/// `value` as a shell word: as it is when it is plain, else single-quoted.
fn shell_word(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@._+-=,:/".contains(&b));
    if plain {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// Fills in `%u` (the user), `%a` (the account), `%k` (the message's dedup key) and `%%` (a
/// `%`), each value a shell word.
pub(crate) fn expand(command: &str, user: &str, account: &str, key: &str) -> String {
    let mut out = String::new();
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(&shell_word(user)),
            Some('a') => out.push_str(&shell_word(account)),
            Some('k') => out.push_str(&shell_word(key)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// An anonymous temporary file in `dir`, unlinked already (in `$TMPDIR` if `dir` refuses).
fn spool_file(dir: &std::path::Path) -> io::Result<File> {
    tempfile::tempfile_in(dir)
        .or_else(|_| tempfile::tempfile())
        .map_err(|e| io::Error::other(format!("cannot make a spool file for the MDA: {e}")))
}

impl Mda {
    /// Opens the record of `owner` for the command `command`.
    pub(crate) fn open(command: &str, owner: &Owner<'_>) -> Result<Mda, String> {
        let path = owner
            .state_dir
            .join(format!("mda-{}-{}", safe(owner.host), safe(owner.user)));
        Ok(Mda {
            command: command.to_string(),
            user: owner.user.to_string(),
            account: owner.account.to_string(),
            spool_dir: owner.state_dir.to_path_buf(),
            record: Record::open(&path)?,
            current: None,
            scratch: Vec::new(),
        })
    }

    /// Runs the MDA with the spooled message `input` as its standard input: what its exit
    /// status says, the start of its standard error quoted.
    fn run(command: &str, key: &str, uidl: Option<&str>, input: File) -> io::Result<Outcome> {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", command])
            .stdin(Stdio::from(input))
            // Its output is diagnostics: ours go to standard error too.
            .stdout(Stdio::from(io::stderr()))
            .stderr(Stdio::piped())
            .env(ENV_KEY, key);
        match uidl {
            Some(uidl) => cmd.env(ENV_UIDL, uidl),
            None => cmd.env_remove(ENV_UIDL),
        };
        let mut child = cmd
            .spawn()
            .map_err(|e| io::Error::other(format!("cannot run the MDA {command:?}: {e}")))?;
        // Drop our end of the spool now: the MDA holds the only descriptor.
        drop(cmd);
        // Read its standard error to the end (so it never blocks on it), keep the start.
        let mut kept = Vec::new();
        if let Some(mut err) = child.stderr.take() {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = STDERR_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        let status = child.wait()?;
        let err = String::from_utf8_lossy(&kept);
        let said = match err.trim() {
            "" => String::new(),
            e => format!(": {}", e.replace('\n', " / ")),
        };
        Ok(match status.code() {
            Some(0) => Outcome::Stored,
            Some(EX_TEMPFAIL) => Outcome::Deferred(format!(
                "the MDA exited 75 (EX_TEMPFAIL, try again later){said}"
            )),
            Some(code) => Outcome::Failed(format!("the MDA exited {code}{said}")),
            None => Outcome::Failed(format!("the MDA was killed ({status}){said}")),
        })
    }
}

impl Target for Mda {
    synced_record_methods!();

    fn begin(&mut self, msg: &MessageInfo<'_>) -> io::Result<()> {
        // A message begun and not finished is dropped with its spool.
        self.current = None;
        let file = spool_file(&self.spool_dir)?;
        self.current = Some(Spool {
            key: msg.key.to_string(),
            uidl: msg.uidl.map(str::to_string),
            file: BufWriter::with_capacity(64 * 1024, file),
            lf: ToLf::default(),
        });
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let s = begun(self.current.as_mut())?;
        self.scratch.clear();
        s.lf.feed(data, &mut self.scratch);
        s.file
            .write_all(&self.scratch)
            .map_err(|e| io::Error::other(format!("cannot spool the message for the MDA: {e}")))
    }

    fn finish(&mut self) -> io::Result<Outcome> {
        let Spool {
            key,
            uidl,
            mut file,
            mut lf,
        } = begun(self.current.take())?;
        self.scratch.clear();
        lf.finish(&mut self.scratch);
        let spooled = file
            .write_all(&self.scratch)
            .and_then(|()| file.into_inner().map_err(|e| e.into_error()))
            .and_then(|mut f| f.seek(SeekFrom::Start(0)).map(|_| f));
        let input = spooled
            .map_err(|e| io::Error::other(format!("cannot spool the message for the MDA: {e}")))?;
        // The whole message is there: only now is the MDA started.
        let command = expand(&self.command, &self.user, &self.account, &key);
        let outcome = Mda::run(&command, &key, uidl.as_deref(), input)?;
        if outcome == Outcome::Stored {
            // Delivered: recorded and synced before the DELE.
            self.record.accept(&key)?;
        }
        Ok(outcome)
    }

    fn abort(&mut self) {
        // Nothing was handed to an MDA yet: the spool goes, and the message with it.
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        assert_eq!(
            expand("procmail -d %u", "alice", "work", "k"),
            "procmail -d alice"
        );
        assert_eq!(
            expand("deliver -a %a -u %u 100%%", "a b", "it's", "k"),
            r"deliver -a 'it'\''s' -u 'a b' 100%"
        );
        assert_eq!(expand("x %z %", "u", "a", "k"), "x %z %");
        assert_eq!(
            expand("dedup %k %%k", "u", "a", "0123abcd"),
            "dedup 0123abcd %k"
        );
        assert_eq!(expand("d %k", "u", "a", "a'b c"), r"d 'a'\''b c'");
    }

    fn owner(dir: &std::path::Path) -> Owner<'_> {
        Owner {
            host: "h",
            user: "u",
            account: "a",
            state_dir: dir,
        }
    }

    /// `Mda::open`, again while the record is locked: a test running beside this one may
    /// have forked, its child holding a copy of the record's descriptor (and its lock) until
    /// it execs.
    fn open(cmd: &str, dir: &std::path::Path) -> Mda {
        let start = std::time::Instant::now();
        loop {
            match Mda::open(cmd, &owner(dir)) {
                Ok(t) => return t,
                Err(e) if e.contains("locked") && start.elapsed().as_secs() < 5 => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn deliver_uidl(t: &mut Mda, key: &str, uidl: Option<&str>, text: &[u8]) -> Outcome {
        t.begin(&MessageInfo {
            key,
            uidl,
            size: text.len() as u64,
        })
        .unwrap();
        for chunk in text.chunks(3) {
            t.write(chunk).unwrap();
        }
        t.finish().unwrap()
    }

    fn deliver(t: &mut Mda, key: &str, text: &[u8]) -> Outcome {
        deliver_uidl(t, key, None, text)
    }

    #[test]
    fn exit_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!("cat >> {}", out.display());
        let mut t = open(&cmd, dir.path());
        assert_eq!(deliver(&mut t, "k1", b"A: b\r\n\r\nc\r\n"), Outcome::Stored);
        assert!(t.has("k1"));
        assert_eq!(std::fs::read(&out).unwrap(), b"A: b\n\nc\n");
        drop(t);
        let mut t = open("echo busy >&2; exit 75", dir.path());
        assert!(t.has("k1"), "the record outlives the run");
        match deliver(&mut t, "k2", b"x\r\n") {
            Outcome::Deferred(why) => assert!(why.contains("75") && why.contains("busy"), "{why}"),
            o => panic!("{o:?}"),
        }
        drop(t);
        let mut t = open("cat >/dev/null; exit 1", dir.path());
        assert!(matches!(
            deliver(&mut t, "k3", b"x\r\n"),
            Outcome::Failed(_)
        ));
        assert!(!t.has("k2") && !t.has("k3"));
        // An abort drops the spool: no MDA ever runs, nothing is delivered.
        let cut = dir.path().join("cut");
        drop(t);
        let mut t = open(
            &format!("cat > {0}.tmp && mv {0}.tmp {0}", cut.display()),
            dir.path(),
        );
        t.begin(&MessageInfo {
            key: "k4",
            uidl: None,
            size: 10,
        })
        .unwrap();
        t.write(b"partial\r\n").unwrap();
        t.abort();
        assert!(!cut.exists() && !dir.path().join("cut.tmp").exists());
        assert!(!t.has("k4"));
        // Nothing of the spool is left in the state directory.
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["mda-h-u", "out"]);
    }

    /// The MDA starts only once the whole message is spooled, and reads it from a file.
    #[test]
    fn the_mda_starts_on_the_whole_message() {
        let dir = tempfile::tempdir().unwrap();
        let (started, out) = (dir.path().join("started"), dir.path().join("out"));
        let cmd = format!(
            "touch {}; test -f /dev/stdin && cat > {}",
            started.display(),
            out.display()
        );
        let mut t = open(&cmd, dir.path());
        t.begin(&MessageInfo {
            key: "k",
            uidl: None,
            size: 0,
        })
        .unwrap();
        let mut want = Vec::new();
        for i in 0..20_000 {
            let line = format!("line {i} of a message larger than a pipe\r\n");
            t.write(line.as_bytes()).unwrap();
            want.extend_from_slice(line.replace("\r\n", "\n").as_bytes());
        }
        t.write(b"last\r").unwrap();
        want.extend_from_slice(b"last\r");
        assert!(!started.exists(), "no MDA before the end of the message");
        assert_eq!(t.finish().unwrap(), Outcome::Stored);
        assert!(std::fs::read(&out).unwrap() == want);
        assert!(t.has("k"));
    }

    /// The MDA is told the key (`POP3_FETCH_KEY`, `%k`) and the UIDL (`POP3_FETCH_UIDL`).
    #[test]
    fn the_mda_sees_the_key_and_the_uidl() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let cmd = format!(
            "cat >/dev/null; echo \"$POP3_FETCH_KEY\" %k \"${{POP3_FETCH_UIDL-unset}}\" >> {}",
            out.display()
        );
        let mut t = open(&cmd, dir.path());
        let k1 = crate::sink::key("h", "u", "UID-1");
        assert_eq!(
            deliver_uidl(&mut t, &k1, Some("UID-1"), b"a\r\n"),
            Outcome::Stored
        );
        assert_eq!(deliver(&mut t, "it's k2", b"b\r\n"), Outcome::Stored);
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{k1} {k1} UID-1\nit's k2 it's k2 unset\n")
        );
        assert!(t.has(&k1) && t.has("it's k2"));
    }
}
