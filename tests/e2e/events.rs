//! Live events end to end: real nodes, real mTLS, real stores. A report at one
//! node reaches a peer's watch; a peer that was down receives what it missed
//! exactly once; a recall reaches the peers that had the event and no others;
//! reports marked above a peer's highest TLP never make events for it.

use crate::common;

use crate::common::{now, TestFederation};
use lagesbild_proto::v1::event_service_client::EventServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    feed_item, watch_item, Category, FeedItem, Person, Position, RecallReason, RecallRequest,
    RecallResponse, Report, Source, SubmitBatchRequest, SubscribeRequest, Tlp, WatchItem,
    WatchRequest,
};
use prost_types::Timestamp;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use tonic::{Code, Streaming};

const ORIGIN: &str = "polisen";
const WIDE: &str = "scandic";
const NARROW: &str = "svensk-handel";

const POLICY: &str = r#"version = 1

[peer.scandic]
scopes = ["events:read"]
purposes = ["situation-picture"]
categories = ["all"]
finest_cell = 250
max_tlp = "amber"
text = true

[peer.svensk-handel]
scopes = ["events:read"]
purposes = ["situation-picture"]
categories = ["violence", "theft"]
finest_cell = 1000
max_tlp = "green"
text = false
"#;

fn report(id: &str, tlp: Tlp) -> Report {
    Report {
        id: id.into(),
        observed_at: Some(Timestamp {
            seconds: now() - 90,
            nanos: 0,
        }),
        position: Some(Position {
            lat: 59.332_58,
            lon: 18.064_91,
        }),
        place_name: "Sergels torg".into(),
        category: Category::Violence as i32,
        severity: 4,
        text: "Bråk, Ulla Kvist slagen".into(),
        persons: vec![Person {
            name: "Ulla Kvist".into(),
            personal_identity_number: String::new(),
        }],
        vehicle_plates: vec![],
        source: Source::Patrol as i32,
        tlp: tlp as i32,
    }
}

async fn submit(fed: &TestFederation, reports: Vec<Report>) {
    let mut writer = ReportServiceClient::new(fed.authed(ORIGIN, ORIGIN, &["report:write"]));
    let stored = writer
        .submit_batch(SubmitBatchRequest {
            reports,
            validate_only: false,
        })
        .await
        .expect("stored")
        .into_inner();
    assert!(stored.stored > 0);
}

/// The origin's own people recall the events of `report_id`.
async fn recall(
    fed: &TestFederation,
    report_id: &str,
    reason: RecallReason,
) -> Result<tonic::Response<RecallResponse>, tonic::Status> {
    EventServiceClient::new(fed.authed(ORIGIN, ORIGIN, &["report:write"]))
        .recall(RecallRequest {
            report_id: report_id.into(),
            reason: reason as i32,
        })
        .await
}

async fn watch(fed: &TestFederation, org: &str, after: u64) -> Streaming<WatchItem> {
    EventServiceClient::new(fed.authed(org, org, &["events:read"]))
        .watch(WatchRequest { after })
        .await
        .expect("own org watches")
        .into_inner()
}

/// The next `n` items, each within 30 s.
async fn next<T>(stream: &mut Streaming<T>, n: usize) -> Vec<T> {
    let mut items = Vec::new();
    while items.len() < n {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Ok(Ok(Some(item))) => items.push(item),
            other => panic!(
                "{} of {n} items arrived, then: {:?}",
                items.len(),
                other.map(|r| r.map(|_| ()))
            ),
        }
    }
    items
}

/// Nothing more arrives within `wait`.
async fn quiet<T: std::fmt::Debug>(stream: &mut Streaming<T>, wait: Duration) {
    if let Ok(Ok(Some(item))) = tokio::time::timeout(wait, stream.message()).await {
        panic!("unexpected item: {item:?}");
    }
}

