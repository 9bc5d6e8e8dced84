//! Least privilege between services, cell by cell: each of the platform's service accounts (with the
//! permissions `assist up` grants it) calls each RPC a service could want, over real gRPC, and is
//! refused (PERMISSION_DENIED) exactly where the table of docs/security.md says so. The expected table
//! is written out here, not derived from the grants, so a widened grant fails the test.

use assist_proto::agentdirectory::v1 as dir;
use assist_proto::identity::v1 as idp;
use assist_proto::impersonation::v1 as pb;
use assist_proto::routing::v1 as rt;
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{Platform, authed};
use tonic::Code;

const ACCOUNTS: &[&str] = &[
    "gateway",
    "agent-directory",
    "impersonation-token",
    "routing",
    "demo-shop",
];

/// Each RPC (one call of it) and the accounts that may make it; every other account is refused.
const TABLE: &[(&str, &[&str])] = &[
    (
        "identity.GetPrincipal",
        &["gateway", "agent-directory", "impersonation-token"],
    ),
    (
        "identity.SearchCustomers",
        &["gateway", "agent-directory", "impersonation-token"],
    ),
    (
        "identity.WatchPrincipalChanges",
        &["gateway", "agent-directory", "impersonation-token"],
    ),
    ("identity.CreateBackOfficeUser", &["agent-directory"]),
    ("identity.CreateBackOfficeUser(admin)", &[]),
    ("identity.CreateCustomer", &[]),
    ("identity.SetPassword", &[]),
    ("identity.ListOutbox", &[]),
    ("identity.ListPrincipals", &[]),
    ("identity.CreateServiceAccount", &[]),
    (
        "agents.GetAgent",
        &["gateway", "impersonation-token", "routing"],
    ),
    (
        "agents.ListAgents",
        &["gateway", "impersonation-token", "routing"],
    ),
    (
        "agents.WatchAgents",
        &["gateway", "impersonation-token", "routing"],
    ),
    ("agents.GrantCapability", &[]),
    ("impersonation.CheckSession", &["gateway", "demo-shop"]),
    ("impersonation.WatchRevocations", &["gateway", "demo-shop"]),
    ("impersonation.RecordActions", &["gateway"]),
    ("impersonation.ListSessions", &[]),
    ("routing.ListConversations", &[]),
];

