//! The bank side of top-ups (and `citycard sim provider`, the exchange's simulated departments):
//! `citycard sim bank` serves the simulated bank (the protocol of
//! `docs/bank-channel.md`); [`BankArgs`] attach a payment channel to a platform (a real bank's
//! URL, or in development the simulated bank started in process).

use anyhow::{Context, bail};
use bank_link::HttpBankChannel;
use bank_link::sim::{SimBank, SimServer, synthetic_account};
use platform::Platform;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum SimCommand {
    /// Serve the simulated bank: synthetic accounts 6222000000000001… holding a balance each,
    /// the debit and status calls of docs/bank-channel.md, and control calls (PUT /sim/mode
    /// with {"mode":"normal"|"decline"|"hang"|"processing"} or {"mode":"late","delay_ms":N};
    /// POST /sim/accounts; GET /sim/accounts/{account}).
    Bank {
        /// Address to listen on; port 0 picks a free one (printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// How many synthetic accounts to open.
        #[arg(long, default_value_t = 1000)]
        accounts: u64,
        /// Each account's balance in fen.
        #[arg(long, default_value_t = 10_000_000)]
        balance_fen: i64,
    },
    /// Serve a simulated department provider of the data-sharing exchange (synthetic data,
    /// answers signed with the department's development key): police (traffic violations),
    /// fund (housing fund balance), hr (social insurance contributions), civil
    /// (minimum-living-allowance eligibility). Prints its public key and catalog entry.
    Provider {
        #[arg(long)]
        kind: String,
        /// Address to listen on; port 0 picks a free one (printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// The exchange's SM2 public key (hex, GET /api/v1/exchange/key): requests it signed
        /// are answered.
        #[arg(long)]
        exchange_key: Option<String>,
    },
    /// Serve the simulated SMS gateway (docs/sms-gateway.md): each message id delivered once;
    /// PUT /sim/mode with {"mode":"normal"|"unavailable"|"reject"} or
    /// {"mode":"late","delay_ms":N}; GET /sim/messages lists them, phones masked.
    Sms {
        /// Address to listen on; port 0 picks a free one (printed).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
    /// Serve the simulated city identity provider (OpenID Connect, ES256 ID tokens carrying
    /// the ID number) with synthetic users, for `[oidc]` in the platform's config file.
    Idp(crate::idp_cmd::SimIdpArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct BankArgs {
    /// The bank channel's base URL (docs/bank-channel.md). Without it, outside production, a
    /// simulated bank is started in process.
    #[arg(long, env = "CITYCARD_BANK_URL")]
    pub bank_url: Option<String>,
    /// The bank's code: owner of the float account top-ups arrive in.
    #[arg(long, env = "CITYCARD_BANK_CODE", default_value = "SIM")]
    pub bank_code: String,
    /// How long to wait for the bank's answer, in milliseconds.
    #[arg(long, env = "CITYCARD_BANK_TIMEOUT_MS", default_value_t = 5_000)]
    pub bank_timeout_ms: u64,
}

/// Attaches the payment channel to `p`; returns the in-process simulated bank to keep alive.
pub async fn attach(
    p: &Platform,
    args: &BankArgs,
    production: bool,
) -> anyhow::Result<Option<SimServer>> {
    let timeout = Duration::from_millis(args.bank_timeout_ms.clamp(100, 120_000));
    let (url, sim) = match &args.bank_url {
        Some(u) => (u.clone(), None),
        None if production => {
            bail!("--production needs --bank-url: no simulated bank in production")
        }
        None => {
            let bank = SimBank::with_accounts(1000, 10_000_000);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let server = bank.spawn(listener);
            println!(
                "simulated bank (development) on {}; accounts {}..{}",
                server.url(),
                synthetic_account(1),
                synthetic_account(1000)
            );
            (server.url(), Some(server))
        }
    };
    p.add_payment_channel(Arc::new(HttpBankChannel::new(
        &args.bank_code,
        &url,
        timeout,
    )));
    Ok(sim)
}

pub async fn run(cmd: SimCommand) -> anyhow::Result<std::process::ExitCode> {
    match cmd {
        SimCommand::Bank {
            listen,
            accounts,
            balance_fen,
        } => {
            let bank = SimBank::with_accounts(accounts, balance_fen);
            let listener = tokio::net::TcpListener::bind(&listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let server = bank.spawn(listener);
            println!(
                "simulated bank on {} with {accounts} accounts ({}..) of {} fen each",
                server.url(),
                synthetic_account(1),
                balance_fen
            );
            tokio::signal::ctrl_c().await?;
            drop(server);
            Ok(std::process::ExitCode::SUCCESS)
        }
        SimCommand::Provider {
            kind,
            listen,
            exchange_key,
        } => crate::exchange_cmd::run_provider(&kind, &listen, exchange_key.as_deref()).await,
        SimCommand::Sms { listen } => crate::services_cmd::sim_sms(&listen).await,
        SimCommand::Idp(a) => crate::idp_cmd::sim_idp(a).await,
    }
}
