//! `citycard keys …`: the key ceremony over `keys::master` — generate, import by components,
//! list (check values only), load the development test key set — on the file backend under
//! DATA_DIR/keys or on a PKCS#11 token; and the production start check against the test keys.
//!
//! No command prints or logs key bytes: only key ids, origins and check values (KCVs).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use crypto::{Algorithm, MasterKeys};
use hsm::{HsmConfig, HsmPin, Pkcs11MasterKeyStore};
use keys::master::{
    FileMasterKeyStore, KeyComponent, KeyRef, MasterKeyInfo, MasterKeyStore, MasterPurpose,
    conformance::split_into_components, refuse_test_key_set,
};
use platform::KeySource;

use crate::card::AlgArg;
use crate::config::Config;

/// File of the file-backend master-key store, under the key directory.
pub const MASTER_KEYS_FILE: &str = "master-keys.json";
/// Environment variable holding the PKCS#11 user PIN.
pub const HSM_PIN_ENV: &str = "CITYCARD_HSM_PIN";

/// Which master-key store: the file under DATA_DIR/keys, or a PKCS#11 token.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct StoreArgs {
    /// PKCS#11 module of the HSM (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so); the user PIN
    /// comes from CITYCARD_HSM_PIN. Without it, the sealed file DATA_DIR/keys/master-keys.json
    /// (passphrase from CITYCARD_KEYSTORE_PASSPHRASE, or the development passphrase file).
    #[arg(long, requires = "token")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the PKCS#11 token.
    #[arg(long, requires = "pkcs11_module")]
    pub token: Option<String>,
}

/// The `--purpose` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum PurposeArg {
    /// Purchase master key (key index 01): PSAMs and personalization.
    Purchase,
    /// Load master key: the host's load MAC1/MAC2.
    Load,
    /// TAC master key: the host's TAC checks.
    Tac,
    /// PIN key.
    Pin,
    /// Root of the e-code key tree.
    EcodeRoot,
    /// Transport key for personalization.
    Transport,
    /// Application maintenance key (post-issuance scripts).
    Maintenance,
}

