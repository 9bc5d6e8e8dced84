//! Who may do what in conversation routing (DESIGN.md sections 4 and 5; the rules are written out in
//! `routing.proto`): the caller's role here and what it may read. Plain functions; no I/O.

use assist_runtime::auth::{ADMIN_SCOPE, Claims, Realm, permission};
use assist_runtime::{Error, Result};

use super::Conversation;

/// What the caller is to routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Customer,
    Agent,
    Supervisor,
    /// A console administrator or a platform administrator.
    Administrator,
    /// A service account granted `conversations:write` (an integration).
    Service,
}

/// Who calls: a principal id and its role here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub role: Role,
}

impl Caller {
    /// Sees and watches every conversation, writes notes anywhere, assigns.
    pub fn oversees(&self) -> bool {
        matches!(
            self.role,
            Role::Supervisor | Role::Administrator | Role::Service
        )
    }

    pub fn is_member(&self) -> bool {
        !matches!(self.role, Role::Customer)
    }

    /// May read `conversation`: the customer its own, an agent what is assigned to them, overseers all.
    /// Customers get NOT_FOUND for others' conversations (they learn nothing of them).
    pub fn may_read(&self, conversation: &Conversation) -> Result<()> {
        match self.role {
            Role::Customer if conversation.customer_id == self.id => Ok(()),
            Role::Customer => Err(Error::NotFound("conversation")),
            Role::Agent if conversation.is_assigned_to(&self.id) => Ok(()),
            Role::Agent => Err(Error::denied(
                "this conversation is not assigned to you; a supervisor can assign it",
            )),
            _ => Ok(()),
        }
    }
}

/// The caller of `claims`: customers by realm; back-office users by `member`, their active console
/// role now (platform administrators are administrators); services granted `conversations:write`
/// as services. Impersonation tokens are refused: an agent acting as a customer is neither here.
pub fn caller(claims: &Claims, member: Option<Role>) -> Result<Caller> {
    if claims.is_delegated() {
        return Err(Error::denied(
            "impersonation tokens are not accepted by conversation routing",
        ));
    }
    let role = match claims.realm {
        Realm::Customer => Role::Customer,
        Realm::Service if claims.service_may(permission::CONVERSATIONS_WRITE) => Role::Service,
        Realm::Service => {
            return Err(Error::denied(
                "a service needs the conversations:write permission here",
            ));
        }
        Realm::BackOffice if claims.has_scope(ADMIN_SCOPE) => Role::Administrator,
        Realm::BackOffice => match member {
            Some(role @ (Role::Agent | Role::Supervisor | Role::Administrator)) => role,
            _ => return Err(Error::denied("only active console members can do this")),
        },
        Realm::MerchantUser => {
            return Err(Error::denied(
                "customers, console members and services use conversations",
            ));
        }
    };
    Ok(Caller {
        id: claims.sub.clone(),
        role,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Priority, Status};
    use assist_runtime::auth::Actor;

    fn claims(realm: Realm, scope: &str) -> Claims {
        Claims {
            iss: "assist-identity".into(),
            sub: "me".into(),
            aud: "agent-assist".into(),
            exp: 0,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            realm,
            scope: scope.into(),
            act: None,
            sid: None,
            name: None,
            merchant_name: None,
        }
    }

    fn conversation(customer_id: &str, assignee_id: Option<&str>) -> Conversation {
        Conversation {
            id: "c".into(),
            customer_id: customer_id.into(),
            channel: Channel::Web,
            subject: "s".into(),
            priority: Priority::Normal,
            required_skills: vec![],
            status: Status::Assigned,
            assignee_id: assignee_id.map(str::to_owned),
            requeued: false,
            queued_at_us: 0,
            created_at_us: 0,
            assigned_at_us: 0,
            first_reply_at_us: 0,
            resolved_at_us: 0,
            closed_at_us: 0,
            updated_at_us: 0,
            last_message_at_us: 0,
            version: 1,
            queue_position: None,
        }
    }

    fn role_of(claims: &Claims, member: Option<Role>) -> Option<Role> {
        caller(claims, member).ok().map(|caller| caller.role)
    }

    #[test]
    fn the_role_comes_from_the_realm_and_the_console_role_now() {
        let back_office = claims(Realm::BackOffice, "");
        assert_eq!(
            role_of(&claims(Realm::Customer, ""), None),
            Some(Role::Customer)
        );
        assert_eq!(role_of(&back_office, Some(Role::Agent)), Some(Role::Agent));
        assert_eq!(
            role_of(&back_office, Some(Role::Supervisor)),
            Some(Role::Supervisor)
        );
        // Removed, invited or never a member: refused.
        assert_eq!(role_of(&back_office, None), None);
        // A console role cannot be claimed by a customer or merchant user.
        assert_eq!(
            role_of(&claims(Realm::MerchantUser, ""), Some(Role::Agent)),
            None
        );
        assert_eq!(
            role_of(&claims(Realm::BackOffice, ADMIN_SCOPE), None),
            Some(Role::Administrator)
        );
        assert_eq!(
            role_of(
                &claims(Realm::Service, permission::CONVERSATIONS_WRITE),
                None
            ),
            Some(Role::Service)
        );
        assert_eq!(role_of(&claims(Realm::Service, ""), None), None);
    }

    #[test]
    fn impersonation_tokens_are_refused() {
        let mut delegated = claims(Realm::Customer, "");
        delegated.act = Some(Actor {
            sub: "agent".into(),
            realm: Realm::BackOffice,
        });
        delegated.sid = Some("s".into());
        assert!(caller(&delegated, None).is_err());
    }

    #[test]
    fn customers_read_their_own_agents_what_is_theirs_overseers_all() {
        let as_role = |role| Caller {
            id: "me".into(),
            role,
        };
        let mine = conversation("me", None);
        let others = conversation("someone", Some("another-agent"));
        let assigned_to_me = conversation("someone", Some("me"));

        let customer = as_role(Role::Customer);
        assert!(customer.may_read(&mine).is_ok());
        assert!(matches!(
            customer.may_read(&others),
            Err(Error::NotFound(_))
        ));

        let agent = as_role(Role::Agent);
        assert!(agent.may_read(&assigned_to_me).is_ok());
        assert!(matches!(
            agent.may_read(&others),
            Err(Error::PermissionDenied(_))
        ));
        assert!(!agent.oversees());

        for role in [Role::Supervisor, Role::Administrator, Role::Service] {
            assert!(as_role(role).may_read(&others).is_ok());
            assert!(as_role(role).oversees());
        }
        assert!(!customer.is_member() && agent.is_member());
    }
}
