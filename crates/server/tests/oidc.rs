//! Sign-in through the city's identity provider (issue 9, item 1) over real HTTP, on SQLite
//! and PostgreSQL: the simulated provider (`idp_link::sim`) runs on a free port, the platform
//! on another, and the test plays the browser (cookies and redirects by hand) and the phone
//! app. A successful portal sign-in opens a session `/portal/` accepts; a forged signature,
//! another audience, an expired token, a callback from another browser, a tampered state, a
//! replayed callback, an expired sign-in, a code injected into another sign-in and an ID
//! number the platform does not hold are each refused with their own message and no session.
//! The app's `POST /api/v1/citizen/sessions/oidc` opens an app session; a replayed code, a
//! wrong nonce or verifier are refused.

mod common;

use common::seeded_id;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use idp_link::sim::{Mode, SimIdp, SimServer};
use idp_link::{OidcConfig, RelyingParty, Secret, jose};
use platform::Caller;
use platform::testing::{Backend, TestPlatform};
use resident::Source;
use server::auth::CITIZEN_COOKIE;
use std::sync::Arc;

both_backends!(
    portal_sign_in_and_its_refusals,
    app_sign_in_and_its_refusals
);

const APP_REDIRECT: &str = "citycard-app://oidc";

struct Fixture {
    base: String,
    tp: TestPlatform,
    sim: SimIdp,
    idp: SimServer,
    client: Client<HttpConnector, Full<Bytes>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

struct Resp {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

impl Resp {
    fn location(&self) -> String {
        self.headers
            .get("location")
            .unwrap_or_else(|| panic!("no location ({}): {}", self.status, self.body))
            .to_str()
            .unwrap()
            .to_string()
    }
    /// The value this answer sets for cookie `name`, if it sets it (an empty value clears).
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix(&format!("{name}=")))
            .map(|v| v.split(';').next().unwrap_or("").to_string())
    }
}

