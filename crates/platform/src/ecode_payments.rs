//! E-code payments (issue 7.5): a gate or POS accepts a code offline within the certificate's
//! offline limit and uploads it; the platform checks the code again (the spec's checks at the
//! moment the terminal saw it), debits the holder's online account through the payments of
//! `money`, and — when the account cannot pay — records a debt: the certificate is not renewed
//! until the debts are settled. One code pays once (its key); the sum under a certificate
//! across all terminals is compared with its offline limit and the excess flagged.

use crate::money::{Payer, PaymentRequest};
use crate::terminals::TerminalCaller;
use crate::{Caller, Platform, PlatformError, Result};
use ::ecode::{Code, Purpose, RootKeyId, RootKeys, Verifier, VerifierConfig};
use crypto::Sm2PublicKey;
use store::{EcodePaymentRow, ROOT_WITHDRAWN, Role};

/// Payments in one upload, at most.
pub const ECODE_UPLOAD_MAX: usize = 5_000;

/// The answer for one uploaded code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EcodePaymentResult {
    /// paid, debt, duplicate, refused, malformed; online also declined
    pub result: String,
    /// The refusal's reason code, or what is wrong.
    pub reason: Option<String>,
    pub key: Option<String>,
    pub payment_id: Option<i64>,
    /// The certificate's payments now exceed its offline limit (accepted, flagged).
    pub over_limit: bool,
}

fn result(result: &str, reason: Option<String>) -> EcodePaymentResult {
    EcodePaymentResult {
        result: result.into(),
        reason,
        key: None,
        payment_id: None,
        over_limit: false,
    }
}

fn hex_sm3(bytes: &[u8]) -> String {
    use sm3::Digest;
    hex::encode_upper(sm3::Sm3::digest(bytes))
}

/// The terminal acting in the payments it reports.
fn terminal_acting(t: &TerminalCaller) -> Caller {
    Caller {
        operator_id: None,
        username: format!("terminal:{}", t.terminal),
        role: Role::ClearingOfficer,
        department: None,
        origin: format!("terminal:{}", t.terminal),
    }
}

impl Platform {
    async fn ecode_root_keys(&self) -> Result<RootKeys> {
        let mut roots = RootKeys::new();
        for r in self.store.ecode_roots().await? {
            let id = RootKeyId(r.key_id as u32);
            let Ok(public) = Sm2PublicKey::from_sec1(&r.public_key) else {
                continue;
            };
            let _ = roots.insert(id, public);
            if r.state == ROOT_WITHDRAWN {
                let _ = roots.withdraw(id);
            }
        }
        Ok(roots)
    }

    /// Takes a terminal's upload of e-code payments: one result per code, in order.
    pub async fn ecode_payment_upload(
        &self,
        t: &TerminalCaller,
        items: &[(String, i64)],
    ) -> Result<Vec<EcodePaymentResult>> {
        if items.len() > ECODE_UPLOAD_MAX {
            return Err(PlatformError::TooLarge {
                what: format!("an upload of {} e-code payments", items.len()),
                limit: format!("{ECODE_UPLOAD_MAX} payments"),
            });
        }
        let acting = terminal_acting(t);
        // The root keys as they stand, read once per upload.
        let roots = self.ecode_root_keys().await?;
        let mut out = Vec::with_capacity(items.len());
        for (text, amount) in items {
            out.push(
                self.ecode_payment_one(&acting, t, &roots, text, *amount, false)
                    .await?,
            );
        }
        Ok(out)
    }

    /// A connected POS asks before it accepts: the code is checked now, at the platform's clock
    /// (freshness, signatures, the card active), and paid from the holder's account at once.
    /// `paid` means the POS may hand over the goods; `declined` (the account cannot pay, the card
    /// is not active) and `refused` (the code fails a check) record nothing, and no debt is
    /// made: the citizen is standing at the till. A retry of the same code answers `duplicate`
    /// with the first payment's id. Online payments are not offline risk and do not count
    /// against the certificate's offline limit.
    pub async fn ecode_payment_online(
        &self,
        t: &TerminalCaller,
        text: &str,
        amount_fen: i64,
    ) -> Result<EcodePaymentResult> {
        let acting = terminal_acting(t);
        let roots = self.ecode_root_keys().await?;
        self.ecode_payment_one(&acting, t, &roots, text, amount_fen, true)
            .await
    }

