//! Laying out a federation's files: what `certs init` and `demo` write.
//!
//! ```text
//! DIR/federation.toml        every member: id, name, role, endpoint, CA, token key, log vkey
//! DIR/<org>/ca.pem, ca.key   the org's development CA
//! DIR/<org>/node.pem, .key   the node certificate (members only)
//! DIR/<org>/client.pem, .key the certificate of the org's people and tools
//! DIR/<org>/token.key, .pub  the Ed25519 token-signing key pair
//! DIR/<org>/log.key          the key that signs the node's checkpoints (members only)
//! DIR/<org>/node.toml        the node's config (members only)
//! DIR/<org>/policy.toml      the node's policy: deny by default (members only)
//! DIR/<org>/client.toml      the config of the org's command-line tools
//! ```

use crate::client::ClientConfig;
use anyhow::{bail, Context, Result};
use lagesbild_audit::checkpoint::{origin_of, NoteSigner};
use lagesbild_identity::certs::{CertificateAuthority, LeafSpec, TokenKey};
use lagesbild_identity::federation::FORMAT_VERSION;
use lagesbild_identity::spiffe::valid_segment;
use lagesbild_identity::{Federation, Member, Role};
use lagesbild_node::config::{NodeConfig, ReportsSection, TlsSection};
use lagesbild_reports::validate::Coverage;
use std::path::{Path, PathBuf};

/// One organisation to provision.
#[derive(Debug, Clone)]
pub struct OrgPlan {
    /// Organisation id.
    pub id: String,
    /// Display name.
    pub display_name: String,
    /// Member or auditor.
    pub role: Role,
    /// Node endpoint `host:port` (members only).
    pub endpoint: Option<String>,
}

impl OrgPlan {
    /// Parses `ID` or `ID=Display name`; well-known ids get their proper names.
    pub fn parse(spec: &str, role: Role) -> Result<Self> {
        let (id, display_name) = match spec.split_once('=') {
            Some((id, name)) => (id.to_owned(), name.to_owned()),
            None => (spec.to_owned(), display_name_of(spec).to_owned()),
        };
        if !valid_segment(&id) {
            bail!("org id {id:?}: use lower-case letters, digits, '-', '_' or '.'");
        }
        Ok(Self {
            id,
            display_name,
            role,
            endpoint: None,
        })
    }
}

/// Proper names of the organisations of the Norrmalm collaboration.
pub fn display_name_of(id: &str) -> &str {
    match id {
        "polisen" => "Polisen",
        "stockholm-stad" => "Stockholms stad",
        "amf-fastigheter" => "AMF Fastigheter",
        "svensk-handel" => "Svensk Handel",
        "scandic" => "Scandic",
        "imy" => "Integritetsskyddsmyndigheten",
        other => other,
    }
}

/// A whole federation to provision.
#[derive(Debug, Clone)]
pub struct FederationPlan {
    /// Federation name.
    pub name: String,
    /// Its organisations.
    pub orgs: Vec<OrgPlan>,
    /// The area every node accepts reports from.
    pub coverage: Coverage,
    /// Days every node keeps reports.
    pub retention_days: u32,
}

/// Where the files of one org went.
#[derive(Debug, Clone)]
pub struct WrittenOrg {
    /// Organisation id.
    pub id: String,
    /// Its folder.
    pub dir: PathBuf,
    /// Its node config, for members.
    pub node_config: Option<PathBuf>,
    /// The config of its command-line tools.
    pub client_config: PathBuf,
}

/// Where the files of a federation went.
#[derive(Debug, Clone)]
pub struct WrittenFederation {
    /// The federation file.
    pub federation_file: PathBuf,
    /// Per org, in plan order.
    pub orgs: Vec<WrittenOrg>,
}

impl WrittenFederation {
    /// The files of `org`.
    pub fn org(&self, id: &str) -> Option<&WrittenOrg> {
        self.orgs.iter().find(|o| o.id == id)
    }
}

