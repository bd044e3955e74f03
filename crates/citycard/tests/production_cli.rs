//! Production and counter work run as the built `citycard` binary, the loop an operator and
//! the card bureau run: keys, outlets, a batch exported, produced by the emulated bureau with
//! one failure, imported (a second import refused), distributed, handed over; an instant
//! issuance whose card image loads and pays through `citycard load` and `citycard tap`; the
//! counter journal and its closing with a difference.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use crypto::{Algorithm, Key16};

const COMPONENT_A: &str = "0123456789ABCDEFFEDCBA9876543210";
const COMPONENT_B: &str = "00112233445566778899AABBCCDDEEFF";
const PASSPHRASE: &str = "production cli passphrase";

fn citycard(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_citycard"))
        .current_dir(dir)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(args)
        .env_remove("CITYCARD_PRODUCTION")
        .env_remove("CITYCARD_DATA_DIR")
        .env_remove("CITYCARD_DATABASE_URL")
        .env_remove("CITYCARD_CONFIG")
        .env("CITYCARD_KEYSTORE_PASSPHRASE", PASSPHRASE)
        .env("CITYCARD_NEW_PASSWORD", "clerk-password-1")
        .env("CITYCARD_LOG", "warn")
        .output()
        .expect("run citycard")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let o = citycard(dir, args);
    assert!(o.status.success(), "citycard {args:?}: {}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

fn refused(dir: &Path, args: &[&str]) -> String {
    let o = citycard(dir, args);
    assert!(
        !o.status.success(),
        "citycard {args:?} should fail: {}",
        text(&o)
    );
    text(&o)
}

fn component(hex: &str) -> String {
    let kcv = Key16::from_hex(hex).unwrap().kcv(Algorithm::Tdes);
    format!("{hex}:{}", hex::encode_upper(kcv))
}

/// Three adult residents with approved cards, applied through the platform library on the
/// same data directory (the command line has no application command: applications come by
/// API or at the counter).
fn approved_cards(dir: &Path) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let data = dir.join("data");
        let p = platform::open::open_platform(
            &platform::StorageTarget::Sqlite(data.join("citycard.db")),
            &data.join("keys"),
            &platform::KeySource::Passphrase(PASSPHRASE.into()),
            false,
            Arc::new(platform::clock::SystemClock),
        )
        .await
        .unwrap();
        let mut csv = String::from("id_number,name,phone,address,residency\n");
        let ids: Vec<String> = (0..3u16)
            .map(|i| {
                let birth =
                    time::Date::from_calendar_date(1980 + i32::from(i), time::Month::May, 1)
                        .unwrap();
                resident::ResidentId::from_parts("410105", birth, 200 + i)
                    .as_str()
                    .to_string()
            })
            .collect();
        for (i, id) in ids.iter().enumerate() {
            csv.push_str(&format!("{id},李{i}明,,,resident\n"));
        }
        let cli = platform::Caller::cli("test");
        p.import_residents(
            &cli,
            resident::Source::Police,
            "test",
            "0".into(),
            Box::new(std::io::Cursor::new(csv.into_bytes())),
            Arc::new(|_| {}),
        )
        .await
        .unwrap();
        let clerk = p.clerk_caller("clerk-a", "test").await.unwrap();
        let mut cards = Vec::new();
        for id in &ids {
            let c = p
                .apply_for_card(&clerk, id, "ordinary", None)
                .await
                .unwrap();
            p.card_action(
                &clerk,
                &c.number,
                platform::cards::CardRequest::Approve,
                platform::cards::parse_reason("routine").unwrap(),
            )
            .await
            .unwrap();
            cards.push(c.number);
        }
        cards
    })
}

