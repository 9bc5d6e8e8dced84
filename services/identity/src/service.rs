//! The identity use cases: each one validates, applies the domain rules and calls the store. Shared by
//! the gRPC API and the operator's `assist admin` commands.

use std::time::Duration;

use crate::hashing::Hashing;
use assist_runtime::auth::{ADMIN_SCOPE, Claims, PublicKey, Realm, permission};
use assist_runtime::notify::Notifier;
use assist_runtime::time::{now_us, us};
use assist_runtime::validate::{self, Page};
use assist_runtime::{Error, Result};

use crate::domain::keys::{self, KEY_RELOAD, KeyEncryptionKey, KeyRing};
use crate::domain::principal::{scope_for, valid_scope};
use crate::domain::throttle::{
    ACCOUNT_SLOWDOWN, ThrottlePolicy, account_key, address_key, pair_key,
};
use crate::domain::{
    MerchantApproval, NewPrincipal, Principal, PrincipalKind, Purpose, Status, Subject, password,
    search, secret,
};
use crate::store::{OneTimeToken, OutboxMessage, Paged, Rotation, SearchQuery, Store};

/// Lifetimes, limits and names that shape tokens and mail.
#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: String,
    pub audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub service_token_ttl: Duration,
    pub invitation_ttl: Duration,
    pub password_reset_ttl: Duration,
    /// Where the set-password and reset pages live; links in mail start here.
    pub public_url: String,
    pub account_throttle: ThrottlePolicy,
    pub address_throttle: ThrottlePolicy,
    pub customer_reference_prefix: String,
    /// Mail is delivered over SMTP. Without a relay, the administrator who lists the outbox is the
    /// one who hands a link over, and listing it drops the link from the store.
    pub mail_relay: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            issuer: "assist-identity".into(),
            audience: "agent-assist".into(),
            access_token_ttl: Duration::from_secs(15 * 60),
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            service_token_ttl: Duration::from_secs(10 * 60),
            invitation_ttl: Duration::from_secs(7 * 24 * 3600),
            password_reset_ttl: Duration::from_secs(3600),
            public_url: "http://127.0.0.1:8080".into(),
            account_throttle: ThrottlePolicy::default(),
            address_throttle: ThrottlePolicy::default(),
            customer_reference_prefix: "DE--".into(),
            mail_relay: false,
        }
    }
}

/// Who asks: a caller with a verified token, or the operator at the machine (`assist admin`).
#[derive(Debug, Clone, Copy)]
pub enum Actor<'a> {
    Operator,
    Token(&'a Claims),
}

impl Actor<'_> {
    /// The operator or a back-office administrator; never a service.
    fn is_admin(&self) -> bool {
        match self {
            Actor::Operator => true,
            Actor::Token(claims) => claims.is_admin(),
        }
    }

    /// The operator or a back-office administrator: services are refused whatever they hold.
    fn require_admin(&self) -> Result<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(Error::denied("administrator required"))
        }
    }

    /// The operator, a back-office administrator, or a service account granted `permission`.
    fn require_admin_or(&self, permission: &str) -> Result<()> {
        match self {
            Actor::Token(claims) if claims.service_may(permission) => Ok(()),
            _ if self.is_admin() => Ok(()),
            _ => Err(Error::denied(format!(
                "administrator or a service granted {permission} required"
            ))),
        }
    }

    /// The principal itself acting in its own name, or [`Actor::require_admin_or`] `permission`.
    fn require_self_or(&self, principal_id: &str, permission: &str) -> Result<()> {
        match self {
            Actor::Token(claims) if !claims.is_delegated() && claims.sub == principal_id => Ok(()),
            _ => self.require_admin_or(permission),
        }
    }

    /// The principal itself acting in its own name, or the operator or an administrator.
    fn require_self_or_admin(&self, principal_id: &str) -> Result<()> {
        match self {
            Actor::Token(claims) if !claims.is_delegated() && claims.sub == principal_id => Ok(()),
            _ => self.require_admin(),
        }
    }

    /// Back-office users, and services granted `principals:read`, may search; customers, merchant
    /// users and impersonation tokens may not.
    fn require_back_office(&self) -> Result<()> {
        match self {
            Actor::Operator => Ok(()),
            Actor::Token(claims) if !claims.is_delegated() && claims.realm == Realm::BackOffice => {
                Ok(())
            }
            Actor::Token(claims) if claims.service_may(permission::PRINCIPALS_READ) => Ok(()),
            Actor::Token(_) => Err(Error::denied(
                "back-office user or a service granted principals:read required",
            )),
        }
    }

    /// A change that touches an administrator (granting the `admin` scope, or reactivating or
    /// resetting the password of a principal holding it) needs an administrator, not a service.
    fn require_admin_if(&self, touches_admin: bool) -> Result<()> {
        if touches_admin {
            self.require_admin()
        } else {
            Ok(())
        }
    }
}

