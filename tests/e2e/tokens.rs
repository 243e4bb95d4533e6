//! Token attacks against a real node: each refused with UNAUTHENTICATED or
//! PERMISSION_DENIED, and each refusal logged.

use crate::common::{now, run, TestFederation, PURPOSE};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use lagesbild_auth::{new_jti, Bearer, Grant, Signer};
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::{BucketKind, ReleaseRequest};
use prost_types::Timestamp;
use std::time::Duration;
use tonic::Code;

const NODE: &str = "polisen";
const PEER: &str = "scandic";

const POLICY: &str = r#"version = 1
[peer.scandic]
scopes = ["aggregate:read"]
purposes = ["situation-picture"]
categories = ["all"]
finest_cell = 250
finest_bucket = "hour"
k = 3
rate_limit = 1000
"#;

fn request() -> ReleaseRequest {
    ReleaseRequest {
        unless_digest: Vec::new(),
        columnar: false,
        purpose: String::new(),
        from: Some(Timestamp {
            seconds: now() - 86_400,
            nanos: 0,
        }),
        to: Some(Timestamp {
            seconds: now(),
            nanos: 0,
        }),
        categories: vec![],
        area: None,
        cell_size_m: 250,
        bucket: BucketKind::Day as i32,
        totals_only: false,
    }
}

fn private_key(fed: &TestFederation, org: &str) -> Vec<u8> {
    let pem = std::fs::read_to_string(fed.org_dir(org).join("token.key")).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

/// A token with hand-made header and claims.
fn forge(header: &str, claims: serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let head = URL_SAFE_NO_PAD.encode(header);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(sign(format!("{head}.{body}").as_bytes()));
    format!("{head}.{body}.{signature}")
}

fn claims(iss: &str, aud: &str, exp: i64, scope: &str, purpose: &str) -> serde_json::Value {
    serde_json::json!({
        "iss": iss, "sub": "mallory", "aud": aud, "iat": now() - 10, "nbf": now() - 10,
        "exp": exp, "jti": new_jti(), "scope": scope, "purpose": purpose
    })
}

fn ed25519(fed: &TestFederation, org: &str) -> impl Fn(&[u8]) -> Vec<u8> {
    let key = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&private_key(fed, org))
        .unwrap();
    move |m| key.sign(m).as_ref().to_vec()
}

async fn call(fed: &TestFederation, tls_org: &str, token: Option<&str>) -> tonic::Status {
    let channel = fed.channel(NODE, fed.client_tls(tls_org, NODE));
    let result = match token {
        Some(token) => {
            AggregateServiceClient::with_interceptor(channel, Bearer::new(token).unwrap())
                .release(request())
                .await
        }
        None => {
            AggregateServiceClient::new(channel)
                .release(request())
                .await
        }
    };
    result.expect_err("the attack must be refused")
}

