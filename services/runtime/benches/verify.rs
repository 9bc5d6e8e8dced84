//! Access-token verification against the raw Ed25519 verify of the same crypto library (ed25519-dalek),
//! in the same run. The bar: verification at least 80% of the raw rate. The verifier uses
//! `verify_strict` (rejects malleable signatures and weak keys), so both raw variants are measured.

use std::hint::black_box;
use std::sync::Arc;

use assist_runtime::auth::{Claims, KeySource, PublicKey, Realm, TokenVerifier, TrustedIssuer};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use futures::future::BoxFuture;

struct Fixed(Vec<PublicKey>);

impl KeySource for Fixed {
    fn fetch(&self) -> BoxFuture<'_, assist_runtime::Result<Vec<PublicKey>>> {
        let keys = self.0.clone();
        Box::pin(async move { Ok(keys) })
    }
}

fn bench(c: &mut Criterion) {
    let signing = SigningKey::from_bytes(&[7u8; 32]);
    let x = URL_SAFE_NO_PAD.encode(signing.verifying_key().as_bytes());
    let now = assist_runtime::time::now_us() / 1_000_000;
    let claims = Claims {
        iss: "assist-identity".into(),
        sub: "0199a3c4-0000-7000-8000-000000000001".into(),
        aud: "agent-assist".into(),
        exp: now + 3600,
        iat: now,
        nbf: now,
        jti: "0199a3c4-0000-7000-8000-000000000002".into(),
        realm: Realm::BackOffice,
        scope: "back_office admin".into(),
        act: None,
        sid: None,
        name: None,
        merchant_name: None,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("bench".into());
    let der = signing.to_pkcs8_der().unwrap();
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();

    let verifier = TokenVerifier::new(
        "agent-assist",
        vec![TrustedIssuer {
            issuer: "assist-identity".into(),
            keys: Arc::new(Fixed(vec![PublicKey {
                kid: "bench".into(),
                x,
            }])),
        }],
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(verifier.refresh_keys());
    assert_eq!(verifier.verify_cached(&token).unwrap().unwrap(), claims);

    // The raw operation: verify the JWS signature over the same signing input with the same library.
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    let verifying = signing.verifying_key();
    assert!(
        verifying
            .verify(signing_input.as_bytes(), &signature)
            .is_ok()
    );
    let _ = signing.sign(b"warm");

    let mut group = c.benchmark_group("access_token");
    group.throughput(Throughput::Elements(1));
    group.bench_function("raw_ed25519_verify_strict", |b| {
        b.iter(|| {
            verifying
                .verify_strict(black_box(signing_input.as_bytes()), black_box(&signature))
                .unwrap()
        })
    });
    group.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| {
            verifying
                .verify(black_box(signing_input.as_bytes()), black_box(&signature))
                .unwrap()
        })
    });
    group.bench_function("token_verifier_verify", |b| {
        b.iter(|| verifier.verify_cached(black_box(&token)).unwrap().unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
