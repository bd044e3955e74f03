//! Points and the credit service on the command line: `citycard points …` (rules, catalogue,
//! charity projects, use events, a citizen's points, redemption, donation, the expiry run) and
//! `citycard credit …` (opt-in and out, the score with its explanation, history, signals,
//! disputes and their resolution). The local command line acts as the administrator.

use platform::{Caller, Platform, PlatformError};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum PointsCommand {
    /// The earning rules.
    Rules,
    /// Replace one kind's rule (ride, library_loan, bill_on_time, volunteer_hour).
    Rule {
        kind: String,
        #[arg(long)]
        points_per_unit: i64,
        #[arg(long)]
        daily_cap: i64,
        #[arg(long, default_value_t = 365)]
        validity_days: i64,
        /// on or off
        #[arg(long, default_value = "on")]
        state: String,
    },
    /// The redemption catalogue.
    Items,
    /// Add or replace a catalogue item (ride_voucher or museum_ticket).
    Item {
        code: String,
        #[arg(long)]
        name_zh: String,
        #[arg(long)]
        name_en: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        cost: i64,
        /// on, or off to withdraw it
        #[arg(long, default_value = "on")]
        state: String,
    },
    /// Charity projects.
    Projects,
    /// Add or replace a charity project.
    Project {
        code: String,
        #[arg(long)]
        name_zh: String,
        #[arg(long)]
        name_en: String,
        /// on, or off to close it
        #[arg(long, default_value = "on")]
        state: String,
    },
    /// Report a use that earns points (ride, library_loan, volunteer_hour), once per event id.
    Event {
        kind: String,
        #[arg(long)]
        event_id: String,
        /// The citizen's ID number.
        #[arg(long)]
        resident_id: String,
        #[arg(long, default_value_t = 1)]
        units: i64,
    },
    /// A citizen's points and latest entries.
    Show {
        #[arg(long)]
        resident_id: String,
    },
    /// Redeem a catalogue item for a citizen (once per request id).
    Redeem {
        item: String,
        #[arg(long)]
        resident_id: String,
        #[arg(long)]
        request_id: String,
    },
    /// Donate a citizen's points to a charity project (once per request id).
    Donate {
        project: String,
        #[arg(long)]
        resident_id: String,
        #[arg(long)]
        points: i64,
        #[arg(long)]
        request_id: String,
    },
    /// Daily: expire the points whose validity ended (safe to repeat).
    Expire,
}

#[derive(clap::Subcommand)]
pub enum CreditCommand {
    /// Opt a citizen in to the credit service.
    OptIn {
        #[arg(long)]
        resident_id: String,
    },
    /// Opt a citizen out: signals, scores and disputes are deleted.
    OptOut {
        #[arg(long)]
        resident_id: String,
    },
    /// Compute and show a citizen's score with each factor in plain words.
    Score {
        #[arg(long)]
        resident_id: String,
        /// zh or en
        #[arg(long, default_value = "zh")]
        lang: String,
    },
    /// A citizen's scores over time.
    History {
        #[arg(long)]
        resident_id: String,
    },
    /// Record a signal from a transit operator or a library (fare_evasion,
    /// library_return_on_time, library_return_late); kept only when the citizen opted in.
    Signal {
        kind: String,
        #[arg(long)]
        event_id: String,
        #[arg(long)]
        resident_id: String,
    },
    /// Disputes by status (open, upheld, rejected).
    Disputes {
        #[arg(long)]
        status: Option<String>,
    },
    /// Open a dispute about one of a citizen's signals.
    Dispute {
        #[arg(long)]
        resident_id: String,
        #[arg(long)]
        signal_id: i64,
        #[arg(long)]
        reason: String,
    },
    /// Resolve an open dispute: uphold (strike the signal out) or reject, with a note.
    Resolve {
        id: i64,
        /// uphold or reject
        #[arg(long)]
        decision: String,
        #[arg(long)]
        note: String,
    },
}

fn on_off(s: &str) -> anyhow::Result<bool> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        o => anyhow::bail!("state is on or off, not {o:?}"),
    }
}

