//! Upload and download: batches of the queue posted with per-record answers, parameters and the
//! deny-list brought up to date.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Deserialize;

use crate::client::PlatformClient;
use crate::clock::now_ms;
use crate::db::{Answer, Batch};
use crate::{Agent, AgentError, Result};

/// What one [`Agent::upload_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadReport {
    pub batches: u64,
    pub accepted: u64,
    pub refused: u64,
}

/// What one [`Agent::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub parameters_version: String,
    pub parameters_changed: bool,
    pub deny_list_version: i64,
    /// `full`, `delta` or `none`.
    pub deny_list_download: &'static str,
}

#[derive(Deserialize)]
struct CardResult {
    result: String,
    field: Option<String>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct CardResults {
    results: Vec<CardResult>,
}

#[derive(Deserialize)]
struct EcodeResult {
    result: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ParametersAnswer {
    version: String,
    #[serde(default)]
    changed: Option<bool>,
    server_time_s: i64,
    deny_list_version: i64,
    #[serde(default)]
    deny_list_key: Option<String>,
    #[serde(default)]
    fares: Option<serde_json::Value>,
    #[serde(default)]
    ecode_roots: Option<String>,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    title: Option<String>,
}

fn problem_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Problem>(body) {
        Ok(p) => p
            .detail
            .or(p.title)
            .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned()),
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    }
}

/// The request body of a batch: the same bytes every time it is sent.
fn batch_body(b: &Batch) -> Vec<u8> {
    let list = if b.kind == "card" {
        "records"
    } else {
        "payments"
    };
    let mut out = format!("{{\"batch_id\":\"{}\",\"{list}\":[", b.id);
    for (i, (_, body)) in b.records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(body);
    }
    out.push_str("]}");
    out.into_bytes()
}

fn answers(kind: &str, body: &[u8], n: usize) -> Result<Vec<Answer>> {
    let bad = |reason: String| AgentError::Refused {
        status: 200,
        detail: format!("an answer the terminal cannot read: {reason}"),
    };
    let out: Vec<Answer> = if kind == "card" {
        serde_json::from_slice::<CardResults>(body)
            .map_err(|e| bad(e.to_string()))?
            .results
            .into_iter()
            .map(|r| Answer {
                accepted: matches!(r.result.as_str(), "posted" | "duplicate"),
                reason: match (r.field, r.reason) {
                    (Some(f), Some(r)) => Some(format!("{f}: {r}")),
                    (None, r) => r,
                    (Some(f), None) => Some(f),
                },
                result: r.result,
            })
            .collect()
    } else {
        serde_json::from_slice::<Vec<EcodeResult>>(body)
            .map_err(|e| bad(e.to_string()))?
            .into_iter()
            .map(|r| Answer {
                accepted: matches!(r.result.as_str(), "paid" | "debt" | "duplicate"),
                reason: r.reason,
                result: r.result,
            })
            .collect()
    };
    if out.len() != n {
        return Err(bad(format!("{} results for {n} records", out.len())));
    }
    Ok(out)
}

impl Agent {
    /// Sends every waiting record, batch by batch, until the queue is empty or the platform
    /// cannot be reached (the error; the open batch is resent with the same id next time).
    pub async fn upload_once(&self, client: &PlatformClient) -> Result<UploadReport> {
        let mut report = UploadReport::default();
        while let Some(batch) = self
            .db
            .next_batch(self.limits.batch_max, self.limits.ecode_batch_max, now_ms())
            .await?
        {
            if batch.records.is_empty() {
                // A batch whose records were answered already (cannot happen: answered
                // together); close it.
                self.db.answer_batch(&batch, &[], now_ms()).await?;
                continue;
            }
            let path = if batch.kind == "card" {
                "/api/v1/terminal/uploads"
            } else {
                "/api/v1/terminal/ecode-payments"
            };
            let answer = client.send("POST", path, batch_body(&batch)).await?;
            let answers = match answer.status {
                200 => answers(&batch.kind, &answer.body, batch.records.len())?,
                // The batch itself is refused for good (malformed, too large): its records are
                // kept, marked refused with the reason, for an operator.
                400 | 413 | 422 => {
                    let reason = problem_text(&answer.body);
                    batch
                        .records
                        .iter()
                        .map(|_| crate::db::Answer {
                            accepted: false,
                            result: format!("batch_refused_{}", answer.status),
                            reason: Some(reason.clone()),
                        })
                        .collect()
                }
                // Clock, replay, an unbound PSAM, a platform fault: try again later.
                status => {
                    return Err(AgentError::Refused {
                        status,
                        detail: problem_text(&answer.body),
                    });
                }
            };
            self.db.answer_batch(&batch, &answers, now_ms()).await?;
            let n = batch.records.len() as u64;
            self.pending.fetch_sub(n, Ordering::SeqCst);
            report.batches += 1;
            let accepted = answers.iter().filter(|a| a.accepted).count() as u64;
            report.accepted += accepted;
            report.refused += n - accepted;
        }
        Ok(report)
    }

