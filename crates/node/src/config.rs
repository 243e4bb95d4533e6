//! `node.toml`: one node's configuration.
//!
//! Strict and versioned: unknown keys are errors, relative paths are resolved
//! against the directory of the config file, and [`NodeConfig::load`] checks every
//! file it names, so a bad config stops the node with one line naming the problem.

use crate::events::alerts::{AlertRule, Alerts, Playbook};
use crate::NodeError;
use lagesbild_audit::checkpoint::{origin_of, NoteSigner};
use lagesbild_auth::Signer;
use lagesbild_identity::spiffe::SpiffeId;
use lagesbild_identity::{Federation, Role, TlsFiles};
use lagesbild_people::oidc::OidcSettings;
use lagesbild_people::PersonRole;
use lagesbild_policy::Policy;
use lagesbild_reports::validate::{Coverage, Rules};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The only config format this version reads.
pub const FORMAT_VERSION: u32 = 1;

/// Certificate and key files, as written in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The node's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// What reports the node accepts and how long it keeps them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportsSection {
    /// The area reports may come from.
    pub coverage: Coverage,
    /// Days a report is kept; older ones are refused and purged.
    pub retention_days: u32,
    /// The purposes the org's own people and tools may claim when they write
    /// reports or recall events (`report:write`); any other is refused.
    #[serde(default = "default_write_purposes")]
    pub write_purposes: Vec<String>,
}

/// `ingest` for loading reports, `recall` for taking events back.
pub fn default_write_purposes() -> Vec<String> {
    vec!["ingest".into(), "recall".into()]
}

impl ReportsSection {
    /// The validation rules this section sets.
    pub fn rules(&self) -> Rules {
        Rules {
            coverage: self.coverage,
            retention: self.retention(),
        }
    }

    /// The retention period.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.retention_days) * 86_400)
    }
}

/// The content of `node.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Format version; must be [`FORMAT_VERSION`].
    pub version: u32,
    /// The organisation this node belongs to; a member of the federation.
    pub org: String,
    /// `host:port` to listen on.
    pub listen: String,
    /// Directory of the node's embedded store.
    pub data_dir: PathBuf,
    /// The federation file.
    pub federation: PathBuf,
    /// The policy file.
    pub policy: PathBuf,
    /// The org's Ed25519 token-signing key (PKCS#8 PEM).
    pub token_key: PathBuf,
    /// The node's Ed25519 key that signs its access log's checkpoints (PKCS#8
    /// PEM); only the node holds it. Absent in configurations written before
    /// it existed, which are refused with how to make one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_key: Option<PathBuf>,
    /// The node's certificate and key.
    pub tls: TlsSection,
    /// Report validation and retention.
    pub reports: ReportsSection,
    /// Live events.
    #[serde(default)]
    pub events: EventsSection,
    /// The coordinated plan: playbooks by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub playbooks: BTreeMap<String, Playbook>,
    /// Alert rules: which events call for which playbook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertRule>,
    /// Memory for the embedded stores' page caches.
    #[serde(default, skip_serializing_if = "StorageSection::is_default")]
    pub storage: StorageSection,
    /// Metrics over plain HTTP on loopback; absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSection>,
    /// The org's machine clients, each with a certificate of its own
    /// (`spiffe://<federation>/org/<org>/<name>`) and the scopes it may use.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub workloads: BTreeMap<String, WorkloadSection>,
    /// The org's people: their accounts and sessions.
    #[serde(default, skip_serializing_if = "PeopleSection::is_default")]
    pub people: PeopleSection,
    /// The browser console for the org's people; absent for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleSection>,
}

/// Where the browser console listens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// `host:port` of its HTTPS listener (apart from the peers' gRPC port).
    pub listen: String,
    /// `https://host:port` as browsers reach it (default: `https://` and
    /// `listen`); the identity provider sends people back there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Its certificate and key (default: the node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSection>,
    /// A basemap of raster tiles under the picture (default: none, the
    /// offline map of the named places alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<TilesSection>,
}

/// A raster tile source, e.g. OpenStreetMap's or Lantmäteriet's open
/// topographic WMTS in XYZ form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TilesSection {
    /// `https://…/{z}/{x}/{y}.png`
    pub url: String,
    /// The credit the source asks for, shown on the map.
    pub attribution: String,
}

impl ConsoleSection {
    /// Where browsers reach it.
    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.listen))
    }
}

/// How the org's people sign in to the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleSection {
    /// The node-local accounts (written by `lagesbild users`).
    #[serde(default = "default_accounts")]
    pub accounts: PathBuf,
    /// How long a session lasts, hours (1 to 24).
    #[serde(default = "default_session_hours")]
    pub session_hours: u32,
    /// The org's identity provider, if people sign in through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcSection>,
}

