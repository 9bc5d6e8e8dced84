//! Principals (back-office users, customers, merchant users, service accounts) and their states.

use assist_runtime::auth::Realm;

/// Whether a principal may sign in, and what became of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    Invited,
    Blocked,
    Inactive,
    Deleted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Invited => "invited",
            Status::Blocked => "blocked",
            Status::Inactive => "inactive",
            Status::Deleted => "deleted",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "active" => Status::Active,
            "invited" => Status::Invited,
            "blocked" => Status::Blocked,
            "inactive" => Status::Inactive,
            "deleted" => Status::Deleted,
            _ => return None,
        })
    }

    /// The statuses a principal of `realm` can be put in by an administrator.
    pub fn allowed_for(self, realm: Realm) -> bool {
        match realm {
            Realm::MerchantUser => matches!(
                self,
                Status::Active | Status::Inactive | Status::Deleted | Status::Blocked
            ),
            _ => matches!(self, Status::Active | Status::Blocked),
        }
    }
}

/// The approval state of a merchant in the marketplace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MerchantApproval {
    Waiting,
    Approved,
    Denied,
}

impl MerchantApproval {
    pub fn as_str(self) -> &'static str {
        match self {
            MerchantApproval::Waiting => "waiting",
            MerchantApproval::Approved => "approved",
            MerchantApproval::Denied => "denied",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "waiting" => MerchantApproval::Waiting,
            "approved" => MerchantApproval::Approved,
            "denied" => MerchantApproval::Denied,
            _ => return None,
        })
    }
}

/// What a one-time token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Invitation,
    PasswordReset,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Invitation => "invitation",
            Purpose::PasswordReset => "password_reset",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "invitation" => Purpose::Invitation,
            "password_reset" => Purpose::PasswordReset,
            _ => return None,
        })
    }
}

/// The fields particular to each kind of principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalKind {
    BackOfficeUser {
        full_name: String,
    },
    Customer {
        customer_reference: String,
        first_name: String,
        last_name: String,
    },
    MerchantUser {
        merchant_id: String,
        merchant_name: String,
        merchant_approval: MerchantApproval,
        first_name: String,
        last_name: String,
    },
    ServiceAccount {
        client_id: String,
    },
}

impl PrincipalKind {
    pub fn realm(&self) -> Realm {
        match self {
            PrincipalKind::BackOfficeUser { .. } => Realm::BackOffice,
            PrincipalKind::Customer { .. } => Realm::Customer,
            PrincipalKind::MerchantUser { .. } => Realm::MerchantUser,
            PrincipalKind::ServiceAccount { .. } => Realm::Service,
        }
    }
}

/// A principal as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub id: String,
    pub status: Status,
    /// Lowercased; empty for service accounts.
    pub email: String,
    pub scope: String,
    pub kind: PrincipalKind,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

impl Principal {
    pub fn realm(&self) -> Realm {
        self.kind.realm()
    }

    /// Display name: full name, or "first last".
    pub fn display_name(&self) -> String {
        match &self.kind {
            PrincipalKind::BackOfficeUser { full_name } => full_name.clone(),
            PrincipalKind::Customer {
                first_name,
                last_name,
                ..
            }
            | PrincipalKind::MerchantUser {
                first_name,
                last_name,
                ..
            } => assist_proto::identity::v1::person_name(first_name, last_name),
            PrincipalKind::ServiceAccount { client_id } => client_id.clone(),
        }
    }
}

/// What an access token says about its principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub id: String,
    pub realm: Realm,
    pub scope: String,
    /// Display name (empty when there is none).
    pub name: String,
    /// A merchant user's merchant name.
    pub merchant_name: Option<String>,
}

impl Principal {
    pub fn subject(&self) -> Subject {
        Subject {
            id: self.id.clone(),
            realm: self.realm(),
            scope: self.scope.clone(),
            name: self.display_name(),
            merchant_name: match &self.kind {
                PrincipalKind::MerchantUser { merchant_name, .. } => Some(merchant_name.clone()),
                _ => None,
            },
        }
    }
}

/// A principal about to be created, with its password already hashed (or none).
#[derive(Debug, Clone)]
pub struct NewPrincipal {
    pub principal: Principal,
    pub password_hash: Option<String>,
}

/// The scope of a principal's tokens: the realm's base scope plus extra scopes, deduplicated, sorted.
pub fn scope_for(realm: Realm, extra: &[String]) -> String {
    let mut scopes: Vec<&str> = vec![realm.as_str()];
    scopes.extend(extra.iter().map(String::as_str));
    scopes.sort_unstable();
    scopes.dedup();
    scopes.join(" ")
}

/// Checks one extra scope: a short lowercase word (letters, digits, `.`, `_`, `:`, `-`).
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 64
        && scope
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._:-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_always_carry_the_realm() {
        assert_eq!(
            scope_for(Realm::BackOffice, &["admin".into(), "admin".into()]),
            "admin back_office"
        );
        assert_eq!(scope_for(Realm::Customer, &[]), "customer");
        assert!(valid_scope("identity.read"));
        assert!(!valid_scope("Admin"));
        assert!(!valid_scope("a b"));
    }

    #[test]
    fn statuses_fit_their_realm() {
        assert!(Status::Deleted.allowed_for(Realm::MerchantUser));
        assert!(!Status::Deleted.allowed_for(Realm::Customer));
        assert!(!Status::Invited.allowed_for(Realm::BackOffice));
    }
}
