use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use lagesbild_identity::certs::TokenKey;
use lagesbild_identity::Member;

struct Fixture {
    federation: Federation,
    keys: HashMap<String, TokenKey>,
}

fn fixture() -> Fixture {
    let mut keys = HashMap::new();
    let mut members = Vec::new();
    for (id, role) in [
        ("polisen", Role::Member),
        ("scandic", Role::Member),
        ("imy", Role::Auditor),
    ] {
        let key = TokenKey::generate().unwrap();
        members.push(Member {
            id: id.into(),
            display_name: id.into(),
            role,
            endpoint: None,
            ca_cert: String::new(),
            token_public_key: key.public_pem.clone(),
            log_vkey: None,
        });
        keys.insert(id.to_owned(), key);
    }
    Fixture {
        federation: Federation {
            version: 1,
            name: "testfed".into(),
            members,
        },
        keys,
    }
}

impl Fixture {
    fn signer(&self, org: &str) -> Signer {
        Signer::from_pem(org, self.keys[org].private_pem.as_bytes()).unwrap()
    }

    fn verifier(&self, org: &str) -> Verifier {
        Verifier::new(org, &self.federation).unwrap()
    }
}

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

fn grant<'a>(audience: &'a str, scopes: &'a [String]) -> Grant<'a> {
    Grant {
        audience,
        subject: "anna",
        scopes,
        purpose: "situation-picture",
        ttl: Duration::from_secs(900),
        act: None,
    }
}

/// A token with hand-made header and claims, signed by `sign`.
fn forge(header: &str, claims: &serde_json::Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let head = URL_SAFE_NO_PAD.encode(header);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = URL_SAFE_NO_PAD.encode(sign(format!("{head}.{body}").as_bytes()));
    format!("{head}.{body}.{signature}")
}

fn claims_json(iss: &str, aud: &str, exp_offset: i64) -> serde_json::Value {
    let now = SystemClock.unix_seconds();
    serde_json::json!({
        "iss": iss, "sub": "anna", "aud": aud, "iat": now, "nbf": now,
        "exp": now + exp_offset, "jti": new_jti(),
        "scope": "aggregate:read", "purpose": "situation-picture"
    })
}

#[test]
fn a_good_token_is_accepted_with_its_claims() {
    let f = fixture();
    let s = scopes(&["aggregate:read"]);
    let token = f.signer("scandic").issue(&grant("polisen", &s)).unwrap();
    let ok = f.verifier("polisen").verify(&token, "scandic").unwrap();
    assert_eq!((ok.org.as_str(), ok.sub.as_str()), ("scandic", "anna"));
    assert_eq!(ok.purpose, "situation-picture");
    assert!(ok.require(Scope::AggregateRead).is_ok());
    // Not single use: a person's token serves several calls.
    assert!(f.verifier("polisen").verify(&token, "scandic").is_ok());
}

#[test]
fn attacks_are_refused() {
    let f = fixture();
    let polisen = f.verifier("polisen");
    let s = scopes(&["aggregate:read"]);

    // Expired (beyond the leeway).
    let expired = forge(
        r#"{"alg":"EdDSA","typ":"JWT"}"#,
        &claims_json("scandic", "polisen", -120),
        |m| {
            ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(
                &f.keys["scandic"].private_pem,
            ))
            .unwrap()
            .sign(m)
            .as_ref()
            .to_vec()
        },
    );
    assert_eq!(
        polisen.verify(&expired, "scandic").unwrap_err(),
        AuthError::Invalid("it has expired (exp); sign a new one for each session".into())
    );

    // Wrong audience.
    let other = f
        .signer("scandic")
        .issue(&grant("stockholm-stad", &s))
        .unwrap();
    assert!(
        matches!(polisen.verify(&other, "scandic"), Err(AuthError::Invalid(m)) if m.contains("aud"))
    );

    // A token of scandic shown on polisen's own connection: wrong key for that org.
    let stolen = f.signer("scandic").issue(&grant("polisen", &s)).unwrap();
    assert!(
        matches!(polisen.verify(&stolen, "imy"), Err(AuthError::Invalid(m)) if m.contains("signature"))
    );

    // Signed by the TLS peer but naming another issuer.
    let lying = forge(
        r#"{"alg":"EdDSA","typ":"JWT"}"#,
        &claims_json("polisen", "polisen", 600),
        |m| {
            ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(
                &f.keys["scandic"].private_pem,
            ))
            .unwrap()
            .sign(m)
            .as_ref()
            .to_vec()
        },
    );
    assert!(
        matches!(polisen.verify(&lying, "scandic"), Err(AuthError::Invalid(m)) if m.contains("iss"))
    );

    // alg: none, unsigned.
    let none = forge(
        r#"{"alg":"none","typ":"JWT"}"#,
        &claims_json("scandic", "polisen", 600),
        |_| vec![],
    );
    assert!(polisen.verify(&none, "scandic").is_err());

    // HS256 keyed with the public key's bytes (the classic confusion).
    let public = f.keys["scandic"].public_pem.as_bytes().to_vec();
    let hs = forge(
        r#"{"alg":"HS256","typ":"JWT"}"#,
        &claims_json("scandic", "polisen", 600),
        |m| {
            ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &public), m)
                .as_ref()
                .to_vec()
        },
    );
    assert!(
        matches!(polisen.verify(&hs, "scandic"), Err(AuthError::Invalid(m)) if m.contains("EdDSA"))
    );

    // Missing scope.
    let reader = polisen.verify(&stolen, "scandic").unwrap();
    assert!(matches!(
        reader.require(Scope::AuditRead),
        Err(AuthError::Forbidden(_))
    ));

    // An auditor's token used for a query.
    let audit_scopes = scopes(&["aggregate:read", "audit:read"]);
    let auditor = f
        .signer("imy")
        .issue(&grant("polisen", &audit_scopes))
        .unwrap();
    let auditor = polisen.verify(&auditor, "imy").unwrap();
    assert!(auditor.require(Scope::AuditRead).is_ok());
    let refused = auditor.require(Scope::AggregateRead).unwrap_err();
    assert!(!refused.is_unauthenticated() && refused.to_string().contains("auditor"));
}