    async fn ecode_payment_one(
        &self,
        acting: &Caller,
        t: &TerminalCaller,
        roots: &RootKeys,
        text: &str,
        amount_fen: i64,
        online: bool,
    ) -> Result<EcodePaymentResult> {
        let Ok(amount) = u32::try_from(amount_fen) else {
            return Ok(result("malformed", Some("amount_fen out of range".into())));
        };
        if amount == 0 {
            return Ok(result(
                "malformed",
                Some("amount_fen must be more than 0".into()),
            ));
        }
        let code = match Code::parse_text(text) {
            Ok(c) => c,
            Err(e) => return Ok(result("malformed", Some(format!("code: {e}")))),
        };
        let cert = code.certificate();
        let number = cert.card_number().to_string();
        let key = format!(
            "ecode:{number}:{}:{}:{}",
            cert.root_key_id().0,
            code.time(),
            code.sequence()
        );
        if let Some(done) = self.store.ecode_payment(&key).await? {
            return Ok(EcodePaymentResult {
                result: "duplicate".into(),
                reason: Some(done.state),
                key: Some(key),
                payment_id: done.payment_id,
                over_limit: done.over_limit,
            });
        }
        // Offline: the spec's checks as the terminal made them, at the code's own time (an
        // upload comes later than the scan); the deny-list was the terminal's to apply.
        // Online: the checks now, at the platform's clock; the card's state is checked by the
        // payment itself (an active card only).
        let mut verifier = Verifier::new(roots.clone(), VerifierConfig::default())
            .map_err(|e| PlatformError::Unexpected(format!("verifier: {e}")))?;
        verifier.set_deny_list(|_| false);
        let at = if online {
            u32::try_from(self.clock.now_ms().div_euclid(1000)).unwrap_or(u32::MAX)
        } else {
            code.time().saturating_add(1)
        };
        if let Err(r) = verifier.verify(&code, at, Purpose::Pay { amount_fen: amount }) {
            return Ok(result("refused", Some(r.code().into())));
        }
        let digest = hex_sm3(cert.as_bytes());
        let over_limit = !online && {
            let spent = self.store.ecode_spent_on_certificate(&digest).await?;
            spent + amount_fen > i64::from(cert.fields().offline_limit_fen)
        };
        let paid = self
            .pay(
                acting,
                &PaymentRequest {
                    key: key.clone(),
                    payer: Payer::Card(number.clone()),
                    merchant: t.merchant.clone(),
                    amount_fen,
                    reference: format!("e-code seq {} at {}", code.sequence(), t.terminal),
                },
            )
            .await;
        let (state, payment_id, reason) = match paid {
            Ok(p) => ("paid", Some(p.id), None),
            // Online, the POS declines and nothing is owed.
            Err(PlatformError::Conflict(m)) if online => {
                return Ok(result("declined", Some(m)));
            }
            // Offline, the goods are gone: the account cannot pay (or the card is no longer
            // active), so a debt, settled later.
            Err(PlatformError::Conflict(m)) => ("debt", None, Some(m)),
            Err(e) => return Err(e),
        };
        let row = EcodePaymentRow {
            key: key.clone(),
            card_number: number.clone(),
            certificate_digest: digest,
            merchant: t.merchant.clone(),
            terminal: t.terminal.clone(),
            amount_fen,
            code_time: i64::from(code.time()),
            state: state.into(),
            payment_id,
            over_limit,
            online,
            created_ms: self.clock.now_ms(),
            settled_ms: None,
        };
        self.store
            .ecode_payment_insert(
                &row,
                acting.draft(
                    "ecode.payment",
                    format!("card:{number}"),
                    format!(
                        "{state} {amount_fen} fen at {}{}{}",
                        t.merchant,
                        if online { ", authorised online" } else { "" },
                        if over_limit {
                            ", over the offline limit"
                        } else {
                            ""
                        }
                    ),
                ),
                row.created_ms,
            )
            .await?;
        Ok(EcodePaymentResult {
            result: state.into(),
            reason,
            key: Some(key),
            payment_id,
            over_limit,
        })
    }

    /// A card's open e-code debts.
    pub async fn ecode_debts(&self, caller: &Caller, card: &str) -> Result<Vec<EcodePaymentRow>> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::Auditor | Role::ClearingOfficer => {}
            Role::DepartmentOfficer => {
                return Err(PlatformError::Forbidden(
                    "a department officer does not read card debts".into(),
                ));
            }
        }
        Ok(self.store.ecode_debts_of_card(card).await?)
    }

    /// Tries to pay a card's debts from the holder's online account, oldest first; stops at the
    /// first the account cannot pay. Returns what is still open.
    pub async fn ecode_settle_debts(
        &self,
        caller: &Caller,
        card: &str,
    ) -> Result<Vec<EcodePaymentRow>> {
        match caller.role {
            Role::Administrator | Role::CounterClerk | Role::ClearingOfficer => {}
            _ => {
                return Err(PlatformError::Forbidden(
                    "debts are settled at a counter or by clearing".into(),
                ));
            }
        }
        let acting = Caller {
            role: Role::ClearingOfficer,
            ..caller.clone()
        };
        for d in self.store.ecode_debts_of_card(card).await? {
            let paid = self
                .pay(
                    &acting,
                    &PaymentRequest {
                        key: format!("{}:settle", d.key),
                        payer: Payer::Card(d.card_number.clone()),
                        merchant: d.merchant.clone(),
                        amount_fen: d.amount_fen,
                        reference: "e-code debt settled".into(),
                    },
                )
                .await;
            match paid {
                Ok(p) => {
                    self.store
                        .ecode_debt_settle(
                            &d.key,
                            p.id,
                            caller.draft(
                                "ecode.debt.settle",
                                format!("card:{card}"),
                                format!("{} fen to {}", d.amount_fen, d.merchant),
                            ),
                            self.clock.now_ms(),
                        )
                        .await?;
                }
                Err(PlatformError::Conflict(_)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(self.store.ecode_debts_of_card(card).await?)
    }
}
