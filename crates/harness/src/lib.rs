//! Nodes as local processes: the one harness of the end-to-end tests, the
//! bench and `lagesbild demo`.
//!
//! It finds free loopback ports, starts `lagesbild serve` with its output in a
//! log file, waits until the node's standard health service answers SERVING
//! over the caller's mutual-TLS channel, and stops (SIGTERM) or kills
//! (SIGKILL) it. It knows nothing of certificates or configuration: callers
//! provision those and hand it a config file and a channel.
//!
//! It is not how a node is deployed; it runs nodes on one machine's loopback.
//! [`browser`] drives a real headless Chromium the same way, for the console's
//! tests and bench.

pub mod browser;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How often a starting or stopping node is looked at.
const POLL: Duration = Duration::from_millis(50);

/// Why a node did not come up or go down as asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The process could not be started or looked at.
    #[error("{org}'s node: {cause}")]
    Process {
        /// The org.
        org: String,
        /// Why.
        cause: io::Error,
    },
    /// The node exited while it was expected to run.
    #[error("{org}'s node exited ({status}); last lines of its log:\n{tail}")]
    Exited {
        /// The org.
        org: String,
        /// How it exited.
        status: ExitStatus,
        /// The end of its log.
        tail: String,
    },
    /// The node did not answer SERVING in time.
    #[error("{org}'s node is not healthy after {within:?}; last lines of its log:\n{tail}")]
    NotHealthy {
        /// The org.
        org: String,
        /// How long it was given.
        within: Duration,
        /// The end of its log.
        tail: String,
    },
    /// The node did not stop after SIGTERM in time, and was killed.
    #[error("{org}'s node did not stop within {within:?} and was killed")]
    Killed {
        /// The org.
        org: String,
        /// How long it was given.
        within: Duration,
    },
    /// The node stopped, but not with success.
    #[error("{org}'s node stopped uncleanly ({status})")]
    Unclean {
        /// The org.
        org: String,
        /// How it exited.
        status: ExitStatus,
    },
}

/// Loopback ports the kernel calls free now. They are released before the
/// nodes bind them; on loopback the window is harmless.
pub fn free_loopback_ports(count: usize) -> io::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// A running `lagesbild serve`, killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    org: String,
    log: Option<PathBuf>,
    child: Child,
}

impl NodeProcess {
    /// Starts `exe serve --config <config>` for `org`, its output written to
    /// `log` (or dropped if `None`).
    pub fn spawn(
        exe: &Path,
        org: &str,
        config: &Path,
        log: Option<&Path>,
    ) -> Result<Self, HarnessError> {
        let mut command = Command::new(exe);
        command.args(["serve", "--config"]).arg(config);
        Self::start(org, &mut command, log)
    }

    /// Starts `command` as `org`'s node (a variant of `serve`, say), its
    /// output written to `log` (or dropped if `None`).
    pub fn start(
        org: &str,
        command: &mut Command,
        log: Option<&Path>,
    ) -> Result<Self, HarnessError> {
        let failed = |cause| HarnessError::Process {
            org: org.to_owned(),
            cause,
        };
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).map_err(failed)?;
                (
                    Stdio::from(file.try_clone().map_err(failed)?),
                    Stdio::from(file),
                )
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(failed)?;
        Ok(Self {
            org: org.to_owned(),
            log: log.map(Path::to_owned),
            child,
        })
    }

    /// The org whose node this is.
    pub fn org(&self) -> &str {
        &self.org
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its log file, if its output is kept.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Its whole log.
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log_text();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>, HarnessError> {
        self.child
            .try_wait()
            .map_err(|cause| HarnessError::Process {
                org: self.org.clone(),
                cause,
            })
    }

    /// Waits until it exits.
    pub async fn wait_exit(&mut self) -> Result<ExitStatus, HarnessError> {
        loop {
            if let Some(status) = self.exited()? {
                return Ok(status);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL: no shutdown, no flush. Reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits up to `within` for a clean exit; a node still
    /// running then is killed.
    pub async fn stop(&mut self, within: Duration) -> Result<(), HarnessError> {
        self.terminate();
        self.wait_stopped(within).await
    }

    /// SIGTERM: asks the node to stop cleanly.
    pub fn terminate(&self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Waits up to `within` for a clean exit (after [`terminate`](Self::terminate));
    /// a node still running then is killed.
    pub async fn wait_stopped(&mut self, within: Duration) -> Result<(), HarnessError> {
        let deadline = Instant::now() + within;
        loop {
            match self.exited()? {
                Some(status) if status.success() => return Ok(()),
                Some(status) => {
                    return Err(HarnessError::Unclean {
                        org: self.org.clone(),
                        status,
                    })
                }
                None if Instant::now() > deadline => {
                    self.kill();
                    return Err(HarnessError::Killed {
                        org: self.org.clone(),
                        within,
                    });
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Waits until the node answers the standard health check with SERVING
    /// on `channel`; fails at once if it exits, or after `within`.
    pub async fn wait_healthy(
        &mut self,
        channel: Channel,
        within: Duration,
    ) -> Result<(), HarnessError> {
        let deadline = Instant::now() + within;
        let mut health = HealthClient::new(channel);
        loop {
            if let Some(status) = self.exited()? {
                return Err(HarnessError::Exited {
                    org: self.org.clone(),
                    status,
                    tail: self.log_tail(10),
                });
            }
            let check = health.check(HealthCheckRequest::default());
            match tokio::time::timeout(Duration::from_secs(1), check).await {
                Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => return Ok(()),
                _ if Instant::now() > deadline => {
                    return Err(HarnessError::NotHealthy {
                        org: self.org.clone(),
                        within,
                        tail: self.log_tail(10),
                    })
                }
                _ => tokio::time::sleep(POLL).await,
            }
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_loopback_ports(4).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 4);
        for port in ports {
            std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        }
    }

    #[tokio::test]
    async fn a_process_that_exits_is_reported_with_its_log() {
        let dir = std::env::temp_dir().join(format!("harness-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("serve.sh");
        std::fs::write(&script, "#!/bin/sh\necho \"bad config: $3\" >&2\nexit 3\n").unwrap();
        let status = Command::new("chmod")
            .arg("+x")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success());
        let log = dir.join("node.log");
        let mut node =
            NodeProcess::spawn(&script, "alpha", Path::new("node.toml"), Some(&log)).unwrap();
        let channel = Channel::from_static("http://127.0.0.1:9").connect_lazy();
        let error = node
            .wait_healthy(channel, Duration::from_secs(30))
            .await
            .unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, HarnessError::Exited { .. }), "{text}");
        assert!(text.contains("bad config: node.toml"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