/// The org's OpenID Connect identity provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// Its issuer identifier (`https://…`; `http://` on loopback only).
    pub issuer: String,
    /// The node's client id there: the ID tokens' audience.
    pub client_id: String,
    /// The claim listing a person's groups.
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The signature algorithms accepted (default RS256, PS256, ES256, EdDSA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithms: Option<Vec<String>>,
    /// A CA certificate (PEM) for the provider's HTTPS, if not a public one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Each group's roles at the node: `"group" = ["analyst"]`.
    pub roles: BTreeMap<String, Vec<String>>,
}

fn default_roles_claim() -> String {
    "groups".into()
}

impl OidcSection {
    /// The checked settings; `base` is the folder relative paths start from.
    pub fn settings(&self, base: &Path) -> Result<OidcSettings, String> {
        let issuer = self.issuer.trim();
        let loopback = ["http://127.", "http://localhost", "http://[::1]"]
            .iter()
            .any(|p| issuer.starts_with(p));
        if !issuer.starts_with("https://") && !loopback {
            return Err(format!(
                "people.oidc.issuer {issuer:?}: an identity provider is reached over https:// (http:// only on loopback)"
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err("people.oidc.client_id: required".into());
        }
        let algorithms = match &self.algorithms {
            None => lagesbild_people::oidc::DEFAULT_ALGORITHMS
                .iter()
                .map(|a| lagesbild_people::oidc::parse_algorithm(a))
                .collect::<Result<Vec<_>, _>>(),
            Some(names) if names.is_empty() => {
                Err("people.oidc.algorithms: list at least one".into())
            }
            Some(names) => names
                .iter()
                .map(|a| lagesbild_people::oidc::parse_algorithm(a))
                .collect(),
        }
        .map_err(|e| format!("people.oidc.algorithms: {e}"))?;
        let mut roles = BTreeMap::new();
        for (group, names) in &self.roles {
            let parsed = names
                .iter()
                .map(|n| n.parse::<PersonRole>())
                .collect::<Result<std::collections::BTreeSet<_>, _>>()
                .map_err(|e| format!("people.oidc.roles.{group:?}: {e}"))?;
            roles.insert(group.clone(), parsed);
        }
        if roles.values().all(|r| r.is_empty()) {
            return Err(
                "people.oidc.roles: map at least one group to a role, e.g. \"analysts\" = [\"analyst\"]".into(),
            );
        }
        let ca_pem = match &self.ca_file {
            Some(file) => {
                let path = base.join(file);
                Some(
                    std::fs::read(&path)
                        .map_err(|e| format!("people.oidc.ca_file {}: {e}", path.display()))?,
                )
            }
            None => None,
        };
        Ok(OidcSettings {
            issuer: issuer.to_owned(),
            client_id: self.client_id.clone(),
            roles_claim: self.roles_claim.clone(),
            roles,
            algorithms,
            ca_pem,
        })
    }
}

impl Default for PeopleSection {
    fn default() -> Self {
        Self {
            accounts: default_accounts(),
            session_hours: default_session_hours(),
            oidc: None,
        }
    }
}

impl PeopleSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// How long a session lasts.
    pub fn session_life(&self) -> Duration {
        Duration::from_secs(u64::from(self.session_hours) * 3600)
    }
}

fn default_accounts() -> PathBuf {
    "accounts.toml".into()
}

fn default_session_hours() -> u32 {
    8
}

/// One machine client of the org.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// The scopes its calls may use (names, e.g. `report:write`).
    pub scopes: Vec<String>,
}

/// How much memory the report store may cache (the access log is plain files,
/// cached by the operating system).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// The report store's page cache, MiB.
    #[serde(default = "default_store_cache")]
    pub store_cache_mb: u32,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            store_cache_mb: default_store_cache(),
        }
    }
}

impl StorageSection {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

fn default_store_cache() -> u32 {
    8
}

/// Where metrics are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `IP:PORT` on loopback, e.g. `127.0.0.1:9464`.
    pub listen: String,
}

/// How the node makes and follows live events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// How long an event stays current after its 15-minute slot, minutes.
    #[serde(default = "default_lifetime_minutes")]
    pub lifetime_minutes: u32,
    /// The purpose this node claims when it subscribes to its peers' events.
    #[serde(default = "default_events_purpose")]
    pub purpose: String,
}

impl Default for EventsSection {
    fn default() -> Self {
        Self {
            lifetime_minutes: default_lifetime_minutes(),
            purpose: default_events_purpose(),
        }
    }
}

fn default_lifetime_minutes() -> u32 {
    240
}

fn default_events_purpose() -> String {
    "situation-picture".into()
}

