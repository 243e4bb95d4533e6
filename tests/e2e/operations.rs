//! Running a node unattended: metrics on a loopback port, limits.

use crate::common;

use crate::common::{free_ports, TestFederation};
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::{BucketKind, ReleaseRequest};
use std::io::{Read, Write};
use tonic::Code;

fn scrape(port: u16, path: &str) -> String {
    let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(socket, "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_calls_by_peer_and_decision_on_a_loopback_port() {
    let mut fed = TestFederation::start(&["polisen", "scandic"]).await;
    let port = free_ports(1)[0];
    fed.kill("polisen");
    let config = fed.org_dir("polisen").join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    std::fs::write(&config, text).unwrap();
    fed.restart("polisen").await;

    // scandic has no policy at polisen: refused, and counted as such.
    let refused =
        AggregateServiceClient::new(fed.authed("polisen", "scandic", &["aggregate:read"]))
            .release(ReleaseRequest {
                unless_digest: Vec::new(),
                columnar: false,
                purpose: common::PURPOSE.into(),
                from: Some(prost_types::Timestamp {
                    seconds: common::now() - 86_400,
                    nanos: 0,
                }),
                to: Some(prost_types::Timestamp {
                    seconds: common::now(),
                    nanos: 0,
                }),
                categories: vec![],
                area: None,
                cell_size_m: 1000,
                bucket: BucketKind::Day as i32,
                totals_only: false,
            })
            .await
            .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);

    let answer = scrape(port, "/metrics");
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    assert!(
        answer.contains(
            "lagesbild_calls_total{direction=\"inbound\",service=\"lagesbild.v1.AggregateService\",method=\"Release\",peer=\"scandic\",decision=\"refused\"} 1"
        ),
        "{answer}"
    );
    assert!(answer.contains("lagesbild_call_seconds_bucket{direction=\"inbound\",service=\"lagesbild.v1.AggregateService\",method=\"Release\",le=\"+Inf\"} 1"), "{answer}");
    let entries: u64 = answer
        .lines()
        .find_map(|l| l.strip_prefix("lagesbild_access_log_entries "))
        .expect("log size")
        .parse()
        .unwrap();
    assert!(entries >= 1);
    // scandic's node follows polisen's events: its subscription is counted too.
    assert!(
        answer.contains("method=\"Subscribe\",peer=\"scandic\""),
        "{answer}"
    );
    assert!(scrape(port, "/other").starts_with("HTTP/1.1 404"));

    // A metrics address off loopback is refused at start-up, by name.
    fed.kill("polisen");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(&format!("127.0.0.1:{port}"), &format!("0.0.0.0:{port}"));
    std::fs::write(&config, text).unwrap();
    let out = common::run(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a loopback address"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversize_message_is_resource_exhausted_in_words_and_logged() {
    let fed = TestFederation::start(&["polisen", "scandic"]).await;
    let mut client =
        AggregateServiceClient::new(fed.authed("polisen", "scandic", &["aggregate:read"]));
    let refused = client
        .release(ReleaseRequest {
            purpose: "x".repeat(5 * 1024 * 1024),
            ..ReleaseRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("at most 4194304 bytes are accepted"),
        "{}",
        refused.message()
    );
    // A message within the limit reaches the service (and its own refusal).
    let within = client
        .release(ReleaseRequest {
            purpose: "x".repeat(1024),
            ..ReleaseRequest::default()
        })
        .await
        .unwrap_err();
    assert_ne!(within.code(), Code::ResourceExhausted, "{within:?}");
    let logged = common::log_entries(&fed, "audit", "polisen");
    assert!(
        logged
            .iter()
            .any(|e| e["call"] == "/lagesbild.v1.AggregateService/Release"
                && e["code"] == Code::ResourceExhausted as u32
                && e["reason"]
                    .as_str()
                    .unwrap()
                    .contains("at most 4194304 bytes")),
        "{logged:#?}"
    );
}
