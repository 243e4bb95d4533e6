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
/// to the organisation it names. A refused certificate's facts travel inside the
/// handshake error, so the accept loop can account for it ([`refused_certificate`]).
pub fn server_config(
    federation: &Federation,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, IdentityError> {
    let verifier = Arc::new(MemberClientVerifier::new(federation)?);
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_error)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A client certificate refused during a handshake. Nothing in it is proven:
/// `claimed_org` is what the certificate says, which is exactly what failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RefusedCertificate {
    /// The organisation the certificate names, if it names one.
    pub claimed_org: Option<String>,
    /// SHA-256 of the certificate, lower-case hex.
    pub fingerprint: String,
    /// Why it was refused, as one sentence.
    pub reason: String,
}

/// The refused certificate a handshake failed on, if that is why it failed.
pub fn refused_certificate(error: &rustls::Error) -> Option<&RefusedCertificate> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(inner))) => {
            inner.downcast_ref::<RefusedCertificate>()
        }
        _ => None,
    }
}

/// A certificate error in words a person reads.
fn certificate_problem(error: &rustls::Error) -> String {
    use CertificateError as E;
    match error {
        rustls::Error::InvalidCertificate(e) => match e {
            E::Expired | E::ExpiredContext { .. } => "the client certificate has expired".into(),
            E::NotValidYet | E::NotValidYetContext { .. } => {
                "the client certificate is not valid yet".into()
            }
            E::UnknownIssuer => {
                "the client certificate does not chain to the CA the federation registers for the organisation it names".into()
            }
            E::BadSignature | E::BadEncoding => {
                "the client certificate is malformed or its signature does not verify".into()
            }
            E::Revoked => "the client certificate is revoked".into(),
            E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
                "the client certificate is not for client authentication".into()
            }
            E::Other(OtherError(inner)) => {
                let text = inner.to_string();
                if text.contains("CaUsedAsEndEntity") {
                    "the client presented a CA certificate; an end-entity client certificate is required".into()
                } else if let Some(IdentityError::Spiffe(problem)) =
                    inner.downcast_ref::<IdentityError>()
                {
                    problem.clone()
                } else {
                    "the client certificate could not be verified against the federation's CAs".into()
                }
            }
            _ => "the client certificate could not be verified against the federation's CAs".into(),
        },
        _ => "the client certificate could not be verified against the federation's CAs".into(),
    }
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
        let id = SpiffeId::from_certificate(end_entity.as_ref()).map_err(|e| match e {
            IdentityError::Spiffe(problem) => refuse(problem),
            other => refuse(other.to_string()),
        })?;
        if id.federation != self.federation {
            return Err(refuse(format!(
                "the client certificate names federation {:?}; this node belongs to {:?}",
                id.federation, self.federation
            )));
        }
        let verifier = self.by_org.get(&id.org).ok_or_else(|| {
            refuse(format!(
                "the client certificate names {:?}, which is not a member of the federation",
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
        self.check_client_cert(end_entity, intermediates, now)
            .map_err(|e| {
                let claimed_org = SpiffeId::from_certificate(end_entity.as_ref())
                    .ok()
                    .filter(|id| id.federation == self.federation)
                    .map(|id| id.org);
                rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                    RefusedCertificate {
                        claimed_org,
                        fingerprint: fingerprint(end_entity.as_ref()),
                        reason: certificate_problem(&e),
                    },
                ))))
            })
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
                // TLS never reads it; the federation check wants its shape.
                log_vkey: Some(format!("testfed/org/{org}/audit+00000000+AQ==")),
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
