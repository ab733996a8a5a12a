//! The store's configuration: [`PgConfig`], a serde struct that a server embeds in its own
//! configuration file (the `pop3` CLI puts it under `[store]`).
//!
//! ```
//! use std::time::Duration;
//! use pop3_store_postgres::{Bodies, PgConfig};
//!
//! let config: PgConfig = toml::from_str(r#"
//!     url = "postgresql://pop3:secret@db.example.com/mail"
//!     pool_size = 32
//!     lease = "60s"
//!
//!     [bodies]
//!     kind = "s3"
//!     endpoint = "https://s3.example.com"
//!     bucket = "mail-bodies"
//!     region = "eu-west-1"
//!     access_key = "AKIA0000"
//!     secret_key = "very secret"
//! "#)?;
//! assert_eq!(config.lease, Duration::from_secs(60));
//! assert!(matches!(config.bodies, Bodies::S3 { .. }));
//! // Debug never shows a secret: not the database password, not the S3 secret key.
//! let shown = format!("{config:?}");
//! assert!(!shown.contains(":secret@") && !shown.contains("very secret"), "{shown}");
//! assert!(shown.contains("pop3:<redacted>@db.example.com"), "{shown}");
//! # Ok::<(), toml::de::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default number of database connections in the pool.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// The default length of an exclusive-mode lease.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// The default size of a body chunk: one row of the `bodies` table, one read of a stream.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// The default [`PgConfig::read_ahead`]: 64 MiB, the next bodies of about 128 sessions
/// downloading at once.
pub const DEFAULT_READ_AHEAD: usize = 64 * 1024 * 1024;

/// How the store reaches PostgreSQL and where it keeps message bodies.
///
/// `Debug` (and [`redacted`](Self::redacted), for printing a configuration back) hides the
/// password of the database URL and the S3 secret key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PgConfig {
    /// The database, as a libpq connection URL (`postgresql://user:password@host:5432/db`)
    /// or key-value string (`host=/run/postgresql dbname=mail`). Connections are not
    /// encrypted: reach the database over a Unix socket, the loopback or a private network.
    pub url: String,
    /// The most connections the pool opens (default [`DEFAULT_POOL_SIZE`]). A POP3 session
    /// holds one only for the length of one operation, so this bounds concurrent database
    /// work, not sessions.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Where message bodies are (default: PostgreSQL).
    #[serde(default)]
    pub bodies: Bodies,
    /// How long an exclusive-mode lease lasts without renewal (default 60 s; renewed every
    /// third of it). A frontend that dies leaves its leases to expire after this long. In
    /// a configuration file: seconds (`60`), or a string with a unit (`"60s"`, `"1500ms"`,
    /// `"2m"`).
    #[serde(default = "default_lease", with = "duration")]
    pub lease: Duration,
    /// The size of a body chunk, in octets (default [`DEFAULT_CHUNK_SIZE`]): what one row of
    /// the `bodies` table holds. It applies to mail stored from then on; mail stored under
    /// another size reads the same, and a session still holds about 512 KiB of it at most.
    #[serde(default = "default_chunk_size")]
    pub chunk_size: usize,
    /// Octets of bodies read ahead for all the sessions of this store together (default
    /// [`DEFAULT_READ_AHEAD`]; `0` turns read-ahead off). A client retrieving its messages
    /// in order gets the next whole bodies, up to 512 KiB, in the query of the one it asked
    /// for, out of this allowance; a session that stops there keeps its share until it reads
    /// on or ends, so the allowance, not the number of sessions, bounds that memory. When it
    /// is spent, sessions read one message per query, as without read-ahead.
    #[serde(default = "default_read_ahead")]
    pub read_ahead: usize,
}

fn default_pool_size() -> usize {
    DEFAULT_POOL_SIZE
}

fn default_lease() -> Duration {
    DEFAULT_LEASE
}

fn default_chunk_size() -> usize {
    DEFAULT_CHUNK_SIZE
}

fn default_read_ahead() -> usize {
    DEFAULT_READ_AHEAD
}

impl PgConfig {
    /// A configuration with every default and this database URL.
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig {
            url: url.into(),
            pool_size: DEFAULT_POOL_SIZE,
            bodies: Bodies::Postgres,
            lease: DEFAULT_LEASE,
            chunk_size: DEFAULT_CHUNK_SIZE,
            read_ahead: DEFAULT_READ_AHEAD,
        }
    }

    /// Sets where bodies are kept.
    pub fn with_bodies(mut self, bodies: Bodies) -> PgConfig {
        self.bodies = bodies;
        self
    }

    /// Sets the lease length of exclusive sessions.
    pub fn with_lease(mut self, lease: Duration) -> PgConfig {
        self.lease = lease;
        self
    }

    /// Sets the pool size.
    pub fn with_pool_size(mut self, pool_size: usize) -> PgConfig {
        self.pool_size = pool_size;
        self
    }

    /// Sets the body chunk size.
    pub fn with_chunk_size(mut self, chunk_size: usize) -> PgConfig {
        self.chunk_size = chunk_size;
        self
    }

    /// Sets the read-ahead allowance of all sessions together, in octets (`0`: none).
    pub fn with_read_ahead(mut self, octets: usize) -> PgConfig {
        self.read_ahead = octets;
        self
    }

    /// This configuration with its secrets replaced by `<redacted>`: for printing it back
    /// (`pop3 config`), never for use.
    pub fn redacted(&self) -> PgConfig {
        let mut copy = self.clone();
        copy.url = redact_url(&self.url);
        if let Bodies::S3 { secret_key, .. } = &mut copy.bodies {
            *secret_key = REDACTED.to_string();
        }
        copy
    }

    /// Checks the values that can be wrong whatever the database says.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.pool_size == 0 {
            return Err("pool_size must be at least 1".into());
        }
        if self.chunk_size < 1024 || self.chunk_size > 64 * 1024 * 1024 {
            return Err("chunk_size must be between 1 KiB and 64 MiB".into());
        }
        if self.lease < Duration::from_millis(300) {
            return Err("lease must be at least 300 ms".into());
        }
        if let Bodies::S3 { bucket, .. } = &self.bodies
            && bucket.is_empty()
        {
            return Err("bodies: the S3 bucket is empty".into());
        }
        Ok(())
    }
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("pool_size", &self.pool_size)
            .field("bodies", &self.bodies)
            .field("lease", &self.lease)
            .field("chunk_size", &self.chunk_size)
            .field("read_ahead", &self.read_ahead)
            .finish()
    }
}

