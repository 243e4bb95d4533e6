//! Nodes trust each other over mutual TLS, and nothing else gets in.
//!
//! Every refusal here has a positive control with the same path, so each test
//! fails if the check it is about were removed.

use crate::common::{TestFederation, FEDERATION};
use lagesbild_identity::certs::{CertificateAuthority, LeafSpec};
use lagesbild_proto::v1::node_service_client::NodeServiceClient;
use lagesbild_proto::v1::{FederationStatusRequest, InfoRequest};
use time::{Duration, OffsetDateTime};
use tonic_health::pb::health_check_response::ServingStatus;

const MEMBERS: &[&str] = &["alpha", "beta", "gamma"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_connect_and_see_each_other() {
    let fed = TestFederation::start(MEMBERS).await;
    for org in MEMBERS {
        let mut node = NodeServiceClient::new(fed.authed(org, org, &[]));
        let status = node
            .federation_status(FederationStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(status.org, *org);
        let peers: Vec<_> = status.peers.iter().map(|p| p.org.as_str()).collect();
        let mut expected: Vec<_> = MEMBERS.iter().copied().filter(|m| m != org).collect();
        expected.push("audit");
        assert_eq!(peers, expected, "{org} lists every other member");
        for peer in status.peers.iter().filter(|p| p.org != "audit") {
            assert!(peer.reachable, "{org} reaches {}: {}", peer.org, peer.error);
            assert_eq!(peer.version, env!("CARGO_PKG_VERSION"));
            assert_eq!(peer.seen_as, *org, "{} recognised {org}'s node", peer.org);
            assert!(peer.rtt_micros > 0);
        }
        let auditor = status.peers.iter().find(|p| p.org == "audit").unwrap();
        assert!(!auditor.reachable);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_shows_each_peer() {
    let fed = TestFederation::start(MEMBERS).await;
    let config = fed.org_dir("beta").join("client.toml");
    let out = fed.run_as("beta", &["status", "--config", config.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for peer in ["alpha", "gamma"] {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(peer))
            .unwrap();
        assert!(line.contains("yes"), "{line}");
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
        assert!(line.contains(" ms"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_recognises_its_callers_org_and_keeps_its_status_for_its_own() {
    let fed = TestFederation::start(&MEMBERS[..2]).await;
    let mut alpha_as_beta = NodeServiceClient::new(fed.authed("alpha", "beta", &[]));
    let info = alpha_as_beta
        .info(InfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.org, "alpha");
    assert_eq!(info.caller_org, "beta");
    assert_eq!(info.federation, FEDERATION);

    let denied = alpha_as_beta
        .federation_status(FederationStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused() {
    let fed = TestFederation::start(&MEMBERS[..1]).await;
    assert_eq!(
        fed.health("alpha", fed.client_tls("alpha", "alpha"))
            .await
            .unwrap(),
        ServingStatus::Serving
    );
    let refused = fed
        .health("alpha", fed.tls_without_certificate("alpha"))
        .await;
    assert!(refused.is_err(), "no client certificate, yet: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_a_ca_outside_the_federation_is_refused() {
    let fed = TestFederation::start(&MEMBERS[..1]).await;
    // A stranger's CA issuing a certificate that looks exactly like alpha's.
    let stranger = CertificateAuthority::generate(FEDERATION, "alpha").unwrap();
    let forged = stranger
        .issue(&LeafSpec::client(FEDERATION, "alpha"))
        .unwrap();
    let refused = fed.health("alpha", fed.tls_with("alpha", &forged)).await;
    assert!(
        refused.is_err(),
        "outsider's certificate accepted: {refused:?}"
    );

    let genuine = fed
        .ca_of("alpha")
        .issue(&LeafSpec::client(FEDERATION, "alpha"))
        .unwrap();
    assert_eq!(
        fed.health("alpha", fed.tls_with("alpha", &genuine))
            .await
            .unwrap(),
        ServingStatus::Serving
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_ca_cannot_vouch_for_another_org() {
    let fed = TestFederation::start(&MEMBERS[..2]).await;
    let alpha_ca = fed.ca_of("alpha");
    // alpha's genuine CA claims beta: refused by beta's node and by alpha's own.
    let claims_beta = alpha_ca
        .issue(&LeafSpec::client(FEDERATION, "beta"))
        .unwrap();
    for node in ["alpha", "beta"] {
        let refused = fed.health(node, fed.tls_with(node, &claims_beta)).await;
        assert!(
            refused.is_err(),
            "{node} accepted alpha's CA naming beta: {refused:?}"
        );
    }
    // The same CA naming its own org is accepted, and the node sees it as alpha.
    let own = alpha_ca
        .issue(&LeafSpec::client(FEDERATION, "alpha"))
        .unwrap();
    let mut beta = NodeServiceClient::with_interceptor(
        fed.channel("beta", fed.tls_with("beta", &own)),
        fed.bearer("alpha", "beta", &[]),
    );
    let info = beta.info(InfoRequest {}).await.unwrap().into_inner();
    assert_eq!(info.caller_org, "alpha");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused() {
    let fed = TestFederation::start(&MEMBERS[..1]).await;
    let now = OffsetDateTime::from(lagesbild_vocabulary::SystemClock.now());
    let mut spec = LeafSpec::client(FEDERATION, "alpha");
    spec.not_before = now - Duration::days(30);
    spec.not_after = now - Duration::days(1);
    let expired = fed.ca_of("alpha").issue(&spec).unwrap();
    let refused = fed.health("alpha", fed.tls_with("alpha", &expired)).await;
    assert!(
        refused.is_err(),
        "expired certificate accepted: {refused:?}"
    );

    spec.not_after = now + Duration::days(1);
    let valid = fed.ca_of("alpha").issue(&spec).unwrap();
    assert_eq!(
        fed.health("alpha", fed.tls_with("alpha", &valid))
            .await
            .unwrap(),
        ServingStatus::Serving
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls12_only_client_is_refused() {
    let fed = TestFederation::start(&MEMBERS[..1]).await;
    let refused = fed.health("alpha", fed.tls12_only("alpha", "alpha")).await;
    assert!(refused.is_err(), "TLS 1.2 accepted: {refused:?}");
    let message = format!("{refused:?}");
    assert!(
        message.contains("ProtocolVersion") || message.contains("protocol version"),
        "refused for the protocol version: {message}"
    );
}