/// Calls `rpc` with `token`; the status code it answers (`Ok` for success).
async fn call(platform: &Platform, rpc: &str, token: &str, n: usize) -> Code {
    let admin_id = platform.admin.id.clone();
    let random = uuid::Uuid::now_v7().to_string();
    let email = format!("cell-{n}@example.com");
    let code = |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |s| s.code());
    let mut identity = platform.identity_client();
    let mut agents = platform.agents_client();
    let mut impersonation = platform.impersonation_client(0);
    match rpc {
        "identity.GetPrincipal" => code(
            identity
                .get_principal(authed(token, idp::GetPrincipalRequest { id: admin_id }))
                .await
                .map(drop),
        ),
        "identity.SearchCustomers" => code(
            identity
                .search_customers(authed(
                    token,
                    idp::SearchCustomersRequest {
                        query: "a".into(),
                        page: None,
                    },
                ))
                .await
                .map(drop),
        ),
        "identity.WatchPrincipalChanges" => code(
            identity
                .watch_principal_changes(authed(token, idp::WatchPrincipalChangesRequest {}))
                .await
                .map(drop),
        ),
        "identity.CreateBackOfficeUser" | "identity.CreateBackOfficeUser(admin)" => code(
            identity
                .create_back_office_user(authed(
                    token,
                    idp::CreateBackOfficeUserRequest {
                        email,
                        full_name: "Cell User".into(),
                        password: "a long enough password 1".into(),
                        scopes: if rpc.ends_with("(admin)") {
                            vec!["admin".into()]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        ),
        "identity.CreateCustomer" => code(
            identity
                .create_customer(authed(
                    token,
                    idp::CreateCustomerRequest {
                        email,
                        first_name: "Cell".into(),
                        last_name: "Customer".into(),
                        password: "a long enough password 1".into(),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        ),
        "identity.SetPassword" => code(
            identity
                .set_password(authed(
                    token,
                    idp::SetPasswordRequest {
                        id: admin_id,
                        password: "a long enough password 2".into(),
                    },
                ))
                .await
                .map(drop),
        ),
        "identity.ListOutbox" => code(
            identity
                .list_outbox(authed(token, idp::ListOutboxRequest::default()))
                .await
                .map(drop),
        ),
        "identity.ListPrincipals" => code(
            identity
                .list_principals(authed(
                    token,
                    idp::ListPrincipalsRequest {
                        realm: idp::Realm::BackOffice as i32,
                        ..Default::default()
                    },
                ))
                .await
                .map(drop),
        ),
        "identity.CreateServiceAccount" => code(
            identity
                .create_service_account(authed(
                    token,
                    idp::CreateServiceAccountRequest {
                        client_id: format!("cell-{n}"),
                        scopes: vec![],
                    },
                ))
                .await
                .map(drop),
        ),
        "agents.GetAgent" => code(
            agents
                .get_agent(authed(token, dir::GetAgentRequest { id: admin_id }))
                .await
                .map(drop),
        ),
        "agents.ListAgents" => code(
            agents
                .list_agents(authed(token, dir::ListAgentsRequest::default()))
                .await
                .map(drop),
        ),
        "agents.WatchAgents" => code(
            agents
                .watch_agents(authed(token, dir::WatchAgentsRequest {}))
                .await
                .map(drop),
        ),
        "agents.GrantCapability" => code(
            agents
                .grant_capability(authed(
                    token,
                    dir::ChangeCapabilityRequest {
                        agent_id: admin_id,
                        capability: dir::Capability::AssistCustomers as i32,
                    },
                ))
                .await
                .map(drop),
        ),
        "impersonation.CheckSession" => code(
            impersonation
                .check_session(authed(
                    token,
                    pb::CheckSessionRequest { session_id: random },
                ))
                .await
                .map(drop),
        ),
        "impersonation.WatchRevocations" => code(
            impersonation
                .watch_revocations(authed(token, pb::WatchRevocationsRequest {}))
                .await
                .map(drop),
        ),
        "impersonation.RecordActions" => code(
            impersonation
                .record_actions(authed(
                    token,
                    pb::RecordActionsRequest {
                        actions: vec![pb::RecordActionRequest {
                            session_id: random,
                            method: "GET".into(),
                            target: "/cart".into(),
                            outcome: "OK".into(),
                            ..Default::default()
                        }],
                    },
                ))
                .await
                .map(drop),
        ),
        "impersonation.ListSessions" => code(
            impersonation
                .list_sessions(authed(token, pb::ListSessionsRequest::default()))
                .await
                .map(drop),
        ),
        "routing.ListConversations" => code(
            platform
                .routing_client(0)
                .list_conversations(authed(token, rt::ListConversationsRequest::default()))
                .await
                .map(drop),
        ),
        other => panic!("no call for {other}"),
    }
}

#[tokio::test]
async fn each_service_account_may_call_exactly_what_its_permissions_name() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let mut wrong = Vec::new();
        let mut n = 0;
        for account in ACCOUNTS {
            let token = platform.token_of(account).await;
            for (rpc, allowed) in TABLE {
                n += 1;
                let code = call(&platform, rpc, &token, n).await;
                let may = allowed.contains(account);
                let refused = code == Code::PermissionDenied;
                if may == refused || code == Code::Unauthenticated {
                    wrong.push(format!(
                        "{account} → {rpc}: {code:?} (expected {})",
                        if may { "allowed" } else { "PERMISSION_DENIED" }
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "cells off the table:\n{}",
            wrong.join("\n")
        );
        platform.stop().await;
    }
}

#[tokio::test]
async fn a_service_account_cannot_be_granted_an_unknown_permission_or_admin() {
    let platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
    for scope in ["admin", "everything"] {
        let refused = platform
            .identity_client()
            .create_service_account(authed(
                &platform.admin.token,
                idp::CreateServiceAccountRequest {
                    client_id: format!("wants-{scope}"),
                    scopes: vec![scope.into()],
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{scope}");
    }
    platform.stop().await;
}
