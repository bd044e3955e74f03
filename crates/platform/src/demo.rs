//! The synthetic demo city: residents with valid ID numbers, Chinese names, phones and
//! addresses, and the department feeds of simulated days. Deterministic for a seed, so a demo
//! and a benchmark can be rebuilt exactly.

use crate::{Caller, Platform, Result};
use resident::{ResidentId, Source};
use std::sync::Arc;
use time::{Date, Duration};

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐", "许", "韩", "冯", "邓", "曹", "彭", "曾",
    "肖", "田", "董", "袁", "潘", "于", "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁",
    "任", "沈", "欧阳", "司马",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀", "霞", "平", "刚", "桂", "英", "华", "建", "国", "文", "辉", "玲", "宇", "浩", "鑫",
    "晨", "欣", "怡", "博", "思", "雨", "子", "佳", "梓", "睿", "豪", "一", "诺",
];
/// Zhengzhou's districts and county-level cities (GB/T 2260), with their names.
const DISTRICTS: &[(&str, &str)] = &[
    ("410102", "中原区"),
    ("410103", "二七区"),
    ("410104", "管城回族区"),
    ("410105", "金水区"),
    ("410106", "上街区"),
    ("410108", "惠济区"),
    ("410122", "中牟县"),
    ("410181", "巩义市"),
    ("410182", "荥阳市"),
    ("410183", "新密市"),
    ("410184", "新郑市"),
    ("410185", "登封市"),
];
/// Birthplaces of non-residents (another city's social security card holders): one per
/// district slot, so the slot scheme below keeps their ID numbers unique too.
const ELSEWHERE: &[&str] = &[
    "110105", "320102", "420102", "430102", "610113", "370102", "310104", "440106", "510104",
    "330106", "340102", "130102",
];
const ROADS: &[&str] = &[
    "花园路",
    "文化路",
    "经三路",
    "农业路",
    "金水路",
    "中原路",
    "建设路",
    "大学路",
    "商都路",
    "郑汴路",
    "嵩山路",
    "航海路",
    "紫荆山路",
    "东风路",
    "北三环",
];

/// The demo city's service outlet, where its clerk works.
pub const DEMO_OUTLET: &str = "ZZ-JS01";

/// Adds what is missing of the development key set to a master-key file store: the transit
/// purchase, load and TAC test keys (`epurse.md` §4), the test transport key
/// (`keys::master::conformance::TEST_TRANSPORT_KEY`, which the emulated bureau holds) and the
/// CITY, HEALTH and TRANSIT maintenance keys. For the demo city and tests; production refuses a store
/// that holds any of them.
pub fn load_development_keys(store: &keys::master::FileMasterKeyStore) -> Result<()> {
    use keys::master::{KeyRef, MasterKeyStore, MasterPurpose};
    let err = |e: keys::master::MasterKeyError| crate::PlatformError::Unexpected(e.to_string());
    let have =
        |r: &KeyRef| -> Result<bool> { Ok(store.list().map_err(err)?.iter().any(|k| &k.key == r)) };
    if !have(&KeyRef::transit(MasterPurpose::Purchase, 1))? {
        store
            .load_test_key_set(keys::master::APP_TRANSIT)
            .map_err(err)?;
    }
    let transport = KeyRef::transit(MasterPurpose::Transport, 1);
    if !have(&transport)? {
        let tk = development_transport_key()?;
        store
            .import_components(
                &transport,
                &keys::master::conformance::split_into_components(&tk, crypto::Algorithm::Tdes),
                crypto::Algorithm::Tdes,
                Some(tk.kcv(crypto::Algorithm::Tdes)),
            )
            .map_err(err)?;
    }
    for app in ["city", "health", "transit"] {
        if !have(&KeyRef::new(app, MasterPurpose::Maintenance, 1).map_err(err)?)? {
            store.load_test_maintenance_key(app).map_err(err)?;
        }
    }
    Ok(())
}

/// The development transport key, as the emulated bureau holds it.
fn development_transport_key() -> Result<crypto::Key16> {
    crypto::Key16::from_hex(keys::master::conformance::TEST_TRANSPORT_KEY)
        .map_err(|e| crate::PlatformError::Unexpected(e.to_string()))
}