#[test]
fn delegation_tokens_are_short_lived_and_single_use() {
    let f = fixture();
    let polisen = f.verifier("polisen");
    let s = scopes(&["aggregate:read"]);
    let mut g = grant("polisen", &s);
    let anna = Actor {
        sub: "anna".into(),
        iss: Some("local:scandic".into()),
        role: Some("analyst".into()),
    };
    g.act = Some(&anna);
    g.ttl = Duration::from_secs(30);
    let token = f.signer("scandic").issue(&g).unwrap();
    let first = polisen.verify(&token, "scandic").unwrap();
    // The peer names the person with the issuer that verified them.
    assert_eq!(first.act.as_deref(), Some("anna (local:scandic)"));
    assert!(matches!(
        polisen.verify(&token, "scandic"),
        Err(AuthError::Replayed { .. })
    ));

    g.ttl = Duration::from_secs(600);
    let long = f.signer("scandic").issue(&g).unwrap();
    assert!(
        matches!(polisen.verify(&long, "scandic"), Err(AuthError::Invalid(m)) if m.contains("at most 60"))
    );
}

fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn remembered_jtis_are_swept_once_expired_and_not_on_every_call() {
    let mut seen = SeenJtis::default();
    // More live tokens than the first sweep size, all within one minute: all
    // are kept, and each is refused a second time.
    for i in 0..(3 * SWEEP_AT_LEAST) {
        assert!(seen.first_use("polisen", &format!("a{i}"), 1_060, 1_000));
    }
    assert_eq!(seen.until.len(), 3 * SWEEP_AT_LEAST);
    assert!(!seen.first_use("polisen", "a7", 1_060, 1_000));
    // The sweep threshold moved above the live set: no sweep per call.
    assert!(seen.sweep_at > seen.until.len());
    // After they expired, the next sweep (a minute after the last) drops every
    // expired one and keeps the live ones.
    let later = 1_060 + LEEWAY_SECS + 1;
    assert!(seen.first_use("polisen", "b0", later + 60, later));
    assert_eq!(seen.until.len(), 1);
    assert!(!seen.first_use("polisen", "b0", later + 60, later));
    assert!(
        seen.first_use("polisen", "a7", later + 60, later),
        "expired jtis are forgotten"
    );
}

#[test]
fn a_jti_is_remembered_per_issuer() {
    let mut seen = SeenJtis::default();
    assert!(seen.first_use("polisen", "same", 1_060, 1_000));
    assert!(
        seen.first_use("scandic", "same", 1_060, 1_000),
        "another org's token with the same jti is not a replay"
    );
    assert!(!seen.first_use("polisen", "same", 1_060, 1_000));
    assert!(!seen.first_use("scandic", "same", 1_060, 1_000));
}

#[test]
fn a_quiet_nodes_remembered_jtis_do_not_pile_up() {
    let mut seen = SeenJtis::default();
    // One delegation a second, each valid for a minute, for an hour: the map
    // holds about what is still valid, far below the size that sweeps it.
    let mut most = 0;
    for second in 0..3_600u64 {
        let now = 1_000 + second;
        assert!(seen.first_use(
            "polisen",
            &format!("t{second}"),
            now + MAX_DELEGATION_SECS,
            now
        ));
        most = most.max(seen.until.len());
    }
    assert!(
        most <= 3 * (MAX_DELEGATION_SECS + LEEWAY_SECS) as usize,
        "{most}"
    );
}

#[test]
fn token_times_are_judged_by_the_verifiers_clock() {
    let f = fixture();
    let start = 1_800_000_000;
    let signing = lagesbild_vocabulary::ManualClock::at(start);
    let judging = lagesbild_vocabulary::ManualClock::at(start);
    let signer = f.signer("scandic").with_clock(signing.clone());
    let verifier = f.verifier("polisen").with_clock(judging.clone());
    let read = scopes(&["aggregate:read"]);
    let mut ttl_60 = grant("polisen", &read);
    ttl_60.ttl = Duration::from_secs(60);
    let token = signer.issue(&ttl_60).unwrap();
    // Within its minute (and the skew allowed after it): accepted.
    assert!(verifier.verify(&token, "scandic").is_ok());
    judging.advance(Duration::from_secs(60 + LEEWAY_SECS));
    assert!(verifier.verify(&token, "scandic").is_ok());
    // Past it: expired, though the wall clock would still accept it.
    judging.advance(Duration::from_secs(1));
    let error = verifier.verify(&token, "scandic").unwrap_err().to_string();
    assert!(error.contains("expired (exp)"), "{error}");
    // Control: a verifier on the wall clock accepts nothing dated 2027.
    let wall = f.verifier("polisen");
    let error = wall.verify(&token, "scandic").unwrap_err().to_string();
    assert!(
        error.contains("future") || error.contains("not valid yet"),
        "{error}"
    );
    // A token from a signer whose clock runs ahead is not valid yet.
    signing.advance(Duration::from_secs(3600));
    judging.set(start);
    let early = signer.issue(&ttl_60).unwrap();
    let error = verifier.verify(&early, "scandic").unwrap_err().to_string();
    assert!(error.contains("not valid yet (nbf)"), "{error}");
}
