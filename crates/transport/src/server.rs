//! The accepting side: TCP → TLS 1.3 with a verified client certificate → tonic.

use futures::Stream;
use lagesbild_identity::tls::{identify, refused_certificate};
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

/// What kind of failure refused a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// No client certificate was presented.
    NoCertificate,
    /// The client offered no TLS 1.3 (or nothing else this node accepts).
    Protocol,
    /// The client certificate was refused.
    Certificate,
    /// The client spoke something other than a TLS handshake.
    Malformed,
    /// The connection closed or stalled before the handshake finished.
    Incomplete,
}

/// A connection whose TLS handshake was refused: nothing about it is proven
/// but where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedHandshake {
    /// The remote socket address.
    pub remote: SocketAddr,
    /// What kind of failure.
    pub kind: RefusalKind,
    /// The organisation the client certificate named, unverified.
    pub claimed_org: Option<String>,
    /// SHA-256 of the client certificate, if one was presented.
    pub fingerprint: Option<String>,
    /// Why, as one sentence.
    pub reason: String,
}

/// Told about every refused handshake.
pub type RefusalSink = Arc<dyn Fn(RefusedHandshake) + Send + Sync>;

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
/// client certificate check succeed. Every refused handshake goes to `refusals`,
/// never to the services.
pub fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    federation: Arc<Federation>,
    refusals: RefusalSink,
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
            let refusals = refusals.clone();
            tokio::spawn(async move {
                match handshake(acceptor, tcp, remote, &federation).await {
                    Ok(stream) => {
                        let _ = sender.send(stream).await;
                    }
                    Err(refused) => {
                        tracing::warn!(%remote, reason = %refused.reason, claimed_org = ?refused.claimed_org, "tls handshake refused");
                        refusals(refused);
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
) -> Result<PeerStream, RefusedHandshake> {
    let refused = |kind: RefusalKind, reason: String| RefusedHandshake {
        remote,
        kind,
        claimed_org: None,
        fingerprint: None,
        reason,
    };
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Err(_) => {
            return Err(refused(
                RefusalKind::Incomplete,
                format!(
                    "the TLS handshake did not finish within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                ),
            ))
        }
        Ok(Err(e)) => return Err(refusal_of(remote, &e)),
        Ok(Ok(tls)) => tls,
    };
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .ok_or_else(|| {
            refused(
                RefusalKind::NoCertificate,
                "no client certificate was presented; a member's client certificate is required"
                    .into(),
            )
        })?;
    // The verifier already bound this certificate to its org; read that binding back.
    let identity =
        identify(federation, leaf).map_err(|e| refused(RefusalKind::Certificate, e.to_string()))?;
    tracing::debug!(%remote, org = %identity.org, workload = %identity.workload, "tls peer accepted");
    Ok(PeerStream {
        inner: tls,
        peer: PeerInfo { identity, remote },
    })
}

/// What a failed handshake says, in words, with the certificate's claim if
/// the certificate was the problem.
fn refusal_of(remote: SocketAddr, error: &io::Error) -> RefusedHandshake {
    let tls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let mut refused = RefusedHandshake {
        remote,
        kind: RefusalKind::Incomplete,
        claimed_org: None,
        fingerprint: None,
        reason: String::new(),
    };
    (refused.kind, refused.reason) = match tls_error {
        Some(e) => {
            if let Some(certificate) = refused_certificate(e) {
                refused.claimed_org = certificate.claimed_org.clone();
                refused.fingerprint = Some(certificate.fingerprint.clone());
                (RefusalKind::Certificate, certificate.reason.clone())
            } else {
                tls_problem(e)
            }
        }
        None if error.kind() == io::ErrorKind::UnexpectedEof
            || error.kind() == io::ErrorKind::ConnectionReset =>
        {
            (
                RefusalKind::Incomplete,
                "the connection closed before the TLS handshake finished".into(),
            )
        }
        None => (
            RefusalKind::Incomplete,
            "the connection failed before the TLS handshake finished".into(),
        ),
    };
    refused
}

/// A TLS protocol failure in words a person reads.
fn tls_problem(error: &rustls::Error) -> (RefusalKind, String) {
    use rustls::Error as E;
    match error {
        E::NoCertificatesPresented => (
            RefusalKind::NoCertificate,
            "no client certificate was presented; a member's client certificate is required"
                .into(),
        ),
        E::PeerIncompatible(
            rustls::PeerIncompatible::SupportedVersionsExtensionRequired
            | rustls::PeerIncompatible::Tls12NotOffered
            | rustls::PeerIncompatible::Tls12NotOfferedOrEnabled,
        ) => (
            RefusalKind::Protocol,
            "the client offered only TLS 1.2 or older; only TLS 1.3 is accepted".into(),
        ),
        E::PeerIncompatible(_) => (
            RefusalKind::Protocol,
            "the client offered nothing this node accepts; TLS 1.3 with a client certificate is required".into(),
        ),
        E::InvalidCertificate(_) => (
            RefusalKind::Certificate,
            "the client certificate could not be verified against the federation's CAs".into(),
        ),
        _ => (
            RefusalKind::Malformed,
            "the client did not send a valid TLS 1.3 handshake".into(),
        ),
    }
}
