//! How the org's own people and tools reach its node: `client.toml`.

use anyhow::{bail, Context, Result};
use lagesbild_auth::{AuthChannel, Bearer, Grant, Signer};
use lagesbild_identity::tls::client_config;
use lagesbild_identity::{Federation, TlsFiles};
use lagesbild_node::config::TlsSection;
use lagesbild_transport::{channel, ChannelOptions};
use lagesbild_vocabulary::Scope;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// The only client config format this version reads.
pub const FORMAT_VERSION: u32 = 1;

/// How long the token a command signs for itself lives.
const COMMAND_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The person running the command, as tokens name them.
pub fn operator() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "operator".into())
}

/// The content of `client.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Format version; must be [`FORMAT_VERSION`].
    pub version: u32,
    /// The organisation the tools act for.
    pub org: String,
    /// `host:port` of the org's own node; auditors have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The federation file.
    pub federation: PathBuf,
    /// The org's token-signing key.
    pub token_key: PathBuf,
    /// The client certificate and key.
    pub tls: TlsSection,
}

/// A loaded client configuration.
#[derive(Debug, Clone)]
pub struct Client {
    /// The config, paths made absolute.
    pub config: ClientConfig,
    /// The federation file's content.
    pub federation: Federation,
}

impl Client {
    /// Reads `path` and the federation file it names.
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("config {}", path.display()))?;
        let mut config: ClientConfig =
            toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        if config.version != FORMAT_VERSION {
            bail!(
                "config {}: version {} is not supported (expected {FORMAT_VERSION})",
                path.display(),
                config.version
            );
        }
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.federation,
            &mut config.token_key,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            *p = base.join(&*p);
        }
        let federation = Federation::load(&config.federation)
            .with_context(|| format!("config {}", path.display()))?;
        if federation.member(&config.org).is_none() {
            bail!(
                "config {}: org {:?} is not a member of the federation",
                path.display(),
                config.org
            );
        }
        Ok(Self { config, federation })
    }

    /// The client certificate and key files.
    pub fn tls_files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.config.tls.cert.clone(),
            key: self.config.tls.key.clone(),
        }
    }

    /// A channel to `org`'s node over mutual TLS with this client's certificate.
    pub fn channel_to(&self, org: &str) -> Result<Channel> {
        let member = self
            .federation
            .member(org)
            .with_context(|| format!("{org} is not a member of the federation"))?;
        let endpoint = member
            .endpoint
            .as_deref()
            .with_context(|| format!("{org} runs no node"))?;
        self.channel_at(org, endpoint)
    }

    /// A channel to the org's own node, at the endpoint `client.toml` names.
    pub fn own_node(&self) -> Result<Channel> {
        let Some(endpoint) = &self.config.node else {
            bail!(
                "{} runs no node (no `node` in its client config)",
                self.config.org
            );
        };
        self.channel_at(&self.config.org, endpoint)
    }

    /// The org's token signer, from `token_key`.
    pub fn signer(&self) -> Result<Signer> {
        let pem = std::fs::read(&self.config.token_key)
            .with_context(|| format!("token key {}", self.config.token_key.display()))?;
        Ok(Signer::from_pem(&self.config.org, &pem)?)
    }

    /// A token for the person running this command, for `audience`'s node.
    pub fn token(&self, audience: &str, scopes: &[Scope], purpose: &str) -> Result<String> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.name().to_owned()).collect();
        Ok(self.signer()?.issue(&Grant {
            audience,
            subject: &operator(),
            scopes: &scopes,
            purpose,
            ttl: COMMAND_TOKEN_TTL,
            act: None,
        })?)
    }

    /// A channel to the org's own node whose calls carry a token with `scopes`.
    pub fn own_node_as(&self, scopes: &[Scope], purpose: &str) -> Result<AuthChannel> {
        let token = self.token(&self.config.org, scopes, purpose)?;
        Ok(AuthChannel::new(self.own_node()?, Bearer::new(&token)?))
    }

    fn channel_at(&self, org: &str, endpoint: &str) -> Result<Channel> {
        let (chain, key) = self.tls_files().load()?;
        let tls = client_config(&self.federation, org, chain, key)?;
        Ok(channel(endpoint, tls, ChannelOptions::default())?)
    }
}
