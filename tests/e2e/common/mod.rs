//! The end-to-end harness: fresh certificates in a temporary folder, real
//! `lagesbild serve` processes on free loopback ports, real mutual TLS.

#![allow(dead_code)] // each test file uses its own part of the harness

/// The browser of the harness, and one per node of a test federation.
pub mod browser {
    pub use lagesbild_harness::browser::*;

    /// A browser that trusts `org`'s node certificate, with its profile in the
    /// federation's folder; `None` as [`Browser::start`] says.
    pub async fn for_node(fed: &crate::common::TestFederation, org: &str) -> Option<Browser> {
        let cert = std::fs::read_to_string(fed.org_dir(org).join("node.pem")).unwrap();
        let profile = fed.dir.path().join("browser");
        std::fs::create_dir_all(&profile).unwrap();
        Browser::start(&spki_hash(&cert), &profile, crate::common::free_ports(1)[0]).await
    }
}
pub mod idp;

use lagesbild_auth::{AuthChannel, Bearer, Grant, Signer};
use lagesbild_identity::certs::{CertificateAuthority, CertifiedKey};
use lagesbild_identity::tls::{client_config, provider, server_verifier, ALPN_H2};
use lagesbild_identity::{Federation, TlsFiles};
use lagesbild_transport::{channel, ChannelOptions};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    lagesbild_vocabulary::SystemClock
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The purpose every test token claims unless told otherwise.
pub const PURPOSE: &str = "situation-picture";

/// The purpose the org's own tools claim when they write reports.
pub const WRITE_PURPOSE: &str = "ingest";

/// The federation name every test uses.
pub const FEDERATION: &str = "testfed";

/// The `lagesbild` binary under test.
pub fn lagesbild() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lagesbild"))
}

/// The account every member's node has in tests, with every role.
pub const TESTER: &str = "tester";
/// Its password.
pub const TESTER_PASSWORD: &str = "the tester's long password";
/// Every role a person can have.
pub const ALL_ROLES: [&str; 5] = [
    "analyst",
    "duty-officer",
    "data-steward",
    "policy-admin",
    "auditor",
];
/// The variable naming the session file.
pub const SESSION_ENV: &str = "LAGESBILD_SESSION";

/// Runs `command` with `input` and a newline on its standard input.
pub fn with_stdin(command: &mut Command, input: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{input}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A token of `as_org` for its own node with `scopes` and `purpose`, to send
/// on the node's certificate.
pub fn bearer_for(fed: &TestFederation, as_org: &str, scopes: &[&str], purpose: &str) -> Bearer {
    Bearer::new(&fed.token(as_org, as_org, scopes, purpose)).unwrap()
}

/// Runs `lagesbild` with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    lagesbild().args(args).output().expect("run lagesbild")
}

/// Ports the kernel calls free now (released before the nodes bind them).
pub fn free_ports(count: usize) -> Vec<u16> {
    lagesbild_harness::free_loopback_ports(count).unwrap()
}

pub use lagesbild_harness::NodeProcess;

/// A federation of member nodes plus an auditor, made by `lagesbild certs init`.
pub struct TestFederation {
    pub dir: TempDir,
    pub federation: Federation,
    pub nodes: Vec<NodeProcess>,
}

impl TestFederation {
    /// Makes certificates for `members` (and the auditor `audit`) and starts a
    /// node for each member, then waits until all report healthy.
    pub async fn start(members: &[&str]) -> Self {
        Self::start_with(members, &[]).await
    }

