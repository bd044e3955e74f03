//! Application management (应用管理, issue 4 item 7): the registry of card applications and
//! functions, per-card enabling and disabling, and post-issuance scripts.
//!
//! The rules are in `issuance::apps` (who manages what, pending changes, the script bytes);
//! this module stores them and asks the master-key store for the line-protection MAC, so the
//! maintenance master keys never leave the key store. A change is recorded as pending when
//! its script is produced and becomes the card's state when the terminal reports the card's
//! `9000`; any other status word drops it, on the record.

use std::sync::Arc;

use crypto::Algorithm;
use issuance::apps::{
    self, AppError, AppFile, Application, CardFunction, Code, FileStructure, Function, Manager,
    Owner, Target, UpdateCommand,
};
use keys::master::{MasterKeyError, MasterKeyStore, MasterPurpose};
use serde::{Deserialize, Serialize};
use store::{AppRow, CardFunctionEventRow, CardFunctionRow, FunctionRow, Role};

use crate::{Caller, Platform, PlatformError, Result};

/// Card states in which a card is in its holder's hands and may be updated.
const UPDATABLE_STATES: [&str; 2] = ["issued", "active"];

impl From<AppError> for PlatformError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::AlreadyEnabled(_) | AppError::NotEnabled(_) | AppError::NothingPending(_) => {
                PlatformError::Conflict(e.to_string())
            }
            AppError::Key(_) => PlatformError::Unexpected(e.to_string()),
            other => PlatformError::invalid("registry", other.to_string()),
        }
    }
}

pub(crate) fn key_error(e: MasterKeyError) -> PlatformError {
    match e {
        MasterKeyError::UnknownKey(k) => PlatformError::Conflict(format!(
            "the maintenance master key {k} is not in the master-key store"
        )),
        other => PlatformError::Unexpected(format!("master-key store: {other}")),
    }
}

/// How the caller counts for application management; `Forbidden` for roles that take no
/// part (clearing officers, auditors).
pub(crate) fn manager(caller: &Caller) -> Result<Manager> {
    match (caller.role, caller.department) {
        (Role::Administrator, _) => Ok(Manager::Administrator),
        (Role::DepartmentOfficer, Some(d)) => Ok(Manager::Department(d)),
        (Role::CounterClerk, _) => Ok(Manager::Counter),
        (role, _) => Err(PlatformError::Forbidden(format!(
            "the {} role does not manage card applications",
            role.as_str()
        ))),
    }
}

