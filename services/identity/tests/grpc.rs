//! Identity over real gRPC on 127.0.0.1:0: every rule of the service, each with a test that fails
//! without it. Runs on SQLite, and on PostgreSQL when `ASSIST_TEST_DATABASE_URL` is set.

mod common;

use assist_identity::domain::keys::{self, KeyEncryptionKey};
use assist_proto::identity::v1 as pb;
use assist_runtime::auth::{Claims, Realm};
use common::{ADMIN_EMAIL, PASSWORD, Server, TestDb, verifier};
use tonic::Code;

fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    Server::authed(token, message)
}

async fn servers() -> Vec<Server> {
    let mut servers = Vec::new();
    for db in TestDb::all().await {
        servers.push(Server::start(db).await);
    }
    servers
}

#[tokio::test]
async fn health_turns_serving_and_reflection_answers_v1_and_v1alpha() {
    let server = Server::start(TestDb::sqlite()).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_lazy();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "assist.identity.v1.Identity".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    for path in [
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ] {
        let services = reflection_list(channel.clone(), path).await;
        assert!(
            services.contains(&"assist.identity.v1.Identity".to_owned()),
            "{path}: {services:?}"
        );
        assert!(
            services.contains(&"grpc.health.v1.Health".to_owned()),
            "{path}"
        );
        // Only what this server serves: no other assist service is offered.
        let mut offered = services.clone();
        offered.sort();
        assert_eq!(
            offered,
            [
                "assist.identity.v1.Identity",
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ],
            "{path}"
        );
    }
    server.stop().await;
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

#[tokio::test]
async fn login_issues_verifiable_tokens_with_the_design_claims() {
    for server in servers().await {
        let admin = server.admin_token().await;
        let ann = server
            .create_customer(&admin, "ann@example.com", "Ann", "Lee")
            .await;
        let pair = server
            .login(pb::Realm::Customer, "ANN@example.com", PASSWORD)
            .await
            .unwrap();
        let access = pair.access.unwrap();
        assert_eq!(access.token_type, "Bearer");
        assert!(pair.refresh_token.len() >= 43, "256-bit refresh token");

        let claims: Claims = verifier(&server).verify(&access.token).await.unwrap();
        assert_eq!(claims.sub, ann.id);
        assert_eq!(claims.realm, Realm::Customer);
        assert_eq!(claims.iss, "assist-identity");
        assert_eq!(claims.aud, "agent-assist");
        assert_eq!(claims.scope, "customer");
        assert!(claims.exp > claims.iat && claims.nbf <= claims.iat);
        assert!(claims.act.is_none());
        let header = jsonwebtoken::decode_header(&access.token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
        assert!(header.kid.is_some());
        server.stop().await;
    }
}

#[tokio::test]
async fn every_login_failure_answers_the_same() {
    for server in servers().await {
        let admin = server.admin_token().await;
        let ann = server
            .create_customer(&admin, "ann@example.com", "Ann", "Lee")
            .await;
        let blocked = server
            .create_customer(&admin, "bob@example.com", "Bob", "Ray")
            .await;
        server
            .client
            .clone()
            .set_principal_status(authed(
                &admin,
                pb::SetPrincipalStatusRequest {
                    id: blocked.id.clone(),
                    status: pb::PrincipalStatus::Blocked as i32,
                },
            ))
            .await
            .unwrap();
        let attempts = [
            (pb::Realm::Customer, "nobody@example.com", PASSWORD),
            (pb::Realm::Customer, "ann@example.com", "wrong password"),
            (pb::Realm::Customer, "bob@example.com", PASSWORD),
            (pb::Realm::MerchantUser, "ann@example.com", PASSWORD),
            (pb::Realm::BackOffice, "ann@example.com", PASSWORD),
        ];
        for (realm, email, password) in attempts {
            let status = server.login(realm, email, password).await.unwrap_err();
            assert_eq!(status.code(), Code::Unauthenticated, "{email}");
            assert_eq!(status.message(), "invalid credentials", "{email}");
        }
        let _ = ann;
        server.stop().await;
    }
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_account_and_per_address() {
    let server = Server::start_with(
        TestDb::sqlite(),
        &["--login-max-failures=3", "--login-address-max-failures=5"],
    )
    .await;
    let admin = server.admin_token().await;
    server
        .create_customer(&admin, "ann@example.com", "Ann", "Lee")
        .await;
    server
        .create_customer(&admin, "bob@example.com", "Bob", "Ray")
        .await;
    for _ in 0..3 {
        let status = server
            .login(pb::Realm::Customer, "ann@example.com", "wrong password")
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // Blocked even with the right password; the answer says when to come back.
    let status = server
        .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("try again in"),
        "{}",
        status.message()
    );
    // Another account from the same address still works until the address limit (5) is reached.
    server
        .login(pb::Realm::Customer, "bob@example.com", PASSWORD)
        .await
        .unwrap();
    for _ in 0..2 {
        let _ = server
            .login(pb::Realm::Customer, "bob@example.com", "wrong password")
            .await;
    }
    let status = server
        .login(pb::Realm::Customer, "bob@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "the address is blocked now"
    );
    server.stop().await;
}

#[tokio::test]
async fn only_services_may_name_the_client_address() {
    let server = Server::start_with(
        TestDb::sqlite(),
        &["--login-address-max-failures=2", "--login-max-failures=100"],
    )
    .await;
    let admin = server.admin_token().await;
    server
        .create_customer(&admin, "ann@example.com", "Ann", "Lee")
        .await;
    // An anonymous caller naming a fresh address on every try is still counted on its real address.
    for n in 0..2 {
        let _ = server
            .client
            .clone()
            .login(pb::LoginRequest {
                realm: pb::Realm::Customer as i32,
                email: "ann@example.com".into(),
                password: "wrong password".into(),
                client_address: format!("10.0.0.{n}"),
            })
            .await;
    }
    let status = server
        .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    server.stop().await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    for server in servers().await {
        let admin = server.admin_token().await;
        server
            .create_customer(&admin, "ann@example.com", "Ann", "Lee")
            .await;
        let first = server
            .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
            .await
            .unwrap();
        let mut client = server.client.clone();
        let second = client
            .refresh(pb::RefreshRequest {
                refresh_token: first.refresh_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(second.refresh_token, first.refresh_token);
        verifier(&server)
            .verify(&second.access.unwrap().token)
            .await
            .unwrap();

        // The spent token again: refused, and the family (the second token too) is revoked.
        let reuse = client
            .refresh(pb::RefreshRequest {
                refresh_token: first.refresh_token,
            })
            .await
            .unwrap_err();
        assert_eq!(reuse.code(), Code::Unauthenticated);
        let after = client
            .refresh(pb::RefreshRequest {
                refresh_token: second.refresh_token,
            })
            .await
            .unwrap_err();
        assert_eq!(after.code(), Code::Unauthenticated);
        server.stop().await;
    }
}

#[tokio::test]
async fn revoke_one_and_revoke_all() {
    let server = Server::start(TestDb::sqlite()).await;
    let admin = server.admin_token().await;
    let ann = server
        .create_customer(&admin, "ann@example.com", "Ann", "Lee")
        .await;
    let mut client = server.client.clone();
    let a = server
        .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let b = server
        .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
        .await
        .unwrap();
    let c = server
        .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
        .await
        .unwrap();
    client
        .revoke_refresh_token(pb::RevokeRefreshTokenRequest {
            refresh_token: a.refresh_token.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: a.refresh_token
            })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    client
        .refresh(pb::RefreshRequest {
            refresh_token: b.refresh_token.clone(),
        })
        .await
        .unwrap();

    // Ann logs out everywhere with her own token; someone else's id is refused.
    let own = c.access.unwrap().token;
    let bob = server
        .create_customer(&admin, "bob@example.com", "Bob", "Ray")
        .await;
    let denied = client
        .revoke_all_refresh_tokens(authed(
            &own,
            pb::RevokeAllRefreshTokensRequest {
                principal_id: bob.id,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let revoked = client
        .revoke_all_refresh_tokens(authed(
            &own,
            pb::RevokeAllRefreshTokensRequest {
                principal_id: ann.id,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .revoked;
    assert_eq!(revoked, 2, "the rotated b and c");
    assert_eq!(
        client
            .refresh(pb::RefreshRequest {
                refresh_token: c.refresh_token
            })
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    server.stop().await;
}

fn claims_for(sub: &str, realm: Realm, scope: &str, exp_offset: i64) -> Claims {
    let now = assist_runtime::time::now_us() / 1_000_000;
    Claims {
        iss: "assist-identity".into(),
        sub: sub.into(),
        aud: "agent-assist".into(),
        exp: now + exp_offset,
        iat: now - 60,
        nbf: now - 60,
        jti: uuid::Uuid::now_v7().to_string(),
        realm,
        scope: scope.into(),
        act: None,
        sid: None,
        name: None,
        merchant_name: None,
    }
}

#[tokio::test]
async fn expired_foreign_and_tampered_tokens_are_refused() {
    let server = Server::start(TestDb::sqlite()).await;
    let admin = server.admin_token().await;
    let admin_id = verifier(&server).verify(&admin).await.unwrap().sub;
    let kek = KeyEncryptionKey::from_base64(&server.kek).unwrap();
    let store = common::store(&server.db).await;
    let live_key = keys::open(&kek, &store.signing_keys().await.unwrap()[0]).unwrap();
    let list = |token: String| {
        let mut client = server.client.clone();
        async move {
            client
                .list_principals(authed(
                    &token,
                    pb::ListPrincipalsRequest {
                        realm: pb::Realm::Customer as i32,
                        ..Default::default()
                    },
                ))
                .await
        }
    };
    // The real key, fresh claims: accepted (proves the harness signs correctly).
    let good = live_key
        .sign(&claims_for(
            &admin_id,
            Realm::BackOffice,
            "admin back_office",
            300,
        ))
        .unwrap();
    list(good.clone()).await.unwrap();

    let expired = live_key
        .sign(&claims_for(
            &admin_id,
            Realm::BackOffice,
            "admin back_office",
            -120,
        ))
        .unwrap();
    assert_eq!(
        list(expired).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let (_, foreign) = keys::generate(&kek, 1).unwrap();
    let forged = foreign
        .sign(&claims_for(
            &admin_id,
            Realm::BackOffice,
            "admin back_office",
            300,
        ))
        .unwrap();
    assert_eq!(
        list(forged).await.unwrap_err().code(),
        Code::Unauthenticated,
        "a key not in the JWKS"
    );

    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut payload = base64_decode(&parts[1]);
    payload = String::from_utf8(payload)
        .unwrap()
        .replace("back_office", "back_offixe")
        .into_bytes();
    parts[1] = base64_encode(&payload);
    assert_eq!(
        list(parts.join(".")).await.unwrap_err().code(),
        Code::Unauthenticated,
        "tampered payload"
    );

    let mut wrong_audience = claims_for(&admin_id, Realm::BackOffice, "admin back_office", 300);
    wrong_audience.aud = "someone-else".into();
    assert_eq!(
        list(live_key.sign(&wrong_audience).unwrap())
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    assert_eq!(
        list("not a token".into()).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    let missing = server
        .client
        .clone()
        .list_principals(pb::ListPrincipalsRequest {
            realm: pb::Realm::Customer as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    server.stop().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test]
async fn realms_and_scopes_decide_what_a_caller_may_do() {
    let server = Server::start(TestDb::sqlite()).await;
    let admin = server.admin_token().await;
    let ann = server
        .create_customer(&admin, "ann@example.com", "Ann", "Lee")
        .await;
    let bob = server
        .create_customer(&admin, "bob@example.com", "Bob", "Ray")
        .await;
    let customer = server
        .login(pb::Realm::Customer, "ann@example.com", PASSWORD)
        .await
        .unwrap()
        .access
        .unwrap()
        .token;
    let mut client = server.client.clone();

    // A customer reads itself, nobody else, and no administrative RPC.
    client
        .get_principal(authed(
            &customer,
            pb::GetPrincipalRequest { id: ann.id.clone() },
        ))
        .await
        .unwrap();
    let other = client
        .get_principal(authed(
            &customer,
            pb::GetPrincipalRequest { id: bob.id.clone() },
        ))
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let create = client
        .create_customer(authed(
            &customer,
            pb::CreateCustomerRequest {
                email: "x@example.com".into(),
                first_name: "X".into(),
                last_name: "Y".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(create.code(), Code::PermissionDenied);
    let search = client
        .search_customers(authed(
            &customer,
            pb::SearchCustomersRequest {
                query: "bob".into(),
                page: None,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(
        search.code(),
        Code::PermissionDenied,
        "customers cannot search customers"
    );

    // A back-office user without the admin scope may search but not administer.
    client
        .create_back_office_user(authed(
            &admin,
            pb::CreateBackOfficeUserRequest {
                email: "agent@example.com".into(),
                full_name: "Agent Smith".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let agent = server
        .login(pb::Realm::BackOffice, "agent@example.com", PASSWORD)
        .await
        .unwrap()
        .access
        .unwrap()
        .token;
    let found = client
        .search_customers(authed(
            &agent,
            pb::SearchCustomersRequest {
                query: "bob".into(),
                page: None,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.customers.len(), 1);
    let denied = client
        .set_principal_status(authed(
            &agent,
            pb::SetPrincipalStatusRequest {
                id: bob.id,
                status: pb::PrincipalStatus::Blocked as i32,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    server.stop().await;
}

/// Rights come from the principal as it is now, not from the token: a demoted administrator's live
/// token no longer administers, and a blocked one's no longer reads (docs/security.md, "Rights from
/// current state").
#[tokio::test]
async fn a_demoted_or_blocked_administrator_loses_rights_at_once() {
    for server in servers().await {
        let root = server.admin_token().await;
        let mut client = server.client.clone();
        let second = client
            .create_back_office_user(authed(
                &root,
                pb::CreateBackOfficeUserRequest {
                    email: "second@example.com".into(),
                    full_name: "Second Admin".into(),
                    password: PASSWORD.into(),
                    scopes: vec!["admin".into()],
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let token = server
            .login(pb::Realm::BackOffice, "second@example.com", PASSWORD)
            .await
            .unwrap()
            .access
            .unwrap()
            .token;
        let make_admin = |email: &str| pb::CreateBackOfficeUserRequest {
            email: email.into(),
            full_name: "New Admin".into(),
            password: PASSWORD.into(),
            scopes: vec!["admin".into()],
            ..Default::default()
        };
        client
            .create_back_office_user(authed(&token, make_admin("third@example.com")))
            .await
            .expect("an administrator creates administrators");

        // Demoted: the same token, still unexpired, no longer carries the admin right.
        client
            .update_principal(authed(
                &root,
                pb::UpdatePrincipalRequest {
                    id: second.id.clone(),
                    scopes: Some(pb::ScopeList { scopes: vec![] }),
                    ..Default::default()
                },
            ))
            .await
            .unwrap();
        let refused = client
            .create_back_office_user(authed(&token, make_admin("fourth@example.com")))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        let refused = client
            .list_principals(authed(
                &token,
                pb::ListPrincipalsRequest {
                    realm: pb::Realm::BackOffice as i32,
                    ..Default::default()
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        // A back-office user may still read itself.
        client
            .get_principal(authed(
                &token,
                pb::GetPrincipalRequest {
                    id: second.id.clone(),
                },
            ))
            .await
            .unwrap();

        // Blocked: the token reads nothing at all, itself included.
        client
            .set_principal_status(authed(
                &root,
                pb::SetPrincipalStatusRequest {
                    id: second.id.clone(),
                    status: pb::PrincipalStatus::Blocked as i32,
                },
            ))
            .await
            .unwrap();
        let refused = client
            .get_principal(authed(&token, pb::GetPrincipalRequest { id: second.id }))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        let refused = client
            .search_customers(authed(
                &token,
                pb::SearchCustomersRequest {
                    query: "ann".into(),
                    page: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        server.stop().await;
    }
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_that_names_the_field() {
    let server = Server::start(TestDb::sqlite()).await;
    let admin = server.admin_token().await;
    let mut client = server.client.clone();
    let cases: Vec<(pb::CreateCustomerRequest, &str)> = vec![
        (
            pb::CreateCustomerRequest {
                email: "not-an-email".into(),
                first_name: "A".into(),
                last_name: "B".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
            "email",
        ),
        (
            pb::CreateCustomerRequest {
                email: "a@example.com".into(),
                first_name: "".into(),
                last_name: "B".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
            "first_name",
        ),
        (
            pb::CreateCustomerRequest {
                email: "a@example.com".into(),
                first_name: "A".repeat(101),
                last_name: "B".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
            "first_name",
        ),
        (
            pb::CreateCustomerRequest {
                email: "a@example.com".into(),
                first_name: "A".into(),
                last_name: "B".into(),
                password: "short".into(),
                ..Default::default()
            },
            "password",
        ),
        (
            pb::CreateCustomerRequest {
                email: "a@example.com".into(),
                first_name: "A".into(),
                last_name: "B".into(),
                password: PASSWORD.into(),
                customer_reference: "DE 42!".into(),
            },
            "customer_reference",
        ),
    ];
    for (request, field) in cases {
        let status = client
            .create_customer(authed(&admin, request))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }
    // Nothing was written by the refused requests.
    let listed = client
        .list_principals(authed(
            &admin,
            pb::ListPrincipalsRequest {
                realm: pb::Realm::Customer as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.page.unwrap().total, 0);

    let too_big = client
        .list_principals(authed(
            &admin,
            pb::ListPrincipalsRequest {
                realm: pb::Realm::Customer as i32,
                page: Some(assist_proto::common::v1::PageRequest {
                    limit: 101,
                    offset: 0,
                }),
                status: 0,
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument);
    assert!(too_big.message().starts_with("page.limit"));
    let no_realm = server
        .login(pb::Realm::Unspecified, "a@example.com", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(no_realm.code(), Code::InvalidArgument);
    let bad_id = client
        .get_principal(authed(&admin, pb::GetPrincipalRequest { id: "42".into() }))
        .await
        .unwrap_err();
    assert_eq!(
        (bad_id.code(), bad_id.message()),
        (Code::InvalidArgument, "id: must be a uuid")
    );
    let missing = client
        .get_principal(authed(
            &admin,
            pb::GetPrincipalRequest {
                id: uuid::Uuid::now_v7().to_string(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let duplicate = client
        .create_back_office_user(authed(
            &admin,
            pb::CreateBackOfficeUserRequest {
                email: ADMIN_EMAIL.into(),
                full_name: "Again".into(),
                password: PASSWORD.into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), Code::AlreadyExists);
    server.stop().await;
}

fn token_from_mail(body: &str) -> String {
    let start = body.find("token=").expect("link in mail") + "token=".len();
    body[start..].split_whitespace().next().unwrap().to_owned()
}

#[tokio::test]
async fn invitation_and_password_reset_links_work_once() {
    for server in servers().await {
        let admin = server.admin_token().await;
        let mut client = server.client.clone();
        let invited = client
            .create_back_office_user(authed(
                &admin,
                pb::CreateBackOfficeUserRequest {
                    email: "new.agent@example.com".into(),
                    full_name: "New Agent".into(),
                    send_invitation: true,
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(invited.status, pb::PrincipalStatus::Invited as i32);
        assert_eq!(
            server
                .login(pb::Realm::BackOffice, "new.agent@example.com", PASSWORD)
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );

        let outbox = client
            .list_outbox(authed(
                &admin,
                pb::ListOutboxRequest {
                    recipient: "new.agent@example.com".into(),
                    page: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(outbox.messages.len(), 1);
        let mail = &outbox.messages[0];
        assert!(
            mail.body
                .contains("http://127.0.0.1:8080/set-password?token="),
            "{}",
            mail.body
        );
        let token = token_from_mail(&mail.body);
        // Without an SMTP relay, listing hands the link to the administrator: it is no longer
        // stored, so a second listing (or anyone reading the database) does not find it.
        let again = client
            .list_outbox(authed(
                &admin,
                pb::ListOutboxRequest {
                    recipient: "new.agent@example.com".into(),
                    page: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.messages.len(), 1);
        assert!(
            !again.messages[0].body.contains("token="),
            "{:?}",
            again.messages[0]
        );
        assert!(again.messages[0].sent_at_us > 0, "marked handed over");

        let redeemed = client
            .redeem_one_time_token(pb::RedeemOneTimeTokenRequest {
                token: token.clone(),
                new_password: PASSWORD.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(redeemed.principal_id, invited.id);
        server
            .login(pb::Realm::BackOffice, "new.agent@example.com", PASSWORD)
            .await
            .unwrap();
        let again = client
            .redeem_one_time_token(pb::RedeemOneTimeTokenRequest {
                token,
                new_password: "another password".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition, "single use");

        // Password reset: a new password works, the old one and old refresh tokens do not.
        let before = server
            .login(pb::Realm::BackOffice, "new.agent@example.com", PASSWORD)
            .await
            .unwrap();
        client
            .issue_one_time_token(authed(
                &admin,
                pb::IssueOneTimeTokenRequest {
                    principal_id: invited.id.clone(),
                    purpose: pb::OneTimeTokenPurpose::PasswordReset as i32,
                },
            ))
            .await
            .unwrap();
        let outbox = client
            .list_outbox(authed(
                &admin,
                pb::ListOutboxRequest {
                    recipient: "new.agent@example.com".into(),
                    page: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(outbox.messages[0].body.contains("/reset-password?token="));
        let reset = token_from_mail(&outbox.messages[0].body);
        client
            .redeem_one_time_token(pb::RedeemOneTimeTokenRequest {
                token: reset,
                new_password: "a brand new secret".into(),
            })
            .await
            .unwrap();
        assert_eq!(
            server
                .login(pb::Realm::BackOffice, "new.agent@example.com", PASSWORD)
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
        server
            .login(
                pb::Realm::BackOffice,
                "new.agent@example.com",
                "a brand new secret",
            )
            .await
            .unwrap();
        let stale = client
            .refresh(pb::RefreshRequest {
                refresh_token: before.refresh_token,
            })
            .await
            .unwrap_err();
        assert_eq!(
            stale.code(),
            Code::Unauthenticated,
            "a reset logs out everywhere"
        );

        // An active user cannot be sent an invitation.
        let refused = client
            .issue_one_time_token(authed(
                &admin,
                pb::IssueOneTimeTokenRequest {
                    principal_id: invited.id,
                    purpose: pb::OneTimeTokenPurpose::Invitation as i32,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        server.stop().await;
    }
}

#[tokio::test]
async fn keys_rotate_while_tokens_are_live() {
    for server in servers().await {
        let admin = server.admin_token().await;
        let verifier = verifier(&server);
        let old_kid = jsonwebtoken::decode_header(&admin).unwrap().kid.unwrap();
        verifier.verify(&admin).await.unwrap();

        let new_kid = server
            .client
            .clone()
            .rotate_signing_key(authed(&admin, pb::RotateSigningKeyRequest {}))
            .await
            .unwrap()
            .into_inner()
            .kid;
        assert_ne!(new_kid, old_kid);
        let jwks = server
            .client
            .clone()
            .get_jwks(assist_proto::common::v1::GetJwksRequest {})
            .await
            .unwrap()
            .into_inner();
        let kids: Vec<_> = jwks.keys.iter().map(|k| k.kid.clone()).collect();
        assert!(
            kids.contains(&old_kid) && kids.contains(&new_kid),
            "both published: {kids:?}"
        );
        assert!(jwks.json.contains(&new_kid));

        // The old token still works, here and for the server itself; new tokens use the new key.
        verifier.verify(&admin).await.unwrap();
        server
            .client
            .clone()
            .get_jwks(authed(&admin, assist_proto::common::v1::GetJwksRequest {}))
            .await
            .unwrap();
        let fresh = server
            .login(pb::Realm::BackOffice, ADMIN_EMAIL, PASSWORD)
            .await
            .unwrap()
            .access
            .unwrap()
            .token;
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid.unwrap(),
            new_kid
        );
        // The verifier learns the new kid by refetching.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        verifier.verify(&fresh).await.unwrap();
        server.stop().await;
    }
}

#[tokio::test]
async fn signing_keys_are_encrypted_at_rest() {
    let server = Server::start(TestDb::sqlite()).await;
    let store = common::store(&server.db).await;
    let stored = &store.signing_keys().await.unwrap()[0];
    let kek = KeyEncryptionKey::from_base64(&server.kek).unwrap();
    let wrong =
        KeyEncryptionKey::from_base64(&KeyEncryptionKey::generate_base64().unwrap()).unwrap();
    assert!(keys::open(&kek, stored).is_ok());
    assert!(keys::open(&wrong, stored).is_err());
    assert!(!stored.sealed_private_key.contains(&stored.public_key));
    // A replica started with another key-encryption key refuses to run rather than sign with nothing:
    // `serve` ends with an error (the process exits non-zero).
    let refused = assist_identity::service::Identity::new(store, Default::default(), wrong).await;
    assert!(refused.is_err());
    let url = server.db.url.clone();
    let config = <assist_identity::Config as clap::Parser>::try_parse_from([
        "identity".to_owned(),
        format!("--database-url={url}"),
        format!(
            "--key-encryption-key={}",
            KeyEncryptionKey::generate_base64().unwrap()
        ),
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_trigger, shutdown) = assist_runtime::shutdown::channel();
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        assist_identity::serve(config, listener, shutdown),
    )
    .await
    .expect("serve gives up instead of idling");
    assert!(format!("{:#}", outcome.unwrap_err()).contains("cannot be decrypted"));
    server.stop().await;
}

#[tokio::test]
async fn service_accounts_exchange_secrets_for_renewed_service_tokens() {
    let server = Server::start_with(TestDb::sqlite(), &["--service-token-ttl-secs=3"]).await;
    let admin = server.admin_token().await;
    let mut client = server.client.clone();
    let created = client
        .create_service_account(authed(
            &admin,
            pb::CreateServiceAccountRequest {
                client_id: "gateway".into(),
                scopes: vec!["principals:read".into()],
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let wrong = client
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_id: "gateway".into(),
            client_secret: "guess".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);

    let token = assist_runtime::client::ServiceToken::start(
        server.client.clone(),
        "gateway".into(),
        created.client_secret.clone(),
    )
    .await
    .unwrap();
    let first = token.get();
    let claims = verifier(&server).verify(&first).await.unwrap();
    assert_eq!(claims.realm, Realm::Service);
    assert_eq!(
        claims.scope, "principals:read service",
        "the account's permissions and the service marker"
    );

    // A service token calls what its permissions name (here: search customers) through the outgoing
    // interceptor, and never administers.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect_lazy();
    let mut as_service = pb::identity_client::IdentityClient::with_interceptor(
        channel,
        assist_runtime::client::Outgoing {
            token: Some(token.clone()),
        },
    );
    as_service
        .search_customers(pb::SearchCustomersRequest {
            query: "a".into(),
            page: None,
        })
        .await
        .unwrap();
    let refused = as_service
        .list_principals(pb::ListPrincipalsRequest {
            realm: pb::Realm::Customer as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    // Renewed before it expires (lifetime 3 s, renewed at two thirds of it).
    let mut renewed = false;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if token.get() != first {
            renewed = true;
            break;
        }
    }
    assert!(renewed, "renewed within 6 s");
    verifier(&server).verify(&token.get()).await.unwrap();

    // A blocked service account gets no more tokens.
    client
        .set_principal_status(authed(
            &admin,
            pb::SetPrincipalStatusRequest {
                id: created.principal.unwrap().id,
                status: pb::PrincipalStatus::Blocked as i32,
            },
        ))
        .await
        .unwrap();
    let blocked = client
        .issue_service_token(pb::IssueServiceTokenRequest {
            client_id: "gateway".into(),
            client_secret: created.client_secret,
        })
        .await
        .unwrap_err();
    assert_eq!(blocked.code(), Code::Unauthenticated);
    server.stop().await;
}

#[tokio::test]
async fn customer_search_over_grpc_pages_with_totals() {
    for server in servers().await {
        let admin = server.admin_token().await;
        for (n, (first, last)) in [
            ("Ann", "Lee"),
            ("Anna", "Berg"),
            ("Annie", "Moss"),
            ("Bob", "Annex"),
        ]
        .iter()
        .enumerate()
        {
            server
                .create_customer(&admin, &format!("c{n}@example.com"), first, last)
                .await;
        }
        let mut client = server.client.clone();
        let page = client
            .search_customers(authed(
                &admin,
                pb::SearchCustomersRequest {
                    query: "ANN".into(),
                    page: Some(assist_proto::common::v1::PageRequest {
                        limit: 2,
                        offset: 0,
                    }),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.customers.len(), 2);
        let info = page.page.unwrap();
        assert_eq!((info.total, info.total_exact, info.limit), (4, true, 2));
        assert!(
            page.customers[0].customer_reference.starts_with("DE--"),
            "references are generated"
        );
        let by_ref = client
            .search_customers(authed(
                &admin,
                pb::SearchCustomersRequest {
                    query: page.customers[1].customer_reference.to_lowercase(),
                    page: None,
                },
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            by_ref.customers[0].id, page.customers[1].id,
            "exact reference, case-insensitive"
        );
        let long = client
            .search_customers(authed(
                &admin,
                pb::SearchCustomersRequest {
                    query: "x".repeat(101),
                    page: None,
                },
            ))
            .await
            .unwrap_err();
        assert_eq!(long.code(), Code::InvalidArgument);
        server.stop().await;
    }
}

#[tokio::test]
async fn metrics_count_calls_and_errors_per_method() {
    let server = Server::start_with(TestDb::sqlite(), &[]).await;
    let _ = server
        .login(pb::Realm::Customer, "nobody@example.com", PASSWORD)
        .await;
    let text = assist_runtime::metrics::render();
    assert!(text.contains(r#"assist_rpc_requests_total{method="/assist.identity.v1.Identity/Login",code="Unauthenticated"}"#), "{text}");
    assert!(text.contains(r#"assist_rpc_errors_total{method="/assist.identity.v1.Identity/Login",code="Unauthenticated"}"#));
    assert!(text.contains("assist_rpc_duration_seconds_bucket"));
    server.stop().await;
}
