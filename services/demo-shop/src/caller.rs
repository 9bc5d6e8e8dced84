//! Who is asking: the bearer token of each request checked with the shop's `AuthPolicy` (identity's and
//! the impersonation service's tokens; an impersonation token only while its session is live, and never
//! on a sensitive path), before any page runs. No `Authorization` header is a guest.

use std::sync::Arc;

use assist_runtime::Error;
use assist_runtime::auth::{Admitted, Realm, bearer};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, header};

use crate::AppState;
use crate::html::Refusal;

/// The caller of one request, put in its extensions by [`authenticate`].
#[derive(Debug, Clone)]
pub enum Caller {
    Guest,
    Signed(SignedIn),
}

/// A principal whose token was admitted. For an impersonation token this is the assisted principal
/// (`sub` and `realm` are the target's).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: String,
    pub realm: Realm,
    /// The agent acting for them, when the token is an impersonation token.
    pub assisted_by: Option<String>,
    /// Their name and merchant as the token says (its `name` and `merchant_name` claims): the shop
    /// reads no principals.
    pub name: Option<String>,
    pub merchant_name: Option<String>,
}

impl Caller {
    /// The signed-in customer (own token or assisted); `None` for guests and other realms.
    pub fn customer(&self) -> Option<&SignedIn> {
        self.in_realm(Realm::Customer)
    }

    /// The signed-in merchant user, or the merchant portal's 401.
    pub fn merchant_user(&self) -> Result<&SignedIn, Refusal> {
        self.in_realm(Realm::MerchantUser)
            .ok_or_else(|| Refusal::sign_in("Sign in to the merchant portal"))
    }

    fn in_realm(&self, realm: Realm) -> Option<&SignedIn> {
        match self {
            Caller::Signed(signed) if signed.realm == realm => Some(signed),
            _ => None,
        }
    }
}

impl From<Admitted> for SignedIn {
    fn from(admitted: Admitted) -> Self {
        let claims = admitted.claims;
        Self {
            id: claims.sub,
            realm: claims.realm,
            assisted_by: claims.act.map(|actor| actor.sub),
            name: claims.name,
            merchant_name: claims.merchant_name,
        }
    }
}

/// Middleware: admits the request's token (or refuses with a 401, 403 or 503 page) and records the
/// [`Caller`] for the handlers. `/healthz` is left alone.
pub async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/healthz" {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    match caller(&state, request.headers(), &method, &path).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    path: &str,
) -> Result<Caller, Refusal> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(Caller::Guest);
    }
    let token = bearer(headers).ok_or_else(|| Refusal::sign_in("Your sign-in is not valid."))?;
    let ready = state.ready.get().ok_or_else(Refusal::unavailable)?;
    let admitted = ready
        .policy
        .admit(token, method.as_str(), path)
        .await
        .map_err(refusal_of)?;
    Ok(Caller::Signed(admitted.into()))
}

/// The page for a token the policy did not admit.
fn refusal_of(error: Error) -> Refusal {
    match error {
        Error::PermissionDenied(_) => Refusal::while_assisting(),
        Error::Unavailable(_) => Refusal::unavailable(),
        Error::Unauthenticated(_) => {
            Refusal::sign_in("Your sign-in is not valid or has ended; sign in again.")
        }
        other => {
            tracing::error!(error = %other, "checking a token failed");
            Refusal::unavailable()
        }
    }
}
