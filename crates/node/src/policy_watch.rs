//! The policy in force, reloaded when its file changes.
//!
//! Every call asks for the current policy; if the file changed since it was last
//! read, it is read again first, so a new policy takes effect on the next call.
//! A file that does not parse is refused and logged, and the policy in force
//! stays until the file is fixed.

use lagesbild_policy::Policy;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

#[derive(Debug)]
struct State {
    policy: Arc<Policy>,
    /// The version of the file last read, good or bad.
    seen: Option<FileStamp>,
}

/// The node's policy, shared by every service.
#[derive(Debug)]
pub struct PolicyHandle {
    path: PathBuf,
    state: RwLock<State>,
}

impl PolicyHandle {
    /// The policy `policy`, read from `path`.
    pub fn new(path: PathBuf, policy: Policy) -> Self {
        let seen = stamp(&path);
        Self {
            path,
            state: RwLock::new(State {
                policy: Arc::new(policy),
                seen,
            }),
        }
    }

    /// The policy in force, after reading the file again if it changed.
    pub fn current(&self) -> Arc<Policy> {
        self.reload_if_changed();
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .policy
            .clone()
    }

    /// The policy in force as last read, without looking at the file (for
    /// checks inside a long call; the file is watched every few seconds).
    pub fn snapshot(&self) -> Arc<Policy> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .policy
            .clone()
    }

    /// The policy file's text now.
    pub fn text(&self) -> std::io::Result<String> {
        std::fs::read_to_string(&self.path)
    }

    /// Replaces the policy file with `text` (already checked) whole, synced,
    /// and puts it in force.
    pub fn save(&self, text: &str) -> std::io::Result<()> {
        use std::io::Write;
        let temporary = self.path.with_extension("toml.saving");
        {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
        }
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        self.reload_if_changed();
        Ok(())
    }

    /// Reads the file again if it changed; a broken file leaves the policy as is.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        if self.state.read().unwrap_or_else(|e| e.into_inner()).seen == now {
            return;
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.seen == now {
            return;
        }
        state.seen = now;
        match Policy::load(&self.path) {
            Ok(policy) => {
                tracing::info!(
                    path = %self.path.display(),
                    peers = policy.peers.len(),
                    "policy reloaded; in force from the next call"
                );
                state.policy = Arc::new(policy);
            }
            Err(e) => tracing::error!(
                error = %e,
                "new policy refused; the previous policy stays in force"
            ),
        }
    }

    /// Checks the file every `interval`, so a change is logged even when no
    /// call comes.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            self.reload_if_changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALLOW: &str =
        "version = 1\n[peer.polisen]\nscopes = [\"aggregate:read\"]\npurposes = [\"p\"]\n";

    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_changed_file_takes_effect_and_a_broken_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "version = 1\n").unwrap();
        let handle = PolicyHandle::new(path.clone(), Policy::load(&path).unwrap());
        assert!(handle.current().peer("polisen").is_none());

        replace(&path, ALLOW);
        assert!(handle.current().peer("polisen").is_some());

        replace(&path, "version = 1\n[peer.polisen]\nk = 1\n");
        assert!(
            handle.current().peer("polisen").is_some(),
            "broken file must not replace the policy"
        );

        std::fs::remove_file(&path).unwrap();
        assert!(
            handle.current().peer("polisen").is_some(),
            "a missing file keeps the policy"
        );
    }
}
