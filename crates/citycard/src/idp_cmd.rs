//! The city's identity provider: the relying party `citycard serve` attaches when the
//! configuration file's `[oidc]` section is enabled, and `citycard sim idp`, the simulated
//! provider with synthetic users.

use crate::config::Config;
use anyhow::Context;
use idp_link::RelyingParty;
use idp_link::sim::SimIdp;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// The relying party when `[oidc]` is enabled; `None` keeps the password and SMS code
/// sign-in alone. In production the issuer and redirect must be HTTPS.
pub fn relying_party(cfg: &Config) -> anyhow::Result<Option<Arc<RelyingParty>>> {
    let Some(o) = cfg.oidc.clone().filter(|o| o.enabled) else {
        return Ok(None);
    };
    for (what, url) in [("issuer", &o.issuer), ("redirect_url", &o.redirect_url)] {
        let https = url.starts_with("https://");
        if !https && !url.starts_with("http://") {
            anyhow::bail!("[oidc] {what} must be an http(s) URL, not {url:?}");
        }
        if cfg.production && !https {
            anyhow::bail!("[oidc] {what} must be https in production");
        }
    }
    if o.client_id.is_empty() || o.client_secret.expose().is_empty() {
        anyhow::bail!("[oidc] client_id and client_secret are required");
    }
    if o.id_number_claim.is_empty() {
        anyhow::bail!("[oidc] id_number_claim must name a claim");
    }
    Ok(Some(Arc::new(RelyingParty::new(o))))
}

#[derive(clap::Args, Debug, Clone)]
pub struct SimIdpArgs {
    /// Address to listen on; port 0 picks a free one (printed). The issuer is http://ADDR.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    #[arg(long, default_value = "citycard")]
    pub client_id: String,
    #[arg(long, env = "CITYCARD_SIM_IDP_SECRET", default_value = "sim-secret")]
    pub client_secret: String,
    /// The ID token claim carrying the ID number.
    #[arg(long, default_value = "id_number")]
    pub claim: String,
    /// A synthetic user: the ID number they sign in as (repeatable).
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// A file of ID numbers, one a line, each a synthetic user.
    #[arg(long)]
    pub users_file: Option<PathBuf>,
    /// The first N residents of the demo city (`citycard demo` / `serve --demo`, seed 2021)
    /// as users; their ID numbers depend on the day the demo city was built (--demo-date).
    #[arg(long, default_value_t = 0)]
    pub demo: u64,
    /// The day the demo city was built (YYYY-MM-DD) [default: today].
    #[arg(long)]
    pub demo_date: Option<String>,
}

pub async fn sim_idp(a: SimIdpArgs) -> anyhow::Result<ExitCode> {
    let sim = SimIdp::new(&a.client_id, &a.client_secret).with_claim(&a.claim);
    let mut n = 0u64;
    for u in &a.users {
        sim.add_user(u.trim());
        n += 1;
    }
    if let Some(f) = &a.users_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            sim.add_user(line);
            n += 1;
        }
    }
    if a.demo > 0 {
        let day = match &a.demo_date {
            Some(d) => {
                time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]"))
                    .with_context(|| format!("--demo-date {d:?}: YYYY-MM-DD"))?
            }
            None => time::OffsetDateTime::now_utc().date(),
        };
        for i in 0..a.demo {
            sim.add_user(platform::demo::id_number(i, 2021, day).as_str());
        }
        n += a.demo;
    }
    let listener = tokio::net::TcpListener::bind(&a.listen)
        .await
        .with_context(|| format!("listening on {}", a.listen))?;
    let server = sim.spawn(listener);
    println!(
        "simulated city identity provider on {url} with {n} user(s), client {:?}\n\
         issuer {url} (discovery at /.well-known/openid-configuration; GET /authorize shows a \
         sign-in form, or approves at once with &user=ID; PUT /sim/mode with \
         {{\"mode\":\"normal\"|\"forge_signature\"|\"wrong_audience\"|\"expired\"}})",
        a.client_id,
        url = server.url(),
    );
    tokio::signal::ctrl_c().await?;
    drop(server);
    Ok(ExitCode::SUCCESS)
}
