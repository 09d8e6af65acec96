//! Test tokens: HS256, signed with a suite's shared secret, for a subject
//! and roles, valid from now.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use service_guard::{Role, TokenSigner};

/// Seconds since the epoch, by the wall clock (what the servers check
/// tokens against).
///
/// # Panics
/// When the clock is before 1970.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after the epoch")
        .as_secs()
}

/// A token for `subject` with `roles`, signed with HS256 and `secret`,
/// issued now and valid for `ttl`.
///
/// # Panics
/// When `secret` is too short for HS256 or the claims do not sign.
pub fn hs256(secret: &str, subject: &str, roles: &[Role], ttl: Duration) -> String {
    TokenSigner::hs256(secret)
        .expect("an HS256 secret")
        .mint(subject, roles, ttl, unix_now())
        .expect("token")
}