/// Refusals a citizen's request meets (cap, too few or expired points, unknown item) are
/// printed and exit 1, like other refusals on the command line.
fn refused(e: PlatformError) -> anyhow::Result<ExitCode> {
    match e {
        PlatformError::Conflict(m) | PlatformError::NotFound(m) => {
            eprintln!("refused: {m}");
            Ok(ExitCode::FAILURE)
        }
        e => Err(e.into()),
    }
}

pub async fn points(cmd: PointsCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    let c = Caller::cli("cli");
    match cmd {
        PointsCommand::Rules => {
            for r in p.points_rules(&c).await? {
                println!(
                    "{}\t{} per unit\tcap {} a day\tvalid {} days\t{}",
                    r.kind,
                    r.points_per_unit,
                    r.daily_cap,
                    r.validity_days,
                    if r.active { "on" } else { "off" }
                );
            }
        }
        PointsCommand::Rule {
            kind,
            points_per_unit,
            daily_cap,
            validity_days,
            state,
        } => {
            let kind = points::EarnKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("unknown kind {kind:?}"))?;
            let r = p
                .points_rule_set(
                    &c,
                    points::EarnRule {
                        kind,
                        points_per_unit,
                        daily_cap,
                        validity_days,
                        active: on_off(&state)?,
                    },
                )
                .await?;
            println!(
                "rule {} set: {} per unit, cap {}",
                r.kind, r.points_per_unit, r.daily_cap
            );
        }
        PointsCommand::Items => {
            for i in p.points_items(&c).await? {
                println!(
                    "{}\t{}\t{}\t{} points\t{}",
                    i.code,
                    i.name_zh,
                    i.kind,
                    i.cost_points,
                    if i.active { "on" } else { "withdrawn" }
                );
            }
        }
        PointsCommand::Item {
            code,
            name_zh,
            name_en,
            kind,
            cost,
            state,
        } => {
            let kind = points::RewardKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("kind is ride_voucher or museum_ticket"))?;
            let i = p
                .points_item_set(
                    &c,
                    points::CatalogueItem {
                        code,
                        name_zh,
                        name_en,
                        kind,
                        cost_points: cost,
                        active: on_off(&state)?,
                    },
                )
                .await?;
            println!("item {} set: {} points", i.code, i.cost_points);
        }
        PointsCommand::Projects => {
            for pr in p.points_projects(&c).await? {
                println!(
                    "{}\t{}\t{}",
                    pr.code,
                    pr.name_zh,
                    if pr.active { "open" } else { "closed" }
                );
            }
        }
        PointsCommand::Project {
            code,
            name_zh,
            name_en,
            state,
        } => {
            let pr = p
                .points_project_set(
                    &c,
                    points::CharityProject {
                        code,
                        name_zh,
                        name_en,
                        active: on_off(&state)?,
                    },
                )
                .await?;
            println!("project {} set", pr.code);
        }
        PointsCommand::Event {
            kind,
            event_id,
            resident_id,
            units,
        } => {
            let kind = points::EarnKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("unknown kind {kind:?}"))?;
            match p
                .points_report(&c, kind, &event_id, &resident_id, units)
                .await
            {
                Ok(e) => println!(
                    "{} points{}{}, valid until {}",
                    e.points,
                    if e.capped {
                        " (cut at the daily cap)"
                    } else {
                        ""
                    },
                    if e.duplicate { " (earned before)" } else { "" },
                    e.expires_on
                ),
                Err(e) => return refused(e),
            }
        }
        PointsCommand::Show { resident_id } => {
            let v = p.points_of(&c, &resident_id).await?;
            println!(
                "balance {} (earned {}, redeemed {}, donated {}, expired {}; {} expire within 30 days)",
                v.balance, v.earned, v.redeemed, v.donated, v.expired, v.expiring_30_days
            );
            for e in v.entries {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    e.day,
                    e.op,
                    e.points,
                    e.kind.or(e.target).unwrap_or_default(),
                    e.expires_on.unwrap_or_default()
                );
            }
        }
        PointsCommand::Redeem {
            item,
            resident_id,
            request_id,
        } => match p.points_redeem(&c, &resident_id, &item, &request_id).await {
            Ok(e) => println!("redeemed {}: {} points", item, e.points),
            Err(e) => return refused(e),
        },
        PointsCommand::Donate {
            project,
            resident_id,
            points,
            request_id,
        } => match p
            .points_donate(&c, &resident_id, &project, points, &request_id)
            .await
        {
            Ok(e) => println!("donated {} points to {project}", e.points),
            Err(e) => return refused(e),
        },
        PointsCommand::Expire => {
            let r = p.points_expire_run(&c).await?;
            println!("{} points expired for {} residents", r.points, r.residents);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn credit(cmd: CreditCommand, p: &Platform) -> anyhow::Result<ExitCode> {
    let c = Caller::cli("cli");
    match cmd {
        CreditCommand::OptIn { resident_id } => {
            let changed = p.credit_opt_in(&c, &resident_id).await?;
            println!(
                "{}",
                if changed {
                    "opted in"
                } else {
                    "already opted in"
                }
            );
        }
        CreditCommand::OptOut { resident_id } => {
            let changed = p.credit_opt_out(&c, &resident_id).await?;
            println!(
                "{}",
                if changed {
                    "opted out; signals, scores and disputes deleted"
                } else {
                    "not opted in"
                }
            );
        }
        CreditCommand::Score { resident_id, lang } => {
            let v = match p.credit_score(&c, &resident_id).await {
                Ok(v) => v,
                Err(e) => return refused(e),
            };
            let en = lang == "en";
            println!(
                "{} {} ({} {})",
                if en { "score" } else { "信用分" },
                v.score,
                if en { "base" } else { "基础分" },
                v.base
            );
            for f in &v.factors {
                println!("  {}", if en { &f.text_en } else { &f.text_zh });
            }
            for i in &v.incentives {
                println!(
                    "  [{}] {} (≥ {})",
                    if i.eligible { "x" } else { " " },
                    if en { &i.name_en } else { &i.name_zh },
                    i.threshold
                );
            }
        }
        CreditCommand::History { resident_id } => match p.credit_history(&c, &resident_id).await {
            Ok(h) => {
                for s in h {
                    println!("{}\t{}", s.day, s.score);
                }
            }
            Err(e) => return refused(e),
        },
        CreditCommand::Signal {
            kind,
            event_id,
            resident_id,
        } => {
            let kind = credit::SignalKind::parse(&kind)
                .ok_or_else(|| anyhow::anyhow!("unknown signal kind {kind:?}"))?;
            let recorded = p
                .credit_report(&c, kind, &event_id, &resident_id, 1)
                .await?;
            println!(
                "{}",
                if recorded {
                    "recorded"
                } else {
                    "not recorded (already recorded, or not opted in)"
                }
            );
        }
        CreditCommand::Disputes { status } => {
            for d in p.credit_disputes(&c, status.as_deref(), 200).await? {
                println!(
                    "{}\tresident {}\tsignal {}\t{}\t{}\t{}",
                    d.id,
                    d.resident_id,
                    d.signal_id,
                    d.status,
                    d.reason,
                    d.note.unwrap_or_default()
                );
            }
        }
        CreditCommand::Dispute {
            resident_id,
            signal_id,
            reason,
        } => match p
            .credit_dispute_open(&c, &resident_id, signal_id, &reason)
            .await
        {
            Ok(d) => println!("dispute {} opened", d.id),
            Err(e) => return refused(e),
        },
        CreditCommand::Resolve { id, decision, note } => {
            let uphold = match decision.as_str() {
                "uphold" => true,
                "reject" => false,
                o => anyhow::bail!("decision is uphold or reject, not {o:?}"),
            };
            match p.credit_dispute_resolve(&c, id, uphold, &note).await {
                Ok(d) => println!("dispute {} {}", d.id, d.status),
                Err(e) => return refused(e),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