/// An access token and a refresh token.
#[derive(Debug, Clone)]
pub struct TokenPair {
    pub access_token: String,
    pub access_expires_at_us: i64,
    pub refresh_token: String,
    pub refresh_expires_at_us: i64,
    pub principal_id: String,
}

/// Fields of a new principal, before validation.
#[derive(Debug, Clone, Default)]
pub struct PrincipalInput {
    pub email: String,
    pub full_name: String,
    pub first_name: String,
    pub last_name: String,
    pub customer_reference: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub merchant_approval: Option<MerchantApproval>,
    pub password: String,
    pub scopes: Vec<String>,
    pub send_invitation: bool,
}

/// Changes to a principal; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct PrincipalUpdate {
    pub email: Option<String>,
    pub full_name: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub merchant_name: Option<String>,
    pub merchant_approval: Option<MerchantApproval>,
    pub scopes: Option<Vec<String>>,
}

const NAME_MAX: usize = validate::PERSON_NAME_MAX;
const REFERENCE_MAX: usize = 64;
const CLIENT_ID_MAX: usize = 64;
const QUERY_MAX: usize = 100;
const MAX_SCOPES: usize = 16;

pub struct Identity {
    store: Store,
    settings: Settings,
    keys: KeyRing,
    /// Argon2 takes 19 MiB and ~18 ms of a core: one thread per core computes, from a bounded queue.
    hashing: Hashing,
}

