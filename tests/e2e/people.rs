//! The org's people sign in to their own node as themselves: node-local
//! accounts, sessions, roles from the authorisation table, and delegation
//! tokens that name the verified person at the peer. A client configuration
//! holds no key that signs anything in the org's name.

use crate::common::{lagesbild, log_entries, run, TestFederation, PURPOSE, SESSION_ENV};
use lagesbild_auth::{AuthChannel, Bearer};
use lagesbild_proto::v1::node_service_client::NodeServiceClient;
use lagesbild_proto::v1::InfoRequest;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use tonic::Code;

const HOME: &str = "polisen";
const PEER: &str = "scandic";
const ANNA: &str = "anna";
const ANNA_PASSWORD: &str = "anna's own long password";

/// Both members give each other aggregates for the picture.
fn allow_each_other(fed: &TestFederation) {
    for (owner, peer) in [(HOME, PEER), (PEER, HOME)] {
        let policy = format!(
            "version = 1\n[peer.{peer}]\nscopes = [\"aggregate:read\"]\npurposes = [\"{PURPOSE}\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nrate_limit = 1000\n[peer.{owner}]\nscopes = [\"aggregate:read\"]\npurposes = [\"{PURPOSE}\"]\ncategories = [\"all\"]\nfinest_cell = 250\nfinest_bucket = \"hour\"\nk = 3\nrate_limit = 1000\n"
        );
        std::fs::write(fed.org_dir(owner).join("policy.toml"), policy).unwrap();
    }
}

/// `lagesbild args` as whoever's session is in `session`.
fn as_person(session: &Path, args: &[&str]) -> Output {
    lagesbild()
        .env(SESSION_ENV, session)
        .args(args)
        .output()
        .unwrap()
}

