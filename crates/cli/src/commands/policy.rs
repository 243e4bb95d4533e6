//! `lagesbild policy check|explain`: see what a policy lets each peer receive.

use anyhow::{bail, Context, Result};
use lagesbild_auth::{Bearer, Grant};
use lagesbild_identity::tls::client_config;
use lagesbild_identity::Federation;
use lagesbild_node::release::spent_on_day_of;
use lagesbild_node::NodeConfig;
use lagesbild_policy::{Explanation, Policy};
use lagesbild_privacy::Epsilon;
use lagesbild_proto::v1::policy_service_client::PolicyServiceClient;
use lagesbild_proto::v1::ExplainRequest;
use lagesbild_store::{Store, StoreOptions};
use lagesbild_transport::{channel, ChannelOptions};
use lagesbild_vocabulary::Scope;
use lagesbild_vocabulary::{Clock, SystemClock};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Check a policy file before loading it; print what it gives each peer.
    Check {
        /// The policy file.
        file: PathBuf,
        /// Also check that every peer it names is a member of this federation.
        #[arg(long)]
        federation: Option<PathBuf>,
        /// Print JSON instead of words.
        #[arg(long)]
        json: bool,
    },
    /// What a peer may receive now from a node, with its budget left today.
    Explain {
        /// The node's configuration (node.toml).
        #[arg(long)]
        config: PathBuf,
        /// The peer organisation.
        #[arg(long)]
        peer: String,
        /// Print JSON instead of words.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: Command) -> Result<()> {
    match command {
        Command::Check {
            file,
            federation,
            json,
        } => check(file, federation, json),
        Command::Explain { config, peer, json } => explain(config, peer, json).await,
    }
}

fn check(file: PathBuf, federation: Option<PathBuf>, json: bool) -> Result<()> {
    let policy = Policy::load(&file)?;
    if let Some(path) = federation {
        let federation = Federation::load(&path)?;
        for org in policy.peers.keys() {
            if federation.member(org).is_none() {
                bail!(
                    "{}: peer.{org} is not a member of federation {:?} ({})",
                    file.display(),
                    federation.name,
                    path.display()
                );
            }
        }
    }
    let explanations: Vec<Explanation> = policy
        .peers
        .keys()
        .map(|org| {
            Explanation::of(
                &policy,
                "this node",
                org,
                Epsilon::ZERO,
                SystemClock.utc_hour(),
            )
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&explanations)?);
        return Ok(());
    }
    println!(
        "{}: valid; {} peer(s) named, everyone else gets nothing.",
        file.display(),
        explanations.len()
    );
    for e in &explanations {
        println!();
        print!("{}", e.to_text());
    }
    Ok(())
}

async fn explain(config: PathBuf, peer: String, json: bool) -> Result<()> {
    let loaded = NodeConfig::load(&config)?;
    let explanation = match ask_node(&loaded, &peer).await {
        Ok(explanation) => explanation,
        Err(e) if is_unreachable(&e) => {
            eprintln!(
                "note: {}'s node is not answering ({e:#}); explaining from {} and the store",
                loaded.config.org,
                loaded.config.policy.display()
            );
            let store = Store::open(
                &loaded.config.data_dir.join("store"),
                StoreOptions::default(),
            )
            .context("opening the node's store (is the node running but unreachable?)")?;
            let hour = SystemClock.utc_hour();
            let spent = spent_on_day_of(&store, &peer, hour);
            Explanation::of(&loaded.policy, &loaded.config.org, &peer, spent, hour)
        }
        Err(e) => return Err(e),
    };
    if json {
        println!("{}", explanation.to_json());
    } else {
        print!("{}", explanation.to_text());
    }
    Ok(())
}

fn is_unreachable(error: &anyhow::Error) -> bool {
    error.downcast_ref::<tonic::Status>().is_some_and(|s| {
        matches!(
            s.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        )
    })
}

/// Asks the running node, with the node's own certificate, for the policy in force.
async fn ask_node(
    loaded: &lagesbild_node::config::LoadedConfig,
    peer: &str,
) -> Result<Explanation> {
    let org = &loaded.config.org;
    let address = loaded
        .config
        .listen
        .replace("0.0.0.0", "127.0.0.1")
        .replace("[::]", "[::1]");
    let keys = &loaded.keys;
    let tls = client_config(
        &loaded.federation,
        org,
        keys.tls_chain.clone(),
        keys.tls_key.clone_key(),
    )?;
    let options = ChannelOptions {
        connect_timeout: Duration::from_secs(2),
        ..ChannelOptions::default()
    };
    let token = keys.token.issue(&Grant {
        audience: org,
        // The node's operator, holding its key and certificate.
        subject: "node-operator",
        scopes: &[Scope::PolicyAdmin.name().to_owned()],
        purpose: "policy-explain",
        ttl: Duration::from_secs(60),
        act: None,
    })?;
    let mut client = PolicyServiceClient::with_interceptor(
        channel(&address, tls, options)?,
        Bearer::new(&token)?,
    );
    let response = client
        .explain(ExplainRequest {
            peer: peer.to_owned(),
        })
        .await?;
    serde_json::from_str(&response.into_inner().json)
        .context("the node's explanation is not valid JSON")
}
