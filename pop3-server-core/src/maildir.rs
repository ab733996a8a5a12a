//! Maildir storage (in progress).
