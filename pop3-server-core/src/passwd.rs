//! Dovecot-style passwd-file authentication (in progress).
