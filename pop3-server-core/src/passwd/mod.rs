//! Dovecot-style passwd-file credential store.
//!
//! The file format is Dovecot's `passwd-file`:
//! `user:password:uid:gid:(gecos):home:(shell):extra_fields`. Only the user and password
//! fields are used; a line may be just `user:{SCHEME}secret`. Lines that are empty (or only
//! whitespace) or start with `#` are skipped. Usernames are compared exactly
//! (case-sensitive, no normalisation); scheme names are case-insensitive.
//!
//! Supported schemes: `{PLAIN}`/`{CLEAR}`/`{CLEARTEXT}`, `{SHA512-CRYPT}`, `{SHA256-CRYPT}`,
//! `{ARGON2ID}`, `{ARGON2I}`, `{BLF-CRYPT}`, `{CRAM-MD5}` (alias `{HMAC-MD5}`) and
//! `{SCRAM-SHA-256}`. `PLAIN`-family and `CRAM-MD5` accept an encoding suffix
//! (`.b64`/`.base64`/`.hex`, e.g. `{PLAIN.b64}`), as `doveadm pw` emits.
//!
//! A password with no `{SCHEME}` prefix (or `{CRYPT}`) is Dovecot's default scheme, libc
//! `crypt()`: it is accepted when its `$id$` prefix names a supported algorithm (`$6$`,
//! `$5$`, `$2a$`/`$2b$`/`$2y$`) and rejected with [`LineError::UnsupportedCrypt`] otherwise
//! (DES, MD5-crypt, yescrypt...).
//!
//! Which authentication mechanisms a user can use depends on what is stored: see
//! [`PasswdEntry::supports`].
//!
//! As an [`Authenticator`](crate::backend::Authenticator), the file runs its costly checks
//! (the crypt, bcrypt and Argon2 schemes, SCRAM key derivation) on the
//! [`Offload`] given with [`PasswdFile::with_offload`], so that an async server's worker
//! threads are not held for the length of a hash. Without one they run inline
//! ([`Inline`]), which suits a thread-per-connection server. The synchronous
//! [`PasswdFile::verify_password`] always runs on the calling thread.

mod auth;
mod cram;

pub use auth::{mechanisms, sasl_answer};

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use cram::CramContexts;

use crate::offload::{Inline, Offload, OffloadError, OffloadExt};

/// Iteration count used when a SCRAM-SHA-256 secret is derived from a plaintext password.
pub const DERIVED_SCRAM_ITERATIONS: u32 = 4096;

/// Domain-separation prefix for the salt of SCRAM secrets derived from plaintext passwords.
const DERIVED_SCRAM_SALT_CONTEXT: &[u8] = b"pop3-server-core passwd SCRAM-SHA-256 salt\0";

/// A password storage scheme, after resolving aliases and `{CRYPT}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `{PLAIN}`, `{CLEAR}` or `{CLEARTEXT}`: the password itself.
    Plain,
    /// `{SHA512-CRYPT}` (`$6$`).
    Sha512Crypt,
    /// `{SHA256-CRYPT}` (`$5$`).
    Sha256Crypt,
    /// `{ARGON2ID}` (PHC string `$argon2id$...`).
    Argon2id,
    /// `{ARGON2I}` (PHC string `$argon2i$...`).
    Argon2i,
    /// `{BLF-CRYPT}` (bcrypt, `$2y$`/`$2b$`/`$2a$`).
    BlfCrypt,
    /// `{CRAM-MD5}` / `{HMAC-MD5}`: precomputed HMAC-MD5 inner and outer MD5 states.
    CramMd5,
    /// `{SCRAM-SHA-256}`: `iterations,salt,StoredKey,ServerKey`.
    ScramSha256,
}