/// The node's log key, checked against the verifier key the federation file
/// publishes for its org.
fn load_log_key(config: &NodeConfig, federation: &Federation) -> Result<NoteSigner, String> {
    let Some(path) = &config.log_key else {
        return Err(
            "log_key: missing; checkpoints are now signed with a log key of the node's own, not the token key. Run `lagesbild certs migrate --config <this file>`, which writes the key, names it here and prints the line for federation.toml".into(),
        );
    };
    let pem = std::fs::read(path).map_err(|e| format!("log_key {}: {e}", path.display()))?;
    let origin = origin_of(&federation.name, &config.org);
    let signer = NoteSigner::from_pem(&origin, &pem).map_err(|_| {
        format!(
            "log_key {}: not an Ed25519 private key in PKCS#8 PEM (as `lagesbild certs init` writes it)",
            path.display()
        )
    })?;
    let published = federation
        .member(&config.org)
        .and_then(|m| m.log_vkey.as_deref());
    if published != Some(signer.verifier().vkey().as_str()) {
        return Err(format!(
            "log_key {} is not the key federation.toml publishes for {} (log_vkey); its verifier key is {}",
            path.display(),
            config.org,
            signer.verifier().vkey()
        ));
    }
    Ok(signer)
}

/// The node's keys, parsed when the configuration is loaded: a key that
/// does not parse stops the node at load, naming the file.
pub struct NodeKeys {
    /// Signs the node's tokens to its peers.
    pub token: Signer,
    /// Signs the checkpoints of the node's access log.
    pub log: Arc<NoteSigner>,
    /// The node certificate's chain.
    pub tls_chain: Vec<CertificateDer<'static>>,
    /// The node certificate's key.
    pub tls_key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKeys")
            .field("token", &self.token)
            .field("log", &self.log)
            .field("tls_chain", &self.tls_chain.len())
            .finish_non_exhaustive()
    }
}

/// A checked configuration with everything it names loaded.
#[derive(Debug)]
pub struct LoadedConfig {
    /// Where the config was read from.
    pub path: PathBuf,
    /// The config, with paths made absolute.
    pub config: NodeConfig,
    /// The federation file's content.
    pub federation: Federation,
    /// The policy in force at start-up.
    pub policy: Policy,
    /// The alert rules, checked.
    pub alerts: Alerts,
    /// The keys, parsed.
    pub keys: NodeKeys,
    /// The org's machine clients and their scopes, checked.
    pub workloads: crate::auth::Workloads,
    /// The org's identity provider, checked, if it has one.
    pub oidc: Option<OidcSettings>,
}

