//! # pop3-server-core
//!
//! Server policy on top of `pop3-proto`: the maildrop snapshot, deletion marks applied only on
//! QUIT, locking, authentication policy and limits, and the storage and authentication
//! backends (Maildir, in-memory, Dovecot-style passwd-file) that embedders can replace.

#![forbid(unsafe_code)]

pub mod maildir;
pub mod passwd;
