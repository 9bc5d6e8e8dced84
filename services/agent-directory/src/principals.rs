//! What identity knows about a principal, read over gRPC with this service's token at the moment a rule
//! needs it (identity owns principals; this service keeps no copy).

use assist_proto::identity::v1 as idp;
use assist_runtime::auth::Realm;
use assist_runtime::client::{Outgoing, retry_idempotent};
use assist_runtime::{Error, Result};
use tonic::Code;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

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
            Err(status) => {
                tracing::warn!(code = ?status.code(), error = %status.message(), "identity call failed");
                return Err(Error::Unavailable("identity is unavailable".into()));
            }
        };
        facts(principal).map(Some)
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
    Ok(PrincipalFacts {
        id: principal.id,
        realm,
        status,
        full_name,
    })
}