// ---- row encodings ----------------------------------------------------------------------

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum FileJson {
    Binary {
        sfi: u8,
        size: u16,
    },
    Linear {
        sfi: u8,
        record_len: u8,
        records: u8,
    },
    Cyclic {
        sfi: u8,
        record_len: u8,
        records: u8,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TargetJson {
    Record { sfi: u8, record: u8 },
    Binary { sfi: u8, offset: u8, len: u8 },
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> PlatformError {
    PlatformError::Unexpected(format!("stored {what}: {e}"))
}

fn app_to_row(a: &Application, now_ms: i64) -> AppRow {
    let files: Vec<FileJson> = a
        .files
        .iter()
        .map(|f| match f.structure {
            FileStructure::Binary { size } => FileJson::Binary { sfi: f.sfi, size },
            FileStructure::Linear {
                record_len,
                records,
            } => FileJson::Linear {
                sfi: f.sfi,
                record_len,
                records,
            },
            FileStructure::Cyclic {
                record_len,
                records,
            } => FileJson::Cyclic {
                sfi: f.sfi,
                record_len,
                records,
            },
        })
        .collect();
    AppRow {
        code: a.code.to_string(),
        name: a.name.clone(),
        aid_hex: hex::encode_upper(&a.aid),
        owner: a.owner.as_str().to_string(),
        files_json: serde_json::to_string(&files).expect("plain structs serialize"),
        key_purposes: a
            .key_purposes
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(","),
        created_ms: now_ms,
    }
}

fn row_to_app(r: &AppRow) -> Result<Application> {
    let files: Vec<FileJson> =
        serde_json::from_str(&r.files_json).map_err(|e| corrupt("application files", e))?;
    Ok(Application {
        code: Code::parse(&r.code).map_err(|e| corrupt("application code", e))?,
        name: r.name.clone(),
        aid: hex::decode(&r.aid_hex).map_err(|e| corrupt("AID", e))?,
        owner: Owner::parse(&r.owner).map_err(|e| corrupt("owner", e))?,
        files: files
            .into_iter()
            .map(|f| match f {
                FileJson::Binary { sfi, size } => AppFile {
                    sfi,
                    structure: FileStructure::Binary { size },
                },
                FileJson::Linear {
                    sfi,
                    record_len,
                    records,
                } => AppFile {
                    sfi,
                    structure: FileStructure::Linear {
                        record_len,
                        records,
                    },
                },
                FileJson::Cyclic {
                    sfi,
                    record_len,
                    records,
                } => AppFile {
                    sfi,
                    structure: FileStructure::Cyclic {
                        record_len,
                        records,
                    },
                },
            })
            .collect(),
        key_purposes: r
            .key_purposes
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| MasterPurpose::parse(p).ok_or_else(|| corrupt("key purpose", p)))
            .collect::<Result<_>>()?,
    })
}

fn function_to_row(f: &Function, now_ms: i64) -> FunctionRow {
    let target = match f.target {
        Target::Record { sfi, record } => TargetJson::Record { sfi, record },
        Target::Binary { sfi, offset, len } => TargetJson::Binary { sfi, offset, len },
    };
    FunctionRow {
        code: f.code.to_string(),
        app: f.app.to_string(),
        name: f.name.clone(),
        target_json: serde_json::to_string(&target).expect("plain structs serialize"),
        parameters_hex: hex::encode_upper(&f.parameters),
        created_ms: now_ms,
    }
}

fn row_to_function(r: &FunctionRow) -> Result<Function> {
    let target: TargetJson =
        serde_json::from_str(&r.target_json).map_err(|e| corrupt("function target", e))?;
    Ok(Function {
        code: Code::parse(&r.code).map_err(|e| corrupt("function code", e))?,
        name: r.name.clone(),
        app: Code::parse(&r.app).map_err(|e| corrupt("function application", e))?,
        target: match target {
            TargetJson::Record { sfi, record } => Target::Record { sfi, record },
            TargetJson::Binary { sfi, offset, len } => Target::Binary { sfi, offset, len },
        },
        parameters: hex::decode(&r.parameters_hex).map_err(|e| corrupt("parameters", e))?,
    })
}

// ---- views ------------------------------------------------------------------------------

/// The registry as stored: applications and their functions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    pub apps: Vec<Application>,
    pub functions: Vec<Function>,
}

impl Registry {
    pub fn app(&self, code: &str) -> Option<&Application> {
        self.apps.iter().find(|a| a.code.as_str() == code)
    }
    pub fn function(&self, code: &str) -> Option<&Function> {
        self.functions.iter().find(|f| f.code.as_str() == code)
    }
}

/// One function on one card, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardFunctionView {
    pub function: String,
    pub app: String,
    pub enabled: bool,
    pub pending: Option<bool>,
    pub version: i64,
}

/// A produced script: APDUs to send in order after the GET CHALLENGE whose answer it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptView {
    pub number: String,
    pub function: String,
    pub enable: bool,
    pub apdus: Vec<Vec<u8>>,
}

/// The outcome of a confirmation: whether the card took the change, and the state now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmView {
    pub applied: bool,
    pub state: CardFunctionView,
}

impl Platform {
    /// Installs the master-key store that holds the applications' maintenance master keys
    /// (`<app>/maintenance/v1`). Without one, scripts are refused; the registry still works.
    pub fn set_master_keys(&self, masters: Arc<dyn MasterKeyStore>) {
        // A second call keeps the first store: the platform's keys do not change under it.
        let _ = self.masters.set(masters);
    }

    pub(crate) fn master_keys(&self) -> Result<&Arc<dyn MasterKeyStore>> {
        self.masters.get().ok_or_else(|| {
            PlatformError::Conflict(
                "no master-key store is attached to this process: create one with \
                 `citycard keys load-test-set` / `keys generate` (DATA_DIR/keys/master-keys.json) \
                 or run the command with --pkcs11-module"
                    .into(),
            )
        })
    }

    /// The whole registry.
    pub async fn apps_registry(&self) -> Result<Registry> {
        let apps = self
            .store
            .apps_list()
            .await?
            .iter()
            .map(row_to_app)
            .collect::<Result<_>>()?;
        let functions = self
            .store
            .functions_list()
            .await?
            .iter()
            .map(row_to_function)
            .collect::<Result<_>>()?;
        Ok(Registry { apps, functions })
    }

