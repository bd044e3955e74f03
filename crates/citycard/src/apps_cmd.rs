//! `citycard apps …` (the application registry, on the local platform) and
//! `citycard card script` (a kiosk: update a card image's functions through the platform's
//! API, end to end: SELECT, GET CHALLENGE, ask the platform for the script, send it, confirm).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use issuance::apps::{AppFile, Application, Code, FileStructure, Function, Owner, Target};
use keys::master::MasterPurpose;
use platform::{Caller, Platform};
use serde_json::{Value, json};

#[derive(clap::Subcommand)]
pub enum AppsCommand {
    /// List the registered applications and functions.
    List {
        #[arg(long, default_value = "csv", value_parser = ["csv", "json"])]
        format: String,
    },
    /// Register an application, a function of one, or (--seed) whatever of the seed registry
    /// is missing (SSSE, TRANSIT, HEALTH, CITY; campus, canteen wallet, library, hospital,
    /// access groups, concessions).
    Add(Box<AddArgs>),
}

#[derive(clap::Args)]
pub struct AddArgs {
    /// Register the seed registry's missing entries.
    #[arg(long, conflicts_with_all = ["code", "function"])]
    seed: bool,
    /// A new application's code (1–16 of a-z, 0-9, _).
    #[arg(long)]
    code: Option<String>,
    /// A new function's code (with --app, --sfi and --record or --offset/--len).
    #[arg(long)]
    function: Option<String>,
    #[arg(long)]
    name: Option<String>,
    /// Application AID, hex.
    #[arg(long)]
    aid: Option<String>,
    /// card_company or a department (police, hr_social_security, health, …).
    #[arg(long)]
    owner: Option<String>,
    /// A file, repeatable: `SFI:binary:SIZE`, `SFI:linear:LENxCOUNT`, `SFI:cyclic:LENxCOUNT`
    /// (SFI in hex).
    #[arg(long = "file")]
    files: Vec<String>,
    /// Key purposes, comma-separated (purchase, load, tac, pin, maintenance).
    #[arg(long, default_value = "maintenance")]
    key_purposes: String,
    /// The function's application.
    #[arg(long)]
    app: Option<String>,
    /// The function's file (hex SFI).
    #[arg(long)]
    sfi: Option<String>,
    /// The function's record (record files).
    #[arg(long)]
    record: Option<u8>,
    /// The function's offset and length (binary files).
    #[arg(long)]
    offset: Option<u8>,
    #[arg(long)]
    len: Option<u8>,
    /// Parameter bytes written after the status byte, hex.
    #[arg(long, default_value = "")]
    parameters: String,
}

