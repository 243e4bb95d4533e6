//! `lagesbild.v1.PolicyService`: the node's own operators ask what a peer may receive.

use crate::release::ReleaseGate;
use lagesbild_policy::Explanation;
use lagesbild_policy::Policy;
use lagesbild_proto::v1::policy_service_server::PolicyService;
use lagesbild_proto::v1::{
    ExplainRequest, ExplainResponse, PolicyText, PolicyTextRequest, PreviewRequest, SaveRequest,
    SaveResponse,
};
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
        Ok(Response::new(
            self.explain_under(&self.gate.policy().current(), &peer),
        ))
    }

    async fn text(
        &self,
        _request: Request<PolicyTextRequest>,
    ) -> Result<Response<PolicyText>, Status> {
        let text =
            self.gate.policy().text().map_err(|e| {
                Status::unavailable(format!("the policy file could not be read: {e}"))
            })?;
        Ok(Response::new(PolicyText { text }))
    }

    async fn preview(
        &self,
        request: Request<PreviewRequest>,
    ) -> Result<Response<ExplainResponse>, Status> {
        let PreviewRequest { draft, peer } = request.into_inner();
        if peer.is_empty() {
            return Err(Status::invalid_argument("peer: required"));
        }
        let draft = checked(&draft)?;
        Ok(Response::new(self.explain_under(&draft, &peer)))
    }

    async fn save(&self, request: Request<SaveRequest>) -> Result<Response<SaveResponse>, Status> {
        let text = request.into_inner().draft;
        let draft = checked(&text)?;
        self.gate.policy().save(&text).map_err(|e| {
            Status::unavailable(format!("the policy file could not be written: {e}"))
        })?;
        tracing::info!(peers = draft.peers.len(), "policy saved from the console");
        Ok(Response::new(SaveResponse {
            peers: draft.peers.len() as u32,
        }))
    }
}

/// Longest draft heard.
const MAX_DRAFT_BYTES: usize = 256 * 1024;

/// A draft as the policy file it would become, with the file's checks.
fn checked(text: &str) -> Result<Policy, Status> {
    if text.len() > MAX_DRAFT_BYTES {
        return Err(Status::invalid_argument(format!(
            "draft: at most {MAX_DRAFT_BYTES} bytes"
        )));
    }
    Policy::parse(text).map_err(|e| Status::invalid_argument(format!("draft: {e}")))
}

impl PolicyApi {
    /// What `peer` may receive under `policy`, with today's budget spent.
    fn explain_under(&self, policy: &Policy, peer: &str) -> ExplainResponse {
        let spent = self.gate.spent_today(peer);
        let hour = self.gate.hour_now();
        let explanation = Explanation::of(policy, &self.org, peer, spent, hour);
        ExplainResponse {
            json: explanation.to_json(),
            text: explanation.to_text(),
        }
    }
}