    /// Registers an application. Administrators register any; a department officer only one
    /// its own department owns.
    pub async fn app_register(&self, caller: &Caller, app: &Application) -> Result<()> {
        let who = manager(caller)?;
        if !apps::may_manage(app.owner, who) {
            return Err(PlatformError::Forbidden(format!(
                "{} may not register an application owned by {}",
                caller.username,
                app.owner.as_str()
            )));
        }
        app.validate()?;
        let now = self.clock.now_ms();
        let draft = caller.draft(
            "app.register",
            format!("app:{}", app.code),
            format!(
                "aid={} owner={}",
                hex::encode_upper(&app.aid),
                app.owner.as_str()
            ),
        );
        self.store
            .app_insert(&app_to_row(app, now), draft, now)
            .await?;
        Ok(())
    }

    /// Registers a function of a registered application, under the same scoping.
    pub async fn function_register(&self, caller: &Caller, f: &Function) -> Result<()> {
        let who = manager(caller)?;
        let registry = self.apps_registry().await?;
        let app = registry
            .app(f.app.as_str())
            .ok_or_else(|| PlatformError::NotFound(format!("application {}", f.app)))?;
        if !apps::may_manage(app.owner, who) {
            return Err(PlatformError::Forbidden(format!(
                "{} may not add functions to application {} (owned by {})",
                caller.username,
                app.code,
                app.owner.as_str()
            )));
        }
        f.validate(app)?;
        let now = self.clock.now_ms();
        let draft = caller.draft(
            "app.function.register",
            format!("function:{}", f.code),
            format!("app={}", f.app),
        );
        self.store
            .function_insert(&function_to_row(f, now), draft, now)
            .await?;
        Ok(())
    }

