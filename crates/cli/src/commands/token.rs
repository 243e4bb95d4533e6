//! `lagesbild token issue`: a token signed with the node's key, for its
//! operator (on the node's certificate) or a peer's tests. People sign in
//! instead (`lagesbild login`); machine clients use their own certificate.

use anyhow::{bail, Result};
use lagesbild_auth::{Grant, MAX_TTL_SECS};
use lagesbild_policy::Scope;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Sign a token with the org's Ed25519 key (held by its node) and print it.
    Issue(IssueArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct IssueArgs {
    /// The node's configuration (node.toml), which names the org's token key.
    #[arg(long)]
    config: PathBuf,
    /// Who the token is for (a person or a service of the org).
    #[arg(long)]
    sub: String,
    /// Scopes, repeated or space/comma separated: report:write aggregate:read
    /// events:read audit:read policy:admin.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Why the holder will ask (must be a purpose the called node's policy lists).
    #[arg(long)]
    purpose: String,
    /// Lifetime: 90s, 15m, 8h (at most 24h).
    #[arg(long, default_value = "15m")]
    ttl: String,
    /// The organisation whose node the token is for (default: the org's own).
    #[arg(long)]
    aud: Option<String>,
}

/// `90s`, `15m`, `8h` or plain seconds.
fn parse_ttl(text: &str) -> Result<Duration> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&text[..i], &text[i..]),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--ttl {text:?}: expected a number with s, m or h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("--ttl {text:?}: the unit must be s, m or h"),
    };
    if secs == 0 || secs > MAX_TTL_SECS {
        bail!(
            "--ttl {text:?}: must be between 1 s and {} h",
            MAX_TTL_SECS / 3600
        );
    }
    Ok(Duration::from_secs(secs))
}

pub(crate) fn run(command: Command) -> Result<()> {
    let Command::Issue(args) = command;
    let node = lagesbild_node::config::NodeConfig::load(&args.config)?;
    let scopes: Vec<String> = args
        .scopes
        .iter()
        .flat_map(|s| s.split([' ', ',']))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    if let Some(bad) = scopes.iter().find(|s| Scope::parse(s).is_none()) {
        let known: Vec<&str> = Scope::ALL.iter().map(|s| s.name()).collect();
        bail!(
            "--scope {bad:?} is not a scope (known: {})",
            known.join(", ")
        );
    }
    if args.purpose.trim().is_empty() {
        bail!("--purpose must name why the data is asked for");
    }
    let audience = args.aud.unwrap_or_else(|| node.config.org.clone());
    if node.federation.member(&audience).is_none() {
        bail!("--aud {audience:?} is not a member of the federation");
    }
    let token = node.keys.token.issue(&Grant {
        audience: &audience,
        subject: &args.sub,
        scopes: &scopes,
        purpose: &args.purpose,
        ttl: parse_ttl(&args.ttl)?,
        act: None,
    })?;
    println!("{token}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_units() {
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_ttl("30").unwrap(), Duration::from_secs(30));
        assert!(parse_ttl("25h").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("5d").is_err());
    }
}
