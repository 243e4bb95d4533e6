//! The access log across real nodes: every decision is an entry (allowed,
//! refused for a bad token, the wrong org, an overspent budget, a refused
//! handshake), receipts reconcile between two logs, a changed byte is named by
//! `audit verify`, and a node that rewrites or truncates its log is caught by
//! the peers that witness it.

use crate::common;

use crate::common::{now, run, TestFederation, FEDERATION, PURPOSE};
use lagesbild_audit::checkpoint::origin_of;
use lagesbild_audit::{AuditLog, Entry, LogOptions, NoteSigner};
use lagesbild_identity::certs::LeafSpec;
use lagesbild_proto::v1::aggregate_service_client::AggregateServiceClient;
use lagesbild_proto::v1::audit_service_client::AuditServiceClient;
use lagesbild_proto::v1::picture_service_client::PictureServiceClient;
use lagesbild_proto::v1::report_service_client::ReportServiceClient;
use lagesbild_proto::v1::{
    AnswerStatus, BucketKind, Category, EntriesRequest, PictureRequest, Position,
    ReleaseManyRequest, ReleaseRequest, Report, Source, SubmitBatchRequest, Tlp, WitnessesRequest,
};
use prost_types::Timestamp;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const MEMBERS: [&str; 3] = ["polisen", "scandic", "stockholm-stad"];

/// Every member may read aggregates; scandic's budget is one query a day.
fn policy() -> String {
    let mut text = String::from("version = 1\n");
    for m in MEMBERS {
        text.push_str(&format!(
            "[peer.{m}]\nscopes = [\"aggregate:read\"]\npurposes = [\"{PURPOSE}\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nrate_limit = 1000\n"
        ));
        if m == "scandic" {
            text.push_str("epsilon_per_query = 1.0\nepsilon_per_day = 1.0\n");
        }
    }
    text
}

fn reports() -> Vec<Report> {
    let base = (now() / 3600 - 5) * 3600;
    (0..40)
        .map(|i| Report {
            id: format!("a-{i}"),
            observed_at: Some(Timestamp {
                seconds: base + (i % 3) * 3600 + 60,
                nanos: 0,
            }),
            position: Some(Position {
                lat: 59.3322,
                lon: 18.0640,
            }),
            category: Category::Violence as i32,
            severity: 3,
            source: Source::Patrol as i32,
            tlp: Tlp::Green as i32,
            text: "Misshandel".into(),
            ..Report::default()
        })
        .collect()
}

