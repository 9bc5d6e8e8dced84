//! The `assist.identity.v1.Identity` gRPC service: decodes and checks requests, calls the use cases,
//! encodes replies.

use std::sync::Arc;

use assist_proto::common::v1 as common;
use assist_proto::identity::v1 as pb;
use assist_runtime::auth::{Claims, Realm, caller, optional_caller};
use assist_runtime::notify::{WatchStream, Watches};
use assist_runtime::validate::Page;
use assist_runtime::{Error, Result};
use tokio::sync::{OnceCell, watch};
use tonic::{Request, Response, Status};

use crate::domain::{
    MerchantApproval, Principal, PrincipalKind, Purpose, Status as PrincipalStatus,
};
use crate::service::{Actor, Identity, PrincipalInput, PrincipalUpdate, TokenPair};
use crate::store::OutboxMessage;

/// Methods callable without a token: signing in, refreshing, revoking by token, the service-token
/// exchange, the JWKS and redeeming a one-time token (the token in the request is the credential).
pub const PUBLIC_METHODS: &[&str] = &[
    "/assist.identity.v1.Identity/Login",
    "/assist.identity.v1.Identity/Refresh",
    "/assist.identity.v1.Identity/RevokeRefreshToken",
    "/assist.identity.v1.Identity/IssueServiceToken",
    "/assist.identity.v1.Identity/GetJwks",
    "/assist.identity.v1.Identity/RedeemOneTimeToken",
];

/// The gRPC face of [`Identity`]; answers `UNAVAILABLE` until the database is ready.
#[derive(Clone)]
pub struct Api {
    identity: Arc<OnceCell<Arc<Identity>>>,
    watches: Watches,
}

impl Api {
    pub fn new(identity: Arc<OnceCell<Arc<Identity>>>, shutdown: watch::Receiver<bool>) -> Self {
        Self {
            identity,
            watches: Watches::new(shutdown),
        }
    }

    fn identity(&self) -> Result<&Identity, Status> {
        self.identity
            .get()
            .map(|i| i.as_ref())
            .ok_or_else(|| Status::unavailable("identity is starting"))
    }

    /// The verified caller as its principal stands now ([`Identity::as_it_is_now`]).
    async fn caller<T>(&self, request: &Request<T>) -> Result<Claims, Status> {
        let claims = caller(request)?;
        Ok(self.identity()?.as_it_is_now((*claims).clone()).await?)
    }