/// Takes every approved card through the real issuance path — a production batch, its
/// personalization file, the emulated bureau (development transport key), the result file,
/// distribution to `outlet` — and hands over at that outlet's counter (journaled, activated)
/// the cards named in `hand_over`. Opens the outlet and its clerk when missing. Needs the
/// development key set in the platform's master-key store ([`load_development_keys`]).
/// Returns the clerk.
pub async fn issue_approved(
    p: &Platform,
    outlet: &str,
    clerk: &str,
    clerk_password: &str,
    hand_over: &[&str],
) -> Result<Caller> {
    let system = Caller::cli("issuance");
    let clerk = p
        .ensure_outlet_with_clerk(&system, outlet, clerk, clerk_password)
        .await?;
    // Chip serials are unique: each run starts at a fresh random point.
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|_| crate::PlatformError::Unexpected("random".into()))?;
    let serial_first = u64::from(u32::from_le_bytes(b)) << 24;
    p.produce_with_emulated_bureau(&system, outlet, &development_transport_key()?, serial_first)
        .await?;
    for n in hand_over {
        p.counter_hand_over(&clerk, outlet, n).await?;
    }
    Ok(clerk)
}

/// SplitMix64: a tiny, well-mixed generator keyed by (seed, index), so any row can be rebuilt
/// without generating the ones before it.
fn mix(seed: u64, i: u64, salt: u64) -> u64 {
    let mut z = seed
        .wrapping_add(i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(salt.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<'a>(list: &[&'a str], r: u64) -> &'a str {
    list[(r % list.len() as u64) as usize]
}

/// The ID number of synthetic resident `i`: unique for every `i` below 438 million, birth
/// dates spread over a hundred years.
pub fn id_number(i: u64, seed: u64, today: Date) -> ResidentId {
    let non_resident = mix(seed, i, 1).is_multiple_of(20);
    let regions = DISTRICTS.len() as u64;
    let slot = (i % regions) as usize;
    let region = if non_resident {
        ELSEWHERE[slot].to_string()
    } else {
        DISTRICTS[slot].0.to_string()
    };
    // j numbers the residents of one region slot. Within each block of 36,500 consecutive j
    // the birth day j * 7919 mod 36500 is a bijection (7919 is coprime with 36,500) and the
    // sequence number is the block, so (slot, day, sequence) is injective in i, and ages spread
    // over a century (the offset makes the first resident of each slot an adult).
    let j = i / regions;
    let day = (j * 7919 + seed + 9000) % 36_500;
    let sequence = ((j / 36_500) % 1000) as u16;
    let birth = today - Duration::days(day as i64 + 1);
    ResidentId::from_parts(&region, birth, sequence)
}

/// One synthetic feed row: `id_number,name,phone,address,residency`. `version` changes the
/// phone and address, as a later feed would.
pub fn resident_row(i: u64, seed: u64, today: Date, version: u64) -> [String; 5] {
    let id = id_number(i, seed, today);
    let non_resident = !id.region_code().starts_with("4101");
    let r = mix(seed, i, 3);
    let mut name = pick(SURNAMES, r).to_string();
    name.push_str(pick(GIVEN, r >> 8));
    if !(r >> 16).is_multiple_of(3) {
        name.push_str(pick(GIVEN, r >> 24));
    }
    let p = mix(seed, i, 10 + version);
    let phone = format!("1{}{:09}", 3 + p % 7, (p >> 8) % 1_000_000_000);
    let a = mix(seed, i, 20 + version);
    let district = DISTRICTS[(a % DISTRICTS.len() as u64) as usize].1;
    let address = format!(
        "郑州市{district}{}{}号{}栋{}单元{}室",
        pick(ROADS, a >> 8),
        (a >> 16) % 300 + 1,
        (a >> 24) % 30 + 1,
        (a >> 32) % 6 + 1,
        (a >> 40) % 30 * 100 + 101,
    );
    let residency = if non_resident {
        "non_resident"
    } else {
        "resident"
    };
    [
        id.as_str().to_string(),
        name,
        phone,
        address,
        residency.to_string(),
    ]
}

/// Writes a feed CSV (with header) of residents `range`, at `version`.
pub fn write_feed(
    w: impl std::io::Write,
    range: impl Iterator<Item = u64>,
    seed: u64,
    today: Date,
    version: u64,
) -> std::io::Result<()> {
    let mut csv = csv::Writer::from_writer(w);
    csv.write_record(crate::residents::CSV_HEADER)?;
    for i in range {
        csv.write_record(resident_row(i, seed, today, version))?;
    }
    csv.flush()
}

/// Told the stage, the steps done and the steps in all, as the demo goes.
pub type Progress = Arc<dyn Fn(&str, u64, u64) + Send + Sync>;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DemoSummary {
    pub residents: u64,
    pub days: u32,
    pub feeds: u64,
    pub rows_imported: u64,
    pub rows_updated: u64,
    pub rows_rejected: u64,
    pub operators: u64,
    pub cards_active: u64,
    pub cards_lost: u64,
    pub cards_replaced: u64,
    pub deny_list_version: i64,
    /// Lines of the demo's benefit batch paid, and their sum in fen.
    pub disbursed_lines: i64,
    pub disbursed_fen: i64,
    pub audit_entries: i64,
}

