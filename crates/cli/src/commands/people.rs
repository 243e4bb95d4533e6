//! `lagesbild login | logout | whoami`: a person signs in to their org's node;
//! `lagesbild users`: the node's own accounts.

use crate::client::Client;
use anyhow::{bail, Context, Result};
use lagesbild_people::{Accounts, PersonRole};
use lagesbild_proto::v1::session_service_client::SessionServiceClient;
use lagesbild_proto::v1::{
    ExchangeRequest, OptionsRequest, SessionInfo, SignInRequest, SignOutRequest, WhoAmIRequest,
};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub(crate) struct LoginArgs {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
    /// The account to sign in as (default: the operating system's user name).
    #[arg(long)]
    account: Option<String>,
    /// Read the password from the first line of standard input instead of
    /// asking for it.
    #[arg(long)]
    password_stdin: bool,
    /// Sign in through the org's identity provider instead (the device
    /// grant: open the address shown, on any device, and sign in there).
    #[arg(long, conflicts_with_all = ["account", "password_stdin"])]
    oidc: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct SessionArgs {
    /// The org's client configuration (client.toml).
    #[arg(long)]
    config: PathBuf,
}

/// Signs `account` in at the node of `client`; the session's secret and who
/// it names.
pub(crate) async fn sign_in(
    client: &Client,
    account: &str,
    password: &str,
) -> Result<(String, SessionInfo)> {
    let mut sessions = SessionServiceClient::new(client.own_node()?);
    let answer = sessions
        .sign_in(SignInRequest {
            account: account.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let info = answer.info.context("the node named no session")?;
    Ok((answer.session, info))
}

/// One line of `session`: who, roles, until when.
pub(crate) fn describe(info: &SessionInfo) -> String {
    let until = time::OffsetDateTime::from_unix_timestamp(info.expires_at)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| info.expires_at.to_string());
    format!(
        "{} ({}) as {}, until {until}",
        info.subject,
        info.issuer,
        if info.roles.is_empty() {
            "no role".to_owned()
        } else {
            info.roles.join(", ")
        }
    )
}

fn read_password(prompt: &str, from_stdin: bool) -> Result<String> {
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        rpassword::prompt_password(prompt)
            .context("reading the password from the terminal (or give --password-stdin)")?
    };
    if password.is_empty() {
        bail!("no password given");
    }
    Ok(password)
}

pub(crate) async fn login(args: LoginArgs) -> Result<()> {
    let mut client = Client::load(&args.config)?;
    let (secret, info) = if args.oidc {
        device_sign_in(&client).await?
    } else {
        let account = match args.account {
            Some(account) => account,
            None => std::env::var("USER").context("--account: which account to sign in as")?,
        };
        let password = read_password(&format!("password for {account}: "), args.password_stdin)?;
        sign_in(&client, &account, &password).await?
    };
    let path = client.save_session(&secret)?;
    println!(
        "signed in to {}'s node: {}",
        client.config.org,
        describe(&info)
    );
    println!("session kept in {}", path.display());
    Ok(())
}

/// The device authorization grant (RFC 8628) at the org's identity
/// provider, then its ID token exchanged at the node for a session.
async fn device_sign_in(client: &Client) -> Result<(String, SessionInfo)> {
    let org = &client.config.org;
    let mut sessions = SessionServiceClient::new(client.own_node()?);
    let options = sessions
        .options(OptionsRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    if options.oidc_issuer.is_empty() {
        bail!("{org}'s node trusts no identity provider; sign in with an account of the node (--account)");
    }
    let issuer = options.oidc_issuer.clone();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("making the HTTPS client")?;
    let provider_error = |what: &str| format!("the identity provider {issuer}: {what}");
    let discovery: serde_json::Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        ))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|_| anyhow::anyhow!(provider_error("its discovery document could not be read")))?
        .json()
        .await
        .map_err(|_| anyhow::anyhow!(provider_error("its discovery document is not JSON")))?;
    if discovery["issuer"].as_str() != Some(issuer.as_str()) {
        bail!(provider_error(
            "its discovery document names another issuer"
        ));
    }
    let endpoint = |name: &str| {
        discovery[name]
            .as_str()
            .map(String::from)
            .with_context(|| provider_error(&format!("it offers no {name}")))
    };
    let (device_endpoint, token_endpoint) = (
        endpoint("device_authorization_endpoint")?,
        endpoint("token_endpoint")?,
    );
    let scope = options.oidc_scopes.join(" ");
    let device: serde_json::Value = http
        .post(&device_endpoint)
        .form(&[
            ("client_id", options.oidc_client_id.as_str()),
            ("scope", scope.as_str()),
        ])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|_| {
            anyhow::anyhow!(provider_error(
                "it refused the device authorization request"
            ))
        })?
        .json()
        .await
        .map_err(|_| {
            anyhow::anyhow!(provider_error(
                "its device authorization answer is not JSON"
            ))
        })?;
    let text = |name: &str| {
        device[name].as_str().map(String::from).with_context(|| {
            provider_error(&format!("its device authorization answer has no {name}"))
        })
    };
    let (device_code, user_code) = (text("device_code")?, text("user_code")?);
    let page = text("verification_uri_complete").or_else(|_| text("verification_uri"))?;
    println!("to sign in, open {page} and confirm the code {user_code}");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut interval = device["interval"].as_u64().unwrap_or(5).max(1);
    let deadline = std::time::Instant::now()
        + std::time::Duration::from_secs(device["expires_in"].as_u64().unwrap_or(600));
    let id_token = loop {
        if std::time::Instant::now() > deadline {
            bail!("the code {user_code} expired before the sign-in was confirmed; run `lagesbild login --oidc` again");
        }
        tokio::time::sleep(std::time::Duration::from_secs(interval)).await;
        let answer = http
            .post(&token_endpoint)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.as_str()),
                ("client_id", options.oidc_client_id.as_str()),
            ])
            .send()
            .await
            .map_err(|_| {
                anyhow::anyhow!(provider_error("its token endpoint could not be reached"))
            })?;
        let ok = answer.status().is_success();
        let body: serde_json::Value = answer
            .json()
            .await
            .map_err(|_| anyhow::anyhow!(provider_error("its token answer is not JSON")))?;
        if ok {
            break body["id_token"]
                .as_str()
                .map(String::from)
                .with_context(|| provider_error("its token answer has no id_token"))?;
        }
        match body["error"].as_str().unwrap_or_default() {
            "authorization_pending" => {}
            "slow_down" => interval += 5,
            "access_denied" => bail!("the sign-in was declined at the identity provider"),
            "expired_token" => {
                bail!("the code {user_code} expired; run `lagesbild login --oidc` again")
            }
            other => bail!(provider_error(&format!("it refused the sign-in ({other})"))),
        }
    };
    let answer = sessions
        .exchange(ExchangeRequest { id_token })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    let info = answer.info.context("the node named no session")?;
    Ok((answer.session, info))
}