impl From<PurposeArg> for MasterPurpose {
    fn from(p: PurposeArg) -> Self {
        match p {
            PurposeArg::Purchase => MasterPurpose::Purchase,
            PurposeArg::Load => MasterPurpose::Load,
            PurposeArg::Tac => MasterPurpose::Tac,
            PurposeArg::Pin => MasterPurpose::Pin,
            PurposeArg::EcodeRoot => MasterPurpose::EcodeRoot,
            PurposeArg::Transport => MasterPurpose::Transport,
            PurposeArg::Maintenance => MasterPurpose::Maintenance,
        }
    }
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate a random master key inside the store; prints its id and check value.
    Generate {
        /// Application the key belongs to.
        #[arg(long, default_value = keys::master::APP_TRANSIT)]
        app: String,
        #[arg(long, value_enum)]
        purpose: PurposeArg,
        /// Key version.
        #[arg(long, default_value_t = 1)]
        version: u8,
        /// Profile whose check value to print (the key itself serves both).
        #[arg(long, value_enum, default_value = "3des")]
        alg: AlgArg,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Import a master key from 2 or 3 custodian components, XORed together.
    #[command(
        after_help = "Each --component is 32 hex digits, a colon and that component's \
6-hex-digit check value under --alg; a component whose check value differs is refused and \
nothing is stored. The combined key's check value is printed (and compared with --kcv when \
given). Components typed on a command line can stay in shell history: clear it, or run the \
ceremony from a shell that keeps none."
    )]
    Import {
        #[arg(long, default_value = keys::master::APP_TRANSIT)]
        app: String,
        #[arg(long, value_enum)]
        purpose: PurposeArg,
        #[arg(long, default_value_t = 1)]
        version: u8,
        /// Cipher of the check values (components and combined key).
        #[arg(long, value_enum, default_value = "3des")]
        alg: AlgArg,
        /// A component as HEX:KCV; give it 2 or 3 times.
        #[arg(long = "component", required = true, num_args = 1)]
        components: Vec<String>,
        /// Expected check value of the combined key (6 hex digits).
        #[arg(long)]
        kcv: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List master keys: id, purpose, version, origin and check values — never a key.
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Load the development test key set of epurse.md §4 as transit purchase/load/tac v1.
    /// Development only: refused with --production.
    LoadTestSet {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The file store's passphrase, from the one function every store under DATA_DIR/keys uses.
fn passphrase(key_dir: &Path, source: &KeySource, production: bool) -> anyhow::Result<String> {
    Ok(platform::open::keystore_passphrase(
        key_dir, source, production,
    )?)
}

/// Opens the master-key store the arguments name (creating the file store on first use).
pub fn open_store(args: &StoreArgs, cfg: &Config) -> anyhow::Result<Box<dyn MasterKeyStore>> {
    match (&args.pkcs11_module, &args.token) {
        (Some(module), Some(token)) => {
            let pin = std::env::var(HSM_PIN_ENV)
                .ok()
                .filter(|p| !p.is_empty())
                .with_context(|| format!("set {HSM_PIN_ENV} to the token's user PIN"))?;
            let store = Pkcs11MasterKeyStore::open(&HsmConfig {
                module: module.clone(),
                token_label: token.clone(),
                user_pin: HsmPin::new(pin),
            })?;
            Ok(Box::new(store))
        }
        _ => Ok(Box::new(open_file_store(cfg)?)),
    }
}

fn open_file_store(cfg: &Config) -> anyhow::Result<FileMasterKeyStore> {
    let dir = cfg.key_dir();
    let pass = passphrase(&dir, &cfg.key_source(), cfg.production)?;
    let path = dir.join(MASTER_KEYS_FILE);
    FileMasterKeyStore::open_or_create(&path, pass.as_bytes())
        .with_context(|| format!("opening the master-key store {}", path.display()))
}

/// The master-key file store under DATA_DIR/keys, if one exists: `serve` gives it to the
/// platform for post-issuance scripts.
pub fn master_store_if_present(cfg: &Config) -> anyhow::Result<Option<FileMasterKeyStore>> {
    if !cfg.key_dir().join(MASTER_KEYS_FILE).exists() {
        return Ok(None);
    }
    open_file_store(cfg).map(Some)
}

/// The master-key file store of a demo data directory, with the development key set added
/// where missing (`platform::demo::load_development_keys`), so the demo city can make its
/// cards through a production batch. Refused in production mode.
pub fn development_master_store(cfg: &Config) -> anyhow::Result<FileMasterKeyStore> {
    if cfg.production {
        bail!("the demo city uses the development key set, which production refuses");
    }
    let store = open_file_store(cfg)?;
    platform::demo::load_development_keys(&store)?;
    Ok(store)
}

/// The production start check for `serve`: with --production, a master-key file store under
/// DATA_DIR/keys that holds any key of the test key set stops the start. Without
/// --production, or without a master-key file, there is nothing to refuse.
pub fn refuse_test_keys_in_production(cfg: &Config) -> anyhow::Result<()> {
    if !cfg.production || !cfg.key_dir().join(MASTER_KEYS_FILE).exists() {
        return Ok(());
    }
    let store = open_file_store(cfg)?;
    refuse_test_key_set(&store).context("production start refused")?;
    Ok(())
}

fn kcv_text(kcv: Option<[u8; 3]>) -> String {
    kcv.map(hex::encode_upper).unwrap_or_else(|| "n/a".into())
}

fn print_infos(backend: &str, infos: &[MasterKeyInfo]) {
    println!(
        "{:<24} {:<10} {:>7} {:<13} {:>9} {:>8}",
        "id", "purpose", "version", "origin", "KCV 3DES", "KCV SM4"
    );
    for i in infos {
        let origin = serde_json::to_value(i.origin)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        println!(
            "{:<24} {:<10} {:>7} {:<13} {:>9} {:>8}",
            i.key.label(),
            i.key.purpose().as_str(),
            i.key.version(),
            origin,
            kcv_text(i.kcv_tdes),
            kcv_text(i.kcv_sm4)
        );
    }
    println!("{} key(s), {backend} backend", infos.len());
}

fn parse_kcv(text: &str) -> anyhow::Result<[u8; 3]> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| format!("check value {text:?} is not 6 hex digits"))
}