impl Scheme {
    /// Dovecot's canonical name for the scheme, as written between braces.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Plain => "PLAIN",
            Scheme::Sha512Crypt => "SHA512-CRYPT",
            Scheme::Sha256Crypt => "SHA256-CRYPT",
            Scheme::Argon2id => "ARGON2ID",
            Scheme::Argon2i => "ARGON2I",
            Scheme::BlfCrypt => "BLF-CRYPT",
            Scheme::CramMd5 => "CRAM-MD5",
            Scheme::ScramSha256 => "SCRAM-SHA-256",
        }
    }

    /// Rough relative cost of one verification, used to pick the decoy for unknown users.
    fn cost_rank(self) -> u8 {
        match self {
            Scheme::Plain | Scheme::CramMd5 => 0,
            Scheme::ScramSha256 => 1,
            Scheme::Sha256Crypt | Scheme::Sha512Crypt => 2,
            Scheme::BlfCrypt => 3,
            Scheme::Argon2i | Scheme::Argon2id => 4,
        }
    }

    /// Whether checking a password costs enough CPU to be worth running off an async
    /// runtime's worker threads (everything but a comparison or two MD5 blocks).
    pub fn is_costly(self) -> bool {
        self.cost_rank() > 0
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An authentication method a server may offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthKind {
    /// `USER` / `PASS`.
    UserPass,
    /// SASL `PLAIN`.
    Plain,
    /// SASL `LOGIN`.
    Login,
    /// `APOP` (needs the plaintext password).
    Apop,
    /// SASL `CRAM-MD5` (needs the plaintext or Dovecot's CRAM-MD5 contexts).
    CramMd5,
    /// SASL `SCRAM-SHA-256` (needs the plaintext or a stored SCRAM secret).
    ScramSha256,
}

/// A SCRAM-SHA-256 server-side secret (RFC 5802 / RFC 7677): the SASL module's own
/// credentials type (zeroized on drop, `Debug` redacted). `derive` uses the password as
/// given: like Dovecot, no SASLprep is applied.
pub use pop3_proto::sasl::ScramCredentials as ScramSecret;

/// Whether `password` produces `secret`'s `StoredKey` (constant-time comparison).
fn scram_verify(secret: &ScramSecret, password: &[u8]) -> bool {
    let candidate = ScramSecret::derive(password, &secret.salt, secret.iterations);
    candidate.stored_key.ct_eq(&secret.stored_key).into()
}

/// Why one line of a passwd-file was rejected. Never contains secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineError {
    /// The line has no `:` after the user name.
    #[error("missing password field (expected `user:{{SCHEME}}password`)")]
    MissingPasswordField,
    /// The user name field is empty.
    #[error("empty user name")]
    EmptyUser,
    /// The password field is empty (Dovecot's "no password"); not supported here.
    #[error("empty password field")]
    EmptyPassword,
    /// The `{SCHEME}` prefix names a scheme this store does not know or support.
    #[error("unsupported password scheme {{{0}}}")]
    UnsupportedScheme(String),
    /// An encoding suffix (`.b64`, `.hex`...) that is unknown or not valid for the scheme.
    #[error("encoding suffix .{encoding} is not supported for scheme {scheme}")]
    UnsupportedEncoding {
        /// The scheme.
        scheme: Scheme,
        /// The suffix as written.
        encoding: String,
    },
    /// A `{CRYPT}` (or scheme-less) hash whose `$id$` is not a supported algorithm.
    #[error(
        "password without a supported scheme: Dovecot's default CRYPT is supported only for $6$, $5$ and $2a$/$2b$/$2y$ hashes"
    )]
    UnsupportedCrypt,
    /// The stored secret does not have the scheme's syntax.
    #[error("malformed {scheme} secret: {reason}")]
    InvalidSecret {
        /// The scheme.
        scheme: Scheme,
        /// What is wrong.
        reason: &'static str,
    },
    /// The scheme is known, but its hashing crate was left out of this build: enable the
    /// named feature of `pop3-server-core`.
    #[error(
        "scheme {scheme} needs pop3-server-core's feature `{feature}`, not enabled in this build"
    )]
    SchemeNotBuilt {
        /// The scheme.
        scheme: Scheme,
        /// The cargo feature that provides it.
        feature: &'static str,
    },
    /// The user already appeared on an earlier line.
    #[error("duplicate user (first defined on line {first_line})")]
    DuplicateUser {
        /// 1-based line of the first definition.
        first_line: usize,
    },
}

