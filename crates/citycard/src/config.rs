//! Configuration: defaults < config file (TOML) < environment (`CITYCARD_*`) < flags. Clap
//! merges flags over the environment; the file fills whatever neither gave.

use anyhow::Context;
use platform::{KeySource, StorageTarget};
use std::path::PathBuf;

#[derive(clap::Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Data directory: the SQLite database and the key store [default: ./citycard-data].
    #[arg(long, global = true, env = "CITYCARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL URL (postgres://user@host/db) instead of the embedded SQLite.
    #[arg(long, global = true, env = "CITYCARD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// TOML config file [default: DATA_DIR/citycard.toml when present].
    #[arg(long, global = true, env = "CITYCARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Production mode: refuses development keys and passphrase files.
    #[arg(long, global = true, env = "CITYCARD_PRODUCTION")]
    pub production: bool,
    /// Log format: text or json.
    #[arg(long, global = true, env = "CITYCARD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Development and tests only: run the platform's clock this many seconds off the real
    /// time (negative: in the past), e.g. to post into a clearing window that can be closed
    /// later. Refused in production mode.
    #[arg(
        long,
        global = true,
        env = "CITYCARD_CLOCK_OFFSET_S",
        allow_hyphen_values = true,
        value_name = "SECONDS"
    )]
    pub clock_offset_s: Option<i64>,
}

#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    production: Option<bool>,
    log_format: Option<String>,
    /// Sign-in through the city's identity provider (off unless `enabled = true`).
    oidc: Option<idp_link::OidcConfig>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub production: bool,
    pub log_format: String,
    pub oidc: Option<idp_link::OidcConfig>,
    /// The clock's offset from the real time (development only; 0 in production).
    pub clock_offset_ms: i64,
}

impl Config {
    pub fn load(args: &GlobalArgs) -> anyhow::Result<Config> {
        let default_dir = PathBuf::from("./citycard-data");
        let file_path = args.config.clone().or_else(|| {
            let p = args
                .data_dir
                .clone()
                .unwrap_or(default_dir.clone())
                .join("citycard.toml");
            p.exists().then_some(p)
        });
        let file: FileConfig = match &file_path {
            None => FileConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("config {}", p.display()))?
            }
        };
        let log_format = args
            .log_format
            .clone()
            .or(file.log_format)
            .unwrap_or_else(|| "text".into());
        if !["text", "json"].contains(&log_format.as_str()) {
            anyhow::bail!("log format must be text or json, not {log_format:?}");
        }
        let production = args.production || file.production.unwrap_or(false);
        let clock_offset_s = args.clock_offset_s.unwrap_or(0);
        if production && clock_offset_s != 0 {
            anyhow::bail!(
                "--clock-offset-s (CITYCARD_CLOCK_OFFSET_S) is for development and tests; \
                 production mode runs on the real clock"
            );
        }
        // A year either way is plenty for a test and keeps the arithmetic far from overflow.
        if clock_offset_s.unsigned_abs() > 366 * 86_400 {
            anyhow::bail!("--clock-offset-s must be within a year of the real time");
        }
        Ok(Config {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or(default_dir),
            database_url: args.database_url.clone().or(file.database_url),
            listen: file.listen,
            production,
            log_format,
            oidc: file.oidc,
            clock_offset_ms: clock_offset_s * 1_000,
        })
    }

    pub fn storage(&self) -> anyhow::Result<StorageTarget> {
        Ok(StorageTarget::from_config(
            &self.data_dir,
            self.database_url.as_deref(),
        )?)
    }

    pub fn key_dir(&self) -> PathBuf {
        self.data_dir.join("keys")
    }

    pub fn key_source(&self) -> KeySource {
        match std::env::var("CITYCARD_KEYSTORE_PASSPHRASE") {
            Ok(p) if !p.is_empty() => KeySource::Passphrase(p),
            _ => KeySource::DevelopmentFile,
        }
    }
}
