use super::*;

fn org(id: &str) -> OrgId {
    OrgId::parse(id).unwrap()
}

fn purpose(text: &str) -> Purpose {
    Purpose::parse(text).unwrap()
}

const FULL: &str = r#"version = 1

[peer.polisen]
scopes = ["aggregate:read", "events:read"]
purposes = ["situation-picture"]
categories = ["violence", "robbery"]
finest_cell = 250
finest_bucket = "hour"
k = 5
epsilon_per_query = 0.5
epsilon_per_day = 5
max_tlp = "amber"
text = true
rate_limit = 120
"#;

#[test]
fn denies_by_default() {
    let policy = Policy::parse("version = 1").unwrap();
    assert!(matches!(
        policy.authorise(
            &org("scandic"),
            &org("polisen"),
            Scope::AggregateRead,
            &purpose("x")
        ),
        Err(Denied::UnknownPeer { .. })
    ));
}

#[test]
fn reads_every_key() {
    let policy = Policy::parse(FULL).unwrap();
    let p = policy.peer("polisen").unwrap();
    assert_eq!(p.finest_cell, CellSize::M250);
    assert_eq!(p.finest_bucket, BucketKind::Hour);
    assert_eq!(p.k.get(), 5);
    assert_eq!(p.epsilon_per_query.unwrap().micros(), 500_000);
    assert_eq!(p.epsilon_per_day.unwrap().micros(), 5_000_000);
    assert_eq!(p.category_names(), ["violence", "robbery"]);
    assert!(p.allows_tlp(Tlp::Amber) && !p.allows_tlp(Tlp::AmberStrict));
    assert!(p.text);
    assert_eq!(p.rate_limit, 120);
}

#[test]
fn a_peer_with_only_scopes_gets_the_coarsest_defaults() {
    let policy =
        Policy::parse("version = 1\n[peer.x]\nscopes = [\"aggregate:read\"]\npurposes = [\"p\"]\n")
            .unwrap();
    let p = policy.peer("x").unwrap();
    assert!(p.categories.is_empty());
    assert_eq!(
        (p.finest_cell, p.finest_bucket, p.k.get()),
        (CellSize::M1000, BucketKind::Week, 10)
    );
    assert_eq!(p.epsilon_per_query, None);
    assert_eq!(p.max_tlp, Tlp::Clear);
    assert!(!p.text);
}

#[test]
fn authorise_checks_scope_and_purpose() {
    let policy = Policy::parse(FULL).unwrap();
    assert!(policy
        .authorise(
            &org("n"),
            &org("polisen"),
            Scope::AggregateRead,
            &purpose("situation-picture")
        )
        .is_ok());
    assert!(matches!(
        policy.authorise(
            &org("n"),
            &org("polisen"),
            Scope::AuditRead,
            &purpose("situation-picture")
        ),
        Err(Denied::Scope { .. })
    ));
    let err = policy
        .authorise(
            &org("n"),
            &org("polisen"),
            Scope::AggregateRead,
            &purpose("marketing"),
        )
        .unwrap_err();
    assert!(err.to_string().contains("marketing"), "{err}");
}

#[test]
fn bad_values_name_line_and_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("k = 2", "line 3, peer.polisen.k:", "below the minimum"),
        (
            "finest_cell = 200",
            "line 3, peer.polisen.finest_cell:",
            "not on the grid",
        ),
        (
            "finest_bucket = \"minute\"",
            "line 3, peer.polisen.finest_bucket:",
            "hour, day or week",
        ),
        (
            "finest_bucket = \"hour-of-day\"",
            "line 3",
            "hour, day or week",
        ),
        (
            "categories = [\"violence\", \"murder\"]",
            "line 3, peer.polisen.categories:",
            "murder",
        ),
        (
            "max_tlp = \"purple\"",
            "line 3, peer.polisen.max_tlp:",
            "purple",
        ),
        (
            "epsilon_per_query = -1\nepsilon_per_day = 1",
            "line 3, peer.polisen.epsilon_per_query:",
            "positive",
        ),
        (
            "scopes = [\"all\"]",
            "line 3, peer.polisen.scopes:",
            "unknown scope",
        ),
        ("scopez = []", "line 3", "scopez"),
        ("k = \"five\"", "line 3, peer.polisen.k:", "invalid type"),
        ("epsilon_per_query = 1", "line 2", "go together"),
        (
            "epsilon_per_query = 2\nepsilon_per_day = 1",
            "line 2",
            "more than",
        ),
        ("rate_limit = 0", "line 2", "rate_limit"),
    ];
    for (body, line, words) in cases {
        let text = format!("version = 1\n[peer.polisen]\n{body}\n");
        let err = Policy::parse(&text).unwrap_err().to_string();
        assert!(err.contains(line), "{body}: {err}");
        assert!(err.contains(words), "{body}: {err}");
    }
    let err = Policy::parse("version = 2").unwrap_err().to_string();
    assert!(err.contains("version 2"), "{err}");
}

#[test]
fn all_means_every_category() {
    let policy = Policy::parse("version = 1\n[peer.x]\ncategories = [\"all\"]\n").unwrap();
    assert_eq!(policy.peer("x").unwrap().categories.len(), CATEGORIES.len());
}

#[test]
fn a_file_of_another_version_is_named_as_such_not_by_its_keys() {
    let newer = "version = 2\n[peer.polisen]\nscopes = [\"aggregate:read\"]\nlattice = \"fixed\"\n";
    let error = Policy::parse(newer).unwrap_err().to_string();
    assert!(error.contains("version 2 is not supported"), "{error}");
    assert!(error.contains("newer"), "{error}");
    // The same keys under version 1: the unknown key is what is wrong.
    let error = Policy::parse(&newer.replace("version = 2", "version = 1"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("lattice"), "{error}");
    assert!(check_format_version("version = 1\n", FORMAT_VERSION).is_ok());
}
