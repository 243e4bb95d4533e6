//! A real browser for the tests and the console bench: Debian's Chromium,
//! headless, driven over the W3C WebDriver protocol through ChromeDriver.
//! Test-style: a failed WebDriver call saves a screenshot and panics.

use base64::Engine;
use serde_json::{json, Value};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium session; the driver stops when dropped.
pub struct Browser {
    http: reqwest::Client,
    session: String,
    base: String,
    driver: Child,
    /// Where screenshots of failures go.
    pub artifacts: PathBuf,
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium that trusts, besides the
    /// usual roots, exactly the server key whose SPKI SHA-256 is `spki`
    /// (base64). `None`, with a note, if either is missing and
    /// `LAGESBILD_REQUIRE_BROWSER` is not set.
    pub async fn start(spki: &str, profile: &Path, port: u16) -> Option<Self> {
        let chromium = std::env::var_os("LAGESBILD_BROWSER")
            .map(PathBuf::from)
            .or_else(|| on_path(&["chromium", "chromium-browser", "google-chrome"]));
        let driver = on_path(&["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                std::env::var_os("LAGESBILD_REQUIRE_BROWSER").is_none(),
                "LAGESBILD_REQUIRE_BROWSER is set but chromium or chromedriver is missing"
            );
            eprintln!("note: no chromium and chromedriver on the PATH; the browser sign-in is not checked");
            return None;
        };
        // In a process group of its own, so that the browsers it starts
        // end with it.
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            };
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--no-first-run",
                    "--lang=en-US", "--accept-lang=en-US",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--ignore-certificate-errors-spki-list={spki}"),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {answer}"))
            .to_owned();
        Some(Self {
            http,
            session,
            base,
            driver,
            artifacts: profile.to_owned(),
        })
    }

    /// A WebDriver command; its error, if any, as WebDriver gave it.
    async fn try_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if answer["value"]["error"].is_string() {
            Err(answer["value"].clone())
        } else {
            Ok(answer["value"].clone())
        }
    }

    /// A WebDriver command that must succeed; a failure is a screenshot and a panic.
    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        match self.try_call(method, path, body).await {
            Ok(value) => value,
            Err(error) => {
                let shot = self.screenshot("failure").await;
                panic!("webdriver {path}: {error} (screenshot: {})", shot.display());
            }
        }
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and
    /// gives back what it returns. With `asynchronous`, the script's last
    /// argument is a callback it calls with its result.
    pub async fn execute(&self, script: &str, args: Value, asynchronous: bool) -> Value {
        let path = if asynchronous {
            "/execute/async"
        } else {
            "/execute/sync"
        };
        self.call(
            reqwest::Method::POST,
            path,
            json!({"script": script, "args": args}),
        )
        .await
    }

    /// Sets how long an asynchronous script may run.
    pub async fn script_timeout(&self, timeout: Duration) {
        self.call(
            reqwest::Method::POST,
            "/timeouts",
            json!({"script": timeout.as_millis() as u64}),
        )
        .await;
    }

    /// Sets the window's size in CSS pixels.
    pub async fn window_size(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            "/window/rect",
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// The element `css` selects, waiting up to 20 s for it.
    pub async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = format!("{}/session/{}/element", self.base, self.session);
            let answer: Value = self
                .http
                .post(url)
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if let Some(id) = answer["value"][ELEMENT].as_str() {
                return id.to_owned();
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("missing-element").await;
                panic!(
                    "no {css} on {} (screenshot: {})\n{}",
                    self.url().await,
                    shot.display(),
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Types `text` into the element `css` selects.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// The text of the element `css` selects.
    pub async fn text(&self, css: &str) -> String {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::GET,
            &format!("/element/{id}/text"),
            Value::Null,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// The attribute `name` of the element `css` selects, waiting up to 20 s
    /// for an element that has it.
    pub async fn attribute(&self, css: &str, name: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let id = self.find(css).await;
            // The page may change under the element (a navigation): ask again.
            let value = self
                .try_call(
                    reqwest::Method::GET,
                    &format!("/element/{id}/attribute/{name}"),
                    Value::Null,
                )
                .await
                .unwrap_or(Value::Null);
            if let Some(text) = value.as_str() {
                return text.to_owned();
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("missing-attribute").await;
                panic!(
                    "no {name} on {css} (screenshot: {})\n{}",
                    shot.display(),
                    self.source().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> usize {
        self.call(
            reqwest::Method::POST,
            "/elements",
            json!({"using": "css selector", "value": css}),
        )
        .await
        .as_array()
        .map_or(0, Vec::len)
    }

    /// Waits up to 20 s until nothing matches `css`.
    pub async fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .call(
                    reqwest::Method::POST,
                    "/elements",
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            if found.as_array().is_some_and(|a| a.is_empty()) {
                return;
            }
            if Instant::now() > deadline {
                let shot = self.screenshot("still-there").await;
                panic!("{css} is still there (screenshot: {})", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The address shown.
    pub async fn url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page's HTML.
    pub async fn source(&self) -> String {
        self.call(reqwest::Method::GET, "/source", Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Saves a screenshot named `name`; where it went.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = self.artifacts.join(format!("{name}.png"));
        let url = format!("{}/session/{}/screenshot", self.base, self.session);
        if let Ok(response) = self.http.get(url).send().await {
            if let Ok(answer) = response.json::<Value>().await {
                if let Some(png) = answer["value"].as_str() {
                    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(png) {
                        let _ = std::fs::write(&path, bytes);
                    }
                }
            }
        }
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The driver and every browser it started.
        if let Ok(group) = i32::try_from(self.driver.id()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(group),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// The SHA-256 of a PEM certificate's public key (SPKI), base64, as
/// Chromium's `--ignore-certificate-errors-spki-list` takes it.
pub fn spki_hash(cert_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let digest = ring::digest::digest(&ring::digest::SHA256, cert.tbs_certificate.subject_pki.raw);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}
