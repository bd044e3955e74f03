//! `citycard bench portal`: the citizen portal's pages under load (issue 9: at least 1,000
//! pages/s with p99 under 50 ms).
//!
//! Setup (not timed): a scratch SQLite data directory (always SQLite: `--database-url` is not
//! used) with a small demo city (`platform::demo::run`: residents, cards through the emulated
//! bureau, some lost and replaced, a benefit batch), then for each of the `--citizens` card
//! holders a mobile number, top-ups and payments on the online account, two water bills with an
//! auto-debit agreement, volunteer hours (points) and a password set at a counter. Each citizen
//! then signs in through the portal's own forms over HTTP (ID number and password, then the SMS
//! code, read from the simulated SMS gateway the platform sends to) and keeps the session
//! cookie. The first citizen's pages are checked once for that data.
//!
//! Timed: `--seconds` of closed-loop GETs from `--concurrency` clients over keep-alive
//! connections, each a portal page of a signed-in citizen, each citizen going through the main
//! pages in turn; every answer must be 200 and show that citizen's (masked) name. Beside it, the
//! same load on `/portal/assets/portal.css` through the same router, middleware and cookies:
//! the server's own overhead, so the ratio shows what rendering a page with its data costs.

use crate::config::Config;
use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ledger::{
    AccountKey, AccountKind, Amount, IdempotencyKey, Owner, Transfer, TransferKind, Unit,
};
use platform::clock::SystemClock;
use platform::{Caller, KeySource, StorageTarget};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Citizens signed in (each a card holder of the demo city); requests cycle over them.
    #[arg(long, default_value_t = 200)]
    pub citizens: u64,
    /// Seconds of each run (the pages, then the baseline).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Clients in flight at once, each on its own keep-alive connection.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// The portal pages the load cycles through.
const PAGES: [&str; 7] = [
    "/portal/",
    "/portal/transactions",
    "/portal/bills",
    "/portal/benefits",
    "/portal/messages",
    "/portal/points",
    "/portal/credit",
];
const BASELINE: &str = "/portal/assets/portal.css";
const PASSWORD: &str = "bench-portal-1";
const SEED: u64 = 2026;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Session {
    cookie: String,
    /// What every page of this citizen shows: the masked name in the header.
    marker: String,
}

struct Answer {
    status: u16,
    headers: hyper::HeaderMap,
    body: String,
}

