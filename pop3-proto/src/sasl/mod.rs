//! SASL mechanisms as step exchanges (in progress).