fn event(item: &WatchItem) -> &lagesbild_proto::v1::SituationEvent {
    match &item.item {
        Some(watch_item::Item::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

fn recall_id(item: &WatchItem) -> &str {
    match &item.item {
        Some(watch_item::Item::Recall(r)) => &r.id,
        other => panic!("expected a recall, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn events_reach_peers_once_in_order_and_recalls_follow_them() {
    let mut fed = TestFederation::start(&[ORIGIN, WIDE, NARROW]).await;
    std::fs::write(fed.org_dir(ORIGIN).join("policy.toml"), POLICY).unwrap();
    let mut wide = watch(&fed, WIDE, 0).await;
    let mut narrow = watch(&fed, NARROW, 0).await;

    submit(
        &fed,
        vec![report("r1", Tlp::Green), report("r2", Tlp::Amber)],
    )
    .await;
    let seen = next(&mut wide, 2).await;
    let (r1_wide, r2_wide) = (event(&seen[0]).clone(), event(&seen[1]).clone());
    let wide_last = seen[1].seq;
    for e in [&r1_wide, &r2_wide] {
        assert_eq!(e.org, ORIGIN);
        assert_eq!(e.cell.unwrap().size_m, 250);
        assert_eq!(e.slot_start.unwrap().seconds % 900, 0);
        assert!(
            e.text.contains("[namn]") && !e.text.contains("Kvist"),
            "{}",
            e.text
        );
    }
    assert_eq!(r1_wide.tlp, Tlp::Green as i32);
    assert_eq!(r2_wide.tlp, Tlp::Amber as i32);
    assert_ne!(r1_wide.id, r2_wide.id);
    // The plan's rule for serious violence fires at the receiving node.
    assert!(seen[0]
        .alerts
        .iter()
        .any(|a| a.playbook == "serious-violence"));

    // The narrow peer: only the green report, at 1000 m, without text.
    let seen = next(&mut narrow, 1).await;
    let r1_narrow = event(&seen[0]).clone();
    assert_eq!(r1_narrow.tlp, Tlp::Green as i32);
    assert_eq!(r1_narrow.cell.unwrap().size_m, 1000);
    assert!(r1_narrow.text.is_empty());
    assert_ne!(r1_narrow.id, r1_wide.id, "each peer has its own pseudonyms");
    quiet(&mut narrow, Duration::from_secs(2)).await;

    // The wide peer is down while three more reports come in.
    quiet(&mut wide, Duration::from_secs(1)).await;
    drop(wide);
    fed.kill(WIDE);
    submit(
        &fed,
        ["r3", "r4", "r5"].map(|id| report(id, Tlp::Clear)).to_vec(),
    )
    .await;
    fed.restart(WIDE).await;
    let mut wide = watch(&fed, WIDE, wide_last).await;
    let missed = next(&mut wide, 3).await;
    quiet(&mut wide, Duration::from_secs(3)).await;
    let everything = next(&mut watch(&fed, WIDE, 0).await, 5).await;
    let ids: BTreeSet<_> = everything.iter().map(|i| event(i).id.clone()).collect();
    assert_eq!(ids.len(), 5, "each event exactly once");
    let seqs: Vec<u64> = everything.iter().map(|i| i.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(
        missed
            .iter()
            .map(|i| event(i).id.clone())
            .collect::<Vec<_>>(),
        everything[2..]
            .iter()
            .map(|i| event(i).id.clone())
            .collect::<Vec<_>>()
    );

    // The narrow peer stayed up and got the three clear reports live.
    assert_eq!(next(&mut narrow, 3).await.len(), 3);

    // A recall reaches exactly the peers that had the event.
    let recalled = recall(&fed, "r2", RecallReason::EnteredInError)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(recalled.recipients, 1, "only the wide peer had r2's event");
    assert_eq!(recall_id(&next(&mut wide, 1).await[0]), r2_wide.id);
    quiet(&mut narrow, Duration::from_secs(2)).await;
    let again = recall(&fed, "r1", RecallReason::Duplicate)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.recipients, 2);
    assert_eq!(recall_id(&next(&mut wide, 1).await[0]), r1_wide.id);
    assert_eq!(recall_id(&next(&mut narrow, 1).await[0]), r1_narrow.id);
    let twice = recall(&fed, "r1", RecallReason::Duplicate)
        .await
        .unwrap()
        .into_inner();
    assert!(twice.already_recalled);
    let unknown = recall(&fed, "nothing", RecallReason::Duplicate)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_peer_subscribes_only_to_what_its_policy_allows() {
    let fed = TestFederation::start(&[ORIGIN, WIDE, NARROW]).await;
    std::fs::write(fed.org_dir(ORIGIN).join("policy.toml"), POLICY).unwrap();
    submit(
        &fed,
        vec![
            report("a1", Tlp::Red),
            report("a2", Tlp::AmberStrict),
            report("a3", Tlp::Amber),
            report("a4", Tlp::Green),
        ],
    )
    .await;
    let subscribe = |org: &'static str, scopes: &'static [&'static str]| {
        let channel = fed.authed(ORIGIN, org, scopes);
        async move {
            EventServiceClient::new(channel)
                .subscribe(SubscribeRequest { after: 0 })
                .await
        }
    };
    let tlps = |items: Vec<FeedItem>| -> Vec<i32> {
        items
            .into_iter()
            .map(|i| match i.item {
                Some(feed_item::Item::Event(e)) => e.tlp,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let mut narrow = subscribe(NARROW, &["events:read"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tlps(next(&mut narrow, 1).await), vec![Tlp::Green as i32]);
    quiet(&mut narrow, Duration::from_secs(1)).await;
    let mut wide = subscribe(WIDE, &["events:read"])
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        tlps(next(&mut wide, 2).await),
        vec![Tlp::Amber as i32, Tlp::Green as i32]
    );
    quiet(&mut wide, Duration::from_secs(1)).await;
    // Without the scope, as an auditor, or past the feed's end: refused.
    let no_scope = subscribe(WIDE, &["aggregate:read"]).await.unwrap_err();
    assert_eq!(no_scope.code(), Code::PermissionDenied);
    let auditor = subscribe("audit", &["events:read"]).await.unwrap_err();
    assert_eq!(auditor.code(), Code::PermissionDenied);
    let beyond = EventServiceClient::new(fed.authed(ORIGIN, WIDE, &["events:read"]))
        .subscribe(SubscribeRequest { after: 99 })
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::InvalidArgument);
    // A peer can't watch another org's inbox or recall its events.
    let peer_watch = EventServiceClient::new(fed.authed(ORIGIN, WIDE, &["events:read"]))
        .watch(WatchRequest { after: 0 })
        .await
        .unwrap_err();
    assert_eq!(peer_watch.code(), Code::PermissionDenied);
    let peer_recall = EventServiceClient::new(fed.authed(ORIGIN, WIDE, &["report:write"]))
        .recall(RecallRequest {
            report_id: "a4".into(),
            reason: RecallReason::Duplicate as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(peer_recall.code(), Code::PermissionDenied);

    // Each subscription is in the origin's access log: opened, refused, and
    // what an ended stream sent.
    drop(narrow);
    let subscribe = |e: &&serde_json::Value, org: &str| {
        e["call"] == "/lagesbild.v1.EventService/Subscribe" && e["peer_org"] == org
    };
    let narrow_ended = |e: &&serde_json::Value| {
        subscribe(e, NARROW)
            && e["reason"] == "stream ended after 1 messages"
            && e["released"]["values"] == 1
    };
    // The node notices the dropped stream in its own time.
    let waited = Instant::now();
    let mut log = common::log_entries(&fed, "audit", ORIGIN);
    while !log.iter().any(|e| narrow_ended(&e)) && waited.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        log = common::log_entries(&fed, "audit", ORIGIN);
    }
    assert!(
        log.iter()
            .any(|e| subscribe(&e, NARROW) && e["decision"] == "allowed"),
        "{log:#?}"
    );
    assert!(log.iter().any(|e| narrow_ended(&e)), "{log:#?}");
    assert!(
        log.iter()
            .any(|e| subscribe(&e, WIDE) && e["decision"] == "refused" && e["code"] == 7),
        "{log:#?}"
    );
    assert!(
        log.iter()
            .any(|e| e["call"] == "/lagesbild.v1.EventService/Recall" && e["peer_org"] == WIDE),
        "{log:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn opening_subscriptions_counts_against_the_peers_rate_limit() {
    let fed = TestFederation::start(&[ORIGIN, WIDE]).await;
    let policy = POLICY.replace("max_tlp = \"amber\"", "max_tlp = \"amber\"\nrate_limit = 2");
    std::fs::write(fed.org_dir(ORIGIN).join("policy.toml"), policy).unwrap();
    // Two a minute: however many the peer's own node already opened, the third
    // of these comes too soon.
    let mut opened = Vec::new();
    let mut refused = None;
    for _ in 0..3 {
        match EventServiceClient::new(fed.authed(ORIGIN, WIDE, &["events:read"]))
            .subscribe(SubscribeRequest { after: 0 })
            .await
        {
            Ok(stream) => opened.push(stream.into_inner()),
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let refused = refused.expect("a third subscription within a second was let through");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("rate limit of 2 calls per minute for scandic"),
        "{}",
        refused.message()
    );
    let log = common::log_entries(&fed, "audit", ORIGIN);
    assert!(
        log.iter()
            .any(|e| e["call"] == "/lagesbild.v1.EventService/Subscribe"
                && e["peer_org"] == WIDE
                && e["code"] == 8
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("rate limit"))),
        "{log:#?}"
    );
}
