//! Making the credentials of an organisation: its CA, node and client certificates,
//! and its Ed25519 token-signing key.
//!
//! Keys are made fresh on every call (ring's secure random source); nothing here is a
//! fixed key. These are development and test credentials: a production CA lives in
//! the organisation's own PKI.

use crate::spiffe::{SpiffeId, NODE_WORKLOAD};
use crate::IdentityError;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ED25519,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// How long a development CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(5 * 365);
/// How long a development node or client certificate is valid.
pub const LEAF_VALIDITY: Duration = Duration::days(365);

/// A PEM certificate with its PEM private key.
#[derive(Debug, Clone)]
pub struct CertifiedKey {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// An organisation's certificate authority, able to issue certificates.
#[derive(Debug)]
pub struct CertificateAuthority {
    /// The CA certificate and key.
    pub certified: CertifiedKey,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Makes a new self-signed CA for `org`.
    pub fn generate(federation: &str, org: &str) -> Result<Self, IdentityError> {
        let now = OffsetDateTime::from(lagesbild_vocabulary::SystemClock.now());
        Self::generate_valid(
            federation,
            org,
            now - Duration::minutes(5),
            now + CA_VALIDITY,
        )
    }

    /// Makes a new self-signed CA for `org` valid between two instants.
    pub fn generate_valid(
        federation: &str,
        org: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("Lägesbild {org} CA"), federation, org);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        let certified = CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            certified,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads a CA from its PEM certificate and key, to issue more certificates.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            certified: CertifiedKey {
                cert_pem: cert_pem.to_owned(),
                key_pem: key_pem.to_owned(),
            },
            issuer,
        })
    }

    /// Issues a certificate as `spec` describes.
    pub fn issue(&self, spec: &LeafSpec) -> Result<CertifiedKey, IdentityError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&spec.id.to_string(), &spec.id.federation, &spec.id.org);
        params.subject_alt_names = spec.subject_alt_names()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = if spec.server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// What a leaf certificate says.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// The identity in its SAN URI.
    pub id: SpiffeId,
    /// Whether it may serve (nodes) as well as connect.
    pub server: bool,
    /// DNS names and IP addresses a server certificate answers to.
    pub hosts: Vec<String>,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A node certificate: serves and connects, answers to `localhost`, 127.0.0.1
    /// and any further `hosts`.
    pub fn node(federation: &str, org: &str, hosts: &[String]) -> Self {
        let mut all = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        for host in hosts {
            if !all.contains(host) {
                all.push(host.clone());
            }
        }
        Self::with_validity(SpiffeId::new(federation, org, NODE_WORKLOAD), true, all)
    }

    /// A client certificate for the org's people and tools.
    pub fn client(federation: &str, org: &str) -> Self {
        Self::with_validity(SpiffeId::new(federation, org, "client"), false, Vec::new())
    }

    /// A client certificate for one of the org's machine clients (`name`).
    pub fn workload(federation: &str, org: &str, name: &str) -> Self {
        Self::with_validity(SpiffeId::new(federation, org, name), false, Vec::new())
    }

    fn with_validity(id: SpiffeId, server: bool, hosts: Vec<String>) -> Self {
        let now = OffsetDateTime::from(lagesbild_vocabulary::SystemClock.now());
        Self {
            id,
            server,
            hosts,
            not_before: now - Duration::minutes(5),
            not_after: now + LEAF_VALIDITY,
        }
    }

    fn subject_alt_names(&self) -> Result<Vec<SanType>, IdentityError> {
        let mut names = Vec::with_capacity(self.hosts.len() + 1);
        for host in &self.hosts {
            names.push(match host.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(host.as_str().try_into()?),
            });
        }
        names.push(SanType::URI(self.id.to_string().as_str().try_into()?));
        Ok(names)
    }
}

