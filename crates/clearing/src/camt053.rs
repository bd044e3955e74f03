//! A partner bank's statement as ISO 20022 `camt.053.001.08` (BankToCustomerStatementV08):
//! the entries booked on the card company's account, each with its amount, direction and —
//! for the company's own transfers — the end-to-end id of the instruction. Read with
//! `roxmltree` by element names under the namespace; written (for the simulated bank and
//! tests) with `quick-xml`.

use quick_xml::Writer;
use quick_xml::events::{BytesDecl, BytesText, Event};
use thiserror::Error;
use time::Date;

use crate::{decimal, parse_decimal};

pub const NAMESPACE: &str = "urn:iso:std:iso:20022:tech:xsd:camt.053.001.08";
/// Entries in one statement, at most.
pub const ENTRIES_MAX: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Money left the account (`DBIT`): the company's credit transfers.
    Debit,
    /// Money arrived (`CRDT`).
    Credit,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The bank's reference of the entry.
    pub reference: String,
    pub amount_fen: i64,
    pub direction: Direction,
    pub booked: Date,
    /// The instruction's end-to-end id, when the entry answers one.
    pub end_to_end_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub id: String,
    pub account: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Camt053Error {
    #[error("not a camt.053.001.08 statement: {0}")]
    Format(String),
    #[error("entry {index}: {reason}")]
    Entry { index: usize, reason: String },
    #[error("more than {ENTRIES_MAX} entries")]
    TooMany,
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
    cur.text().map(str::trim)
}

fn date(text: &str) -> Option<Date> {
    Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .ok()
}

/// Reads one statement. Entries that are not booked (`Sts/Cd` other than `BOOK`) are skipped.
pub fn parse(xml: &str) -> Result<Statement, Camt053Error> {
    let bad = |m: &str| Camt053Error::Format(m.to_string());
    let doc = roxmltree::Document::parse(xml).map_err(|e| Camt053Error::Format(e.to_string()))?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(NAMESPACE) || root.tag_name().name() != "Document" {
        return Err(bad("wrong root element or namespace"));
    }
    let stmt = child(root, "BkToCstmrStmt")
        .and_then(|b| child(b, "Stmt"))
        .ok_or_else(|| bad("no BkToCstmrStmt/Stmt"))?;
    let id = path_text(stmt, &["Id"]).ok_or_else(|| bad("Stmt/Id"))?;
    let account = path_text(stmt, &["Acct", "Id", "Othr", "Id"]).ok_or_else(|| bad("Acct"))?;
    let mut entries = Vec::new();
    for (index, n) in stmt
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Ntry")
        .enumerate()
    {
        if index >= ENTRIES_MAX {
            return Err(Camt053Error::TooMany);
        }
        let e = |reason: &str| Camt053Error::Entry {
            index,
            reason: reason.to_string(),
        };
        let status = path_text(n, &["Sts", "Cd"]).ok_or_else(|| e("no Sts/Cd"))?;
        if status != "BOOK" {
            continue;
        }
        let amt = child(n, "Amt").ok_or_else(|| e("no Amt"))?;
        if amt.attribute("Ccy") != Some("CNY") {
            return Err(e("Amt is not in CNY"));
        }
        let amount_fen = amt
            .text()
            .and_then(parse_decimal)
            .ok_or_else(|| e("Amt is not a decimal amount"))?;
        let direction = match path_text(n, &["CdtDbtInd"]) {
            Some("DBIT") => Direction::Debit,
            Some("CRDT") => Direction::Credit,
            _ => return Err(e("CdtDbtInd is not DBIT or CRDT")),
        };
        let booked = path_text(n, &["BookgDt", "Dt"])
            .and_then(date)
            .ok_or_else(|| e("BookgDt/Dt"))?;
        entries.push(Entry {
            reference: path_text(n, &["AcctSvcrRef"])
                .or_else(|| path_text(n, &["NtryRef"]))
                .unwrap_or("")
                .to_string(),
            amount_fen,
            direction,
            booked,
            end_to_end_id: path_text(n, &["NtryDtls", "TxDtls", "Refs", "EndToEndId"])
                .filter(|s| !s.is_empty() && *s != "NOTPROVIDED")
                .map(str::to_string),
        });
    }
    Ok(Statement {
        id: id.to_string(),
        account: account.to_string(),
        entries,
    })
}

