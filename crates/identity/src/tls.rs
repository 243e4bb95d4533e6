//! rustls configurations that bind certificates to organisations.
//!
//! A certificate counts for org X only if it chains to the CA the federation file
//! registers for X *and* its one SPIFFE id names X (and this federation). A member
//! CA issuing a certificate that claims another org is therefore refused, and so is
//! any certificate from outside the federation. Only TLS 1.3 is offered, with the
//! `ring` provider; clients must present a certificate.

use crate::federation::{Federation, Role};
use crate::spiffe::SpiffeId;
use crate::{fingerprint, IdentityError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// The ALPN protocol of gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// Paths of a PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads both files.
    pub fn load(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), IdentityError> {
        Ok((
            crate::load_certificate_chain(&self.cert)?,
            crate::load_private_key(&self.key)?,
        ))
    }
}

/// Who is on the other end of a verified connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The organisation the certificate counts for.
    pub org: String,
    /// The organisation's role in the federation.
    pub role: Role,
    /// The workload named in the certificate (`node`, `client`, ...).
    pub workload: String,
    /// SHA-256 of the leaf certificate, lower-case hex.
    pub fingerprint: String,
}

impl PeerIdentity {
    /// Whether the caller is a node (as opposed to a person or tool).
    pub fn is_node(&self) -> bool {
        self.workload == crate::spiffe::NODE_WORKLOAD
    }
}

/// The crypto provider every TLS configuration here uses: rustls on `ring`.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the identity of a leaf certificate that a verifier of this module accepted.
pub fn identify(
    federation: &Federation,
    leaf: &CertificateDer<'_>,
) -> Result<PeerIdentity, IdentityError> {
    let id = member_id(federation, leaf)?;
    let member = federation
        .member(&id.org)
        .ok_or_else(|| IdentityError::Spiffe(format!("org {} is not a member", id.org)))?;
    Ok(PeerIdentity {
        org: id.org,
        role: member.role,
        workload: id.workload,
        fingerprint: fingerprint(leaf.as_ref()),
    })
}

fn member_id(
    federation: &Federation,
    leaf: &CertificateDer<'_>,
) -> Result<SpiffeId, IdentityError> {
    let id = SpiffeId::from_certificate(leaf.as_ref())?;
    if id.federation != federation.name {
        return Err(IdentityError::Spiffe(format!(
            "certificate names federation {:?}, not {:?}",
            id.federation, federation.name
        )));
    }
    Ok(id)
}

/// The server side of a node: TLS 1.3 only, a client certificate required and bound
/// to the organisation it names.
pub fn server_config(
    federation: &Federation,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, IdentityError> {
    server_config_observed(federation, chain, key, None)
}

/// A client certificate refused during a handshake, whose organisation could be
/// read from it (the certificate claims it; the claim was not proven).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedCertificate {
    /// The organisation the certificate names.
    pub claimed_org: String,
    /// SHA-256 of the certificate, lower-case hex.
    pub fingerprint: String,
    /// Why it was refused.
    pub reason: String,
}

/// Called for every refused client certificate that names an organisation.
pub type RefusalObserver = Arc<dyn Fn(RefusedCertificate) + Send + Sync>;

/// [`server_config`], telling `observer` about each refused client certificate
/// that names an organisation (so the refusal can be logged as evidence).
pub fn server_config_observed(
    federation: &Federation,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    observer: Option<RefusalObserver>,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let mut verifier = MemberClientVerifier::new(federation)?;
    verifier.observer = observer;
    let verifier = Arc::new(verifier);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// The client side of a connection to `peer_org`'s node: TLS 1.3 only, presenting
/// `chain`, and accepting only a node certificate of `peer_org` from its own CA.
pub fn client_config(
    federation: &Federation,
    peer_org: &str,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ClientConfig>, IdentityError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .dangerous()
        .with_custom_certificate_verifier(server_verifier(federation, peer_org)?)
        .with_client_auth_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A verifier that accepts only `peer_org`'s node certificate, issued by its own CA.
pub fn server_verifier(
    federation: &Federation,
    peer_org: &str,
) -> Result<Arc<dyn ServerCertVerifier>, IdentityError> {
    let member = federation
        .member(peer_org)
        .ok_or_else(|| IdentityError::Federation(format!("{peer_org} is not a member")))?;
    let roots = Arc::new(roots_of(&[member.ca_der()?])?);
    let inner = WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(tls_error)?;
    Ok(Arc::new(MemberServerVerifier {
        federation: federation.name.clone(),
        peer_org: peer_org.to_owned(),
        inner,
    }))
}

fn roots_of(cas: &[CertificateDer<'static>]) -> Result<RootCertStore, IdentityError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca.clone()).map_err(tls_error)?;
    }
    Ok(roots)
}

fn tls_error(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Tls(e.to_string())
}

fn refuse(message: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
        IdentityError::Spiffe(message),
    ))))
}

/// Accepts a client certificate only from the CA of the org it names.
struct MemberClientVerifier {
    observer: Option<RefusalObserver>,
    federation: String,
    /// One WebPKI verifier per member, each trusting that member's CA alone.
    by_org: HashMap<String, Arc<dyn ClientCertVerifier>>,
    /// Any of them, for handshake signatures (which don't depend on the roots).
    signatures: Arc<dyn ClientCertVerifier>,
    hints: Vec<DistinguishedName>,
}

impl std::fmt::Debug for MemberClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberClientVerifier")
            .field("federation", &self.federation)
            .field("members", &self.by_org.len())
            .finish_non_exhaustive()
    }
}

