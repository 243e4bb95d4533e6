//! Witnessing peers' access logs.
//!
//! After each contact with a peer, the node asks for the peer's latest
//! checkpoint with a consistency proof from the one it holds, checks the
//! signature against the peer's key from the federation file and the proof
//! against the held root, and keeps the new checkpoint. A failure is an alarm:
//! logged, kept on disk with the offending signed checkpoint as evidence, shown
//! in health (`lagesbild.v1.Witness` NOT_SERVING), in `FederationStatus` and by
//! `lagesbild status`, and the peer is not queried again until an operator
//! clears it.

use crate::access::now_micros;
use crate::peers::PeerChannels;
use crate::peers::{peer_request, PeerGrant};
use lagesbild_audit::checkpoint::{log_verifier, Checkpoint, NoteVerifier};
use lagesbild_audit::{witness, Alarm, AuditLog, Hash, WitnessState};
use lagesbild_auth::Signer;
use lagesbild_identity::Federation;
use lagesbild_proto::v1::audit_service_client::AuditServiceClient;
use lagesbild_proto::v1::CheckpointRequest;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// Least time between two checks of one peer. A busy node contacts its peers
/// many times a second; checking at most once a second bounds what witnessing
/// costs both sides. A fork or rewrite is caught at the first contact a second
/// or more after the last check.
const MIN_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The health service name that turns NOT_SERVING while any peer is alarmed.
pub const HEALTH_SERVICE: &str = "lagesbild.v1.Witness";