    /// As [`start`](Self::start), with extra `certs init` arguments.
    pub async fn start_with(members: &[&str], extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports = free_ports(members.len());
        let mut args = vec![
            "certs".to_owned(),
            "init".into(),
            "--dir".into(),
            dir.path().display().to_string(),
            "--federation".into(),
            FEDERATION.into(),
            "--auditor".into(),
            "audit".into(),
        ];
        for (org, port) in members.iter().zip(&ports) {
            args.extend([
                "--org".into(),
                (*org).into(),
                "--endpoint".into(),
                format!("{org}=127.0.0.1:{port}"),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = lagesbild().args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "certs init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let federation = Federation::load(&dir.path().join("federation.toml")).unwrap();
        let mut fed = Self {
            dir,
            federation,
            nodes: Vec::new(),
        };
        for org in members {
            fed.add_account(org, TESTER, &ALL_ROLES, TESTER_PASSWORD);
            fed.spawn(org);
        }
        for org in members {
            fed.wait_healthy(org).await;
        }
        fed
    }

    /// Adds an account to `org`'s node with `lagesbild users add` (a running
    /// node reads it within seconds).
    pub fn add_account(&self, org: &str, name: &str, roles: &[&str], password: &str) {
        let config = self.org_dir(org).join("node.toml");
        let mut args = vec![
            "users".to_owned(),
            "add".into(),
            "--config".into(),
            config.display().to_string(),
            name.into(),
            "--password-stdin".into(),
        ];
        for role in roles {
            args.extend(["--role".into(), (*role).to_owned()]);
        }
        let out = with_stdin(lagesbild().args(&args), password);
        assert!(
            out.status.success(),
            "users add: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Adds an account as [`add_account`](Self::add_account) does, and waits
    /// until `org`'s running node has read it (so no sign-in is tried, and
    /// counted as failed, before).
    pub async fn add_account_and_wait(
        &self,
        org: &str,
        name: &str,
        roles: &[&str],
        password: &str,
    ) {
        let node = self.nodes.iter().find(|n| n.org() == org).unwrap();
        let reads = |text: String| text.matches("accounts read again").count();
        let before = reads(node.log_text());
        self.add_account(org, name, roles, password);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while reads(node.log_text()) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "{org}'s node did not read its accounts again:\n{}",
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The port `org`'s console listens on, from its node's log (the console
    /// is configured on port 0, so the system picks a free one).
    pub async fn console_port(&self, org: &str) -> u16 {
        let node = self.nodes.iter().find(|n| n.org() == org).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = node.log_text();
            if let Some(at) = log.find("console served") {
                let line = log[at..].lines().next().unwrap_or_default();
                if let Some(port) = line
                    .split("127.0.0.1:")
                    .nth(1)
                    .map(|rest| {
                        rest.chars()
                            .take_while(char::is_ascii_digit)
                            .collect::<String>()
                    })
                    .and_then(|digits| digits.parse().ok())
                {
                    return port;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{org}'s console never said where it listens:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The session file of the person `name` of `org`, signed in with
    /// `lagesbild login` as `name` with `password`.
    pub fn login(&self, org: &str, name: &str, password: &str) -> Result<PathBuf, String> {
        let session = self.org_dir(org).join(format!("{name}.session"));
        let config = self.org_dir(org).join("client.toml");
        let out = with_stdin(
            lagesbild()
                .env(SESSION_ENV, &session)
                .args(["login", "--config", config.to_str().unwrap()])
                .args(["--account", name, "--password-stdin"]),
            password,
        );
        if out.status.success() {
            Ok(session)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// `lagesbild` as `org`'s tester (every role), signed in on first use;
    /// for the auditor org, which signs its own tokens, as itself.
    pub fn cli_as(&self, org: &str) -> Command {
        let mut command = lagesbild();
        if self
            .federation
            .member(org)
            .is_some_and(|m| m.endpoint.is_some())
        {
            let session = self.org_dir(org).join(format!("{TESTER}.session"));
            if !session.exists() {
                self.login(org, TESTER, TESTER_PASSWORD).unwrap();
            }
            command.env(SESSION_ENV, session);
        }
        command
    }

    /// Runs `lagesbild args` as [`cli_as`](Self::cli_as) does.
    pub fn run_as(&self, org: &str, args: &[&str]) -> Output {
        self.cli_as(org).args(args).output().unwrap()
    }

    /// Starts `org`'s node again (after [`kill`](Self::kill)) and waits for health.
    pub async fn restart(&mut self, org: &str) {
        self.spawn(org);
        self.wait_healthy(org).await;
    }

    fn spawn(&mut self, org: &str) {
        let log = self.dir.path().join(org).join("node.log");
        let config = self.org_dir(org).join("node.toml");
        let exe = Path::new(env!("CARGO_BIN_EXE_lagesbild"));
        self.nodes
            .push(NodeProcess::spawn(exe, org, &config, Some(&log)).unwrap());
    }

    /// Waits until `org`'s node answers the standard health check over mTLS.
    pub async fn wait_healthy(&mut self, org: &str) {
        let channel = self.channel(org, self.client_tls(org, org));
        let node = self.nodes.iter_mut().find(|n| n.org() == org).unwrap();
        if let Err(e) = node.wait_healthy(channel, Duration::from_secs(60)).await {
            panic!("{e}\n{}", node.log_text());
        }
    }

    /// A token signed with `as_org`'s key for `node_org`'s node.
    pub fn token(&self, as_org: &str, node_org: &str, scopes: &[&str], purpose: &str) -> String {
        let pem = std::fs::read(self.org_dir(as_org).join("token.key")).unwrap();
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        Signer::from_pem(as_org, &pem)
            .unwrap()
            .issue(&Grant {
                audience: node_org,
                subject: "tester",
                scopes: &scopes,
                purpose,
                ttl: Duration::from_secs(600),
                act: None,
            })
            .unwrap()
    }

    /// The interceptor that sends such a token: purpose [`WRITE_PURPOSE`] for
    /// writes, [`PURPOSE`] for the rest.
    pub fn bearer(&self, as_org: &str, node_org: &str, scopes: &[&str]) -> Bearer {
        let purpose = if scopes == ["report:write"] {
            WRITE_PURPOSE
        } else {
            PURPOSE
        };
        Bearer::new(&self.token(as_org, node_org, scopes, purpose)).unwrap()
    }

    /// A channel to `node_org`'s node as `as_org`, whose calls carry a token
    /// of `as_org` with `scopes`: from another org on its client certificate;
    /// from the node's own org on the node's certificate, as its operator
    /// (the org's people sign in instead, and only the node holds the key).
    pub fn authed(&self, node_org: &str, as_org: &str, scopes: &[&str]) -> AuthChannel {
        let tls = if as_org == node_org {
            self.operator_tls(node_org)
        } else {
            self.client_tls(as_org, node_org)
        };
        AuthChannel::new(
            self.channel(node_org, tls),
            self.bearer(as_org, node_org, scopes),
        )
    }

    /// The TLS of `org`'s node operator: the node's own certificate.
    pub fn operator_tls(&self, org: &str) -> Arc<ClientConfig> {
        let files = TlsFiles {
            cert: self.org_dir(org).join("node.pem"),
            key: self.org_dir(org).join("node.key"),
        };
        let (chain, key) = files.load().unwrap();
        client_config(&self.federation, org, chain, key).unwrap()
    }

    pub fn org_dir(&self, org: &str) -> PathBuf {
        self.dir.path().join(org)
    }

    pub fn endpoint(&self, org: &str) -> String {
        self.federation
            .member(org)
            .unwrap()
            .endpoint
            .clone()
            .unwrap()
    }

    /// Kills `org`'s node with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, org: &str) {
        self.nodes.retain(|n| n.org() != org);
    }

    /// The sled folder of `org`'s node.
    pub fn store_dir(&self, org: &str) -> PathBuf {
        self.org_dir(org).join("data/store")
    }

    /// The client certificate and key that `certs init` made for `org`.
    pub fn client_files(&self, org: &str) -> TlsFiles {
        TlsFiles {
            cert: self.org_dir(org).join("client.pem"),
            key: self.org_dir(org).join("client.key"),
        }
    }

    /// The TLS a tool of `org` uses to reach `node_org`'s node.
    pub fn client_tls(&self, org: &str, node_org: &str) -> Arc<ClientConfig> {
        let (chain, key) = self.client_files(org).load().unwrap();
        client_config(&self.federation, node_org, chain, key).unwrap()
    }

    /// TLS 1.3 to `node_org`'s node presenting `cert` (PEM pair).
    pub fn tls_with(&self, node_org: &str, cert: &CertifiedKey) -> Arc<ClientConfig> {
        let chain = vec![CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        client_config(&self.federation, node_org, chain, key).unwrap()
    }

    /// TLS 1.3 to `node_org`'s node presenting no certificate at all.
    pub fn tls_without_certificate(&self, node_org: &str) -> Arc<ClientConfig> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(server_verifier(&self.federation, node_org).unwrap())
            .with_no_client_auth();
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Arc::new(config)
    }

    /// TLS 1.2 only, with `org`'s genuine client certificate.
    pub fn tls12_only(&self, org: &str, node_org: &str) -> Arc<ClientConfig> {
        let (chain, key) = self.client_files(org).load().unwrap();
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(server_verifier(&self.federation, node_org).unwrap())
            .with_client_auth_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Arc::new(config)
    }

    /// `org`'s own CA, loaded from the files `certs init` wrote.
    pub fn ca_of(&self, org: &str) -> CertificateAuthority {
        let dir = self.org_dir(org);
        CertificateAuthority::from_pem(
            &std::fs::read_to_string(dir.join("ca.pem")).unwrap(),
            &std::fs::read_to_string(dir.join("ca.key")).unwrap(),
        )
        .unwrap()
    }

    /// A fresh channel to `node_org`'s node.
    pub fn channel(&self, node_org: &str, tls: Arc<ClientConfig>) -> Channel {
        channel(&self.endpoint(node_org), tls, ChannelOptions::default()).unwrap()
    }

    /// One health check of `node_org`'s node over `tls`.
    pub async fn health(
        &self,
        node_org: &str,
        tls: Arc<ClientConfig>,
    ) -> Result<ServingStatus, tonic::Status> {
        let mut health = HealthClient::new(self.channel(node_org, tls));
        let response = tokio::time::timeout(
            Duration::from_secs(10),
            health.check(HealthCheckRequest::default()),
        )
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("health check timed out"))??;
        Ok(ServingStatus::try_from(response.into_inner().status).unwrap())
    }
}

/// The text of a file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

/// `lagesbild audit entries --json` of `node`'s log, read as `as_org`, decoded.
pub fn log_entries(fed: &TestFederation, as_org: &str, node: &str) -> Vec<serde_json::Value> {
    let config = fed.org_dir(as_org).join("client.toml");
    let out = fed.run_as(
        as_org,
        &[
            "audit",
            "entries",
            "--config",
            config.to_str().unwrap(),
            "--node",
            node,
            "--limit",
            "10000",
            "--json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A small ext4 file system on a loop device, for power-cut tests.
///
/// A crash (SIGKILL) keeps the kernel's page cache, so it cannot show that a
/// write was synced. A copy of the loop device's backing image holds only what
/// the file system sent to the device: what a disk holds when the power goes.
/// The journal commits only when something syncs (`commit=600`), so
/// metadata a sync did not force is not in the copy either. Needs root.
pub struct LoopDisk {
    pub image: PathBuf,
    pub mount: PathBuf,
    device: String,
}

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("{program}: {e} (power-cut tests need root, losetup, mount and mkfs.ext4)")
        });
    assert!(
        out.status.success(),
        "{program} {args:?}: {} (power-cut tests need root and loop devices)",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl LoopDisk {
    /// Whether this machine can make one: root, `losetup` and `mkfs.ext4`.
    /// Where it cannot, the test says so and passes, unless
    /// `LAGESBILD_REQUIRE_POWER_CUT=1` (as in CI) makes it fail.
    pub fn available() -> bool {
        let tools = ["losetup", "mkfs.ext4", "mount"].iter().all(|tool| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if tools && root {
            return true;
        }
        assert!(
            std::env::var("LAGESBILD_REQUIRE_POWER_CUT").as_deref() != Ok("1"),
            "the power-cut test needs root, losetup, mount and mkfs.ext4"
        );
        eprintln!("note: power-cut test skipped: it needs root, losetup, mount and mkfs.ext4");
        false
    }

    /// Makes a 128 MiB ext4 image at `image` and mounts it at `mount`.
    pub fn create(image: &Path, mount: &Path) -> Self {
        let file = std::fs::File::create(image).unwrap();
        file.set_len(128 << 20).unwrap();
        drop(file);
        sh("mkfs.ext4", &["-q", "-F", image.to_str().unwrap()]);
        Self::mount(image, mount)
    }

    /// Mounts the ext4 image at `image` (replaying its journal) at `mount`.
    pub fn mount(image: &Path, mount: &Path) -> Self {
        std::fs::create_dir_all(mount).unwrap();
        let device = sh("losetup", &["--find", "--show", image.to_str().unwrap()]);
        sh(
            "mount",
            &["-o", "commit=600", &device, mount.to_str().unwrap()],
        );
        Self {
            image: image.to_owned(),
            mount: mount.to_owned(),
            device,
        }
    }

    /// What the disk holds if the power went now: a copy of the image, at `to`.
    pub fn power_cut(&self, to: &Path) {
        std::fs::copy(&self.image, to).unwrap();
    }
}

impl Drop for LoopDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("--lazy")
            .arg(&self.mount)
            .output();
        let _ = Command::new("losetup").args(["-d", &self.device]).output();
    }
}

impl TestFederation {
    /// Moves `org`'s data folder to `dir` (fresh): its node keeps its store
    /// and access log there from its next start.
    pub fn move_data_dir(&self, org: &str, dir: &Path) {
        let config = self.org_dir(org).join("node.toml");
        let text = std::fs::read_to_string(&config).unwrap();
        let moved: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with("data_dir") {
                    format!("data_dir = {:?}", dir.display().to_string())
                } else {
                    line.to_owned()
                }
            })
            .collect();
        assert!(moved.iter().any(|l| l.starts_with("data_dir")), "{text}");
        std::fs::write(&config, moved.join("\n") + "\n").unwrap();
    }

    /// The store folder under a data folder.
    pub fn store_under(data_dir: &Path) -> PathBuf {
        data_dir.join("store")
    }
}