/// Errors from loading or parsing a passwd-file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PasswdError {
    /// The file could not be read.
    #[error("cannot read passwd-file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not UTF-8.
    #[error("line {line}: not valid UTF-8")]
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: usize,
    },
    /// A line is malformed.
    #[error("line {line}: {error}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        error: LineError,
    },
}

/// What is stored for one user. Every variant zeroizes its secret on drop.
#[derive(Clone)]
enum Stored {
    Plain(Zeroizing<Vec<u8>>),
    /// `$6$`/`$5$` MCF string; the algorithm is in the entry's scheme.
    #[cfg(feature = "sha-crypt")]
    ShaCrypt(Zeroizing<String>),
    /// Argon2 PHC string.
    #[cfg(feature = "argon2")]
    Argon2(Zeroizing<String>),
    /// bcrypt MCF string.
    #[cfg(feature = "bcrypt")]
    Bcrypt(Zeroizing<String>),
    CramMd5(CramContexts),
    Scram(ScramSecret),
}

/// One user's credentials. `Debug` shows the user and scheme only.
#[derive(Clone)]
pub struct PasswdEntry {
    user: String,
    scheme: Scheme,
    stored: Stored,
}

impl fmt::Debug for PasswdEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswdEntry")
            .field("user", &self.user)
            .field("scheme", &self.scheme)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

impl PasswdEntry {
    /// Parses one user's credentials from the user name and the password field of a
    /// passwd-file line (`{SCHEME}secret`, or a bare `crypt()` hash), as a store that keeps
    /// passwords in this format elsewhere (a database column) needs. The same rules as
    /// [`PasswdFile::parse`] apply, line by line.
    ///
    /// ```
    /// use pop3_server_core::passwd::{LineError, PasswdEntry, Scheme};
    ///
    /// let entry = PasswdEntry::parse("alice", "{PLAIN}secret")?;
    /// assert_eq!(entry.scheme(), Scheme::Plain);
    /// assert!(entry.verify_password(b"secret"));
    /// assert_eq!(PasswdEntry::parse("alice", "").unwrap_err(), LineError::EmptyPassword);
    /// # Ok::<(), LineError>(())
    /// ```
    pub fn parse(user: &str, password: &str) -> Result<PasswdEntry, LineError> {
        if user.is_empty() {
            return Err(LineError::EmptyUser);
        }
        if password.is_empty() {
            return Err(LineError::EmptyPassword);
        }
        let (scheme, stored) = parse_password(password)?;
        Ok(PasswdEntry {
            user: user.to_owned(),
            scheme,
            stored,
        })
    }

    /// The user name, exactly as in the file.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The storage scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The plaintext password, only for `{PLAIN}`-family entries.
    pub fn plaintext(&self) -> Option<&[u8]> {
        match &self.stored {
            Stored::Plain(p) => Some(p.as_slice()),
            _ => None,
        }
    }

    /// Whether `kind` can be used with what is stored for this user.
    pub fn supports(&self, kind: AuthKind) -> bool {
        match kind {
            AuthKind::UserPass | AuthKind::Plain | AuthKind::Login => true,
            AuthKind::Apop => self.scheme == Scheme::Plain,
            AuthKind::CramMd5 => matches!(self.scheme, Scheme::Plain | Scheme::CramMd5),
            AuthKind::ScramSha256 => matches!(self.scheme, Scheme::Plain | Scheme::ScramSha256),
        }
    }

    /// Checks a password against the stored secret. Comparisons are constant-time; the
    /// cost is that of the scheme (e.g. a full Argon2 computation).
    pub fn verify_password(&self, password: &[u8]) -> bool {
        match &self.stored {
            Stored::Plain(stored) => {
                // Hash both sides so the comparison does not leak the stored length.
                let a = Sha256::digest(stored.as_slice());
                let b = Sha256::digest(password);
                a.ct_eq(&b).into()
            }
            #[cfg(feature = "sha-crypt")]
            Stored::ShaCrypt(hash) => {
                use sha_crypt::PasswordVerifier as _;
                sha_crypt::ShaCrypt::default()
                    .verify_password(password, hash.as_str())
                    .is_ok()
            }
            #[cfg(feature = "argon2")]
            Stored::Argon2(hash) => {
                use argon2::PasswordVerifier as _;
                argon2::Argon2::default()
                    .verify_password(password, hash.as_str())
                    .is_ok()
            }
            // Truncates at 72 bytes like libc crypt(), which Dovecot uses.
            #[cfg(feature = "bcrypt")]
            Stored::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            Stored::CramMd5(ctx) => CramContexts::from_key(password).ct_eq(ctx),
            Stored::Scram(secret) => scram_verify(secret, password),
        }
    }