    /// Parameters "changed since" the version held, and the deny-list brought to the platform's
    /// version (a delta when one applies, else the full list), verified with `deny_list_key`
    /// (SEC1 hex; without it the key the parameters name).
    pub async fn sync(
        &self,
        client: &PlatformClient,
        deny_list_key: Option<&str>,
    ) -> Result<SyncReport> {
        let held = self.db.meta_text("parameters_version").await?;
        let deny_held = self.deny_list_version().await;
        let mut path = format!(
            "/api/v1/terminal/parameters?denylist={deny_held}&pending={}",
            self.pending()
        );
        if let Some(v) = &held {
            path.push_str(&format!("&since={v}"));
        }
        let a = client.send("GET", &path, Vec::new()).await?;
        if a.status != 200 {
            return Err(AgentError::Refused {
                status: a.status,
                detail: problem_text(&a.body),
            });
        }
        let p: ParametersAnswer =
            serde_json::from_slice(&a.body).map_err(|e| AgentError::Refused {
                status: 200,
                detail: format!("parameters: {e}"),
            })?;
        let local_s = now_ms().div_euclid(1000);
        client.set_clock_offset(p.server_time_s - local_s);
        let changed = p.changed.unwrap_or(true) && p.fares.is_some();
        if changed {
            let fares: fares::FareRules =
                serde_json::from_value(p.fares.clone().unwrap_or_default()).map_err(|e| {
                    AgentError::Refused {
                        status: 200,
                        detail: format!("fare tables: {e}"),
                    }
                })?;
            fares
                .validate()
                .map_err(|e| AgentError::Config(e.to_string()))?;
            let json = serde_json::to_vec(&fares).expect("plain JSON");
            self.db
                .meta_set(&[
                    ("fares", json),
                    ("parameters_version", p.version.clone().into_bytes()),
                ])
                .await?;
            self.inner.lock().await.fares = fares;
        }
        // The e-code roots, when they are new: checked before they are kept, kept before they
        // are used. Unchanged roots keep the verifier (and its replay cache and offline use).
        let held_roots = self.db.meta_text("ecode_roots").await?;
        if let Some(pem) = p
            .ecode_roots
            .as_deref()
            .filter(|pem| !pem.trim().is_empty() && held_roots.as_deref() != Some(*pem))
        {
            let verifier = crate::ecode_verifier(pem)?;
            self.db
                .meta_set(&[("ecode_roots", pem.as_bytes().to_vec())])
                .await?;
            self.inner.lock().await.verifier = Some(verifier);
        }
        let mut report = SyncReport {
            parameters_version: p.version,
            parameters_changed: changed,
            deny_list_version: deny_held,
            deny_list_download: "none",
        };
        if p.deny_list_version != deny_held {
            let key_hex = deny_list_key
                .map(str::to_string)
                .or(p.deny_list_key)
                .ok_or_else(|| AgentError::Config("no deny-list key to verify with".into()))?;
            let key = hex::decode(key_hex.trim())
                .ok()
                .and_then(|k| crypto::Sm2PublicKey::from_sec1(&k).ok())
                .ok_or_else(|| AgentError::Config("the deny-list key is not SEC1 hex".into()))?;
            let (list, kind) = self.fetch_deny_list(client, &key, deny_held).await?;
            report.deny_list_version = list.version().0 as i64;
            report.deny_list_download = kind;
            self.db
                .meta_set(&[("deny_list", list.encode(&issuance::Unsigned))])
                .await?;
            self.inner.lock().await.deny = Some(Arc::new(list));
        }
        Ok(report)
    }

    async fn fetch_deny_list(
        &self,
        client: &PlatformClient,
        key: &crypto::Sm2PublicKey,
        held: i64,
    ) -> Result<(issuance::DenyList, &'static str)> {
        let current = self.inner.lock().await.deny.clone();
        if let Some(list) = current.filter(|_| held > 0) {
            let a = client
                .send(
                    "GET",
                    &format!("/api/v1/terminal/denylist?since={held}"),
                    Vec::new(),
                )
                .await?;
            if a.status == 200 {
                let delta = issuance::DenyListDelta::decode(&a.body, key).map_err(|e| {
                    AgentError::Refused {
                        status: 200,
                        detail: format!("deny-list delta: {e}"),
                    }
                })?;
                let mut list = (*list).clone();
                if list.apply(&delta).is_ok() {
                    return Ok((list, "delta"));
                }
            }
        }
        let a = client
            .send("GET", "/api/v1/terminal/denylist", Vec::new())
            .await?;
        if a.status != 200 {
            return Err(AgentError::Refused {
                status: a.status,
                detail: problem_text(&a.body),
            });
        }
        let list = issuance::DenyList::decode(&a.body, key).map_err(|e| AgentError::Refused {
            status: 200,
            detail: format!("deny-list: {e}"),
        })?;
        Ok((list, "full"))
    }

    /// Records refused by the platform: `(seq, result, reason)`, oldest first.
    pub async fn refused(&self, limit: u32) -> Result<Vec<(i64, String, Option<String>)>> {
        self.db.refused(limit).await
    }
}