async fn send(
    client: &HttpClient,
    method: &str,
    uri: &str,
    cookie: Option<&str>,
    form: Option<String>,
) -> anyhow::Result<Answer> {
    let mut req = hyper::Request::builder().method(method).uri(uri);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if form.is_some() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let req = req.body(Full::new(Bytes::from(form.unwrap_or_default())))?;
    let resp = client.request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// The value of `name="challenge" value="…"` in the sign-in page.
fn hidden_challenge(html: &str) -> Option<String> {
    let at = html.find("name=\"challenge\"")?;
    let rest = &html[at..];
    let v = rest.find("value=\"")? + 7;
    let end = rest[v..].find('"')?;
    Some(rest[v..v + end].to_string())
}

/// The six-digit code in an SMS text.
fn six_digits(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .map(str::to_string)
}

/// Signs a citizen in through the portal's forms; the session cookie and the page marker.
async fn sign_in(
    client: &HttpClient,
    base: &str,
    sms: &sms_link::sim::SimSms,
    id_number: &str,
) -> anyhow::Result<Session> {
    let before = sms.messages().len();
    let r = send(
        client,
        "POST",
        &format!("{base}/portal/login"),
        None,
        Some(format!("id_number={id_number}&password={PASSWORD}")),
    )
    .await?;
    anyhow::ensure!(r.status == 200, "sign-in answered {}", r.status);
    let challenge = hidden_challenge(&r.body).context("no challenge on the code page")?;
    let code = sms
        .messages()
        .iter()
        .skip(before)
        .rev()
        .find_map(|m| six_digits(&m.text))
        .context("no SMS code sent")?;
    let r = send(
        client,
        "POST",
        &format!("{base}/portal/login/code"),
        None,
        Some(format!("challenge={challenge}&code={code}")),
    )
    .await?;
    anyhow::ensure!(r.status == 303, "code answered {}: {}", r.status, r.body);
    let set = r
        .headers
        .get_all(hyper::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(server::auth::CITIZEN_COOKIE))
        .context("no session cookie")?;
    let cookie = set.split(';').next().unwrap_or_default().to_string();
    let home = send(
        client,
        "GET",
        &format!("{base}/portal/"),
        Some(&cookie),
        None,
    )
    .await?;
    anyhow::ensure!(home.status == 200, "home answered {}", home.status);
    let at = home
        .body
        .find("id=\"who\">")
        .context("no signed-in name on the home page")?
        + 9;
    let end = home.body[at..].find('<').context("unterminated name")?;
    Ok(Session {
        cookie,
        marker: format!("id=\"who\">{}<", &home.body[at..at + end]),
    })
}

#[derive(Default)]
struct Run {
    /// Latencies per path index, completed requests only.
    lat: Vec<Vec<Duration>>,
    /// Failed requests per path index.
    errs: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
    secs: f64,
}

/// `concurrency` clients for `seconds`; request i is `paths[i mod len]` of citizen
/// `(i / len) mod n` (a citizen going through the pages, the pages mixed in flight); each
/// answer must be 200 and hold the citizen's marker (pages) or be the style sheet.
async fn load(
    base: &str,
    paths: &'static [&'static str],
    sessions: Arc<Vec<Session>>,
    a: &Args,
    page: bool,
) -> Run {
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(a.concurrency)
        .build_http();
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for _ in 0..a.concurrency {
        let (client, next, sessions, base) = (
            client.clone(),
            next.clone(),
            sessions.clone(),
            base.to_string(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = vec![Vec::new(); paths.len()];
            let mut errs = vec![0u64; paths.len()];
            let mut first_error = None;
            let n = sessions.len() as u64;
            while Instant::now() < end {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let len = paths.len() as u64;
                let s = &sessions[((i / len) % n) as usize];
                let k = (i % len) as usize;
                let t = Instant::now();
                let r = send(
                    &client,
                    "GET",
                    &format!("{base}{}", paths[k]),
                    Some(&s.cookie),
                    None,
                )
                .await;
                let took = t.elapsed();
                let problem = match r {
                    Ok(r) if r.status != 200 => Some(format!("{} answered {}", paths[k], r.status)),
                    Ok(r) if page && !r.body.contains(&s.marker) => {
                        Some(format!("{} is not the citizen's page", paths[k]))
                    }
                    Ok(r) if !page && !r.body.contains("body") => {
                        Some(format!("{} is not the style sheet", paths[k]))
                    }
                    Ok(_) => None,
                    Err(e) => Some(format!("{}: {e}", paths[k])),
                };
                match problem {
                    None => lat[k].push(took),
                    Some(p) => {
                        errs[k] += 1;
                        first_error.get_or_insert(p);
                    }
                }
            }
            (lat, errs, first_error)
        }));
    }
    let mut run = Run {
        lat: vec![Vec::new(); paths.len()],
        errs: vec![0; paths.len()],
        ..Default::default()
    };
    for t in tasks {
        match t.await {
            Ok((lat, e, f)) => {
                for (k, (l, n)) in lat.into_iter().zip(e).enumerate() {
                    run.lat[k].extend(l);
                    run.errs[k] += n;
                    run.errors += n;
                }
                if run.first_error.is_none() {
                    run.first_error = f;
                }
            }
            Err(e) => {
                run.errors += 1;
                run.first_error.get_or_insert(e.to_string());
            }
        }
    }
    run.secs = start.elapsed().as_secs_f64();
    run
}

struct Stats {
    count: usize,
    per_s: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

fn stats(mut all: Vec<Duration>, secs: f64) -> Stats {
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1;
        all[i].as_secs_f64() * 1000.0
    };
    Stats {
        count: all.len(),
        per_s: all.len() as f64 / secs.max(1e-9),
        p50: pct(0.50),
        p99: pct(0.99),
        max: all.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    }
}

fn row(name: &str, s: &Stats, errors: u64) {
    println!(
        "| {name} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {errors} |",
        s.count, s.per_s, s.p50, s.p99, s.max
    );
}