    /// Checks an APOP digest (RFC 1939 §7) against this connection's timestamp: possible
    /// only for `{PLAIN}` entries, `false` for any other scheme.
    pub fn verify_apop(
        &self,
        timestamp: &pop3_proto::Timestamp,
        digest: &pop3_proto::ApopDigest,
    ) -> bool {
        self.plaintext()
            .is_some_and(|secret| pop3_proto::sasl::verify_apop(timestamp, secret, digest))
    }

    /// Checks a CRAM-MD5 response digest (`HMAC-MD5(password, challenge)`, RFC 2195).
    /// Possible for `{PLAIN}` and `{CRAM-MD5}` entries; `false` for any other scheme.
    pub fn cram_md5_verify(&self, challenge: &[u8], digest: &[u8; 16]) -> bool {
        match &self.stored {
            Stored::Plain(p) => CramContexts::from_key(p).verify(challenge, digest),
            Stored::CramMd5(ctx) => ctx.verify(challenge, digest),
            _ => false,
        }
    }

    /// The SCRAM-SHA-256 secret: the stored one for `{SCRAM-SHA-256}`, or for `{PLAIN}`
    /// one derived with PBKDF2-HMAC-SHA-256, [`DERIVED_SCRAM_ITERATIONS`] iterations and a
    /// 16-byte salt computed from the user name (so it is the same on every call and
    /// every server run). `None` for other schemes.
    pub fn scram_sha256(&self) -> Option<ScramSecret> {
        match &self.stored {
            Stored::Scram(secret) => Some(secret.clone()),
            Stored::Plain(p) => Some(ScramSecret::derive(
                p,
                &derived_scram_salt(&self.user),
                DERIVED_SCRAM_ITERATIONS,
            )),
            _ => None,
        }
    }
}

/// The salt used for SCRAM secrets derived from a `{PLAIN}` password of `user`.
pub fn derived_scram_salt(user: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(DERIVED_SCRAM_SALT_CONTEXT);
    h.update(user.as_bytes());
    h.finalize()[..16].to_vec()
}

/// A parsed passwd-file. `Debug` lists users and schemes, never secrets.
///
/// Cloning is cheap (entries are shared) and the clone shares the offloader.
#[derive(Debug, Clone)]
pub struct PasswdFile {
    /// Shared with the jobs sent to the offloader, which must own what they use.
    entries: Vec<Arc<PasswdEntry>>,
    index: HashMap<String, usize>,
    /// Entry verified (with the result discarded) for unknown users, so that the time
    /// taken does not reveal whether a user exists.
    decoy: Option<usize>,
    /// Where the [`Authenticator`](crate::backend::Authenticator) runs costly checks.
    offload: Arc<dyn Offload>,
}

impl Default for PasswdFile {
    /// An empty file whose checks run inline.
    fn default() -> Self {
        PasswdFile {
            entries: Vec::new(),
            index: HashMap::new(),
            decoy: None,
            offload: Arc::new(Inline),
        }
    }
}

