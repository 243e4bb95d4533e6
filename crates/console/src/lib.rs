//! The browser console: the node's HTTPS listener for its own people, apart
//! from the peer gRPC port. Here: signing in (an account of the node, or the
//! org's identity provider with the authorization code flow and PKCE), the
//! session cookie, and who is signed in.
//!
//! Every sign-in, allowed or refused, is an entry in the node's access log,
//! as a gRPC sign-in is. Not here: the picture and the other views, which ask
//! the node's API with the same session.

#![warn(missing_docs)]

mod api;
mod assets;
mod pages;

pub use api::{Gateway, API_ROUTES, OPENAPI};

use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lagesbild_audit::{AuditLog, Decision, Direction, Entry, Released, TokenFacts};
use lagesbild_people::oidc::{OidcError, OidcVerifier};
use lagesbild_people::{People, SignInError, SignedIn};
use lagesbild_vocabulary::SharedClock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// The session cookie.
pub const SESSION_COOKIE: &str = "lagesbild_session";
/// The cookie that ties a sign-in form to the browser that fetched it.
const FORM_COOKIE: &str = "lagesbild_form";
/// Most browser connections served at once.
const MAX_CONNECTIONS: usize = 1024;
/// How long a browser has to come back from the identity provider.
const PENDING_LIFE: Duration = Duration::from_secs(10 * 60);
/// Most sign-ins under way at once (one per browser that started one).
const MAX_PENDING: usize = 10_000;

/// A raster basemap the console's map draws under the picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiles {
    url: String,
    attribution: String,
    /// `https://host[:port]`, which the pages' policy lets images come from.
    origin: String,
}

impl Tiles {
    /// A tile source at `url` (`https://…{z}…{x}…{y}…`), credited with
    /// `attribution`.
    pub fn new(url: &str, attribution: &str) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|_| format!("url {url:?} is not a URL; e.g. https://tile.openstreetmap.org/{{z}}/{{x}}/{{y}}.png"))?;
        if parsed.scheme() != "https" {
            return Err(format!("url {url:?}: tiles are fetched over https://"));
        }
        // A WMTS template (RESTful, or key-value pairs) over a Web Mercator
        // tile matrix set names the same numbers as an XYZ one.
        let url = &url
            .replace("{TileMatrix}", "{z}")
            .replace("{TileCol}", "{x}")
            .replace("{TileRow}", "{y}");
        if !["{z}", "{x}", "{y}"].iter().all(|p| url.contains(p)) {
            return Err(format!(
                "url {url:?} must have {{z}}, {{x}} and {{y}} in it (or WMTS's {{TileMatrix}}, {{TileCol}} and {{TileRow}})"
            ));
        }
        let host = parsed.host_str().unwrap_or_default();
        let origin = match parsed.port() {
            Some(port) => format!("https://{host}:{port}"),
            None => format!("https://{host}"),
        };
        // The origin goes into a header: nothing but a host name's characters.
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        {
            return Err(format!("url {url:?}: its host is not a plain host name"));
        }
        Ok(Self {
            url: url.to_owned(),
            attribution: attribution.to_owned(),
            origin,
        })
    }
}

/// A code flow under way: what the callback must match.
#[derive(Debug)]
struct Pending {
    verifier: String,
    nonce: String,
    started: Instant,
}

/// One node's console.
#[derive(Debug)]
pub struct Console {
    org: String,
    people: Arc<People>,
    provider: Option<Arc<OidcVerifier>>,
    log: AuditLog,
    clock: SharedClock,
    /// `https://host:port` as the browser reaches it.
    public_url: String,
    pending: Mutex<HashMap<String, Pending>>,
    /// The node's own services, through its access layers.
    gateway: Gateway,
    tiles: Option<Tiles>,
    /// The node's log verifier key, to check its checkpoints with.
    log_vkey: Option<String>,
}

