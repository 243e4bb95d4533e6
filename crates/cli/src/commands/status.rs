//! `lagesbild status`: how the org's node sees each peer.

use crate::client::Client;
use anyhow::{Context, Result};
use lagesbild_proto::v1::node_service_client::NodeServiceClient;
use lagesbild_proto::v1::{FederationStatusRequest, FederationStatusResponse, MemberRole};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
    /// How long to wait for each peer, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u32,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    let client = Client::load(&args.config)?;
    let status = federation_status(&client, args.timeout_ms).await?;
    print!("{}", render(&status));
    Ok(())
}

/// Asks the org's own node how it sees the federation.
pub(crate) async fn federation_status(
    client: &Client,
    timeout_ms: u32,
) -> Result<FederationStatusResponse> {
    let mut node = NodeServiceClient::new(client.own_node_as("status")?);
    let response = node
        .federation_status(FederationStatusRequest { timeout_ms })
        .await
        .with_context(|| {
            format!(
                "asking {}'s node for the federation status",
                client.config.org
            )
        })?;
    Ok(response.into_inner())
}

/// The status as a table, one peer a line.
pub(crate) fn render(status: &FederationStatusResponse) -> String {
    let mut out = format!("federation status seen from {}:\n", status.org);
    out.push_str(&format!(
        "  {:<18} {:<8} {:<22} {:<10} {:<8} {:>9}  {}\n",
        "ORG", "ROLE", "ENDPOINT", "REACHABLE", "VERSION", "RTT", "NOTE"
    ));
    for peer in &status.peers {
        let role = match MemberRole::try_from(peer.role) {
            Ok(MemberRole::Auditor) => "auditor",
            Ok(MemberRole::Member) => "member",
            _ => "?",
        };
        let (reachable, rtt) = if peer.reachable {
            ("yes", format!("{:.1} ms", peer.rtt_micros as f64 / 1000.0))
        } else if peer.endpoint.is_empty() {
            ("-", "-".to_owned())
        } else {
            ("NO", "-".to_owned())
        };
        let endpoint = if peer.endpoint.is_empty() {
            "-"
        } else {
            &peer.endpoint
        };
        let version = if peer.version.is_empty() {
            "-"
        } else {
            &peer.version
        };
        let note = if !peer.witness_alarm.is_empty() {
            format!("WITNESS ALARM: {} {}", peer.witness_alarm, peer.error)
        } else if peer.witnessed_log_size > 0 {
            format!(
                "log witnessed at {} entries {}",
                peer.witnessed_log_size, peer.error
            )
        } else {
            peer.error.clone()
        };
        out.push_str(&format!(
            "  {:<18} {:<8} {:<22} {:<10} {:<8} {:>9}  {}\n",
            peer.org,
            role,
            endpoint,
            reachable,
            version,
            rtt,
            note.trim_end()
        ));
    }
    out
}
