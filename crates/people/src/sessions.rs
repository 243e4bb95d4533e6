//! Sign-in, sessions, and the limit on wrong passwords.

use crate::accounts::{self, Accounts, AccountsError};
use crate::role::PersonRole;
use base64::Engine;
use lagesbild_vocabulary::SharedClock;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

/// What every session secret starts with, so a session is never mistaken for
/// a JWT (which starts `ey`).
pub const SESSION_PREFIX: &str = "lgs_";

/// Wrong passwords for one name within [`FAILURE_WINDOW`] before sign-in as
/// that name is refused until the window has passed.
pub const MAX_FAILURES: usize = 5;
/// See [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most names whose failures are remembered at once.
const MAX_FAILING_NAMES: usize = 10_000;
/// Most sessions a node holds at once.
const MAX_SESSIONS: usize = 100_000;

/// A verified person: who, by whose word.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Person {
    /// The subject, as the issuer names them.
    pub sub: String,
    /// Who verified them: an identity provider's issuer URL, or
    /// `local:<org>` for the node's own accounts.
    pub issuer: String,
}

impl Person {
    /// How logs name the person: `sub (issuer)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.sub, self.issuer)
    }
}

/// A session's public name: the first 16 hex digits of the SHA-256 of its
/// secret. Logs name the sign-in a call came from by it; it can't be used to
/// call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(pub String);

impl SessionId {
    /// How access logs name the sign-in a call came with: `session:<id>`.
    pub fn log_name(&self) -> String {
        format!("session:{}", self.0)
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a session's roles come from.
#[derive(Debug, Clone)]
enum Grants {
    /// The account's roles, read on every call.
    Account(String),
    /// The roles the identity provider's groups gave at sign-in.
    Provider(BTreeSet<PersonRole>),
}

#[derive(Debug, Clone)]
struct Session {
    id: SessionId,
    person: Person,
    grants: Grants,
    expires: i64,
}

/// A session as a call sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    /// Its public name.
    pub id: SessionId,
    /// The person.
    pub person: Person,
    /// Their roles now.
    pub roles: BTreeSet<PersonRole>,
    /// When it ends, seconds since the Unix epoch.
    pub expires: i64,
}

/// A new session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The bearer secret: the only copy leaves with the answer.
    pub secret: String,
    /// The session as calls will see it.
    pub session: ActiveSession,
}

/// Why a sign-in is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    /// Unknown name or wrong password: which one is not said.
    #[error("sign-in as {name:?} refused: wrong account name or password")]
    Wrong {
        /// The name given.
        name: String,
    },
    /// The account is disabled.
    #[error("sign-in as {name:?} refused: the account is disabled")]
    Disabled {
        /// The name given.
        name: String,
    },
    /// Too many wrong passwords for the name lately.
    #[error("sign-in as {name:?} refused: {MAX_FAILURES} wrong passwords within {} minutes; try again in {retry_after_secs} s", FAILURE_WINDOW.as_secs() / 60)]
    Limited {
        /// The name given.
        name: String,
        /// When a try will be heard again.
        retry_after_secs: u64,
    },
}

/// Why a session is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// Not a session of this node, or ended (expired, signed out, node restarted).
    #[error("the session is unknown or has ended; sign in again with `lagesbild login`")]
    Unknown,
    /// Its account has been disabled or removed.
    #[error("the session of {0} has ended: the account is disabled")]
    Disabled(String),
}

/// The org's people as its node knows them: accounts, sessions, failed
/// sign-ins.
#[derive(Debug)]
pub struct People {
    issuer: String,
    accounts_path: Option<PathBuf>,
    accounts: RwLock<(Accounts, Option<FileStamp>)>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, VecDeque<i64>>>,
    session_life: Duration,
    clock: SharedClock,
}

/// What tells a changed file: its length and modification time.
type FileStamp = (u64, SystemTime);

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

