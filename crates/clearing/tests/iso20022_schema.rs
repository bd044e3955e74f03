//! The settlement file is valid against the ISO 20022 `pain.001.001.09` schema, checked by an
//! independent validator: libxml2's `xmllint` with the XSD that PyPI's `sepaxml` ships.
//! `scripts/test` installs both (Debian `libxml2-utils`, `pip install sepaxml`); when either is
//! missing this test fails and says what to install.

use clearing::pain001::{Initiation, Instruction};
use std::process::Command;
use time::macros::date;

fn schema() -> std::path::PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sepaxml, os; print(os.path.join(os.path.dirname(sepaxml.__file__), 'schemas'))",
        ])
        .output()
        .expect("python3 is needed to find the pain.001 schema: apt-get install python3");
    assert!(
        out.status.success(),
        "the pain.001.001.09 XSD comes with PyPI's sepaxml: pip install sepaxml ({})",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = String::from_utf8(out.stdout).unwrap();
    std::path::PathBuf::from(dir.trim()).join("pain.001.001.09.xsd")
}

fn xmllint(xsd: &std::path::Path, xml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pain001.xml");
    std::fs::write(&file, xml).unwrap();
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(xsd)
        .arg(&file)
        .output()
        .expect("xmllint is needed: apt-get install libxml2-utils");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_settlement_file_is_valid_pain_001_001_09() {
    let xsd = schema();
    assert!(
        xsd.exists(),
        "{} is missing: pip install sepaxml",
        xsd.display()
    );
    let doc = Initiation {
        message_id: "STL-20261130-ICBC".into(),
        created: "2026-11-30T23:05:00+08:00".into(),
        debtor_name: "郑州市民卡有限公司".into(),
        debtor_account: "1702020109000012345".into(),
        debtor_agent_bic: "ICBKCNBJHNN".into(),
        execution_date: date!(2026 - 12 - 01),
        instructions: (0..50)
            .map(|i| Instruction {
                end_to_end_id: format!("W20261130-M{i:04}"),
                creditor_name: format!("商户 {i} <&>"),
                creditor_account: format!("4105010000{i:04}"),
                amount_fen: 1 + i * 1_234_567,
                remittance: "clearing window 2026-11-30".into(),
            })
            .collect(),
    };
    let xml = doc.to_xml().unwrap();
    let (ok, said) = xmllint(&xsd, &xml);
    assert!(ok, "xmllint refused our pain.001: {said}");
    // The validator is not a rubber stamp: a broken document is refused.
    let broken = xml.replacen("<PmtMtd>TRF</PmtMtd>", "<PmtMtd>XYZ</PmtMtd>", 1);
    let (ok, _) = xmllint(&xsd, &broken);
    assert!(!ok, "xmllint must refuse an unknown payment method");
}
