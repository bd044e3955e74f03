//! Settlement instructions to a partner bank as ISO 20022 `pain.001.001.09`
//! (CustomerCreditTransferInitiationV09): one payment information block debiting the card
//! company's settlement account, one credit transfer per participant's net position, each with
//! its end-to-end id so the bank statement can be matched back ([`crate::reconcile`]).
//!
//! Written with `quick-xml`; read back with `roxmltree` (the simulated bank and tests read it
//! the way a bank would). Text is escaped by the writer; identifiers are checked to the
//! schema's `Max35Text`, names to `Max140Text`.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use thiserror::Error;
use time::Date;

use crate::{decimal, parse_decimal};

pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:pain.001.001.09";
/// Transactions in one file, at most.
pub const TRANSACTIONS_MAX: usize = 100_000;

/// One credit transfer: pay `amount_fen` to the creditor's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    /// Unique per instruction (`Max35Text`); the bank returns it on the statement.
    pub end_to_end_id: String,
    pub creditor_name: String,
    pub creditor_account: String,
    pub amount_fen: i64,
    /// Remittance text (`Max140Text`): the window and participant, say.
    pub remittance: String,
}

/// The file: who pays from which account, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiation {
    pub message_id: String,
    /// `YYYY-MM-DDThh:mm:ss+08:00`.
    pub created: String,
    pub debtor_name: String,
    pub debtor_account: String,
    /// The debtor's bank (BIC, 8 or 11 characters).
    pub debtor_agent_bic: String,
    pub execution_date: Date,
    pub instructions: Vec<Instruction>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Pain001Error {
    #[error("{field} {value:?} must be 1 to {max} characters")]
    Text {
        field: &'static str,
        value: String,
        max: usize,
    },
    #[error("instruction {0}: the amount must be more than 0")]
    Amount(String),
    #[error("end-to-end id {0} appears twice")]
    Duplicate(String),
    #[error("a file holds 1 to {TRANSACTIONS_MAX} transfers")]
    Count,
    #[error("not a pain.001.001.09 document: {0}")]
    Format(String),
}

fn check(field: &'static str, value: &str, max: usize) -> Result<(), Pain001Error> {
    let n = value.chars().count();
    if n == 0 || n > max || value.chars().any(char::is_control) {
        return Err(Pain001Error::Text {
            field,
            value: value.chars().take(40).collect(),
            max,
        });
    }
    Ok(())
}

impl Initiation {
    fn validate(&self) -> Result<i64, Pain001Error> {
        check("message id", &self.message_id, 35)?;
        check("debtor name", &self.debtor_name, 140)?;
        check("debtor account", &self.debtor_account, 34)?;
        check("debtor agent BIC", &self.debtor_agent_bic, 11)?;
        if self.instructions.is_empty() || self.instructions.len() > TRANSACTIONS_MAX {
            return Err(Pain001Error::Count);
        }
        let mut seen = std::collections::HashSet::new();
        let mut sum: i64 = 0;
        for i in &self.instructions {
            check("end-to-end id", &i.end_to_end_id, 35)?;
            check("creditor name", &i.creditor_name, 140)?;
            check("creditor account", &i.creditor_account, 34)?;
            check("remittance", &i.remittance, 140)?;
            if i.amount_fen <= 0 {
                return Err(Pain001Error::Amount(i.end_to_end_id.clone()));
            }
            if !seen.insert(i.end_to_end_id.as_str()) {
                return Err(Pain001Error::Duplicate(i.end_to_end_id.clone()));
            }
            sum = sum
                .checked_add(i.amount_fen)
                .ok_or_else(|| Pain001Error::Amount(i.end_to_end_id.clone()))?;
        }
        Ok(sum)
    }

