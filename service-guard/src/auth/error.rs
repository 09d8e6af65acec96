//! Why a request was not authenticated or not authorized, and how to say it over HTTP.

use http::StatusCode;

/// The realm named in `WWW-Authenticate` challenges.
pub const WWW_AUTHENTICATE_REALM: &str = "api";

/// An authentication (401) or authorization (403) failure.
///
/// Messages are safe to show to the client: they never contain key material or
/// the token itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` credentials were sent.
    #[error("missing bearer token")]
    Missing,
    /// The header or the token is not a well-formed bearer JWT.
    #[error("malformed bearer token")]
    Malformed,
    /// The signature does not verify with the configured key.
    #[error("token signature is invalid")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is missing or not the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` is missing or does not name the configured audience.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// The header's `alg` is not the pinned algorithm (including `none`).
    #[error("token algorithm is not accepted")]
    WrongAlgorithm,
    /// Any other reason the token is not acceptable.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// Authenticated, but none of the required roles.
    #[error("insufficient role for this operation")]
    Forbidden,
}

impl AuthError {
    /// `403 Forbidden` for [`AuthError::Forbidden`], `401 Unauthorized` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Forbidden => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A stable snake_case code for problem+json bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing_token",
            AuthError::Malformed => "malformed_token",
            AuthError::BadSignature => "invalid_signature",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::WrongIssuer => "invalid_issuer",
            AuthError::WrongAudience => "invalid_audience",
            AuthError::WrongAlgorithm => "invalid_algorithm",
            AuthError::Invalid(_) => "invalid_token",
            AuthError::Forbidden => "forbidden",
        }
    }

    /// The RFC 6750 `WWW-Authenticate` value to send with a 401, `None` for a 403.
    ///
    /// A request without credentials gets a bare challenge (RFC 6750 section 3.1);
    /// a rejected token gets `error="invalid_token"` with a short description.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            AuthError::Forbidden => None,
            AuthError::Missing => Some(format!("Bearer realm=\"{WWW_AUTHENTICATE_REALM}\"")),
            other => Some(format!(
                "Bearer realm=\"{WWW_AUTHENTICATE_REALM}\", error=\"invalid_token\", error_description=\"{}\"",
                other.challenge_description()
            )),
        }
    }

    /// A description without quotes or backslashes, so it fits in a quoted-string.
    fn challenge_description(&self) -> String {
        self.to_string()
            .chars()
            .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_is_403_without_challenge() {
        assert_eq!(AuthError::Forbidden.status(), StatusCode::FORBIDDEN);
        assert_eq!(AuthError::Forbidden.www_authenticate(), None);
    }

    #[test]
    fn missing_token_gets_a_bare_challenge() {
        assert_eq!(AuthError::Missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            AuthError::Missing.www_authenticate().as_deref(),
            Some("Bearer realm=\"api\"")
        );
    }

    #[test]
    fn rejected_token_challenge_is_a_valid_quoted_string() {
        let value = AuthError::Invalid("bad \"kid\"\n".into())
            .www_authenticate()
            .expect("401 has a challenge");
        assert!(value.starts_with("Bearer realm=\"api\", error=\"invalid_token\""));
        assert!(http::HeaderValue::from_str(&value).is_ok());
        assert_eq!(value.matches('"').count(), 6);
    }
}
