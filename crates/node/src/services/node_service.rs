//! `lagesbild.v1.NodeService`: who this node is and how it sees its peers.

use super::caller;
use crate::peer_client::PeerClient;
use crate::peers::PeerGrant;
use crate::release::ReleaseGate;
use crate::VERSION;
use futures::future::join_all;
use lagesbild_identity::{Federation, Member, Role};
use lagesbild_proto::v1::node_service_client::NodeServiceClient;
use lagesbild_proto::v1::node_service_server::NodeService;
use lagesbild_proto::v1::{
    Area, FederationStatusRequest, FederationStatusResponse, InfoRequest, InfoResponse, MapRequest,
    MapResponse, MemberRole, NamedPlace, PeerStatus,
};
use lagesbild_reports::validate::Coverage;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// How long `FederationStatus` waits for each peer unless told otherwise.
pub const DEFAULT_STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait a caller may ask for.
const MAX_STATUS_TIMEOUT: Duration = Duration::from_secs(30);

/// The node service of one node.
#[derive(Debug, Clone)]
pub struct NodeApi {
    org: String,
    federation: Arc<Federation>,
    peers: PeerClient,
    coverage: Coverage,
    /// The gate whose budgets `FederationStatus` reports, if any.
    gate: Option<Arc<ReleaseGate>>,
}

impl NodeApi {
    /// The service of `org`'s node, asking its peers through `peers`.
    pub fn new(org: String, federation: Arc<Federation>, peers: PeerClient) -> Self {
        Self {
            org,
            federation,
            peers,
            coverage: Coverage::STOCKHOLM_INNER_CITY,
            gate: None,
        }
    }

    /// The same service, reporting each peer's privacy budget at `gate`.
    #[must_use]
    pub fn with_gate(mut self, gate: Arc<ReleaseGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// The same service, drawing `coverage` on the offline map.
    #[must_use]
    pub fn with_coverage(mut self, coverage: Coverage) -> Self {
        self.coverage = coverage;
        self
    }

    async fn status_of(&self, member: &Member, timeout: Duration) -> PeerStatus {
        let mut status = PeerStatus {
            org: member.id.clone(),
            display_name: member.display_name.clone(),
            role: match member.role {
                Role::Member => MemberRole::Member,
                Role::Auditor => MemberRole::Auditor,
            } as i32,
            endpoint: member.endpoint.clone().unwrap_or_default(),
            ..PeerStatus::default()
        };
        let Some(channel) = self.peers.channel(&member.id) else {
            status.error = "runs no node".into();
            return status;
        };
        if let Some(gate) = &self.gate {
            let policy = gate.policy().current();
            if let Some((Some(_), Some(per_day))) = policy
                .peer(&member.id)
                .map(|p| (p.epsilon_per_query, p.epsilon_per_day))
            {
                status.budget_per_day = per_day.as_f64();
                status.budget_left_today = per_day
                    .saturating_sub(gate.spent_today(&member.id))
                    .as_f64();
            }
        }
        if let Some(state) = self.peers.witnessed(&member.id) {
            status.witnessed_log_size = state.size;
            status.witness_alarm = state.alarm.map(|a| a.reason).unwrap_or_default();
        }
        // Status is asked of an alarmed peer too: it shows the alarm.
        let request = |message| {
            self.peers
                .request(&member.id, PeerGrant::call(None, "status"), message)
                .map_err(|e| crate::status::unsigned(&e))
        };
        let mut client = NodeServiceClient::new(channel.clone());
        let deadline = Instant::now() + timeout;
        // The first call may include connecting; the round trip is measured on the
        // established channel, as every later call uses it.
        let info = async {
            client.info(request(InfoRequest {})?).await?;
            let started = Instant::now();
            let info = client.info(request(InfoRequest {})?).await?;
            Ok::<_, Status>((info.into_inner(), started.elapsed()))
        };
        match tokio::time::timeout_at(deadline.into(), info).await {
            Ok(Ok((info, rtt))) => {
                status.rtt_micros = rtt.as_micros() as u64;
                if info.org != member.id {
                    status.error = format!("answered as {:?}", info.org);
                } else {
                    status.reachable = true;
                    self.peers.answered(&member.id);
                }
                status.version = info.version;
                status.seen_as = info.caller_org;
            }
            Ok(Err(e)) => status.error = describe(&e),
            Err(_) => status.error = format!("no answer within {} ms", timeout.as_millis()),
        }
        status
    }
}

/// A status as one line: transport errors carry their cause in the source chain.
fn describe(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<InfoResponse>, Status> {
        let caller = caller(&request)?;
        let own = self
            .federation
            .member(&self.org)
            .ok_or_else(|| Status::internal("own org missing from federation"))?;
        Ok(Response::new(InfoResponse {
            org: self.org.clone(),
            display_name: own.display_name.clone(),
            federation: self.federation.name.clone(),
            version: VERSION.to_owned(),
            caller_org: caller.identity.org.clone(),
        }))
    }

    async fn federation_status(
        &self,
        request: Request<FederationStatusRequest>,
    ) -> Result<Response<FederationStatusResponse>, Status> {
        let timeout = match request.get_ref().timeout_ms {
            0 => DEFAULT_STATUS_TIMEOUT,
            ms => Duration::from_millis(ms.into()).min(MAX_STATUS_TIMEOUT),
        };
        let peers = join_all(
            self.federation
                .peers_of(&self.org)
                .map(|member| self.status_of(member, timeout)),
        )
        .await;
        Ok(Response::new(FederationStatusResponse {
            org: self.org.clone(),
            peers,
        }))
    }

    async fn map(&self, _: Request<MapRequest>) -> Result<Response<MapResponse>, Status> {
        let c = self.coverage;
        Ok(Response::new(MapResponse {
            coverage: Some(Area {
                south: c.south,
                west: c.west,
                north: c.north,
                east: c.east,
            }),
            places: lagesbild_reports::places::places()
                .iter()
                .map(|p| NamedPlace {
                    name: p.name.to_string(),
                    kind: p.kind.to_string(),
                    lat: p.lat,
                    lon: p.lon,
                })
                .collect(),
        }))
    }
}
