//! `gateway token`: mint a development token with the configured key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use service_guard::{Algorithm, Role, TokenSigner};

use crate::config::{Config, TokenArgs};

/// A token could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No signing key: HS256 needs the secret, RS256/ES256 a private key file.
    #[error("no signing key: set JWT_SECRET (HS256) or --private-key-file (RS256/ES256)")]
    NoKey,
    /// A role name is not one of `customer`, `admin`, `service`.
    #[error(transparent)]
    Role(#[from] service_guard::UnknownRole),
    /// The key cannot be used.
    #[error(transparent)]
    Key(#[from] service_guard::ConfigError),
    /// Signing failed or the claims are out of range.
    #[error(transparent)]
    Sign(#[from] service_guard::SignError),
}

/// Mints the token `args` asks for, with the issuer and audience of `config`,
/// valid from now.
///
/// # Errors
/// [`TokenError`] when there is no usable key, a role is unknown, or the ttl is
/// out of range.
pub fn mint(config: &Config, args: &TokenArgs) -> Result<String, TokenError> {
    let roles = args
        .roles
        .iter()
        .map(|r| r.parse::<Role>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut signer = match (
        config.auth.algorithm(),
        &config.auth.jwt_secret,
        &args.private_key_file,
    ) {
        (Algorithm::HS256, Some(secret), _) => TokenSigner::hs256(secret)?,
        (alg @ (Algorithm::RS256 | Algorithm::ES256), _, Some(path)) => {
            TokenSigner::from_private_pem_file(alg, path)?
        }
        _ => return Err(TokenError::NoKey),
    };
    if let Some(iss) = &config.auth.jwt_issuer {
        signer = signer.with_issuer(iss);
    }
    if let Some(aud) = &config.auth.jwt_audience {
        signer = signer.with_audience(aud);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(signer.mint(&args.sub, &roles, Duration::from_secs(args.ttl_secs), now)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_guard::{AuthConfig, Authenticator};

    fn args(roles: &[&str]) -> TokenArgs {
        TokenArgs {
            sub: "user-1".into(),
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            ttl_secs: 60,
            private_key_file: None,
        }
    }

    /// A minted token verifies with the same configuration and carries the roles.
    #[test]
    fn minted_token_verifies() {
        let mut config = Config::embedded();
        config.auth.jwt_secret = Some(service_guard::random_hs256_secret());
        config.auth.jwt_issuer = Some("shop".into());
        let token = mint(&config, &args(&["customer"])).unwrap();
        let auth = Authenticator::new(&config.auth.config().unwrap().unwrap()).unwrap();
        let principal = auth.verify_token(&token).unwrap();
        assert_eq!(principal.subject, "user-1");
        assert_eq!(principal.roles, vec![Role::Customer]);
        let other = AuthConfig::hs256(service_guard::random_hs256_secret());
        assert!(Authenticator::new(&other)
            .unwrap()
            .verify_token(&token)
            .is_err());
    }

    /// Without a key, or with an unknown role, nothing is minted.
    #[test]
    fn refuses_without_key_or_with_unknown_role() {
        let config = Config::embedded();
        assert!(matches!(
            mint(&config, &args(&["customer"])),
            Err(TokenError::NoKey)
        ));
        let mut config = Config::embedded();
        config.auth.jwt_secret = Some(service_guard::random_hs256_secret());
        assert!(matches!(
            mint(&config, &args(&["root"])),
            Err(TokenError::Role(_))
        ));
    }
}
