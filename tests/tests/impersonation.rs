//! Assist sessions end to end: identity, agent-directory and impersonation-token running on 127.0.0.1
//! over real gRPC, on SQLite and on PostgreSQL. Each rule of DESIGN.md section 3 that concerns
//! impersonation has a test here that fails without it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use assist_proto::agentdirectory::v1::Capability;
use assist_proto::identity::v1 as idp;
use assist_proto::impersonation::v1 as pb;
use assist_runtime::auth::{
    AuthPolicy, Claims, IdentityJwks, ImpersonationJwks, Realm, TokenVerifier, TrustedIssuer,
};
use assist_runtime::client::Outgoing;
use assist_runtime::sessions::SessionLiveness;
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{Platform, Signed, authed};
use tonic::Code;

fn start_request(target: &str) -> pb::StartAssistRequest {
    pb::StartAssistRequest {
        target_id: target.into(),
        reason: "customer asked for help with an order".into(),
        ..Default::default()
    }
}

async fn start(
    platform: &Platform,
    agent: &Signed,
    target: &str,
) -> Result<pb::StartAssistResponse, tonic::Status> {
    platform
        .impersonation_client(0)
        .start_assist(authed(&agent.token, start_request(target)))
        .await
        .map(|r| r.into_inner())
}

/// Starts a session; answers its id.
async fn start_sid(platform: &Platform, agent: &Signed, target: &str) -> String {
    start(platform, agent, target)
        .await
        .unwrap()
        .session
        .unwrap()
        .id
}