    /// The XML document, UTF-8.
    pub fn to_xml(&self) -> Result<String, Pain001Error> {
        let sum = self.validate()?;
        let n = self.instructions.len().to_string();
        let ctrl = decimal(sum);
        let day = format!(
            "{:04}-{:02}-{:02}",
            self.execution_date.year(),
            u8::from(self.execution_date.month()),
            self.execution_date.day()
        );
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 1);
        let io = |e: std::io::Error| Pain001Error::Format(e.to_string());
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .map_err(io)?;
        w.create_element("Document")
            .with_attribute(("xmlns", NAMESPACE))
            .write_inner_content(|w| {
                w.create_element("CstmrCdtTrfInitn")
                    .write_inner_content(|w| {
                        w.create_element("GrpHdr").write_inner_content(|w| {
                            text(w, "MsgId", &self.message_id)?;
                            text(w, "CreDtTm", &self.created)?;
                            text(w, "NbOfTxs", &n)?;
                            text(w, "CtrlSum", &ctrl)?;
                            w.create_element("InitgPty")
                                .write_inner_content(|w| text(w, "Nm", &self.debtor_name))?;
                            Ok(())
                        })?;
                        w.create_element("PmtInf").write_inner_content(|w| {
                            text(w, "PmtInfId", &self.message_id)?;
                            text(w, "PmtMtd", "TRF")?;
                            text(w, "NbOfTxs", &n)?;
                            text(w, "CtrlSum", &ctrl)?;
                            w.create_element("ReqdExctnDt")
                                .write_inner_content(|w| text(w, "Dt", &day))?;
                            w.create_element("Dbtr")
                                .write_inner_content(|w| text(w, "Nm", &self.debtor_name))?;
                            account(w, "DbtrAcct", &self.debtor_account, true)?;
                            w.create_element("DbtrAgt").write_inner_content(|w| {
                                w.create_element("FinInstnId").write_inner_content(|w| {
                                    text(w, "BICFI", &self.debtor_agent_bic)
                                })?;
                                Ok(())
                            })?;
                            text(w, "ChrgBr", "SLEV")?;
                            for i in &self.instructions {
                                w.create_element("CdtTrfTxInf").write_inner_content(|w| {
                                    w.create_element("PmtId").write_inner_content(|w| {
                                        text(w, "EndToEndId", &i.end_to_end_id)
                                    })?;
                                    w.create_element("Amt").write_inner_content(|w| {
                                        w.create_element("InstdAmt")
                                            .with_attribute(("Ccy", "CNY"))
                                            .write_text_content(BytesText::new(&decimal(
                                                i.amount_fen,
                                            )))?;
                                        Ok(())
                                    })?;
                                    w.create_element("Cdtr")
                                        .write_inner_content(|w| text(w, "Nm", &i.creditor_name))?;
                                    account(w, "CdtrAcct", &i.creditor_account, false)?;
                                    w.create_element("RmtInf")
                                        .write_inner_content(|w| text(w, "Ustrd", &i.remittance))?;
                                    Ok(())
                                })?;
                            }
                            Ok(())
                        })?;
                        Ok(())
                    })?;
                Ok(())
            })
            .map_err(io)?;
        String::from_utf8(w.into_inner()).map_err(|e| Pain001Error::Format(e.to_string()))
    }
}

