//! The `lagesbild` command line.
//!
//! Parses arguments, runs one command, and reports any error as one line with a
//! non-zero exit. The work itself lives in the library crates; this crate wires
//! them to the terminal. [`provision`] lays out a federation's files (used by
//! `certs init` and `demo`), [`client`] is how the org's own tools reach its node.

#![warn(missing_docs)]

pub mod client;
mod commands;
pub mod provision;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Lägesbild: a federated, privacy-preserving situation picture.
#[derive(Debug, Parser)]
#[command(name = "lagesbild", version, about, long_about = None)]
struct Cli {
    /// Log as JSON lines instead of text (logs go to standard error).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The access log: checkpoints, entries, proofs, verification, export.
    #[command(subcommand)]
    Audit(commands::audit::Command),
    /// Run a five-organisation federation on loopback and show its status.
    Demo(commands::demo::Args),
    /// Certificates, keys and the federation file.
    #[command(subcommand)]
    Certs(commands::certs::Command),
    /// Load reports from a file into the org's own node.
    Ingest(commands::ingest::Args),
    /// Sign in to the org's own node; later commands use the session.
    Login(commands::people::LoginArgs),
    /// End the session with the org's own node.
    Logout(commands::people::SessionArgs),
    /// Who the session names, and their roles now.
    Whoami(commands::people::SessionArgs),
    /// The node's own accounts: add, disable, enable, roles, list.
    #[command(subcommand)]
    Users(commands::people::UsersCommand),
    /// Check a policy file, or explain what a peer may receive from a node.
    #[command(subcommand)]
    Policy(commands::policy::Command),
    /// The federated situation picture: table, JSON, GeoJSON or HTML.
    Query(commands::query::Args),
    /// Recall the events of a report entered in error.
    Recall(commands::watch::RecallArgs),
    /// Show what a free text becomes before it may leave the node, rule by rule.
    Scrub(commands::scrub::Args),
    /// Run one node.
    Serve(commands::serve::Args),
    /// Show how a node sees each peer: reachable, version, round-trip time.
    Status(commands::status::Args),
    /// Tokens for the org's people and services.
    #[command(subcommand)]
    Token(commands::token::Command),
    /// Follow live events and alerts from the whole federation.
    Watch(commands::watch::Args),
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return report(anyhow::anyhow!("starting the async runtime: {e}")),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Audit(command) => commands::audit::run(command).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Certs(command) => commands::certs::run(command),
            Command::Ingest(args) => commands::ingest::run(args).await,
            Command::Login(args) => commands::people::login(args).await,
            Command::Logout(args) => commands::people::logout(args).await,
            Command::Whoami(args) => commands::people::whoami(args).await,
            Command::Users(command) => commands::people::users(command),
            Command::Policy(command) => commands::policy::run(command).await,
            Command::Query(args) => commands::query::run(args).await,
            Command::Scrub(args) => commands::scrub::run(args),
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Status(args) => commands::status::run(args).await,
            Command::Token(command) => commands::token::run(command),
            Command::Watch(args) => commands::watch::run(args).await,
            Command::Recall(args) => commands::watch::recall(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(e),
    }
}

fn report(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    // A node logs its life; a command-line tool only its warnings.
    let default = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
