//! The accepting side: TCP → TLS 1.3 with a verified client certificate → tonic.

use futures::Stream;
use lagesbild_identity::tls::identify;
use lagesbild_identity::{Federation, PeerIdentity};
use rustls::ServerConfig;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is calling, as every request's extensions carry it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// The verified identity of the client certificate.
    pub identity: PeerIdentity,
    /// The remote socket address.
    pub remote: SocketAddr,
}

/// The caller of a request that arrived through [`serve_tls`].
pub fn peer_of<T>(request: &tonic::Request<T>) -> Option<&PeerInfo> {
    request.extensions().get::<PeerInfo>()
}

/// A TLS connection whose client certificate was verified and bound to an org.
#[derive(Debug)]
pub struct PeerStream {
    inner: TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl PeerStream {
    /// Who is on the other end.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }
}

impl Connected for PeerStream {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.peer.clone()
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The verified connections of a listener, for `Server::serve_with_incoming*`.
///
/// Dropping the stream stops accepting.
pub struct Incoming {
    connections: mpsc::Receiver<PeerStream>,
    accept_loop: JoinHandle<()>,
}

impl Stream for Incoming {
    type Item = Result<PeerStream, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|c| c.map(Ok))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// Accepts connections on `listener` and yields those whose TLS handshake and
/// client certificate check succeed. Refused handshakes are logged, never yielded.
pub fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    federation: Arc<Federation>,
) -> Incoming {
    let (sender, connections) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(config);
    let accept_loop = tokio::spawn(async move {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let federation = federation.clone();
            let sender = sender.clone();
            tokio::spawn(async move {
                match handshake(acceptor, tcp, remote, &federation).await {
                    Ok(stream) => {
                        let _ = sender.send(stream).await;
                    }
                    Err(reason) => {
                        tracing::warn!(%remote, %reason, "tls handshake refused");
                    }
                }
            });
        }
    });
    Incoming {
        connections,
        accept_loop,
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote: SocketAddr,
    federation: &Federation,
) -> Result<PeerStream, String> {
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or("no client certificate")?;
    // The verifier already bound this certificate to its org; read that binding back.
    let identity = identify(federation, leaf).map_err(|e| e.to_string())?;
    tracing::debug!(%remote, org = %identity.org, workload = %identity.workload, "tls peer accepted");
    Ok(PeerStream {
        inner: tls,
        peer: PeerInfo { identity, remote },
    })
}
