//! Running a node: bind, wire the services behind mutual TLS, serve until shutdown.

use crate::access;
use crate::auth::Authority;
use crate::config::{LoadedConfig, NodeConfig};
use crate::events::{pseudonym_secret, EventMaker, Follower};
use crate::metrics::{Metrics, Sources};
use crate::peer_client::PeerClient;
use crate::peers::PeerChannels;
use crate::policy_watch::PolicyHandle;
use crate::rate::RateLimits;
use crate::refusals::RefusalRecorder;
use crate::release::ReleaseGate;
use crate::services::aggregate::AggregateApi;
use crate::services::audit_service::AuditApi;
use crate::services::events::EventApi;
use crate::services::node_service::NodeApi;
use crate::services::picture::PictureApi;
use crate::services::policy_service::PolicyApi;
use crate::services::reports::{ReportApi, MAX_MESSAGE_BYTES};
use crate::services::session::SessionApi;
use crate::witness::Witness;
use crate::NodeError;
use lagesbild_audit::{AuditLog, LogOptions};
use lagesbild_auth::{Signer, Verifier};
use lagesbild_identity::tls::server_config;
use lagesbild_identity::Federation;
use lagesbild_people::oidc::OidcVerifier;
use lagesbild_people::People;
use lagesbild_proto::v1::aggregate_service_server::AggregateServiceServer;
use lagesbild_proto::v1::audit_service_server::AuditServiceServer;
use lagesbild_proto::v1::event_service_server::EventServiceServer;
use lagesbild_proto::v1::node_service_server::NodeServiceServer;
use lagesbild_proto::v1::picture_service_server::PictureServiceServer;
use lagesbild_proto::v1::policy_service_server::PolicyServiceServer;
use lagesbild_proto::v1::report_service_server::ReportServiceServer;
use lagesbild_proto::v1::session_service_server::SessionServiceServer;
use lagesbild_store::{Store, StoreOptions};
use lagesbild_transport::{serve_tls, ChannelOptions, PeerInfo};
use lagesbild_vocabulary::{OrgId, SharedClock, SystemClock};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;

