//! People sign in through their org's identity provider, a real OpenID
//! provider on loopback: the device grant through the command line, and the
//! ID tokens the node must refuse (another issuer, another audience, expired,
//! stale, algorithm confusion, no role), each refusal logged with the names
//! the token claimed; the provider's key rotated while the node runs.

use crate::common::idp::{Idp, CLIENT_ID, USERS};
use crate::common::{free_ports, lagesbild, log_entries, now, TestFederation, SESSION_ENV};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lagesbild_proto::v1::session_service_client::SessionServiceClient;
use lagesbild_proto::v1::ExchangeRequest;
use serde_json::{json, Value};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tonic::Code;

const HOME: &str = "polisen";

/// Points `HOME`'s node at `idp`, mapping anna's group to the analyst role.
async fn trust(fed: &mut TestFederation, idp: &Idp) {
    fed.kill(HOME);
    let config = fed.org_dir(HOME).join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[people.oidc]\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nroles_claim = \"groups\"\n\n[people.oidc.roles]\n\"polis-analytiker\" = [\"analyst\"]\n",
        idp.issuer
    ));
    std::fs::write(&config, text).unwrap();
    fed.restart(HOME).await;
}

/// `lagesbild login --oidc`, with the person confirming at the provider as
/// `login`; the session file.
async fn device_login(fed: &TestFederation, idp: &Idp, login: &str) -> PathBuf {
    let (_, password, _, _) = USERS.iter().find(|u| u.0 == login).unwrap();
    let session = fed.org_dir(HOME).join(format!("{login}-oidc.session"));
    let config = fed.org_dir(HOME).join("client.toml");
    let mut child = lagesbild()
        .env(SESSION_ENV, &session)
        .args(["login", "--oidc", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let prompt = lines
        .next()
        .expect("the command printed where to sign in")
        .unwrap();
    let page = prompt
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {prompt:?}"))
        .to_owned();
    idp.confirm_device(&page, login, password).await;
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{rest:?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(session.exists(), "{rest:?}");
    session
}

fn whoami(fed: &TestFederation, session: &Path) -> String {
    let out = lagesbild()
        .env(SESSION_ENV, session)
        .args(["whoami", "--config"])
        .arg(fed.org_dir(HOME).join("client.toml"))
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn exchange(fed: &TestFederation, id_token: &str) -> Result<String, tonic::Status> {
    SessionServiceClient::new(fed.channel(HOME, fed.client_tls(HOME, HOME)))
        .exchange(ExchangeRequest {
            id_token: id_token.to_owned(),
        })
        .await
        .map(|r| r.into_inner().info.unwrap().subject)
}

fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_sign_in_through_the_orgs_identity_provider() {
    let mut fed = TestFederation::start(&[HOME]).await;
    let ports = free_ports(2);
    let idp = Idp::start(&fed.dir.path().join("idp"), ports[0], false).await;
    trust(&mut fed, &idp).await;

    // The device grant, through the command line.
    let session = device_login(&fed, &idp, "anna").await;
    let who = whoami(&fed, &session);
    assert!(
        who.contains(&format!("anna-sub ({}) as analyst", idp.issuer)),
        "{who}"
    );

    // Tokens the node must refuse, signed by the provider's real key.
    let t = now();
    let good = json!({"iss": idp.issuer, "sub": "anna-sub", "aud": CLIENT_ID, "iat": t, "exp": t + 300, "groups": ["polis-analytiker"]});
    let with = |changes: Value| {
        let mut claims = good.clone();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    // Control: the good one is accepted.
    let token = idp.sign(json!({}), good.clone()).await;
    assert_eq!(exchange(&fed, &token).await.unwrap(), "anna-sub");

    let mut refusals = vec![
        (
            idp.sign(json!({}), with(json!({"aud": "someone-else"})))
                .await,
            Code::Unauthenticated,
            format!("is not for {CLIENT_ID} (aud)"),
        ),
        (
            idp.sign(json!({}), with(json!({"iat": t - 900, "exp": t - 600})))
                .await,
            Code::Unauthenticated,
            "has expired".to_owned(),
        ),
        (
            idp.sign(json!({}), with(json!({"iat": t - 3600}))).await,
            Code::Unauthenticated,
            "issued more than 10 minutes ago".to_owned(),
        ),
        (
            idp.sign(
                json!({}),
                with(json!({"sub": "bert-sub", "groups": ["kantinen"]})),
            )
            .await,
            Code::PermissionDenied,
            "has no role at this node".to_owned(),
        ),
    ];
    // The same token again: one sign-in, one session.
    refusals.push((
        token.clone(),
        Code::Unauthenticated,
        "already exchanged for a session".to_owned(),
    ));
    // Algorithm confusion: HS256 keyed with the provider's public key.
    let jwks: Value = reqwest::get(format!("{}/jwks", idp.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_n = jwks["keys"][0]["n"].as_str().unwrap().to_owned();
    let hs_header = json!({"alg": "HS256", "typ": "JWT", "kid": kid_of(&token)});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(hs_header.to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, public_n.as_bytes()),
        input.as_bytes(),
    );
    refusals.push((
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref())),
        Code::Unauthenticated,
        "algorithm HS256 is not accepted".to_owned(),
    ));
    // No signature at all.
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
        URL_SAFE_NO_PAD.encode(good.to_string())
    );
    refusals.push((none, Code::Unauthenticated, "not a signed JWT".to_owned()));
    // Another provider's token, naming itself as issuer.
    let other = Idp::start(&fed.dir.path().join("other-idp"), ports[1], false).await;
    let foreign = other
        .sign(json!({}), with(json!({"iss": other.issuer})))
        .await;
    refusals.push((foreign, Code::Unauthenticated, other.issuer.clone()));
    for (token, code, expected) in &refusals {
        let refused = exchange(&fed, token).await.unwrap_err();
        assert_eq!(refused.code(), *code, "{expected}: {refused:?}");
        assert!(
            refused.message().contains(expected.as_str()),
            "{expected:?} in {}",
            refused.message()
        );
    }

    // Each refusal is logged, naming what the token claimed.
    let log = log_entries(&fed, HOME, HOME);
    let exchanges: Vec<&Value> = log
        .iter()
        .filter(|e| e["call"] == "/lagesbild.v1.SessionService/Exchange")
        .collect();
    let refused: Vec<&&Value> = exchanges
        .iter()
        .filter(|e| e["decision"] == "refused")
        .collect();
    assert_eq!(refused.len(), refusals.len(), "{exchanges:#?}");
    for entry in &refused {
        let reason = entry["reason"].as_str().unwrap();
        assert!(
            // Claimed names are quoted; a verified one is not.
            reason.contains("\"anna-sub\"")
                || reason.contains(&format!("bert-sub ({}) has no role", idp.issuer))
                || reason.contains("not a signed JWT"),
            "{reason}"
        );
    }
    let allowed: Vec<&&Value> = exchanges
        .iter()
        .filter(|e| e["decision"] == "allowed")
        .collect();
    assert_eq!(allowed.len(), 2, "{exchanges:#?}");
    for entry in allowed {
        assert_eq!(
            entry["token"]["sub"],
            format!("anna-sub ({})", idp.issuer).as_str()
        );
    }

    // The provider rotates its key while the node runs: a token under the
    // new key is accepted once the node has fetched the new JWKS.
    let old_kid = kid_of(&token);
    let idp = idp.rotate().await;
    let rotated = idp.sign(json!({}), with(json!({"iat": now()}))).await;
    assert_ne!(kid_of(&rotated), old_kid);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match exchange(&fed, &rotated).await {
            Ok(sub) => {
                assert_eq!(sub, "anna-sub");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                assert!(e.message().contains("no key of"), "{e:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("the rotated key was never fetched: {e:?}"),
        }
    }
}

/// The browser console: a person signs in through the identity provider
/// with the code flow and PKCE in a real headless Chromium, or with an
/// account of the node through its form; both sign-ins are in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_signs_people_in_through_the_provider_in_a_browser() {
    let mut fed = TestFederation::start(&[HOME]).await;
    let ports = free_ports(2);
    let (idp_port, console_port) = (ports[0], ports[1]);
    let console = format!("https://127.0.0.1:{console_port}");
    let idp = Idp::start_for(
        &fed.dir.path().join("idp"),
        idp_port,
        &[format!("{console}/oidc/callback")],
    )
    .await;
    let config = fed.org_dir(HOME).join("node.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "\n[console]\nlisten = \"127.0.0.1:{console_port}\"\n"
    ));
    std::fs::write(&config, text).unwrap();
    trust(&mut fed, &idp).await;

    let Some(browser) = crate::common::browser::for_node(&fed, HOME).await else {
        return;
    };

    // Not signed in: the console sends the browser to its sign-in page.
    browser.open(&format!("{console}/")).await;
    browser.click("a#oidc").await;
    // At the provider: its own sign-in form.
    let (_, password, _, _) = USERS.iter().find(|u| u.0 == "anna").unwrap();
    browser.type_into("input[name=login]", "anna").await;
    browser.type_into("input[name=password]", password).await;
    browser.click("button[type=submit]").await;
    // Back at the console, signed in, with her role.
    let who = browser.text("#who").await;
    assert_eq!(
        who,
        format!("Signed in as anna-sub ({}) as analyst", idp.issuer)
    );
    assert!(browser.url().await.starts_with(&console));
    browser.click("form[action='/logout'] button").await;

    // An account of the node, through the form.
    browser.find("input[name=account]").await;
    browser
        .type_into("input[name=account]", crate::common::TESTER)
        .await;
    browser
        .type_into("input[name=password]", "not the password")
        .await;
    browser.click("form[action='/login'] button").await;
    let refused = browser.text("p.error").await;
    assert!(
        refused.contains("Wrong account name or password"),
        "{refused}"
    );
    browser
        .type_into("input[name=account]", crate::common::TESTER)
        .await;
    browser
        .type_into("input[name=password]", crate::common::TESTER_PASSWORD)
        .await;
    browser.click("form[action='/login'] button").await;
    let who = browser.text("#who").await;
    assert!(
        who.starts_with("Signed in as tester (local:polisen) as "),
        "{who}"
    );

    // The log has each sign-in, allowed or refused, with who.
    let log = log_entries(&fed, HOME, HOME);
    let console_entries: Vec<&Value> = log
        .iter()
        .filter(|e| {
            e["call"]
                .as_str()
                .is_some_and(|c| c.starts_with("console:"))
        })
        .collect();
    let summary: Vec<(String, String, String)> = console_entries
        .iter()
        .map(|e| {
            (
                e["call"].as_str().unwrap().to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
                e["token"]["sub"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "console:/oidc/callback".to_owned(),
                "allowed".to_owned(),
                format!("anna-sub ({})", idp.issuer)
            ),
            (
                "console:/login".to_owned(),
                "refused".to_owned(),
                String::new()
            ),
            (
                "console:/login".to_owned(),
                "allowed".to_owned(),
                "tester (local:polisen)".to_owned()
            ),
        ],
        "{console_entries:#?}"
    );
    assert!(console_entries[1]["reason"]
        .as_str()
        .unwrap()
        .contains("sign-in as \"tester\" refused"));
}