    /// Registers whatever of the seed registry (`issuance::apps::seed`) is missing; returns
    /// how many applications and functions it added.
    pub async fn apps_seed(&self, caller: &Caller) -> Result<usize> {
        let (apps_seed, functions) = apps::seed();
        let existing = self.apps_registry().await?;
        let mut added = 0;
        for a in &apps_seed {
            if existing.app(a.code.as_str()).is_none() {
                self.app_register(caller, a).await?;
                added += 1;
            }
        }
        for f in &functions {
            if existing.function(f.code.as_str()).is_none() {
                self.function_register(caller, f).await?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// The functions recorded on a card (enabled, disabled or with a change pending).
    pub async fn card_functions(
        &self,
        caller: &Caller,
        number: &str,
    ) -> Result<Vec<CardFunctionView>> {
        // Reading states is open to every role the route admits (auditors included).
        let _ = caller;
        self.updatable_card(number, false).await?;
        let registry = self.apps_registry().await?;
        self.store
            .card_functions(number)
            .await?
            .into_iter()
            .map(|r| view(&registry, &r))
            .collect()
    }

    pub(crate) async fn updatable_card(&self, number: &str, must_be_live: bool) -> Result<()> {
        let card = self
            .store
            .card_by_number(number)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        if must_be_live && !UPDATABLE_STATES.contains(&card.state.as_str()) {
            return Err(PlatformError::Conflict(format!(
                "card {number} is {}; only an issued or active card is updated",
                card.state
            )));
        }
        Ok(())
    }

    /// Enables or disables `function` on a card: records the change as pending and produces
    /// the script for the card's `challenge` (its answer to GET CHALLENGE). The MAC is computed
    /// by the master-key store under the application's maintenance key for the card.
    pub async fn card_function_script(
        &self,
        caller: &Caller,
        number: &str,
        function: &str,
        enable: bool,
        algorithm: Algorithm,
        challenge: [u8; 4],
    ) -> Result<ScriptView> {
        let who = manager(caller)?;
        let card_number = chip::CardNumber::parse(number)
            .map_err(|e| PlatformError::invalid("number", e.to_string()))?;
        let registry = self.apps_registry().await?;
        let f = registry
            .function(function)
            .ok_or_else(|| PlatformError::NotFound(format!("function {function}")))?;
        let app = registry
            .app(f.app.as_str())
            .ok_or_else(|| PlatformError::NotFound(format!("application {}", f.app)))?;
        if !apps::may_change_card(app.owner, who) {
            return Err(PlatformError::Forbidden(format!(
                "{} may not change functions of application {} (owned by {})",
                caller.username,
                app.code,
                app.owner.as_str()
            )));
        }
        self.updatable_card(number, true).await?;
        let current = self.card_function_row(number, function).await?;
        let state = current.as_ref().map_or(
            CardFunction {
                enabled: false,
                pending: None,
            },
            |r| CardFunction {
                enabled: r.enabled,
                pending: r.pending,
            },
        );
        let next = apps::request_change(&f.code, state, enable)?;
        let update = UpdateCommand::new(app, f, enable)?;
        let key = app.maintenance_key()?;
        let masters = self.master_keys()?.clone();
        let div = card_number.div_data();
        let line = update.line_command(challenge);
        // Key stores may block (an HSM session); keep them off the async workers.
        let mac = tokio::task::spawn_blocking(move || {
            masters.line_protection_mac(&key, algorithm, &div, &line)
        })
        .await
        .map_err(|e| PlatformError::Unexpected(e.to_string()))?
        .map_err(key_error)?;
        let script = apps::assemble(app, &update, mac);

        let now = self.clock.now_ms();
        let row = CardFunctionRow {
            number: number.to_string(),
            function: function.to_string(),
            enabled: next.enabled,
            pending: next.pending,
            version: current.as_ref().map_or(1, |r| r.version + 1),
            updated_ms: now,
        };
        let action = if enable {
            "script_enable"
        } else {
            "script_disable"
        };
        let event = CardFunctionEventRow {
            number: number.to_string(),
            function: function.to_string(),
            action: action.to_string(),
            sw: None,
            actor: caller.actor(),
            at_ms: now,
        };
        let draft = caller.draft(
            "card.function.script",
            format!("card:{number}"),
            format!("function={function} enable={enable}"),
        );
        self.store
            .card_function_set(&row, &event, draft, now)
            .await
            .map_err(version_conflict)?;
        Ok(ScriptView {
            number: number.to_string(),
            function: function.to_string(),
            enable,
            apdus: script.apdus,
        })
    }

    async fn card_function_row(
        &self,
        number: &str,
        function: &str,
    ) -> Result<Option<CardFunctionRow>> {
        Ok(self
            .store
            .card_functions(number)
            .await?
            .into_iter()
            .find(|r| r.function == function))
    }

    /// The terminal reports the card's status word for the pending change's update: `9000`
    /// applies it; anything else drops it (the card refused, nothing changed on it).
    pub async fn card_function_confirm(
        &self,
        caller: &Caller,
        number: &str,
        function: &str,
        sw: u16,
    ) -> Result<ConfirmView> {
        let who = manager(caller)?;
        let registry = self.apps_registry().await?;
        let f = registry
            .function(function)
            .ok_or_else(|| PlatformError::NotFound(format!("function {function}")))?;
        let app = registry
            .app(f.app.as_str())
            .ok_or_else(|| PlatformError::NotFound(format!("application {}", f.app)))?;
        if !apps::may_change_card(app.owner, who) {
            return Err(PlatformError::Forbidden(format!(
                "{} may not change functions of application {}",
                caller.username, app.code
            )));
        }
        self.updatable_card(number, false).await?;
        let current = self
            .card_function_row(number, function)
            .await?
            .ok_or_else(|| AppError::NothingPending(function.to_string()))?;
        let (next, applied) = apps::confirm_change(
            &f.code,
            CardFunction {
                enabled: current.enabled,
                pending: current.pending,
            },
            sw,
        )?;
        let now = self.clock.now_ms();
        let row = CardFunctionRow {
            number: number.to_string(),
            function: function.to_string(),
            enabled: next.enabled,
            pending: next.pending,
            version: current.version + 1,
            updated_ms: now,
        };
        let event = CardFunctionEventRow {
            number: number.to_string(),
            function: function.to_string(),
            action: if applied { "applied" } else { "failed" }.to_string(),
            sw: Some(i32::from(sw)),
            actor: caller.actor(),
            at_ms: now,
        };
        let draft = caller.draft(
            "card.function.confirm",
            format!("card:{number}"),
            format!("function={function} sw={sw:04X} applied={applied}"),
        );
        self.store
            .card_function_set(&row, &event, draft, now)
            .await
            .map_err(version_conflict)?;
        Ok(ConfirmView {
            applied,
            state: view(&registry, &row)?,
        })
    }

    /// The history of a card's function changes, oldest first.
    pub async fn card_function_history(
        &self,
        caller: &Caller,
        number: &str,
    ) -> Result<Vec<CardFunctionEventRow>> {
        let _ = caller;
        self.updatable_card(number, false).await?;
        Ok(self.store.card_function_events(number).await?)
    }
}

fn version_conflict(e: store::StoreError) -> PlatformError {
    match e {
        store::StoreError::Conflict(m) => PlatformError::Conflict(m),
        other => other.into(),
    }
}

fn view(registry: &Registry, r: &CardFunctionRow) -> Result<CardFunctionView> {
    let app = registry
        .function(&r.function)
        .map(|f| f.app.to_string())
        .ok_or_else(|| corrupt("card function", &r.function))?;
    Ok(CardFunctionView {
        function: r.function.clone(),
        app,
        enabled: r.enabled,
        pending: r.pending,
        version: r.version,
    })
}