/// A node ready to serve: configuration loaded, store open, listener bound.
pub struct Node {
    loaded: LoadedConfig,
    listener: TcpListener,
    store: Store,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("org", &self.loaded.config.org)
            .field("listen", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Loads `config_path`, opens the store and binds the listen address.
    pub async fn open(config_path: &Path) -> Result<Self, NodeError> {
        let loaded = NodeConfig::load(config_path)?;
        let data_dir = &loaded.config.data_dir;
        let store_options = StoreOptions {
            cache_bytes: u64::from(loaded.config.storage.store_cache_mb) << 20,
            ..StoreOptions::default()
        };
        let store =
            Store::open(&data_dir.join("store"), store_options).map_err(|e| NodeError::Store {
                path: data_dir.clone(),
                message: e.to_string(),
            })?;
        let address = loaded.config.listen.clone();
        let listener = TcpListener::bind(&address)
            .await
            .map_err(|source| NodeError::Bind { address, source })?;
        Ok(Self {
            loaded,
            listener,
            store,
        })
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then finishes in-flight calls and
    /// flushes the store.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), NodeError> {
        let Node {
            loaded,
            listener,
            store,
        } = self;
        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<NodeServiceServer<NodeApi>>().await;
        let core = Core::open(loaded, store, health).await?;
        let (closing, closing_seen) = tokio::sync::watch::channel(false);
        let background = Background::start(&core).await?;
        let served = core
            .serve(listener, health_service, closing_seen, async {
                shutdown.await;
                core.health
                    .set_not_serving::<NodeServiceServer<NodeApi>>()
                    .await;
                // Event streams never end on their own; in-flight unary calls do.
                closing.send_replace(true);
                background.stop_following();
                tracing::info!("shutting down: finishing in-flight calls");
            })
            .await;
        background.stop();
        core.close().await?;
        served
    }
}

/// What a running node is made of, built once from its configuration: the
/// access log, keys, TLS, peers, witness, the policy in force and its gate,
/// the event maker and the metrics.
struct Core {
    org: String,
    loaded: LoadedConfig,
    federation: Arc<Federation>,
    store: Store,
    log: AuditLog,
    tls: Arc<rustls::ServerConfig>,
    signer: Arc<Signer>,
    metrics: Arc<Metrics>,
    refusals: Arc<RefusalRecorder>,
    peers: PeerChannels,
    health: HealthReporter,
    witness: Arc<Witness>,
    policy: Arc<PolicyHandle>,
    gate: Arc<ReleaseGate>,
    event_maker: Arc<EventMaker>,
    /// The members that run a node, this one included.
    members: Vec<String>,
    /// Where every part that depends on the time reads it.
    clock: SharedClock,
    /// Each peer's calls per minute, taken by releases and subscriptions.
    rate: Arc<RateLimits>,
    /// The org's people and their sessions.
    people: Arc<People>,
    /// What the access check knows.
    authority: Arc<Authority>,
    /// The org's identity provider, if people sign in through one.
    provider: Option<Arc<OidcVerifier>>,
}

impl Core {
    /// Opens the access log, reads the keys and TLS files, and builds the
    /// parts every service shares.
    async fn open(
        loaded: LoadedConfig,
        store: Store,
        health: HealthReporter,
    ) -> Result<Self, NodeError> {
        let federation = Arc::new(loaded.federation.clone());
        let org = loaded.config.org.clone();
        let clock = SystemClock::shared();
        let org_id = OrgId::parse(&org).map_err(|e| NodeError::Config {
            path: loaded.path.clone(),
            message: format!("org: {e}"),
        })?;
        let rate = Arc::new(RateLimits::default());
        let config_error = |message: String| NodeError::Config {
            path: loaded.path.clone(),
            message,
        };
        let audit_dir = loaded.config.data_dir.join("audit");
        let log_signer = loaded.keys.log.clone();
        let log = AuditLog::open(&audit_dir, log_signer, LogOptions::default()).map_err(|e| {
            NodeError::Store {
                path: audit_dir.clone(),
                message: e.to_string(),
            }
        })?;
        let keys = &loaded.keys;
        let tls = server_config(
            &federation,
            keys.tls_chain.clone(),
            keys.tls_key.clone_key(),
        )
        .map_err(|e| config_error(e.to_string()))?;
        let refusals = RefusalRecorder::new(log.clone(), &federation);
        let metrics = Arc::new(Metrics::default());
        let peers = PeerChannels::connect(
            &federation,
            &org,
            (&keys.tls_chain, &keys.tls_key),
            ChannelOptions::default(),
            &log,
            &metrics,
        )
        .map_err(|e| config_error(e.to_string()))?;
        let signer = Arc::new(keys.token.clone().with_clock(clock.clone()));
        let verifier = Arc::new(
            Verifier::new(&org, &federation)
                .map_err(|e| config_error(format!("federation: {e}")))?
                .with_clock(clock.clone()),
        );
        let recalled = crate::auth::recall_used_delegations(&log, &verifier, CALL_DEADLINE)
            .map_err(|e| NodeError::Store {
                path: audit_dir.clone(),
                message: format!("reading used delegation tokens: {e}"),
            })?;
        tracing::info!(
            tokens = recalled,
            "delegation tokens still valid and already used, from the access log"
        );
        let people = Arc::new(
            People::open(
                &org,
                Some(loaded.config.people.accounts.clone()),
                loaded.config.people.session_life(),
                clock.clone(),
            )
            .map_err(|e| config_error(format!("people: {e}")))?,
        );
        let provider = match &loaded.oidc {
            Some(settings) => Some(Arc::new(
                OidcVerifier::new(settings.clone(), clock.clone())
                    .map_err(|e| config_error(format!("people.oidc: {e}")))?,
            )),
            None => None,
        };
        let authority = Arc::new(Authority {
            org: org_id.clone(),
            verifier: verifier.clone(),
            workloads: loaded.workloads.clone(),
            people: people.clone(),
        });
        let witness = Arc::new(
            Witness::new(
                &federation,
                &org,
                log.clone(),
                peers.clone(),
                signer.clone(),
                health.clone(),
            )
            .map_err(|e| config_error(e.to_string()))?,
        );
        witness.publish_health().await;
        let policy = Arc::new(PolicyHandle::new(
            loaded.config.policy.clone(),
            loaded.policy.clone(),
        ));
        let secret = pseudonym_secret(&loaded.config.data_dir).map_err(|e| NodeError::Store {
            path: loaded.config.data_dir.clone(),
            message: format!("pseudonym secret: {e}"),
        })?;
        let members: Vec<String> = federation.nodes().map(|m| m.id.clone()).collect();
        let lifetime_secs = i64::from(loaded.config.events.lifetime_minutes) * 60;
        let event_maker = Arc::new(EventMaker::new(
            org.clone(),
            members.clone(),
            policy.clone(),
            &secret,
            lifetime_secs,
        ));
        let gate = Arc::new(
            ReleaseGate::new(org_id, policy.clone(), store.clone(), rate.clone())
                .with_clock(clock.clone()),
        );
        Ok(Self {
            org,
            loaded,
            federation,
            store,
            log,
            tls,
            signer,
            metrics,
            refusals,
            peers,
            health,
            witness,
            policy,
            gate,
            event_maker,
            members,
            clock,
            rate,
            people,
            authority,
            provider,
        })
    }

