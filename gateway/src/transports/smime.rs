//! S/MIME signing for the `smtp` provider (RFC 8551): the message body is
//! wrapped in `multipart/signed; protocol="application/pkcs7-signature";
//! micalg=sha-256` with a detached CMS SignedData (RFC 5652) over the first
//! part, signed with SHA-256 by the From address's certificate and key (PEM;
//! RSA or ECDSA P-256). `check` tells whether the certificate is ready or why
//! not: missing, expired, not for the From address, key mismatch.

use super::TransportError;
use cms::builder::{SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, EncodePublicKey};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use x509_cert::der::Encode;
use x509_cert::Certificate;

/// The signing key.
enum Key {
    Rsa(Box<rsa::pkcs1v15::SigningKey<Sha256>>),
    P256(p256::ecdsa::SigningKey),
}

/// A certificate (with any chain after it) and its key, loaded and checked.
pub struct Signer {
    chain: Vec<Certificate>,
    key: Key,
}

fn read(path: &Path, base: &Path, what: &str) -> Result<String, String> {
    let full: PathBuf = base.join(path);
    std::fs::read_to_string(&full).map_err(|e| format!("{what} {}: {e}", full.display()))
}

fn load_key(pem: &str) -> Result<Key, String> {
    use p256::pkcs8::DecodePrivateKey;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
        return Ok(Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k))));
    }
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs1_pem(pem) {
        return Ok(Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k))));
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_pem(pem) {
        return Ok(Key::P256(k.into()));
    }
    if let Ok(k) = p256::SecretKey::from_sec1_pem(pem) {
        return Ok(Key::P256(k.into()));
    }
    Err("not a PEM RSA or ECDSA P-256 private key (PKCS#8, PKCS#1 or SEC1)".into())
}

impl Key {
    fn public_der(&self) -> Option<Vec<u8>> {
        match self {
            Key::Rsa(k) => rsa::RsaPublicKey::from(k.as_ref().as_ref())
                .to_public_key_der()
                .ok()
                .map(|d| d.as_bytes().to_vec()),
            Key::P256(k) => k
                .verifying_key()
                .to_public_key_der()
                .ok()
                .map(|d| d.as_bytes().to_vec()),
        }
    }
}

/// The key in PKCS#8 DER (a PKCS#12 file's key bag holds it so).
fn load_key_der(der: &[u8]) -> Result<Key, String> {
    use p256::pkcs8::DecodePrivateKey;
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
        return Ok(Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::new(k))));
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return Ok(Key::P256(k.into()));
    }
    Err("not an RSA or ECDSA P-256 private key".into())
}

/// Where the certificate and its key come from.
pub enum Identity<'a> {
    /// PEM files: the certificate (chain after it) and the key.
    Pem {
        /// `smime_cert`.
        cert: &'a Path,
        /// `smime_key`.
        key: &'a Path,
    },
    /// One PKCS#12 file (`.p12`, `.pfx`) and its password ("" for none).
    Pkcs12 {
        /// `smime_p12`.
        file: &'a Path,
        /// Its password, resolved from `smime_p12_password` for this use.
        password: &'a str,
    },
}

/// The key and the certificates (the key's first) of a PKCS#12 file.
fn load_p12(file: &Path, base: &Path, password: &str) -> Result<(Vec<Certificate>, Key), String> {
    use x509_cert::der::Decode;
    let full = base.join(file);
    let what = format!("smime_p12 {}", full.display());
    let data = std::fs::read(&full).map_err(|e| format!("{what}: {e}"))?;
    let store = p12_keystore::KeyStore::from_pkcs12(
        &data,
        password,
        p12_keystore::Pkcs12ImportPolicy::Strict,
    )
    .map_err(|e| match e {
        p12_keystore::error::Error::MacError(_) => {
            format!("{what}: wrong password (or a damaged file)")
        }
        other => format!("{what}: not a PKCS#12 file this gateway reads: {other}"),
    })?;
    let (_, chain) = store
        .private_key_chain()
        .ok_or_else(|| format!("{what}: no private key with its certificate"))?;
    let certs = chain
        .certs()
        .iter()
        .map(|c| Certificate::from_der(c.as_der()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: certificate: {e}"))?;
    let key = load_key_der(chain.key().as_der()).map_err(|e| format!("{what}: {e}"))?;
    Ok((certs, key))
}

/// The e-mail addresses a certificate is for (SAN rfc822Name, else the
/// subject's emailAddress), lower case.
fn addresses(der: &[u8]) -> Result<(Vec<String>, SystemTime, SystemTime), String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("certificate: {e}"))?;
    let mut out = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::RFC822Name(a) = name {
                out.push(a.to_ascii_lowercase());
            }
        }
    }
    if out.is_empty() {
        for attr in cert.subject().iter_email() {
            if let Ok(a) = attr.as_str() {
                out.push(a.to_ascii_lowercase());
            }
        }
    }
    let to_time = |t: ASN1Time| {
        let secs = u64::try_from(t.timestamp()).unwrap_or(0);
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs)
    };
    Ok((
        out,
        to_time(cert.validity().not_before),
        to_time(cert.validity().not_after),
    ))
}