fn text(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn account(w: &mut Writer<Vec<u8>>, name: &str, id: &str, ccy: bool) -> std::io::Result<()> {
    w.create_element(name).write_inner_content(|w| {
        w.create_element("Id").write_inner_content(|w| {
            w.create_element("Othr")
                .write_inner_content(|w| text(w, "Id", id))?;
            Ok(())
        })?;
        if ccy {
            text(w, "Ccy", "CNY")?;
        }
        Ok(())
    })?;
    Ok(())
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

fn path_text<'a>(n: roxmltree::Node<'a, '_>, path: &[&str]) -> Option<&'a str> {
    let mut cur = n;
    for p in path {
        cur = child(cur, p)?;
    }
    cur.text()
}

/// Reads a `pain.001.001.09` document (as the bank does), checking the counts and sums.
pub fn parse(xml: &str) -> Result<Initiation, Pain001Error> {
    let bad = |m: &str| Pain001Error::Format(m.to_string());
    let doc = roxmltree::Document::parse(xml).map_err(|e| Pain001Error::Format(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NAMESPACE) || root.tag_name().name() != "Document" {
        return Err(bad("wrong root element or namespace"));
    }
    let init = child(root, "CstmrCdtTrfInitn").ok_or_else(|| bad("no CstmrCdtTrfInitn"))?;
    let hdr = child(init, "GrpHdr").ok_or_else(|| bad("no GrpHdr"))?;
    let pmt = child(init, "PmtInf").ok_or_else(|| bad("no PmtInf"))?;
    let get = |n, p: &[&str]| {
        path_text(n, p)
            .map(str::to_string)
            .ok_or_else(|| bad(&p.join("/")))
    };
    let day = get(pmt, &["ReqdExctnDt", "Dt"])?;
    let execution_date = Date::parse(
        &day,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| bad("ReqdExctnDt/Dt"))?;
    let mut instructions = Vec::new();
    for tx in pmt
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "CdtTrfTxInf")
    {
        let amt = path_text(tx, &["Amt", "InstdAmt"]).ok_or_else(|| bad("InstdAmt"))?;
        instructions.push(Instruction {
            end_to_end_id: get(tx, &["PmtId", "EndToEndId"])?,
            creditor_name: get(tx, &["Cdtr", "Nm"])?,
            creditor_account: get(tx, &["CdtrAcct", "Id", "Othr", "Id"])?,
            amount_fen: parse_decimal(amt).ok_or_else(|| bad("InstdAmt value"))?,
            remittance: path_text(tx, &["RmtInf", "Ustrd"])
                .unwrap_or("")
                .to_string(),
        });
    }
    let out = Initiation {
        message_id: get(hdr, &["MsgId"])?,
        created: get(hdr, &["CreDtTm"])?,
        debtor_name: get(pmt, &["Dbtr", "Nm"])?,
        debtor_account: get(pmt, &["DbtrAcct", "Id", "Othr", "Id"])?,
        debtor_agent_bic: get(pmt, &["DbtrAgt", "FinInstnId", "BICFI"])?,
        execution_date,
        instructions,
    };
    let sum = out.validate()?;
    if get(hdr, &["NbOfTxs"])? != out.instructions.len().to_string()
        || parse_decimal(&get(hdr, &["CtrlSum"])?) != Some(sum)
    {
        return Err(bad("NbOfTxs or CtrlSum does not match the transfers"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    pub(crate) fn sample() -> Initiation {
        Initiation {
            message_id: "STL-20261130-ICBC".into(),
            created: "2026-11-30T23:05:00+08:00".into(),
            debtor_name: "郑州市民卡有限公司".into(),
            debtor_account: "1702020109000012345".into(),
            debtor_agent_bic: "ICBKCNBJHNN".into(),
            execution_date: date!(2026 - 12 - 01),
            instructions: vec![
                Instruction {
                    end_to_end_id: "W20261130-metro".into(),
                    creditor_name: "郑州地铁集团 <Metro & Co>".into(),
                    creditor_account: "41050100000001".into(),
                    amount_fen: 12_345_678,
                    remittance: "clearing window 2026-11-30".into(),
                },
                Instruction {
                    end_to_end_id: "W20261130-bus".into(),
                    creditor_name: "郑州公交".into(),
                    creditor_account: "41050100000002".into(),
                    amount_fen: 5,
                    remittance: "clearing window 2026-11-30".into(),
                },
            ],
        }
    }

    #[test]
    fn writes_a_document_the_reader_takes_back() {
        let x = sample().to_xml().unwrap();
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
        assert!(x.contains("<NbOfTxs>2</NbOfTxs>"));
        assert!(x.contains("<CtrlSum>123456.83</CtrlSum>"));
        assert!(x.contains("<InstdAmt Ccy=\"CNY\">0.05</InstdAmt>"));
        // Markup in a name is escaped, not injected.
        assert!(x.contains("&lt;Metro &amp; Co&gt;"));
        assert_eq!(parse(&x).unwrap(), sample());
    }

    #[test]
    fn refuses_what_a_bank_would() {
        let mut s = sample();
        s.instructions[1].end_to_end_id = s.instructions[0].end_to_end_id.clone();
        assert!(matches!(s.to_xml(), Err(Pain001Error::Duplicate(_))));
        let mut s = sample();
        s.instructions[0].amount_fen = 0;
        assert!(matches!(s.to_xml(), Err(Pain001Error::Amount(_))));
        let mut s = sample();
        s.message_id = "x".repeat(36);
        assert!(matches!(s.to_xml(), Err(Pain001Error::Text { .. })));
        let x = sample().to_xml().unwrap();
        let tampered = x.replacen("<CtrlSum>123456.83</CtrlSum>", "<CtrlSum>1.00</CtrlSum>", 1);
        assert!(matches!(parse(&tampered), Err(Pain001Error::Format(_))));
        assert!(parse("<Document/>").is_err());
    }
}