    /// The client through which services ask peers.
    fn peer_client(&self) -> PeerClient {
        PeerClient::new(
            self.peers.clone(),
            self.signer.clone(),
            self.witness.clone(),
        )
    }

    /// Serves every service behind the access layer on `listener` until
    /// `shutdown` completes and the calls in flight have finished.
    async fn serve(
        &self,
        listener: TcpListener,
        health_service: impl tower::Service<
                http::Request<tonic::body::Body>,
                Response = http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
                Future: Send + 'static,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        closing: tokio::sync::watch::Receiver<bool>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let org = &self.org;
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| NodeError::Startup(format!("reflection: {e}")))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| NodeError::Startup(format!("reflection: {e}")))?;
        let node_service = NodeServiceServer::new(
            NodeApi::new(org.clone(), self.federation.clone(), self.peer_client())
                .with_coverage(self.loaded.config.reports.coverage)
                .with_gate(self.gate.clone()),
        );
        let write_purposes: Arc<[String]> =
            self.loaded.config.reports.write_purposes.clone().into();
        let report_service = ReportServiceServer::new(
            ReportApi::new(
                self.loaded.config.reports.rules(),
                write_purposes.clone(),
                self.store.clone(),
                self.event_maker.clone(),
            )
            .with_clock(self.clock.clone()),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let event_service = EventServiceServer::new(EventApi::new(
            self.gate.org().clone(),
            self.store.clone(),
            self.policy.clone(),
            self.rate.clone(),
            write_purposes,
            self.event_maker.clone(),
            closing,
        ));
        let aggregate_service =
            AggregateServiceServer::new(AggregateApi::new(org.clone(), self.gate.clone()));
        let policy_service =
            PolicyServiceServer::new(PolicyApi::new(org.clone(), self.gate.clone()));
        let picture_service = PictureServiceServer::new(PictureApi::new(
            org.clone(),
            self.federation.clone(),
            self.peer_client(),
            self.gate.clone(),
        ));
        let audit_service = AuditServiceServer::new(AuditApi::new(
            org.clone(),
            self.log.clone(),
            self.witness.clone(),
        ));
        let local = listener.local_addr().ok();
        let incoming = serve_tls(
            listener,
            self.tls.clone(),
            self.federation.clone(),
            self.refusals.sink(),
        );
        let routes = tonic::service::Routes::new(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(node_service)
            .add_service(report_service)
            .add_service(aggregate_service)
            .add_service(policy_service)
            .add_service(picture_service)
            .add_service(audit_service)
            .add_service(event_service)
            .add_service(SessionServiceServer::new(SessionApi::new(
                self.people.clone(),
                self.provider.clone(),
            )));
        let console = match &self.loaded.config.console {
            Some(section) => {
                Some(start_console(self, section, self.gateway(routes.clone())).await?)
            }
            None => None,
        };
        tracing::info!(%org, listen = ?local, version = crate::VERSION, "node serving");
        let served = limited_server()
            .layer(access::layers(
                self.authority.clone(),
                self.log.clone(),
                self.metrics.clone(),
                self.clock.clone(),
            ))
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        if let Some(console) = console {
            console.abort();
        }
        served?;
        Ok(())
    }

    /// The node's services as the console reaches them: in process, as one of
    /// the org's people on its `client` certificate, through the same access
    /// layers (the authorisation table, the access log) as a call over the
    /// network.
    fn gateway(&self, routes: tonic::service::Routes) -> lagesbild_console::Gateway {
        let caller = PeerInfo {
            identity: lagesbild_identity::tls::PeerIdentity {
                org: self.org.clone(),
                role: lagesbild_identity::Role::Member,
                workload: crate::auth::PEOPLE_WORKLOAD.to_owned(),
                fingerprint: String::new(),
            },
            remote: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let layered = tower::ServiceBuilder::new()
            .layer(access::layers(
                self.authority.clone(),
                self.log.clone(),
                self.metrics.clone(),
                self.clock.clone(),
            ))
            .service(routes);
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<tonic::body::Body>| {
                request.extensions_mut().insert(caller.clone());
                request
            })
            .service(layered);
        tower::util::BoxCloneSyncService::new(service)
    }

    /// Writes what is still counted of refused handshakes, flushes the store
    /// and closes the access log.
    async fn close(self) -> Result<(), NodeError> {
        self.refusals.flush(true).await;
        self.store.flush().await.map_err(|e| NodeError::Store {
            path: self.loaded.config.data_dir.clone(),
            message: e.to_string(),
        })?;
        self.log.close().await;
        tracing::info!(org = %self.org, "node stopped");
        Ok(())
    }
}

/// The node's tasks besides serving calls: following every member's events,
/// watching the policy file, metrics, checkpoints, retention and the counts of
/// refused handshakes.
struct Background {
    following: Vec<tokio::task::JoinHandle<()>>,
    others: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    async fn start(core: &Core) -> Result<Self, NodeError> {
        let follower = Arc::new(Follower::new(
            core.org.clone(),
            core.store.clone(),
            core.loaded.alerts.clone(),
            core.peer_client(),
            core.loaded.config.events.purpose.clone(),
        ));
        let following = follower.start(&core.members);
        let mut others = vec![
            tokio::spawn(core.policy.clone().watch(POLICY_CHECK_INTERVAL)),
            tokio::spawn(checkpoint_loop(core.log.clone())),
            tokio::spawn(retention_loop(
                core.store.clone(),
                core.loaded.config.reports.retention(),
                core.clock.clone(),
            )),
            tokio::spawn(core.refusals.clone().run()),
            tokio::spawn(accounts_loop(core.people.clone())),
        ];
        if let Some(section) = &core.loaded.config.metrics {
            let address = section.listen.clone();
            let listener = TcpListener::bind(&address)
                .await
                .map_err(|source| NodeError::Bind { address, source })?;
            tracing::info!(listen = ?listener.local_addr().ok(), "metrics served");
            others.push(tokio::spawn(crate::metrics::serve(
                listener,
                core.metrics.clone(),
                Sources {
                    log: core.log.clone(),
                    gate: core.gate.clone(),
                    store: core.store.clone(),
                },
            )));
        }
        Ok(Self { following, others })
    }