impl PasswdFile {
    /// Parses passwd-file text. The first malformed line aborts with its 1-based number.
    pub fn parse(text: &str) -> Result<PasswdFile, PasswdError> {
        let mut file = PasswdFile::default();
        let mut first_lines: Vec<usize> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |error| PasswdError::Line {
                line: line_no,
                error,
            };
            let entry = parse_line(line).map_err(err)?;
            if let Some(&idx) = file.index.get(&entry.user) {
                return Err(err(LineError::DuplicateUser {
                    first_line: first_lines[idx],
                }));
            }
            file.index.insert(entry.user.clone(), file.entries.len());
            file.entries.push(Arc::new(entry));
            first_lines.push(line_no);
        }
        file.decoy = pick_decoy(&file.entries);
        Ok(file)
    }

    /// Reads and parses a passwd-file.
    pub fn load(path: impl AsRef<Path>) -> Result<PasswdFile, PasswdError> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| PasswdError::Io {
            path: path.to_path_buf(),
            source,
        })?);
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                let line = 1 + bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count();
                return Err(PasswdError::NotUtf8 { line });
            }
        };
        PasswdFile::parse(text)
    }

    /// Runs the [`Authenticator`](crate::backend::Authenticator)'s costly checks on
    /// `offload` instead of inline: `USER`/`PASS`, SASL `PLAIN` and `LOGIN` against the
    /// crypt, bcrypt, Argon2 and SCRAM schemes (and the decoy check for unknown users, so
    /// they take the same path and time), and the SCRAM secret derived for a `{PLAIN}` user.
    /// `{PLAIN}` comparisons and CRAM-MD5/APOP digests stay inline: they cost microseconds.
    ///
    /// An async server should pass a [`ThreadPool`](crate::offload::ThreadPool); one pool
    /// can be shared by several files (e.g. across reloads).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use pop3_server_core::offload::ThreadPool;
    /// use pop3_server_core::passwd::PasswdFile;
    ///
    /// let pool = Arc::new(ThreadPool::new(2)?);
    /// let users = PasswdFile::parse("alice:{PLAIN}secret\n")?.with_offload(pool);
    /// # let _ = users;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_offload(mut self, offload: Arc<dyn Offload>) -> PasswdFile {
        self.offload = offload;
        self
    }

    /// The offloader used for costly checks ([`Inline`] unless
    /// [`with_offload`](Self::with_offload) set another).
    pub fn offload(&self) -> &Arc<dyn Offload> {
        &self.offload
    }

    /// The entry for `user` (exact, case-sensitive match).
    pub fn get(&self, user: &str) -> Option<&PasswdEntry> {
        self.get_shared(user).map(|e| &**e)
    }

    fn get_shared(&self, user: &str) -> Option<&Arc<PasswdEntry>> {
        self.index.get(user).map(|&i| &self.entries[i])
    }

    /// All entries, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &PasswdEntry> {
        self.entries.iter().map(|e| &**e)
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the file defines no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Checks `user`'s password, on the calling thread (whatever the offloader). For an
    /// unknown user the password is still run through the most common (then costliest)
    /// scheme in the file, result discarded, so the response time does not tell whether the
    /// user exists.
    pub fn verify_password(&self, user: &str, password: &[u8]) -> bool {
        match self.check_target(user) {
            Some((entry, known)) => checked(entry, known, password),
            None => false,
        }
    }

    /// [`verify_password`](Self::verify_password), with costly schemes run on the
    /// offloader. Unknown users take the decoy's path, offloaded or not, like a known user
    /// of that scheme.
    async fn verify_password_offloaded(
        &self,
        user: &str,
        password: &[u8],
    ) -> Result<bool, OffloadError> {
        let Some((entry, known)) = self.check_target(user) else {
            return Ok(false);
        };
        if !entry.scheme.is_costly() {
            return Ok(checked(entry, known, password));
        }
        let entry = Arc::clone(entry);
        // The job must own its input; this copy is wiped when the job is dropped (after
        // running, or unrun if the caller went away).
        let password = Zeroizing::new(password.to_vec());
        self.offload
            .run(move || checked(&entry, known, &password))
            .await
    }

    /// The SCRAM-SHA-256 secret for `user` (see [`PasswdEntry::scram_sha256`]), the
    /// PBKDF2 derivation for a `{PLAIN}` user run on the offloader.
    async fn scram_sha256_offloaded(
        &self,
        user: &str,
    ) -> Result<Option<ScramSecret>, OffloadError> {
        match self.get_shared(user) {
            Some(entry) if entry.scheme == Scheme::Plain => {
                let entry = Arc::clone(entry);
                self.offload.run(move || entry.scram_sha256()).await
            }
            Some(entry) => Ok(entry.scram_sha256()),
            None => Ok(None),
        }
    }

    /// The entry whose secret a password for `user` is checked against, and whether it is
    /// `user`'s own (`false`: the decoy, for an unknown user). `None` for an empty file.
    fn check_target(&self, user: &str) -> Option<(&Arc<PasswdEntry>, bool)> {
        match self.get_shared(user) {
            Some(entry) => Some((entry, true)),
            None => self.decoy.map(|i| (&self.entries[i], false)),
        }
    }
}

