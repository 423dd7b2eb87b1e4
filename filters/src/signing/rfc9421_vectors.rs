//! RFC 9421 appendix B test vectors for the algorithms we implement:
//! B.2.5 (hmac-sha256) and B.2.6 (ed25519), both deterministic, so the
//! signature base and the signature value must match the RFC byte for byte.

use super::base::write_base;
use super::keys::{hmac_secret_from_text, SigningKey, VerifyingKey};
use super::params::SignParams;
use super::{RequestView, Signer};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::time::Duration;

/// B.1.5, the shared secret `test-shared-secret`.
const SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";

/// B.1.4, `test-key-ed25519`.
const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF
-----END PRIVATE KEY-----
";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=
-----END PUBLIC KEY-----
";

/// The B.2 example request: `POST /foo?param=Value&Pet=dog` to example.com.
fn request<'a>(fields: &'a [(&'a str, &'a str)]) -> RequestView<'a> {
    RequestView {
        method: "POST",
        authority: "example.com",
        path: "/foo",
        query: Some("param=Value&Pet=dog"),
        fields,
    }
}

const FIELDS: [(&str, &str); 5] = [
    ("host", "example.com"),
    ("date", "Tue, 20 Apr 2021 02:07:55 GMT"),
    ("content-type", "application/json"),
    (
        "content-digest",
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    ),
    ("content-length", "18"),
];

fn params(key_id: &str) -> SignParams<'_> {
    SignParams {
        created: 1_618_884_473,
        expires: None,
        key_id: Some(key_id),
        alg: None,
        nonce: None,
        tag: None,
    }
}

fn base_of(components: &[&str], key_id: &str) -> String {
    let mut out = String::new();
    write_base(&mut out, &request(&FIELDS), components, |o| {
        params(key_id).write(o)
    })
    .unwrap();
    out
}

#[test]
fn b_2_5_hmac_sha256() {
    let components = ["date", "@authority", "content-type"];
    assert_eq!(
        base_of(&components, "test-shared-secret"),
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
         \"@authority\": example.com\n\
         \"content-type\": application/json\n\
         \"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    let secret = hmac_secret_from_text(&format!("base64:{SHARED_SECRET}")).unwrap();
    let signer = Signer::new(
        SigningKey::hmac(&secret, Some("test-shared-secret")).unwrap(),
        Duration::from_secs(30),
    );
    let h = signer
        .sign_components(
            "sig-b25",
            &request(&FIELDS),
            &components,
            &params("test-shared-secret"),
        )
        .unwrap();
    assert_eq!(
        h.signature_input,
        "sig-b25=(\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );
    assert_eq!(
        h.signature,
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
    );
    let verifying = VerifyingKey::hmac(&secret, None).unwrap();
    let raw = STANDARD
        .decode("pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=")
        .unwrap();
    let base = base_of(&components, "test-shared-secret");
    assert!(verifying.verify(base.as_bytes(), &raw));
    assert!(!verifying.verify(base.replace("json", "xml").as_bytes(), &raw));
}

#[test]
fn b_2_6_ed25519() {
    let components = [
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    ];
    let base = base_of(&components, "test-key-ed25519");
    assert_eq!(
        base,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\
         \"@method\": POST\n\
         \"@path\": /foo\n\
         \"@authority\": example.com\n\
         \"content-type\": application/json\n\
         \"content-length\": 18\n\
         \"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
    );
    let key = SigningKey::ed25519_from_pem(ED25519_PRIVATE, Some("test-key-ed25519")).unwrap();
    assert_eq!(key.public_key_pem().unwrap(), ED25519_PUBLIC);
    let signer = Signer::new(key, Duration::from_secs(30));
    let h = signer
        .sign_components(
            "sig-b26",
            &request(&FIELDS),
            &components,
            &params("test-key-ed25519"),
        )
        .unwrap();
    let expected =
        "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";
    assert_eq!(h.signature, format!("sig-b26=:{expected}:"));
    let public = VerifyingKey::ed25519_public(ED25519_PUBLIC, None).unwrap();
    let raw = STANDARD.decode(expected).unwrap();
    assert!(public.verify(base.as_bytes(), &raw));
    assert!(!public.verify(base.replace("POST", "PUT").as_bytes(), &raw));
    // The raw 32-byte form of the same public key works too.
    let raw_public =
        VerifyingKey::ed25519_public("JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs", None).unwrap();
    assert_eq!(raw_public.id(), public.id());
}
