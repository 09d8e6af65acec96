//! Roles, the authenticated principal, and the authorization check.

use std::fmt;
use std::str::FromStr;

use super::AuthError;

/// A role carried in a token's `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A shopper: may place and read their own orders.
    Customer,
    /// An operator: may change stock and do anything a service may.
    Admin,
    /// Another service of the system (for example orders calling inventory).
    Service,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 3] = [Role::Customer, Role::Admin, Role::Service];

    /// The claim spelling: `"customer"`, `"admin"` or `"service"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of `customer`, `admin`, `service`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?} (expected customer, admin or service)")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "customer" => Ok(Role::Customer),
            "admin" => Ok(Role::Admin),
            "service" => Ok(Role::Service),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// Subject of the principal used when authentication is disabled.
pub const OPEN_SUBJECT: &str = "anonymous";

/// Who is calling: the token's `sub` and the roles this service recognises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's `sub` claim (a user id or a service name).
    pub subject: String,
    /// Recognised roles from the `roles` claim; unknown role names are dropped.
    pub roles: Vec<Role>,
}

impl Principal {
    /// The principal of a server running without a key: anonymous, with every role.
    pub fn open() -> Self {
        Principal {
            subject: OPEN_SUBJECT.to_owned(),
            roles: Role::ALL.to_vec(),
        }
    }

    /// Whether the principal holds at least one of `roles`.
    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    /// Whether the principal holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

/// Checks that `principal` holds at least one role of `any_of`.
///
/// An empty `any_of` means "any authenticated principal" and always passes.
///
/// # Errors
///
/// [`AuthError::Forbidden`] when the principal holds none of the roles.
pub fn authorize(principal: &Principal, any_of: &[Role]) -> Result<(), AuthError> {
    if any_of.is_empty() || principal.has_any(any_of) {
        Ok(())
    } else {
        Err(AuthError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_claim_spelling() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".to_owned())));
    }

    #[test]
    fn authorize_needs_one_matching_role() {
        let customer = Principal {
            subject: "u1".into(),
            roles: vec![Role::Customer],
        };
        assert_eq!(
            authorize(&customer, &[Role::Admin, Role::Service]),
            Err(AuthError::Forbidden)
        );
        assert_eq!(authorize(&customer, &[Role::Customer]), Ok(()));
        assert_eq!(authorize(&customer, &[]), Ok(()));
        assert_eq!(authorize(&Principal::open(), &[Role::Admin]), Ok(()));
    }
}
