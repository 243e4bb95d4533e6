//! `lagesbild.v1.AuditService`: the access log to auditors, its members' own
//! trails, and its checkpoints to witnesses.

use crate::auth::authorised;
use crate::status::IntoStatus;
use crate::witness::Witness;
use lagesbild_audit::{AuditLog, Entry};
use lagesbild_identity::Role;
use lagesbild_proto::v1::audit_service_server::AuditService;
use lagesbild_proto::v1::{
    CheckpointRequest, CheckpointResponse, CheckpointsRequest, CheckpointsResponse,
    ClearAlarmRequest, ClearAlarmResponse, ConsistencyProofRequest, ConsistencyProofResponse,
    EntriesRequest, EntriesResponse, InclusionProofRequest, InclusionProofResponse, LogEntry,
    WitnessedPeer, WitnessesRequest, WitnessesResponse,
};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Most entries in one page.
const MAX_PAGE: usize = 10_000;
/// Most entry bytes in one page (well under the 4 MiB default message limit).
const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;

/// The audit service of one node.
#[derive(Debug, Clone)]
pub struct AuditApi {
    org: String,
    log: AuditLog,
    witness: Arc<Witness>,
}

impl AuditApi {
    /// The service of `org`'s node with this access log and witness.
    pub fn new(org: String, log: AuditLog, witness: Arc<Witness>) -> Self {
        Self { org, log, witness }
    }

    /// Whose entries the caller may read: everything for an auditor org and
    /// for the node's own org (its auditors, by the table), else only those
    /// about the caller's own org's calls.
    fn reader_of<T>(&self, request: &Request<T>) -> Result<Option<String>, Status> {
        let token = authorised(request)?;
        Ok(match token.role {
            Role::Auditor => None,
            Role::Member if token.org.as_str() == self.org => None,
            Role::Member => Some(token.org.to_string()),
        })
    }
}

fn about(entry: &[u8], org: &str) -> bool {
    Entry::decode(entry).is_ok_and(|e| e.peer_org == org)
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        let witness_size = request.into_inner().witness_size;
        let (size, note) = self.log.latest();
        if witness_size > size {
            // Tell the witness plainly: its held checkpoint is beyond this log.
            return Ok(Response::new(CheckpointResponse {
                checkpoint: note,
                size,
                consistency: vec![],
            }));
        }
        let proof = self
            .log
            .consistency_proof(witness_size, size)
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(CheckpointResponse {
            checkpoint: note,
            size,
            consistency: proof.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn entries(
        &self,
        request: Request<EntriesRequest>,
    ) -> Result<Response<EntriesResponse>, Status> {
        let reader = self.reader_of(&request)?;
        let asked = request.into_inner();
        let limit = match asked.limit {
            0 => MAX_PAGE,
            n => (n as usize).min(MAX_PAGE),
        };
        let size = self.log.size();
        let page = self
            .log
            .entries(asked.start, limit, MAX_PAGE_BYTES)
            .map_err(IntoStatus::into_status)?;
        let next = page.last().map_or(size.max(asked.start), |(i, _, _)| i + 1);
        let entries = page
            .into_iter()
            .filter(|(_, _, bytes)| reader.as_deref().is_none_or(|org| about(bytes, org)))
            .map(|(index, leaf, entry)| LogEntry {
                index,
                leaf_hash: leaf.to_vec(),
                entry,
            })
            .collect();
        Ok(Response::new(EntriesResponse {
            entries,
            next,
            size,
        }))
    }

    async fn inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        let reader = self.reader_of(&request)?;
        let asked = request.into_inner();
        let (latest, note) = self.log.latest();
        let size = if asked.tree_size == 0 {
            latest
        } else {
            asked.tree_size
        };
        if let Some(org) = reader {
            let entry = self
                .log
                .entry(asked.index)
                .map_err(IntoStatus::into_status)?;
            if !entry.is_some_and(|e| about(&e, &org)) {
                return Err(Status::permission_denied(format!(
                    "entry {} is not about a call of {org}; members may prove only their own",
                    asked.index
                )));
            }
        }
        let path = self
            .log
            .inclusion_proof(asked.index, size)
            .map_err(IntoStatus::into_status)?;
        let leaf = self
            .log
            .leaf(asked.index)
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(InclusionProofResponse {
            tree_size: size,
            leaf_hash: leaf.to_vec(),
            path: path.iter().map(|h| h.to_vec()).collect(),
            checkpoint: if asked.tree_size == 0 {
                note
            } else {
                String::new()
            },
        }))
    }

    async fn consistency_proof(
        &self,
        request: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        let asked = request.into_inner();
        let proof = self
            .log
            .consistency_proof(asked.old_size, asked.new_size)
            .map_err(IntoStatus::into_status)?;
        Ok(Response::new(ConsistencyProofResponse {
            proof: proof.iter().map(|h| h.to_vec()).collect(),
        }))
    }

    async fn checkpoints(
        &self,
        _request: Request<CheckpointsRequest>,
    ) -> Result<Response<CheckpointsResponse>, Status> {
        let mut checkpoints = self.log.checkpoints().map_err(IntoStatus::into_status)?;
        let (_, latest) = self.log.latest();
        if checkpoints.last() != Some(&latest) {
            checkpoints.push(latest);
        }
        Ok(Response::new(CheckpointsResponse { checkpoints }))
    }

    async fn witnesses(
        &self,
        _request: Request<WitnessesRequest>,
    ) -> Result<Response<WitnessesResponse>, Status> {
        let peers = self
            .witness
            .states()
            .into_iter()
            .map(|(org, state)| WitnessedPeer {
                org,
                checkpoint: state.checkpoint,
                size: state.size,
                seen_unix_micros: state.seen_micros,
                alarm: state.alarm.is_some(),
                alarm_reason: state
                    .alarm
                    .as_ref()
                    .map(|a| a.reason.clone())
                    .unwrap_or_default(),
                evidence: state.alarm.map(|a| a.evidence).unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(WitnessesResponse { peers }))
    }

    async fn clear_alarm(
        &self,
        request: Request<ClearAlarmRequest>,
    ) -> Result<Response<ClearAlarmResponse>, Status> {
        // Only the node's own operators get here (the authorisation table).
        let org = request.into_inner().org;
        match self.witness.clear(&org).await {
            Ok(true) => Ok(Response::new(ClearAlarmResponse {})),
            Ok(false) => Err(Status::failed_precondition(format!(
                "there is no witness alarm for {org:?}"
            ))),
            Err(e) => Err(e.into_status()),
        }
    }
}