/// A month's minimum living allowance (800 yuan) for one resident in ten, submitted by the
/// HR and social security officer `hrss` and approved by `admin` (four eyes), paid from the
/// department's funding. A second demo run finds the same file and pays nothing twice.
async fn disbursement(
    p: &Platform,
    residents: u64,
    seed: u64,
    today: Date,
    s: &mut DemoSummary,
) -> Result<()> {
    let cli = Caller::cli("demo");
    let officer = p.operator_caller("hrss", "demo").await?;
    let admin = p.operator_caller("admin", "demo").await?;
    let mut file = String::from("id_number,amount,benefit\n");
    for i in (0..residents).step_by(10) {
        let row = resident_row(i, seed, today, 0);
        file.push_str(&format!("{},800.00,minimum_living\n", row[0]));
    }
    p.fund_department(
        &cli,
        "hr_social_security",
        "ICBC",
        ledger::Amount(residents as i64 * 10_000),
        &format!("demo-fund-{seed}"),
    )
    .await?;
    let (batch, created) = p
        .submit_disbursement(&officer, "2026-11 最低生活保障金", file.as_bytes())
        .await?;
    let batch = if created {
        p.decide_disbursement(&admin, batch.id, true).await?
    } else {
        batch
    };
    s.disbursed_lines = batch.paid_lines;
    s.disbursed_fen = batch.paid_fen;
    Ok(())
}