impl NodeConfig {
    /// Reads `path` and every file it names, checking each.
    pub fn load(path: &Path) -> Result<LoadedConfig, NodeError> {
        let fail = |message: String| NodeError::Config {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        lagesbild_policy::check_format_version(&text, FORMAT_VERSION)
            .map_err(|e| fail(e.to_string()))?;
        let mut config: NodeConfig = toml::from_str(&text)
            .map_err(|e| fail(lagesbild_policy::describe_toml_error(&text, &e)))?;
        if config.version != FORMAT_VERSION {
            return Err(fail(format!(
                "version {} is not supported (expected {FORMAT_VERSION})",
                config.version
            )));
        }
        if !config.reports.coverage.is_valid() {
            return Err(fail(
                "reports.coverage: south < north and west < east, in degrees, are needed".into(),
            ));
        }
        if config.reports.write_purposes.is_empty() {
            return Err(fail(
                "reports.write_purposes: list at least one purpose (the default is [\"ingest\", \"recall\"])".into(),
            ));
        }
        if config.reports.retention_days == 0 {
            return Err(fail("reports.retention_days: must be at least 1".into()));
        }
        if !(1..=24).contains(&config.people.session_hours) {
            return Err(fail(
                "people.session_hours: a session lasts 1 to 24 hours".into(),
            ));
        }
        if config.events.lifetime_minutes == 0 {
            return Err(fail("events.lifetime_minutes: must be at least 1".into()));
        }
        let alerts =
            Alerts::new(&config.alerts, &config.playbooks).map_err(|e| fail(e.to_string()))?;
        let workloads =
            crate::auth::Workloads::parse(config.workloads.iter().map(|(n, w)| (n, &w.scopes)))
                .map_err(|e| fail(e.to_string()))?;
        if let Some(metrics) = &config.metrics {
            crate::metrics::loopback_address(&metrics.listen).map_err(|e| fail(e.to_string()))?;
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let oidc = match &config.people.oidc {
            Some(section) => Some(section.settings(base).map_err(fail)?),
            None => None,
        };
        for p in [
            &mut config.data_dir,
            &mut config.federation,
            &mut config.policy,
            &mut config.token_key,
            &mut config.tls.cert,
            &mut config.tls.key,
            &mut config.people.accounts,
        ] {
            *p = base.join(&*p);
        }
        if let Some(log_key) = &mut config.log_key {
            *log_key = base.join(&*log_key);
        }
        if let Some(tls) = config.console.as_mut().and_then(|c| c.tls.as_mut()) {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        if let Some(tiles) = config.console.as_ref().and_then(|c| c.tiles.as_ref()) {
            lagesbild_console::Tiles::new(&tiles.url, &tiles.attribution)
                .map_err(|e| fail(format!("console.tiles: {e}")))?;
        }
        if let Some(console) = &config.console {
            if !console.public_url().starts_with("https://") {
                return Err(fail(
                    "console.public_url: the console is served over https://".into(),
                ));
            }
        }
        let federation =
            Federation::load(&config.federation).map_err(|e| fail(format!("federation: {e}")))?;
        match federation.member(&config.org) {
            None => {
                return Err(fail(format!(
                    "org {:?} is not a member of the federation in {}",
                    config.org,
                    config.federation.display()
                )))
            }
            Some(m) if m.role != Role::Member => {
                return Err(fail(format!(
                    "org {:?} is an auditor in the federation and runs no node",
                    config.org
                )))
            }
            Some(_) => {}
        }
        let policy = Policy::load(&config.policy).map_err(|e| fail(format!("policy: {e}")))?;
        let tls = TlsFiles {
            cert: config.tls.cert.clone(),
            key: config.tls.key.clone(),
        };
        let (chain, tls_key) = tls.load().map_err(|e| fail(format!("tls: {e}")))?;
        let expected = SpiffeId::new(&federation.name, &config.org, "node");
        match SpiffeId::from_certificate(chain[0].as_ref()) {
            Ok(id) if id == expected => {}
            Ok(id) => {
                return Err(fail(format!(
                    "tls.cert {} is for {id}, expected {expected}",
                    config.tls.cert.display()
                )))
            }
            Err(e) => return Err(fail(format!("tls.cert {}: {e}", config.tls.cert.display()))),
        }
        let token_pem = std::fs::read(&config.token_key)
            .map_err(|e| fail(format!("token_key {}: {e}", config.token_key.display())))?;
        // The libraries' reasons name their internals; the file and the
        // format expected say what to fix.
        let bad_key = || {
            fail(format!(
                "token_key {}: not an Ed25519 private key in PKCS#8 PEM (as `lagesbild certs init` writes it)",
                config.token_key.display()
            ))
        };
        let token = Signer::from_pem(&config.org, &token_pem).map_err(|_| bad_key())?;
        let log = load_log_key(&config, &federation).map_err(fail)?;
        let keys = NodeKeys {
            token,
            log: Arc::new(log),
            tls_chain: chain,
            tls_key,
        };
        Ok(LoadedConfig {
            path: path.to_owned(),
            config,
            federation,
            policy,
            alerts,
            keys,
            workloads,
            oidc,
        })
    }
}

#[cfg(test)]
mod oidc_tests {
    use super::*;

    fn section(
        issuer: &str,
        roles: &[(&str, &[&str])],
        algorithms: Option<&[&str]>,
    ) -> OidcSection {
        OidcSection {
            issuer: issuer.into(),
            client_id: "lagesbild".into(),
            roles_claim: default_roles_claim(),
            algorithms: algorithms.map(|a| a.iter().map(|s| s.to_string()).collect()),
            ca_file: None,
            roles: roles
                .iter()
                .map(|(g, r)| (g.to_string(), r.iter().map(|s| s.to_string()).collect()))
                .collect(),
        }
    }

    #[test]
    fn an_identity_provider_section_is_checked_whole() {
        let base = Path::new(".");
        let analysts: &[(&str, &[&str])] = &[("analytiker", &["analyst"])];
        // Control: a good one.
        let good = section("https://idp.example.se/realms/x", analysts, None)
            .settings(base)
            .unwrap();
        assert_eq!(good.roles["analytiker"].len(), 1);
        assert!(section("http://127.0.0.1:8080", analysts, None)
            .settings(base)
            .is_ok());
        let err = section("http://idp.example.se", analysts, None)
            .settings(base)
            .unwrap_err();
        assert!(err.contains("https://"), "{err}");
        let err = section("https://idp", &[("g", &["admin"])], None)
            .settings(base)
            .unwrap_err();
        assert!(err.contains("not a role"), "{err}");
        let err = section("https://idp", &[("g", &[])], None)
            .settings(base)
            .unwrap_err();
        assert!(err.contains("map at least one group"), "{err}");
        let err = section("https://idp", analysts, Some(&["HS256"]))
            .settings(base)
            .unwrap_err();
        assert!(err.contains("HMAC"), "{err}");
    }
}