fn random() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the operating system's secure random generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Console {
    /// The console of `org`'s node, reached by browsers at `public_url`.
    pub fn new(
        org: &str,
        people: Arc<People>,
        provider: Option<Arc<OidcVerifier>>,
        log: AuditLog,
        clock: SharedClock,
        public_url: &str,
        gateway: Gateway,
    ) -> Self {
        Self {
            org: org.to_owned(),
            people,
            provider,
            log,
            clock,
            public_url: public_url.trim_end_matches('/').to_owned(),
            pending: Mutex::new(HashMap::new()),
            gateway,
            tiles: None,
            log_vkey: None,
        }
    }

    /// The same, checking the node's checkpoints with its log key (the
    /// federation file's `log_vkey`).
    #[must_use]
    pub fn with_log_key(mut self, vkey: Option<String>) -> Self {
        self.log_vkey = vkey;
        self
    }

    /// The same, with a raster basemap under the picture.
    #[must_use]
    pub fn with_tiles(mut self, tiles: Option<Tiles>) -> Self {
        self.tiles = tiles;
        self
    }

    fn redirect_uri(&self) -> String {
        format!("{}/oidc/callback", self.public_url)
    }

    /// Logs one sign-in decision in the node's access log.
    async fn record(&self, call: &str, token: TokenFacts, refused: Option<String>) {
        let (decision, code, reason) = match refused {
            None => (Decision::Allowed, 0, String::new()),
            Some(reason) => (Decision::Refused, 16, reason),
        };
        let entry = Entry {
            time_micros: self.clock.unix_micros(),
            direction: Direction::Inbound,
            peer_org: self.org.clone(),
            peer_fingerprint: String::new(),
            token,
            call: format!("console:{call}"),
            request_digest: None,
            decision,
            code,
            reason,
            released: Released::default(),
            response_digest: None,
            receipt: None,
            refused_connection: None,
        };
        if let Err(e) = self.log.append(&entry).await {
            tracing::error!(error = %e, "a console sign-in could not be logged");
        }
    }

    fn session_cookie(&self, signed: &SignedIn) -> HeaderValue {
        let max_age = (signed.session.expires - self.clock.unix_seconds()).max(0);
        // Lax, not Strict: the browser arrives from the identity provider,
        // another site, and must carry the cookie on the redirect that
        // follows. Nothing a GET reaches changes anything.
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}",
            signed.secret
        ))
        .expect("a session secret is a valid header value")
    }
}

fn facts(signed: &SignedIn) -> TokenFacts {
    TokenFacts {
        sub: signed.session.person.label(),
        act: String::new(),
        jti: signed.session.id.log_name(),
        purpose: String::new(),
    }
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Headers every page carries: no framing, no caching, nothing but itself.
/// The page is shown in `lang`.
fn page(lang: pages::Lang, status: StatusCode, html: String) -> Response {
    let mut response = (status, pages::localise(&html, lang)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The content policy of a page that runs the console's own scripts and
/// fetches from its API; `images` are the origins images may come from
/// besides its own.
fn script_policy(images: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:{images}; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
    ))
    .ok()
}

/// A page for a signed-in person, made by `render` with their session; the
/// sign-in page for anyone else.
fn signed_in_page(
    console: &Console,
    headers: &HeaderMap,
    images: &str,
    render: impl FnOnce(&lagesbild_people::ActiveSession) -> String,
) -> Response {
    let Some(session) =
        cookie(headers, SESSION_COOKIE).and_then(|s| console.people.session(s).ok())
    else {
        return Redirect::to("/login").into_response();
    };
    let mut response = page(pages::Lang::of(headers), StatusCode::OK, render(&session));
    if let Some(policy) = script_policy(images) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    response
}

async fn home(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    // The map shows the basemap's tiles if one is configured.
    let images = console
        .tiles
        .as_ref()
        .map_or_else(String::new, |t| format!(" {}", t.origin));
    signed_in_page(&console, &headers, &images, |session| {
        pages::home(&console.org, session, console.tiles.as_ref())
    })
}

async fn audit_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in_page(&console, &headers, "", |session| {
        pages::audit(&console.org, session)
    })
}

async fn policy_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    signed_in_page(&console, &headers, "", |session| {
        pages::policy(&console.org, session)
    })
}

/// The sign-in page, with a fresh form token tied to this browser by a
/// cookie, and `error` (Swedish, English) if the last try failed.
fn login_form(
    console: &Console,
    lang: pages::Lang,
    status: StatusCode,
    error: Option<(&str, &str)>,
) -> Response {
    let form_token = random();
    let mut response = page(
        lang,
        status,
        pages::login(
            &console.org,
            console.people.has_accounts(),
            console
                .provider
                .as_ref()
                .map(|p| p.settings().issuer.as_str()),
            &form_token,
            error,
        ),
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{FORM_COOKIE}={form_token}; Path=/login; Secure; HttpOnly; SameSite=Strict; Max-Age=600"
        ))
        .expect("a random token is a valid header value"),
    );
    response
}