fn text(w: &mut Writer<Vec<u8>>, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl Statement {
    /// The statement as the bank sends it (for the simulated bank and tests).
    pub fn to_xml(&self, created: &str) -> Result<String, Camt053Error> {
        let io = |e: std::io::Error| Camt053Error::Format(e.to_string());
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 1);
        w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))
            .map_err(io)?;
        w.create_element("Document")
            .with_attribute(("xmlns", NAMESPACE))
            .write_inner_content(|w| {
                w.create_element("BkToCstmrStmt").write_inner_content(|w| {
                    w.create_element("GrpHdr").write_inner_content(|w| {
                        text(w, "MsgId", &self.id)?;
                        text(w, "CreDtTm", created)
                    })?;
                    w.create_element("Stmt").write_inner_content(|w| {
                        text(w, "Id", &self.id)?;
                        text(w, "CreDtTm", created)?;
                        w.create_element("Acct").write_inner_content(|w| {
                            w.create_element("Id").write_inner_content(|w| {
                                w.create_element("Othr")
                                    .write_inner_content(|w| text(w, "Id", &self.account))?;
                                Ok(())
                            })?;
                            text(w, "Ccy", "CNY")
                        })?;
                        for e in &self.entries {
                            w.create_element("Ntry").write_inner_content(|w| {
                                text(w, "NtryRef", &e.reference)?;
                                w.create_element("Amt")
                                    .with_attribute(("Ccy", "CNY"))
                                    .write_text_content(BytesText::new(&decimal(e.amount_fen)))?;
                                text(
                                    w,
                                    "CdtDbtInd",
                                    match e.direction {
                                        Direction::Debit => "DBIT",
                                        Direction::Credit => "CRDT",
                                    },
                                )?;
                                w.create_element("Sts")
                                    .write_inner_content(|w| text(w, "Cd", "BOOK"))?;
                                w.create_element("BookgDt")
                                    .write_inner_content(|w| text(w, "Dt", &day(e.booked)))?;
                                text(w, "AcctSvcrRef", &e.reference)?;
                                w.create_element("BkTxCd").write_inner_content(|w| {
                                    w.create_element("Prtry")
                                        .write_inner_content(|w| text(w, "Cd", "TRF"))?;
                                    Ok(())
                                })?;
                                if let Some(id) = &e.end_to_end_id {
                                    w.create_element("NtryDtls").write_inner_content(|w| {
                                        w.create_element("TxDtls").write_inner_content(|w| {
                                            w.create_element("Refs").write_inner_content(|w| {
                                                text(w, "EndToEndId", id)
                                            })?;
                                            Ok(())
                                        })?;
                                        Ok(())
                                    })?;
                                }
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
        String::from_utf8(w.into_inner()).map_err(|e| Camt053Error::Format(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn round_trip_and_refusals() {
        let s = Statement {
            id: "STMT-20261201".into(),
            account: "1702020109000012345".into(),
            entries: vec![
                Entry {
                    reference: "B1".into(),
                    amount_fen: 12_345_678,
                    direction: Direction::Debit,
                    booked: date!(2026 - 12 - 01),
                    end_to_end_id: Some("W20261130-metro".into()),
                },
                Entry {
                    reference: "B2".into(),
                    amount_fen: 100,
                    direction: Direction::Credit,
                    booked: date!(2026 - 12 - 01),
                    end_to_end_id: None,
                },
            ],
        };
        let x = s.to_xml("2026-12-01T18:00:00+08:00").unwrap();
        assert_eq!(parse(&x).unwrap(), s);
        let pending = x.replacen("<Cd>BOOK</Cd>", "<Cd>PDNG</Cd>", 1);
        assert_eq!(parse(&pending).unwrap().entries.len(), 1);
        let usd = x.replacen("Ccy=\"CNY\">123456.78", "Ccy=\"USD\">123456.78", 1);
        assert!(matches!(
            parse(&usd),
            Err(Camt053Error::Entry { index: 0, .. })
        ));
        let neg = x.replacen(">123456.78<", ">-1.00<", 1);
        assert!(matches!(
            parse(&neg),
            Err(Camt053Error::Entry { index: 0, .. })
        ));
        assert!(matches!(parse("<x/>"), Err(Camt053Error::Format(_))));
        assert!(parse("not xml").is_err());
    }
}