impl MemberClientVerifier {
    fn check_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let id =
            SpiffeId::from_certificate(end_entity.as_ref()).map_err(|e| refuse(e.to_string()))?;
        if id.federation != self.federation {
            return Err(refuse(format!(
                "client certificate names federation {:?}, not {:?}",
                id.federation, self.federation
            )));
        }
        let verifier = self.by_org.get(&id.org).ok_or_else(|| {
            refuse(format!(
                "client certificate names {}, which is not a member",
                id.org
            ))
        })?;
        // Chain to the named org's CA and no other: a member CA can't vouch for another org.
        verifier.verify_client_cert(end_entity, intermediates, now)
    }

    fn new(federation: &Federation) -> Result<Self, IdentityError> {
        let mut by_org = HashMap::new();
        let mut hints = Vec::new();
        for member in &federation.members {
            let roots = Arc::new(roots_of(&[member.ca_der()?])?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(tls_error)?;
            hints.extend(verifier.root_hint_subjects().iter().cloned());
            by_org.insert(member.id.clone(), verifier);
        }
        let signatures = by_org
            .values()
            .next()
            .cloned()
            .ok_or_else(|| IdentityError::Federation("no members".into()))?;
        Ok(Self {
            observer: None,
            federation: federation.name.clone(),
            by_org,
            signatures,
            hints,
        })
    }
}

impl ClientCertVerifier for MemberClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verdict = self.check_client_cert(end_entity, intermediates, now);
        if let (Err(e), Some(observer)) = (&verdict, &self.observer) {
            if let Ok(id) = SpiffeId::from_certificate(end_entity.as_ref()) {
                observer(RefusedCertificate {
                    claimed_org: id.org,
                    fingerprint: fingerprint(end_entity.as_ref()),
                    reason: e.to_string(),
                });
            }
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_verify_schemes()
    }
}

/// Accepts only the expected peer's node certificate, from that peer's CA.
#[derive(Debug)]
struct MemberServerVerifier {
    federation: String,
    peer_org: String,
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for MemberServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let id =
            SpiffeId::from_certificate(end_entity.as_ref()).map_err(|e| refuse(e.to_string()))?;
        if id.federation != self.federation || id.org != self.peer_org || !id.is_node() {
            return Err(refuse(format!(
                "server certificate is {id}, expected the node of {}",
                self.peer_org
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{CertificateAuthority, LeafSpec, TokenKey};
    use crate::federation::{Member, FORMAT_VERSION};
    use crate::pem::parse_certificate_chain;

    struct Fixture {
        federation: Federation,
        cas: HashMap<&'static str, CertificateAuthority>,
    }

    fn fixture() -> Fixture {
        let mut cas = HashMap::new();
        let mut members = Vec::new();
        for (i, org) in ["polisen", "scandic"].into_iter().enumerate() {
            let ca = CertificateAuthority::generate("norrmalm", org).unwrap();
            members.push(Member {
                id: org.into(),
                display_name: org.into(),
                role: Role::Member,
                endpoint: Some(format!("127.0.0.1:{}", 7000 + i)),
                ca_cert: ca.certified.cert_pem.clone(),
                token_public_key: TokenKey::generate().unwrap().public_pem,
            });
            cas.insert(org, ca);
        }
        let federation = Federation {
            version: FORMAT_VERSION,
            name: "norrmalm".into(),
            members,
        };
        federation.check().unwrap();
        Fixture { federation, cas }
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        parse_certificate_chain(pem.as_bytes()).unwrap().remove(0)
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn client_certificate_must_name_the_org_of_its_ca() {
        let f = fixture();
        let verifier = MemberClientVerifier::new(&f.federation).unwrap();
        let own = f.cas["polisen"]
            .issue(&LeafSpec::client("norrmalm", "polisen"))
            .unwrap();
        verifier
            .verify_client_cert(&der(&own.cert_pem), &[], now())
            .unwrap();

        let claims_other = f.cas["polisen"]
            .issue(&LeafSpec::client("norrmalm", "scandic"))
            .unwrap();
        assert!(verifier
            .verify_client_cert(&der(&claims_other.cert_pem), &[], now())
            .is_err());

        let other_federation = f.cas["polisen"]
            .issue(&LeafSpec::client("annan", "polisen"))
            .unwrap();
        assert!(verifier
            .verify_client_cert(&der(&other_federation.cert_pem), &[], now())
            .is_err());
    }

    #[test]
    fn server_certificate_must_be_the_expected_peers_node() {
        let f = fixture();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let verifier = server_verifier(&f.federation, "scandic").unwrap();
        let node = f.cas["scandic"]
            .issue(&LeafSpec::node("norrmalm", "scandic", &[]))
            .unwrap();
        verifier
            .verify_server_cert(&der(&node.cert_pem), &[], &name, &[], now())
            .unwrap();

        // polisen's genuine node certificate is not scandic's node.
        let polisen = f.cas["polisen"]
            .issue(&LeafSpec::node("norrmalm", "polisen", &[]))
            .unwrap();
        assert!(verifier
            .verify_server_cert(&der(&polisen.cert_pem), &[], &name, &[], now())
            .is_err());
        // scandic's CA vouching for a client workload is no node.
        let client = f.cas["scandic"]
            .issue(&LeafSpec::client("norrmalm", "scandic"))
            .unwrap();
        assert!(verifier
            .verify_server_cert(&der(&client.cert_pem), &[], &name, &[], now())
            .is_err());
    }

    #[test]
    fn identify_reads_org_role_and_fingerprint() {
        let f = fixture();
        let node = f.cas["polisen"]
            .issue(&LeafSpec::node("norrmalm", "polisen", &[]))
            .unwrap();
        let leaf = der(&node.cert_pem);
        let id = identify(&f.federation, &leaf).unwrap();
        assert_eq!(id.org, "polisen");
        assert_eq!(id.role, Role::Member);
        assert!(id.is_node());
        assert_eq!(id.fingerprint.len(), 64);
    }
}
