//! Cost of signing one forwarded request (the gateway's hot path) and of
//! verifying it (the backend's), per algorithm.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test and benchmark code: a failed unwrap is a failed run

use criterion::{criterion_group, criterion_main, Criterion};
use mft_filters::signing::keys::generate_ed25519_pem;
use mft_filters::signing::{RequestView, Signer, SigningKey, Verifier, VerifyPolicy};
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// Counts heap allocations, to report how many one signature costs.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FIELDS: [(&str, &str); 4] = [
    ("x-request-id", "0192f0c4-7b7e-7c1a-9a44-3f1e9b0d2c11"),
    ("x-mft-principal", "key:k7f3a9c2e1d0"),
    ("x-mft-scopes", "files:read files:write deliveries:write"),
    ("content-length", "1048576"),
];

fn request() -> RequestView<'static> {
    RequestView {
        method: "POST",
        authority: "127.0.0.1:8080",
        path: "/api/v1/files",
        query: Some("folder=inbound"),
        fields: &FIELDS,
    }
}

fn bench_key(c: &mut Criterion, name: &str, key: SigningKey) {
    let verifier =
        Verifier::new(vec![key.verifying_key()], VerifyPolicy::default()).expect("one key");
    let signer = Signer::new(key, Duration::from_secs(30));
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let h = signer.sign(&request(), now).expect("signs");
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    // Base, Signature-Input and Signature: three buffers, sized up front.
    eprintln!(
        "signing/{name}: {allocations} heap allocations per signature ({} + {} bytes of headers)",
        h.signature_input.len(),
        h.signature.len()
    );
    c.bench_function(&format!("signing/{name}/sign"), |b| {
        b.iter(|| black_box(signer.sign(black_box(&request()), now).expect("signs")))
    });
    c.bench_function(&format!("signing/{name}/verify"), |b| {
        b.iter(|| {
            black_box(
                verifier
                    .verify(
                        black_box(&request()),
                        Some(&h.signature_input),
                        Some(&h.signature),
                        now,
                    )
                    .expect("verifies"),
            )
        })
    });
}

fn signing(c: &mut Criterion) {
    bench_key(
        c,
        "hmac-sha256",
        SigningKey::hmac(&[0x42; 32], None).expect("hmac key"),
    );
    let pem = generate_ed25519_pem().expect("random");
    bench_key(
        c,
        "ed25519",
        SigningKey::ed25519_from_pem(&pem, None).expect("ed25519 key"),
    );
}

criterion_group!(benches, signing);
criterion_main!(benches);
