//! Live events: made when a report is stored, followed from every member,
//! alerts raised as they arrive.
//!
//! - [`publish`]: at ingest, the event each recipient's policy allows (through
//!   [`lagesbild_privacy::event`]), kept in the recipient's feed in the store in
//!   the same batch as the report; recalls.
//! - [`follow`]: one task per member (the node itself included) that takes its
//!   feed for this node into the inbox, exactly once, with the alerts each
//!   event raises.
//! - [`alerts`]: the alert rules and playbooks of the coordinated plan.
//!
//! The gRPC side is [`crate::services::events`].

pub mod alerts;
pub mod follow;
pub mod publish;

pub use follow::Follower;
pub use publish::EventMaker;

use lagesbild_store::StoreError;
use std::path::Path;

/// Bytes of the node's pseudonym secret.
const SECRET_BYTES: usize = 32;

/// The node's pseudonym secret in `data_dir`, made on first start. It never
/// leaves the node: with it, anyone could link a peer's event ids to reports.
pub fn pseudonym_secret(data_dir: &Path) -> Result<Vec<u8>, std::io::Error> {
    let path = data_dir.join("pseudonym.key");
    match std::fs::read(&path) {
        Ok(secret) if secret.len() == SECRET_BYTES => return Ok(secret),
        Ok(other) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: {} bytes, expected {SECRET_BYTES}",
                    path.display(),
                    other.len()
                ),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut secret = vec![0u8; SECRET_BYTES];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| std::io::Error::other("no secure random source"))?;
    std::fs::create_dir_all(data_dir)?;
    let tmp = path.with_extension("key.new");
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let _ = std::fs::remove_file(&tmp);
        let mut file = options.open(&tmp)?;
        file.write_all(&secret)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(secret)
}

/// A store failure as the status a caller gets.
pub(crate) fn unavailable(error: StoreError) -> tonic::Status {
    crate::status::IntoStatus::into_status(error)
}
