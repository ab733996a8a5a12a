//! Shared by the property tests.

use proptest::prelude::ProptestConfig;

/// `cases` cases (or `PROPTEST_CASES` from the environment, for a longer hunt), without
/// writing regression files into the source tree.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}