pub(crate) async fn logout(args: SessionArgs) -> Result<()> {
    let mut client = Client::load(&args.config)?;
    if let Ok(channel) = client.own_node_as("sign-out") {
        // An unreachable node or an ended session: the file goes anyway.
        let _ = SessionServiceClient::new(channel)
            .sign_out(SignOutRequest {})
            .await;
    }
    client.forget_session()?;
    println!("signed out of {}'s node", client.config.org);
    Ok(())
}

pub(crate) async fn whoami(args: SessionArgs) -> Result<()> {
    let client = Client::load(&args.config)?;
    let info = SessionServiceClient::new(client.own_node_as("session")?)
        .who_am_i(WhoAmIRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", describe(&info));
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UsersCommand {
    /// Add an account; asks for its password (or reads it with --password-stdin).
    Add(AddArgs),
    /// Disable an account: its sessions end within a minute.
    Disable(NameArgs),
    /// Enable a disabled account again.
    Enable(NameArgs),
    /// Give an account these roles instead of its old ones; applies on the next call.
    Roles(AddRolesArgs),
    /// List the accounts.
    List(ConfigArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// The node's configuration (node.toml); the accounts file is the one it names.
    #[arg(long)]
    config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NameArgs {
    /// The node's configuration (node.toml).
    #[arg(long)]
    config: PathBuf,
    /// The account.
    name: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AddArgs {
    /// The node's configuration (node.toml).
    #[arg(long)]
    config: PathBuf,
    /// The account's name.
    name: String,
    /// A role: analyst, duty-officer, data-steward, policy-admin, auditor. Repeat per role.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct AddRolesArgs {
    /// The node's configuration (node.toml).
    #[arg(long)]
    config: PathBuf,
    /// The account.
    name: String,
    /// A role. Repeat per role.
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
}

/// The accounts file a node.toml names (`[people] accounts`, default
/// `accounts.toml` beside it). Read loosely: the node checks the rest.
pub(crate) fn accounts_file(config: &Path) -> Result<PathBuf> {
    let text =
        std::fs::read_to_string(config).with_context(|| format!("reading {}", config.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", config.display()))?;
    let named = table
        .get("people")
        .and_then(|p| p.get("accounts"))
        .and_then(|a| a.as_str())
        .unwrap_or("accounts.toml");
    Ok(config.parent().unwrap_or(Path::new(".")).join(named))
}

fn parse_roles(names: &[String]) -> Result<BTreeSet<PersonRole>> {
    names
        .iter()
        .flat_map(|n| n.split(','))
        .map(|n| {
            n.trim()
                .parse::<PersonRole>()
                .map_err(|e| anyhow::anyhow!("--role {e}"))
        })
        .collect()
}

/// Adds `name` with `roles` and `password` to the accounts of the node
/// configured in `config`.
pub fn add_account(
    config: &Path,
    name: &str,
    roles: BTreeSet<PersonRole>,
    password: &str,
) -> Result<()> {
    let path = accounts_file(config)?;
    let mut accounts = Accounts::load(&path)?;
    accounts.add(name, roles, password)?;
    accounts.save(&path)?;
    Ok(())
}

pub(crate) fn users(command: UsersCommand) -> Result<()> {
    match command {
        UsersCommand::Add(args) => {
            let roles = parse_roles(&args.roles)?;
            let password = read_password(
                &format!("password for {}: ", args.name),
                args.password_stdin,
            )?;
            if !args.password_stdin {
                let again = read_password("the same again: ", false)?;
                if again != password {
                    bail!("the two passwords differ; nothing was changed");
                }
            }
            add_account(&args.config, &args.name, roles, &password)?;
            println!("added {}", args.name);
        }
        UsersCommand::Disable(args) => change(&args.config, |a| a.set_disabled(&args.name, true))?,
        UsersCommand::Enable(args) => change(&args.config, |a| a.set_disabled(&args.name, false))?,
        UsersCommand::Roles(args) => {
            let roles = parse_roles(&args.roles)?;
            change(&args.config, |a| a.set_roles(&args.name, roles))?
        }
        UsersCommand::List(args) => {
            let accounts = Accounts::load(&accounts_file(&args.config)?)?;
            if accounts.is_empty() {
                println!("no accounts; add one with `lagesbild users add`");
            }
            for account in accounts.iter() {
                let roles: Vec<&str> = account.roles.iter().map(|r| r.name()).collect();
                println!(
                    "{:<24} {:<40} {}",
                    account.name,
                    roles.join(","),
                    if account.disabled {
                        "disabled"
                    } else {
                        "enabled"
                    }
                );
            }
        }
    }
    Ok(())
}

fn change(
    config: &Path,
    edit: impl FnOnce(&mut Accounts) -> Result<(), lagesbild_people::AccountsError>,
) -> Result<()> {
    let path = accounts_file(config)?;
    let mut accounts = Accounts::load(&path)?;
    edit(&mut accounts)?;
    accounts.save(&path)?;
    println!("changed; the node applies it within seconds");
    Ok(())
}
