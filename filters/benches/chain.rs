//! The whole per-request filter chain of an API-key request, and each of its
//! steps alone: what the gateway's CPU pays per proxied request before the
//! upstream connection (no I/O, no allocation of the proxy itself).
//!
//! Order as in the gateway: head limits, credential extraction, API key parse
//! and constant-time verify against the cached hash, scope check, one
//! rate-limit check on a warm key, body limit lookup, RFC 9421 signing
//! (HMAC-SHA256, fresh nonce from the OS, `SystemTime::now()`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use criterion::{criterion_group, criterion_main, Criterion};
use governor::clock::DefaultClock;
use mft_filters::auth::{api_key, credential, scope};
use mft_filters::limits::{BodyLimits, BodyRule, HeadLimits};
use mft_filters::ratelimit::{KeyLimiter, Limit};
use mft_filters::signing::base::write_base;
use mft_filters::signing::{RequestView, SignParams, Signer, SigningKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, SystemTime};

const METHOD: &str = "POST";
const PATH: &str = "/api/v1/files";
const QUERY: &str = "folder=inbound";
const TARGET: &str = "/api/v1/files?folder=inbound";

/// The gateway's built-in body rules (`[limits]` defaults).
fn body_limits() -> BodyLimits {
    let json = |prefix: &str| BodyRule {
        methods: None,
        prefix: prefix.to_string(),
        limit: Some(1024 * 1024),
    };
    BodyLimits::new(
        None,
        vec![json("/api/v1/deliveries"), json("/api/v1/transfers")],
    )
}

/// `[limits]` defaults.
const HEAD: HeadLimits = HeadLimits {
    max_header_count: 100,
    max_header_bytes: 32 * 1024,
    max_url_bytes: 8 * 1024,
};

/// Everything built once at startup (or cached), as the gateway holds it.
struct Chain {
    headers: Vec<(&'static str, String)>,
    authorization: String,
    stored_hash: [u8; 32],
    policy: scope::ScopePolicy,
    granted: Vec<String>,
    limiter: KeyLimiter<DefaultClock>,
    body: BodyLimits,
    signer: Signer,
}

impl Chain {
    fn new() -> Chain {
        let key = api_key::generate(&[0x5a; api_key::RANDOM_LEN]);
        let authorization = format!("Bearer {}", key.token);
        let headers = vec![
            ("host", "mft.example.com".to_string()),
            ("user-agent", "curl/8.5.0".to_string()),
            ("accept", "application/json".to_string()),
            ("authorization", authorization.clone()),
            ("content-type", "application/octet-stream".to_string()),
            ("content-length", "1048576".to_string()),
            ("x-filename", "report-2026-11.csv".to_string()),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string(),
            ),
        ];
        let n = |v| NonZeroU32::new(v).unwrap_or(NonZeroU32::MIN);
        // A quota no benchmark loop can exhaust: the allowed path.
        let limit =
            Limit::new(n(1_000_000), Duration::from_secs(1), n(u32::MAX / 2)).expect("valid limit");
        Chain {
            headers,
            authorization,
            stored_hash: key.secret_hash,
            policy: scope::ScopePolicy::default_policy(),
            granted: vec!["files:read".to_string(), "files:write".to_string()],
            limiter: KeyLimiter::new(limit, DefaultClock::default()),
            body: body_limits(),
            signer: Signer::new(
                SigningKey::hmac(&[0x42; 32], None).expect("hmac key"),
                Duration::from_secs(30),
            ),
        }
    }

    fn head(&self) -> bool {
        HEAD.check(
            black_box(TARGET).len(),
            self.headers.iter().map(|(n, v)| (n.len(), v.len())),
        )
        .is_ok()
    }

    fn authenticate(&self) -> bool {
        let cred = credential::extract(Some(black_box(self.authorization.as_bytes())), None);
        let Ok(Some(credential::Credential::ApiKey(token))) = cred else {
            return false;
        };
        match api_key::parse(token) {
            Ok(parsed) => parsed.verify(&self.stored_hash),
            Err(_) => false,
        }
    }

    fn scope(&self) -> bool {
        self.policy
            .required_scope(black_box(METHOD), black_box(PATH))
            .is_some_and(|needed| scope::has_scope(&self.granted, needed))
    }

    fn rate(&self) -> bool {
        self.limiter.check().is_allowed()
    }

    fn body(&self) -> Option<u64> {
        self.body.limit_for(black_box(METHOD), black_box(PATH))
    }