/// An Ed25519 token-signing key pair.
#[derive(Debug, Clone)]
pub struct TokenKey {
    /// The private key, PKCS#8 PEM.
    pub private_pem: String,
    /// The public key, SubjectPublicKeyInfo PEM, as the federation file lists it.
    pub public_pem: String,
}

impl TokenKey {
    /// Makes a fresh Ed25519 key pair. The private key is written as RFC 8410
    /// describes it (PKCS#8 v1: the 32-byte seed alone), the form OpenSSL and
    /// most libraries load; the keys read back include ring's v2 form too.
    pub fn generate() -> Result<Self, IdentityError> {
        let rng = ring::rand::SystemRandom::new();
        let v2 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| IdentityError::Key("the system gave no randomness for an Ed25519 key"))?;
        let v1 = ed25519_pkcs8_v1(ed25519_seed(v2.as_ref())?);
        let key = KeyPair::try_from(v1.as_slice())?;
        debug_assert_eq!(key.algorithm(), &PKCS_ED25519);
        Ok(Self {
            private_pem: key.serialize_pem(),
            public_pem: key.public_key_pem(),
        })
    }
}

/// The DER prefix of an Ed25519 PKCS#8 v1 document (RFC 8410, section 7):
/// SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING (32) } }.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The same prefix as ring writes it in a v2 document (version 1, public key after the seed).
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

fn ed25519_seed(v2: &[u8]) -> Result<&[u8; 32], IdentityError> {
    v2.strip_prefix(&ED25519_PKCS8_V2_PREFIX[..])
        .and_then(|rest| rest.first_chunk::<32>())
        .ok_or(IdentityError::Key(
            "ring wrote an Ed25519 key in an unexpected form",
        ))
}

fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Vec<u8> {
    [&ED25519_PKCS8_V1_PREFIX[..], &seed[..]].concat()
}

fn name(common_name: &str, federation: &str, org: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::OrganizationalUnitName, federation);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_their_identity() {
        let ca = CertificateAuthority::generate("norrmalm", "polisen").unwrap();
        let node = ca
            .issue(&LeafSpec::node(
                "norrmalm",
                "polisen",
                &["node.example".into()],
            ))
            .unwrap();
        let der = crate::pem::parse_certificate_chain(node.cert_pem.as_bytes()).unwrap();
        let id = SpiffeId::from_certificate(&der[0]).unwrap();
        assert_eq!(id, SpiffeId::new("norrmalm", "polisen", "node"));
    }

    #[test]
    fn ca_round_trips_through_pem() {
        let ca = CertificateAuthority::generate("norrmalm", "scandic").unwrap();
        let again =
            CertificateAuthority::from_pem(&ca.certified.cert_pem, &ca.certified.key_pem).unwrap();
        let leaf = again
            .issue(&LeafSpec::client("norrmalm", "scandic"))
            .unwrap();
        // The reloaded CA signs with the original key: its leaf chains to the
        // original CA certificate, and not to another CA's.
        let chains_to = |root_pem: &str| {
            let mut roots = rustls::RootCertStore::empty();
            let root = crate::pem::parse_certificate_chain(root_pem.as_bytes()).unwrap();
            roots.add(root[0].clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                std::sync::Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .unwrap();
            let der = crate::pem::parse_certificate_chain(leaf.cert_pem.as_bytes()).unwrap();
            verifier
                .verify_client_cert(&der[0], &[], rustls_pki_types::UnixTime::now())
                .is_ok()
        };
        assert!(chains_to(&ca.certified.cert_pem));
        let other = CertificateAuthority::generate("norrmalm", "scandic").unwrap();
        assert!(!chains_to(&other.certified.cert_pem));
    }

    #[test]
    fn token_keys_are_fresh_pem() {
        let a = TokenKey::generate().unwrap();
        let b = TokenKey::generate().unwrap();
        assert!(a.private_pem.contains("BEGIN PRIVATE KEY"));
        assert!(a.public_pem.contains("BEGIN PUBLIC KEY"));
        assert_ne!(a.public_pem, b.public_pem);
    }
}