/// Checks `password` against `entry`; for the decoy (`known == false`) the result is
/// computed the same way, then discarded.
fn checked(entry: &PasswdEntry, known: bool, password: &[u8]) -> bool {
    std::hint::black_box(entry.verify_password(password)) && known
}

/// Picks the first entry of the most frequent scheme, ties broken towards the costlier
/// scheme, then towards the earlier line (so the choice does not vary between runs).
fn pick_decoy(entries: &[Arc<PasswdEntry>]) -> Option<usize> {
    let mut counts: HashMap<Scheme, usize> = HashMap::new();
    for e in entries {
        *counts.entry(e.scheme).or_default() += 1;
    }
    let key = |e: &Arc<PasswdEntry>| (counts[&e.scheme], e.scheme.cost_rank());
    let mut best: Option<usize> = None;
    for (i, e) in entries.iter().enumerate() {
        if best.is_none_or(|b| key(e) > key(&entries[b])) {
            best = Some(i);
        }
    }
    best
}

fn parse_line(line: &str) -> Result<PasswdEntry, LineError> {
    let (user, rest) = line
        .split_once(':')
        .ok_or(LineError::MissingPasswordField)?;
    let password = rest.split(':').next().unwrap_or("");
    PasswdEntry::parse(user, password)
}

/// Encodings Dovecot allows as a `.suffix` on the scheme name.
#[derive(Clone, Copy)]
enum Encoding {
    Base64,
    Hex,
}

fn parse_password(field: &str) -> Result<(Scheme, Stored), LineError> {
    let Some((name, secret)) = field
        .strip_prefix('{')
        .and_then(|rest| rest.split_once('}'))
    else {
        // No scheme: Dovecot's default for passwd-file, CRYPT.
        return parse_crypt(field);
    };
    let (base, encoding) = match name.split_once('.') {
        Some((base, enc)) => (base, Some(enc)),
        None => (name, None),
    };
    let base_upper = base.to_ascii_uppercase();
    let scheme = match base_upper.as_str() {
        "PLAIN" | "CLEAR" | "CLEARTEXT" => Scheme::Plain,
        "SHA512-CRYPT" => Scheme::Sha512Crypt,
        "SHA256-CRYPT" => Scheme::Sha256Crypt,
        "ARGON2ID" => Scheme::Argon2id,
        "ARGON2I" => Scheme::Argon2i,
        "BLF-CRYPT" => Scheme::BlfCrypt,
        "CRAM-MD5" | "HMAC-MD5" => Scheme::CramMd5,
        "SCRAM-SHA-256" => Scheme::ScramSha256,
        "CRYPT" if encoding.is_none() => return parse_crypt(secret),
        _ => return Err(LineError::UnsupportedScheme(name.to_owned())),
    };
    let encoding = match encoding {
        None => None,
        Some(enc) => {
            let parsed = match enc.to_ascii_lowercase().as_str() {
                "b64" | "base64" => Some(Encoding::Base64),
                "hex" => Some(Encoding::Hex),
                _ => None,
            };
            // Only schemes whose value is raw bytes take an encoding.
            match parsed {
                Some(e) if matches!(scheme, Scheme::Plain | Scheme::CramMd5) => Some(e),
                _ => {
                    return Err(LineError::UnsupportedEncoding {
                        scheme,
                        encoding: enc.to_owned(),
                    });
                }
            }
        }
    };
    let invalid = |reason| LineError::InvalidSecret { scheme, reason };
    let decode = |encoding: Encoding| -> Result<Zeroizing<Vec<u8>>, LineError> {
        match encoding {
            Encoding::Base64 => BASE64
                .decode(secret)
                .map(Zeroizing::new)
                .map_err(|_| invalid("bad base64")),
            Encoding::Hex => decode_hex(secret).ok_or(invalid("bad hex")),
        }
    };
    let stored = match scheme {
        Scheme::Plain => {
            let plain = match encoding {
                None => Zeroizing::new(secret.as_bytes().to_vec()),
                Some(e) => decode(e)?,
            };
            // An empty stored password would let anyone in with an empty password.
            if plain.is_empty() {
                return Err(invalid("empty password"));
            }
            Stored::Plain(plain)
        }
        Scheme::CramMd5 => {
            let raw = decode(encoding.unwrap_or(Encoding::Hex))?;
            let bytes: &[u8; CramContexts::LEN] = raw
                .as_slice()
                .try_into()
                .map_err(|_| invalid("expected 32 bytes of MD5 state"))?;
            Stored::CramMd5(CramContexts::from_bytes(bytes))
        }
        Scheme::Sha512Crypt | Scheme::Sha256Crypt | Scheme::BlfCrypt => {
            let (found, stored) = match parse_crypt(secret) {
                Err(LineError::UnsupportedCrypt) => return Err(invalid("not a crypt() hash")),
                other => other?,
            };
            if found != scheme {
                return Err(invalid("hash is of another algorithm"));
            }
            stored
        }
        #[cfg(feature = "argon2")]
        Scheme::Argon2id | Scheme::Argon2i => Stored::Argon2(parse_argon2(scheme, secret)?),
        #[cfg(not(feature = "argon2"))]
        Scheme::Argon2id | Scheme::Argon2i => return Err(not_built(scheme)),
        Scheme::ScramSha256 => Stored::Scram(parse_scram(secret)?),
    };
    Ok((scheme, stored))
}

