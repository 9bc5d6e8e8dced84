//! Who a principal is by name: identity's `GetPrincipal`, called with the shop's service token and
//! remembered in memory. When identity cannot answer, the id stands in for the name (and nothing is
//! remembered, so the next page asks again).

use std::collections::HashMap;
use std::sync::RwLock;

use assist_proto::identity::v1 as idp;
use assist_proto::identity::v1::identity_client::IdentityClient;
use assist_runtime::client::Outgoing;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

/// Identity, called with the shop's service token.
pub type Identity = IdentityClient<InterceptedService<Channel, Outgoing>>;

/// Past this many remembered names the memory starts over.
const CACHE_LIMIT: usize = 10_000;

/// What a page shows about a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// "First Last" (or the id when identity could not say).
    pub name: String,
    /// The merchant's name, for merchant users.
    pub merchant: Option<String>,
}

/// Names of principals, looked up once.
pub struct Names {
    identity: Identity,
    known: RwLock<HashMap<String, Person>>,
}

impl Names {
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// The name of principal `id`.
    pub async fn of(&self, id: &str) -> Person {
        if let Some(person) = self.known.read().expect("names poisoned").get(id) {
            return person.clone();
        }
        match self.look_up(id).await {
            Some(person) => {
                let mut known = self.known.write().expect("names poisoned");
                if known.len() >= CACHE_LIMIT {
                    known.clear();
                }
                known.insert(id.to_owned(), person.clone());
                person
            }
            None => Person {
                name: id.to_owned(),
                merchant: None,
            },
        }
    }

    async fn look_up(&self, id: &str) -> Option<Person> {
        let request = idp::GetPrincipalRequest { id: id.to_owned() };
        match self.identity.clone().get_principal(request).await {
            Ok(reply) => person_of(reply.into_inner()),
            Err(status) => {
                tracing::warn!(error = %status.message(), "cannot read a principal's name");
                None
            }
        }
    }
}

/// The name a page shows for `principal`; `None` when it has none worth showing.
fn person_of(principal: idp::Principal) -> Option<Person> {
    use idp::principal::Kind;
    let (first, last, merchant) = match principal.kind? {
        Kind::Customer(customer) => (customer.first_name, customer.last_name, None),
        Kind::MerchantUser(user) => (user.first_name, user.last_name, Some(user.merchant_name)),
        Kind::BackOfficeUser(user) => (user.full_name, String::new(), None),
        Kind::ServiceAccount(account) => (account.client_id, String::new(), None),
    };
    let name = format!("{first} {last}").trim().to_owned();
    (!name.is_empty()).then_some(Person { name, merchant })
}