fn parse_file(text: &str) -> anyhow::Result<AppFile> {
    let bad = || anyhow::anyhow!("file {text:?}: expected SFI:binary:SIZE or SFI:linear:LENxCOUNT");
    let mut parts = text.split(':');
    let (Some(sfi), Some(kind), Some(size), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let sfi = u8::from_str_radix(sfi, 16).map_err(|_| bad())?;
    let records = || -> anyhow::Result<(u8, u8)> {
        let (len, count) = size.split_once('x').ok_or_else(bad)?;
        Ok((len.parse()?, count.parse()?))
    };
    let structure = match kind {
        "binary" => FileStructure::Binary {
            size: size.parse().map_err(|_| bad())?,
        },
        "linear" => {
            let (record_len, records) = records()?;
            FileStructure::Linear {
                record_len,
                records,
            }
        }
        "cyclic" => {
            let (record_len, records) = records()?;
            FileStructure::Cyclic {
                record_len,
                records,
            }
        }
        _ => return Err(bad()),
    };
    Ok(AppFile { sfi, structure })
}

pub async fn run(c: AppsCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    let caller = Caller::cli("cli");
    match c {
        AppsCommand::List { format } => {
            let r = p.apps_registry().await?;
            if format == "json" {
                let apps: Vec<Value> = r
                    .apps
                    .iter()
                    .map(|a| {
                        json!({"code": a.code.as_str(), "name": a.name,
                               "aid": hex::encode_upper(&a.aid), "owner": a.owner.as_str(),
                               "key_purposes": a.key_purposes.iter().map(|k| k.as_str()).collect::<Vec<_>>()})
                    })
                    .collect();
                let functions: Vec<Value> = r
                    .functions
                    .iter()
                    .map(
                        |f| json!({"code": f.code.as_str(), "name": f.name, "app": f.app.as_str()}),
                    )
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({"apps": apps, "functions": functions}))?
                );
            } else {
                let mut out = csv::Writer::from_writer(std::io::stdout());
                out.write_record(["kind", "code", "name", "app_or_aid", "owner"])?;
                for a in &r.apps {
                    out.write_record([
                        "app",
                        a.code.as_str(),
                        &a.name,
                        &hex::encode_upper(&a.aid),
                        a.owner.as_str(),
                    ])?;
                }
                for f in &r.functions {
                    let owner = r
                        .app(f.app.as_str())
                        .map(|a| a.owner.as_str())
                        .unwrap_or("");
                    out.write_record([
                        "function",
                        f.code.as_str(),
                        &f.name,
                        f.app.as_str(),
                        owner,
                    ])?;
                }
                out.flush()?;
            }
        }
        AppsCommand::Add(a) if a.seed => {
            let n = p.apps_seed(&caller).await?;
            println!("seed registry: {n} entries added");
        }
        AppsCommand::Add(a) => {
            let name = a.name.clone().context("--name is required")?;
            if let Some(code) = &a.code {
                let app = Application {
                    code: Code::parse(code)?,
                    name,
                    aid: hex::decode(a.aid.as_deref().context("--aid is required")?)
                        .context("--aid must be hex")?,
                    owner: Owner::parse(a.owner.as_deref().context("--owner is required")?)?,
                    files: a
                        .files
                        .iter()
                        .map(|f| parse_file(f))
                        .collect::<Result<_, _>>()?,
                    key_purposes: a
                        .key_purposes
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            MasterPurpose::parse(s.trim())
                                .with_context(|| format!("unknown key purpose {s:?}"))
                        })
                        .collect::<Result<_, _>>()?,
                };
                p.app_register(&caller, &app).await?;
                println!("application {} registered", app.code);
            } else if let Some(code) = &a.function {
                let sfi = u8::from_str_radix(a.sfi.as_deref().context("--sfi is required")?, 16)
                    .context("--sfi must be hex")?;
                let target = match (a.record, a.offset, a.len) {
                    (Some(record), None, None) => Target::Record { sfi, record },
                    (None, Some(offset), Some(len)) => Target::Binary { sfi, offset, len },
                    _ => bail!("give --record, or --offset and --len"),
                };
                let f = Function {
                    code: Code::parse(code)?,
                    name,
                    app: Code::parse(a.app.as_deref().context("--app is required")?)?,
                    target,
                    parameters: hex::decode(&a.parameters).context("--parameters must be hex")?,
                };
                p.function_register(&caller, &f).await?;
                println!("function {} registered in {}", f.code, f.app);
            } else {
                bail!("give --seed, --code (an application) or --function");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `citycard card script`: the kiosk side of a post-issuance change.
#[derive(clap::Args)]
pub struct ScriptArgs {
    /// The card image (JSON), updated in place when the card changes.
    #[arg(long)]
    pub card: PathBuf,
    /// The function to enable (or, with --disable, disable).
    #[arg(long)]
    pub function: String,
    #[arg(long)]
    pub disable: bool,
    /// The platform's base URL.
    #[arg(long, env = "CITYCARD_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// An API token of a counter clerk, an administrator or the owning department's officer.
    #[arg(long, env = "CITYCARD_TOKEN", hide_env_values = true)]
    pub token: String,
}

async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))?;
    let resp = client
        .request(req)
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if !status.is_success() {
        let detail = v["detail"].as_str().unwrap_or("").to_string();
        bail!("{method} {url}: {status} {detail}");
    }
    Ok(v)
}

