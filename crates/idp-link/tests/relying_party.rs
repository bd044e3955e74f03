//! The relying party against the simulated provider over real HTTP: a full sign-in, the
//! state used once, a code exchanged once, the claim named in the configuration, and the
//! bound on sign-ins in progress.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idp_link::sim::{SimIdp, SimServer};
use idp_link::{OidcConfig, OidcError, PENDING_MAX, PENDING_TTL_MS, RelyingParty, Secret};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const ID: &str = "410102199003070018";
const T0_MS: i64 = 1_790_000_000_000;

async fn setup(claim: &str) -> (SimIdp, SimServer, RelyingParty, Arc<AtomicI64>) {
    let now = Arc::new(AtomicI64::new(T0_MS));
    let clock = now.clone();
    let sim = SimIdp::new("citycard", "secret")
        .with_claim(claim)
        .with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
    sim.add_user(ID);
    let server = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let rp = RelyingParty::new(OidcConfig {
        enabled: true,
        issuer: server.url(),
        client_id: "citycard".into(),
        client_secret: Secret::new("secret"),
        redirect_url: "http://platform.test/portal/login/oidc/callback".into(),
        app_redirect_url: None,
        id_number_claim: claim.into(),
        timeout_ms: 2_000,
    });
    (sim, server, rp, now)
}

fn param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_string()
}

/// Approves `user` at the provider; answers the callback URL.
async fn approve(authorize: &str, user: &str) -> String {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let r = client
        .request(
            hyper::Request::get(format!("{authorize}&user={user}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    r.headers()["location"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn a_sign_in_runs_once_with_the_configured_claim() {
    let (sim, _server, rp, now) = setup("cn_id").await;
    let started = rp.start(T0_MS).await.unwrap();
    let url = started.url;
    assert_eq!(rp.pending_count(), 1);
    let back = approve(&url, ID).await;
    assert!(back.starts_with("http://platform.test/portal/login/oidc/callback?code="));
    let (state, code) = (param(&back, "state"), param(&back, "code"));
    assert_eq!(state, started.state);
    now.fetch_add(3_000, Ordering::SeqCst);
    let who = rp.finish(&state, &code, T0_MS + 3_000).await.unwrap();
    assert_eq!(who.id_number.expose(), ID);
    assert!(who.subject.starts_with("sim-user-"));
    assert!(
        !format!("{who:?}").contains(ID),
        "the ID number leaks in Debug"
    );
    assert_eq!(rp.pending_count(), 0);
    // The callback again: the state is gone, the provider is not asked.
    assert!(matches!(
        rp.finish(&state, &code, T0_MS + 4_000).await,
        Err(OidcError::StateUnknown)
    ));
    assert_eq!((sim.tokens_issued(), sim.codes_refused()), (1, 0));
}

#[tokio::test]
async fn a_token_without_the_claim_is_refused() {
    // The provider puts the ID number in `id_number`; the platform expects `cn_id`.
    let (sim, server, _rp, _now) = setup("id_number").await;
    let rp = RelyingParty::new(OidcConfig {
        enabled: true,
        issuer: server.url(),
        client_id: "citycard".into(),
        client_secret: Secret::new("secret"),
        redirect_url: "http://platform.test/cb".into(),
        app_redirect_url: None,
        id_number_claim: "cn_id".into(),
        timeout_ms: 2_000,
    });
    let url = rp.start(T0_MS).await.unwrap().url;
    let back = approve(&url, ID).await;
    let r = rp
        .finish(&param(&back, "state"), &param(&back, "code"), T0_MS)
        .await;
    assert!(matches!(r, Err(OidcError::MissingClaim(c)) if c == "cn_id"));
    assert_eq!(sim.tokens_issued(), 1);
}

#[tokio::test]
async fn sign_ins_in_progress_are_bounded_and_expire() {
    let (_sim, _server, rp, _now) = setup("id_number").await;
    for _ in 0..PENDING_MAX {
        rp.start(T0_MS).await.unwrap();
    }
    assert!(matches!(rp.start(T0_MS + 1).await, Err(OidcError::Busy)));
    // Once they have expired they make room; an expired one cannot be finished.
    let first = rp.start(T0_MS + PENDING_TTL_MS).await.unwrap();
    assert_eq!(rp.pending_count(), 1);
    assert!(matches!(
        rp.finish(&first.state, "code", T0_MS + 2 * PENDING_TTL_MS)
            .await,
        Err(OidcError::StateExpired)
    ));
    // An unknown provider answers unreachable, not a panic.
    let down = RelyingParty::new(OidcConfig {
        enabled: true,
        issuer: "http://127.0.0.1:9".into(),
        client_id: "c".into(),
        client_secret: Secret::new("s"),
        redirect_url: "http://platform.test/cb".into(),
        app_redirect_url: None,
        id_number_claim: "id_number".into(),
        timeout_ms: 500,
    });
    assert!(matches!(
        down.start(T0_MS).await,
        Err(OidcError::Unreachable(_))
    ));
}
