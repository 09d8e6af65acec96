//! Who is calling: routes declare an [`Access`] level; the [`Guard`] turns the
//! request's bearer token into a [`Caller`] or a 401/403 problem, through
//! service-guard. Public routes are not authenticated at all.

use http::HeaderMap;
use inventory_core::Actor;
use service_guard::{authorize, Authenticator, Role};
use service_kit::guard::auth_problem;
use service_kit::Problem;

use crate::routes::Access;

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, for the audit ledger.
    pub actor: Actor,
}

/// Checks callers against route access levels.
#[derive(Debug)]
pub struct Guard {
    authenticator: Authenticator,
}

const SERVICE_ROLES: &[Role] = &[Role::Service, Role::Admin];
const ADMIN_ROLES: &[Role] = &[Role::Admin];

impl Guard {
    /// A guard over `authenticator` (possibly [`Authenticator::disabled`]).
    pub fn new(authenticator: Authenticator) -> Self {
        Self { authenticator }
    }

    /// The authenticator the guard verifies tokens with (clones share its keys,
    /// so a reload through one reaches the guard).
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// True when no key is configured and every caller is let in.
    pub fn is_open(&self) -> bool {
        self.authenticator.is_disabled()
    }

    /// The caller of a request, if it may use a route of level `access`.
    ///
    /// # Errors
    /// 401 (with `WWW-Authenticate`) without a valid token, 403 without the role.
    pub async fn check(&self, headers: &HeaderMap, access: Access) -> Result<Caller, Problem> {
        let roles = match access {
            Access::Public => return Ok(anonymous()),
            Access::Service => SERVICE_ROLES,
            Access::Admin => ADMIN_ROLES,
        };
        let principal = self
            .authenticator
            .authenticate(headers)
            .await
            .map_err(auth_problem)?;
        authorize(&principal, roles).map_err(auth_problem)?;
        let actor = Actor::new(&principal.subject).unwrap_or_else(|_| Actor::system());
        Ok(Caller { actor })
    }
}

fn anonymous() -> Caller {
    Caller {
        actor: Actor::new(service_guard::auth::OPEN_SUBJECT).unwrap_or_else(|_| Actor::system()),
    }
}