fn filters() -> ReleaseRequest {
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

/// A picture of the day, its `top` places ranked, with time for debug builds.
fn picture_of_the_day(top: u32) -> PictureRequest {
    PictureRequest {
        columnar: false,
        filters: Some(filters()),
        top,
        deadline_ms: 5000,
    }
}

async fn federation() -> TestFederation {
    let fed = TestFederation::start(&MEMBERS).await;
    for org in MEMBERS {
        std::fs::write(fed.org_dir(org).join("policy.toml"), policy()).unwrap();
        ReportServiceClient::new(fed.authed(org, org, &["report:write"]))
            .submit_batch(SubmitBatchRequest {
                reports: reports(),
                validate_only: false,
            })
            .await
            .unwrap();
    }
    fed
}

fn entries(fed: &TestFederation, as_org: &str, node: &str) -> Vec<Value> {
    common::log_entries(fed, as_org, node)
}

fn has(entries: &[Value], what: &str, test: impl Fn(&Value) -> bool) {
    assert!(
        entries.iter().any(test),
        "no entry for {what} in:\n{}",
        entries
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn audit_cli(fed: &TestFederation, as_org: &str, args: &[&str]) -> (bool, String) {
    let config = fed.org_dir(as_org).join("client.toml");
    let mut all = vec!["audit", args[0], "--config", config.to_str().unwrap()];
    all.extend_from_slice(&args[1..]);
    let out = fed.run_as(as_org, &all);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_decision_is_logged_verified_and_reconciled() {
    let fed = federation().await;

    // Allowed: scandic's node asks polisen's for a release.
    let mut as_scandic =
        AggregateServiceClient::new(fed.authed("polisen", "scandic", &["aggregate:read"]));
    let release = as_scandic.release(filters()).await.unwrap().into_inner();
    assert!(!release.counts.is_empty());
    // Refused: the budget is spent.
    let spent = as_scandic.release(filters()).await.unwrap_err();
    assert_eq!(spent.code(), tonic::Code::ResourceExhausted);
    // One call, several releases: one made, one refused (cells finer than the
    // policy allows); and too many requests in one call.
    let mut as_stad =
        AggregateServiceClient::new(fed.authed("polisen", "stockholm-stad", &["aggregate:read"]));
    let too_fine = ReleaseRequest {
        cell_size_m: 100,
        ..filters()
    };
    let many = as_stad
        .release_many(ReleaseManyRequest {
            requests: vec![filters(), too_fine],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(many.outcomes.len(), 2);
    assert_eq!(many.outcomes[0].code, 0);
    assert!(!many.outcomes[0].release.as_ref().unwrap().counts.is_empty());
    assert_eq!(many.outcomes[1].code, tonic::Code::PermissionDenied as u32);
    assert!(many.outcomes[1].release.is_none());
    assert!(
        many.outcomes[1].message.contains("100"),
        "{:?}",
        many.outcomes[1]
    );
    let too_many = as_stad
        .release_many(ReleaseManyRequest {
            requests: vec![filters(); 9],
        })
        .await
        .unwrap_err();
    assert_eq!(too_many.code(), tonic::Code::InvalidArgument);
    assert!(too_many.message().contains("9 given"), "{too_many:?}");
    // Refused: a token for another audience.
    let wrong_aud = fed.token("scandic", "stockholm-stad", &["aggregate:read"], PURPOSE);
    let mut client = AggregateServiceClient::new(lagesbild_auth::AuthChannel::new(
        fed.channel("polisen", fed.client_tls("scandic", "polisen")),
        lagesbild_auth::Bearer::new(&wrong_aud).unwrap(),
    ));
    assert_eq!(
        client.release(filters()).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    // Refused: the wrong org — stockholm-stad's token on scandic's connection.
    let other_org = fed.token("stockholm-stad", "polisen", &["aggregate:read"], PURPOSE);
    let mut client = AggregateServiceClient::new(lagesbild_auth::AuthChannel::new(
        fed.channel("polisen", fed.client_tls("scandic", "polisen")),
        lagesbild_auth::Bearer::new(&other_org).unwrap(),
    ));
    assert_eq!(
        client.release(filters()).await.unwrap_err().code(),
        tonic::Code::Unauthenticated
    );
    // Refused handshake: scandic's CA vouching for a certificate that names polisen.
    let forged = fed
        .ca_of("scandic")
        .issue(&LeafSpec::client(FEDERATION, "polisen"))
        .unwrap();
    assert!(fed
        .health("polisen", fed.tls_with("polisen", &forged))
        .await
        .is_err());
    // A picture by polisen's analyst: outbound calls to both peers.
    let picture = PictureServiceClient::new(fed.authed("polisen", "polisen", &["aggregate:read"]))
        .picture(picture_of_the_day(5))
        .await
        .unwrap()
        .into_inner();
    assert!(picture
        .answers
        .iter()
        .all(|a| a.status == AnswerStatus::Ok as i32 || a.org == "scandic"));

    let log = entries(&fed, "audit", "polisen");
    has(
        &log,
        "several releases in one call, the refused one named",
        |e| {
            e["peer_org"] == "stockholm-stad"
                && e["call"] == "/lagesbild.v1.AggregateService/ReleaseMany"
                && e["decision"] == "allowed"
                && e["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("request 1: PermissionDenied"))
                && e["released"]["values"].as_u64().unwrap()
                    == many.outcomes[0].release.as_ref().unwrap().counts.len() as u64
        },
    );
    has(&log, "too many releases in one call", |e| {
        e["call"] == "/lagesbild.v1.AggregateService/ReleaseMany" && e["code"] == 3
    });
    has(&log, "the allowed release to scandic", |e| {
        e["direction"] == "inbound"
            && e["peer_org"] == "scandic"
            && e["call"] == "/lagesbild.v1.AggregateService/Release"
            && e["decision"] == "allowed"
            && e["released"]["values"].as_u64().unwrap() == release.counts.len() as u64
            && e["released"]["epsilon_micros"] == 1_000_000
            && e["request_digest"].is_string()
            && e["response_digest"].is_string()
    });
    has(&log, "the overspent budget", |e| {
        e["peer_org"] == "scandic" && e["decision"] == "refused" && e["code"] == 8
    });
    has(&log, "the wrong audience", |e| {
        e["decision"] == "refused"
            && e["code"] == 16
            && e["reason"].as_str().unwrap().contains("aud")
    });
    // The key is chosen by the TLS peer's org, so another org's token can't verify.
    has(&log, "the wrong org", |e| {
        e["peer_org"] == "scandic"
            && e["decision"] == "refused"
            && e["code"] == 16
            && e["reason"]
                .as_str()
                .unwrap()
                .contains("does not verify under scandic's token key")
    });
    has(&log, "the refused handshake, its claim unverified", |e| {
        e["call"] == "tls-handshake"
            && e["peer_org"] == ""
            && e["refused_connection"]["claimed_org"] == "polisen"
            && e["decision"] == "refused"
    });
    has(&log, "the picture asked by polisen's analyst", |e| {
        e["call"] == "/lagesbild.v1.PictureService/Picture" && e["decision"] == "allowed"
    });
    // What stockholm-stad gave the picture is what polisen's outbound entry
    // says was released (the picture's own release and its two profiles).
    let stad = picture
        .answers
        .iter()
        .find(|a| a.org == "stockholm-stad")
        .unwrap();
    assert!(stad.values > 0, "{stad:?}");
    has(
        &log,
        "the outbound ReleaseMany to stockholm-stad with its receipt and what it released",
        |e| {
            e["direction"] == "outbound"
                && e["peer_org"] == "stockholm-stad"
                && e["call"] == "/lagesbild.v1.AggregateService/ReleaseMany"
                && e["token"]["act"] == "tester"
                && e["receipt"]["index"].is_u64()
                && e["released"]["values"].as_u64().unwrap() >= u64::from(stad.values)
                && e["released"]["cells"].as_u64().unwrap() > 0
        },
    );

    // A member reads only its own trail.
    let mut trail = AuditServiceClient::new(fed.authed("polisen", "scandic", &["audit:read"]));
    let own = trail
        .entries(EntriesRequest { start: 0, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    assert!(own.entries.len() >= 3);
    for e in &own.entries {
        assert_eq!(Entry::decode(&e.entry).unwrap().peer_org, "scandic");
    }
    // An auditor's token can't query aggregates.
    let refused = AggregateServiceClient::new(fed.authed("polisen", "audit", &["audit:read"]))
        .release(filters())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    // The auditor verifies polisen's log and reconciles it with stockholm-stad's
    // while both keep asking each other: calls made during the reading must not
    // look like a truncated log.
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut askers = Vec::new();
    for (home, peer) in [("stockholm-stad", "polisen"), ("polisen", "stockholm-stad")] {
        let mut pictures = PictureServiceClient::new(fed.authed(home, home, &["aggregate:read"]));
        let busy = busy.clone();
        askers.push(tokio::spawn(async move {
            let mut answered = 0;
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                let picture = pictures
                    .picture(picture_of_the_day(1))
                    .await
                    .unwrap()
                    .into_inner();
                answered += picture.answers.iter().filter(|a| a.org == peer).count();
            }
            answered
        }));
    }
    let (ok, text) = audit_cli(
        &fed,
        "audit",
        &[
            "verify",
            "--node",
            "polisen",
            "--reconcile-with",
            "stockholm-stad",
        ],
    );
    assert!(ok, "{text}");
    assert!(text.contains("verified: every check passed"), "{text}");
    let reconciled: u64 = text
        .split("receipts: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(reconciled >= 1, "{text}");
    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    for asker in askers {
        assert!(
            asker.await.unwrap() >= 1,
            "no peer was asked during the audit"
        );
    }

    // Inclusion proof of one entry, and offline verification of an export.
    let (ok, text) = audit_cli(
        &fed,
        "audit",
        &["prove", "--node", "polisen", "--index", "3"],
    );
    assert!(ok && text.contains("entry 3 is included"), "{text}");
    let export = fed.dir.path().join("polisen.export");
    let (ok, text) = audit_cli(
        &fed,
        "audit",
        &[
            "export",
            "--node",
            "polisen",
            "--out",
            export.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = audit_cli(
        &fed,
        "audit",
        &["verify", "--export", export.to_str().unwrap()],
    );
    assert!(ok && text.contains("verified"), "{text}");
    // The export ends at a checkpoint signed at its size.
    let (checkpoints, entries) = read_export(&export);
    let last = checkpoints.last().unwrap();
    let size: u64 = last.lines().nth(1).unwrap().parse().unwrap();
    assert_eq!(size, entries.len() as u64, "{last}");
    assert!(
        text.contains(&format!("the last covers all {size} entries")),
        "{text}"
    );

    // Without it, the tail is unsigned: its last entry's caller edited and its
    // leaf hash recomputed must fail, naming the index, with no "ok" line.
    let mut forged_entries = entries.clone();
    let (index, _, bytes) = forged_entries.last().unwrap().clone();
    let mut entry = Entry::decode(&bytes).unwrap();
    entry.peer_org = "someone-else".into();
    let forged_bytes = entry.encode();
    *forged_entries.last_mut().unwrap() = (
        index,
        lagesbild_audit::merkle::leaf_hash(&forged_bytes),
        forged_bytes,
    );
    let earlier: Vec<String> = checkpoints
        .iter()
        .filter(|c| c.lines().nth(1).unwrap().parse::<u64>().unwrap() <= index)
        .cloned()
        .collect();
    let forged = fed.dir.path().join("polisen.forged");
    write_export(&forged, &earlier, &forged_entries);
    let (ok, text) = audit_cli(
        &fed,
        "audit",
        &["verify", "--export", forged.to_str().unwrap()],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("no signature covers them"), "{text}");
    assert!(!text.contains(" ok "), "{text}");
    assert!(!text.contains("verified: every check passed"), "{text}");
    // With the final checkpoint kept, the same forgery fails on its root.
    write_export(&forged, &checkpoints, &forged_entries);
    let (ok, text) = audit_cli(
        &fed,
        "audit",
        &["verify", "--export", forged.to_str().unwrap()],
    );
    assert!(
        !ok && text.contains(&format!("checkpoint of size {size}")) && text.contains("has root"),
        "{text}"
    );
}

type ExportedEntry = (u64, lagesbild_audit::Hash, Vec<u8>);

fn read_export(path: &Path) -> (Vec<String>, Vec<ExportedEntry>) {
    use lagesbild_audit::export::{ExportReader, Record};
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = ExportReader::new(file).unwrap();
    let (mut checkpoints, mut entries) = (Vec::new(), Vec::new());
    while let Some(record) = reader.next_record().unwrap() {
        match record {
            Record::Checkpoint(note) => checkpoints.push(note),
            Record::Entry { index, leaf, bytes } => entries.push((index, leaf, bytes)),
        }
    }
    (checkpoints, entries)
}

fn write_export(path: &Path, checkpoints: &[String], entries: &[ExportedEntry]) {
    use lagesbild_audit::export::ExportWriter;
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ExportWriter::new(file, &origin_of(FEDERATION, "polisen")).unwrap();
    for note in checkpoints {
        writer.checkpoint(note).unwrap();
    }
    for (index, leaf, bytes) in entries {
        writer.entry(*index, leaf, bytes).unwrap();
    }
    writer.finish().unwrap();
}

/// Flips one byte inside the stored bytes of entry `original` in the log in `dir`.
fn flip_byte_of_entry(dir: &Path, original: &[u8]) {
    let path = dir.join("entries");
    let mut stored = std::fs::read(&path).unwrap();
    let at = stored
        .windows(original.len())
        .position(|w| w == original)
        .expect("entry bytes in the entries file");
    // A byte in the middle of its call path: the entry still decodes, so only
    // its hash can tell.
    let call = Entry::decode(original).unwrap().call;
    let in_entry = original
        .windows(call.len())
        .position(|w| w == call.as_bytes())
        .expect("call path in the entry");
    stored[at + in_entry + call.len() / 2] ^= 0x20;
    std::fs::write(&path, stored).unwrap();
}

/// Rebuilds the log in `dir` with entry `index` changed, re-signed with the
/// org's own key: a consistent-looking rewrite that only witnesses can catch.
async fn rewrite_log(dir: &Path, key: &Path, origin: &str, index: u64) {
    let pem = std::fs::read(key).unwrap();
    let old = AuditLog::open(
        dir,
        NoteSigner::from_pem(origin, &pem).unwrap(),
        LogOptions::default(),
    )
    .unwrap();
    let all = old.entries(0, usize::MAX, usize::MAX).unwrap();
    old.close().await;
    std::fs::remove_dir_all(dir).unwrap();
    let new = AuditLog::open(
        dir,
        NoteSigner::from_pem(origin, &pem).unwrap(),
        LogOptions::default(),
    )
    .unwrap();
    for (i, _, bytes) in all {
        let mut entry = Entry::decode(&bytes).unwrap();
        if i == index {
            entry.reason = "nothing to see here".into();
        }
        new.append(&entry).await.unwrap();
    }
    new.close().await;
}

/// Polls scandic's witness record of polisen until `test` holds.
async fn witnessed_by_scandic(
    fed: &TestFederation,
    test: impl Fn(&lagesbild_proto::v1::WitnessedPeer) -> bool,
) -> lagesbild_proto::v1::WitnessedPeer {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // A contact: scandic's node asks polisen's for its info (and then witnesses it).
        let out = fed.run_as(
            "scandic",
            &[
                "status",
                "--config",
                fed.org_dir("scandic").join("client.toml").to_str().unwrap(),
            ],
        );
        assert!(out.status.success());
        let peers = AuditServiceClient::new(fed.authed("scandic", "scandic", &[]))
            .witnesses(WitnessesRequest {})
            .await
            .unwrap()
            .into_inner()
            .peers;
        if let Some(p) = peers.into_iter().find(|p| p.org == "polisen" && test(p)) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "scandic's witness record never changed as expected"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_is_named_and_rewrites_are_caught_by_witnesses() {
    let mut fed = federation().await;
    let audit_dir = fed.org_dir("polisen").join("data/audit");
    let origin = origin_of(FEDERATION, "polisen");

    // scandic witnesses polisen's log.
    let held = witnessed_by_scandic(&fed, |p| p.size > 0 && !p.alarm).await;
    assert!(held.checkpoint.starts_with(&origin));

    // One flipped byte: `audit verify` names the entry.
    let target = AuditServiceClient::new(fed.authed("polisen", "audit", &["audit:read"]))
        .entries(EntriesRequest { start: 2, limit: 1 })
        .await
        .unwrap()
        .into_inner()
        .entries
        .remove(0);
    assert_eq!(target.index, 2);
    fed.kill("polisen");
    flip_byte_of_entry(&audit_dir, &target.entry);
    fed.restart("polisen").await;
    let (ok, text) = audit_cli(&fed, "audit", &["verify", "--node", "polisen"]);
    assert!(!ok, "{text}");
    assert!(text.contains("FAILED  entry 2:"), "{text}");

    // A rewrite, re-signed with polisen's own key: scandic's witness catches it.
    fed.kill("polisen");
    rewrite_log(
        &audit_dir,
        &fed.org_dir("polisen").join("token.key"),
        &origin,
        1,
    )
    .await;
    fed.restart("polisen").await;
    let alarmed = witnessed_by_scandic(&fed, |p| p.alarm).await;
    assert!(
        alarmed.alarm_reason.contains("not consistent"),
        "{}",
        alarmed.alarm_reason
    );
    assert!(alarmed.evidence.starts_with(&origin));
    // It shows in status and health, and polisen is not asked.
    let out = fed.run_as(
        "scandic",
        &[
            "status",
            "--config",
            fed.org_dir("scandic").join("client.toml").to_str().unwrap(),
        ],
    );
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(status.contains("WITNESS ALARM"), "{status}");
    let log = fed
        .nodes
        .iter()
        .find(|n| n.org() == "scandic")
        .unwrap()
        .log_text();
    assert!(
        log.contains("ALARM: peer's access log forked or was rewritten"),
        "{log}"
    );
    let health = tonic_health::pb::health_client::HealthClient::new(
        fed.channel("scandic", fed.client_tls("scandic", "scandic")),
    )
    .check(tonic_health::pb::HealthCheckRequest {
        service: "lagesbild.v1.Witness".into(),
    })
    .await
    .unwrap()
    .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    let picture = PictureServiceClient::new(fed.authed("scandic", "scandic", &["aggregate:read"]))
        .picture(picture_of_the_day(5))
        .await
        .unwrap()
        .into_inner();
    let polisen = picture.answers.iter().find(|a| a.org == "polisen").unwrap();
    assert_eq!(
        polisen.status,
        AnswerStatus::WitnessAlarm as i32,
        "{polisen:?}"
    );

    // The operator clears it; the next contact starts over from polisen's log.
    let (ok, text) = {
        let out = fed.run_as(
            "scandic",
            &[
                "audit",
                "clear",
                "--config",
                fed.org_dir("scandic").join("client.toml").to_str().unwrap(),
                "--peer",
                "polisen",
            ],
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(ok, "{text}");
    witnessed_by_scandic(&fed, |p| p.size > 0 && !p.alarm).await;

    // Truncation: the log is gone and starts again; the witness sees it shrink.
    fed.kill("polisen");
    std::fs::remove_dir_all(&audit_dir).unwrap();
    fed.restart("polisen").await;
    let alarmed = witnessed_by_scandic(&fed, |p| p.alarm).await;
    assert!(
        alarmed.alarm_reason.contains("shrank"),
        "{}",
        alarmed.alarm_reason
    );
}

/// A self-signed client certificate whose SAN URIs are `uris`.
fn self_signed(uris: &[&str]) -> lagesbild_identity::certs::CertifiedKey {
    self_signed_as(uris, rcgen::IsCa::ExplicitNoCa)
}

fn self_signed_as(uris: &[&str], is_ca: rcgen::IsCa) -> lagesbild_identity::certs::CertifiedKey {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = is_ca;
    params.subject_alt_names = uris
        .iter()
        .map(|u| rcgen::SanType::URI((*u).try_into().unwrap()))
        .collect();
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key).unwrap();
    lagesbild_identity::certs::CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// One TLS handshake with `node`'s node over `tls`, waiting for the node's
/// verdict: in TLS 1.3 the client finishes first, so read until the node
/// answers or closes.
async fn one_handshake(
    fed: &TestFederation,
    node: &str,
    tls: std::sync::Arc<rustls::ClientConfig>,
) {
    use tokio::io::AsyncReadExt;
    let tcp = tokio::net::TcpStream::connect(fed.endpoint(node))
        .await
        .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    if let Ok(mut stream) = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
    {
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    }
}

/// The `tls-handshake` entries of `node`'s log as `reader` sees them.
fn refusal_entries(fed: &TestFederation, reader: &str, node: &str) -> Vec<Value> {
    common::log_entries(fed, reader, node)
        .into_iter()
        .filter(|e| e["call"] == "tls-handshake")
        .collect()
}

fn counted(entries: &[Value]) -> u64 {
    entries
        .iter()
        .map(|e| e["refused_connection"]["count"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refused_handshake_is_counted_unattributed_and_at_a_bounded_rate() {
    let fed = TestFederation::start(&["polisen", "stockholm-stad"]).await;
    const FLOOD: u64 = 60;
    // A self-signed certificate naming stockholm-stad, again and again.
    let claims_stad = self_signed(&[&format!("spiffe://{FEDERATION}/org/stockholm-stad/x")]);
    let flood = fed.tls_with("polisen", &claims_stad);
    for _ in 0..FLOOD {
        one_handshake(&fed, "polisen", flood.clone()).await;
    }
    // One of each other kind: no certificate, TLS 1.2 only, two SAN URIs, no
    // SPIFFE URI, and bytes that are not TLS.
    one_handshake(&fed, "polisen", fed.tls_without_certificate("polisen")).await;
    one_handshake(&fed, "polisen", fed.tls12_only("polisen", "polisen")).await;
    let two = self_signed(&[
        &format!("spiffe://{FEDERATION}/org/polisen/a"),
        &format!("spiffe://{FEDERATION}/org/stockholm-stad/b"),
    ]);
    one_handshake(&fed, "polisen", fed.tls_with("polisen", &two)).await;
    let none = self_signed(&["https://example.se/x"]);
    one_handshake(&fed, "polisen", fed.tls_with("polisen", &none)).await;
    // A CA certificate presented as a client's, naming polisen.
    let ca = self_signed_as(
        &[&format!("spiffe://{FEDERATION}/org/polisen/ca")],
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
    );
    one_handshake(&fed, "polisen", fed.tls_with("polisen", &ca)).await;
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(fed.endpoint("polisen"))
            .await
            .unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    }
    let total = FLOOD + 6;

    // Every refusal is accounted for once its interval has been written.
    let deadline = Instant::now() + Duration::from_secs(60);
    let entries = loop {
        let entries = refusal_entries(&fed, "audit", "polisen");
        let n = counted(&entries);
        assert!(n <= total, "{n} refusals counted for {total}: {entries:#?}");
        if n == total {
            break entries;
        }
        assert!(
            Instant::now() < deadline,
            "{n} of {total} refusals counted: {entries:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Bounded: the flood is a few entries, not one each.
    let of_stad: Vec<&Value> = entries
        .iter()
        .filter(|e| e["refused_connection"]["claimed_org"] == "stockholm-stad")
        .collect();
    assert_eq!(
        of_stad
            .iter()
            .map(|e| e["refused_connection"]["count"].as_u64().unwrap())
            .sum::<u64>(),
        FLOOD
    );
    assert!(of_stad.len() <= 3, "{of_stad:#?}");
    assert!(entries.len() <= 10, "{entries:#?}");
    // Never attributed, always with its source.
    for e in &entries {
        assert_eq!(e["peer_org"], "", "{e}");
        assert_eq!(e["decision"], "refused", "{e}");
        assert_eq!(e["refused_connection"]["source"], "127.0.0.1", "{e}");
    }
    // Each kind is there in words a person reads.
    let reasons: Vec<&str> = entries
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    for expected in [
        "no client certificate was presented",
        "only TLS 1.3 is accepted",
        "more than one spiffe:// URI",
        "no spiffe:// URI",
        "did not send a valid TLS 1.3 handshake",
        "does not chain to the CA the federation registers",
        "presented a CA certificate",
    ] {
        assert!(
            reasons.iter().any(|r| r.contains(expected)),
            "{expected:?} in {reasons:#?}"
        );
    }
    for r in &reasons {
        assert!(!r.contains("Other(") && !r.contains("Error"), "{r}");
    }
    // stockholm-stad's node, reading polisen's log, sees none of it as its
    // call (the auditor above sees it all).
    let seen = AuditServiceClient::new(fed.authed("polisen", "stockholm-stad", &["audit:read"]))
        .entries(lagesbild_proto::v1::EntriesRequest { start: 0, limit: 0 })
        .await
        .unwrap()
        .into_inner();
    let decoded: Vec<lagesbild_audit::Entry> = seen
        .entries
        .iter()
        .map(|e| lagesbild_audit::Entry::decode(&e.entry).unwrap())
        .collect();
    assert!(
        seen.size > decoded.len() as u64,
        "the log has more than it shows"
    );
    assert!(decoded.iter().all(|e| e.peer_org == "stockholm-stad"));
    assert!(!decoded.iter().any(|e| e.call == "tls-handshake"));
}

/// What whoever holds an org's client configuration can sign is no checkpoint
/// of its node's log: checkpoints are signed with the log key, which only the
/// node's configuration names.
#[test]
fn a_checkpoint_signed_with_the_token_key_is_refused() {
    use lagesbild_audit::checkpoint::{log_verifier, origin_of, NoteSigner};
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "certs",
        "init",
        "--dir",
        dir.path().to_str().unwrap(),
        "--federation",
        FEDERATION,
        "--org",
        "polisen",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let org_dir = dir.path().join("polisen");
    let client = std::fs::read_to_string(org_dir.join("client.toml")).unwrap();
    assert!(
        !client.contains("log"),
        "the client configuration names no log key: {client}"
    );
    let federation =
        lagesbild_identity::Federation::load(&dir.path().join("federation.toml")).unwrap();
    let vkey = federation
        .member("polisen")
        .unwrap()
        .log_vkey
        .clone()
        .unwrap();
    // As witnesses and `audit verify` build it.
    let verifier = log_verifier(FEDERATION, "polisen", &vkey).unwrap();
    let origin = origin_of(FEDERATION, "polisen");
    let sign_with = |file: &str| {
        let pem = std::fs::read(org_dir.join(file)).unwrap();
        NoteSigner::from_pem(&origin, &pem)
            .unwrap()
            .sign(42, [9; 32])
    };
    assert!(verifier.verify(&sign_with("token.key")).is_err());
    // Control: the node's log key signs checkpoints that verify.
    assert_eq!(verifier.verify(&sign_with("log.key")).unwrap().size, 42);
}