/// Ten residents (demo generator, seed 1), the simulated provider knowing residents 1 and 2
/// and one ID number the platform does not hold (resident 50 of the same generator), on the
/// platform's manual clock; the platform served with the relying party.
async fn start(backend: Backend) -> Fixture {
    let tp = platform::testing::fresh(backend).await;
    let p = &tp.platform;
    let mut csv = Vec::new();
    platform::demo::write_feed(&mut csv, 0..10, 1, p.clock.today(), 0).unwrap();
    p.import_residents(
        &Caller::cli("test"),
        Source::Police,
        "test",
        "0".into(),
        Box::new(std::io::Cursor::new(csv)),
        Arc::new(|_| {}),
    )
    .await
    .unwrap();
    let clock = tp.clock.clone();
    let sim = SimIdp::new("citycard", "s3cret-of-the-platform").with_clock(Arc::new(move || {
        use platform::clock::Clock;
        clock.now_ms()
    }));
    for i in [1, 2, 50] {
        sim.add_user(&seeded_id(i));
    }
    let idp = sim.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rp = RelyingParty::new(OidcConfig {
        enabled: true,
        issuer: idp.url(),
        client_id: "citycard".into(),
        client_secret: Secret::new("s3cret-of-the-platform"),
        redirect_url: format!("{base}/portal/login/oidc/callback"),
        app_redirect_url: Some(APP_REDIRECT.into()),
        id_number_claim: "id_number".into(),
        timeout_ms: 3_000,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve_with_oidc(
        listener,
        tp.platform.clone(),
        Some(Arc::new(rp)),
        async {
            let _ = rx.await;
        },
    ));
    Fixture {
        base,
        tp,
        sim,
        idp,
        client: Client::builder(TokioExecutor::new()).build_http(),
        _stop: tx,
    }
}

impl Fixture {
    async fn send(
        &self,
        method: &str,
        url: &str,
        cookies: &[String],
        json: Option<String>,
    ) -> Resp {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("{}{url}", self.base)
        };
        let mut b = hyper::Request::builder().method(method).uri(url);
        if !cookies.is_empty() {
            b = b.header("cookie", cookies.join("; "));
        }
        let body = match json {
            Some(j) => {
                b = b.header("content-type", "application/json");
                Full::new(Bytes::from(j))
            }
            None => Full::new(Bytes::new()),
        };
        let r = self.client.request(b.body(body).unwrap()).await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, url: &str, cookies: &[String]) -> Resp {
        self.send("GET", url, cookies, None).await
    }

    /// The browser's way to the callback: the platform's redirect to the provider (with its
    /// state cookie), the provider approving `user`. Answers the callback URL and the state
    /// cookie (`cc_oidc=…`).
    async fn to_callback(&self, user: &str) -> (String, String) {
        let r = self.get("/portal/login/oidc", &[]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let authorize = r.location();
        assert!(authorize.starts_with(&format!("{}/authorize?", self.idp.url())));
        for part in [
            "response_type=code",
            "client_id=citycard",
            "code_challenge_method=S256",
            "scope=openid",
        ] {
            assert!(authorize.contains(part), "{part} missing in {authorize}");
        }
        assert!(authorize.contains("&nonce=") && authorize.contains("&state="));
        let state = r.set_cookie("cc_oidc").expect("the state cookie");
        assert!(authorize.contains(&format!("state={state}")));
        // Without a user the provider shows its sign-in form.
        let form = self.get(&authorize, &[]).await;
        assert_eq!(form.status, 200);
        assert!(form.body.contains(r#"id="approve""#), "{}", form.body);
        let back = self.get(&format!("{authorize}&user={}", user), &[]).await;
        assert_eq!(back.status, 303, "{}", back.body);
        let callback = back.location();
        assert!(
            callback.starts_with(&format!("{}/portal/login/oidc/callback?code=", self.base)),
            "{callback}"
        );
        (callback, format!("cc_oidc={state}"))
    }

    /// Finishes a sign-in; answers the portal session cookie it set, if any.
    async fn finish(&self, callback: &str, state_cookie: &str) -> (Resp, Option<String>) {
        let r = self.get(callback, &[state_cookie.to_string()]).await;
        let session = r
            .set_cookie(CITIZEN_COOKIE)
            .filter(|v| !v.is_empty())
            .map(|v| format!("{CITIZEN_COOKIE}={v}"));
        (r, session)
    }

    /// Expects a refused callback: 401, the sign-in page with `text`, no session.
    async fn refused(&self, callback: &str, state_cookie: &str, text: &str) {
        let (r, session) = self.finish(callback, state_cookie).await;
        assert_eq!(r.status, 401, "{}", r.body);
        assert!(session.is_none(), "a refused sign-in set a session");
        assert!(r.body.contains(text), "{text:?} not in {}", r.body);
        assert!(r.body.contains(r#"id="oidc-sign-in""#));
    }
}

fn param(url: &str, name: &str) -> String {
    url.split(['?', '&'])
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {url}"))
        .to_string()
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let old = format!("{name}={}", param(url, name));
    url.replace(&old, &format!("{name}={value}"))
}

async fn portal_sign_in_and_its_refusals(backend: Backend) {
    let f = start(backend).await;

    // The sign-in page offers the city account; the password form stays.
    let login = f.get("/portal/login", &[]).await;
    assert!(login.body.contains(r#"id="oidc-sign-in""#));
    assert!(login.body.contains("城市统一身份认证登录"));
    assert!(login.body.contains(r#"id="sign-in""#));

    // Success: a session /portal/ accepts, for resident 1.
    let (callback, state) = f.to_callback(&seeded_id(1)).await;
    let (r, session) = f.finish(&callback, &state).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains(r#"content="0;url=/portal/""#));
    assert_eq!(
        r.set_cookie("cc_oidc").as_deref(),
        Some(""),
        "state cookie cleared"
    );
    let session = session.expect("a session cookie");
    let home = f.get("/portal/", std::slice::from_ref(&session)).await;
    assert_eq!(home.status, 200, "{}", home.body);
    assert!(home.body.contains(r#"id="who""#));
    let token = session.split_once('=').unwrap().1;
    let citizen =
        f.tp.platform
            .citizen_authenticate(token, "portal", "test")
            .await
            .unwrap();
    let resident_1 = f.tp.platform.resident_id_of(&seeded_id(1)).await.unwrap();
    assert_eq!(citizen.resident_id, resident_1);
    assert_eq!(f.sim.tokens_issued(), 1);

    // The same callback again: its state was used up; the provider is not even asked.
    f.refused(&callback, &state, "已经使用过").await;
    assert_eq!(f.sim.codes_refused(), 0);

    // A callback this browser did not start (its state cookie differs, or is missing).
    let (callback, state) = f.to_callback(&seeded_id(2)).await;
    f.refused(&callback, "cc_oidc=someone-elses", "与本浏览器不符")
        .await;
    f.refused(&callback, "", "与本浏览器不符").await;
    // A state both in the URL and the cookie, but never issued.
    let forged = replace_param(&callback, "state", "forged-state");
    f.refused(&forged, "cc_oidc=forged-state", "无效或已经使用过")
        .await;
    // A code from another sign-in injected into this one: the verifier does not match it at
    // the provider (PKCE), so the code is refused there.
    let (other, _) = f.to_callback(&seeded_id(2)).await;
    let injected = replace_param(&callback, "code", &param(&other, "code"));
    f.refused(&injected, &state, "授权码已使用过或已过期").await;
    assert_eq!(f.sim.codes_refused(), 1);

    // A forged signature, another audience, an expired token: refused, no session.
    for (mode, text) in [
        (Mode::ForgeSignature, "签名无效"),
        (Mode::WrongAudience, "不是签发给本平台"),
        (Mode::Expired, "身份令牌已过期"),
    ] {
        f.sim.set_mode(mode);
        let (callback, state) = f.to_callback(&seeded_id(2)).await;
        f.refused(&callback, &state, text).await;
    }
    f.sim.set_mode(Mode::Normal);

    // A sign-in that comes back after ten minutes has expired.
    let (callback, state) = f.to_callback(&seeded_id(2)).await;
    f.tp.clock.advance_ms(idp_link::PENDING_TTL_MS + 1_000);
    f.refused(&callback, &state, "登录超时").await;

    // An ID number the platform does not hold: refused in the citizen's language.
    let (callback, state) = f.to_callback(&seeded_id(50)).await;
    let r = f.get(&callback, &[state.clone(), "plang=en".into()]).await;
    assert_eq!(r.status, 401);
    assert!(
        r.body.contains("matches no resident on record"),
        "{}",
        r.body
    );
    assert!(r.set_cookie(CITIZEN_COOKIE).is_none());

    // The provider said no.
    let (callback, state) = f.to_callback(&seeded_id(2)).await;
    let denied = format!(
        "{}/portal/login/oidc/callback?error=access_denied&state={}",
        f.base,
        param(&callback, "state")
    );
    f.refused(&denied, &state, "未完成登录").await;

    // Every refusal above left no session; the one sign-in is on the audit log as such.
    let audit =
        f.tp.platform
            .store
            .audit_recent(Some("citizen.sign_in"), 100)
            .await
            .unwrap();
    let oidc: Vec<_> = audit
        .iter()
        .filter(|e| e.draft.detail.contains("oidc:"))
        .collect();
    assert_eq!(oidc.len(), 1, "{audit:?}");
    assert_eq!(oidc[0].draft.record, format!("resident:{resident_1}"));
}

/// The app's own authorization request to the provider; answers the code.
async fn app_code(f: &Fixture, user: &str, nonce: &str, verifier: &str) -> String {
    let url = format!(
        "{}/authorize?response_type=code&client_id=citycard&redirect_uri={}&scope=openid&state=app-1&nonce={nonce}&code_challenge={}&code_challenge_method=S256&user={user}",
        f.idp.url(),
        APP_REDIRECT.replace(':', "%3A").replace('/', "%2F"),
        jose::pkce_challenge(verifier),
    );
    let r = f.get(&url, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let back = r.location();
    assert!(back.starts_with(&format!("{APP_REDIRECT}?code=")), "{back}");
    assert_eq!(param(&back, "state"), "app-1");
    param(&back, "code")
}

async fn app_sign_in_and_its_refusals(backend: Backend) {
    let f = start(backend).await;
    let verifier = jose::random_token().unwrap();
    let post = |body: serde_json::Value| {
        let f = &f;
        async move {
            let r = f
                .send(
                    "POST",
                    "/api/v1/citizen/sessions/oidc",
                    &[],
                    Some(body.to_string()),
                )
                .await;
            let j: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
            (r.status, j)
        }
    };

    let code = app_code(&f, &seeded_id(1), "app-nonce-1", &verifier).await;
    let body =
        serde_json::json!({ "code": code, "code_verifier": verifier, "nonce": "app-nonce-1" });
    let (status, j) = post(body.clone()).await;
    assert_eq!(status, 201, "{j}");
    let token = j["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ca_"));
    let me = f
        .client
        .request(
            hyper::Request::get(format!("{}/api/v1/me/profile", f.base))
                .header("authorization", format!("Bearer {token}"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(me.status().as_u16(), 200);

    // The same code again: the provider refuses it.
    let (status, j) = post(body).await;
    assert_eq!(
        (status, j["code"].as_str()),
        (401, Some("oidc_code_refused")),
        "{j}"
    );

    // Another nonce than the app sent.
    let code = app_code(&f, &seeded_id(1), "app-nonce-2", &verifier).await;
    let (status, j) = post(
        serde_json::json!({ "code": code, "code_verifier": verifier, "nonce": "app-nonce-x" }),
    )
    .await;
    assert_eq!(
        (status, j["code"].as_str()),
        (401, Some("oidc_wrong_nonce")),
        "{j}"
    );

    // Another verifier than the challenge's.
    let code = app_code(&f, &seeded_id(1), "app-nonce-3", &verifier).await;
    let other = jose::random_token().unwrap();
    let (status, j) =
        post(serde_json::json!({ "code": code, "code_verifier": other, "nonce": "app-nonce-3" }))
            .await;
    assert_eq!(
        (status, j["code"].as_str()),
        (401, Some("oidc_code_refused")),
        "{j}"
    );

    // A forged signature.
    f.sim.set_mode(Mode::ForgeSignature);
    let code = app_code(&f, &seeded_id(1), "app-nonce-4", &verifier).await;
    let (status, j) = post(
        serde_json::json!({ "code": code, "code_verifier": verifier, "nonce": "app-nonce-4" }),
    )
    .await;
    assert_eq!(
        (status, j["code"].as_str()),
        (401, Some("oidc_bad_signature")),
        "{j}"
    );
    f.sim.set_mode(Mode::Normal);

    // Unknown to the platform.
    let code = app_code(&f, &seeded_id(50), "app-nonce-5", &verifier).await;
    let (status, j) = post(
        serde_json::json!({ "code": code, "code_verifier": verifier, "nonce": "app-nonce-5" }),
    )
    .await;
    assert_eq!(
        (status, j["code"].as_str()),
        (401, Some("unknown_resident")),
        "{j}"
    );
    assert!(
        j["detail_zh"]
            .as_str()
            .unwrap()
            .contains("没有对应的本市居民记录")
    );

    // In the OpenAPI document.
    let doc = f.get("/api/openapi.json", &[]).await;
    assert!(doc.body.contains("/api/v1/citizen/sessions/oidc"));

    // A platform without [oidc]: no button, the routes answer 404.
    let plain = common::start(Backend::Sqlite).await;
    let login = plain.get("/portal/login", None).await;
    assert!(!login.body.contains("oidc-sign-in"));
    assert_eq!(plain.get("/portal/login/oidc", None).await.status, 404);
    let r = plain
        .post_json(
            "/api/v1/citizen/sessions/oidc",
            None,
            serde_json::json!({ "code": "c", "code_verifier": verifier, "nonce": "n" }),
        )
        .await;
    assert_eq!(r.status, 404);
}
