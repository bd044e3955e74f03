//! Application management over HTTP (issue 4 item 7): the registry under `/api/v1/apps`, a
//! card's functions and their post-issuance scripts under `/api/v1/cards/{number}/functions`,
//! a card's contact (`/api/v1/cards/{number}/contact`: the scripts of pending chip updates,
//! issue 8 item 6) and the console page `/console/cards/apps`.

use crate::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Json, Query};
use askama::Template;
use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use crypto::Algorithm;
use issuance::apps::{AppFile, Application, Code, FileStructure, Function, Owner, Target};
use keys::master::MasterPurpose;
use platform::apps::{CardFunctionView, Registry};
use platform::{Caller, PlatformError};
use utoipa::ToSchema;

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AppFileDto {
    pub sfi: u8,
    /// binary, linear or cyclic
    pub structure: String,
    /// Bytes, for a binary file.
    pub size: Option<u16>,
    /// For record files.
    pub record_len: Option<u8>,
    pub records: Option<u8>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct AppDto {
    /// 1–16 of a-z, 0-9, _; also the key-store name of its maintenance key.
    pub code: String,
    pub name: String,
    /// Upper-case hex, 5–16 bytes.
    pub aid: String,
    /// card_company, or a department: police, hr_social_security, health,
    /// medical_insurance, civil_affairs, education, tax
    pub owner: String,
    pub files: Vec<AppFileDto>,
    /// purchase, load, tac, pin, maintenance, …
    pub key_purposes: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct FunctionDto {
    pub code: String,
    pub name: String,
    /// The application it belongs to.
    pub app: String,
    pub sfi: u8,
    /// For a record target.
    pub record: Option<u8>,
    /// For a binary target.
    pub offset: Option<u8>,
    pub len: Option<u8>,
    /// Hex; written after the status byte when enabled.
    #[serde(default)]
    pub parameters: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct RegistryDto {
    pub apps: Vec<AppDto>,
    pub functions: Vec<FunctionDto>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct CardFunctionDto {
    pub function: String,
    pub app: String,
    pub enabled: bool,
    /// The target state of a change whose script was produced and not yet confirmed.
    pub pending: Option<bool>,
    pub version: i64,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ScriptRequest {
    /// true to enable the function, false to disable it.
    pub enable: bool,
    /// The card's answer to GET CHALLENGE (`00 84 00 00 04`), 8 hex digits.
    pub challenge: String,
    /// The card's algorithm profile: 3des or sm4.
    pub algorithm: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ScriptDto {
    pub number: String,
    pub function: String,
    pub enable: bool,
    /// Command APDUs in hex, to send in order: SELECT the application, then the
    /// line-protected UPDATE.
    pub apdus: Vec<String>,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ConfirmRequest {
    /// The card's status word for the script's last command, 4 hex digits (9000 = done).
    pub sw: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ConfirmDto {
    /// Whether the card took the change.
    pub applied: bool,
    pub state: CardFunctionDto,
}

fn bad(field: &str, message: impl Into<String>) -> ApiError {
    PlatformError::invalid(field, message).into()
}

fn app_dto(a: &Application) -> AppDto {
    AppDto {
        code: a.code.to_string(),
        name: a.name.clone(),
        aid: hex::encode_upper(&a.aid),
        owner: a.owner.as_str().to_string(),
        files: a
            .files
            .iter()
            .map(|f| match f.structure {
                FileStructure::Binary { size } => AppFileDto {
                    sfi: f.sfi,
                    structure: "binary".into(),
                    size: Some(size),
                    record_len: None,
                    records: None,
                },
                FileStructure::Linear {
                    record_len,
                    records,
                }
                | FileStructure::Cyclic {
                    record_len,
                    records,
                } => AppFileDto {
                    sfi: f.sfi,
                    structure: if matches!(f.structure, FileStructure::Linear { .. }) {
                        "linear".into()
                    } else {
                        "cyclic".into()
                    },
                    size: None,
                    record_len: Some(record_len),
                    records: Some(records),
                },
            })
            .collect(),
        key_purposes: a
            .key_purposes
            .iter()
            .map(|p| p.as_str().to_string())
            .collect(),
    }
}

fn function_dto(f: &Function) -> FunctionDto {
    let (sfi, record, offset, len) = match f.target {
        Target::Record { sfi, record } => (sfi, Some(record), None, None),
        Target::Binary { sfi, offset, len } => (sfi, None, Some(offset), Some(len)),
    };
    FunctionDto {
        code: f.code.to_string(),
        name: f.name.clone(),
        app: f.app.to_string(),
        sfi,
        record,
        offset,
        len,
        parameters: hex::encode_upper(&f.parameters),
    }
}

fn code(field: &str, text: &str) -> Result<Code, ApiError> {
    Code::parse(text).map_err(|e| bad(field, e.to_string()))
}

fn app_from(d: AppDto) -> Result<Application, ApiError> {
    let files = d
        .files
        .into_iter()
        .map(|f| {
            let structure = match (f.structure.as_str(), f.size, f.record_len, f.records) {
                ("binary", Some(size), None, None) => FileStructure::Binary { size },
                ("linear", None, Some(record_len), Some(records)) => FileStructure::Linear {
                    record_len,
                    records,
                },
                ("cyclic", None, Some(record_len), Some(records)) => FileStructure::Cyclic {
                    record_len,
                    records,
                },
                _ => {
                    return Err(bad(
                        "files",
                        "a binary file has size; a linear or cyclic one record_len and records",
                    ));
                }
            };
            Ok(AppFile {
                sfi: f.sfi,
                structure,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Application {
        code: code("code", &d.code)?,
        name: d.name,
        aid: hex::decode(d.aid.trim()).map_err(|_| bad("aid", "not hex"))?,
        owner: Owner::parse(&d.owner).map_err(|e| bad("owner", e.to_string()))?,
        files,
        key_purposes: d
            .key_purposes
            .iter()
            .map(|p| {
                MasterPurpose::parse(p)
                    .ok_or_else(|| bad("key_purposes", format!("unknown key purpose {p:?}")))
            })
            .collect::<Result<_, _>>()?,
    })
}

fn function_from(app: &str, d: FunctionDto) -> Result<Function, ApiError> {
    if d.app != app {
        return Err(bad("app", "differs from the application in the path"));
    }
    let target = match (d.record, d.offset, d.len) {
        (Some(record), None, None) => Target::Record { sfi: d.sfi, record },
        (None, Some(offset), Some(len)) => Target::Binary {
            sfi: d.sfi,
            offset,
            len,
        },
        _ => {
            return Err(bad(
                "record",
                "give record (a record target) or offset and len (a binary target)",
            ));
        }
    };
    Ok(Function {
        code: code("code", &d.code)?,
        name: d.name,
        app: code("app", app)?,
        target,
        parameters: hex::decode(d.parameters.trim()).map_err(|_| bad("parameters", "not hex"))?,
    })
}

fn card_function_dto(v: CardFunctionView) -> CardFunctionDto {
    CardFunctionDto {
        function: v.function,
        app: v.app,
        enabled: v.enabled,
        pending: v.pending,
        version: v.version,
    }
}

fn registry_dto(r: &Registry) -> RegistryDto {
    RegistryDto {
        apps: r.apps.iter().map(app_dto).collect(),
        functions: r.functions.iter().map(function_dto).collect(),
    }
}

#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", security(("bearer" = [])),
    responses((status = 200, body = RegistryDto)))]
pub async fn registry(State(s): State<AppState>) -> ApiResult<axum::Json<RegistryDto>> {
    Ok(axum::Json(registry_dto(&s.platform.apps_registry().await?)))
}

#[utoipa::path(post, path = "/api/v1/apps", tag = "apps", security(("bearer" = [])),
    request_body = AppDto,
    responses((status = 201, body = AppDto), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn register_app(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Json(b): Json<AppDto>,
) -> ApiResult<(StatusCode, axum::Json<AppDto>)> {
    let app = app_from(b)?;
    s.platform.app_register(&c, &app).await?;
    Ok((StatusCode::CREATED, axum::Json(app_dto(&app))))
}

#[utoipa::path(post, path = "/api/v1/apps/{code}/functions", tag = "apps", security(("bearer" = [])),
    params(("code" = String, Path, description = "application code")),
    request_body = FunctionDto,
    responses((status = 201, body = FunctionDto), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn register_function(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(app): Path<String>,
    Json(b): Json<FunctionDto>,
) -> ApiResult<(StatusCode, axum::Json<FunctionDto>)> {
    let f = function_from(&app, b)?;
    s.platform.function_register(&c, &f).await?;
    Ok((StatusCode::CREATED, axum::Json(function_dto(&f))))
}

#[utoipa::path(get, path = "/api/v1/cards/{number}/functions", tag = "apps", security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = [CardFunctionDto]), (status = 404, body = Problem)))]
pub async fn card_functions(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<Vec<CardFunctionDto>>> {
    let v = s.platform.card_functions(&c, &number).await?;
    Ok(axum::Json(v.into_iter().map(card_function_dto).collect()))
}

#[utoipa::path(post, path = "/api/v1/cards/{number}/functions/{function}/script", tag = "apps",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number"),
           ("function" = String, Path, description = "function code")),
    request_body = ScriptRequest,
    responses((status = 200, body = ScriptDto), (status = 403, body = Problem), (status = 409, body = Problem)))]
pub async fn script(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((number, function)): Path<(String, String)>,
    Json(b): Json<ScriptRequest>,
) -> ApiResult<axum::Json<ScriptDto>> {
    let challenge = parse_challenge(&b.challenge)?;
    let algorithm = parse_algorithm(&b.algorithm)?;
    let v = s
        .platform
        .card_function_script(&c, &number, &function, b.enable, algorithm, challenge)
        .await?;
    Ok(axum::Json(ScriptDto {
        number: v.number,
        function: v.function,
        enable: v.enable,
        apdus: v.apdus.iter().map(hex::encode_upper).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/cards/{number}/functions/{function}/confirm", tag = "apps",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number"),
           ("function" = String, Path, description = "function code")),
    request_body = ConfirmRequest,
    responses((status = 200, body = ConfirmDto), (status = 409, body = Problem)))]
pub async fn confirm(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path((number, function)): Path<(String, String)>,
    Json(b): Json<ConfirmRequest>,
) -> ApiResult<axum::Json<ConfirmDto>> {
    let sw = parse_sw(&b.sw)?;
    let v = s
        .platform
        .card_function_confirm(&c, &number, &function, sw)
        .await?;
    Ok(axum::Json(ConfirmDto {
        applied: v.applied,
        state: card_function_dto(v.state),
    }))
}

// ---- contacts: chip updates ------------------------------------------------------------

#[derive(serde::Deserialize, ToSchema)]
pub struct ContactRequest {
    /// The card's answer to GET CHALLENGE (`00 84 00 00 04`), 8 hex digits, asked after
    /// selecting TRANSIT (a script's SELECT keeps it).
    pub challenge: String,
    /// The card's purse algorithm profile: 3des or sm4.
    pub algorithm: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChipScriptDto {
    /// What the script updates: card_type (TRANSIT EF15 byte 28).
    pub item: String,
    /// The value the chip gets (for card_type the platform's card type: ordinary, student, …).
    pub value: String,
    /// The update's version, to name in the confirmation.
    pub version: i64,
    /// Command APDUs in hex, to send in order: SELECT TRANSIT, then the line-protected
    /// UPDATE BINARY.
    pub apdus: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ContactDto {
    pub number: String,
    /// At most one script: each line-protected command uses up the card's challenge.
    pub scripts: Vec<ChipScriptDto>,
    /// Chip updates pending on the card, the scripted one included until confirmed; more than
    /// the scripts answered means: contact again with a new challenge after confirming.
    pub pending: usize,
}

#[derive(serde::Deserialize, ToSchema)]
pub struct ContactConfirmRequest {
    pub item: String,
    pub version: i64,
    /// The card's status word for the script's last command, 4 hex digits (9000 = done).
    pub sw: String,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ContactConfirmDto {
    pub item: String,
    pub version: i64,
    /// The card took this version.
    pub applied: bool,
    /// The update is still pending (the card refused, or a newer value waits).
    pub pending: bool,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChipUpdateDto {
    pub item: String,
    pub value: String,
    pub version: i64,
    pub pending: bool,
    pub updated_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChipUpdateEventDto {
    pub item: String,
    pub value: String,
    pub version: i64,
    /// script, applied, failed or superseded.
    pub action: String,
    /// The card's status word (4 hex digits) for a confirmation.
    pub sw: Option<String>,
    pub actor: String,
    pub at_ms: i64,
}

#[derive(serde::Serialize, serde::Deserialize, ToSchema)]
pub struct ChipUpdatesDto {
    pub updates: Vec<ChipUpdateDto>,
    pub history: Vec<ChipUpdateEventDto>,
}

fn parse_sw(text: &str) -> Result<u16, ApiError> {
    u16::from_str_radix(text.trim(), 16)
        .ok()
        .filter(|_| text.trim().len() == 4)
        .ok_or_else(|| bad("sw", "must be 4 hex digits"))
}

fn parse_challenge(text: &str) -> Result<[u8; 4], ApiError> {
    hex::decode(text.trim())
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or_else(|| bad("challenge", "must be 8 hex digits (4 bytes)"))
}

fn parse_algorithm(text: &str) -> Result<Algorithm, ApiError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "3des" | "tdes" | "00" => Ok(Algorithm::Tdes),
        "sm4" | "04" => Ok(Algorithm::Sm4),
        _ => Err(bad("algorithm", "must be 3des or sm4")),
    }
}

/// A card's contact: a counter, kiosk or top-up terminal with the card in its field asks for
/// the scripts of the card's pending chip updates (possibly none).
#[utoipa::path(post, path = "/api/v1/cards/{number}/contact", tag = "apps",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    request_body = ContactRequest,
    responses((status = 200, body = ContactDto), (status = 403, body = Problem),
              (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn contact(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
    Json(b): Json<ContactRequest>,
) -> ApiResult<axum::Json<ContactDto>> {
    let challenge = parse_challenge(&b.challenge)?;
    let algorithm = parse_algorithm(&b.algorithm)?;
    let v = s
        .platform
        .card_contact(&c, &number, algorithm, challenge)
        .await?;
    Ok(axum::Json(ContactDto {
        number: v.number,
        scripts: v
            .scripts
            .into_iter()
            .map(|x| ChipScriptDto {
                item: x.item,
                value: x.value,
                version: x.version,
                apdus: x.apdus.iter().map(hex::encode_upper).collect(),
            })
            .collect(),
        pending: v.pending,
    }))
}

/// The card's status word for a contact's script: 9000 marks the chip updated; anything else
/// leaves the update pending for the next contact.
#[utoipa::path(post, path = "/api/v1/cards/{number}/contact/confirm", tag = "apps",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    request_body = ContactConfirmRequest,
    responses((status = 200, body = ContactConfirmDto), (status = 404, body = Problem),
              (status = 409, body = Problem)))]
pub async fn contact_confirm(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
    Json(b): Json<ContactConfirmRequest>,
) -> ApiResult<axum::Json<ContactConfirmDto>> {
    let sw = parse_sw(&b.sw)?;
    let v = s
        .platform
        .card_contact_confirm(&c, &number, b.item.trim(), b.version, sw)
        .await?;
    Ok(axum::Json(ContactConfirmDto {
        item: v.item,
        version: v.version,
        applied: v.applied,
        pending: v.pending,
    }))
}

/// A card's chip updates (pending or applied) and their history.
#[utoipa::path(get, path = "/api/v1/cards/{number}/chip-updates", tag = "apps",
    security(("bearer" = [])),
    params(("number" = String, Path, description = "16-digit card number")),
    responses((status = 200, body = ChipUpdatesDto), (status = 404, body = Problem)))]
pub async fn chip_updates(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    Path(number): Path<String>,
) -> ApiResult<axum::Json<ChipUpdatesDto>> {
    let updates = s.platform.card_chip_updates(&c, &number).await?;
    let history = s.platform.card_chip_update_history(&c, &number).await?;
    Ok(axum::Json(ChipUpdatesDto {
        updates: updates
            .into_iter()
            .map(|u| ChipUpdateDto {
                item: u.item,
                value: u.value,
                version: u.version,
                pending: u.pending,
                updated_ms: u.updated_ms,
            })
            .collect(),
        history: history
            .into_iter()
            .map(|e| ChipUpdateEventDto {
                item: e.item,
                value: e.value,
                version: e.version,
                action: e.action,
                sw: e.sw.map(|sw| format!("{sw:04X}")),
                actor: e.actor,
                at_ms: e.at_ms,
            })
            .collect(),
    }))
}

// ---- console ----------------------------------------------------------------------------

/// The page's own texts, Chinese first.
pub struct AppsTexts {
    pub title: &'static str,
    pub apps: &'static str,
    pub functions: &'static str,
    pub code: &'static str,
    pub name: &'static str,
    pub aid: &'static str,
    pub owner: &'static str,
    pub files: &'static str,
    pub keys: &'static str,
    pub app: &'static str,
    pub target: &'static str,
    pub none: &'static str,
}

const ZH: AppsTexts = AppsTexts {
    title: "应用管理",
    apps: "卡应用",
    functions: "卡功能",
    code: "代码",
    name: "名称",
    aid: "AID",
    owner: "所属单位",
    files: "文件",
    keys: "密钥用途",
    app: "所属应用",
    target: "写入位置",
    none: "尚未登记",
};

const EN: AppsTexts = AppsTexts {
    title: "Application management",
    apps: "Card applications",
    functions: "Card functions",
    code: "Code",
    name: "Name",
    aid: "AID",
    owner: "Owner",
    files: "Files",
    keys: "Key purposes",
    app: "Application",
    target: "Written to",
    none: "Nothing registered yet",
};

fn owner_name(owner: &str, zh: bool) -> String {
    let (z, e) = match owner {
        "card_company" => ("市民卡公司", "Card company"),
        "police" => ("公安", "Public security"),
        "hr_social_security" => ("人社", "Human resources and social security"),
        "health" => ("卫健", "Health commission"),
        "medical_insurance" => ("医保", "Medical insurance"),
        "civil_affairs" => ("民政", "Civil affairs"),
        "education" => ("教育", "Education"),
        "tax" => ("税务", "Tax"),
        other => (other, other),
    };
    if zh { z } else { e }.to_string()
}

pub struct AppRowView {
    pub code: String,
    pub name: String,
    pub aid: String,
    pub owner: String,
    pub files: String,
    pub keys: String,
}

pub struct FunctionRowView {
    pub code: String,
    pub name: String,
    pub app: String,
    pub target: String,
}

#[derive(Template)]
#[template(path = "apps.html")]
struct AppsPage {
    t: &'static crate::i18n::Texts,
    a: &'static AppsTexts,
    user: Option<String>,
    apps: Vec<AppRowView>,
    functions: Vec<FunctionRowView>,
}

#[derive(serde::Deserialize)]
pub struct LangQuery {
    lang: Option<String>,
}

pub async fn console_page(
    State(s): State<AppState>,
    Extension(c): Extension<Caller>,
    headers: HeaderMap,
    Query(q): Query<LangQuery>,
) -> ApiResult<Response> {
    let (t, set) = crate::console::language(&headers, &q.lang);
    let zh = t.lang != "en";
    let r = s.platform.apps_registry().await?;
    let apps = r
        .apps
        .iter()
        .map(|a| AppRowView {
            code: a.code.to_string(),
            name: a.name.clone(),
            aid: hex::encode_upper(&a.aid),
            owner: owner_name(a.owner.as_str(), zh),
            files: a
                .files
                .iter()
                .map(|f| match f.structure {
                    FileStructure::Binary { size } => format!("SFI {:02X}: {size} B", f.sfi),
                    FileStructure::Linear {
                        record_len,
                        records,
                    } => format!("SFI {:02X}: {records}×{record_len}", f.sfi),
                    FileStructure::Cyclic {
                        record_len,
                        records,
                    } => format!("SFI {:02X}: ⟳{records}×{record_len}", f.sfi),
                })
                .collect::<Vec<_>>()
                .join(", "),
            keys: a
                .key_purposes
                .iter()
                .map(|p| p.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let functions = r
        .functions
        .iter()
        .map(|f| FunctionRowView {
            code: f.code.to_string(),
            name: f.name.clone(),
            app: f.app.to_string(),
            target: match f.target {
                Target::Record { sfi, record } => format!("SFI {sfi:02X} #{record}"),
                Target::Binary { sfi, offset, len } => {
                    format!("SFI {sfi:02X} @{offset}+{len}")
                }
            },
        })
        .collect();
    crate::console::page(
        AppsPage {
            t,
            a: if zh { &ZH } else { &EN },
            user: Some(c.username.clone()),
            apps,
            functions,
        },
        set,
    )
}