fn client_toml(fed: &TestFederation, org: &str) -> String {
    fed.org_dir(org).join("client.toml").display().to_string()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Polls `lagesbild whoami` as `session` until `done` holds of its output,
/// for at most a minute (the node reads its accounts file every few seconds).
async fn whoami_until(
    fed: &TestFederation,
    session: &Path,
    done: impl Fn(&Output) -> bool,
) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = as_person(session, &["whoami", "--config", &client_toml(fed, HOME)]);
        if done(&out) || Instant::now() > deadline {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn entries_with(entries: &[Value], call: &str) -> Vec<Value> {
    entries
        .iter()
        .filter(|e| e["call"].as_str().is_some_and(|c| c.ends_with(call)))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_and_every_log_names_them() {
    let fed = TestFederation::start(&[HOME, PEER]).await;
    allow_each_other(&fed);
    // Added while the node runs: it reads the new account within seconds.
    fed.add_account_and_wait(HOME, ANNA, &["analyst"], ANNA_PASSWORD)
        .await;
    let session = fed.login(HOME, ANNA, ANNA_PASSWORD).unwrap();
    let secret = std::fs::read_to_string(&session).unwrap();
    assert!(secret.starts_with("lgs_"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&session).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the session file is the person's alone");
    }
    let who = as_person(&session, &["whoami", "--config", &client_toml(&fed, HOME)]);
    assert!(who.status.success(), "{}", text(&who));
    assert!(
        text(&who).contains("anna (local:polisen) as analyst"),
        "{}",
        text(&who)
    );

    // The picture, as anna: her node asks the peer on her behalf.
    let out = as_person(
        &session,
        &[
            "query",
            "--config",
            &client_toml(&fed, HOME),
            "--format",
            "json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Her own node's log names her and the sign-in the call came with…
    let home_log = log_entries(&fed, HOME, HOME);
    let sign_ins: Vec<Value> = entries_with(&home_log, "SessionService/SignIn")
        .into_iter()
        .filter(|e| e["token"]["sub"] == "anna (local:polisen)")
        .collect();
    assert_eq!(sign_ins.len(), 1, "{sign_ins:#?}");
    let session_jti = sign_ins[0]["token"]["jti"].as_str().unwrap().to_owned();
    assert!(session_jti.starts_with("session:"), "{session_jti}");
    let pictures = entries_with(&home_log, "PictureService/Picture");
    assert_eq!(pictures.len(), 1, "{pictures:#?}");
    assert_eq!(pictures[0]["token"]["sub"], "anna (local:polisen)");
    assert_eq!(pictures[0]["token"]["jti"], session_jti.as_str());
    assert_eq!(pictures[0]["decision"], "allowed");
    // …and the secret itself is nowhere in it.
    let all = serde_json::to_string(&home_log).unwrap();
    assert!(
        !all.contains(secret.trim()),
        "the session secret was logged"
    );

    // The peer's log names the person, with who verified her.
    let peer_log = log_entries(&fed, PEER, PEER);
    let asked: Vec<Value> = entries_with(&peer_log, "AggregateService/ReleaseMany")
        .into_iter()
        .filter(|e| e["peer_org"] == HOME)
        .collect();
    assert!(
        !asked.is_empty(),
        "no ReleaseMany from {HOME} in {PEER}'s log"
    );
    for entry in &asked {
        assert_eq!(entry["token"]["act"], "anna (local:polisen)", "{entry:#}");
        assert_eq!(entry["token"]["purpose"], PURPOSE);
    }

    // A call her role does not allow: refused by name, and logged.
    let out = as_person(
        &session,
        &[
            "audit",
            "entries",
            "--config",
            &client_toml(&fed, HOME),
            "--node",
            HOME,
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("needs the role auditor; anna (local:polisen) has analyst"),
        "{}",
        text(&out)
    );
    let refused: Vec<Value> = entries_with(&log_entries(&fed, HOME, HOME), "AuditService/Entries")
        .into_iter()
        .filter(|e| e["decision"] == "refused")
        .collect();
    assert!(
        refused.iter().any(|e| e["reason"]
            .as_str()
            .unwrap()
            .contains("anna (local:polisen) has analyst")),
        "{refused:#?}"
    );
    // Control: the tester, with the auditor role, reads it.
    let out = fed.run_as(
        HOME,
        &[
            "audit",
            "entries",
            "--config",
            &client_toml(&fed, HOME),
            "--node",
            HOME,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Signed out, the session is gone at the node too.
    let copy = fed.org_dir(HOME).join("copied.session");
    std::fs::copy(&session, &copy).unwrap();
    let out = as_person(&session, &["logout", "--config", &client_toml(&fed, HOME)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!session.exists());
    let out = as_person(&copy, &["whoami", "--config", &client_toml(&fed, HOME)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown or has ended"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_limited_and_logged_and_disabling_ends_sessions() {
    let fed = TestFederation::start(&[HOME]).await;
    fed.add_account(HOME, "bert", &["analyst"], "bert's long password");
    fed.add_account_and_wait(HOME, "carl", &["analyst"], "carl's long password")
        .await;
    let node_toml = fed.org_dir(HOME).join("node.toml").display().to_string();
    let carl = fed.login(HOME, "carl", "carl's long password").unwrap();

    // Five wrong passwords, then even the right one is refused for a while.
    for _ in 0..5 {
        let e = fed.login(HOME, "bert", "not bert's password").unwrap_err();
        assert!(
            e.contains("sign-in as \"bert\" refused: wrong account name or password"),
            "{e}"
        );
    }
    let e = fed.login(HOME, "bert", "bert's long password").unwrap_err();
    assert!(e.contains("5 wrong passwords within 15 minutes"), "{e}");
    // An unknown name reads the same as a wrong password.
    let e = fed
        .login(HOME, "nobody", "bert's long password")
        .unwrap_err();
    assert!(e.contains("wrong account name or password"), "{e}");
    // Each refusal is in the access log with the name claimed.
    let log = log_entries(&fed, HOME, HOME);
    let refused: Vec<&Value> = log
        .iter()
        .filter(|e| {
            e["call"].as_str().is_some_and(|c| c.ends_with("SignIn")) && e["decision"] == "refused"
        })
        .collect();
    let about_bert = refused
        .iter()
        .filter(|e| e["reason"].as_str().unwrap().contains("\"bert\""))
        .count();
    assert_eq!(about_bert, 6, "{refused:#?}");
    assert!(refused
        .iter()
        .all(|e| !e["reason"].as_str().unwrap().contains("long password")));

    // A role change applies to carl's session without signing in again.
    let out = run(&[
        "users",
        "roles",
        "--config",
        &node_toml,
        "carl",
        "--role",
        "duty-officer",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let who = whoami_until(&fed, &carl, |o| text(o).contains("as duty-officer")).await;
    assert!(
        text(&who).contains("carl (local:polisen) as duty-officer"),
        "{}",
        text(&who)
    );
    // As a duty officer he watches the live events.
    let mut watching = lagesbild()
        .env(SESSION_ENV, &carl)
        .args(["watch", "--config", &client_toml(&fed, HOME)])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // Disabled: carl's session ends, his open watch with it, and he can't
    // sign in again.
    let out = run(&["users", "disable", "--config", &node_toml, "carl"]);
    assert!(out.status.success(), "{}", text(&out));
    let who = whoami_until(&fed, &carl, |o| !o.status.success()).await;
    assert!(!who.status.success(), "still signed in: {}", text(&who));
    let deadline = Instant::now() + Duration::from_secs(90);
    let ended = loop {
        if let Some(status) = watching.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = watching.kill();
            panic!("carl's watch still runs 90 s after he was disabled");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watching.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!ended.success(), "{stderr}");
    assert!(
        stderr.contains("unknown or has ended") || stderr.contains("disabled"),
        "{stderr}"
    );
    let e = fed.login(HOME, "carl", "carl's long password").unwrap_err();
    assert!(e.contains("disabled"), "{e}");
    let listed = run(&["users", "list", "--config", &node_toml]);
    assert!(text(&listed).contains("disabled"), "{}", text(&listed));
}

/// No client configuration can sign in the org's name: it names no key, the
/// old form that did is refused with how to move it, and a token signed with
/// the org's key is refused on the people's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_configuration_signs_nothing_in_the_orgs_name() {
    let fed = TestFederation::start(&[HOME]).await;
    let config = fed.org_dir(HOME).join("client.toml");
    // The tester signs in while the configuration is current.
    let out = fed.run_as(HOME, &["whoami", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let current = std::fs::read_to_string(&config).unwrap();
    assert!(!current.contains("token_key"), "{current}");
    assert!(!current.contains("log_key"), "{current}");
    // The auditor org runs no node: it keeps its own.
    let auditor = std::fs::read_to_string(fed.org_dir("audit").join("client.toml")).unwrap();
    assert!(auditor.contains("token_key"), "{auditor}");

    // The old form: refused with the way out, which works.
    let old = current.replacen("federation =", "token_key = \"token.key\"\nfederation =", 1);
    std::fs::write(&config, &old).unwrap();
    let out = fed.run_as(HOME, &["whoami", "--config", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("token_key is no longer read")
            && text(&out).contains("lagesbild certs migrate --config"),
        "{}",
        text(&out)
    );
    let out = run(&["certs", "migrate", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = fed.run_as(HOME, &["whoami", "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // A token signed with the org's key, sent on the people's certificate:
    // refused. Control: the same token on the node's certificate is accepted.
    let token = fed.token(HOME, HOME, &[], PURPOSE);
    let on_client = NodeServiceClient::new(AuthChannel::new(
        fed.channel(HOME, fed.client_tls(HOME, HOME)),
        Bearer::new(&token).unwrap(),
    ))
    .info(InfoRequest {})
    .await
    .unwrap_err();
    assert_eq!(on_client.code(), Code::Unauthenticated, "{on_client:?}");
    assert!(
        on_client.message().contains("not with a token"),
        "{}",
        on_client.message()
    );
    let on_node = NodeServiceClient::new(AuthChannel::new(
        fed.channel(HOME, fed.operator_tls(HOME)),
        Bearer::new(&token).unwrap(),
    ))
    .info(InfoRequest {})
    .await;
    assert!(on_node.is_ok(), "{on_node:?}");
    // A made-up session: refused.
    let forged = NodeServiceClient::new(AuthChannel::new(
        fed.channel(HOME, fed.client_tls(HOME, HOME)),
        Bearer::new("lgs_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").unwrap(),
    ))
    .info(InfoRequest {})
    .await
    .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
}
