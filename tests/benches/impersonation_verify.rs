//! Accepting an impersonation token: signature, claims and the `sid` liveness check (answered from
//! the cache that `WatchRevocations` keeps), against the raw strict Ed25519 verification of the same
//! token, in one run. The platform runs in this process on SQLite.
//!
//! `cargo bench -p assist-tests --bench impersonation_verify`

use std::sync::Arc;

use assist_proto::agentdirectory::v1::Capability;
use assist_proto::impersonation::v1 as pb;
use assist_runtime::auth::{ImpersonationJwks, KeySource, TokenVerifier, TrustedIssuer};
use assist_runtime::client::{Outgoing, ServiceToken};
use assist_runtime::sessions::SessionLiveness;
use assist_runtime::testing::TestBackend;
use assist_tests::platform::{Platform, authed};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::{Signature, VerifyingKey};

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (platform, token, sid, verifier, liveness, key) = runtime.block_on(async {
        let platform = Platform::start(TestBackend::Sqlite, 1, &[]).await;
        let agent = platform
            .agent("bench-agent@example.com", &[Capability::AssistCustomers])
            .await;
        let customer = platform.customer("bench-customer@example.com").await;
        let started = platform
            .impersonation_client(0)
            .start_assist(authed(
                &agent.token,
                pb::StartAssistRequest {
                    target_id: customer.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .unwrap()
            .into_inner();
        let jwks = ImpersonationJwks(platform.impersonation_client(0));
        let published = jwks.fetch().await.unwrap();
        let x: [u8; 32] = URL_SAFE_NO_PAD
            .decode(&published[0].x)
            .unwrap()
            .try_into()
            .unwrap();
        let key = VerifyingKey::from_bytes(&x).unwrap();
        let verifier = Arc::new(TokenVerifier::new(
            "agent-assist",
            vec![TrustedIssuer {
                issuer: "assist-impersonation".into(),
                keys: Arc::new(jwks),
            }],
        ));
        verifier.refresh_keys().await;
        let service = ServiceToken::start(
            platform.identity_client(),
            platform.service.0.clone(),
            platform.service.1.clone(),
        )
        .await
        .unwrap();
        let client = pb::impersonation_client::ImpersonationClient::with_interceptor(
            platform.impersonation[0].channel(),
            Outgoing {
                token: Some(service),
            },
        );
        let (trigger, shutdown) = assist_runtime::shutdown::channel();
        std::mem::forget(trigger);
        let liveness = SessionLiveness::start(client, shutdown);
        while !liveness.is_following() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let sid = started.session.unwrap().id;
        liveness.check(&sid).await.unwrap();
        (platform, started.access_token, sid, verifier, liveness, key)
    });

    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    let mut group = c.benchmark_group("impersonation token");
    group.bench_function("raw Ed25519 verify_strict", |b| {
        b.iter(|| {
            key.verify_strict(signing_input.as_bytes(), &signature)
                .unwrap()
        })
    });
    group.bench_function("signature + claims + sid liveness", |b| {
        b.iter(|| {
            let claims = verifier.verify_cached(&token).unwrap().unwrap();
            let sid_claim = claims.sid.as_deref().unwrap();
            debug_assert_eq!(sid_claim, sid);
            runtime.block_on(liveness.check(sid_claim)).unwrap();
        })
    });
    group.finish();
    runtime.block_on(platform.stop());
}

criterion_group!(benches, bench);
criterion_main!(benches);