    fn identity_arc(&self) -> Result<Arc<Identity>, Status> {
        self.identity
            .get()
            .cloned()
            .ok_or_else(|| Status::unavailable("identity is starting"))
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(value: T) -> Reply<T> {
    Ok(Response::new(value))
}

fn actor(claims: &Claims) -> Actor<'_> {
    Actor::Token(claims)
}

fn realm_of(value: i32, field: &'static str) -> Result<Realm> {
    match pb::Realm::try_from(value) {
        Ok(pb::Realm::BackOffice) => Ok(Realm::BackOffice),
        Ok(pb::Realm::Customer) => Ok(Realm::Customer),
        Ok(pb::Realm::MerchantUser) => Ok(Realm::MerchantUser),
        Ok(pb::Realm::Service) => Ok(Realm::Service),
        _ => Err(Error::invalid(field, "must be set")),
    }
}

fn realm_to_pb(realm: Realm) -> pb::Realm {
    match realm {
        Realm::BackOffice => pb::Realm::BackOffice,
        Realm::Customer => pb::Realm::Customer,
        Realm::MerchantUser => pb::Realm::MerchantUser,
        Realm::Service => pb::Realm::Service,
    }
}

fn status_of(value: i32, field: &'static str) -> Result<Option<PrincipalStatus>> {
    Ok(match pb::PrincipalStatus::try_from(value) {
        Ok(pb::PrincipalStatus::Unspecified) => None,
        Ok(pb::PrincipalStatus::Active) => Some(PrincipalStatus::Active),
        Ok(pb::PrincipalStatus::Invited) => Some(PrincipalStatus::Invited),
        Ok(pb::PrincipalStatus::Blocked) => Some(PrincipalStatus::Blocked),
        Ok(pb::PrincipalStatus::Inactive) => Some(PrincipalStatus::Inactive),
        Ok(pb::PrincipalStatus::Deleted) => Some(PrincipalStatus::Deleted),
        Err(_) => return Err(Error::invalid(field, "unknown status")),
    })
}

fn status_to_pb(status: PrincipalStatus) -> pb::PrincipalStatus {
    match status {
        PrincipalStatus::Active => pb::PrincipalStatus::Active,
        PrincipalStatus::Invited => pb::PrincipalStatus::Invited,
        PrincipalStatus::Blocked => pb::PrincipalStatus::Blocked,
        PrincipalStatus::Inactive => pb::PrincipalStatus::Inactive,
        PrincipalStatus::Deleted => pb::PrincipalStatus::Deleted,
    }
}

fn approval_of(value: i32) -> Result<Option<MerchantApproval>> {
    Ok(match pb::MerchantApproval::try_from(value) {
        Ok(pb::MerchantApproval::Unspecified) => None,
        Ok(pb::MerchantApproval::Waiting) => Some(MerchantApproval::Waiting),
        Ok(pb::MerchantApproval::Approved) => Some(MerchantApproval::Approved),
        Ok(pb::MerchantApproval::Denied) => Some(MerchantApproval::Denied),
        Err(_) => return Err(Error::invalid("merchant_approval", "unknown value")),
    })
}

fn approval_to_pb(approval: MerchantApproval) -> pb::MerchantApproval {
    match approval {
        MerchantApproval::Waiting => pb::MerchantApproval::Waiting,
        MerchantApproval::Approved => pb::MerchantApproval::Approved,
        MerchantApproval::Denied => pb::MerchantApproval::Denied,
    }
}

fn purpose_of(value: i32) -> Result<Purpose> {
    match pb::OneTimeTokenPurpose::try_from(value) {
        Ok(pb::OneTimeTokenPurpose::Invitation) => Ok(Purpose::Invitation),
        Ok(pb::OneTimeTokenPurpose::PasswordReset) => Ok(Purpose::PasswordReset),
        _ => Err(Error::invalid(
            "purpose",
            "must be invitation or password_reset",
        )),
    }
}

fn purpose_to_pb(purpose: Purpose) -> pb::OneTimeTokenPurpose {
    match purpose {
        Purpose::Invitation => pb::OneTimeTokenPurpose::Invitation,
        Purpose::PasswordReset => pb::OneTimeTokenPurpose::PasswordReset,
    }
}

fn principal_to_pb(p: Principal) -> pb::Principal {
    let realm = realm_to_pb(p.realm()) as i32;
    let kind = match p.kind {
        PrincipalKind::BackOfficeUser { full_name } => {
            pb::principal::Kind::BackOfficeUser(pb::BackOfficeUser { full_name })
        }
        PrincipalKind::Customer {
            customer_reference,
            first_name,
            last_name,
        } => pb::principal::Kind::Customer(pb::Customer {
            customer_reference,
            first_name,
            last_name,
        }),
        PrincipalKind::MerchantUser {
            merchant_id,
            merchant_name,
            merchant_approval,
            first_name,
            last_name,
        } => pb::principal::Kind::MerchantUser(pb::MerchantUser {
            merchant_id,
            merchant_name,
            merchant_approval: approval_to_pb(merchant_approval) as i32,
            first_name,
            last_name,
        }),
        PrincipalKind::ServiceAccount { client_id } => {
            pb::principal::Kind::ServiceAccount(pb::ServiceAccount { client_id })
        }
    };
    pb::Principal {
        id: p.id,
        realm,
        status: status_to_pb(p.status) as i32,
        email: p.email,
        scope: p.scope,
        created_at_us: p.created_at_us,
        updated_at_us: p.updated_at_us,
        kind: Some(kind),
    }
}

/// A search hit as a customer summary (`None` for any other kind, which customer search never returns).
fn customer_summary(p: Principal) -> Option<pb::CustomerSummary> {
    match p.kind {
        PrincipalKind::Customer {
            customer_reference,
            first_name,
            last_name,
        } => Some(pb::CustomerSummary {
            id: p.id,
            customer_reference,
            email: p.email,
            first_name,
            last_name,
            status: status_to_pb(p.status) as i32,
        }),
        _ => None,
    }
}

/// A search hit as a merchant-user summary.
fn merchant_user_summary(p: Principal) -> Option<pb::MerchantUserSummary> {
    match p.kind {
        PrincipalKind::MerchantUser {
            merchant_id,
            merchant_name,
            merchant_approval,
            first_name,
            last_name,
        } => Some(pb::MerchantUserSummary {
            id: p.id,
            merchant_id,
            merchant_name,
            merchant_approval: approval_to_pb(merchant_approval) as i32,
            email: p.email,
            first_name,
            last_name,
            status: status_to_pb(p.status) as i32,
        }),
        _ => None,
    }
}

fn pair_to_pb(pair: TokenPair) -> pb::TokenPair {
    pb::TokenPair {
        access: Some(pb::AccessToken {
            token: pair.access_token,
            expires_at_us: pair.access_expires_at_us,
            token_type: "Bearer".into(),
        }),
        refresh_token: pair.refresh_token,
        refresh_expires_at_us: pair.refresh_expires_at_us,
        principal_id: pair.principal_id,
    }
}

fn mail_to_pb(m: OutboxMessage) -> pb::OutboxMessage {
    pb::OutboxMessage {
        id: m.id,
        recipient: m.recipient,
        subject: m.subject,
        body: m.body,
        created_at_us: m.created_at,
        sent_at_us: m.sent_at.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl pb::identity_server::Identity for Api {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Reply<pb::TokenPair> {
        let peer = request
            .remote_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let trusted = match optional_caller(&request) {
            Some(claims) => self
                .identity()?
                .as_it_is_now((*claims).clone())
                .await
                .is_ok_and(|c| c.service_may(assist_runtime::auth::permission::SIGNIN_RELAY)),
            None => false,
        };
        let req = request.into_inner();
        // Only a service (the gateway) may say whose address a sign-in comes from; anyone else could
        // otherwise dodge the per-address throttle by naming a new address on every try.
        let address = if trusted && !req.client_address.is_empty() {
            assist_runtime::validate::required("client_address", &req.client_address, 64)?
        } else {
            peer
        };
        let realm = realm_of(req.realm, "realm")?;
        let pair = self
            .identity()?
            .login(realm, &req.email, &req.password, &address)
            .await?;
        ok(pair_to_pb(pair))
    }

    async fn refresh(&self, request: Request<pb::RefreshRequest>) -> Reply<pb::TokenPair> {
        let pair = self
            .identity()?
            .refresh(&request.into_inner().refresh_token)
            .await?;
        ok(pair_to_pb(pair))
    }

    async fn revoke_refresh_token(
        &self,
        request: Request<pb::RevokeRefreshTokenRequest>,
    ) -> Reply<pb::RevokeRefreshTokenResponse> {
        self.identity()?
            .revoke_refresh_token(&request.into_inner().refresh_token)
            .await?;
        ok(pb::RevokeRefreshTokenResponse {})
    }

    async fn revoke_all_refresh_tokens(
        &self,
        request: Request<pb::RevokeAllRefreshTokensRequest>,
    ) -> Reply<pb::RevokeAllRefreshTokensResponse> {
        let claims = self.caller(&request).await?;
        let revoked = self
            .identity()?
            .revoke_all_refresh_tokens(actor(&claims), &request.into_inner().principal_id)
            .await?;
        ok(pb::RevokeAllRefreshTokensResponse { revoked })
    }

    async fn issue_service_token(
        &self,
        request: Request<pb::IssueServiceTokenRequest>,
    ) -> Reply<pb::AccessToken> {
        let req = request.into_inner();
        let (token, expires_at_us) = self
            .identity()?
            .issue_service_token(&req.client_id, &req.client_secret)
            .await?;
        ok(pb::AccessToken {
            token,
            expires_at_us,
            token_type: "Bearer".into(),
        })
    }

    async fn get_jwks(&self, _request: Request<common::GetJwksRequest>) -> Reply<common::Jwks> {
        ok(assist_runtime::keys::jwks_message(&self.identity()?.jwks()))
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Reply<pb::RotateSigningKeyResponse> {
        let claims = self.caller(&request).await?;
        let kid = self.identity()?.rotate_signing_key(actor(&claims)).await?;
        ok(pb::RotateSigningKeyResponse { kid })
    }

    async fn create_back_office_user(
        &self,
        request: Request<pb::CreateBackOfficeUserRequest>,
    ) -> Reply<pb::Principal> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let input = PrincipalInput {
            email: req.email,
            full_name: req.full_name,
            password: req.password,
            scopes: req.scopes,
            send_invitation: req.send_invitation,
            ..Default::default()
        };
        let principal = self
            .identity()?
            .create_back_office_user(actor(&claims), input)
            .await?;
        ok(principal_to_pb(principal))
    }

    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Reply<pb::Principal> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let input = PrincipalInput {
            customer_reference: req.customer_reference,
            email: req.email,
            first_name: req.first_name,
            last_name: req.last_name,
            password: req.password,
            ..Default::default()
        };
        let principal = self
            .identity()?
            .create_customer(actor(&claims), input)
            .await?;
        ok(principal_to_pb(principal))
    }

    async fn create_merchant_user(
        &self,
        request: Request<pb::CreateMerchantUserRequest>,
    ) -> Reply<pb::Principal> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let input = PrincipalInput {
            merchant_id: req.merchant_id,
            merchant_name: req.merchant_name,
            merchant_approval: approval_of(req.merchant_approval)?,
            email: req.email,
            first_name: req.first_name,
            last_name: req.last_name,
            password: req.password,
            ..Default::default()
        };
        let principal = self
            .identity()?
            .create_merchant_user(actor(&claims), input)
            .await?;
        ok(principal_to_pb(principal))
    }

    async fn create_service_account(
        &self,
        request: Request<pb::CreateServiceAccountRequest>,
    ) -> Reply<pb::CreateServiceAccountResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let (principal, client_secret) = self
            .identity()?
            .create_service_account(actor(&claims), &req.client_id, &req.scopes)
            .await?;
        ok(pb::CreateServiceAccountResponse {
            principal: Some(principal_to_pb(principal)),
            client_secret,
        })
    }

