//! `lagesbild serve`: run one node until SIGINT or SIGTERM.

use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The node's configuration file (node.toml).
    #[arg(long)]
    config: PathBuf,
}

pub(crate) async fn run(args: Args) -> Result<()> {
    lagesbild_node::serve(&args.config, shutdown_signal()).await?;
    Ok(())
}

/// Completes on the first SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
