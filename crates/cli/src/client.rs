//! How the org's own people and tools reach its node: `client.toml`, and the
//! session a person got by signing in (`lagesbild login`).

use anyhow::{bail, Context, Result};
use lagesbild_auth::{AuthChannel, Bearer, Grant, Signer};
use lagesbild_identity::tls::client_config;
use lagesbild_identity::{Federation, Role, TlsFiles};
use lagesbild_node::config::TlsSection;
use lagesbild_transport::{channel, ChannelOptions};
use lagesbild_vocabulary::Scope;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tonic::transport::Channel;

/// The only client config format this version reads.
pub const FORMAT_VERSION: u32 = 1;

/// How long the token an auditor's command signs for itself lives.
const COMMAND_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// The environment variable naming the session file exactly (otherwise it is
/// under the user's state directory, per federation and org).
pub const SESSION_FILE_VAR: &str = "LAGESBILD_SESSION";

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
    /// An auditor org's token-signing key: it runs no node to hold it. A
    /// member's people sign in to its node instead, and a member's client
    /// configuration naming one is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_key: Option<PathBuf>,
    /// The client certificate and key.
    pub tls: TlsSection,
}

/// A loaded client configuration.
#[derive(Debug, Clone)]
pub struct Client {
    /// Where it was read from.
    pub path: PathBuf,
    /// The config, paths made absolute.
    pub config: ClientConfig,
    /// The federation file's content.
    pub federation: Federation,
    /// The session secret of the person using it, once signed in.
    session: Option<String>,
}

impl Client {
    /// Reads `path` and the federation file it names, and the session of the
    /// person using it, if they have signed in.
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
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            *p = base.join(&*p);
        }
        if let Some(key) = &mut config.token_key {
            *key = base.join(&*key);
        }
        let federation = Federation::load(&config.federation)
            .with_context(|| format!("config {}", path.display()))?;
        let Some(member) = federation.member(&config.org) else {
            bail!(
                "config {}: org {:?} is not a member of the federation",
                path.display(),
                config.org
            );
        };
        if member.role == Role::Member && config.token_key.is_some() {
            bail!(
                "config {}: token_key is no longer read: {}'s people sign in to its node and only the node holds the org's keys. Run `lagesbild certs migrate --config {}` to remove the line, then `lagesbild login --config {}`",
                path.display(),
                config.org,
                path.display(),
                path.display()
            );
        }
        let mut client = Self {
            path: path.to_owned(),
            config,
            federation,
            session: None,
        };
        client.session = client.read_session()?;
        Ok(client)
    }

    /// Where this person's session with the org's node is kept.
    pub fn session_file(&self) -> PathBuf {
        if let Some(path) = std::env::var_os(SESSION_FILE_VAR).filter(|p| !p.is_empty()) {
            return PathBuf::from(path);
        }
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
            })
            .unwrap_or_else(|| PathBuf::from("."));
        state.join("lagesbild").join(format!(
            "{}.{}.session",
            self.federation.name, self.config.org
        ))
    }

    fn read_session(&self) -> Result<Option<String>> {
        let path = self.session_file();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_owned()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("session file {}", path.display())),
        }
    }

    /// Keeps `secret` as this person's session, readable by them alone.
    pub fn save_session(&mut self, secret: &str) -> Result<PathBuf> {
        let path = self.session_file();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .with_context(|| format!("session file {}", path.display()))?;
        std::io::Write::write_all(&mut file, secret.as_bytes())
            .with_context(|| format!("session file {}", path.display()))?;
        self.session = Some(secret.to_owned());
        Ok(path)
    }

    /// Forgets this person's session.
    pub fn forget_session(&mut self) -> Result<()> {
        let path = self.session_file();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("session file {}", path.display())),
        }
        self.session = None;
        Ok(())
    }

    /// Uses `secret` as the session (for a program that signed in itself).
    pub fn with_session(mut self, secret: &str) -> Self {
        self.session = Some(secret.to_owned());
        self
    }

    /// The session secret, or how to get one.
    pub fn session(&self) -> Result<&str> {
        self.session.as_deref().with_context(|| {
            format!(
                "not signed in to {}'s node: run `lagesbild login --config {}`",
                self.config.org,
                self.path.display()
            )
        })
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

    /// An auditor org's token signer, from `token_key`.
    pub fn signer(&self) -> Result<Signer> {
        let Some(path) = &self.config.token_key else {
            bail!(
                "config {}: {} signs no tokens from a client configuration; its people sign in to its node (`lagesbild login`)",
                self.path.display(),
                self.config.org
            );
        };
        let pem = std::fs::read(path).with_context(|| format!("token key {}", path.display()))?;
        Ok(Signer::from_pem(&self.config.org, &pem)?)
    }

    /// An auditor's token for `audience`'s node, naming `subject`.
    pub fn token(
        &self,
        audience: &str,
        subject: &str,
        scopes: &[Scope],
        purpose: &str,
    ) -> Result<String> {
        let scopes: Vec<String> = scopes.iter().map(|s| s.name().to_owned()).collect();
        Ok(self.signer()?.issue(&Grant {
            audience,
            subject,
            scopes: &scopes,
            purpose,
            ttl: COMMAND_TOKEN_TTL,
            act: None,
        })?)
    }

    /// A channel to the org's own node whose calls carry the person's session
    /// and state `purpose`.
    pub fn own_node_as(&self, purpose: &str) -> Result<AuthChannel> {
        let bearer = Bearer::new(self.session()?)?.stating(purpose)?;
        Ok(AuthChannel::new(self.own_node()?, bearer))
    }

    fn channel_at(&self, org: &str, endpoint: &str) -> Result<Channel> {
        let (chain, key) = self.tls_files().load()?;
        let tls = client_config(&self.federation, org, chain, key)?;
        Ok(channel(endpoint, tls, ChannelOptions::default())?)
    }
}