#[test]
fn production_loop_on_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (a, b) = (component(COMPONENT_A), component(COMPONENT_B));
    ok(dir, &["keys", "load-test-set"]);
    ok(
        dir,
        &[
            "keys",
            "import",
            "--purpose",
            "transport",
            "--component",
            &a,
            "--component",
            &b,
        ],
    );
    for clerk in ["clerk-a", "clerk-b"] {
        ok(
            dir,
            &[
                "admin",
                "create-user",
                "--username",
                clerk,
                "--role",
                "counter_clerk",
            ],
        );
    }
    for (code, clerk) in [("ZZ-A", "clerk-a"), ("ZZ-B", "clerk-b")] {
        ok(
            dir,
            &[
                "outlets",
                "add",
                "--code",
                code,
                "--name-zh",
                "花园路服务网点",
                "--name-en",
                "Huayuan Road outlet",
                "--address",
                "花园路 1 号",
            ],
        );
        ok(
            dir,
            &["outlets", "assign", "--outlet", code, "--clerk", clerk],
        );
    }
    let list = ok(dir, &["outlets", "list"]);
    assert!(list.contains("ZZ-A") && list.contains("clerk-b"), "{list}");
    let cards = approved_cards(dir);

    // A batch of two; the third card waits for instant issuance.
    let out = ok(dir, &["batches", "create", "--max", "2"]);
    assert!(out.contains("batch B000001 created: 2 card(s)"), "{out}");
    ok(
        dir,
        &[
            "batches",
            "export",
            "--batch",
            "B000001",
            "--out",
            "perso.txt",
        ],
    );
    let perso = std::fs::read_to_string(dir.join("perso.txt")).unwrap();
    assert!(perso.starts_with("CCPERSO|2|B000001|2|"), "{perso}");
    // The cards leave production ready for post-issuance scripts of CITY and HEALTH, and for
    // the card type update of TRANSIT EF15.
    assert!(
        perso
            .lines()
            .next()
            .unwrap()
            .ends_with("|DPK,DLK,DTK,DAMK-CITY,DAMK-HEALTH,DAMK-TRANSIT")
    );
    let fail = format!("{}:print head jam", cards[1]);
    ok(
        dir,
        &[
            "bureau",
            "emulate",
            "--in",
            "perso.txt",
            "--out",
            "results.txt",
            "--component",
            &a,
            "--component",
            &b,
            "--fail",
            &fail,
            "--serial-first",
            "00000000000000A0",
            "--cards-dir",
            "chips",
        ],
    );
    assert!(
        dir.join("chips")
            .join(format!("{}.json", cards[0]))
            .exists()
    );
    // A bureau with another transport key refuses the file.
    let e = refused(
        dir,
        &[
            "bureau",
            "emulate",
            "--in",
            "perso.txt",
            "--out",
            "r2.txt",
            "--component",
            &a,
            "--component",
            &a,
        ],
    );
    assert!(e.contains("transport key"), "{e}");

    // A damaged file is refused; the real one imports; a second import is refused.
    let good = std::fs::read(dir.join("results.txt")).unwrap();
    std::fs::write(dir.join("cut.txt"), &good[..good.len() - 30]).unwrap();
    let e = refused(
        dir,
        &[
            "batches", "import", "--batch", "B000001", "--file", "cut.txt",
        ],
    );
    assert!(e.contains("nothing imported"), "{e}");
    let out = ok(
        dir,
        &[
            "batches",
            "import",
            "--batch",
            "B000001",
            "--file",
            "results.txt",
        ],
    );
    assert!(out.contains("1 produced, 1 failed"), "{out}");
    let e = refused(
        dir,
        &[
            "batches",
            "import",
            "--batch",
            "B000001",
            "--file",
            "results.txt",
        ],
    );
    assert!(e.contains("already imported"), "{e}");
    ok(
        dir,
        &[
            "batches",
            "distribute",
            "--batch",
            "B000001",
            "--outlet",
            "ZZ-A",
        ],
    );
    let stock = ok(dir, &["outlets", "stock", "--outlet", "ZZ-A"]);
    assert!(
        stock.contains("at_outlet") && stock.contains(&cards[0]),
        "{stock}"
    );

    // The counter: not at another outlet; then hand-over and instant issuance.
    let e = refused(
        dir,
        &[
            "counter",
            "hand-over",
            "--outlet",
            "ZZ-A",
            "--clerk",
            "clerk-b",
            "--card",
            &cards[0],
        ],
    );
    assert!(e.contains("works at outlet ZZ-B"), "{e}");
    let out = ok(
        dir,
        &[
            "counter",
            "hand-over",
            "--outlet",
            "ZZ-A",
            "--clerk",
            "clerk-a",
            "--card",
            &cards[0],
        ],
    );
    assert!(out.contains("active"), "{out}");
    let out = ok(
        dir,
        &[
            "counter",
            "instant",
            "--outlet",
            "ZZ-A",
            "--clerk",
            "clerk-a",
            "--card",
            &cards[2],
            "--alg",
            "3des",
            "--out",
            "instant.json",
            "--component",
            &a,
            "--component",
            &b,
        ],
    );
    assert!(out.contains("handed over: active"), "{out}");
    // The image loads and pays like any card.
    ok(
        dir,
        &[
            "load",
            "--card",
            "instant.json",
            "--amount",
            "5000",
            "--terminal-id",
            "112233445566",
            "--test-keys",
        ],
    );
    ok(
        dir,
        &[
            "psam",
            "new",
            "--test-keys",
            "--terminal-id",
            "112233445566",
            "--out",
            "psam.json",
        ],
    );
    let tap = ok(
        dir,
        &[
            "tap",
            "--card",
            "instant.json",
            "--psam",
            "psam.json",
            "--amount",
            "200",
        ],
    );
    assert!(tap.contains("4800"), "{tap}");

    // The journal and the closing: 0 fen expected, 5.00 declared.
    let j = ok(dir, &["counter", "journal", "--outlet", "ZZ-A"]);
    assert!(
        j.contains("card_issued") && j.contains("instant_issued"),
        "{j}"
    );
    let out = ok(
        dir,
        &[
            "counter",
            "close",
            "--outlet",
            "ZZ-A",
            "--clerk",
            "clerk-a",
            "--declared-fen",
            "500",
        ],
    );
    assert!(out.contains("difference 5.00 yuan"), "{out}");
    let e = refused(
        dir,
        &[
            "counter",
            "close",
            "--outlet",
            "ZZ-A",
            "--clerk",
            "clerk-a",
            "--declared-fen",
            "0",
        ],
    );
    assert!(e.contains("already closed"), "{e}");
    let v = ok(dir, &["audit", "verify"]);
    assert!(v.contains("intact"), "{v}");
}
