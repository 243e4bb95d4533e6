//! The node-local accounts file (`accounts.toml`): names, roles and argon2id
//! password hashes, for orgs without an identity provider and for the demo.
//!
//! `lagesbild users` writes it; the node reads it at start and whenever it
//! changes. Writes go to a temporary file that is synced and renamed over the
//! old one, so a reader sees the old file or the new one, never half of one.

use crate::role::PersonRole;
use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, SaltString};
use argon2::{Argon2, PasswordVerifier};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The only accounts file format this version reads.
pub const FORMAT_VERSION: u32 = 1;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// Why the accounts file or a change to it is refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// The file could not be read or written.
    #[error("accounts file {path}: {cause}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: std::io::Error,
    },
    /// The file is not an accounts file of this version.
    #[error("accounts file {path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
    /// A name that can't be an account's.
    #[error("{0:?} is not a usable account name: use 1 to 64 lower-case letters, digits, '.', '-', '_' or '@'")]
    Name(String),
    /// The account exists already.
    #[error("an account named {0:?} exists already")]
    Exists(String),
    /// No account of that name.
    #[error("there is no account named {0:?}")]
    NoSuchAccount(String),
    /// A password too short to be used.
    #[error("the password is too short: use at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    /// An account without a role could do nothing.
    #[error("give the account at least one role (known: {})", PersonRole::known())]
    NoRole,
}

/// One person's account at the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The name the person signs in with.
    pub name: String,
    /// What they may do.
    pub roles: BTreeSet<PersonRole>,
    /// Whether sign-in and the person's sessions are refused.
    pub disabled: bool,
    hash: String,
}

impl Account {
    /// Whether `password` is this account's. Takes tens of milliseconds by design.
    pub fn password_matches(&self, password: &str) -> bool {
        hash_matches(&self.hash, password)
    }
}

fn hash_matches(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Spends as long as checking a real account's password, so an unknown name
/// takes no less time to refuse than a wrong password.
pub(crate) fn spend_a_password_check(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not an account's password").unwrap_or_default());
    let _ = hash_matches(hash, password);
}

fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    // Argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane): the
    // OWASP-recommended minimum.
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// A random password of 16 URL-safe characters (96 bits).
pub fn generate_password() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 12];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's secure random generator failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `name` can be an account's name.
pub fn is_account_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_' | b'@')
        })
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    version: u32,
    #[serde(default, rename = "account")]
    accounts: Vec<AccountForm>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountForm {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    disabled: bool,
    password: String,
}

/// All accounts of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    by_name: BTreeMap<String, Account>,
}