/// Recognises a libc `crypt()` hash by its `$id$` prefix and checks its syntax.
fn parse_crypt(hash: &str) -> Result<(Scheme, Stored), LineError> {
    let scheme = if hash.starts_with("$6$") {
        Scheme::Sha512Crypt
    } else if hash.starts_with("$5$") {
        Scheme::Sha256Crypt
    } else if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        Scheme::BlfCrypt
    } else {
        return Err(LineError::UnsupportedCrypt);
    };
    let invalid = |reason| LineError::InvalidSecret { scheme, reason };
    let stored = Zeroizing::new(hash.to_owned());
    // Unused when the build has neither bcrypt nor sha-crypt.
    let _ = (&invalid, &stored);
    match scheme {
        #[cfg(feature = "bcrypt")]
        Scheme::BlfCrypt => {
            hash.parse::<bcrypt::HashParts>()
                .map_err(|_| invalid("not a bcrypt hash"))?;
            Ok((scheme, Stored::Bcrypt(stored)))
        }
        #[cfg(feature = "sha-crypt")]
        Scheme::Sha512Crypt | Scheme::Sha256Crypt => {
            check_sha_crypt(hash).ok_or(invalid("not a SHA-crypt hash"))?;
            Ok((scheme, Stored::ShaCrypt(stored)))
        }
        _ => Err(not_built(scheme)),
    }
}

/// The error for a scheme whose hashing crate this build left out.
fn not_built(scheme: Scheme) -> LineError {
    let feature = match scheme {
        Scheme::BlfCrypt => "bcrypt",
        Scheme::Argon2i | Scheme::Argon2id => "argon2",
        _ => "sha-crypt",
    };
    LineError::SchemeNotBuilt { scheme, feature }
}

/// Syntax check of `$5$`/`$6$[rounds=N$]salt$hash`, mirroring what sha-crypt will accept.
#[cfg(feature = "sha-crypt")]
fn check_sha_crypt(hash: &str) -> Option<()> {
    let parsed = sha_crypt::PasswordHashRef::new(hash).ok()?;
    let expected_len = match parsed.id() {
        "5" => 43,
        "6" => 86,
        _ => return None,
    };
    let fields: Vec<&str> = parsed.fields().map(|f| f.as_str()).collect();
    let (salt, digest) = match fields.as_slice() {
        [salt, digest] => (*salt, *digest),
        [params, salt, digest] => {
            params.parse::<sha_crypt::Params>().ok()?;
            (*salt, *digest)
        }
        _ => return None,
    };
    (salt.len() <= 16 && digest.len() == expected_len).then_some(())
}

