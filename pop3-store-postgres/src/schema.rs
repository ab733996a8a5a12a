//! The database schema, as versioned migrations embedded in the crate.
//!
//! [`PgStore::migrate`](crate::PgStore::migrate) applies the migrations the database has not
//! seen, in order, in one transaction that first takes a transaction-scoped advisory lock
//! (`pg_advisory_xact_lock`): frontends that start at once wait for each other, and the
//! second finds the work done. Each applied version is recorded in
//! `schema_migrations(version, applied_at)`. A database whose recorded version is newer than
//! this build knows is refused ([`PgError::SchemaTooNew`](crate::PgError::SchemaTooNew)):
//! an old frontend must not run against a schema it does not understand.
//!
//! # Tables (version 1)
//!
//! - `users (name text primary key, password text, enabled boolean)`: the password in any
//!   scheme of a Dovecot passwd-file (`{SHA512-CRYPT}$6$...`, `{PLAIN}...`); see
//!   [`pop3_server_core::passwd`].
//! - `messages (id bigserial primary key, user_name, uidl, size_crlf, delivered_at,
//!   blob_key)`: one row per message; `(user_name, uidl)` is unique; `size_crlf` is the exact
//!   size POP3 reports (bodies are stored with CRLF line ends); `blob_key` names the object
//!   holding the body when bodies are in S3, and is null when they are in `bodies`.
//! - `bodies (message_id, seq, data bytea)`: a body in chunks, `seq` from 0; removed with
//!   their message (`ON DELETE CASCADE`); stored `EXTERNAL` (out of line, not compressed), so
//!   that reading a body costs the server no decompression.
//! - `leases (user_name primary key, holder, expires_at)`: exclusive-mode sessions.

/// The advisory-lock key that serialises migrations ("pop3migr").
pub(crate) const MIGRATION_LOCK: i64 = 0x706f_7033_6d69_6772;

/// The migrations, in order: `(version, SQL)`. Never edit one that has shipped: add another.
pub(crate) const MIGRATIONS: &[(i32, &str)] = &[(
    1,
    r#"
CREATE TABLE users (
    name text PRIMARY KEY,
    password text NOT NULL,
    enabled boolean NOT NULL DEFAULT true
);

CREATE TABLE messages (
    id bigserial PRIMARY KEY,
    user_name text NOT NULL REFERENCES users (name) ON DELETE CASCADE ON UPDATE CASCADE,
    uidl text NOT NULL,
    size_crlf bigint NOT NULL CHECK (size_crlf >= 0),
    delivered_at timestamptz NOT NULL DEFAULT now(),
    blob_key text,
    CONSTRAINT messages_user_uidl UNIQUE (user_name, uidl)
);
CREATE INDEX messages_user_id ON messages (user_name, id);
CREATE UNIQUE INDEX messages_blob_key ON messages (blob_key) WHERE blob_key IS NOT NULL;

CREATE TABLE bodies (
    message_id bigint NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    seq integer NOT NULL CHECK (seq >= 0),
    data bytea NOT NULL,
    PRIMARY KEY (message_id, seq)
);
-- Out of line and uncompressed: a RETR then costs no decompression on the server (mail
-- compresses well, but reading it is the hot path; disk is the cheaper resource).
ALTER TABLE bodies ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE leases (
    user_name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
"#,
)];

/// The newest schema version this build knows.
pub(crate) fn latest() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}