    fn sign(&self) -> usize {
        let fields = [
            ("x-request-id", "0192f0c4-7b7e-7c1a-9a44-3f1e9b0d2c11"),
            ("x-mft-principal", "key:k7f3a9c2e1d0"),
            ("x-mft-scopes", "files:read files:write"),
            ("content-length", "1048576"),
        ];
        let view = view(&fields);
        let h = self
            .signer
            .sign(black_box(&view), SystemTime::now())
            .expect("signs");
        h.signature.len()
    }

    /// One request: every step, in the gateway's order.
    fn run(&self) -> bool {
        self.head()
            && self.authenticate()
            && self.scope()
            && self.rate()
            && black_box(self.body()).is_none()
            && self.sign() > 0
    }
}

fn view<'a>(fields: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
    RequestView {
        method: METHOD,
        authority: "mft.example.com",
        path: PATH,
        query: Some(QUERY),
        fields,
    }
}

fn chain(c: &mut Criterion) {
    let chain = Chain::new();
    assert!(chain.run(), "every step must pass on the bench request");
    c.bench_function("chain/whole_api_key_request", |b| {
        b.iter(|| black_box(chain.run()))
    });
    c.bench_function("chain/step/head_limits", |b| {
        b.iter(|| black_box(chain.head()))
    });
    c.bench_function("chain/step/extract_parse_verify_api_key", |b| {
        b.iter(|| black_box(chain.authenticate()))
    });
    c.bench_function("chain/step/scope", |b| b.iter(|| black_box(chain.scope())));
    c.bench_function("chain/step/ratelimit_warm_key", |b| {
        b.iter(|| black_box(chain.rate()))
    });
    c.bench_function("chain/step/body_limit_for", |b| {
        b.iter(|| black_box(chain.body()))
    });
    c.bench_function("chain/step/sign_hmac_sha256", |b| {
        b.iter(|| black_box(chain.sign()))
    });

    // Signing broken down: the OS nonce alone, and a signature with a fixed
    // nonce (no system call), to show what the nonce costs.
    let rng = SystemRandom::new();
    c.bench_function("chain/sign_part/nonce_16_bytes_from_os", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 16];
            rng.fill(&mut nonce).expect("random");
            black_box(nonce)
        })
    });
    let fields = [
        ("x-request-id", "0192f0c4-7b7e-7c1a-9a44-3f1e9b0d2c11"),
        ("x-mft-principal", "key:k7f3a9c2e1d0"),
        ("x-mft-scopes", "files:read files:write"),
        ("content-length", "1048576"),
    ];
    let components = [
        "@method",
        "@authority",
        "@path",
        "@query",
        "x-request-id",
        "x-mft-principal",
        "x-mft-scopes",
        "content-length",
    ];
    let key_id = chain.signer.key().id().to_string();
    c.bench_function("chain/sign_part/sign_fixed_nonce", |b| {
        b.iter(|| {
            let created = 1_800_000_000;
            let params = SignParams {
                created,
                expires: Some(created + 30),
                key_id: Some(&key_id),
                alg: Some("hmac-sha256"),
                nonce: Some("AAAAAAAAAAAAAAAAAAAAAA"),
                tag: Some("mft-gateway"),
            };
            black_box(
                chain
                    .signer
                    .sign_components("mft", &view(&fields), &components, &params)
                    .expect("signs"),
            )
        })
    });

    // The two halves of a fixed-nonce signature: building the base, and the
    // HMAC over it.
    let params = SignParams {
        created: 1_800_000_000,
        expires: Some(1_800_000_030),
        key_id: Some(&key_id),
        alg: Some("hmac-sha256"),
        nonce: Some("AAAAAAAAAAAAAAAAAAAAAA"),
        tag: Some("mft-gateway"),
    };
    c.bench_function("chain/sign_part/base_only", |b| {
        b.iter(|| {
            let mut base = String::with_capacity(512);
            write_base(&mut base, black_box(&view(&fields)), &components, |out| {
                params.write(out)
            })
            .expect("base");
            black_box(base)
        })
    });
    let mut base = String::new();
    write_base(&mut base, &view(&fields), &components, |out| {
        params.write(out)
    })
    .expect("base");
    eprintln!("chain: signature base is {} bytes", base.len());
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[0x42; 32]);
    c.bench_function("chain/sign_part/hmac_sha256_over_base", |b| {
        b.iter(|| black_box(ring::hmac::sign(&hmac, black_box(base.as_bytes()))))
    });
}

criterion_group!(benches, chain);
criterion_main!(benches);
