//! `lagesbild.v1.PolicyService`: the node's own operators ask what a peer may receive.

use crate::release::ReleaseGate;
use lagesbild_policy::Explanation;
use lagesbild_proto::v1::policy_service_server::PolicyService;
use lagesbild_proto::v1::{ExplainRequest, ExplainResponse};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The policy service of one node.
#[derive(Debug, Clone)]
pub struct PolicyApi {
    org: String,
    gate: Arc<ReleaseGate>,
}

impl PolicyApi {
    /// The service of `org`'s node.
    pub fn new(org: String, gate: Arc<ReleaseGate>) -> Self {
        Self { org, gate }
    }
}

#[tonic::async_trait]
impl PolicyService for PolicyApi {
    async fn explain(
        &self,
        request: Request<ExplainRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let peer = request.into_inner().peer;
        if peer.is_empty() {
            return Err(Status::invalid_argument("peer: required"));
        }
        let spent = self.gate.spent_today(&peer);
        let hour = self.gate.hour_now();
        let explanation =
            Explanation::of(&self.gate.policy().current(), &self.org, &peer, spent, hour);
        Ok(Response::new(ExplainResponse {
            json: explanation.to_json(),
            text: explanation.to_text(),
        }))
    }
}