impl Accounts {
    /// Reads `path`; a file that does not exist holds no accounts.
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(cause) => {
                return Err(AccountsError::Io {
                    path: path.to_owned(),
                    cause,
                })
            }
        };
        Self::parse(&text).map_err(|reason| AccountsError::Format {
            path: path.to_owned(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, String> {
        let form: FileForm = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        if form.version != FORMAT_VERSION {
            return Err(format!(
                "version {} is not supported (this Lägesbild reads version {FORMAT_VERSION})",
                form.version
            ));
        }
        let mut by_name = BTreeMap::new();
        for account in form.accounts {
            if !is_account_name(&account.name) {
                return Err(AccountsError::Name(account.name).to_string());
            }
            let roles = account
                .roles
                .iter()
                .map(|r| r.parse::<PersonRole>())
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| format!("account {:?}: {e}", account.name))?;
            if PasswordHash::new(&account.password).is_err() {
                return Err(format!(
                    "account {:?}: the password is not an argon2 hash; set it with `lagesbild users add`",
                    account.name
                ));
            }
            let name = account.name.clone();
            let entry = Account {
                name: account.name,
                roles,
                disabled: account.disabled,
                hash: account.password,
            };
            if by_name.insert(name.clone(), entry).is_some() {
                return Err(format!("account {name:?} is listed twice"));
            }
        }
        Ok(Self { by_name })
    }

    /// Writes all accounts to `path`, replacing it whole.
    pub fn save(&self, path: &Path) -> Result<(), AccountsError> {
        let form = FileForm {
            version: FORMAT_VERSION,
            accounts: self
                .by_name
                .values()
                .map(|a| AccountForm {
                    name: a.name.clone(),
                    roles: a.roles.iter().map(|r| r.name().to_owned()).collect(),
                    disabled: a.disabled,
                    password: a.hash.clone(),
                })
                .collect(),
        };
        let text = format!(
            "# The node's own accounts. Change it with `lagesbild users`; the node\n# reads it again within seconds of a change.\n{}",
            toml::to_string(&form).expect("accounts serialise")
        );
        let io = |cause| AccountsError::Io {
            path: path.to_owned(),
            cause,
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut temporary = tempfile_in(dir, path).map_err(io)?;
        temporary.1.write_all(text.as_bytes()).map_err(io)?;
        temporary.1.sync_all().map_err(io)?;
        std::fs::rename(&temporary.0, path).map_err(io)?;
        if let Ok(dir) = std::fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Adds an account.
    pub fn add(
        &mut self,
        name: &str,
        roles: BTreeSet<PersonRole>,
        password: &str,
    ) -> Result<(), AccountsError> {
        if !is_account_name(name) {
            return Err(AccountsError::Name(name.to_owned()));
        }
        if self.by_name.contains_key(name) {
            return Err(AccountsError::Exists(name.to_owned()));
        }
        if roles.is_empty() {
            return Err(AccountsError::NoRole);
        }
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(AccountsError::WeakPassword);
        }
        let hash = hash_password(password).map_err(|e| AccountsError::Format {
            path: PathBuf::new(),
            reason: format!("hashing the password failed: {e}"),
        })?;
        self.by_name.insert(
            name.to_owned(),
            Account {
                name: name.to_owned(),
                roles,
                disabled: false,
                hash,
            },
        );
        Ok(())
    }

    /// Disables (or enables again) the account `name`.
    pub fn set_disabled(&mut self, name: &str, disabled: bool) -> Result<(), AccountsError> {
        let account = self
            .by_name
            .get_mut(name)
            .ok_or_else(|| AccountsError::NoSuchAccount(name.to_owned()))?;
        account.disabled = disabled;
        Ok(())
    }

    /// Gives the account `name` these roles instead of its old ones.
    pub fn set_roles(
        &mut self,
        name: &str,
        roles: BTreeSet<PersonRole>,
    ) -> Result<(), AccountsError> {
        if roles.is_empty() {
            return Err(AccountsError::NoRole);
        }
        let account = self
            .by_name
            .get_mut(name)
            .ok_or_else(|| AccountsError::NoSuchAccount(name.to_owned()))?;
        account.roles = roles;
        Ok(())
    }

    /// The account `name`.
    pub fn get(&self, name: &str) -> Option<&Account> {
        self.by_name.get(name)
    }

    /// All accounts, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Account> {
        self.by_name.values()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// A new file beside `path`, named after it, created exclusively.
fn tempfile_in(dir: &Path, path: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use ring::rand::SecureRandom;
    let mut suffix = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| std::io::Error::other("no secure random numbers"))?;
    let name = format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("accounts"),
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let temporary = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&temporary)?;
    Ok((temporary, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[PersonRole]) -> BTreeSet<PersonRole> {
        names.iter().copied().collect()
    }

    #[test]
    fn accounts_survive_a_save_and_check_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        assert!(Accounts::load(&path).unwrap().is_empty());
        let mut accounts = Accounts::default();
        accounts
            .add(
                "anna",
                roles(&[PersonRole::Analyst]),
                "correct horse battery",
            )
            .unwrap();
        accounts.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"), "{text}");
        let loaded = Accounts::load(&path).unwrap();
        assert_eq!(loaded, accounts);
        let anna = loaded.get("anna").unwrap();
        assert!(anna.password_matches("correct horse battery"));
        assert!(!anna.password_matches("correct horse batterz"));
    }

    #[test]
    fn bad_changes_are_refused_whole() {
        let mut accounts = Accounts::default();
        let analyst = roles(&[PersonRole::Analyst]);
        assert!(matches!(
            accounts.add("Anna", analyst.clone(), "long enough password"),
            Err(AccountsError::Name(_))
        ));
        assert!(matches!(
            accounts.add("anna", analyst.clone(), "short"),
            Err(AccountsError::WeakPassword)
        ));
        assert!(matches!(
            accounts.add("anna", BTreeSet::new(), "long enough password"),
            Err(AccountsError::NoRole)
        ));
        assert!(accounts.is_empty());
        accounts
            .add("anna", analyst.clone(), "long enough password")
            .unwrap();
        assert!(matches!(
            accounts.add("anna", analyst, "long enough password"),
            Err(AccountsError::Exists(_))
        ));
        assert!(matches!(
            accounts.set_disabled("bert", true),
            Err(AccountsError::NoSuchAccount(_))
        ));
    }

    #[test]
    fn a_file_with_a_plain_password_or_unknown_role_is_refused() {
        let plain = "version = 1\n[[account]]\nname = \"a\"\nroles = [\"analyst\"]\npassword = \"hunter2\"\n";
        let err = Accounts::parse(plain).unwrap_err();
        assert!(err.contains("not an argon2 hash"), "{err}");
        let hash = hash_password("long enough password").unwrap();
        let role = format!(
            "version = 1\n[[account]]\nname = \"a\"\nroles = [\"admin\"]\npassword = \"{hash}\"\n"
        );
        let err = Accounts::parse(&role).unwrap_err();
        assert!(err.contains("not a role"), "{err}");
        let version = "version = 2\n";
        assert!(Accounts::parse(version).unwrap_err().contains("version 2"));
        // Control: the same account with a known role loads.
        let good = role.replace("admin", "auditor");
        assert!(Accounts::parse(&good).is_ok());
    }
}