async fn login_page(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    login_form(&console, pages::Lang::of(&headers), StatusCode::OK, None)
}

#[derive(serde::Deserialize)]
struct LoginForm {
    account: String,
    password: String,
    form: String,
}

async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = pages::Lang::of(&headers);
    let again =
        |message: (&str, &str)| login_form(&console, lang, StatusCode::UNAUTHORIZED, Some(message));
    // The form must come from a page this browser fetched (no sign-in forged
    // from another site).
    if form.form.is_empty() || cookie(&headers, FORM_COOKIE) != Some(form.form.as_str()) {
        return again((
            "Inloggningsformuläret hade gått ut; försök igen.",
            "The sign-in form had expired; try again.",
        ));
    }
    if form.account.is_empty() || form.account.len() > 1024 || form.password.len() > 1024 {
        return again((
            "Ange ett konto och dess lösenord.",
            "Give an account name and its password.",
        ));
    }
    let people = console.people.clone();
    let (account, password) = (form.account.clone(), form.password);
    let signed = tokio::task::spawn_blocking(move || people.sign_in(&account, &password)).await;
    match signed {
        Ok(Ok(signed)) => {
            console.record("/login", facts(&signed), None).await;
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, console.session_cookie(&signed));
            response
        }
        Ok(Err(e)) => {
            console
                .record("/login", TokenFacts::default(), Some(e.to_string()))
                .await;
            again(match e {
                SignInError::Limited { .. } => (
                    "För många felaktiga lösenord för kontot på sistone; försök senare.",
                    "Too many wrong passwords for this account lately; try again later.",
                ),
                SignInError::Disabled { .. } => {
                    ("Kontot är avstängt.", "This account is disabled.")
                }
                SignInError::Wrong { .. } => (
                    "Fel konto eller lösenord.",
                    "Wrong account name or password.",
                ),
            })
        }
        Err(_) => again((
            "Inloggningen kunde inte prövas; försök igen.",
            "The sign-in could not be checked; try again.",
        )),
    }
}

/// Starts the code flow: a fresh state, nonce and PKCE verifier, and the
/// browser sent to the provider.
async fn oidc_start(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    let lang = pages::Lang::of(&headers);
    let Some(provider) = &console.provider else {
        return page(
            lang,
            StatusCode::NOT_FOUND,
            pages::message("This node trusts no identity provider."),
        );
    };
    let endpoints = match provider.code_flow_endpoints().await {
        Ok(endpoints) => endpoints,
        Err(e) => {
            return page(
                lang,
                StatusCode::BAD_GATEWAY,
                pages::message(&e.to_string()),
            )
        }
    };
    let (state, nonce, verifier) = (random(), random(), random());
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    {
        let mut pending = console.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.started.elapsed() < PENDING_LIFE);
        if pending.len() >= MAX_PENDING {
            return page(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message("Too many sign-ins under way; try again in a minute."),
            );
        }
        pending.insert(
            state.clone(),
            Pending {
                verifier,
                nonce: nonce.clone(),
                started: Instant::now(),
            },
        );
    }
    let mut url = match reqwest::Url::parse(&endpoints.authorization) {
        Ok(url) => url,
        Err(_) => {
            return page(
                lang,
                StatusCode::BAD_GATEWAY,
                pages::message("The identity provider's authorization endpoint is not a URL."),
            )
        }
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.settings().client_id)
        .append_pair("redirect_uri", &console.redirect_uri())
        .append_pair("scope", "openid profile groups")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    Redirect::to(url.as_str()).into_response()
}

