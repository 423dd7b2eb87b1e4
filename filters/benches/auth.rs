//! Hot-path costs of authentication and authorization.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use criterion::{criterion_group, criterion_main, Criterion};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use mft_filters::auth::{api_key, credential, jwt, scope};
use std::hint::black_box;
use std::time::{Duration, SystemTime};

const RSA1: &str = include_str!("../tests/fixtures/rsa1_private.pem");
const EC1: &str = include_str!("../tests/fixtures/ec1_private.pem");
const ED1: &str = include_str!("../tests/fixtures/ed1_private.pem");
const JWKS: &str = include_str!("../tests/fixtures/jwks.json");

fn api_key_path(c: &mut Criterion) {
    let key = api_key::generate(&[0x5a; api_key::RANDOM_LEN]);
    let header = format!("Bearer {}", key.token);
    let stored = key.secret_hash;
    c.bench_function("api_key/extract_parse_verify", |b| {
        b.iter(|| {
            let cred = credential::extract(Some(black_box(header.as_bytes())), None);
            let Ok(Some(credential::Credential::ApiKey(token))) = cred else {
                panic!("bench key must extract");
            };
            let parsed = api_key::parse(token).expect("bench key must parse");
            black_box(parsed.verify(black_box(&stored)))
        })
    });
}

fn scope_lookup(c: &mut Criterion) {
    let policy = scope::ScopePolicy::default_policy();
    let granted = vec!["files:read".to_string(), "deliveries:write".to_string()];
    c.bench_function("scope/required_scope_and_check", |b| {
        b.iter(|| {
            let needed = policy
                .required_scope(
                    black_box("GET"),
                    black_box("/api/v1/files/0190a4c2/content"),
                )
                .expect("route is mapped");
            black_box(scope::has_scope(&granted, needed))
        })
    });
}

/// RS256 is what most OIDC issuers sign with; ES256 and EdDSA are measured
/// alongside to show what an issuer's choice of algorithm costs the gateway.
fn jwt_verify(c: &mut Criterion) {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let claims = serde_json::json!({
        "iss": "https://idp.example",
        "sub": "svc-backup",
        "aud": "mft-gateway",
        "exp": 1_700_000_300u64,
        "scope": "files:read files:write",
    });
    let keys = jwt::JwksKeys::from_json(JWKS.as_bytes()).expect("fixture jwks");
    let cases = [
        (
            "jwt/verify_rs256",
            Algorithm::RS256,
            "rsa-1",
            EncodingKey::from_rsa_pem(RSA1.as_bytes()),
        ),
        (
            "jwt/verify_es256",
            Algorithm::ES256,
            "ec-1",
            EncodingKey::from_ec_pem(EC1.as_bytes()),
        ),
        (
            "jwt/verify_eddsa",
            Algorithm::EdDSA,
            "ed-1",
            EncodingKey::from_ed_pem(ED1.as_bytes()),
        ),
    ];
    for (name, alg, kid, key) in cases {
        let mut header = Header::new(alg);
        header.kid = Some(kid.into());
        let key = key.expect("fixture key");
        let token = encode(&header, &claims, &key).expect("bench token signs");
        let policy = jwt::JwtIssuerPolicy::new("https://idp.example", &["mft-gateway"], &[alg]);
        assert!(jwt::verify(&token, &policy, &keys, now).is_ok());
        c.bench_function(name, |b| {
            b.iter(|| black_box(jwt::verify(black_box(&token), &policy, &keys, now)))
        });
    }
}

criterion_group!(benches, api_key_path, scope_lookup, jwt_verify);
criterion_main!(benches);