impl Identity {
    /// Loads (or on first start creates) the signing key.
    pub async fn new(store: Store, settings: Settings, kek: KeyEncryptionKey) -> Result<Self> {
        let keys = KeyRing::load(store.database(), kek).await?;
        Ok(Self {
            store,
            settings,
            keys,
            hashing: Hashing::new(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Re-reads the keys (another replica may have rotated them).
    pub async fn reload_keys(&self) -> Result<()> {
        self.keys.reload(self.store.database()).await
    }

    /// The public keys that verify tokens: the active one and retired ones still published.
    pub fn jwks(&self) -> Vec<PublicKey> {
        self.keys.published()
    }

    /// Makes a new key active; the previous one stays published until its last token has expired.
    pub async fn rotate_signing_key(&self, actor: Actor<'_>) -> Result<String> {
        actor.require_admin()?;
        let now = now_us();
        let (stored, _) = keys::generate(self.keys.kek(), now)?;
        // Other replicas pick up the new key within KEY_RELOAD; until then they still sign with the old
        // one, so it stays published for that long past the tokens' lifetime.
        let publish_until = now
            + us(self
                .settings
                .access_token_ttl
                .max(self.settings.service_token_ttl))
            + us(KEY_RELOAD) * 2;
        self.store
            .rotate_signing_key(&stored, now, publish_until)
            .await?;
        self.reload_keys().await?;
        tracing::info!(kid = %stored.kid, "signing key rotated");
        Ok(stored.kid)
    }

    /// Housekeeping: drops expired tokens and keys no longer published; reloads keys.
    pub async fn housekeeping(&self) -> Result<()> {
        let now = now_us();
        self.store.delete_expired(now).await?;
        self.store.delete_unpublished_keys(now).await?;
        self.reload_keys().await
    }

    fn sign(&self, subject: &Subject, ttl: Duration) -> Result<(String, i64)> {
        let now = now_us();
        let issued = now / 1_000_000;
        let exp = issued + ttl.as_secs() as i64;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: subject.id.clone(),
            aud: self.settings.audience.clone(),
            exp,
            iat: issued,
            nbf: issued,
            jti: uuid::Uuid::now_v7().to_string(),
            realm: subject.realm,
            scope: subject.scope.clone(),
            act: None,
            sid: None,
            name: (!subject.name.is_empty()).then(|| subject.name.clone()),
            merchant_name: subject.merchant_name.clone(),
        };
        let key = self.keys.active();
        Ok((key.sign(&claims)?, exp * 1_000_000))
    }

    async fn issue_pair(&self, principal: &Principal) -> Result<TokenPair> {
        let (access_token, access_expires_at_us) =
            self.sign(&principal.subject(), self.settings.access_token_ttl)?;
        let refresh_token = secret::generate()?;
        let now = now_us();
        let refresh_expires_at_us = now + us(self.settings.refresh_token_ttl);
        // A sign-in starts a new family; rotations keep it (see `refresh`).
        self.store
            .insert_refresh_token(
                &secret::hash(&refresh_token),
                &uuid::Uuid::now_v7().to_string(),
                &principal.id,
                now,
                refresh_expires_at_us,
            )
            .await?;
        Ok(TokenPair {
            access_token,
            access_expires_at_us,
            refresh_token,
            refresh_expires_at_us,
            principal_id: principal.id.clone(),
        })
    }

    async fn hash_password(&self, password: String) -> Result<String> {
        self.hashing.run(move || password::hash(&password)).await?
    }

    async fn verify_password(&self, password: String, stored: Option<String>) -> Result<bool> {
        self.hashing
            .run(move || password::verify(&password, stored.as_deref()))
            .await
    }

    // ---- sign-in and tokens ----

    /// Signs in. Every failure answers the same; failures are throttled per account and per address.
    pub async fn login(
        &self,
        realm: Realm,
        email: &str,
        password: &str,
        client_address: &str,
    ) -> Result<TokenPair> {
        if realm == Realm::Service {
            return Err(Error::invalid(
                "realm",
                "service accounts use IssueServiceToken",
            ));
        }
        let email = validate::required("email", email, 254)?.to_lowercase();
        if password.is_empty() {
            return Err(Error::invalid("password", "must not be empty"));
        }
        if password.chars().count() > password::MAX_LENGTH {
            return Err(Error::unauthenticated("invalid credentials"));
        }
        let account = account_key(realm.as_str(), &email);
        let address = address_key(client_address);
        let pair = pair_key(&account, &address);
        let now = now_us();
        // Blocks fall on a client address and on an account tried from one address: a stranger
        // cannot lock a named account out for everyone (docs/security.md, "Sign-in throttling").
        let throttled = self
            .store
            .throttle_rows([&pair, &address, &account])
            .await?;
        let blocked = |key: &str| {
            throttled
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, until)| *until)
                .filter(|until| *until > now)
        };
        if let Some(until) = blocked(&pair).max(blocked(&address)) {
            let seconds = (until - now + 999_999) / 1_000_000;
            return Err(Error::ResourceExhausted(format!(
                "too many failed sign-ins, try again in {seconds} seconds"
            )));
        }
        // An account failing from many addresses is slowed, not shut: every attempt on it waits.
        if blocked(&account).is_some() {
            tokio::time::sleep(ACCOUNT_SLOWDOWN).await;
        }
        let found = self.store.find_login(realm, &email).await?;
        let (principal, hash) = match found {
            Some((principal, hash)) => (Some(principal), hash),
            None => (None, None),
        };
        let password_ok = self.verify_password(password.to_owned(), hash).await?;
        let principal = match principal {
            Some(p) if password_ok && p.status == Status::Active => p,
            _ => {
                let now = now_us();
                for key in [&pair, &account] {
                    self.store
                        .record_failure(key, &self.settings.account_throttle, now)
                        .await?;
                }
                self.store
                    .record_failure(&address, &self.settings.address_throttle, now)
                    .await?;
                tracing::info!(realm = realm.as_str(), "sign-in refused");
                return Err(Error::unauthenticated("invalid credentials"));
            }
        };
        // Failures counted before are forgotten; without any (the usual case) nothing is written.
        let counted: Vec<&str> = [pair.as_str(), account.as_str()]
            .into_iter()
            .filter(|key| throttled.iter().any(|(k, _)| k == key))
            .collect();
        if !counted.is_empty() {
            self.store.clear_failures(&counted).await?;
        }
        tracing::info!(principal_id = %principal.id, realm = realm.as_str(), "signed in");
        self.issue_pair(&principal).await
    }

    /// Spends a refresh token for a new pair. A spent token presented again revokes its family.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let refused = || Error::unauthenticated("invalid refresh token");
        if refresh_token.is_empty() {
            return Err(Error::invalid("refresh_token", "must not be empty"));
        }
        if refresh_token.len() > secret::MAX_PRESENTED_LENGTH {
            return Err(refused());
        }
        let new_token = secret::generate()?;
        let now = now_us();
        let expires = now + us(self.settings.refresh_token_ttl);
        match self
            .store
            .rotate_refresh_token(
                &secret::hash(refresh_token),
                &secret::hash(&new_token),
                now,
                expires,
            )
            .await?
        {
            Rotation::Rotated { subject } => {
                let (access_token, access_expires_at_us) =
                    self.sign(&subject, self.settings.access_token_ttl)?;
                Ok(TokenPair {
                    access_token,
                    access_expires_at_us,
                    refresh_token: new_token,
                    refresh_expires_at_us: expires,
                    principal_id: subject.id,
                })
            }
            Rotation::Reused => {
                tracing::warn!("spent refresh token presented again; its family is revoked");
                Err(refused())
            }
            Rotation::Invalid => Err(refused()),
        }
    }