impl FederationPlan {
    /// Makes fresh credentials for every org and writes every file under `dir`.
    pub fn write(&self, dir: &Path, overwrite: bool) -> Result<WrittenFederation> {
        let federation_file = dir.join("federation.toml");
        if federation_file.exists() && !overwrite {
            bail!(
                "{} already exists: choose another --dir or pass --force to replace it",
                federation_file.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut members = Vec::new();
        let mut written = Vec::new();
        for org in &self.orgs {
            let org_dir = dir.join(&org.id);
            std::fs::create_dir_all(&org_dir)
                .with_context(|| format!("creating {}", org_dir.display()))?;
            let ca = CertificateAuthority::generate(&self.name, &org.id)?;
            write_pair(
                &org_dir,
                "ca",
                &ca.certified.cert_pem,
                &ca.certified.key_pem,
            )?;
            let client = ca.issue(&LeafSpec::client(&self.name, &org.id))?;
            write_pair(&org_dir, "client", &client.cert_pem, &client.key_pem)?;
            let token = TokenKey::generate()?;
            write_secret(&org_dir.join("token.key"), &token.private_pem)?;
            write_file(&org_dir.join("token.pub"), &token.public_pem)?;
            let mut log_vkey = None;

            let node_config = match (&org.role, &org.endpoint) {
                (Role::Member, Some(endpoint)) => {
                    let host = endpoint
                        .rsplit_once(':')
                        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
                        .with_context(|| format!("endpoint {endpoint:?}: expected HOST:PORT"))?;
                    let node =
                        ca.issue(&LeafSpec::node(&self.name, &org.id, &[host.to_owned()]))?;
                    write_pair(&org_dir, "node", &node.cert_pem, &node.key_pem)?;
                    write_file(&org_dir.join("policy.toml"), DENY_ALL_POLICY)?;
                    log_vkey = Some(write_log_key(
                        &org_dir.join("log.key"),
                        &self.name,
                        &org.id,
                    )?);
                    let config = NodeConfig {
                        version: lagesbild_node::config::FORMAT_VERSION,
                        org: org.id.clone(),
                        listen: endpoint.clone(),
                        data_dir: "data".into(),
                        federation: "../federation.toml".into(),
                        policy: "policy.toml".into(),
                        token_key: "token.key".into(),
                        log_key: Some("log.key".into()),
                        tls: TlsSection {
                            cert: "node.pem".into(),
                            key: "node.key".into(),
                        },
                        reports: ReportsSection {
                            coverage: self.coverage,
                            retention_days: self.retention_days,
                            write_purposes: lagesbild_node::config::default_write_purposes(),
                        },
                        events: Default::default(),
                        playbooks: coordinated_plan::playbooks(),
                        alerts: coordinated_plan::alerts(),
                        storage: Default::default(),
                        metrics: None,
                        workloads: Default::default(),
                        people: Default::default(),
                        console: None,
                    };
                    let path = org_dir.join("node.toml");
                    write_file(&path, &toml::to_string_pretty(&config)?)?;
                    Some(path)
                }
                (Role::Member, None) => bail!("member {} has no endpoint", org.id),
                (Role::Auditor, _) => None,
            };
            let client_config = ClientConfig {
                version: crate::client::FORMAT_VERSION,
                org: org.id.clone(),
                node: org.endpoint.clone(),
                federation: "../federation.toml".into(),
                // Only an auditor, which runs no node, signs its own tokens;
                // a member's people sign in to its node.
                token_key: (org.role == Role::Auditor).then(|| "token.key".into()),
                tls: TlsSection {
                    cert: "client.pem".into(),
                    key: "client.key".into(),
                },
            };
            let client_path = org_dir.join("client.toml");
            write_file(&client_path, &toml::to_string_pretty(&client_config)?)?;

            members.push(Member {
                id: org.id.clone(),
                display_name: org.display_name.clone(),
                role: org.role,
                endpoint: org.endpoint.clone(),
                ca_cert: ca.certified.cert_pem.clone(),
                token_public_key: token.public_pem,
                log_vkey,
            });
            written.push(WrittenOrg {
                id: org.id.clone(),
                dir: org_dir,
                node_config,
                client_config: client_path,
            });
        }
        let federation = Federation {
            version: FORMAT_VERSION,
            name: self.name.clone(),
            members,
        };
        federation.check()?;
        federation.save(&federation_file)?;
        Ok(WrittenFederation {
            federation_file,
            orgs: written,
        })
    }
}

const DENY_ALL_POLICY: &str = "\
# What each peer organisation may receive from this node. Deny by default:
# a peer not named here gets nothing.
version = 1
";

/// Writes a fresh log key for `org`'s node at `path`; returns its C2SP verifier key.
pub fn write_log_key(path: &Path, federation: &str, org: &str) -> Result<String> {
    let key = TokenKey::generate()?;
    let signer = NoteSigner::from_pem(&origin_of(federation, org), key.private_pem.as_bytes())?;
    write_secret(path, &key.private_pem)?;
    Ok(signer.verifier().vkey())
}

pub(crate) fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> Result<()> {
    write_file(&dir.join(format!("{stem}.pem")), cert_pem)?;
    write_secret(&dir.join(format!("{stem}.key")), key_pem)
}

fn write_file(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// Private keys are readable by their owner only.
fn write_secret(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The coordinated plan every member starts from: the same playbooks and alert
/// rules in every node, for the members to change together.
mod coordinated_plan {
    use lagesbild_node::events::alerts::{AlertRule, Playbook};
    use std::collections::BTreeMap;

    pub fn playbooks() -> BTreeMap<String, Playbook> {
        let playbook = |actions: &[&str]| Playbook {
            actions: actions.iter().map(|a| a.to_string()).collect(),
        };
        [
            (
                "serious-violence".to_owned(),
                playbook(&[
                    "Police: send a patrol to the cell and take command",
                    "Property owners and hotels: guards to entrances, doors watched",
                    "Retail: staff told, stay inside",
                    "Municipality: CCTV operators told, lighting at full",
                ]),
            ),
            (
                "dark-place".to_owned(),
                playbook(&[
                    "Municipality: lighting repair ordered within 24 h",
                    "Property owners: check own lighting nearby",
                    "Guards: include the place in the next round",
                ]),
            ),
        ]
        .into()
    }

    pub fn alerts() -> Vec<AlertRule> {
        let rule =
            |name: &str, playbook: &str, categories: &[&str], min_severity, hours: Option<&str>| {
                AlertRule {
                    name: name.into(),
                    playbook: playbook.into(),
                    categories: categories.iter().map(|c| c.to_string()).collect(),
                    min_severity,
                    areas: Vec::new(),
                    radius_m: 250,
                    cells: Vec::new(),
                    hours: hours.map(Into::into),
                }
            };
        vec![
            rule(
                "serious violence",
                "serious-violence",
                &["violence", "robbery", "weapons", "sexual_offence"],
                Some(4),
                None,
            ),
            rule(
                "dark place at night",
                "dark-place",
                &["lighting_fault", "dark_area"],
                None,
                Some("18-07"),
            ),
        ]
    }
}