#[derive(serde::Deserialize)]
struct Callback {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

async fn oidc_callback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let lang = pages::Lang::of(&headers);
    let Some(provider) = console.provider.clone() else {
        return page(
            lang,
            StatusCode::NOT_FOUND,
            pages::message("This node trusts no identity provider."),
        );
    };
    let pending = callback.state.as_deref().and_then(|state| {
        console
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state)
    });
    let refuse = |reason: String| {
        let console = console.clone();
        async move {
            console
                .record(
                    "/oidc/callback",
                    TokenFacts::default(),
                    Some(reason.clone()),
                )
                .await;
            page(lang, StatusCode::UNAUTHORIZED, pages::message(&reason))
        }
    };
    let Some(pending) = pending.filter(|p| p.started.elapsed() < PENDING_LIFE) else {
        return refuse(
            "This sign-in was not started here, or took longer than 10 minutes; sign in again."
                .into(),
        )
        .await;
    };
    if let Some(error) = callback.error {
        return refuse(format!("The identity provider ended the sign-in: {error}.")).await;
    }
    let Some(code) = callback.code else {
        return refuse("The identity provider sent no code.".into()).await;
    };
    let id_token = match provider
        .redeem(&code, &pending.verifier, &console.redirect_uri())
        .await
    {
        Ok(token) => token,
        Err(e) => return refuse(e.to_string()).await,
    };
    match provider
        .verify_with_nonce(&id_token, Some(&pending.nonce))
        .await
    {
        Ok(person) => {
            let signed = console.people.sign_in_verified(person);
            console.record("/oidc/callback", facts(&signed), None).await;
            let mut response = Redirect::to("/").into_response();
            response
                .headers_mut()
                .append(header::SET_COOKIE, console.session_cookie(&signed));
            response
        }
        Err(e @ OidcError::NoRole { .. }) => {
            console
                .record("/oidc/callback", TokenFacts::default(), Some(e.to_string()))
                .await;
            page(lang, StatusCode::FORBIDDEN, pages::message(&e.to_string()))
        }
        Err(e) => refuse(e.to_string()).await,
    }
}

/// Shows the console in the other language from now on (a cookie).
async fn switch_language(axum::extract::Path(code): axum::extract::Path<String>) -> Response {
    let code = if code == "en" { "en" } else { "sv" };
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "lang={code}; Path=/; Secure; SameSite=Lax; Max-Age=31536000"
    )) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn logout(State(console): State<Arc<Console>>, headers: HeaderMap) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        console.people.sign_out(secret);
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "lagesbild_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}

/// The console's routes.
pub fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/oidc/start", get(oidc_start))
        .route("/oidc/callback", get(oidc_callback))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(switch_language))
        .route("/api/openapi.json", get(api::openapi))
        .route("/api/v1/picture", get(api::picture))
        .route("/api/v1/places", get(api::places))
        .route("/api/v1/events", get(api::events))
        .route("/api/v1/audit/entries", get(api::audit_entries))
        .route("/api/v1/audit/state", get(api::audit_state))
        .route("/api/v1/partners", get(api::partners))
        .route(
            "/api/v1/policy",
            get(api::policy_text).put(api::policy_save),
        )
        .route("/api/v1/policy/explain", get(api::policy_explain))
        .route("/api/v1/policy/preview", post(api::policy_preview))
        .route("/audit", get(audit_page))
        .route("/policy", get(policy_page))
        .route("/assets/{name}", get(assets::asset))
        .with_state(console)
}

/// Serves `console` on `listener` over TLS (`tls`, no client certificate:
/// the people sign in) until the task is dropped.
pub async fn serve(console: Arc<Console>, listener: TcpListener, tls: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = router(console);
    // Connections beyond this wait in the kernel's backlog until one closes.
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = open.clone().acquire_owned().await else {
            return;
        };
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                return;
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tile_source_is_checked_and_its_origin_allowed() {
        let osm = Tiles::new(
            "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
            "© OpenStreetMap contributors",
        )
        .unwrap();
        assert_eq!(osm.origin, "https://tile.openstreetmap.org");
        let port = Tiles::new("https://maps.example.se:8443/t/{z}/{y}/{x}.png", "x").unwrap();
        assert_eq!(port.origin, "https://maps.example.se:8443");
        assert!(
            Tiles::new("http://tile.openstreetmap.org/{z}/{x}/{y}.png", "")
                .unwrap_err()
                .contains("https://")
        );
        assert!(Tiles::new("https://tile.openstreetmap.org/{z}/{x}.png", "")
            .unwrap_err()
            .contains("{y}"));
        assert!(Tiles::new("not a url", "").is_err());
        // Lantmäteriet's open topographic map as WMTS over Web Mercator.
        let wmts = Tiles::new(
            "https://minkarta.lantmateriet.se/map/topowebbcache?layer=topowebb&style=default&tilematrixset=3857&Service=WMTS&Request=GetTile&Version=1.0.0&Format=image%2Fpng&TileMatrix={TileMatrix}&TileCol={TileCol}&TileRow={TileRow}",
            "© Lantmäteriet",
        )
        .unwrap();
        assert!(wmts.url.ends_with("TileMatrix={z}&TileCol={x}&TileRow={y}"));
        assert_eq!(wmts.origin, "https://minkarta.lantmateriet.se");
    }
}