pub fn run(command: KeysCommand, cfg: &Config) -> anyhow::Result<std::process::ExitCode> {
    match command {
        KeysCommand::Generate {
            app,
            purpose,
            version,
            alg,
            store,
        } => {
            let key = KeyRef::new(&app, purpose.into(), version)?;
            let store = open_store(&store, cfg)?;
            let info = store.generate(&key)?;
            println!(
                "generated {} in the {} store; KCV ({}) {}",
                info.key,
                store.backend(),
                alg_name(alg),
                kcv_text(info.kcv(alg.into()))
            );
        }
        KeysCommand::Import {
            app,
            purpose,
            version,
            alg,
            components,
            kcv,
            store,
        } => {
            let key = KeyRef::new(&app, purpose.into(), version)?;
            let alg_id: Algorithm = alg.into();
            if !(keys::master::COMPONENTS_MIN..=keys::master::COMPONENTS_MAX)
                .contains(&components.len())
            {
                bail!(
                    "{} components given; a key needs {} to {}",
                    components.len(),
                    keys::master::COMPONENTS_MIN,
                    keys::master::COMPONENTS_MAX
                );
            }
            let parsed = components
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (value, check) = c
                        .split_once(':')
                        .ok_or(keys::master::MasterKeyError::InvalidComponent { index: i + 1 })?;
                    KeyComponent::parse(i + 1, value, check, alg_id)
                })
                .collect::<Result<Vec<_>, _>>()
                .context("key import refused; nothing stored")?;
            let expected = kcv.as_deref().map(parse_kcv).transpose()?;
            let store = open_store(&store, cfg)?;
            let info = store
                .import_components(&key, &parsed, alg_id, expected)
                .context("key import refused; nothing stored")?;
            println!(
                "imported {} from {} components into the {} store; KCV ({}) {}",
                info.key,
                parsed.len(),
                store.backend(),
                alg_name(alg),
                kcv_text(info.kcv(alg_id))
            );
        }
        KeysCommand::List { store } => {
            let store = open_store(&store, cfg)?;
            print_infos(store.backend(), &store.list()?);
        }
        KeysCommand::LoadTestSet { store } => {
            if cfg.production {
                bail!("the test key set is for development only; refused with --production");
            }
            let (backend, loaded) = if store.pkcs11_module.is_some() {
                // Through the trait: as a ceremony would, by components (the HSM records
                // them as such; the check values still mark them as the test set).
                let store = open_store(&store, cfg)?;
                let test = MasterKeys::test_set();
                let mut loaded = Vec::new();
                for (purpose, key) in [
                    (MasterPurpose::Purchase, &test.purchase),
                    (MasterPurpose::Load, &test.load),
                    (MasterPurpose::Tac, &test.tac),
                ] {
                    let components = split_into_components(key, Algorithm::Tdes);
                    loaded.push(store.import_components(
                        &KeyRef::transit(purpose, 1),
                        &components,
                        Algorithm::Tdes,
                        Some(key.kcv(Algorithm::Tdes)),
                    )?);
                }
                (store.backend(), loaded)
            } else {
                let store = open_file_store(cfg)?;
                let mut loaded = store.load_test_key_set(keys::master::APP_TRANSIT)?;
                // The maintenance keys of the applications post-issuance scripts update.
                for app in ["city", "health", "transit"] {
                    loaded.push(store.load_test_maintenance_key(app)?);
                }
                (store.backend(), loaded)
            };
            eprintln!("loaded the development test key set (never for production):");
            print_infos(backend, &loaded);
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn alg_name(alg: AlgArg) -> &'static str {
    match alg {
        AlgArg::Tdes => "3DES",
        AlgArg::Sm4 => "SM4",
    }
}
