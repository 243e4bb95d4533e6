//! How the org's own people and tools reach its node: `client.toml`.

use anyhow::{bail, Context, Result};
use lagesbild_identity::tls::client_config;
use lagesbild_identity::{Federation, TlsFiles};
use lagesbild_node::config::TlsSection;
use lagesbild_transport::{channel, ChannelOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// The only client config format this version reads.
pub const FORMAT_VERSION: u32 = 1;

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

    fn channel_at(&self, org: &str, endpoint: &str) -> Result<Channel> {
        let (chain, key) = self.tls_files().load()?;
        let tls = client_config(&self.federation, org, chain, key)?;
        Ok(channel(endpoint, tls, ChannelOptions::default())?)
    }
}
