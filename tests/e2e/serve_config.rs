//! A bad node configuration stops `serve` with one clear line naming the file
//! and the problem, and a good one starts.

use crate::common::{free_ports, lagesbild, read, FEDERATION};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// `certs init` for one member; returns the folder and the node config path.
fn provision() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let out = lagesbild()
        .args([
            "certs",
            "init",
            "--federation",
            FEDERATION,
            "--org",
            "alpha",
            "--dir",
        ])
        .arg(dir.path())
        .args(["--endpoint", &format!("alpha=127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = dir.path().join("alpha/node.toml");
    (dir, config)
}

/// Runs `serve` on `config`; returns `None` if it is still running after a while
/// (it started), or its exit code and standard error.
fn serve(config: &Path) -> Option<(i32, String)> {
    let mut child = lagesbild()
        .args(["serve", "--config"])
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return Some((
                status.code().unwrap_or(-1),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            ));
        }
        #[allow(clippy::disallowed_methods, reason = "a plain test thread")]
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn assert_refused(config: &Path, problem: &str) {
    let (code, stderr) = serve(config).expect("serve started with a bad config");
    assert_ne!(code, 0);
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].contains(&config.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(lines[0].contains(problem), "says {problem:?}: {stderr}");
}

fn edit(config: &Path, from: &str, to: &str) {
    let text = read(config);
    assert!(text.contains(from), "{from:?} in {text}");
    std::fs::write(config, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_good_config_starts() {
    let (_dir, config) = provision();
    assert_eq!(serve(&config), None, "a good config keeps serving");
}

#[test]
fn a_missing_key_is_named() {
    let (_dir, config) = provision();
    let text = read(&config);
    let without_listen: String = text
        .lines()
        .filter(|l| !l.starts_with("listen"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&config, without_listen).unwrap();
    assert_refused(&config, "missing field `listen`");
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let (_dir, config) = provision();
    edit(&config, "data_dir", "data_dri");
    assert_refused(&config, "unknown field `data_dri`");
}

#[test]
fn an_org_outside_the_federation_is_named() {
    let (_dir, config) = provision();
    edit(&config, "org = \"alpha\"", "org = \"omega\"");
    assert_refused(&config, "\"omega\" is not a member");
}

#[test]
fn an_unreadable_certificate_is_named() {
    let (_dir, config) = provision();
    edit(&config, "cert = \"node.pem\"", "cert = \"missing.pem\"");
    assert_refused(&config, "missing.pem");
    assert_refused(&config, "No such file");
}

#[test]
fn a_certificate_file_without_a_certificate_is_named() {
    let (dir, config) = provision();
    std::fs::write(dir.path().join("alpha/node.pem"), "not a certificate\n").unwrap();
    assert_refused(&config, "no PEM certificate");
}

#[test]
fn another_orgs_node_certificate_is_named() {
    let (dir, config) = provision();
    // The client certificate is alpha's, but it is no node certificate.
    edit(&config, "cert = \"node.pem\"", "cert = \"client.pem\"");
    let _ = dir;
    assert_refused(&config, "expected spiffe://testfed/org/alpha/node");
}

#[test]
fn a_config_of_another_version_is_named_as_such() {
    let (_dir, config) = provision();
    // A newer file: another version and a key this build does not know.
    edit(&config, "version = 1", "version = 2");
    edit(&config, "data_dir", "people_provider = \"oidc\"\ndata_dir");
    assert_refused(&config, "version 2 is not supported");
}

#[test]
fn a_token_key_that_is_no_key_is_named_at_load() {
    let (dir, config) = provision();
    // Control: the key that certs init wrote parses (the node serves).
    assert_eq!(serve(&config), None);
    std::fs::write(
        dir.path().join("alpha/token.key"),
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    assert_refused(
        &config,
        "token.key: not an Ed25519 private key in PKCS#8 PEM",
    );
}

/// The configuration of a node from before log keys: no `log_key` in node.toml,
/// no `log_vkey` in the federation file.
fn as_before_log_keys(dir: &Path, config: &Path) {
    let without = |text: String, key: &str| -> String {
        text.lines()
            .filter(|l| !l.starts_with(key))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    std::fs::write(config, without(read(config), "log_key")).unwrap();
    let federation = dir.join("federation.toml");
    std::fs::write(&federation, without(read(&federation), "log_vkey")).unwrap();
    std::fs::remove_file(dir.join("alpha/log.key")).unwrap();
}

#[test]
fn a_configuration_from_before_log_keys_is_named_and_moved_by_certs_migrate() {
    let (dir, config) = provision();
    as_before_log_keys(dir.path(), &config);
    assert_refused(&config, "has no log_vkey");
    assert_refused(&config, "lagesbild certs migrate --config");

    let out = lagesbild()
        .args(["certs", "migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    let line = printed
        .lines()
        .find(|l| l.starts_with("log_vkey = \"testfed/alpha/audit+"))
        .unwrap_or_else(|| panic!("no log_vkey line in: {printed}"))
        .to_owned();
    assert!(read(&config).contains("log_key = \"log.key\""));
    // Until the federation file lists the key, the node still refuses to start.
    assert_refused(&config, "has no log_vkey");
    let federation = dir.path().join("federation.toml");
    let listed =
        read(&federation).replacen("id = \"alpha\"\n", &format!("id = \"alpha\"\n{line}\n"), 1);
    std::fs::write(&federation, listed).unwrap();
    assert_eq!(serve(&config), None, "the moved configuration serves");
    // A second run leaves the key and the file as they are.
    let key = read(&dir.path().join("alpha/log.key"));
    let before = read(&config);
    let again = lagesbild()
        .args(["certs", "migrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to move"));
    assert_eq!(read(&dir.path().join("alpha/log.key")), key);
    assert_eq!(read(&config), before);
}

#[test]
fn a_log_key_that_is_not_the_published_one_is_named() {
    let (dir, config) = provision();
    // Another node's key in alpha's place.
    let other = provision().0;
    std::fs::copy(
        other.path().join("alpha/log.key"),
        dir.path().join("alpha/log.key"),
    )
    .unwrap();
    assert_refused(
        &config,
        "is not the key federation.toml publishes for alpha",
    );
}