/// How long one witness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a witness round could not run. (A peer whose log does not verify is
/// not an error of the round: that raises the alarm.)
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    /// A member's published key is not an Ed25519 public key.
    #[error("member {org}: {cause}")]
    MemberKey {
        /// The member.
        org: String,
        /// Why.
        cause: lagesbild_audit::checkpoint::NoteError,
    },
    /// The org does not run a node this node can reach.
    #[error("{0} is not a peer with a node")]
    NotAPeer(String),
    /// The node's own access log could not be read or written.
    #[error("the access log: {0}")]
    Log(#[from] lagesbild_audit::AuditError),
    /// The node could not sign its request.
    #[error("signing the request: {0}")]
    Token(#[from] lagesbild_auth::AuthError),
    /// The peer did not answer in time.
    #[error("no answer within {} s", CHECK_TIMEOUT.as_secs())]
    NoAnswer,
    /// The peer refused or failed.
    #[error("the peer answered {code:?}: {message}")]
    Refused {
        /// The status code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
    /// A checkpoint this node kept no longer verifies (its key changed).
    #[error("the held checkpoint of {org} no longer verifies: {cause}")]
    HeldCheckpoint {
        /// The peer.
        org: String,
        /// Why.
        cause: lagesbild_audit::checkpoint::NoteError,
    },
}

/// The witness of one node.
pub struct Witness {
    log: AuditLog,
    verifiers: HashMap<String, NoteVerifier>,
    peers: PeerChannels,
    signer: Arc<Signer>,
    health: HealthReporter,
    /// Peers being checked now, and when each check last started.
    busy: Mutex<(HashSet<String>, HashMap<String, Instant>)>,
    /// The reason of each raised alarm, by peer: what every query to a peer
    /// asks, kept in memory (the disk holds the evidence).
    alarms: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("peers", &self.verifiers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// The witness of `own_org`'s node for every peer that runs a node.
    pub fn new(
        federation: &Federation,
        own_org: &str,
        log: AuditLog,
        peers: PeerChannels,
        signer: Arc<Signer>,
        health: HealthReporter,
    ) -> Result<Self, WitnessError> {
        let mut verifiers = HashMap::new();
        for member in federation.nodes().filter(|m| m.id != own_org) {
            let verifier = log_verifier(
                &federation.name,
                &member.id,
                member.log_vkey.as_deref().unwrap_or_default(),
            )
            .map_err(|cause| WitnessError::MemberKey {
                org: member.id.clone(),
                cause,
            })?;
            verifiers.insert(member.id.clone(), verifier);
        }
        let alarms = log
            .witnessed_all()?
            .into_iter()
            .filter_map(|(org, state)| state.alarm.map(|a| (org, a.reason)))
            .collect();
        Ok(Self {
            log,
            verifiers,
            peers,
            signer,
            health,
            busy: Mutex::new((HashSet::new(), HashMap::new())),
            alarms: Mutex::new(alarms),
        })
    }

    /// Sets health from the alarms kept on disk (at start-up).
    pub async fn publish_health(&self) {
        let alarmed = !self.alarms.lock().expect("witness alarms").is_empty();
        let status = if alarmed {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        };
        self.health.set_service_status(HEALTH_SERVICE, status).await;
    }

    /// Why `org` must not be queried, if it must not.
    pub fn alarm(&self, org: &str) -> Option<String> {
        self.alarms
            .lock()
            .expect("witness alarms")
            .get(org)
            .cloned()
    }

    /// Checks `org`'s log in the background, unless a check of it is running
    /// or started less than [`MIN_CHECK_INTERVAL`] ago.
    pub fn observe(self: &Arc<Self>, org: &str) {
        if !self.verifiers.contains_key(org) {
            return;
        }
        {
            let mut busy = self.busy.lock().expect("witness lock");
            let (running, last) = &mut *busy;
            let recent = last
                .get(org)
                .is_some_and(|at| at.elapsed() < MIN_CHECK_INTERVAL);
            if recent || !running.insert(org.to_owned()) {
                return;
            }
            last.insert(org.to_owned(), Instant::now());
        }
        let this = self.clone();
        let org = org.to_owned();
        tokio::spawn(async move {
            if let Err(e) = this.check(&org).await {
                tracing::warn!(peer = %org, error = %e, "witness check could not run");
            }
            this.busy.lock().expect("witness lock").0.remove(&org);
        });
    }

    /// One witness round with `org`: fetch, verify, keep or raise the alarm.
    pub async fn check(&self, org: &str) -> Result<(), WitnessError> {
        let verifier = self
            .verifiers
            .get(org)
            .ok_or_else(|| WitnessError::NotAPeer(org.to_owned()))?;
        let held = self.log.witnessed(org)?;
        if held.as_ref().is_some_and(|h| h.alarm.is_some()) {
            return Ok(());
        }
        let channel = self
            .peers
            .get(org)
            .ok_or_else(|| WitnessError::NotAPeer(org.to_owned()))?;
        let held_size = held.as_ref().map_or(0, |h| h.size);
        let request = peer_request(
            &self.signer,
            org,
            PeerGrant::call(None, "witness"),
            CheckpointRequest {
                witness_size: held_size,
            },
        )?;
        let mut client = AuditServiceClient::new(channel.clone());
        let answer = tokio::time::timeout(CHECK_TIMEOUT, client.checkpoint(request))
            .await
            .map_err(|_| WitnessError::NoAnswer)?
            .map_err(|s| WitnessError::Refused {
                code: s.code(),
                message: s.message().to_owned(),
            })?
            .into_inner();
        let new = match verifier.verify(&answer.checkpoint) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                return self
                    .raise(
                        org,
                        held,
                        format!("checkpoint does not verify: {e}"),
                        &answer.checkpoint,
                    )
                    .await
            }
        };
        if let Some(held_state) = &held {
            let held_checkpoint = verifier.verify(&held_state.checkpoint).map_err(|cause| {
                WitnessError::HeldCheckpoint {
                    org: org.to_owned(),
                    cause,
                }
            })?;
            let proof = hashes(&answer.consistency);
            let verdict = match proof {
                Some(proof) => {
                    witness::check(&held_checkpoint, &new, &proof).map_err(|e| e.to_string())
                }
                None => Err("consistency proof holds a hash that is not 32 bytes".into()),
            };
            if let Err(reason) = verdict {
                return self.raise(org, held, reason, &answer.checkpoint).await;
            }
        }
        self.keep(org, &new, &answer.checkpoint).await
    }

    async fn keep(&self, org: &str, new: &Checkpoint, note: &str) -> Result<(), WitnessError> {
        let state = WitnessState {
            checkpoint: note.to_owned(),
            size: new.size,
            seen_micros: now_micros(),
            alarm: None,
        };
        Ok(self.log.record_witness(org, &state).await?)
    }

    async fn raise(
        &self,
        org: &str,
        held: Option<WitnessState>,
        reason: String,
        evidence: &str,
    ) -> Result<(), WitnessError> {
        tracing::error!(peer = %org, %reason, "ALARM: peer's access log forked or was rewritten; the peer is not queried until an operator clears it");
        let mut state = held.unwrap_or(WitnessState {
            checkpoint: String::new(),
            size: 0,
            seen_micros: now_micros(),
            alarm: None,
        });
        state.alarm = Some(Alarm {
            reason: reason.clone(),
            at_micros: now_micros(),
            evidence: evidence.to_owned(),
        });
        self.log.record_witness(org, &state).await?;
        self.alarms
            .lock()
            .expect("witness alarms")
            .insert(org.to_owned(), reason);
        self.health
            .set_service_status(HEALTH_SERVICE, ServingStatus::NotServing)
            .await;
        Ok(())
    }

    /// Clears `org`'s alarm: its next checkpoint is taken as the new start.
    pub async fn clear(&self, org: &str) -> Result<bool, WitnessError> {
        let Some(state) = self.log.witnessed(org)? else {
            return Ok(false);
        };
        let Some(alarm) = state.alarm else {
            return Ok(false);
        };
        tracing::warn!(peer = %org, reason = %alarm.reason, "witness alarm cleared by an operator");
        // Start over from whatever the peer shows next.
        self.log.forget_witness(org).await?;
        self.alarms.lock().expect("witness alarms").remove(org);
        self.publish_health().await;
        Ok(true)
    }

    /// What this node holds of `org`'s log.
    pub fn state(&self, org: &str) -> Option<WitnessState> {
        self.log.witnessed(org).ok().flatten()
    }

    /// Every peer's witness state.
    pub fn states(&self) -> Vec<(String, WitnessState)> {
        self.log.witnessed_all().unwrap_or_default()
    }
}

fn hashes(bytes: &[Vec<u8>]) -> Option<Vec<Hash>> {
    bytes.iter().map(|b| b.as_slice().try_into().ok()).collect()
}
