//! The agent directory over real gRPC on 127.0.0.1:0, with a real identity beside it: who may do what,
//! bad input, default profiles, idempotent recorded changes and the watch feed. Runs on SQLite, and on
//! PostgreSQL when `ASSIST_TEST_DATABASE_URL` is set.

mod common;

use std::time::Duration;

use assist_agent_directory::Config;
use assist_proto::agentdirectory::v1 as dir;
use assist_proto::common::v1::PageRequest;
use assist_proto::identity::v1 as idp;
use assist_runtime::auth::Realm;
use clap::Parser;
use common::{Directory, Identity, Platform, SERVING, TestDb, authed, health};
use tonic::Code;

const CUSTOMERS: dir::Capability = dir::Capability::AssistCustomers;
const MERCHANTS: dir::Capability = dir::Capability::AssistMerchantUsers;

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    result.expect_err("expected an error").code()
}

#[tokio::test]
async fn not_serving_until_identity_answers_then_serving_with_reflection() {
    let identity = Identity::start().await;
    let admin = identity.admin().await;
    let secret = identity.service_account(&admin, common::CLIENT_ID).await;
    let url = identity.url();
    let stopped = identity.halt().await;

    let db = TestDb::sqlite();
    let directory = Directory::spawn(&url, &db.url, &secret).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let status = health(directory.addr).await;
    assert!(
        status.is_some() && status != Some(SERVING),
        "identity is down: {status:?}"
    );

    let identity = stopped.restart().await;
    common::wait_serving(directory.addr, "agent-directory").await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", directory.addr))
        .unwrap()
        .connect_lazy();
    let named = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "assist.agentdirectory.v1.AgentDirectory".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(named, SERVING);
    for path in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        let services = reflection_list(channel.clone(), path).await;
        assert!(
            services.contains(&"assist.agentdirectory.v1.AgentDirectory".to_owned()),
            "{path}: {services:?}"
        );
    }

    // Working: a fresh admin token (identity restarted, same keys) grants.
    let admin = common::User {
        token: identity
            .login(idp::Realm::BackOffice, "admin@example.com")
            .await,
        ..admin
    };
    let ann = identity
        .back_office_user(&admin, "ann@example.com", "Ann Lee")
        .await;
    let agent = directory
        .client
        .clone()
        .grant_capability(authed(
            &admin.token,
            dir::ChangeCapabilityRequest {
                agent_id: ann.id.clone(),
                capability: CUSTOMERS as i32,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(agent.capabilities, [CUSTOMERS as i32]);
    directory.stop().await;
    identity.stop().await;
}

/// Lists services through a reflection endpoint with a hand-rolled client, as generic tools do.
async fn reflection_list(channel: tonic::transport::Channel, path: &'static str) -> Vec<String> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, ServerReflectionResponse,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    // v1 and v1alpha share the same message shapes.
    let codec =
        tonic_prost::ProstCodec::<ServerReflectionRequest, ServerReflectionResponse>::default();
    let mut stream = grpc
        .streaming(
            tonic::Request::new(tokio_stream::once(request)),
            http::uri::PathAndQuery::from_static(path),
            codec,
        )
        .await
        .unwrap()
        .into_inner();
    let reply = stream.message().await.unwrap().unwrap();
    match reply.message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => {
            list.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected {other:?}"),
    }
}

/// The status every RPC of the directory answers `token` with (`Code::Ok` when it is allowed).
async fn every_rpc(platform: &Platform, token: &str, agent_id: &str) -> Vec<(&'static str, Code)> {
    let mut client = platform.client();
    let outcome = |result: Result<(), tonic::Status>| result.err().map_or(Code::Ok, |s| s.code());
    let change = || dir::ChangeCapabilityRequest {
        agent_id: agent_id.into(),
        capability: CUSTOMERS as i32,
    };
    vec![
        (
            "GetAgent",
            outcome(
                client
                    .get_agent(authed(
                        token,
                        dir::GetAgentRequest {
                            id: agent_id.into(),
                        },
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListAgents",
            outcome(
                client
                    .list_agents(authed(token, dir::ListAgentsRequest::default()))
                    .await
                    .map(drop),
            ),
        ),
        (
            "GrantCapability",
            outcome(
                client
                    .grant_capability(authed(token, change()))
                    .await
                    .map(drop),
            ),
        ),
        (
            "RevokeCapability",
            outcome(
                client
                    .revoke_capability(authed(token, change()))
                    .await
                    .map(drop),
            ),
        ),
        (
            "UpdateAgentProfile",
            outcome(
                client
                    .update_agent_profile(authed(
                        token,
                        dir::UpdateAgentProfileRequest {
                            agent_id: agent_id.into(),
                            display_name: None,
                            nickname: Some("Nick".into()),
                        },
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "ListAgentHistory",
            outcome(
                client
                    .list_agent_history(authed(
                        token,
                        dir::ListAgentHistoryRequest {
                            agent_id: agent_id.into(),
                            page: None,
                        },
                    ))
                    .await
                    .map(drop),
            ),
        ),
        (
            "WatchAgents",
            outcome(
                client
                    .watch_agents(authed(token, dir::WatchAgentsRequest {}))
                    .await
                    .map(drop),
            ),
        ),
        (
            "GetConsoleRights",
            outcome(
                client
                    .get_console_rights(authed(token, dir::GetConsoleRightsRequest {}))
                    .await
                    .map(drop),
            ),
        ),
    ]
}

fn expect(
    platform: &Platform,
    who: &str,
    got: Vec<(&'static str, Code)>,
    allowed: &[&str],
    refused: Code,
) {
    for (rpc, code) in got {
        let wanted = if allowed.contains(&rpc) {
            Code::Ok
        } else {
            refused
        };
        assert_eq!(code, wanted, "{}: {who} calling {rpc}", platform.backend());
    }
}

#[tokio::test]
async fn realms_scopes_and_delegation_decide_who_may_call_what() {
    for platform in Platform::all().await {
        let identity = &platform.identity;
        let admin = &platform.admin;
        let ann = identity
            .back_office_user(admin, "ann@example.com", "Ann Lee")
            .await;
        let bob = identity
            .back_office_user(admin, "bob@example.com", "Bob Ray")
            .await;
        let customer = identity.customer(admin, "carl@example.com").await;
        let service = identity.service(admin, "impersonation-token").await;

        let all = [
            "GetAgent",
            "ListAgents",
            "GrantCapability",
            "RevokeCapability",
            "UpdateAgentProfile",
            "ListAgentHistory",
            "WatchAgents",
            "GetConsoleRights",
        ];
        expect(
            &platform,
            "an administrator",
            every_rpc(&platform, &admin.token, &ann.id).await,
            &all,
            Code::PermissionDenied,
        );
        expect(
            &platform,
            "a service granted agents:read",
            every_rpc(&platform, &service.token, &ann.id).await,
            &["GetAgent", "ListAgents", "WatchAgents"],
            Code::PermissionDenied,
        );
        expect(
            &platform,
            "another back-office user, not a console member",
            every_rpc(&platform, &bob.token, &ann.id).await,
            // Its own rights: none.
            &["GetConsoleRights"],
            Code::PermissionDenied,
        );
        expect(
            &platform,
            "the agent itself, a member of the directory",
            every_rpc(&platform, &ann.token, &ann.id).await,
            &[
                "GetAgent",
                "ListAgents",
                "UpdateAgentProfile",
                "GetConsoleRights",
            ],
            Code::PermissionDenied,
        );
        expect(
            &platform,
            "a customer",
            every_rpc(&platform, &customer.token, &customer.id).await,
            &[],
            Code::PermissionDenied,
        );

        // Impersonation tokens, signed by a trusted key with good claims, are refused everywhere: as the
        // assisted customer, and even when the subject is an administrator or the agent itself.
        let as_customer = identity
            .delegated_token(&customer.id, Realm::Customer, "customer", &ann.id)
            .await;
        let as_admin = identity
            .delegated_token(&admin.id, Realm::BackOffice, "admin back_office", &ann.id)
            .await;
        let as_self = identity
            .delegated_token(&ann.id, Realm::BackOffice, "back_office", &ann.id)
            .await;
        for (who, token) in [
            ("an impersonation token for a customer", as_customer),
            ("an impersonation token for an administrator", as_admin),
            ("an impersonation token for the agent", as_self),
        ] {
            expect(
                &platform,
                who,
                every_rpc(&platform, &token, &ann.id).await,
                &[],
                Code::PermissionDenied,
            );
        }

        expect(
            &platform,
            "no token",
            every_rpc(&platform, "", &ann.id).await,
            &[],
            Code::Unauthenticated,
        );
        let mut client = platform.client();
        let missing = client
            .list_agents(dir::ListAgentsRequest::default())
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::Unauthenticated);
        expect(
            &platform,
            "a forged token",
            every_rpc(&platform, "not.a.token", &ann.id).await,
            &[],
            Code::Unauthenticated,
        );
        platform.stop().await;
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_that_names_the_field() {
    let platform = Platform::start(TestDb::sqlite()).await;
    let admin = platform.admin.token.clone();
    let ann = platform
        .identity
        .back_office_user(&platform.admin, "ann@example.com", "Ann Lee")
        .await;
    let mut client = platform.client();
    let invalid = |result: Result<tonic::Response<dir::Agent>, tonic::Status>| {
        let status = result.expect_err("expected INVALID_ARGUMENT");
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
        status.message().to_owned()
    };

    let get = |id: &str| dir::GetAgentRequest { id: id.into() };
    assert_eq!(
        invalid(client.get_agent(authed(&admin, get(""))).await),
        "id: must not be empty"
    );
    assert_eq!(
        invalid(client.get_agent(authed(&admin, get("ann"))).await),
        "id: must be a uuid"
    );

    let change = |agent_id: &str, capability: i32| dir::ChangeCapabilityRequest {
        agent_id: agent_id.into(),
        capability,
    };
    assert_eq!(
        invalid(
            client
                .grant_capability(authed(&admin, change(&ann.id, 0)))
                .await
        ),
        "capability: must be set"
    );
    assert_eq!(
        invalid(
            client
                .revoke_capability(authed(&admin, change(&ann.id, 42)))
                .await
        ),
        "capability: unknown capability"
    );
    assert_eq!(
        invalid(
            client
                .grant_capability(authed(&admin, change("", CUSTOMERS as i32)))
                .await
        ),
        "agent_id: must not be empty"
    );
    assert_eq!(
        invalid(
            client
                .revoke_capability(authed(&admin, change("x'; DROP TABLE agents", 1)))
                .await
        ),
        "agent_id: must be a uuid"
    );

    let update =
        |display_name: Option<String>, nickname: Option<String>| dir::UpdateAgentProfileRequest {
            agent_id: ann.id.clone(),
            display_name,
            nickname,
        };
    assert_eq!(
        invalid(
            client
                .update_agent_profile(authed(&admin, update(Some("  ".into()), None)))
                .await
        ),
        "display_name: must not be empty"
    );
    assert_eq!(
        invalid(
            client
                .update_agent_profile(authed(&admin, update(Some("x".repeat(201)), None)))
                .await
        ),
        "display_name: must be at most 200 characters"
    );
    assert_eq!(
        invalid(
            client
                .update_agent_profile(authed(&ann.token, update(None, Some("n".repeat(101)))))
                .await
        ),
        "nickname: must be at most 100 characters"
    );
    assert_eq!(
        invalid(
            client
                .update_agent_profile(authed(&ann.token, update(None, Some("a\u{7}b".into()))))
                .await
        ),
        "nickname: must not contain control characters"
    );
    // The limits are characters, not bytes.
    let long = client
        .update_agent_profile(authed(&ann.token, update(Some("ü".repeat(200)), None)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(long.display_name.chars().count(), 200);

    let list = client
        .list_agents(authed(
            &admin,
            dir::ListAgentsRequest {
                page: Some(PageRequest {
                    limit: 101,
                    offset: 0,
                }),
                capability: 0,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(list.code(), Code::InvalidArgument);
    assert_eq!(list.message(), "page.limit: must be at most 100");
    let list = client
        .list_agents(authed(
            &admin,
            dir::ListAgentsRequest {
                page: None,
                capability: 9,
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(list.message(), "capability: unknown capability");
    let history = client
        .list_agent_history(authed(
            &admin,
            dir::ListAgentHistoryRequest {
                agent_id: "nope".into(),
                page: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (history.code(), history.message()),
        (Code::InvalidArgument, "agent_id: must be a uuid")
    );
    platform.stop().await;
}

#[tokio::test]
async fn only_back_office_users_are_agents_and_have_a_default_profile() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let identity = &platform.identity;
        let admin = &platform.admin;
        let ann = identity
            .back_office_user(admin, "ann@example.com", "Ann Lee")
            .await;
        let customer = identity.customer(admin, "carl@example.com").await;
        let service = identity.service(admin, "impersonation-token").await;
        let unknown = uuid::Uuid::now_v7().to_string();

        // A back-office user without a profile: the default one, not stored.
        let default = platform.get(&service.token, &ann.id).await.unwrap();
        assert_eq!(default.id, ann.id);
        assert_eq!(default.display_name, "Ann Lee", "{backend}");
        assert_eq!((default.nickname.as_str(), default.version), ("", 0));
        assert!(default.capabilities.is_empty());
        let listed = platform
            .client()
            .list_agents(authed(&admin.token, dir::ListAgentsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(
            listed.agents.is_empty(),
            "{backend}: defaults are not stored"
        );

        for id in [&customer.id, &service.id, &unknown] {
            let status = platform.get(&admin.token, id).await.unwrap_err();
            assert_eq!(status.code(), Code::NotFound, "{backend}");
            assert_eq!(status.message(), "agent not found");
        }

        // Only active or invited back-office users can be granted a capability.
        let refused = platform
            .grant(&admin.token, &customer.id, CUSTOMERS)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{backend}");
        assert_eq!(refused.message(), "only back-office users can be agents");
        assert_eq!(
            code(platform.grant(&admin.token, &unknown, CUSTOMERS).await),
            Code::NotFound
        );
        let blocked = identity
            .back_office_user(admin, "blocked@example.com", "Bo Blocked")
            .await;
        identity
            .set_status(admin, &blocked.id, idp::PrincipalStatus::Blocked)
            .await;
        let refused = platform
            .grant(&admin.token, &blocked.id, MERCHANTS)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{backend}");
        assert!(
            refused.message().contains("blocked"),
            "{}",
            refused.message()
        );
        let invited = identity
            .invited_user(admin, "ivy@example.com", "Ivy Invited")
            .await;
        let granted = platform
            .grant(&admin.token, &invited, MERCHANTS)
            .await
            .unwrap();
        assert_eq!(
            (granted.display_name.as_str(), granted.version),
            ("Ivy Invited", 1),
            "{backend}: the profile is stored, named after the user"
        );
        assert!(granted.created_at_us > 0);

        // Revoking what a default profile does not hold changes nothing and stores nothing.
        let revoked = platform
            .revoke(&admin.token, &ann.id, CUSTOMERS)
            .await
            .unwrap();
        assert_eq!(revoked, default, "{backend}");
        assert_eq!(
            code(platform.revoke(&admin.token, &customer.id, CUSTOMERS).await),
            Code::NotFound
        );
        assert!(
            platform
                .history(&admin.token, &ann.id)
                .await
                .unwrap()
                .changes
                .is_empty()
        );

        // A profile edit that changes nothing is not stored either; one that does is.
        let mut client = platform.client();
        let same = client
            .update_agent_profile(authed(
                &ann.token,
                dir::UpdateAgentProfileRequest {
                    agent_id: ann.id.clone(),
                    display_name: Some("Ann Lee".into()),
                    nickname: Some(String::new()),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(same, default, "{backend}");
        let named = client
            .update_agent_profile(authed(
                &ann.token,
                dir::UpdateAgentProfileRequest {
                    agent_id: ann.id.clone(),
                    display_name: None,
                    nickname: Some("Annie".into()),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                named.display_name.as_str(),
                named.nickname.as_str(),
                named.version
            ),
            ("Ann Lee", "Annie", 1)
        );
        assert_eq!(platform.get(&ann.token, &ann.id).await.unwrap(), named);
        platform.stop().await;
    }
}

#[tokio::test]
async fn changes_are_idempotent_versioned_and_recorded_with_their_actor() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let identity = &platform.identity;
        let admin = &platform.admin;
        let ann = identity
            .back_office_user(admin, "ann@example.com", "Ann Lee")
            .await;
        let bob = identity
            .back_office_user(admin, "bob@example.com", "Bob Ray")
            .await;

        let first = platform
            .grant(&admin.token, &ann.id, CUSTOMERS)
            .await
            .unwrap();
        assert_eq!(
            (first.version, first.capabilities.as_slice()),
            (1, &[CUSTOMERS as i32][..])
        );
        let again = platform
            .grant(&admin.token, &ann.id, CUSTOMERS)
            .await
            .unwrap();
        assert_eq!(
            again, first,
            "{backend}: granting a held capability changes nothing"
        );
        let both = platform
            .grant(&admin.token, &ann.id, MERCHANTS)
            .await
            .unwrap();
        assert_eq!(both.capabilities, [CUSTOMERS as i32, MERCHANTS as i32]);
        assert_eq!(both.version, 2);
        let revoked = platform
            .revoke(&admin.token, &ann.id, CUSTOMERS)
            .await
            .unwrap();
        assert_eq!(
            (revoked.version, revoked.capabilities.as_slice()),
            (3, &[MERCHANTS as i32][..])
        );
        let again = platform
            .revoke(&admin.token, &ann.id, CUSTOMERS)
            .await
            .unwrap();
        assert_eq!(
            again, revoked,
            "{backend}: revoking one not held changes nothing"
        );

        let mut client = platform.client();
        let renamed = client
            .update_agent_profile(authed(
                &ann.token,
                dir::UpdateAgentProfileRequest {
                    agent_id: ann.id.clone(),
                    display_name: Some("Ann Lee-Smith".into()),
                    nickname: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(renamed.version, 4);
        assert_eq!(
            renamed.capabilities,
            [MERCHANTS as i32],
            "capabilities kept"
        );
        assert_eq!(
            code(
                client
                    .update_agent_profile(authed(
                        &bob.token,
                        dir::UpdateAgentProfileRequest {
                            agent_id: ann.id.clone(),
                            display_name: Some("Mallory".into()),
                            nickname: None,
                        },
                    ))
                    .await
            ),
            Code::PermissionDenied,
            "{backend}: not someone else's profile"
        );

        let history = platform.history(&admin.token, &ann.id).await.unwrap();
        let page = history.page.unwrap();
        assert_eq!((page.total, page.total_exact, page.limit), (4, true, 10));
        let rows: Vec<(&str, &str)> = history
            .changes
            .iter()
            .map(|c| (c.action.as_str(), c.actor_id.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("profile_updated", ann.id.as_str()),
                ("capability_revoked", admin.id.as_str()),
                ("capability_granted", admin.id.as_str()),
                ("capability_granted", admin.id.as_str()),
            ],
            "{backend}: newest first, each with who made it"
        );
        let update = &history.changes[0];
        assert_eq!(update.before, r#"{"display_name":"Ann Lee"}"#);
        assert_eq!(update.after, r#"{"display_name":"Ann Lee-Smith"}"#);
        let grant = &history.changes[3];
        assert_eq!(
            (grant.before.as_str(), grant.after.as_str()),
            (
                r#"{"capabilities":[]}"#,
                r#"{"capabilities":["assist_customers"]}"#
            )
        );
        assert!(
            history
                .changes
                .iter()
                .all(|c| c.agent_id == ann.id && c.at_us > 0)
        );
        let paged = client
            .list_agent_history(authed(
                &admin.token,
                dir::ListAgentHistoryRequest {
                    agent_id: ann.id.clone(),
                    page: Some(PageRequest {
                        limit: 1,
                        offset: 1,
                    }),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(paged.changes, history.changes[1..2]);

        // Lists: by display name, filtered by capability, paged.
        platform
            .grant(&admin.token, &bob.id, CUSTOMERS)
            .await
            .unwrap();
        let list = |capability: dir::Capability, limit: u32, offset: u64| {
            let mut client = platform.client();
            let token = bob.token.clone();
            async move {
                client
                    .list_agents(authed(
                        &token,
                        dir::ListAgentsRequest {
                            page: Some(PageRequest { limit, offset }),
                            capability: capability as i32,
                            ..Default::default()
                        },
                    ))
                    .await
                    .unwrap()
                    .into_inner()
            }
        };
        let names = |reply: &dir::ListAgentsResponse| -> Vec<String> {
            reply
                .agents
                .iter()
                .map(|a| a.display_name.clone())
                .collect()
        };
        let all = list(dir::Capability::Unspecified, 0, 0).await;
        assert_eq!(names(&all), ["Ann Lee-Smith", "Bob Ray"], "{backend}");
        assert_eq!(all.page.unwrap().total, 2);
        let customers = list(CUSTOMERS, 0, 0).await;
        assert_eq!(names(&customers), ["Bob Ray"], "{backend}");
        let second = list(dir::Capability::Unspecified, 1, 1).await;
        assert_eq!(names(&second), ["Bob Ray"]);
        assert_eq!(
            second.page.unwrap(),
            assist_proto::common::v1::PageInfo {
                total: 2,
                offset: 1,
                limit: 1,
                total_exact: true,
            }
        );
        platform.stop().await;
    }
}

type Events = tonic::Streaming<dir::AgentEvent>;

async fn watch(
    platform_client: &mut dir::agent_directory_client::AgentDirectoryClient<
        tonic::transport::Channel,
    >,
    token: &str,
) -> Events {
    platform_client
        .watch_agents(authed(token, dir::WatchAgentsRequest {}))
        .await
        .unwrap()
        .into_inner()
}

async fn next(events: &mut Events) -> dir::AgentEvent {
    tokio::time::timeout(Duration::from_secs(10), events.message())
        .await
        .expect("an event within 10 s")
        .unwrap()
        .expect("the stream goes on")
}

fn kind(event: &dir::AgentEvent) -> dir::agent_event::Kind {
    dir::agent_event::Kind::try_from(event.kind).unwrap()
}

#[tokio::test]
async fn watchers_get_a_snapshot_then_each_change() {
    for platform in Platform::all().await {
        let backend = platform.backend();
        let identity = &platform.identity;
        let admin = &platform.admin;
        let service = identity.service(admin, "impersonation-token").await;
        let mut stored = Vec::new();
        for (n, name) in ["Ann Lee", "Bob Ray", "Cy Cole"].iter().enumerate() {
            let user = identity
                .back_office_user(admin, &format!("u{n}@example.com"), name)
                .await;
            platform
                .grant(&admin.token, &user.id, CUSTOMERS)
                .await
                .unwrap();
            stored.push(user);
        }
        let dan = identity
            .back_office_user(admin, "dan@example.com", "Dan Doe")
            .await;

        let mut client = platform.client();
        let mut events = watch(&mut client, &service.token).await;
        let mut snapshot = Vec::new();
        loop {
            let event = next(&mut events).await;
            match kind(&event) {
                dir::agent_event::Kind::Snapshot => snapshot.push(event.agent.unwrap()),
                dir::agent_event::Kind::Synced => {
                    assert!(event.agent.is_none());
                    break;
                }
                other => panic!("{backend}: {other:?} before SYNCED"),
            }
        }
        let mut ids: Vec<String> = snapshot.iter().map(|a| a.id.clone()).collect();
        ids.sort();
        let mut expected: Vec<String> = stored.iter().map(|u| u.id.clone()).collect();
        expected.sort();
        assert_eq!(ids, expected, "{backend}: every stored agent, once");
        assert!(
            snapshot
                .iter()
                .all(|a| a.capabilities == [CUSTOMERS as i32] && a.version == 1)
        );

        // A first grant stores a new agent; a revoke changes a known one; a no-op sends nothing.
        platform
            .grant(&admin.token, &dan.id, MERCHANTS)
            .await
            .unwrap();
        let event = next(&mut events).await;
        assert_eq!(kind(&event), dir::agent_event::Kind::Changed, "{backend}");
        let agent = event.agent.unwrap();
        assert_eq!((agent.id.as_str(), agent.version), (dan.id.as_str(), 1));
        assert_eq!(agent.capabilities, [MERCHANTS as i32]);

        platform
            .revoke(&admin.token, &stored[0].id, MERCHANTS)
            .await
            .unwrap();
        platform
            .revoke(&admin.token, &stored[0].id, CUSTOMERS)
            .await
            .unwrap();
        let event = next(&mut events).await;
        let agent = event.agent.unwrap();
        assert_eq!(
            (agent.id.as_str(), agent.version, agent.capabilities.len()),
            (stored[0].id.as_str(), 2, 0),
            "{backend}: the no-op revoke sent nothing; the real one did"
        );

        // An administrator may watch too; back-office users and customers may not.
        let mut by_admin = watch(&mut client, &admin.token).await;
        let mut count = 0;
        while kind(&next(&mut by_admin).await) != dir::agent_event::Kind::Synced {
            count += 1;
        }
        assert_eq!(count, 4, "{backend}");
        drop(by_admin);
        let status = client
            .watch_agents(authed(&dan.token, dir::WatchAgentsRequest {}))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        drop(events);
        platform.stop().await;
    }
}

#[tokio::test]
async fn changes_through_one_replica_reach_watchers_of_another_on_postgres() {
    let Some(pg) = TestDb::all()
        .await
        .into_iter()
        .find(|db| db.backend == "postgres")
    else {
        eprintln!("note: ASSIST_TEST_DATABASE_URL is not set; two-replica watch skipped");
        return;
    };
    let platform = Platform::start(pg).await;
    let replica =
        Directory::start(&platform.identity.url(), &platform.db.url, &platform.secret).await;
    let admin = &platform.admin;
    let ann = platform
        .identity
        .back_office_user(admin, "ann@example.com", "Ann Lee")
        .await;

    let mut client = replica.client.clone();
    let mut events = watch(&mut client, &admin.token).await;
    assert_eq!(
        kind(&next(&mut events).await),
        dir::agent_event::Kind::Synced
    );
    // Through the first replica; seen on the second.
    platform
        .grant(&admin.token, &ann.id, CUSTOMERS)
        .await
        .unwrap();
    let event = next(&mut events).await;
    assert_eq!(kind(&event), dir::agent_event::Kind::Changed);
    let agent = event.agent.unwrap();
    assert_eq!((agent.id.as_str(), agent.version), (ann.id.as_str(), 1));
    // And the other way round: the first replica's profile is the second's.
    let renamed = replica
        .client
        .clone()
        .update_agent_profile(authed(
            &ann.token,
            dir::UpdateAgentProfileRequest {
                agent_id: ann.id.clone(),
                display_name: None,
                nickname: Some("Annie".into()),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.version, 2);
    assert_eq!(next(&mut events).await.agent.unwrap(), renamed);
    assert_eq!(platform.get(&admin.token, &ann.id).await.unwrap(), renamed);
    drop(events);
    replica.stop().await;
    platform.stop().await;
}

#[test]
fn configuration_errors_name_the_variable() {
    let parse = |args: &[&str]| {
        Config::try_parse_from(
            std::iter::once("assist-agent-directory").chain(args.iter().copied()),
        )
    };
    assert!(
        parse(&["--client-secret=s"]).is_err(),
        "the database URL is required"
    );
    let config = parse(&["--database-url=sqlite://x.db", "--client-secret=s"]).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:50052");
    assert_eq!(config.caller.identity_url, "http://127.0.0.1:50051");
    assert_eq!(config.caller.client_id, "agent-directory");
    assert_eq!(config.caller.audience, "agent-assist");
    assert_eq!(config.caller.identity_issuer, "assist-identity");
    assert!(config.check().is_ok());

    for (flags, variable) in [
        (
            ["--database-url=mysql://x", "--client-secret=s"],
            "ASSIST_AGENT_DIRECTORY_DATABASE_URL",
        ),
        (
            ["--identity-url=ftp://x", "--client-secret=s"],
            "ASSIST_AGENT_DIRECTORY_IDENTITY_URL",
        ),
        (
            ["--database-pool-size=0", "--client-secret=s"],
            "ASSIST_AGENT_DIRECTORY_DATABASE_POOL_SIZE",
        ),
        (
            ["--client-secret=", "--client-id=x"],
            "ASSIST_AGENT_DIRECTORY_CLIENT_SECRET",
        ),
        (
            ["--client-id= ", "--client-secret=s"],
            "ASSIST_AGENT_DIRECTORY_CLIENT_ID",
        ),
        (
            ["--request-timeout-secs=0", "--client-secret=s"],
            "ASSIST_AGENT_DIRECTORY_REQUEST_TIMEOUT_SECS",
        ),
    ] {
        let mut args = flags.to_vec();
        if !flags[0].starts_with("--database-url") {
            args.push("--database-url=sqlite://x.db");
        }
        let error = parse(&args).unwrap().check().unwrap_err();
        assert_eq!(error.variable, variable, "{flags:?}");
    }

    let message = assist_runtime::config::parse_from::<Config>([
        "assist-agent-directory".into(),
        "--database-url=sqlite://x.db".into(),
        "--client-secret=s".into(),
        "--database-pool-size".into(),
        "many".into(),
    ])
    .unwrap_err();
    assert!(
        message.contains("ASSIST_AGENT_DIRECTORY_DATABASE_POOL_SIZE"),
        "{message}"
    );
}