/// Waits (at most 4 s) until the verifier follows `WatchRevocations`; answers whether it does.
async fn wait_following(sessions: &SessionLiveness) -> bool {
    for _ in 0..400 {
        if sessions.is_following() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn check(platform: &Platform, replica: usize, sid: &str) -> pb::CheckSessionResponse {
    let service = platform.service_token().await;
    platform
        .impersonation_client(replica)
        .check_session(authed(
            &service,
            pb::CheckSessionRequest {
                session_id: sid.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
}

/// Polls until the session is no longer active (at most `limit`); answers its end reason.
async fn ended_within(platform: &Platform, sid: &str, limit: Duration) -> Option<pb::EndReason> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let state = check(platform, 0, sid).await;
        if !state.active {
            return pb::EndReason::try_from(state.end_reason).ok();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

fn verifier(platform: &Platform) -> Arc<TokenVerifier> {
    Arc::new(TokenVerifier::new(
        "agent-assist",
        vec![
            TrustedIssuer {
                issuer: "assist-identity".into(),
                keys: Arc::new(IdentityJwks(platform.identity_client())),
            },
            TrustedIssuer {
                issuer: "assist-impersonation".into(),
                keys: Arc::new(ImpersonationJwks(platform.impersonation_client(0))),
            },
        ],
    ))
}

async fn claims_of(platform: &Platform, token: &str) -> Claims {
    verifier(platform)
        .verify(token)
        .await
        .expect("a valid token")
}

#[tokio::test]
async fn an_agent_gets_a_delegated_token_for_a_customer() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let started = start(&platform, &agent, &customer.id).await.unwrap();
        let session = started.session.clone().unwrap();
        assert_eq!(
            started.issued_token_type,
            "urn:ietf:params:oauth:token-type:jwt"
        );
        assert_eq!(started.token_type, "Bearer");
        assert!(session.active);
        assert_eq!(session.agent_id, agent.id);
        assert_eq!(session.target_id, customer.id);
        assert_eq!(session.reason, "customer asked for help with an order");

        let claims = claims_of(&platform, &started.access_token).await;
        assert_eq!(claims.iss, "assist-impersonation");
        assert_eq!(claims.sub, customer.id, "sub is the assisted customer");
        assert_eq!(claims.realm, Realm::Customer);
        let act = claims.act.expect("act names the agent");
        assert_eq!(
            (act.sub.as_str(), act.realm),
            (agent.id.as_str(), Realm::BackOffice)
        );
        assert_eq!(claims.sid.as_deref(), Some(session.id.as_str()));
        assert!(
            claims.exp * 1_000_000 <= session.expires_at_us,
            "never outlives the session"
        );
        assert_eq!(claims.scope, "assisted customer");
        assert_eq!(started.expires_at_us, session.expires_at_us);
        assert!(started.expires_in > 7 * 3600, "8-hour sessions by default");
        platform.stop().await;
    }
}

#[tokio::test]
async fn nesting_self_and_back_office_targets_are_refused() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let colleague = platform
            .agent("colleague@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;

        let me = start(&platform, &agent, &agent.id).await.unwrap_err();
        assert_eq!(me.code(), Code::PermissionDenied, "{}", me.message());
        for other in [&colleague.id, &platform.admin.id] {
            let refused = start(&platform, &agent, other).await.unwrap_err();
            assert_eq!(
                refused.code(),
                Code::PermissionDenied,
                "back-office targets"
            );
        }

        let started = start(&platform, &agent, &customer.id).await.unwrap();
        let nested = platform
            .impersonation_client(0)
            .start_assist(authed(&started.access_token, start_request(&customer.id)))
            .await
            .unwrap_err();
        assert_eq!(
            nested.code(),
            Code::PermissionDenied,
            "a token with act never starts a session"
        );

        // Even a token of identity's own keys that names a back-office user but carries `act` is
        // refused: no nesting, whatever else the token says.
        let db = platform
            .identity_db()
            .open(&assist_identity::store::MIGRATIONS)
            .await;
        let kek =
            assist_runtime::keys::KeyEncryptionKey::from_base64(&platform.identity_kek).unwrap();
        let ring = assist_runtime::keys::KeyRing::load(&db, kek).await.unwrap();
        let mut forged = claims_of(&platform, &agent.token).await;
        forged.act = Some(assist_runtime::auth::Actor {
            sub: colleague.id.clone(),
            realm: Realm::BackOffice,
        });
        let forged = ring.active().sign(&forged).unwrap();
        let refused = platform
            .impersonation_client(0)
            .start_assist(authed(&forged, start_request(&customer.id)))
            .await
            .unwrap_err();
        assert_eq!(
            refused.code(),
            Code::PermissionDenied,
            "{}",
            refused.message()
        );
        assert!(
            refused.message().contains("impersonation token"),
            "{}",
            refused.message()
        );

        // A customer's own token cannot start one either.
        let by_customer = start(&platform, &customer, &customer.id).await.unwrap_err();
        assert_eq!(by_customer.code(), Code::PermissionDenied);
        platform.stop().await;
    }
}

#[tokio::test]
async fn the_capability_of_the_targets_realm_is_checked_at_the_call() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let storefront = platform
            .agent("store@example.com", &[Capability::AssistCustomers])
            .await;
        let portal = platform
            .agent("portal@example.com", &[Capability::AssistMerchantUsers])
            .await;
        let none = platform.agent("none@example.com", &[]).await;
        let customer = platform.customer("casey@example.com").await;
        // Its merchant still awaits approval: assisting it (onboarding) is allowed.
        let merchant_user = platform.merchant_user("mia@example.com").await;

        assert_eq!(
            start(&platform, &storefront, &merchant_user)
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        assert_eq!(
            start(&platform, &portal, &customer.id)
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        assert_eq!(
            start(&platform, &none, &customer.id)
                .await
                .unwrap_err()
                .code(),
            Code::PermissionDenied
        );
        let started = start(&platform, &portal, &merchant_user).await.unwrap();
        assert_eq!(
            started.session.unwrap().target_realm,
            pb::TargetRealm::MerchantUser as i32
        );

        // Granted a moment ago: counts at once.
        platform.grant(&none.id, Capability::AssistCustomers).await;
        start(&platform, &none, &customer.id).await.unwrap();

        // A blocked agent's still-unexpired access token no longer counts: it is refused as a
        // token of nobody active.
        platform
            .set_status(&storefront.id, idp::PrincipalStatus::Blocked)
            .await;
        assert_eq!(
            start(&platform, &storefront, &customer.id)
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        platform.stop().await;
    }
}

#[tokio::test]
async fn bad_targets_and_bad_input_change_nothing() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let blocked = platform.customer("blocked@example.com").await;
        platform
            .set_status(&blocked.id, idp::PrincipalStatus::Blocked)
            .await;

        let cases: Vec<(pb::StartAssistRequest, Code)> = vec![
            (start_request(&blocked.id), Code::FailedPrecondition),
            (
                start_request(&uuid::Uuid::now_v7().to_string()),
                Code::NotFound,
            ),
            (start_request("not-an-id"), Code::InvalidArgument),
            (start_request(""), Code::InvalidArgument),
            (
                pb::StartAssistRequest {
                    reason: "x".repeat(501),
                    ..start_request(&customer.id)
                },
                Code::InvalidArgument,
            ),
            (
                pb::StartAssistRequest {
                    requested_token_type: "urn:ietf:params:oauth:token-type:refresh_token".into(),
                    ..start_request(&customer.id)
                },
                Code::InvalidArgument,
            ),
        ];
        for (request, code) in cases {
            let refused = platform
                .impersonation_client(0)
                .start_assist(authed(&agent.token, request))
                .await
                .unwrap_err();
            assert_eq!(refused.code(), code, "{}", refused.message());
        }
        let unauthenticated = platform
            .impersonation_client(0)
            .start_assist(start_request(&customer.id))
            .await
            .unwrap_err();
        assert_eq!(unauthenticated.code(), Code::Unauthenticated);

        let sessions = platform
            .impersonation_client(0)
            .list_sessions(authed(
                &platform.admin.token,
                pb::ListSessionsRequest::default(),
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(
            sessions.sessions.is_empty(),
            "refused starts leave no session"
        );
        platform.stop().await;
    }
}

#[tokio::test]
async fn one_session_per_agent_and_ending_is_idempotent() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let other = platform
            .agent("other@example.com", &[Capability::AssistCustomers])
            .await;
        let first_customer = platform.customer("one@example.com").await;
        let second_customer = platform.customer("two@example.com").await;
        let mut client = platform.impersonation_client(0);

        let first = start(&platform, &agent, &first_customer.id).await.unwrap();
        let first_id = first.session.unwrap().id;
        let second = start(&platform, &agent, &second_customer.id).await.unwrap();
        let second_id = second.session.unwrap().id;
        let replaced = check(&platform, 0, &first_id).await;
        assert!(
            !replaced.active,
            "starting a new session ends the previous one"
        );
        assert_eq!(replaced.end_reason, pb::EndReason::Replaced as i32);

        // Someone else's session: not theirs to end.
        let foreign = client
            .end_assist(authed(
                &other.token,
                pb::EndAssistRequest {
                    session_id: second_id.clone(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(foreign.code(), Code::PermissionDenied);

        // The session's own impersonation token may end it; again is harmless.
        let ended = client
            .end_assist(authed(
                &second.access_token,
                pb::EndAssistRequest {
                    session_id: second_id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!ended.active);
        assert_eq!(ended.end_reason, pb::EndReason::EndedByAgent as i32);
        assert_eq!(ended.ended_by, agent.id);
        let again = client
            .end_assist(authed(
                &platform.admin.token,
                pb::EndAssistRequest {
                    session_id: second_id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.ended_at_us, ended.ended_at_us, "ending is idempotent");
        assert_eq!(again.end_reason, pb::EndReason::EndedByAgent as i32);

        // An administrator ends anyone's.
        let third = start(&platform, &other, &first_customer.id).await.unwrap();
        let by_admin = client
            .end_assist(authed(
                &platform.admin.token,
                pb::EndAssistRequest {
                    session_id: third.session.unwrap().id,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(by_admin.end_reason, pb::EndReason::EndedByAdmin as i32);
        assert_eq!(by_admin.ended_by, platform.admin.id);

        // Agents list their own sessions only; admins filter as they like.
        let own = client
            .list_sessions(authed(&agent.token, pb::ListSessionsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(own.sessions.len(), 2);
        let prying = client
            .list_sessions(authed(
                &agent.token,
                pb::ListSessionsRequest {
                    agent_id: other.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(prying.code(), Code::PermissionDenied);
        let of_target = client
            .list_sessions(authed(
                &platform.admin.token,
                pb::ListSessionsRequest {
                    target_id: first_customer.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(of_target.sessions.len(), 2);
        assert_eq!(of_target.page.unwrap().total, 2);
        platform.stop().await;
    }
}

#[tokio::test]
async fn revoking_the_capability_or_blocking_ends_sessions() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent(
                "agent@example.com",
                &[Capability::AssistCustomers, Capability::AssistMerchantUsers],
            )
            .await;
        let blocked_agent = platform
            .agent("b@example.com", &[Capability::AssistCustomers])
            .await;
        let third = platform
            .agent("c@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let other_customer = platform.customer("other@example.com").await;
        let merchant_user = platform.merchant_user("mia@example.com").await;
        let limit = Duration::from_secs(5);

        // Revoking the merchant-user capability leaves a customer session alone...
        let customer_session = start(&platform, &agent, &customer.id).await.unwrap();
        let customer_sid = customer_session.session.unwrap().id;
        platform
            .revoke(&agent.id, Capability::AssistMerchantUsers)
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(check(&platform, 0, &customer_sid).await.active);
        // ...revoking the customer one ends it mid-session.
        platform
            .revoke(&agent.id, Capability::AssistCustomers)
            .await;
        assert_eq!(
            ended_within(&platform, &customer_sid, limit).await,
            Some(pb::EndReason::CapabilityRevoked)
        );

        let by_blocked = start_sid(&platform, &blocked_agent, &other_customer.id).await;
        platform
            .set_status(&blocked_agent.id, idp::PrincipalStatus::Blocked)
            .await;
        assert_eq!(
            ended_within(&platform, &by_blocked, limit).await,
            Some(pb::EndReason::AgentBlocked)
        );

        let of_target = start_sid(&platform, &third, &customer.id).await;
        platform
            .set_status(&customer.id, idp::PrincipalStatus::Blocked)
            .await;
        assert_eq!(
            ended_within(&platform, &of_target, limit).await,
            Some(pb::EndReason::TargetBlocked)
        );
        let _ = merchant_user;
        platform.stop().await;
    }
}

#[tokio::test]
async fn idle_sessions_end_and_use_extends_them() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &["--session-idle-secs=2"]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let sid = start_sid(&platform, &agent, &customer.id).await;
        let service = platform.service_token().await;
        let mut client = platform.impersonation_client(0);
        // Used every 700 ms for 2.8 s: longer than the idle timeout, but never idle that long.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(700)).await;
            client
                .record_action(authed(
                    &service,
                    pb::RecordActionRequest {
                        session_id: sid.clone(),
                        method: "GET".into(),
                        target: "/carts".into(),
                        outcome: "200".into(),
                        idempotency_key: String::new(),
                    },
                ))
                .await
                .unwrap();
        }
        assert!(
            check(&platform, 0, &sid).await.active,
            "use extends the session"
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let idle = check(&platform, 0, &sid).await;
        assert!(!idle.active, "unused for longer than the idle timeout");
        assert_eq!(idle.end_reason, pb::EndReason::IdleTimeout as i32);
        platform.stop().await;
    }
}

#[tokio::test]
async fn the_audit_chain_records_actions_and_exposes_tampering() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let sid = start_sid(&platform, &agent, &customer.id).await;
        let service = platform.service_token().await;
        let mut client = platform.impersonation_client(0);
        for (method, target) in [
            ("GET", "/carts/1"),
            ("POST", "/carts/1/items"),
            ("GET", "/orders"),
        ] {
            client
                .record_action(authed(
                    &service,
                    pb::RecordActionRequest {
                        session_id: sid.clone(),
                        method: method.into(),
                        target: target.into(),
                        outcome: "200".into(),
                        idempotency_key: String::new(),
                    },
                ))
                .await
                .unwrap();
        }
        // Only services record; an agent cannot write their own audit.
        let forged = client
            .record_action(authed(
                &agent.token,
                pb::RecordActionRequest {
                    session_id: sid.clone(),
                    method: "GET".into(),
                    target: "/x".into(),
                    outcome: "200".into(),
                    idempotency_key: String::new(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(forged.code(), Code::PermissionDenied);

        let detail = client
            .get_session(authed(
                &agent.token,
                pb::GetSessionRequest {
                    session_id: sid.clone(),
                    actions: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let targets: Vec<&str> = detail.actions.iter().map(|a| a.target.as_str()).collect();
        assert_eq!(targets, ["/carts/1", "/carts/1/items", "/orders"]);
        assert_eq!(detail.session.unwrap().action_count, 3);

        let verify = |client: &mut assist_proto::impersonation::v1::impersonation_client::ImpersonationClient<_>| {
            let request = authed(
                &platform.admin.token,
                pb::VerifyAuditChainRequest {
                    session_id: sid.clone(),
                },
            );
            let mut client = client.clone();
            async move { client.verify_audit_chain(request).await.unwrap().into_inner() }
        };
        let intact = verify(&mut client).await;
        assert!(intact.intact);
        assert_eq!(intact.actions_checked, 3);

        let db = platform
            .impersonation_db()
            .open(&assist_impersonation_token::store::MIGRATIONS)
            .await;
        sqlx_update(
            &db,
            "UPDATE assist_actions SET target = '/carts/2' WHERE idx = 1",
        )
        .await;
        let tampered = verify(&mut client).await;
        assert!(!tampered.intact, "a changed row is detected");
        assert_eq!(tampered.first_broken_index, 1);
        assert_eq!(tampered.problem, "hash mismatch");
        platform.stop().await;
    }
}

async fn sqlx_update(db: &assist_runtime::db::Database, sql: &str) {
    let _turn = db.write_turn().await;
    sqlx::query(sql).execute(&db.pool).await.unwrap();
}

/// A gRPC server of ours accepting impersonation tokens with the runtime's one layer: the session
/// must be live, sensitive methods are refused, and every call lands in the session's audit log.
#[tokio::test]
async fn the_runtime_layer_checks_sessions_refuses_sensitive_calls_and_records() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let started = start(&platform, &agent, &customer.id).await.unwrap();
        let sid = started.session.unwrap().id;

        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        let sessions = SessionLiveness::start(service_client(&platform).await, shutdown.clone());
        let policy = AuthPolicy::new(verifier(&platform), &[]).accepting_impersonation(
            sessions.clone(),
            &["/assist.identity.v1.Identity/SetPassword"],
        );
        // Any service will do: identity's API, never made ready, answers UNAVAILABLE past the layer.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = assist_runtime::server::GrpcServer::new::<
            idp::identity_server::IdentityServer<assist_identity::api::Api>,
        >(Default::default())
        .await;
        let api = assist_identity::api::Api::new(Default::default(), shutdown.clone());
        let task = tokio::spawn(server.serve(
            listener,
            idp::identity_server::IdentityServer::new(api),
            policy,
            shutdown,
        ));
        let mut client = idp::identity_client::IdentityClient::new(
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_lazy(),
        );
        let get = || {
            authed(
                &started.access_token,
                idp::GetPrincipalRequest {
                    id: customer.id.clone(),
                },
            )
        };
        let passed = client.get_principal(get()).await.unwrap_err();
        assert_eq!(
            passed.code(),
            Code::Unavailable,
            "a live session passes the layer"
        );
        let sensitive = client
            .set_password(authed(
                &started.access_token,
                idp::SetPasswordRequest {
                    id: customer.id.clone(),
                    password: "new password 123".into(),
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(sensitive.code(), Code::PermissionDenied);

        // Both calls reach the audit log (recorded in the background).
        let mut recorded = Vec::new();
        for _ in 0..100 {
            let detail = platform
                .impersonation_client(0)
                .get_session(authed(
                    &platform.admin.token,
                    pb::GetSessionRequest {
                        session_id: sid.clone(),
                        actions: None,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            recorded = detail
                .actions
                .iter()
                .map(|a| (a.target.clone(), a.outcome.clone()))
                .collect();
            if recorded.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        recorded.sort();
        assert_eq!(
            recorded,
            vec![
                (
                    "/assist.identity.v1.Identity/GetPrincipal".to_owned(),
                    "UNAVAILABLE".to_owned()
                ),
                (
                    "/assist.identity.v1.Identity/SetPassword".to_owned(),
                    "PERMISSION_DENIED".to_owned()
                ),
            ]
        );

        platform
            .impersonation_client(0)
            .end_assist(authed(
                &agent.token,
                pb::EndAssistRequest { session_id: sid },
            ))
            .await
            .unwrap();
        let mut refused = None;
        for _ in 0..100 {
            match client.get_principal(get()).await {
                Err(status) if status.code() == Code::Unauthenticated => {
                    refused = Some(status);
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        assert!(
            refused.is_some(),
            "an ended session is refused by the layer"
        );
        trigger.trigger();
        task.await.unwrap().unwrap();
        platform.stop().await;
    }
}

async fn service_client(platform: &Platform) -> assist_runtime::sessions::Client {
    let token = assist_runtime::client::ServiceToken::start(
        platform.identity_client(),
        platform.service.0.clone(),
        platform.service.1.clone(),
    )
    .await
    .unwrap();
    pb::impersonation_client::ImpersonationClient::with_interceptor(
        platform.impersonation[platform.impersonation.len() - 1].channel(),
        Outgoing { token: Some(token) },
    )
}

/// Two impersonation replicas on one PostgreSQL database: a session ended through one is refused by
/// a verifier that follows the other, within a second.
#[tokio::test]
async fn an_end_reaches_a_verifier_on_another_replica_within_a_second() {
    let Some(backend) = TestBackend::postgres() else {
        eprintln!("note: needs PostgreSQL (two replicas share one database)");
        return;
    };
    let platform = Platform::start(backend, 2, &[]).await;
    let (_trigger, shutdown) = assist_runtime::shutdown::channel();
    // The verifier follows replica 1; sessions start and end through replica 0.
    let sessions = SessionLiveness::start(service_client(&platform).await, shutdown);
    assert!(wait_following(&sessions).await);
    let customer = platform.customer("casey@example.com").await;
    for round in 0..3 {
        let agent = platform
            .agent(
                &format!("agent{round}@example.com"),
                &[Capability::AssistCustomers],
            )
            .await;
        let sid = start_sid(&platform, &agent, &customer.id).await;
        sessions.check(&sid).await.expect("live and now cached");
        platform
            .impersonation_client(0)
            .end_assist(authed(
                &agent.token,
                pb::EndAssistRequest {
                    session_id: sid.clone(),
                },
            ))
            .await
            .unwrap();
        let ended_at = Instant::now();
        loop {
            if sessions.check(&sid).await.is_err() {
                break;
            }
            assert!(
                ended_at.elapsed() < Duration::from_secs(1),
                "the end did not reach the other replica's verifier within a second"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    platform.stop().await;
}

/// A verifier whose watch breaks stops trusting its cache, and after reconnecting it catches up with an
/// end it could not be told about: the session is refused, never accepted from stale knowledge.
#[tokio::test]
async fn a_verifier_that_reconnects_misses_no_end() {
    let Some(backend) = TestBackend::postgres() else {
        eprintln!("note: needs PostgreSQL (two replicas share one database)");
        return;
    };
    let mut platform = Platform::start(backend, 2, &[]).await;
    let (_trigger, shutdown) = assist_runtime::shutdown::channel();
    let sessions = SessionLiveness::start(service_client(&platform).await, shutdown);
    wait_following(&sessions).await;
    let agent = platform
        .agent("agent@example.com", &[Capability::AssistCustomers])
        .await;
    let customer = platform.customer("casey@example.com").await;
    let sid = start_sid(&platform, &agent, &customer.id).await;
    sessions.check(&sid).await.expect("live and cached");

    // Replica 1 (the one the verifier follows) goes away; meanwhile the session ends through replica 0.
    let stopped = platform.impersonation.remove(1);
    let addr = stopped.addr;
    stopped.stop().await;
    platform
        .impersonation_client(0)
        .end_assist(authed(
            &agent.token,
            pb::EndAssistRequest {
                session_id: sid.clone(),
            },
        ))
        .await
        .unwrap();
    assert!(
        sessions.check(&sid).await.is_err(),
        "without its watch the verifier does not answer from its cache"
    );
    let restarted = platform.start_impersonation(addr, &[]).await;
    platform.impersonation.insert(1, restarted);
    assert!(wait_following(&sessions).await, "the verifier reconnected");
    assert_eq!(
        sessions.check(&sid).await.unwrap_err().code(),
        Code::Unauthenticated,
        "the end it missed is known after reconnecting"
    );
    platform.stop().await;
}

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// Rotating impersonation-token's key keeps the old one published while its tokens may live, so live
/// sessions keep working; new tokens carry the new key.
#[tokio::test]
async fn signing_keys_rotate_without_ending_live_tokens() {
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let agent = platform
            .agent("agent@example.com", &[Capability::AssistCustomers])
            .await;
        let other = platform
            .agent("other@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let before = start(&platform, &agent, &customer.id).await.unwrap();
        let mut client = platform.impersonation_client(0);

        let refused = client
            .rotate_signing_key(authed(&agent.token, pb::RotateSigningKeyRequest {}))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "admins only");
        let rotated = client
            .rotate_signing_key(authed(
                &platform.admin.token,
                pb::RotateSigningKeyRequest {},
            ))
            .await
            .unwrap()
            .into_inner()
            .kid;
        assert_ne!(rotated, kid_of(&before.access_token));

        let after = start(&platform, &other, &customer.id).await.unwrap();
        assert_eq!(
            kid_of(&after.access_token),
            rotated,
            "new tokens use the new key"
        );
        let published: Vec<String> = client
            .get_jwks(assist_proto::common::v1::GetJwksRequest {})
            .await
            .unwrap()
            .into_inner()
            .keys
            .into_iter()
            .map(|k| k.kid)
            .collect();
        assert!(published.contains(&kid_of(&before.access_token)));
        assert!(published.contains(&rotated));
        // A verifier that fetches the keys now accepts both tokens.
        let fresh = verifier(&platform);
        fresh
            .verify(&before.access_token)
            .await
            .expect("old token still verifies");
        fresh
            .verify(&after.access_token)
            .await
            .expect("new token verifies");
        platform.stop().await;
    }
}

fn action(sid: &str, target: &str) -> pb::RecordActionRequest {
    pb::RecordActionRequest {
        session_id: sid.into(),
        method: "GET".into(),
        target: target.into(),
        outcome: "200".into(),
        idempotency_key: uuid::Uuid::now_v7().to_string(),
    }
}

#[tokio::test]
async fn batches_of_actions_are_appended_in_each_sessions_order_once_and_without_their_bad_actions()
{
    for backend in TestBackend::all() {
        let platform = Platform::start(backend, 1, &[]).await;
        let ann = platform
            .agent("ann@example.com", &[Capability::AssistCustomers])
            .await;
        let ben = platform
            .agent("ben@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("casey@example.com").await;
        let first = start_sid(&platform, &ann, &customer.id).await;
        let second = start_sid(&platform, &ben, &customer.id).await;
        let service = platform.service_token().await;
        let mut client = platform.impersonation_client(0);
        client
            .record_action(authed(&service, action(&first, "/before")))
            .await
            .unwrap();

        // Interleaved sessions: each keeps its own order and chain.
        let batch = vec![
            action(&second, "/b1"),
            action(&first, "/a1"),
            action(&second, "/b2"),
            action(&first, "/a2"),
        ];
        let indexes = client
            .record_actions(authed(
                &service,
                pb::RecordActionsRequest {
                    actions: batch.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .indexes;
        assert_eq!(indexes, [1, 2, 2, 3]);
        for (sid, expected) in [
            (&first, vec!["/before", "/a1", "/a2"]),
            (&second, vec!["/b1", "/b2"]),
        ] {
            let detail = client
                .get_session(authed(
                    &platform.admin.token,
                    pb::GetSessionRequest {
                        session_id: sid.clone(),
                        actions: None,
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            let targets: Vec<&str> = detail.actions.iter().map(|a| a.target.as_str()).collect();
            assert_eq!(targets, expected);
            let verdict = client
                .verify_audit_chain(authed(
                    &platform.admin.token,
                    pb::VerifyAuditChainRequest {
                        session_id: sid.clone(),
                    },
                ))
                .await
                .unwrap()
                .into_inner();
            assert!(verdict.intact, "{sid}");
        }

        // The same batch again (a retry: the same idempotency keys) appends nothing and answers
        // the same positions.
        let retried = client
            .record_actions(authed(
                &service,
                pb::RecordActionsRequest {
                    actions: batch.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(retried.indexes, [1, 2, 2, 3]);
        assert!(retried.rejected.is_empty());

        // A bad action or one of an unknown session is rejected alone and reported; the rest of
        // its batch is written.
        let fresh = || -> Vec<pb::RecordActionRequest> {
            ["/b3", "/a3", "/b4", "/a4"]
                .iter()
                .zip([&second, &first, &second, &first])
                .map(|(target, sid)| action(sid, target))
                .collect()
        };
        let mut mixed = fresh();
        mixed[1].target = String::new();
        mixed[2].session_id = uuid::Uuid::now_v7().to_string();
        let reply = client
            .record_actions(authed(
                &service,
                pb::RecordActionsRequest { actions: mixed },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.indexes, [3, 0, 0, 4]);
        let rejected: Vec<(u32, &str)> = reply
            .rejected
            .iter()
            .map(|r| (r.position, r.reason.as_str()))
            .collect();
        assert_eq!(
            rejected,
            [(1, "target: must not be empty"), (2, "session not found")]
        );

        // An empty or oversized batch, or a caller who is not a service: refused whole.
        let oversized = vec![action(&first, "/x"); 1001];
        for (actions, token, code) in [
            (vec![], &service, Code::InvalidArgument),
            (oversized, &service, Code::InvalidArgument),
            (fresh(), &ann.token, Code::PermissionDenied),
        ] {
            let refused = client
                .record_actions(authed(token, pb::RecordActionsRequest { actions }))
                .await
                .unwrap_err();
            assert_eq!(refused.code(), code, "{}", refused.message());
        }
        for (sid, count) in [(&first, 4), (&second, 3)] {
            let session = check(&platform, 0, sid).await;
            assert!(session.active);
            let listed = client
                .get_session(authed(
                    &platform.admin.token,
                    pb::GetSessionRequest {
                        session_id: sid.clone(),
                        actions: None,
                    },
                ))
                .await
                .unwrap()
                .into_inner()
                .session
                .unwrap();
            assert_eq!(listed.action_count, count, "the valid actions, once each");
        }
        platform.stop().await;
    }
}

/// Admin rights at impersonation-token come from identity's current record of the caller, not the
/// token: a demoted administrator's live token no longer lists every session, verifies chains or
/// rotates keys, and a blocked one's is refused outright.
#[tokio::test]
async fn a_demoted_or_blocked_administrator_loses_admin_rights_at_once() {
    let platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
    let mut identity = platform.identity_client();
    let second = identity
        .create_back_office_user(authed(
            &platform.admin.token,
            idp::CreateBackOfficeUserRequest {
                email: "second@example.com".into(),
                full_name: "Second Admin".into(),
                password: assist_tests::platform::PASSWORD.into(),
                scopes: vec!["admin".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let token = identity
        .login(idp::LoginRequest {
            realm: idp::Realm::BackOffice as i32,
            email: "second@example.com".into(),
            password: assist_tests::platform::PASSWORD.into(),
            client_address: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .access
        .unwrap()
        .token;
    let mut sessions = platform.impersonation_client(0);
    // Another agent's sessions: an administrator's to read.
    let agent_id = platform.admin.id.clone();
    let list_all = || {
        authed(
            &token,
            pb::ListSessionsRequest {
                agent_id: agent_id.clone(),
                ..Default::default()
            },
        )
    };
    sessions.list_sessions(list_all()).await.unwrap();
    sessions
        .rotate_signing_key(authed(&token, pb::RotateSigningKeyRequest {}))
        .await
        .unwrap();

    identity
        .update_principal(authed(
            &platform.admin.token,
            idp::UpdatePrincipalRequest {
                id: second.id.clone(),
                scopes: Some(idp::ScopeList { scopes: vec![] }),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let refused = sessions
        .rotate_signing_key(authed(&token, pb::RotateSigningKeyRequest {}))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let refused = sessions.list_sessions(list_all()).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");

    platform
        .set_status(&second.id, idp::PrincipalStatus::Blocked)
        .await;
    let refused = sessions.list_sessions(list_all()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    platform.stop().await;
}