fn digest(secret: &str) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's secure random generator failed");
    format!(
        "{SESSION_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

impl People {
    /// The people of `org`'s node, with the accounts of `accounts_path` (none
    /// if `None`); sessions last `session_life`.
    pub fn open(
        org: &str,
        accounts_path: Option<PathBuf>,
        session_life: Duration,
        clock: SharedClock,
    ) -> Result<Self, AccountsError> {
        let accounts = match &accounts_path {
            Some(path) => (Accounts::load(path)?, stamp(path)),
            None => (Accounts::default(), None),
        };
        Ok(Self {
            issuer: format!("local:{org}"),
            accounts_path,
            accounts: RwLock::new(accounts),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            session_life,
            clock,
        })
    }

    /// Reads the accounts file again if it changed, and ends the sessions of
    /// accounts that are now disabled or gone. Returns whether it changed; a
    /// file that can't be read keeps the accounts as they were.
    pub fn reload(&self) -> Result<bool, AccountsError> {
        let Some(path) = &self.accounts_path else {
            return Ok(false);
        };
        let now_stamp = stamp(path);
        if self.read_accounts().1 == now_stamp {
            return Ok(false);
        }
        let accounts = Accounts::load(path)?;
        {
            let mut sessions = self.lock_sessions();
            sessions.retain(|_, s| match &s.grants {
                Grants::Account(name) => accounts.get(name).is_some_and(|a| !a.disabled),
                Grants::Provider(_) => true,
            });
        }
        *self.accounts.write().unwrap_or_else(|e| e.into_inner()) = (accounts, now_stamp);
        Ok(true)
    }

    fn read_accounts(&self) -> std::sync::RwLockReadGuard<'_, (Accounts, Option<FileStamp>)> {
        self.accounts.read().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.unix_seconds()
    }

    /// Whether the node has accounts of its own.
    pub fn has_accounts(&self) -> bool {
        !self.read_accounts().0.is_empty()
    }

    /// Signs `name` in with `password`. Checking the password takes tens of
    /// milliseconds of CPU by design: call it where blocking is allowed.
    pub fn sign_in(&self, name: &str, password: &str) -> Result<SignedIn, SignInError> {
        let now = self.now();
        let window = FAILURE_WINDOW.as_secs() as i64;
        {
            let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(times) = failures.get_mut(name) {
                while times.front().is_some_and(|&t| t + window <= now) {
                    times.pop_front();
                }
                if times.len() >= MAX_FAILURES {
                    let oldest = times.front().copied().unwrap_or(now);
                    return Err(SignInError::Limited {
                        name: name.to_owned(),
                        retry_after_secs: u64::try_from(oldest + window - now).unwrap_or(1),
                    });
                }
            }
        }
        let account = self.read_accounts().0.get(name).cloned();
        let matches = match &account {
            Some(account) => account.password_matches(password),
            None => {
                accounts::spend_a_password_check(password);
                false
            }
        };
        let Some(account) = account.filter(|_| matches) else {
            self.failed(name, now);
            return Err(SignInError::Wrong {
                name: name.to_owned(),
            });
        };
        if account.disabled {
            return Err(SignInError::Disabled {
                name: name.to_owned(),
            });
        }
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let person = Person {
            sub: account.name.clone(),
            issuer: self.issuer.clone(),
        };
        Ok(self.start(person, Grants::Account(account.name), account.roles))
    }

    fn failed(&self, name: &str, now: i64) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_FAILING_NAMES && !failures.contains_key(name) {
            let window = FAILURE_WINDOW.as_secs() as i64;
            failures.retain(|_, times| times.back().is_some_and(|&t| t + window > now));
            if failures.len() >= MAX_FAILING_NAMES {
                // Under a flood of names, forget the flood rather than grow.
                failures.clear();
            }
        }
        failures.entry(name.to_owned()).or_default().push_back(now);
    }

    fn start(&self, person: Person, grants: Grants, roles: BTreeSet<PersonRole>) -> SignedIn {
        let secret = new_secret();
        let key = digest(&secret);
        let id = SessionId(key[..8].iter().map(|b| format!("{b:02x}")).collect());
        let expires = self.now() + self.session_life.as_secs() as i64;
        let session = Session {
            id: id.clone(),
            person: person.clone(),
            grants,
            expires,
        };
        let mut sessions = self.lock_sessions();
        if sessions.len() >= MAX_SESSIONS {
            let now = self.now();
            sessions.retain(|_, s| s.expires > now);
        }
        sessions.insert(key, session);
        SignedIn {
            secret,
            session: ActiveSession {
                id,
                person,
                roles,
                expires,
            },
        }
    }

    /// The session whose secret is `secret`, with its person's roles now.
    pub fn session(&self, secret: &str) -> Result<ActiveSession, SessionError> {
        let key = digest(secret);
        let now = self.now();
        let session = {
            let mut sessions = self.lock_sessions();
            match sessions.get(&key) {
                Some(s) if s.expires > now => s.clone(),
                Some(_) => {
                    sessions.remove(&key);
                    return Err(SessionError::Unknown);
                }
                None => return Err(SessionError::Unknown),
            }
        };
        let roles = match &session.grants {
            Grants::Account(name) => {
                let accounts = self.read_accounts();
                match accounts.0.get(name) {
                    Some(account) if !account.disabled => account.roles.clone(),
                    _ => {
                        drop(accounts);
                        self.lock_sessions().remove(&key);
                        return Err(SessionError::Disabled(session.person.label()));
                    }
                }
            }
            Grants::Provider(roles) => roles.clone(),
        };
        Ok(ActiveSession {
            id: session.id,
            person: session.person,
            roles,
            expires: session.expires,
        })
    }

    /// A session for a person the org's identity provider verified.
    pub fn sign_in_verified(&self, person: crate::oidc::VerifiedPerson) -> SignedIn {
        let roles = person.roles.clone();
        self.start(
            Person {
                sub: person.sub,
                issuer: person.issuer,
            },
            Grants::Provider(roles.clone()),
            roles,
        )
    }

    /// Ends the session whose secret is `secret`; whether there was one.
    pub fn sign_out(&self, secret: &str) -> bool {
        self.lock_sessions().remove(&digest(secret)).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagesbild_vocabulary::ManualClock;

    fn people_with(
        accounts: &Accounts,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        People,
        std::sync::Arc<ManualClock>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts.toml");
        accounts.save(&path).unwrap();
        let clock = ManualClock::at(1_800_000_000);
        let people = People::open(
            "polisen",
            Some(path.clone()),
            Duration::from_secs(3600),
            clock.clone(),
        )
        .unwrap();
        (dir, path, people, clock)
    }

    fn anna() -> Accounts {
        let mut accounts = Accounts::default();
        accounts
            .add(
                "anna",
                [PersonRole::Analyst].into(),
                "correct horse battery",
            )
            .unwrap();
        accounts
    }

    #[test]
    fn a_signed_in_person_is_named_and_their_session_resolves() {
        let (_dir, _path, people, clock) = people_with(&anna());
        let signed = people.sign_in("anna", "correct horse battery").unwrap();
        assert!(signed.secret.starts_with(SESSION_PREFIX));
        let session = people.session(&signed.secret).unwrap();
        assert_eq!(session.person.label(), "anna (local:polisen)");
        assert_eq!(session.roles, [PersonRole::Analyst].into());
        assert_eq!(people.session("lgs_made-up"), Err(SessionError::Unknown));
        clock.advance(Duration::from_secs(3601));
        assert_eq!(people.session(&signed.secret), Err(SessionError::Unknown));
    }

    #[test]
    fn wrong_passwords_are_limited_per_name_and_unknown_names_look_the_same() {
        let (_dir, _path, people, clock) = people_with(&anna());
        assert_eq!(
            people.sign_in("nobody", "correct horse battery"),
            Err(SignInError::Wrong {
                name: "nobody".into()
            })
        );
        for _ in 0..MAX_FAILURES {
            assert!(matches!(
                people.sign_in("anna", "wrong password!!"),
                Err(SignInError::Wrong { .. })
            ));
        }
        // Now even the right password is refused for a while…
        assert!(matches!(
            people.sign_in("anna", "correct horse battery"),
            Err(SignInError::Limited { .. })
        ));
        // …and heard again once the window has passed.
        clock.advance(FAILURE_WINDOW);
        assert!(people.sign_in("anna", "correct horse battery").is_ok());
    }

    #[test]
    fn disabling_ends_sessions_and_role_changes_apply_on_the_next_call() {
        let (_dir, path, people, clock) = people_with(&anna());
        let signed = people.sign_in("anna", "correct horse battery").unwrap();
        let mut accounts = Accounts::load(&path).unwrap();
        accounts
            .set_roles("anna", [PersonRole::Auditor].into())
            .unwrap();
        accounts.save(&path).unwrap();
        // A file rewritten within the same second with the same length still
        // differs in its modification time on most file systems; move the
        // clock anyway, the stamp is the file's, not the clock's.
        clock.advance(Duration::from_secs(1));
        assert!(people.reload().unwrap());
        assert_eq!(
            people.session(&signed.secret).unwrap().roles,
            [PersonRole::Auditor].into()
        );
        accounts.set_disabled("anna", true).unwrap();
        accounts.save(&path).unwrap();
        assert!(people.reload().unwrap());
        assert!(matches!(
            people.session(&signed.secret),
            Err(SessionError::Unknown | SessionError::Disabled(_))
        ));
        assert!(matches!(
            people.sign_in("anna", "correct horse battery"),
            Err(SignInError::Disabled { .. })
        ));
    }
}