    /// Revokes a refresh token's family. Holding the token is the authority; unknown tokens are fine.
    pub async fn revoke_refresh_token(&self, refresh_token: &str) -> Result<()> {
        if refresh_token.is_empty() {
            return Err(Error::invalid("refresh_token", "must not be empty"));
        }
        if refresh_token.len() <= secret::MAX_PRESENTED_LENGTH {
            self.store
                .revoke_refresh_family(&secret::hash(refresh_token), now_us())
                .await?;
        }
        Ok(())
    }

    /// Logs a principal out everywhere.
    pub async fn revoke_all_refresh_tokens(
        &self,
        actor: Actor<'_>,
        principal_id: &str,
    ) -> Result<u64> {
        let id = validate::id("principal_id", principal_id)?.to_string();
        actor.require_self_or_admin(&id)?;
        self.store.revoke_all_refresh_tokens(&id, now_us()).await
    }

    /// A short-lived token for a service account.
    pub async fn issue_service_token(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<(String, i64)> {
        let refused = || Error::unauthenticated("invalid client credentials");
        let client_id = validate::required("client_id", client_id, CLIENT_ID_MAX)?;
        if client_secret.is_empty() {
            return Err(Error::invalid("client_secret", "must not be empty"));
        }
        if client_secret.len() > secret::MAX_PRESENTED_LENGTH {
            return Err(refused());
        }
        let Some((principal, Some(stored))) = self.store.find_service_account(&client_id).await?
        else {
            return Err(refused());
        };
        let presented = secret::hash(client_secret);
        if !constant_time_eq(presented.as_bytes(), stored.as_bytes())
            || principal.status != Status::Active
        {
            return Err(refused());
        }
        self.sign(&principal.subject(), self.settings.service_token_ttl)
    }

    // ---- principals ----

    pub async fn create_back_office_user(
        &self,
        actor: Actor<'_>,
        input: PrincipalInput,
    ) -> Result<Principal> {
        actor.require_admin_or(permission::PRINCIPALS_WRITE)?;
        let email = validate::email("email", &input.email)?;
        let full_name = validate::required("full_name", &input.full_name, NAME_MAX)?;
        let scopes = validate_scopes(&input.scopes)?;
        actor.require_admin_if(scopes.iter().any(|s| s == ADMIN_SCOPE))?;
        let invited = input.password.is_empty();
        if !invited && input.send_invitation {
            return Err(Error::invalid(
                "password",
                "must be empty when sending an invitation",
            ));
        }
        let kind = PrincipalKind::BackOfficeUser { full_name };
        let principal = self
            .create(
                kind,
                email,
                &scopes,
                &input.password,
                if invited {
                    Status::Invited
                } else {
                    Status::Active
                },
            )
            .await?;
        if input.send_invitation {
            self.issue_one_time_token(actor, &principal.id, Purpose::Invitation)
                .await?;
        }
        Ok(principal)
    }

    pub async fn create_customer(
        &self,
        actor: Actor<'_>,
        input: PrincipalInput,
    ) -> Result<Principal> {
        actor.require_admin()?;
        let email = validate::email("email", &input.email)?;
        let first_name = validate::required("first_name", &input.first_name, NAME_MAX)?;
        let last_name = validate::required("last_name", &input.last_name, NAME_MAX)?;
        let customer_reference = match validate::optional(
            "customer_reference",
            &input.customer_reference,
            REFERENCE_MAX,
        )? {
            reference if reference.is_empty() => self.next_customer_reference().await?,
            reference => normalize_reference(&reference)?,
        };
        let kind = PrincipalKind::Customer {
            customer_reference,
            first_name,
            last_name,
        };
        self.create(kind, email, &[], &input.password, Status::Active)
            .await
    }

    pub async fn create_merchant_user(
        &self,
        actor: Actor<'_>,
        input: PrincipalInput,
    ) -> Result<Principal> {
        actor.require_admin()?;
        let email = validate::email("email", &input.email)?;
        let kind = PrincipalKind::MerchantUser {
            merchant_id: validate::required("merchant_id", &input.merchant_id, REFERENCE_MAX)?,
            merchant_name: validate::required("merchant_name", &input.merchant_name, NAME_MAX)?,
            merchant_approval: input
                .merchant_approval
                .unwrap_or(MerchantApproval::Approved),
            first_name: validate::required("first_name", &input.first_name, NAME_MAX)?,
            last_name: validate::required("last_name", &input.last_name, NAME_MAX)?,
        };
        self.create(kind, email, &[], &input.password, Status::Active)
            .await
    }

    /// Creates a service account; its secret is returned once.
    pub async fn create_service_account(
        &self,
        actor: Actor<'_>,
        client_id: &str,
        scopes: &[String],
    ) -> Result<(Principal, String)> {
        actor.require_admin()?;
        let client_id = validate::required("client_id", client_id, CLIENT_ID_MAX)?;
        if !valid_scope(&client_id) {
            return Err(Error::invalid(
                "client_id",
                "must be lowercase letters, digits, '.', '_', ':' or '-'",
            ));
        }
        let scopes = validate_scopes(scopes)?;
        if let Some(unknown) = scopes
            .iter()
            .find(|s| !permission::ALL.contains(&s.as_str()))
        {
            return Err(Error::invalid(
                "scopes",
                format!(
                    "{unknown:?} is not a service permission (one of {})",
                    permission::ALL.join(", ")
                ),
            ));
        }
        let client_secret = secret::generate()?;
        let now = now_us();
        let principal = Principal {
            id: uuid::Uuid::now_v7().to_string(),
            status: Status::Active,
            email: String::new(),
            scope: scope_for(Realm::Service, &scopes),
            kind: PrincipalKind::ServiceAccount { client_id },
            created_at_us: now,
            updated_at_us: now,
        };
        let new = NewPrincipal {
            principal,
            password_hash: Some(secret::hash(&client_secret)),
        };
        self.store.create_principal(&new, &[]).await?;
        Ok((new.principal, client_secret))
    }

    async fn create(
        &self,
        kind: PrincipalKind,
        email: String,
        scopes: &[String],
        password: &str,
        status: Status,
    ) -> Result<Principal> {
        let password_hash = if password.is_empty() {
            if status == Status::Active {
                return Err(Error::invalid("password", "must not be empty"));
            }
            None
        } else {
            password::check_policy("password", password)?;
            Some(self.hash_password(password.to_owned()).await?)
        };
        let now = now_us();
        let realm = kind.realm();
        let principal = Principal {
            id: uuid::Uuid::now_v7().to_string(),
            status,
            email,
            scope: scope_for(realm, scopes),
            kind,
            created_at_us: now,
            updated_at_us: now,
        };
        let terms = terms_of(&principal);
        let new = NewPrincipal {
            principal,
            password_hash,
        };
        self.store.create_principal(&new, &terms).await?;
        tracing::info!(principal_id = %new.principal.id, realm = realm.as_str(), "principal created");
        Ok(new.principal)
    }

    /// The next generated customer reference, such as `DE--42`.
    pub async fn next_customer_reference(&self) -> Result<String> {
        let n = self.store.next_sequence("customer_reference").await?;
        Ok(format!("{}{n}", self.settings.customer_reference_prefix))
    }

    pub async fn update_principal(
        &self,
        actor: Actor<'_>,
        id: &str,
        update: PrincipalUpdate,
    ) -> Result<Principal> {
        actor.require_admin()?;
        let mut principal = self.get(id).await?;
        let mut revoke = false;
        if let Some(email) = &update.email {
            if principal.realm() == Realm::Service {
                return Err(Error::invalid("email", "service accounts have no email"));
            }
            principal.email = validate::email("email", email)?;
        }
        match &mut principal.kind {
            PrincipalKind::BackOfficeUser { full_name } => {
                if let Some(name) = &update.full_name {
                    *full_name = validate::required("full_name", name, NAME_MAX)?;
                }
            }
            PrincipalKind::Customer {
                first_name,
                last_name,
                ..
            } => {
                set_name(first_name, "first_name", &update.first_name)?;
                set_name(last_name, "last_name", &update.last_name)?;
            }
            PrincipalKind::MerchantUser {
                first_name,
                last_name,
                merchant_name,
                merchant_approval,
                ..
            } => {
                set_name(first_name, "first_name", &update.first_name)?;
                set_name(last_name, "last_name", &update.last_name)?;
                set_name(merchant_name, "merchant_name", &update.merchant_name)?;
                if let Some(approval) = update.merchant_approval {
                    *merchant_approval = approval;
                }
            }
            PrincipalKind::ServiceAccount { .. } => {}
        }
        if let Some(scopes) = &update.scopes {
            if !matches!(principal.realm(), Realm::BackOffice | Realm::Service) {
                return Err(Error::invalid(
                    "scopes",
                    "only back-office users and service accounts have scopes",
                ));
            }
            let scope = scope_for(principal.realm(), &validate_scopes(scopes)?);
            // New scopes must not ride on old refresh tokens' sessions: sign in again.
            revoke = scope != principal.scope;
            principal.scope = scope;
        }
        let now = now_us();
        principal.updated_at_us = now;
        let terms = terms_of(&principal);
        self.store
            .update_principal(&principal, &terms, revoke, now)
            .await?;
        Ok(principal)
    }

    pub async fn get_principal(&self, actor: Actor<'_>, id: &str) -> Result<Principal> {
        let id = validate::id("id", id)?.to_string();
        actor.require_self_or(&id, permission::PRINCIPALS_READ)?;
        self.get(&id).await
    }

    /// A caller's claims as the principal stands now: the token's subject must still exist, be
    /// active and hold the token's realm, and the token keeps only the scopes the principal still
    /// holds. So a blocked, removed or demoted user loses every right at once, not when the token
    /// expires (docs/security.md, "Rights from current state").
    pub async fn as_it_is_now(&self, claims: Claims) -> Result<Claims> {
        match self.store.get_principal(&claims.sub).await? {
            Some(principal)
                if principal.status == Status::Active && principal.realm() == claims.realm =>
            {
                Ok(claims.limited_to(&principal.scope))
            }
            _ => Err(Error::unauthenticated(
                "the token's principal is no longer active",
            )),
        }
    }

    async fn get(&self, id: &str) -> Result<Principal> {
        let id = validate::id("id", id)?.to_string();
        self.store
            .get_principal(&id)
            .await?
            .ok_or(Error::NotFound("principal"))
    }

    pub async fn list_principals(
        &self,
        actor: Actor<'_>,
        realm: Realm,
        status: Option<Status>,
        page: Page,
    ) -> Result<Paged<Principal>> {
        actor.require_admin()?;
        self.store.list_principals(realm, status, page).await
    }

    /// Blocks, unblocks, deactivates or deletes. Any status but `active` revokes refresh tokens.
    pub async fn set_status(
        &self,
        actor: Actor<'_>,
        id: &str,
        status: Status,
    ) -> Result<Principal> {
        actor.require_admin_or(permission::PRINCIPALS_WRITE)?;
        let principal = self.get(id).await?;
        // A service changes the status of back-office users only, and never reactivates an
        // administrator.
        actor.require_admin_if(
            principal.realm() != Realm::BackOffice
                || (status == Status::Active && principal_is_admin(&principal)),
        )?;
        if !status.allowed_for(principal.realm()) {
            return Err(Error::invalid(
                "status",
                format!("not allowed for {}", principal.realm().as_str()),
            ));
        }
        if principal.status == Status::Invited && status == Status::Active {
            return Err(Error::FailedPrecondition(
                "an invited principal becomes active by redeeming its invitation".into(),
            ));
        }
        self.store
            .set_status(&principal.id, status, now_us())
            .await?;
        tracing::info!(principal_id = %principal.id, status = status.as_str(), "status changed");
        self.get(&principal.id).await
    }

    /// Admin or service: the notices of status changes, and the principal each names (`None` when it
    /// is gone).
    pub fn principal_changes(&self, actor: Actor<'_>) -> Result<&Notifier> {
        actor.require_admin_or(permission::PRINCIPALS_READ)?;
        Ok(self.store.principal_changes())
    }

    /// A principal as a change watcher sees it; for callers already checked by `principal_changes`.
    pub async fn changed_principal(&self, id: &str) -> Result<Option<Principal>> {
        match self.get(id).await {
            Ok(principal) => Ok(Some(principal)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Sets a password directly; every refresh token of the principal is revoked.
    pub async fn set_password(&self, actor: Actor<'_>, id: &str, new_password: &str) -> Result<()> {
        actor.require_admin()?;
        let principal = self.get(id).await?;
        if principal.realm() == Realm::Service {
            return Err(Error::invalid(
                "id",
                "service accounts have a secret, not a password",
            ));
        }
        password::check_policy("password", new_password)?;
        let hash = self.hash_password(new_password.to_owned()).await?;
        self.store
            .set_password(&principal.id, &hash, now_us())
            .await
    }

    // ---- one-time tokens ----

    /// Creates an invitation or reset token and writes its mail to the outbox (sent over SMTP when
    /// configured). Only the mail carries the token; the store keeps its hash.
    pub async fn issue_one_time_token(
        &self,
        actor: Actor<'_>,
        principal_id: &str,
        purpose: Purpose,
    ) -> Result<(String, i64)> {
        actor.require_admin_or(permission::PRINCIPALS_WRITE)?;
        let principal = self.get(principal_id).await?;
        // A service sends links to back-office users only, and never a reset to an administrator.
        actor.require_admin_if(
            principal.realm() != Realm::BackOffice || principal_is_admin(&principal),
        )?;
        match (purpose, principal.status) {
            (_, _) if principal.realm() == Realm::Service => {
                return Err(Error::invalid(
                    "principal_id",
                    "service accounts cannot receive mail",
                ));
            }
            (Purpose::Invitation, Status::Invited) | (Purpose::PasswordReset, Status::Active) => {}
            (Purpose::Invitation, _) => {
                return Err(Error::FailedPrecondition(
                    "only invited principals can be sent an invitation".into(),
                ));
            }
            (Purpose::PasswordReset, _) => {
                return Err(Error::FailedPrecondition(
                    "only active principals can reset a password".into(),
                ));
            }
        }
        let token = secret::generate()?;
        let now = now_us();
        let (ttl, subject, path) = match purpose {
            Purpose::Invitation => (
                self.settings.invitation_ttl,
                "You are invited to Agent Assist",
                "set-password",
            ),
            Purpose::PasswordReset => (
                self.settings.password_reset_ttl,
                "Reset your Agent Assist password",
                "reset-password",
            ),
        };
        let expires_at = now + us(ttl);
        let link = format!(
            "{}/{path}?token={token}",
            self.settings.public_url.trim_end_matches('/')
        );
        let hours = ttl.as_secs().div_ceil(3600);
        let body = format!(
            "Hello {name},\n\nOpen this link to set your password:\n\n{link}\n\nThe link works once and \
             expires in {hours} hour(s). If you did not expect this mail, ignore it.\n",
            name = principal.display_name(),
        );
        let mail = OutboxMessage {
            id: uuid::Uuid::now_v7().to_string(),
            recipient: principal.email.clone(),
            subject: subject.into(),
            body,
            created_at: now,
            sent_at: None,
        };
        let record = OneTimeToken {
            token_hash: &secret::hash(&token),
            principal_id: &principal.id,
            purpose,
            now,
            expires_at,
        };
        self.store.issue_one_time_token(&record, &mail).await?;
        tracing::info!(principal_id = %principal.id, purpose = purpose.as_str(), outbox_id = %mail.id, "mail queued");
        Ok((mail.id, expires_at))
    }

    /// Redeems a one-time token by setting a password. Unknown, spent and expired tokens answer alike.
    pub async fn redeem_one_time_token(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<(String, Purpose)> {
        if token.is_empty() {
            return Err(Error::invalid("token", "must not be empty"));
        }
        password::check_policy("new_password", new_password)?;
        let refused = || Error::FailedPrecondition("the link is invalid or has expired".into());
        if token.len() > secret::MAX_PRESENTED_LENGTH {
            return Err(refused());
        }
        let token_hash = secret::hash(token);
        // Unknown, spent and expired links are refused before any hashing: a flood of made-up links
        // costs a lookup each, not an argon2 computation.
        if !self
            .store
            .one_time_token_usable(&token_hash, now_us())
            .await?
        {
            return Err(refused());
        }
        let hash = self.hash_password(new_password.to_owned()).await?;
        self.store
            .redeem_one_time_token(&token_hash, &hash, now_us())
            .await?
            .ok_or_else(refused)
    }

    pub async fn list_outbox(
        &self,
        actor: Actor<'_>,
        recipient: &str,
        page: Page,
    ) -> Result<Paged<OutboxMessage>> {
        actor.require_admin()?;
        let recipient = match recipient.trim() {
            "" => None,
            r => Some(validate::email("recipient", r)?),
        };
        let mut listed = self.store.list_outbox(recipient.as_deref(), page).await?;
        let held: Vec<&str> = listed
            .items
            .iter()
            .filter(|m| m.sent_at.is_none())
            .map(|m| m.id.as_str())
            .collect();
        if held.is_empty() {
            return Ok(listed);
        }
        // With a relay, the relay delivers it and nobody else sees the link; without one, this
        // listing shows the links it was the one to hand over, and no other.
        let (taken, withheld) = if self.settings.mail_relay {
            (
                Vec::new(),
                "(waiting for delivery over SMTP; the link is shown to nobody)",
            )
        } else {
            let taken = self.store.hand_over_mail(&held, now_us()).await?;
            (taken, "(shown to an administrator; the link is not kept)")
        };
        for message in listed.items.iter_mut().filter(|m| m.sent_at.is_none()) {
            if !taken.contains(&message.id) {
                message.body = withheld.into();
            }
        }
        Ok(listed)
    }

    // ---- search ----

    /// Customers whose email, first name, last name or "first last" starts with the query
    /// (case-insensitive), and the customer whose reference is exactly the query, first.
    pub async fn search_customers(
        &self,
        actor: Actor<'_>,
        query: &str,
        page: Page,
    ) -> Result<Paged<Principal>> {
        actor.require_back_office()?;
        let query = validate::optional("query", query, QUERY_MAX)?;
        let prefix = search::normalize(&query);
        check_search_page(&prefix, page)?;
        let reference = normalize_reference(&query).ok();
        self.store
            .search(
                Realm::Customer,
                &SearchQuery {
                    prefix: &prefix,
                    reference: reference.as_deref().filter(|r| !r.is_empty()),
                    status: None,
                    page,
                },
            )
            .await
    }

    /// Merchant users by merchant name, first name, last name or email prefix, optionally one status.
    pub async fn search_merchant_users(
        &self,
        actor: Actor<'_>,
        query: &str,
        status: Option<Status>,
        page: Page,
    ) -> Result<Paged<Principal>> {
        actor.require_back_office()?;
        let query = validate::optional("query", query, QUERY_MAX)?;
        let prefix = search::normalize(&query);
        check_search_page(&prefix, page)?;
        self.store
            .search(
                Realm::MerchantUser,
                &SearchQuery {
                    prefix: &prefix,
                    reference: None,
                    status,
                    page,
                },
            )
            .await
    }
}

/// The search terms of a principal, per its kind.
pub fn terms_of(principal: &Principal) -> Vec<String> {
    match &principal.kind {
        PrincipalKind::Customer {
            first_name,
            last_name,
            ..
        } => search::person_terms(&principal.email, first_name, last_name),
        PrincipalKind::MerchantUser {
            first_name,
            last_name,
            merchant_name,
            ..
        } => search::merchant_user_terms(&principal.email, first_name, last_name, merchant_name),
        PrincipalKind::BackOfficeUser { .. } | PrincipalKind::ServiceAccount { .. } => Vec::new(),
    }
}

/// Customer references are case-insensitive identifiers, stored uppercase: letters, digits and '-'.
fn normalize_reference(reference: &str) -> Result<String> {
    let reference = reference.trim().to_uppercase();
    if reference.is_empty()
        || reference.len() > REFERENCE_MAX
        || !reference
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::invalid(
            "customer_reference",
            "must be letters, digits, '-' or '_'",
        ));
    }
    Ok(reference)
}

/// Search pages end at the search cap: deeper, the query needs refining, not paging. Listing everyone
/// (an empty query) pages as deep as any list.
fn check_search_page(prefix: &str, page: Page) -> Result<()> {
    if !prefix.is_empty() && page.offset + u64::from(page.limit) > search::SEARCH_CAP {
        return Err(Error::invalid(
            "page.offset",
            format!(
                "search results are paged up to {}; refine the query",
                search::SEARCH_CAP
            ),
        ));
    }
    Ok(())
}

fn principal_is_admin(principal: &Principal) -> bool {
    principal.scope.split(' ').any(|s| s == ADMIN_SCOPE)
}

fn validate_scopes(scopes: &[String]) -> Result<Vec<String>> {
    if scopes.len() > MAX_SCOPES {
        return Err(Error::invalid("scopes", format!("at most {MAX_SCOPES}")));
    }
    for scope in scopes {
        if !valid_scope(scope) {
            return Err(Error::invalid(
                "scopes",
                format!("{scope:?} is not a valid scope"),
            ));
        }
    }
    Ok(scopes.to_vec())
}

fn set_name(target: &mut String, field: &'static str, value: &Option<String>) -> Result<()> {
    if let Some(value) = value {
        *target = validate::required(field, value, NAME_MAX)?;
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