/// Issues cards to one resident in twenty (adults of the city), through the whole life cycle;
/// one in ten of those reports the card lost, and one in three of the lost gets a replacement.
/// The cards go through a production batch, the emulated bureau (development key set: the
/// platform needs its master-key store), the demo outlet's stock and its counter.
async fn cards(
    p: &Platform,
    residents: u64,
    seed: u64,
    today: Date,
    s: &mut DemoSummary,
    progress: &Progress,
) -> Result<()> {
    use crate::cards::{CardRequest as R, parse_reason};
    let system = Caller::cli("demo");
    // Cards are made the way the city makes them: a production batch through the (emulated)
    // card bureau, delivered to the demo outlet, handed over at its counter.
    let clerk = p
        .ensure_outlet_with_clerk(&system, DEMO_OUTLET, "clerk", DEMO_PASSWORD)
        .await?;
    let candidates: Vec<u64> = (0..residents).step_by(20).collect();
    let total = candidates.len() as u64;
    let mut made = Vec::new();
    for (k, i) in candidates.into_iter().enumerate() {
        progress("cards", k as u64, total);
        let row = resident_row(i, seed, today, 0);
        let id = ResidentId::parse(&row[0], today)
            .map_err(|e| crate::PlatformError::Unexpected(e.to_string()))?;
        if row[4] != "resident" || id.age_on(today) < crate::cards::ADULT_AGE {
            continue;
        }
        let card = match p.apply_for_card(&clerk, &row[0], "ordinary", None).await {
            Ok(c) => c,
            // Already carded by an earlier demo run in this data directory.
            Err(crate::PlatformError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        };
        p.card_action(&clerk, &card.number, R::Approve, parse_reason("routine")?)
            .await?;
        made.push((k, card.number));
    }
    issue_approved(p, DEMO_OUTLET, "clerk", DEMO_PASSWORD, &[]).await?;
    for (k, n) in made {
        p.counter_hand_over(&clerk, DEMO_OUTLET, &n).await?;
        s.cards_active += 1;
        if k % 10 == 3 {
            p.counter_report_lost(&clerk, DEMO_OUTLET, &n).await?;
            s.cards_lost += 1;
            if k % 30 == 3 {
                p.counter_replace(&clerk, DEMO_OUTLET, &n, parse_reason("lost")?)
                    .await?;
                s.cards_replaced += 1;
            }
        }
    }
    progress("cards", total, total);
    s.deny_list_version = p.store.deny_list_version().await?;
    Ok(())
}

async fn import(
    p: &Platform,
    cli: &Caller,
    source: Source,
    bytes: Vec<u8>,
    label: String,
) -> Result<crate::residents::ImportReport> {
    let digest = crate::residents::digest(&bytes);
    p.import_residents(
        cli,
        source,
        &label,
        digest,
        Box::new(std::io::Cursor::new(bytes)),
        Arc::new(|_| {}),
    )
    .await
}

/// The demo's operators: one per role, password `citycard-demo` (demo data directories only).
pub const DEMO_PASSWORD: &str = "citycard-demo";

/// Builds the synthetic city: operators for every role, the police feed of `residents`
/// residents, then `days` simulated days of feeds from other departments (phone updates from
/// HR and social security, address changes from the police, a feed with broken rows from tax).
pub async fn run(
    p: &Platform,
    residents: u64,
    days: u32,
    seed: u64,
    progress: Progress,
) -> Result<DemoSummary> {
    let cli = Caller::cli("demo");
    let mut s = DemoSummary {
        residents,
        days,
        ..Default::default()
    };
    let today = p.clock.today();
    use crate::operators::OperatorRequest;
    use store::Role;
    let ops: [(&str, &str, Role, Option<Source>); 6] = [
        ("admin", "系统管理员", Role::Administrator, None),
        ("clerk", "柜员", Role::CounterClerk, None),
        ("clearing", "清算员", Role::ClearingOfficer, None),
        (
            "police",
            "公安经办",
            Role::DepartmentOfficer,
            Some(Source::Police),
        ),
        (
            "hrss",
            "人社经办",
            Role::DepartmentOfficer,
            Some(Source::HrSocialSecurity),
        ),
        ("auditor", "审计员", Role::Auditor, None),
    ];
    for (username, display, role, department) in ops {
        let exists = p.store.operator_by_username(username).await?.is_some();
        if !exists {
            p.create_operator(
                &cli,
                OperatorRequest {
                    username: username.into(),
                    display_name: display.into(),
                    password: DEMO_PASSWORD.into(),
                    role,
                    department,
                },
            )
            .await?;
        }
    }
    s.operators = p.operators().await?.len() as u64;

    progress("police feed", 0, residents);
    let mut base = Vec::new();
    write_feed(&mut base, 0..residents, seed, today, 0)
        .map_err(|e| crate::PlatformError::Unexpected(e.to_string()))?;
    let r = import(p, &cli, Source::Police, base, "demo:police-base".into()).await?;
    s.feeds += 1;
    s.rows_imported += r.totals.inserted;
    s.rows_updated += r.totals.updated;
    progress("police feed", residents, residents);

    for day in 1..=days {
        progress("days", u64::from(day - 1), u64::from(days));
        // About 1 % of residents change phone (HR), 0.5 % move (police).
        let step = 100u64;
        let start = mix(seed, u64::from(day), 99) % step;
        let hr: Vec<u64> = (start..residents).step_by(step as usize).collect();
        let mut buf = Vec::new();
        write_feed(&mut buf, hr.into_iter(), seed, today, u64::from(day))
            .map_err(|e| crate::PlatformError::Unexpected(e.to_string()))?;
        let r = import(
            p,
            &cli,
            Source::HrSocialSecurity,
            buf,
            format!("demo:hrss-day{day}"),
        )
        .await?;
        s.feeds += 1;
        s.rows_updated += r.totals.updated;
        // The tax bureau's feed carries a few broken rows, which are reported, not imported.
        let mut buf = Vec::new();
        write_feed(
            &mut buf,
            (start..residents).step_by(500),
            seed,
            today,
            u64::from(day),
        )
        .map_err(|e| crate::PlatformError::Unexpected(e.to_string()))?;
        buf.extend_from_slice(
            "110105194912310021,错号,,,\n410105198506151234,,,,resident\n".as_bytes(),
        );
        let r = import(p, &cli, Source::Tax, buf, format!("demo:tax-day{day}")).await?;
        s.feeds += 1;
        s.rows_updated += r.totals.updated;
        s.rows_rejected += r.totals.rejected;
    }
    progress("days", u64::from(days), u64::from(days));
    cards(p, residents, seed, today, &mut s, &progress).await?;
    disbursement(p, residents, seed, today, &mut s).await?;
    // Application management: the seed registry (idempotent across demo runs).
    p.apps_seed(&cli).await?;
    s.audit_entries = p.store.audit_head().await?.map(|h| h.0).unwrap_or(0);
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn synthetic_ids_are_valid_and_unique() {
        let today = date!(2026 - 11 - 26);
        let mut seen = std::collections::HashSet::new();
        for i in 0..50_000 {
            let row = resident_row(i, 7, today, 0);
            let parsed =
                resident::parse_row(&row.iter().map(String::as_str).collect::<Vec<_>>(), today);
            assert!(parsed.is_ok(), "row {i}: {row:?}: {parsed:?}");
            assert!(seen.insert(row[0].clone()), "duplicate id at {i}");
        }
        // Deterministic for a seed, different across seeds and versions.
        assert_eq!(resident_row(5, 7, today, 0), resident_row(5, 7, today, 0));
        assert_ne!(
            resident_row(5, 7, today, 0)[0],
            resident_row(5, 8, today, 0)[0]
        );
        assert_ne!(
            resident_row(5, 7, today, 0)[2],
            resident_row(5, 7, today, 1)[2]
        );
    }
}