/// Where message bodies are kept.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
#[non_exhaustive]
pub enum Bodies {
    /// In PostgreSQL, table `bodies`, in chunks of [`PgConfig::chunk_size`] octets. The
    /// default: one system to run, back up and keep consistent.
    #[default]
    Postgres,
    /// In an S3-compatible object store (AWS S3, MinIO, Ceph, Garage...), one object per
    /// message under `bodies/`; PostgreSQL keeps the metadata and the object's key. Needs
    /// the crate's `s3` feature (on by default).
    S3 {
        /// The endpoint URL (`https://s3.eu-west-1.amazonaws.com`, `http://127.0.0.1:9000`).
        endpoint: String,
        /// The bucket, which must exist.
        bucket: String,
        /// The region (`us-east-1` for most S3-compatible servers).
        #[serde(default = "default_region")]
        region: String,
        /// The access key id.
        access_key: String,
        /// The secret access key.
        secret_key: String,
        /// Whether a plain `http://` endpoint is allowed (default: no).
        #[serde(default)]
        allow_http: bool,
    },
}

fn default_region() -> String {
    "us-east-1".to_string()
}

impl fmt::Debug for Bodies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bodies::Postgres => f.write_str("Postgres"),
            Bodies::S3 {
                endpoint,
                bucket,
                region,
                access_key,
                secret_key: _,
                allow_http,
            } => f
                .debug_struct("S3")
                .field("endpoint", endpoint)
                .field("bucket", bucket)
                .field("region", region)
                .field("access_key", access_key)
                .field("secret_key", &format_args!("{REDACTED}"))
                .field("allow_http", allow_http)
                .finish(),
        }
    }
}

const REDACTED: &str = "<redacted>";

/// `url` with its password hidden: the `user:password@` part of a URL, or the `password=`
/// pair of a key-value string.
fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:{REDACTED}{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &rest[at..]
                );
            }
        }
        // A password may also come as a query parameter.
        return redact_pairs(url, '&');
    }
    redact_pairs(url, ' ')
}

/// Hides the value of every `password=` pair of `s`, pairs separated by `sep`.
fn redact_pairs(s: &str, sep: char) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("password=") {
        let at_pair_start = i == 0 || rest[..i].ends_with([sep, '?', ' ']);
        out.push_str(&rest[..i + "password=".len()]);
        rest = &rest[i + "password=".len()..];
        if at_pair_start {
            let end = if let Some(quoted) = rest.strip_prefix('\'') {
                quoted.find('\'').map_or(rest.len(), |e| e + 2)
            } else {
                rest.find([sep, ' ']).unwrap_or(rest.len())
            };
            out.push_str(REDACTED);
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// Durations in a configuration file: a number of seconds, or a string with a unit.
mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer, de};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        if d.subsec_nanos() == 0 {
            s.serialize_str(&format!("{}s", d.as_secs()))
        } else {
            s.serialize_str(&format!("{}ms", d.as_millis()))
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("seconds, or a duration such as \"60s\", \"1500ms\" or \"2m\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(Visitor)
    }

    fn parse(s: &str) -> Option<Duration> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = s.split_at(split);
        let n: u64 = number.parse().ok()?;
        match unit.trim() {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        let cases = [
            (
                "postgresql://pop3:s3cret@db/mail",
                "postgresql://pop3:<redacted>@db/mail",
            ),
            ("postgres://db/mail", "postgres://db/mail"),
            (
                "postgresql://db/mail?user=a&password=s3cret&sslmode=disable",
                "postgresql://db/mail?user=a&password=<redacted>&sslmode=disable",
            ),
            (
                "host=db user=pop3 password=s3cret dbname=mail",
                "host=db user=pop3 password=<redacted> dbname=mail",
            ),
            (
                "host=db password='s3 cret' dbname=mail",
                "host=db password=<redacted> dbname=mail",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_url(url), shown);
        }
    }

    #[test]
    fn defaults_and_durations() {
        let c: PgConfig = toml::from_str("url = \"postgres://x/y\"").unwrap();
        assert_eq!(c, PgConfig::new("postgres://x/y"));
        for (text, d) in [
            ("2", Duration::from_secs(2)),
            ("1.5", Duration::from_millis(1500)),
            ("\"1500ms\"", Duration::from_millis(1500)),
            ("\"2m\"", Duration::from_secs(120)),
        ] {
            let c: PgConfig = toml::from_str(&format!("url = \"u\"\nlease = {text}")).unwrap();
            assert_eq!(c.lease, d, "{text}");
        }
        assert!(toml::from_str::<PgConfig>("url = \"u\"\nlease = \"2 weeks\"").is_err());
        assert!(toml::from_str::<PgConfig>("url = \"u\"\nbogus = 1").is_err());
        let back = toml::to_string(&PgConfig::new("u").with_lease(Duration::from_secs(2)));
        assert!(back.unwrap().contains("lease = \"2s\""));
    }
}