fn transmit(card: &mut chip::Card, apdu: &[u8]) -> anyhow::Result<(Vec<u8>, u16)> {
    let r = card.process(apdu);
    if r.len() < 2 {
        bail!("the card answered {} bytes", r.len());
    }
    let (data, sw) = r.split_at(r.len() - 2);
    Ok((data.to_vec(), u16::from_be_bytes([sw[0], sw[1]])))
}

pub async fn script(a: ScriptArgs) -> anyhow::Result<ExitCode> {
    let mut card = crate::card::read_card(&a.card)?;
    let base = a.server.trim_end_matches('/');
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let number = card_number_of(card.image()).context("the image has no card number (EF15)")?;
    let algorithm = match card.image().purse().map(|p| p.algorithm) {
        Some(crypto::Algorithm::Sm4) => "sm4",
        _ => "3des",
    };
    // Which application the function lives in, and its AID.
    let registry = call(
        &client,
        "GET",
        &format!("{base}/api/v1/apps"),
        &a.token,
        None,
    )
    .await?;
    let app = registry["functions"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["code"] == a.function.as_str()))
        .and_then(|f| f["app"].as_str())
        .with_context(|| format!("function {} is not registered", a.function))?
        .to_string();
    let aid = registry["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|x| x["code"] == app.as_str()))
        .and_then(|x| x["aid"].as_str())
        .context("application without AID")?;
    let mut select = vec![0x00, 0xA4, 0x04, 0x00];
    let aid = hex::decode(aid)?;
    select.push(aid.len() as u8);
    select.extend_from_slice(&aid);
    let (_, sw) = transmit(&mut card, &select)?;
    if sw != 0x9000 {
        bail!("SELECT {app}: the card answered {sw:04X}");
    }
    let (challenge, sw) = transmit(&mut card, &[0x00, 0x84, 0x00, 0x00, 0x04])?;
    if sw != 0x9000 {
        bail!("GET CHALLENGE: the card answered {sw:04X}");
    }
    let url = format!("{base}/api/v1/cards/{number}/functions/{}", a.function);
    let script = call(
        &client,
        "POST",
        &format!("{url}/script"),
        &a.token,
        Some(
            json!({"enable": !a.disable, "challenge": hex::encode_upper(&challenge),
                    "algorithm": algorithm}),
        ),
    )
    .await?;
    let mut last_sw = 0x6F00;
    for apdu in script["apdus"].as_array().context("script without APDUs")? {
        let bytes = hex::decode(apdu.as_str().context("APDU not text")?)?;
        let (_, sw) = transmit(&mut card, &bytes)?;
        last_sw = sw;
        if sw != 0x9000 {
            break;
        }
    }
    if last_sw == 0x9000 {
        crate::card::save_card(&a.card, &card)?;
    }
    let confirm = call(
        &client,
        "POST",
        &format!("{url}/confirm"),
        &a.token,
        Some(json!({"sw": format!("{last_sw:04X}")})),
    )
    .await?;
    let applied = confirm["applied"].as_bool().unwrap_or(false);
    println!(
        "card {number}: {} {} — card answered {last_sw:04X}, {}",
        if a.disable { "disable" } else { "enable" },
        a.function,
        if applied { "applied" } else { "not applied" }
    );
    Ok(if applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The card number from the transit application's EF15 (public information).
fn card_number_of(image: &chip::CardImage) -> Option<chip::CardNumber> {
    let transit = image.apps.iter().find(|a| {
        a.aid
            .as_ref()
            .is_some_and(|x| x.0 == chip::image::AID_TRANSIT)
    })?;
    let ef15 = transit.files.iter().find(|f| f.sfi == 0x15)?;
    let chip::image::EfBody::Binary { data } = &ef15.body else {
        return None;
    };
    chip::records::PublicInfo::parse(&data.0)
        .ok()
        .map(|p| p.card_number)
}