    /// Stops following peers' events (their streams would not end on their own).
    fn stop_following(&self) {
        for task in &self.following {
            task.abort();
        }
    }

    fn stop(&self) {
        self.stop_following();
        for task in &self.others {
            task.abort();
        }
    }
}

/// A tonic server with the node's limits: a caller gets at most
/// [`MAX_CALLS_PER_CONNECTION`] calls at once on one connection (the rest
/// wait), no call runs past the deadline, and a connection that stops answering
/// pings is dropped, so a dead subscriber does not hold its stream.
pub fn limited_server() -> Server {
    Server::builder()
        .concurrency_limit_per_connection(MAX_CALLS_PER_CONNECTION)
        .max_concurrent_streams(Some(MAX_CALLS_PER_CONNECTION as u32))
        .timeout(CALL_DEADLINE)
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE))
}

/// Calls one connection may have in flight.
const MAX_CALLS_PER_CONNECTION: usize = 256;
/// The longest a call may take until its answer starts (a client's shorter
/// `grpc-timeout` wins); streamed answers then run on. Long enough for a
/// million reports in one `SubmitStream`.
const CALL_DEADLINE: Duration = Duration::from_secs(600);
/// HTTP/2 keep-alive pings, and how long an answer to one may take.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// How often the policy file is checked for changes between calls (every call
/// checks it too).
const POLICY_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How often the access log is asked to keep a checkpoint (it keeps one only
/// if the log grew and its interval has passed).
const CHECKPOINT_TICK: Duration = Duration::from_secs(1);

async fn checkpoint_loop(log: AuditLog) {
    let mut tick = tokio::time::interval(CHECKPOINT_TICK);
    loop {
        tick.tick().await;
        log.tick().await;
    }
}

/// Binds the console's listener and serves it until the node stops.
async fn start_console(
    core: &Core,
    section: &crate::config::ConsoleSection,
    gateway: lagesbild_console::Gateway,
) -> Result<tokio::task::JoinHandle<()>, NodeError> {
    let config_error = |message: String| NodeError::Config {
        path: core.loaded.path.clone(),
        message,
    };
    let (chain, key) = match &section.tls {
        Some(tls) => lagesbild_identity::TlsFiles {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
        }
        .load()
        .map_err(|e| config_error(format!("console.tls: {e}")))?,
        None => (
            core.loaded.keys.tls_chain.clone(),
            core.loaded.keys.tls_key.clone_key(),
        ),
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(lagesbild_identity::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| config_error(format!("console.tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| config_error(format!("console.tls: {e}")))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let address = section.listen.clone();
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| NodeError::Bind { address, source })?;
    // Without a public address, browsers reach it where it listens (the
    // port the system chose, for `:0`).
    let public_url = match (&section.public_url, listener.local_addr()) {
        (None, Ok(bound)) => format!("https://{bound}"),
        _ => section.public_url(),
    };
    tracing::info!(listen = ?listener.local_addr().ok(), url = %public_url, "console served");
    let tiles = match &section.tiles {
        Some(t) => Some(
            lagesbild_console::Tiles::new(&t.url, &t.attribution)
                .map_err(|e| config_error(format!("console.tiles: {e}")))?,
        ),
        None => None,
    };
    let console = Arc::new(
        lagesbild_console::Console::new(
            &core.org,
            core.people.clone(),
            core.provider.clone(),
            core.log.clone(),
            core.clock.clone(),
            &section.public_url(),
            gateway,
        )
        .with_tiles(tiles)
        .with_log_key(
            core.federation
                .member(&core.org)
                .and_then(|m| m.log_vkey.clone()),
        ),
    );
    // It stops with the node's other tasks.
    Ok(tokio::spawn(lagesbild_console::serve(
        console,
        listener,
        Arc::new(tls),
    )))
}

/// How often the accounts file is looked at for changes: a disabled account's
/// sessions end within this.
const ACCOUNTS_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Reads the accounts file again whenever it changes.
async fn accounts_loop(people: Arc<People>) {
    let mut tick = tokio::time::interval(ACCOUNTS_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let checked = people.clone();
        match tokio::task::spawn_blocking(move || checked.reload()).await {
            Ok(Ok(true)) => tracing::info!("accounts read again"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "accounts file not read; the accounts in force stay")
            }
            Err(_) => tracing::warn!("reading the accounts stopped"),
        }
    }
}

/// How often reports past retention are purged.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);

/// Purges reports past `retention`, and expired events, at start-up and then
/// every [`PURGE_INTERVAL`].
async fn retention_loop(store: Store, retention: Duration, clock: SharedClock) {
    let mut tick = tokio::time::interval(PURGE_INTERVAL);
    loop {
        tick.tick().await;
        let cutoff = clock
            .now()
            .checked_sub(retention)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| (d.as_secs() / 3600) as u32);
        match store.purge_before(cutoff).await {
            Ok(summary) if summary.purged > 0 => tracing::info!(
                purged = summary.purged,
                before_hour = cutoff,
                retention_days = retention.as_secs() / 86_400,
                "retention purge: reports and their counts removed"
            ),
            Ok(_) => tracing::debug!(before_hour = cutoff, "retention purge: nothing to remove"),
            Err(e) => tracing::error!(error = %e, "retention purge failed"),
        }
        match store.purge_expired_events(clock.unix_seconds()).await {
            Ok(removed) if removed > 0 => {
                tracing::info!(removed, "expired events removed from feeds and inbox")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "purging expired events failed"),
        }
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(lagesbild_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Opens and runs the node of `config_path` until `shutdown` completes.
pub async fn serve(
    config_path: &Path,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), NodeError> {
    Node::open(config_path).await?.run(shutdown).await
}
