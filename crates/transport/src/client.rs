//! The connecting side: one long-lived HTTP/2 channel per peer over mutual TLS.

use crate::TransportError;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// Timeouts and keep-alive of a channel.
#[derive(Debug, Clone, Copy)]
pub struct ChannelOptions {
    /// Limit on TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// HTTP/2 keep-alive ping interval, so a dead peer is noticed between calls.
    pub keep_alive: Duration,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            keep_alive: Duration::from_secs(20),
        }
    }
}

/// The SHA-256 fingerprint (lower-case hex) of the certificate the server
/// presented on a channel's latest connection; empty before the first.
#[derive(Debug, Clone, Default)]
pub struct ServerFingerprint(Arc<RwLock<String>>);

impl ServerFingerprint {
    /// The fingerprint now.
    pub fn get(&self) -> String {
        self.0.read().map(|f| f.clone()).unwrap_or_default()
    }
}

/// A channel to `endpoint` (`host:port`) over TLS made with `config`.
///
/// The channel connects lazily and reconnects by itself; clone it freely: clones
/// share one HTTP/2 connection.
pub fn channel(
    endpoint: &str,
    config: Arc<ClientConfig>,
    options: ChannelOptions,
) -> Result<Channel, TransportError> {
    channel_observed(endpoint, config, options).map(|(channel, _)| channel)
}

/// [`channel`], with the fingerprint of the server's certificate as it connects.
pub fn channel_observed(
    endpoint: &str,
    config: Arc<ClientConfig>,
    options: ChannelOptions,
) -> Result<(Channel, ServerFingerprint), TransportError> {
    let bad = |reason: &str| TransportError::BadEndpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let (host, _port) = endpoint
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(host.to_owned()).map_err(|e| bad(&e.to_string()))?;
    // TLS is done by the connector below, so tonic sees a plain `http` URI.
    let uri = format!("http://{endpoint}");
    let target = Endpoint::from_shared(uri)
        .map_err(|e| bad(&e.to_string()))?
        .connect_timeout(options.connect_timeout)
        .http2_keep_alive_interval(options.keep_alive)
        .keep_alive_timeout(options.keep_alive)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    let connector = TlsConnector::from(config);
    let address = endpoint.to_owned();
    let seen = ServerFingerprint::default();
    let record = seen.clone();
    let connect = tower::service_fn(move |_: Uri| {
        let connector = connector.clone();
        let server_name = server_name.clone();
        let address = address.clone();
        let record = record.clone();
        async move {
            let tcp = TcpStream::connect(&address).await?;
            tcp.set_nodelay(true)?;
            let tls = connector.connect(server_name, tcp).await?;
            if let Some(leaf) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                if let Ok(mut slot) = record.0.write() {
                    *slot = lagesbild_identity::fingerprint(leaf.as_ref());
                }
            }
            Ok::<_, std::io::Error>(TokioIo::new(tls))
        }
    });
    Ok((target.connect_with_connector_lazy(connect), seen))
}