#[cfg(feature = "argon2")]
fn parse_argon2(scheme: Scheme, hash: &str) -> Result<Zeroizing<String>, LineError> {
    let invalid = |reason| LineError::InvalidSecret { scheme, reason };
    let parsed = argon2::PasswordHash::new(hash).map_err(|_| invalid("not a PHC string"))?;
    let ident = match scheme {
        Scheme::Argon2i => argon2::ARGON2I_IDENT,
        _ => argon2::ARGON2ID_IDENT,
    };
    if parsed.algorithm != ident {
        return Err(invalid("hash is of another algorithm"));
    }
    argon2::Params::try_from(&parsed).map_err(|_| invalid("bad Argon2 parameters"))?;
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(invalid("missing salt or hash"));
    }
    Ok(Zeroizing::new(hash.to_owned()))
}

/// Dovecot's SCRAM format: `iterations,base64(salt),base64(StoredKey),base64(ServerKey)`.
fn parse_scram(secret: &str) -> Result<ScramSecret, LineError> {
    let invalid = |reason| LineError::InvalidSecret {
        scheme: Scheme::ScramSha256,
        reason,
    };
    let mut parts = secret.split(',');
    let (Some(iter), Some(salt), Some(stored), Some(server), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(invalid("expected iterations,salt,StoredKey,ServerKey"));
    };
    let iterations: u32 = iter.parse().map_err(|_| invalid("bad iteration count"))?;
    if iterations == 0 {
        return Err(invalid("bad iteration count"));
    }
    let salt = BASE64
        .decode(salt)
        .map_err(|_| invalid("bad salt base64"))?;
    let key = |b64: &str| -> Result<[u8; 32], LineError> {
        let raw = Zeroizing::new(BASE64.decode(b64).map_err(|_| invalid("bad key base64"))?);
        raw.as_slice()
            .try_into()
            .map_err(|_| invalid("keys must be 32 bytes"))
    };
    Ok(ScramSecret {
        salt,
        iterations,
        stored_key: key(stored)?,
        server_key: key(server)?,
    })
}

fn decode_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for pair in s.as_bytes().chunks_exact(2) {
        out.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "sha-crypt")]
    #[test]
    fn decoy_is_most_common_scheme_then_costliest_then_first() {
        let sha256 = "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF4fY5Hp5";
        let sha512 = "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1";
        let text = format!("a:{{PLAIN}}x\nb:{sha256}\nc:{sha512}\nd:{sha512}\ne:{{PLAIN}}y\n");
        let file = PasswdFile::parse(&text).unwrap();
        // PLAIN and SHA512-CRYPT both have two users; SHA512-CRYPT costs more.
        assert_eq!(file.decoy, Some(2));
        let file = PasswdFile::parse("a:{PLAIN}x\nb:{PLAIN}y\n").unwrap();
        assert_eq!(file.decoy, Some(0));
        assert_eq!(PasswdFile::parse("# empty\n").unwrap().decoy, None);
    }

    /// A build without a scheme's hashing crate refuses a file that uses it, at load, naming
    /// the feature (rather than letting the user in, or failing every login later).
    #[cfg(not(any(feature = "sha-crypt", feature = "argon2", feature = "bcrypt")))]
    #[test]
    fn a_scheme_left_out_of_the_build_is_refused_naming_its_feature() {
        let cases = [
            (
                "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
                "sha-crypt",
            ),
            (
                "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF4fY5Hp5",
                "sha-crypt",
            ),
            (
                "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG",
                "argon2",
            ),
            (
                "{BLF-CRYPT}$2y$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW",
                "bcrypt",
            ),
        ];
        for (secret, feature) in cases {
            let err = PasswdFile::parse(&format!("alice:{secret}\n")).unwrap_err();
            let PasswdError::Line {
                line: 1,
                error: LineError::SchemeNotBuilt { feature: f, .. },
                ..
            } = &err
            else {
                panic!("{secret}: {err:?}");
            };
            assert_eq!(*f, feature);
            assert!(err.to_string().contains(feature), "{err}");
        }
        // What needs no extra crate still loads.
        assert!(PasswdFile::parse("alice:{PLAIN}secret\n").is_ok());
    }
}