    async fn update_principal(
        &self,
        request: Request<pb::UpdatePrincipalRequest>,
    ) -> Reply<pb::Principal> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let update = PrincipalUpdate {
            email: req.email,
            full_name: req.full_name,
            first_name: req.first_name,
            last_name: req.last_name,
            merchant_name: req.merchant_name,
            merchant_approval: approval_of(req.merchant_approval)?,
            scopes: req.scopes.map(|s| s.scopes),
        };
        let principal = self
            .identity()?
            .update_principal(actor(&claims), &req.id, update)
            .await?;
        ok(principal_to_pb(principal))
    }

    async fn get_principal(
        &self,
        request: Request<pb::GetPrincipalRequest>,
    ) -> Reply<pb::Principal> {
        let claims = self.caller(&request).await?;
        let principal = self
            .identity()?
            .get_principal(actor(&claims), &request.into_inner().id)
            .await?;
        ok(principal_to_pb(principal))
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Reply<pb::ListPrincipalsResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let realm = realm_of(req.realm, "realm")?;
        let status = status_of(req.status, "status")?;
        let page = Page::from_request(req.page)?;
        let paged = self
            .identity()?
            .list_principals(actor(&claims), realm, status, page)
            .await?;
        ok(pb::ListPrincipalsResponse {
            page: Some(paged.info(page)),
            principals: paged.items.into_iter().map(principal_to_pb).collect(),
        })
    }

    async fn set_principal_status(
        &self,
        request: Request<pb::SetPrincipalStatusRequest>,
    ) -> Reply<pb::Principal> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let status = status_of(req.status, "status")?
            .ok_or_else(|| Error::invalid("status", "must be set"))?;
        let principal = self
            .identity()?
            .set_status(actor(&claims), &req.id, status)
            .await?;
        ok(principal_to_pb(principal))
    }

    async fn set_password(
        &self,
        request: Request<pb::SetPasswordRequest>,
    ) -> Reply<pb::SetPasswordResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        self.identity()?
            .set_password(actor(&claims), &req.id, &req.password)
            .await?;
        ok(pb::SetPasswordResponse {})
    }

    async fn issue_one_time_token(
        &self,
        request: Request<pb::IssueOneTimeTokenRequest>,
    ) -> Reply<pb::IssueOneTimeTokenResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let purpose = purpose_of(req.purpose)?;
        let (outbox_id, expires_at_us) = self
            .identity()?
            .issue_one_time_token(actor(&claims), &req.principal_id, purpose)
            .await?;
        ok(pb::IssueOneTimeTokenResponse {
            outbox_id,
            expires_at_us,
        })
    }

    async fn redeem_one_time_token(
        &self,
        request: Request<pb::RedeemOneTimeTokenRequest>,
    ) -> Reply<pb::RedeemOneTimeTokenResponse> {
        let req = request.into_inner();
        let (principal_id, purpose) = self
            .identity()?
            .redeem_one_time_token(&req.token, &req.new_password)
            .await?;
        ok(pb::RedeemOneTimeTokenResponse {
            principal_id,
            purpose: purpose_to_pb(purpose) as i32,
        })
    }

    async fn list_outbox(
        &self,
        request: Request<pb::ListOutboxRequest>,
    ) -> Reply<pb::ListOutboxResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let paged = self
            .identity()?
            .list_outbox(actor(&claims), &req.recipient, page)
            .await?;
        ok(pb::ListOutboxResponse {
            page: Some(paged.info(page)),
            messages: paged.items.into_iter().map(mail_to_pb).collect(),
        })
    }

    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Reply<pb::SearchCustomersResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let paged = self
            .identity()?
            .search_customers(actor(&claims), &req.query, page)
            .await?;
        let info = paged.info(page);
        let customers = paged
            .items
            .into_iter()
            .filter_map(customer_summary)
            .collect();
        ok(pb::SearchCustomersResponse {
            customers,
            page: Some(info),
        })
    }

    type WatchPrincipalChangesStream = WatchStream<pb::PrincipalChange>;

    async fn watch_principal_changes(
        &self,
        request: Request<pb::WatchPrincipalChangesRequest>,
    ) -> Reply<Self::WatchPrincipalChangesStream> {
        let claims = self.caller(&request).await?;
        let identity = self.identity_arc()?;
        let notifier = identity.principal_changes(actor(&claims))?.clone();
        let subscribed = pb::PrincipalChange {
            kind: pb::principal_change::Kind::Subscribed as i32,
            ..Default::default()
        };
        let checked = (identity.clone(), claims.clone());
        let stream = self.watches.open(
            notifier,
            &claims,
            move || {
                let (identity, claims) = checked.clone();
                async move {
                    let claims = identity.as_it_is_now(claims).await?;
                    identity.principal_changes(actor(&claims)).map(|_| ())
                }
            },
            move || async move { Ok(vec![subscribed]) },
            move |id: String| {
                let identity = identity.clone();
                async move {
                    Ok(identity
                        .changed_principal(&id)
                        .await?
                        .map(|p| pb::PrincipalChange {
                            kind: pb::principal_change::Kind::StatusChanged as i32,
                            realm: realm_to_pb(p.realm()) as i32,
                            status: status_to_pb(p.status) as i32,
                            principal_id: p.id,
                        }))
                }
            },
        )?;
        ok(stream)
    }

    async fn search_merchant_users(
        &self,
        request: Request<pb::SearchMerchantUsersRequest>,
    ) -> Reply<pb::SearchMerchantUsersResponse> {
        let claims = self.caller(&request).await?;
        let req = request.into_inner();
        let page = Page::from_request(req.page)?;
        let status = status_of(req.status, "status")?;
        let paged = self
            .identity()?
            .search_merchant_users(actor(&claims), &req.query, status, page)
            .await?;
        let info = paged.info(page);
        let merchant_users = paged
            .items
            .into_iter()
            .filter_map(merchant_user_summary)
            .collect();
        ok(pb::SearchMerchantUsersResponse {
            merchant_users,
            page: Some(info),
        })
    }
}
