//! Identity over gRPC with this service's token: what it knows about a principal, read at the moment a
//! rule needs it (identity owns principals; this service keeps no copy but the email), and the console's
//! requests to it: create an invited user, mail an invitation or a reset link, block a removed agent.

use assist_proto::identity::v1 as idp;
use assist_runtime::auth::Realm;
use assist_runtime::client::{Outgoing, retry_idempotent};
use assist_runtime::{Error, Result};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::domain::{PrincipalFacts, PrincipalStatus};

/// An identity client whose calls carry this service's token.
pub type IdentityClient =
    idp::identity_client::IdentityClient<InterceptedService<Channel, Outgoing>>;

/// Principals as identity sees them.
#[derive(Clone)]
pub struct Principals {
    identity: IdentityClient,
}

impl Principals {
    pub fn new(identity: IdentityClient) -> Self {
        Self { identity }
    }

    /// The principal `id`, or `None` when identity knows no such principal.
    pub async fn get(&self, id: &str) -> Result<Option<PrincipalFacts>> {
        let reply = retry_idempotent(|| {
            let mut identity = self.identity.clone();
            let request = idp::GetPrincipalRequest { id: id.to_owned() };
            async move { identity.get_principal(request).await }
        })
        .await;
        let principal = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(unavailable(status)),
        };
        facts(principal).map(Some)
    }

    /// Creates an invited back-office user (no password, no extra scopes, no mail yet); its id.
    /// An email identity already knows is `ALREADY_EXISTS`.
    pub async fn create_invited(&self, email: &str, full_name: &str) -> Result<String> {
        let request = idp::CreateBackOfficeUserRequest {
            email: email.to_owned(),
            full_name: full_name.to_owned(),
            password: String::new(),
            scopes: Vec::new(),
            send_invitation: false,
        };
        match self.identity.clone().create_back_office_user(request).await {
            Ok(reply) => Ok(reply.into_inner().id),
            Err(status) if status.code() == Code::AlreadyExists => Err(Error::AlreadyExists(
                "email: a user with this email already exists".into(),
            )),
            Err(status) => Err(unavailable(status)),
        }
    }

    /// Has identity mail `id` an invitation (`invitation`) or a password-reset link; when it expires.
    pub async fn send_link(&self, id: &str, invitation: bool) -> Result<i64> {
        let purpose = if invitation {
            idp::OneTimeTokenPurpose::Invitation
        } else {
            idp::OneTimeTokenPurpose::PasswordReset
        };
        let request = idp::IssueOneTimeTokenRequest {
            principal_id: id.to_owned(),
            purpose: purpose as i32,
        };
        match self.identity.clone().issue_one_time_token(request).await {
            Ok(reply) => Ok(reply.into_inner().expires_at_us),
            Err(status) if status.code() == Code::FailedPrecondition => Err(
                Error::FailedPrecondition(format!("identity refused: {}", status.message())),
            ),
            Err(status) => Err(unavailable(status)),
        }
    }

    /// Blocks `id` in identity: it cannot sign in, its refresh tokens are revoked, its links stop
    /// working. Idempotent.
    pub async fn block(&self, id: &str) -> Result<()> {
        let reply = retry_idempotent(|| {
            let mut identity = self.identity.clone();
            let request = idp::SetPrincipalStatusRequest {
                id: id.to_owned(),
                status: idp::PrincipalStatus::Blocked as i32,
            };
            async move { identity.set_principal_status(request).await }
        })
        .await;
        match reply {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Ok(()),
            Err(status) => Err(unavailable(status)),
        }
    }
}

/// Identity's refusal as this service's answer: a refusal of the request stays one (a 4xx at the
/// gateway), and only identity being unreachable or failing is UNAVAILABLE.
fn unavailable(status: Status) -> Error {
    match status.code() {
        Code::PermissionDenied => Error::denied(format!("identity refused: {}", status.message())),
        Code::InvalidArgument => Error::invalid("request", status.message().to_owned()),
        Code::NotFound => Error::NotFound("principal"),
        Code::FailedPrecondition => {
            Error::FailedPrecondition(format!("identity refused: {}", status.message()))
        }
        _ => {
            tracing::warn!(code = ?status.code(), error = %status.message(), "identity call failed");
            Error::Unavailable("identity is unavailable".into())
        }
    }
}

fn facts(principal: idp::Principal) -> Result<PrincipalFacts> {
    let corrupt = |what: &str| {
        Error::internal(anyhow::anyhow!(
            "identity answered principal {} with an unknown {what}",
            principal.id
        ))
    };
    let realm = match idp::Realm::try_from(principal.realm) {
        Ok(idp::Realm::BackOffice) => Realm::BackOffice,
        Ok(idp::Realm::Customer) => Realm::Customer,
        Ok(idp::Realm::MerchantUser) => Realm::MerchantUser,
        Ok(idp::Realm::Service) => Realm::Service,
        _ => return Err(corrupt("realm")),
    };
    let status = match idp::PrincipalStatus::try_from(principal.status) {
        Ok(idp::PrincipalStatus::Active) => PrincipalStatus::Active,
        Ok(idp::PrincipalStatus::Invited) => PrincipalStatus::Invited,
        Ok(idp::PrincipalStatus::Blocked) => PrincipalStatus::Blocked,
        Ok(idp::PrincipalStatus::Inactive) => PrincipalStatus::Inactive,
        Ok(idp::PrincipalStatus::Deleted) => PrincipalStatus::Deleted,
        _ => return Err(corrupt("status")),
    };
    let full_name = match principal.kind {
        Some(idp::principal::Kind::BackOfficeUser(user)) => user.full_name,
        _ => String::new(),
    };
    let platform_admin = realm == Realm::BackOffice
        && principal
            .scope
            .split_whitespace()
            .any(|s| s == assist_runtime::auth::ADMIN_SCOPE);
    Ok(PrincipalFacts {
        id: principal.id,
        realm,
        status,
        full_name,
        email: principal.email,
        platform_admin,
    })
}