/// When the identity's certificate ends.
pub fn not_after(identity: &Identity<'_>, base: &Path) -> Result<SystemTime, String> {
    let (chain, _) = load_identity(identity, base)?;
    let der = chain
        .first()
        .ok_or("no certificate")?
        .to_der()
        .map_err(|e| format!("certificate: {e}"))?;
    addresses(&der).map(|(_, _, not_after)| not_after)
}

fn load_identity(identity: &Identity<'_>, base: &Path) -> Result<(Vec<Certificate>, Key), String> {
    match identity {
        Identity::Pem { cert, key } => {
            let cert_pem = read(cert, base, "smime_cert")?;
            let chain = Certificate::load_pem_chain(cert_pem.as_bytes())
                .map_err(|e| format!("smime_cert: not PEM certificates: {e}"))?;
            let key =
                load_key(&read(key, base, "smime_key")?).map_err(|e| format!("smime_key: {e}"))?;
            Ok((chain, key))
        }
        Identity::Pkcs12 { file, password } => load_p12(file, base, password),
    }
}

/// Loads and checks certificate and key for `from` (the bare address) at
/// `now`: `Ok` with "certificate ready (...)", or why not.
pub fn load(
    identity: &Identity<'_>,
    base: &Path,
    from: &str,
    now: SystemTime,
) -> Result<(Signer, String), String> {
    let (chain, key) = load_identity(identity, base)?;
    let first = chain.first().ok_or("no certificate in the file")?;
    let der = first.to_der().map_err(|e| format!("certificate: {e}"))?;
    let spki = first
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("smime_cert: {e}"))?;
    if key.public_der().as_deref() != Some(spki.as_slice()) {
        return Err("the private key does not belong to the certificate (key mismatch)".into());
    }
    let (names, not_before, not_after) = addresses(&der)?;
    let from = from.to_ascii_lowercase();
    if !names.contains(&from) {
        return Err(format!(
            "certificate is for {} and not the From address {from} (wrong address)",
            if names.is_empty() {
                "no e-mail address".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    if now < not_before {
        return Err("certificate not valid yet".into());
    }
    if now > not_after {
        return Err(format!(
            "certificate expired on {}",
            humantime::format_rfc3339_seconds(not_after)
        ));
    }
    let ready = format!(
        "certificate ready for {from}, valid until {}",
        humantime::format_rfc3339_seconds(not_after)
    );
    Ok((Signer { chain, key }, ready))
}

fn build<S, Sig>(signer: &S, chain: &[Certificate], content: &[u8]) -> Result<Vec<u8>, String>
where
    S: spki::DynSignatureAlgorithmIdentifier + signature::Keypair + signature::Signer<Sig>,
    S::VerifyingKey: EncodePublicKey,
    Sig: spki::SignatureBitStringEncoding,
{
    let first = chain.first().ok_or("no certificate")?;
    let digest_alg = AlgorithmIdentifierOwned {
        oid: x509_cert::der::oid::db::rfc5912::ID_SHA_256,
        parameters: None,
    };
    let eci = EncapsulatedContentInfo {
        econtent_type: x509_cert::der::oid::db::rfc5911::ID_DATA,
        econtent: None,
    };
    let digest = Sha256::digest(content);
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: first.tbs_certificate.issuer.clone(),
        serial_number: first.tbs_certificate.serial_number.clone(),
    });
    let err = |e: cms::builder::Error| format!("CMS: {e:?}");
    let info = SignerInfoBuilder::new(
        signer,
        sid,
        digest_alg.clone(),
        &eci,
        Some(digest.as_slice()),
    )
    .map_err(err)?;
    let mut data = SignedDataBuilder::new(&eci);
    data.add_digest_algorithm(digest_alg).map_err(err)?;
    for c in chain {
        data.add_certificate(CertificateChoices::Certificate(c.clone()))
            .map_err(err)?;
    }
    data.add_signer_info::<S, Sig>(info).map_err(err)?;
    let info = data.build().map_err(err)?;
    info.to_der().map_err(|e| format!("CMS: {e}"))
}

impl Signer {
    /// The DER CMS SignedData (detached) over `content`.
    pub fn sign(&self, content: &[u8]) -> Result<Vec<u8>, TransportError> {
        match &self.key {
            Key::Rsa(k) => build::<_, rsa::pkcs1v15::Signature>(k.as_ref(), &self.chain, content),
            Key::P256(k) => build::<_, p256::ecdsa::DerSignature>(k, &self.chain, content),
        }
        .map_err(|e| TransportError::Send(format!("S/MIME signing: {e}")))
    }
}

/// Checks the identity's certificate for `from`; the "ready" text or why
/// not.
pub fn check(identity: &Identity<'_>, base: &Path, from: &str) -> Result<String, String> {
    load(identity, base, from, SystemTime::now()).map(|(_, ready)| ready)
}