/// The demo city's card holders: every twentieth resident who lives in the city and is an
/// adult (`platform::demo`'s rule), the first `n` of them, with the residents needed.
fn card_holders(n: u64, today: time::Date) -> (Vec<String>, u64) {
    let mut ids = Vec::new();
    let mut i = 0;
    while (ids.len() as u64) < n {
        let row = platform::demo::resident_row(i, SEED, today, 0);
        let adult = resident::ResidentId::parse(&row[0], today)
            .is_ok_and(|id| id.age_on(today) >= platform::cards::ADULT_AGE);
        if row[4] == "resident" && adult {
            ids.push(row[0].clone());
        }
        i += 20;
    }
    (ids, i)
}

pub async fn run(a: Args, _cfg: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        a.citizens > 0 && a.seconds > 0 && a.concurrency > 0,
        "citizens, seconds and concurrency must be positive"
    );
    anyhow::ensure!(a.citizens <= 10_000, "at most 10,000 citizens");
    let dir = tempfile::tempdir()?;
    let p = platform::open::open_platform(
        &StorageTarget::Sqlite(dir.path().join("bench.db")),
        &dir.path().join("keys"),
        &KeySource::Passphrase("bench".into()),
        false,
        Arc::new(SystemClock),
    )
    .await?;
    // The demo city makes its cards through the emulated bureau: the development key set.
    let masters =
        keys::master::FileMasterKeyStore::create(&dir.path().join("master-keys.json"), b"bench")?;
    platform::demo::load_development_keys(&masters)?;
    p.set_master_keys(Arc::new(masters));
    let sms = sms_link::sim::SimSms::new();
    let sms_server = sms.spawn(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    p.set_sms_gateway(Arc::new(sms_link::HttpSmsGateway::new(
        &sms_server.url(),
        Duration::from_secs(5),
    )));
    let today = platform::clock::Clock::today(&SystemClock);
    let (ids, residents) = card_holders(a.citizens, today);

    eprintln!(
        "bench portal on sqlite: demo city of {residents} residents, {} citizens …",
        a.citizens
    );
    let pb = crate::bar(residents, "demo");
    let pb2 = pb.clone();
    platform::demo::run(
        &p,
        residents,
        1,
        SEED,
        Arc::new(move |stage, done, total| {
            pb2.set_message(stage.to_string());
            pb2.set_length(total);
            pb2.set_position(done);
        }),
    )
    .await?;
    pb.finish_and_clear();

    // Money, bills and a phone for each citizen.
    let cli = Caller::cli("bench");
    let admin = p.operator_caller("admin", "bench").await?;
    let clerk = p.operator_caller("clerk", "bench").await?;
    let clearing = p.operator_caller("clearing", "bench").await?;
    p.merchant_create(&admin, "water", "郑州自来水", "utility", "41050100000009")
        .await?;
    p.biller_create(&admin, "water", "water").await?;
    let due = today + time::Duration::days(14);
    let mut file = String::from("bill_number,customer_no,period,amount_fen,due_date\n");
    for k in 0..ids.len() {
        file.push_str(&format!(
            "W-{k}-A,C{k},2026-11,{},{due}\nW-{k}-B,C{k},2026-10,{},{due}\n",
            3_000 + k % 500,
            4_500 + k % 300
        ));
    }
    p.bills_upload_file(&clearing, "water", file.as_bytes())
        .await?;
    let float = p
        .ledger_accounts(
            &cli,
            &[AccountKey::new(
                AccountKind::BankFloat,
                Owner::Bank("BENCH".into()),
                Unit::Cny,
            )?],
        )
        .await?[0]
        .id;
    let shop = p
        .ledger_accounts(
            &cli,
            &[AccountKey::new(
                AccountKind::MerchantPayable,
                Owner::Merchant("bench-shop".into()),
                Unit::Cny,
            )?],
        )
        .await?[0]
        .id;
    let pb = crate::bar(ids.len() as u64, "citizens");
    let mut transfers = Vec::new();
    for (k, id) in ids.iter().enumerate() {
        p.notify_prefs_set(&cli, id, "zh-CN", true, Some(&format!("139{k:08}")))
            .await?;
        p.agreement_sign(&clerk, id, "water", &format!("C{k}"), 20_000)
            .await?;
        p.citizen_password_set_by(&clerk, id, PASSWORD).await?;
        p.points_report(
            &admin,
            points::EarnKind::VolunteerHour,
            &format!("bench-volunteer-{k}"),
            id,
            3,
        )
        .await?;
        let online = p
            .ledger_accounts(
                &cli,
                &[AccountKey::citizen_online(p.resident_id_of(id).await?)],
            )
            .await?[0]
            .id;
        for (j, amount) in [50_000i64, 20_000, 10_000].into_iter().enumerate() {
            transfers.push(Transfer::simple(
                IdempotencyKey::parse(&format!("bench-topup-{k}-{j}"))?,
                TransferKind::TopUp,
                "bench top-up",
                float,
                online,
                Unit::Cny,
                Amount(amount),
            ));
        }
        for (j, amount) in [1_250i64, 880, 3_600, 420].into_iter().enumerate() {
            transfers.push(Transfer::simple(
                IdempotencyKey::parse(&format!("bench-pay-{k}-{j}"))?,
                TransferKind::Payment,
                "bench shop",
                online,
                shop,
                Unit::Cny,
                Amount(amount),
            ));
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    for chunk in transfers.chunks(5_000) {
        p.transfer_batch(&cli, chunk).await?;
    }
    // Deliver what the setup queued (benefit and bill notices) so the codes below are the
    // only messages the gateway gets.
    while p.deliver_notifications(&admin, 1_000).await?.claimed > 0 {}

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, p.clone(), async {
        let _ = stop_rx.await;
    }));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let pb = crate::bar(ids.len() as u64, "sign-in");
    let mut sessions = Vec::with_capacity(ids.len());
    for id in &ids {
        sessions.push(
            sign_in(&client, &base, &sms, id)
                .await
                .with_context(|| format!("signing in {}", &id[..6]))?,
        );
        pb.inc(1);
    }
    pb.finish_and_clear();
    // The pages carry the data set up above (checked once, not timed).
    for (path, wanted) in [
        ("/portal/bills", "W-0-A"),
        ("/portal/transactions", "100.00"),
        ("/portal/benefits", "800.00"),
        ("/portal/messages", "【市民卡】"),
    ] {
        let r = send(
            &client,
            "GET",
            &format!("{base}{path}"),
            Some(&sessions[0].cookie),
            None,
        )
        .await?;
        anyhow::ensure!(
            r.status == 200 && r.body.contains(wanted),
            "{path} of the first citizen lacks {wanted:?} ({})",
            r.status
        );
    }
    let sessions = Arc::new(sessions);

    eprintln!(
        "portal pages for {} s over {} connections …",
        a.seconds, a.concurrency
    );
    let pages = load(&base, &PAGES, sessions.clone(), &a, true).await;
    eprintln!("baseline GET {BASELINE} …");
    const BASELINE_PATHS: [&str; 1] = [BASELINE];
    let css = load(&base, &BASELINE_PATHS, sessions, &a, false).await;
    let _ = stop_tx.send(());
    let _ = server.await;
    drop(sms_server);

    println!(
        "## portal on sqlite ({} citizens, {} connections, {} s each)",
        a.citizens, a.concurrency, a.seconds
    );
    println!("| request | requests | per s | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let base_stats = stats(css.lat.concat(), css.secs);
    row(
        &format!("GET {BASELINE} (baseline)"),
        &base_stats,
        css.errors,
    );
    let all = stats(pages.lat.concat(), pages.secs);
    row("portal pages, all", &all, pages.errors);
    for (k, path) in PAGES.iter().enumerate() {
        row(
            &format!("GET {path}"),
            &stats(pages.lat[k].clone(), pages.secs),
            pages.errs[k],
        );
    }
    println!(
        "portal pages: {:.0} pages/s, {:.2}× fewer than the baseline's {:.0}/s; p50 {:.1}× and p99 {:.1}× the baseline's",
        all.per_s,
        base_stats.per_s / all.per_s.max(1e-9),
        base_stats.per_s,
        all.p50 / base_stats.p50.max(1e-6),
        all.p99 / base_stats.p99.max(1e-6),
    );
    anyhow::ensure!(
        pages.errors == 0 && css.errors == 0,
        "{} page and {} baseline errors; first: {}",
        pages.errors,
        css.errors,
        pages.first_error.or(css.first_error).unwrap_or_default()
    );
    anyhow::ensure!(all.count > 0, "no page was answered");
    Ok(())
}