/// A delegation token of the peer's node for `NODE`, acting for `analyst`,
/// living the longest a delegation may.
fn delegation_token(fed: &TestFederation, analyst: &str) -> String {
    let pem = std::fs::read(fed.org_dir(PEER).join("token.key")).unwrap();
    Signer::from_pem(PEER, &pem)
        .unwrap()
        .issue(&Grant {
            audience: NODE,
            subject: "node",
            scopes: &["aggregate:read".to_string()],
            purpose: PURPOSE,
            ttl: Duration::from_secs(lagesbild_auth::MAX_DELEGATION_SECS),
            act: Some(&lagesbild_auth::Actor::named(analyst)),
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_attacks_are_refused_and_logged() {
    let fed = TestFederation::start(&[NODE, PEER, "stockholm-stad"]).await;
    let path = fed.org_dir(NODE).join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();

    // The honest call works, so every refusal below is the token's doing.
    let good = fed.token(PEER, NODE, &["aggregate:read"], PURPOSE);
    let channel = fed.channel(NODE, fed.client_tls(PEER, NODE));
    AggregateServiceClient::with_interceptor(channel, Bearer::new(&good).unwrap())
        .release(request())
        .await
        .expect("a good token is accepted");

    let hour = now() + 3600;
    let pem_public = std::fs::read(fed.org_dir(PEER).join("token.pub")).unwrap();
    let cases: Vec<(&str, Option<String>, &str, Code)> = vec![
        ("no token", None, PEER, Code::Unauthenticated),
        (
            "expired",
            Some(forge(
                r#"{"alg":"EdDSA","typ":"JWT"}"#,
                claims(PEER, NODE, now() - 300, "aggregate:read", PURPOSE),
                ed25519(&fed, PEER),
            )),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "wrong aud",
            Some(fed.token(PEER, "stockholm-stad", &["aggregate:read"], PURPOSE)),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "iss not the TLS peer's org",
            Some(fed.token(PEER, NODE, &["aggregate:read"], PURPOSE)),
            "stockholm-stad",
            Code::Unauthenticated,
        ),
        (
            "iss claims another org, signed by the TLS peer",
            Some(forge(
                r#"{"alg":"EdDSA","typ":"JWT"}"#,
                claims("stockholm-stad", NODE, hour, "aggregate:read", PURPOSE),
                ed25519(&fed, PEER),
            )),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "alg none",
            Some(forge(
                r#"{"alg":"none","typ":"JWT"}"#,
                claims(PEER, NODE, hour, "aggregate:read", PURPOSE),
                |_| vec![],
            )),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "HS256 keyed with the public key",
            Some(forge(
                r#"{"alg":"HS256","typ":"JWT"}"#,
                claims(PEER, NODE, hour, "aggregate:read", PURPOSE),
                |m| {
                    ring::hmac::sign(
                        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &pem_public),
                        m,
                    )
                    .as_ref()
                    .to_vec()
                },
            )),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "not a JWT",
            Some("bm9*0.IGEg.dG9rZW4".into()),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "act is not an object",
            Some(forge(
                r#"{"alg":"EdDSA","typ":"JWT"}"#,
                {
                    let mut c = claims(PEER, NODE, now() + 50, "aggregate:read", PURPOSE);
                    c["act"] = serde_json::json!("anna");
                    c
                },
                ed25519(&fed, PEER),
            )),
            PEER,
            Code::Unauthenticated,
        ),
        (
            "missing scope",
            Some(fed.token(PEER, NODE, &["events:read"], PURPOSE)),
            PEER,
            Code::PermissionDenied,
        ),
        (
            "purpose the policy does not list",
            Some(fed.token(PEER, NODE, &["aggregate:read"], "marketing")),
            PEER,
            Code::PermissionDenied,
        ),
        (
            "an auditor's token for a query",
            Some(fed.token("audit", NODE, &["aggregate:read", "audit:read"], PURPOSE)),
            "audit",
            Code::PermissionDenied,
        ),
    ];
    for (attack, token, tls_org, code) in &cases {
        let status = call(&fed, tls_org, token.as_deref()).await;
        assert_eq!(status.code(), *code, "{attack}: {}", status.message());
        // One plain sentence, never a decoder's own words.
        let message = status.message();
        for internal in [
            "JSON error",
            "Base64 error",
            "unknown variant",
            "expected struct",
            "line 1 column",
            "Invalid last symbol",
        ] {
            assert!(!message.contains(internal), "{attack}: {message}");
        }
        assert!(!message.contains('\n'), "{attack}: {message}");
    }
    let said = |attack: &str| {
        let (_, token, tls_org, _) = cases.iter().find(|c| c.0 == attack).unwrap();
        (token.clone(), *tls_org)
    };
    for (attack, expected) in [
        ("alg none", "only EdDSA (Ed25519) tokens"),
        (
            "HS256 keyed with the public key",
            "only EdDSA (Ed25519) tokens",
        ),
        ("not a JWT", "three base64url parts"),
        ("act is not an object", "act as {\"sub\""),
        ("expired", "it has expired (exp)"),
    ] {
        let (token, tls_org) = said(attack);
        let status = call(&fed, tls_org, token.as_deref()).await;
        assert!(
            status.message().contains(expected),
            "{attack}: {}",
            status.message()
        );
    }

    // A delegation token is accepted once; replayed, it is refused.
    let delegation = delegation_token(&fed, "anna");
    let channel = fed.channel(NODE, fed.client_tls(PEER, NODE));
    let mut client =
        AggregateServiceClient::with_interceptor(channel, Bearer::new(&delegation).unwrap());
    client.release(request()).await.expect("first use");
    let replayed = client.release(request()).await.unwrap_err();
    assert_eq!(replayed.code(), Code::Unauthenticated);
    assert!(
        replayed.message().contains("already used"),
        "{}",
        replayed.message()
    );

    let log = fed
        .nodes
        .iter()
        .find(|n| n.org() == NODE)
        .unwrap()
        .log_text();
    let refusals = log
        .lines()
        .filter(|l| l.contains("call refused") || l.contains("release refused"))
        .count();
    assert!(refusals > cases.len(), "{refusals} refusals logged:\n{log}");

    // `token issue`, with the node's configuration, signs a token that the
    // node accepts.
    let node_toml = fed.org_dir(PEER).join("node.toml");
    let out = run(&[
        "token",
        "issue",
        "--config",
        &node_toml.display().to_string(),
        "--sub",
        "anna",
        "--scope",
        "aggregate:read",
        "--purpose",
        PURPOSE,
        "--ttl",
        "5m",
        "--aud",
        NODE,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued = String::from_utf8(out.stdout).unwrap();
    let channel = fed.channel(NODE, fed.client_tls(PEER, NODE));
    AggregateServiceClient::with_interceptor(channel, Bearer::new(issued.trim()).unwrap())
        .release(request())
        .await
        .expect("an issued token is accepted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delegation_token_used_before_a_crash_is_refused_after_it() {
    let mut fed = TestFederation::start(&[NODE, PEER]).await;
    std::fs::write(fed.org_dir(NODE).join("policy.toml"), POLICY).unwrap();
    let (used, unused) = (
        delegation_token(&fed, "anna"),
        delegation_token(&fed, "bertil"),
    );
    let client = |fed: &TestFederation, token: &str| {
        AggregateServiceClient::with_interceptor(
            fed.channel(NODE, fed.client_tls(PEER, NODE)),
            Bearer::new(token).unwrap(),
        )
    };
    client(&fed, &used)
        .release(request())
        .await
        .expect("first use");
    // SIGKILL: the node's memory of seen tokens is gone; its access log is not.
    fed.kill(NODE);
    fed.restart(NODE).await;
    let replayed = client(&fed, &used).release(request()).await.unwrap_err();
    assert_eq!(replayed.code(), Code::Unauthenticated, "{replayed:?}");
    assert!(
        replayed.message().contains("already used"),
        "{}",
        replayed.message()
    );
    // A token the node never saw is still good.
    client(&fed, &unused)
        .release(request())
        .await
        .expect("a fresh delegation token after the restart");
}

/// Runs `openssl` with `args`; its standard output.
fn openssl(args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn token_keys_round_trip_through_openssl() {
    let mut fed = TestFederation::start(&[NODE, PEER]).await;
    std::fs::write(fed.org_dir(NODE).join("policy.toml"), POLICY).unwrap();
    // The keys certs init writes are keys OpenSSL reads: the public key it
    // derives is the one the federation file lists.
    let key = fed.org_dir(PEER).join("token.key");
    let public = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    let listed = std::fs::read_to_string(fed.org_dir(PEER).join("token.pub")).unwrap();
    assert_eq!(public.trim(), listed.trim());
    let federation_file = fed.dir.path().join("federation.toml");
    assert!(std::fs::read_to_string(&federation_file)
        .unwrap()
        .contains(listed.trim()));

    // A key OpenSSL made serves as scandic's token key once the federation
    // file lists its public half.
    let old_token = fed.token(PEER, NODE, &["aggregate:read"], PURPOSE);
    fed.kill(NODE);
    openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        key.to_str().unwrap(),
    ]);
    let new_public = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    let text = std::fs::read_to_string(&federation_file).unwrap();
    std::fs::write(
        &federation_file,
        text.replace(listed.trim(), new_public.trim()),
    )
    .unwrap();
    fed.restart(NODE).await;
    let as_peer = |token: &str| {
        AggregateServiceClient::new(lagesbild_auth::AuthChannel::new(
            fed.channel(NODE, fed.client_tls(PEER, NODE)),
            Bearer::new(token).unwrap(),
        ))
    };
    let new_token = fed.token(PEER, NODE, &["aggregate:read"], PURPOSE);
    as_peer(&new_token)
        .release(request())
        .await
        .expect("a token signed with OpenSSL's key is accepted");
    let refused = as_peer(&old_token).release(request()).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}

/// A machine client of the org has a certificate of its own and may use only
/// the scopes `[workloads]` lists for it, whatever its token claims.
#[tokio::test(flavor = "multi_thread")]
async fn a_workload_may_use_only_its_listed_scopes() {
    use lagesbild_auth::AuthChannel;
    use lagesbild_identity::certs::{CertifiedKey, LeafSpec};
    use lagesbild_proto::v1::policy_service_client::PolicyServiceClient;
    use lagesbild_proto::v1::report_service_client::ReportServiceClient;
    use lagesbild_proto::v1::{ExplainRequest, SubmitBatchRequest};
    const NODE: &str = "polisen";
    let mut fed = TestFederation::start(&[NODE]).await;
    fed.kill(NODE);
    let config = fed.org_dir(NODE).join("node.toml");
    let out = run(&[
        "certs",
        "workload",
        "--config",
        config.to_str().unwrap(),
        "--name",
        "nightly-ingest",
        "--scope",
        "report:write",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fed.restart(NODE).await;
    let read = |file: &str| std::fs::read_to_string(fed.org_dir(NODE).join(file)).unwrap();
    let job = CertifiedKey {
        cert_pem: read("nightly-ingest.pem"),
        key_pem: read("nightly-ingest.key"),
    };
    // A machine client needs no token: its certificate names it, and it
    // states its purpose. A token it sends anyway widens nothing.
    let as_job = |scopes: &[&str]| {
        AuthChannel::new(
            fed.channel(NODE, fed.tls_with(NODE, &job)),
            fed.bearer(NODE, NODE, scopes)
                .stating(crate::common::WRITE_PURPOSE)
                .unwrap(),
        )
    };
    // Its listed scope: the call reaches the service (an empty batch is valid).
    let submitted = ReportServiceClient::new(as_job(&["report:write"]))
        .submit_batch(SubmitBatchRequest {
            reports: vec![],
            validate_only: true,
        })
        .await;
    assert!(submitted.is_ok(), "{submitted:?}");
    // A scope its token claims but the node does not list for it: refused.
    let refused = PolicyServiceClient::new(as_job(&["policy:admin"]))
        .explain(ExplainRequest { peer: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("workload \"nightly-ingest\" of polisen may use report:write"),
        "{}",
        refused.message()
    );
    // Control: the node's operator (the node certificate and key) may.
    let explained = PolicyServiceClient::new(fed.authed(NODE, NODE, &["policy:admin"]))
        .explain(ExplainRequest { peer: "x".into() })
        .await;
    assert!(explained.is_ok(), "{explained:?}");
    // A workload the node does not list at all: refused, by name.
    let stranger = fed
        .ca_of(NODE)
        .issue(&LeafSpec::workload(
            crate::common::FEDERATION,
            NODE,
            "backup",
        ))
        .unwrap();
    let refused = ReportServiceClient::new(AuthChannel::new(
        fed.channel(NODE, fed.tls_with(NODE, &stranger)),
        fed.bearer(NODE, NODE, &["report:write"]),
    ))
    .submit_batch(SubmitBatchRequest {
        reports: vec![],
        validate_only: true,
    })
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused
            .message()
            .contains("\"backup\" of polisen is not listed"),
        "{}",
        refused.message()
    );
}
