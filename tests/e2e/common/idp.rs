//! A real OpenID provider for the tests: `tests/idp/server.mjs`
//! (node-oidc-provider on the machine's Node.js), on loopback.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The node's client id at the provider.
pub const CLIENT_ID: &str = "lagesbild-polisen";

/// People the provider knows: (login, password, sub, groups).
pub const USERS: &[(&str, &str, &str, &[&str])] = &[
    (
        "anna",
        "anna's password at the idp",
        "anna-sub",
        &["polis-analytiker"],
    ),
    (
        "bert",
        "bert's password at the idp",
        "bert-sub",
        &["kantinen"],
    ),
];

/// A running provider; stopped when dropped.
pub struct Idp {
    child: Child,
    /// Its issuer identifier.
    pub issuer: String,
    dir: PathBuf,
    port: u16,
    redirect_uris: Vec<String>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/idp/server.mjs")
}

/// Installs the provider from the npm registry at the lockfile's versions,
/// once, if it is not there yet.
fn install() {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        let dir = script().with_file_name("");
        if dir.join("node_modules/oidc-provider").exists() {
            return Ok(());
        }
        let out = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("npm (Node.js) is needed for the sign-in tests: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "npm ci --prefix tests/idp failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

impl Idp {
    /// Starts the provider on `port`, keeping its keys in `dir`; with
    /// `rotate`, a new signing key is made and published first.
    pub async fn start(dir: &Path, port: u16, rotate: bool) -> Self {
        Self::launch(dir, port, rotate, Vec::new()).await
    }

    /// Starts the provider with a client that may send browsers back to
    /// `redirect_uris` (the code flow).
    pub async fn start_for(dir: &Path, port: u16, redirect_uris: &[String]) -> Self {
        Self::launch(dir, port, false, redirect_uris.to_vec()).await
    }

    async fn launch(dir: &Path, port: u16, rotate: bool, redirect_uris: Vec<String>) -> Self {
        install();
        std::fs::create_dir_all(dir).unwrap();
        let users: Vec<Value> = USERS
            .iter()
            .map(|(login, password, sub, groups)| {
                json!({"login": login, "password": password, "sub": sub, "name": login, "groups": groups})
            })
            .collect();
        let config = json!({
            "port": port,
            "state_dir": dir.join("state"),
            "rotate": rotate,
            "clients": [if redirect_uris.is_empty() {
                json!({"client_id": CLIENT_ID})
            } else {
                json!({"client_id": CLIENT_ID, "redirect_uris": redirect_uris})
            }],
            "users": users,
        });
        let config_path = dir.join("config.json");
        std::fs::write(&config_path, config.to_string()).unwrap();
        let log = std::fs::File::create(dir.join("idp.log")).unwrap();
        let child = Command::new("node")
            .arg(script())
            .arg(&config_path)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("starting node (Node.js) for the test identity provider");
        let idp = Self {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
            dir: dir.to_owned(),
            port,
            redirect_uris,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let discovery = format!("{}/.well-known/openid-configuration", idp.issuer);
        loop {
            if let Ok(response) = reqwest::get(&discovery).await {
                if response.status().is_success() {
                    break;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the identity provider did not start:\n{}",
                std::fs::read_to_string(dir.join("idp.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        idp
    }

    /// Stops it and starts it again on the same port with a new signing key.
    pub async fn rotate(mut self) -> Self {
        let (dir, port, uris) = (self.dir.clone(), self.port, self.redirect_uris.clone());
        self.stop();
        Self::launch(&dir, port, true, uris).await
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `claims` signed with the provider's current key (and `header`'s fields
    /// over the usual RS256 header).
    pub async fn sign(&self, header: Value, claims: Value) -> String {
        reqwest::Client::new()
            .post(format!("{}/test/sign", self.issuer))
            .body(json!({"header": header, "claims": claims}).to_string())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// What the person at the browser does for a device sign-in: opens
    /// `page`, confirms the code, signs in as `login`.
    pub async fn confirm_device(&self, page: &str, login: &str, password: &str) {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .unwrap();
        let html = browser
            .get(page)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let field = |name: &str| -> String {
            let marker = format!("name=\"{name}\" value=\"");
            let start = html
                .find(&marker)
                .unwrap_or_else(|| panic!("no {name} in {html}"))
                + marker.len();
            html[start..].split('"').next().unwrap().to_owned()
        };
        let confirmed = browser
            .post(format!("{}/device", self.issuer))
            .form(&[
                ("xsrf", field("xsrf")),
                ("user_code", field("user_code")),
                ("confirm", "yes".into()),
            ])
            .send()
            .await
            .unwrap();
        let login_page = confirmed.url().clone();
        assert!(
            login_page.path().starts_with("/interaction/"),
            "{login_page}"
        );
        let done = browser
            .post(format!("{login_page}/login"))
            .form(&[("login", login), ("password", password)])
            .send()
            .await
            .unwrap();
        let status = done.status();
        let body = done.text().await.unwrap();
        assert!(status.is_success(), "{status}: {body}");
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}
