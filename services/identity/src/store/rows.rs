//! Row types of the identity tables and their conversion to domain types.

use assist_runtime::auth::Realm;
use assist_runtime::{Error, Result};

use crate::domain::{MerchantApproval, Principal, PrincipalKind, Status};

#[derive(Debug, sqlx::FromRow)]
pub(super) struct PrincipalRow {
    pub id: String,
    pub realm: String,
    pub status: String,
    pub email: Option<String>,
    pub scope: String,
    pub full_name: String,
    pub first_name: String,
    pub last_name: String,
    pub customer_reference: Option<String>,
    pub merchant_id: Option<String>,
    pub merchant_name: Option<String>,
    pub merchant_approval: Option<String>,
    pub client_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(super) struct LoginRow {
    #[sqlx(flatten)]
    pub principal: PrincipalRow,
    pub password_hash: Option<String>,
}

impl PrincipalRow {
    pub fn from_principal(p: &Principal) -> Self {
        let mut row = PrincipalRow {
            id: p.id.clone(),
            realm: p.realm().as_str().to_owned(),
            status: p.status.as_str().to_owned(),
            email: (!p.email.is_empty()).then(|| p.email.clone()),
            scope: p.scope.clone(),
            full_name: String::new(),
            first_name: String::new(),
            last_name: String::new(),
            customer_reference: None,
            merchant_id: None,
            merchant_name: None,
            merchant_approval: None,
            client_id: None,
            created_at: p.created_at_us,
            updated_at: p.updated_at_us,
        };
        match &p.kind {
            PrincipalKind::BackOfficeUser { full_name } => row.full_name = full_name.clone(),
            PrincipalKind::Customer {
                customer_reference,
                first_name,
                last_name,
            } => {
                row.customer_reference = Some(customer_reference.clone());
                row.first_name = first_name.clone();
                row.last_name = last_name.clone();
            }
            PrincipalKind::MerchantUser {
                merchant_id,
                merchant_name,
                merchant_approval,
                first_name,
                last_name,
            } => {
                row.merchant_id = Some(merchant_id.clone());
                row.merchant_name = Some(merchant_name.clone());
                row.merchant_approval = Some(merchant_approval.as_str().to_owned());
                row.first_name = first_name.clone();
                row.last_name = last_name.clone();
            }
            PrincipalKind::ServiceAccount { client_id } => row.client_id = Some(client_id.clone()),
        }
        row
    }

    pub fn into_principal(self) -> Result<Principal> {
        let corrupt =
            |what: &str| Error::internal(anyhow::anyhow!("principal {}: bad {what}", self.id));
        let realm = Realm::parse(&self.realm).ok_or_else(|| corrupt("realm"))?;
        let status = Status::parse(&self.status).ok_or_else(|| corrupt("status"))?;
        let kind = match realm {
            Realm::BackOffice => PrincipalKind::BackOfficeUser {
                full_name: self.full_name,
            },
            Realm::Customer => PrincipalKind::Customer {
                customer_reference: self.customer_reference.unwrap_or_default(),
                first_name: self.first_name,
                last_name: self.last_name,
            },
            Realm::MerchantUser => PrincipalKind::MerchantUser {
                merchant_id: self.merchant_id.unwrap_or_default(),
                merchant_name: self.merchant_name.unwrap_or_default(),
                merchant_approval: MerchantApproval::from_column(
                    self.merchant_approval.as_deref(),
                )?
                .unwrap_or(MerchantApproval::Approved),
                first_name: self.first_name,
                last_name: self.last_name,
            },
            Realm::Service => PrincipalKind::ServiceAccount {
                client_id: self.client_id.unwrap_or_default(),
            },
        };
        Ok(Principal {
            id: self.id,
            status,
            email: self.email.unwrap_or_default(),
            scope: self.scope,
            kind,
            created_at_us: self.created_at,
            updated_at_us: self.updated_at,
        })
    }
}

/// A mail in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxMessage {
    pub id: String,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}
