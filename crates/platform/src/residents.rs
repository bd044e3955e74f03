//! The resident base database ("一库"): importing department feeds, looking residents up by ID
//! number or name, and showing them masked (or, for roles that may, unmasked) with the
//! provenance of every field. Every read of personal data is audited before it is returned.

use crate::{Caller, Platform, PlatformError, Result};
use keys::{BlindIndex, Vault};
use resident::{Field, ResidentFacts, ResidentId, Source};
use sm3::{Digest, Sm3};
use std::io::Read;
use std::sync::Arc;
use store::{FeedTotals, NewFeed, ResidentRow, Role, SealedFacts, SealedField};

/// Rows per storage transaction during an import.
pub const IMPORT_BATCH: usize = 5_000;
/// Rejected rows kept in memory for the report; beyond this only the count grows.
pub const REJECTS_KEPT_MAX: usize = 100_000;
/// Rows in one import file.
pub const IMPORT_ROWS_MAX: u64 = 20_000_000;
/// Residents returned by one name search.
pub const SEARCH_RESULTS_MAX: u32 = 50;

pub const CSV_HEADER: [&str; 5] = ["id_number", "name", "phone", "address", "residency"];
/// The header of a feed that also reports assistance (civil affairs) and student status
/// (education).
pub const CSV_HEADER_STATUS: [&str; 7] = [
    "id_number",
    "name",
    "phone",
    "address",
    "residency",
    "assistance",
    "student",
];

/// Roles that may see personal data unmasked.
pub const UNMASK_ROLES: [Role; 3] = [
    Role::Administrator,
    Role::CounterClerk,
    Role::DepartmentOfficer,
];

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reject {
    /// The line of the file the row starts on (the header is line 1).
    pub row: u64,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportReport {
    pub feed_id: i64,
    pub source: Source,
    pub totals: FeedTotals,
    pub rejects: Vec<Reject>,
    /// True when more rows were rejected than [`REJECTS_KEPT_MAX`] kept here.
    pub rejects_truncated: bool,
    /// Rows with a field held for review: this department is not that field's authority and
    /// contradicted a stored value (`GET /api/v1/residents/reviews`).
    pub held: u64,
    /// Cards whose student concession ended because this feed reported a graduation.
    pub concessions_ended: Vec<String>,
}

/// Where a field's current value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Provenance {
    pub field: Field,
    pub source: String,
    pub feed_id: i64,
    pub at_ms: i64,
}

/// A resident as shown to an operator: masked unless `unmasked` is true.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ResidentView {
    pub resident_id: i64,
    pub id_number: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub residency: Option<resident::Residency>,
    /// Social assistance status (`minimum_living_allowance` …); `***` when masked.
    pub assistance: Option<String>,
    /// Student status (`enrolled`, `graduated`); `***` when masked.
    pub student: Option<String>,
    pub birth_date: String,
    pub gender: String,
    pub region: String,
    pub unmasked: bool,
    pub provenance: Vec<Provenance>,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChangeView {
    pub feed_id: i64,
    pub source: String,
    pub channel: String,
    pub fields: Vec<Field>,
    pub values: serde_json::Value,
    pub at_ms: i64,
}

pub(crate) fn ctx(blind: &BlindIndex, field: &str) -> Vec<u8> {
    format!("resident:{}:{field}", blind.to_hex()).into_bytes()
}

pub(crate) fn change_ctx(blind: &BlindIndex) -> Vec<u8> {
    format!("resident-change:{}", blind.to_hex()).into_bytes()
}

/// Seals one validated row for storage: blind indexes to find and compare, ciphertexts to keep.
pub fn seal_facts(vault: &Vault, f: &ResidentFacts) -> Result<SealedFacts> {
    let id_blind = vault.blind("id_number", f.id.as_str());
    let mut fields = Vec::with_capacity(Field::SEALED.len());
    for field in Field::SEALED {
        if let Some(v) = f.value(field) {
            fields.push(SealedField {
                field,
                mac: vault.blind(field.as_str(), v),
                sealed: vault.seal(&ctx(&id_blind, field.as_str()), v.as_bytes())?,
            });
        }
    }
    let reported = serde_json::json!({
        "name": f.name, "phone": f.phone, "address": f.address,
        "residency": f.residency.map(|r| r.as_str()),
        "assistance": f.assistance.map(|a| a.as_str()),
        "student": f.student.map(|s| s.as_str()),
    });
    Ok(SealedFacts {
        id_blind,
        id_sealed: vault.seal(&ctx(&id_blind, "id_number"), f.id.as_str().as_bytes())?,
        birth_date: f.id.birth_date().to_string(),
        gender: match f.id.gender() {
            resident::Gender::Male => "male".into(),
            resident::Gender::Female => "female".into(),
        },
        region_code: f.id.region_code().to_string(),
        residency: f.residency,
        fields,
        change_sealed: vault.seal(&change_ctx(&id_blind), reported.to_string().as_bytes())?,
    })
}

/// SM3 of the whole input, hex: recorded with the feed so a re-sent file is recognisable.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sm3::digest(bytes))
}

enum Batch {
    /// Sealed rows, and the residents among them reported as graduated.
    Rows(Vec<SealedFacts>, Vec<BlindIndex>),
    Done {
        rows: u64,
        rejects: Vec<Reject>,
        rejected: u64,
    },
    Failed(PlatformError),
}

/// Reads, validates and seals the CSV on a blocking thread, sending sealed batches. Runs
/// alongside the storage writes, so the two cores share the work.
fn produce(
    reader: Box<dyn Read + Send>,
    vault: Arc<Vault>,
    today: time::Date,
    out: tokio::sync::mpsc::Sender<Batch>,
    progress: Arc<dyn Fn(u64) + Send + Sync>,
) {
    let run = || -> Result<(u64, Vec<Reject>, u64)> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(reader);
        let mut record = csv::ByteRecord::new();
        let mut rejects = Vec::new();
        let mut rejected = 0u64;
        let mut reject = |rejects: &mut Vec<Reject>, row: u64, reason: String| {
            rejected += 1;
            if rejects.len() < REJECTS_KEPT_MAX {
                rejects.push(Reject { row, reason });
            }
        };
        // The header must name the columns exactly: a file of another shape is refused whole.
        let header_ok = csv
            .read_byte_record(&mut record)
            .map_err(|e| PlatformError::invalid("file", format!("not readable as CSV: {e}")))?;
        let header: Vec<String> = record
            .iter()
            .map(|c| {
                String::from_utf8_lossy(c)
                    .trim()
                    .trim_start_matches('\u{feff}')
                    .to_string()
            })
            .collect();
        if !header_ok || (header != CSV_HEADER && header != CSV_HEADER_STATUS) {
            return Err(PlatformError::invalid(
                "file",
                format!(
                    "the first line must be the header {} (optionally followed by \
                     ,assistance,student), found {:?}",
                    CSV_HEADER.join(","),
                    header.join(",")
                ),
            ));
        }
        let columns = header.len();
        let mut seen: std::collections::HashMap<BlindIndex, u64> = std::collections::HashMap::new();
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        let mut graduated = Vec::new();
        let mut rows = 0u64;
        loop {
            match csv.read_byte_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {}
                Err(e) => {
                    let line = e.position().map(|p| p.line()).unwrap_or(rows + 2);
                    match e.kind() {
                        csv::ErrorKind::Io(_) => {
                            return Err(PlatformError::Unexpected(format!("reading input: {e}")));
                        }
                        _ => {
                            rows += 1;
                            reject(&mut rejects, line, format!("not valid CSV: {e}"));
                            continue;
                        }
                    }
                }
            }
            rows += 1;
            if rows > IMPORT_ROWS_MAX {
                return Err(PlatformError::TooLarge {
                    what: "the file".into(),
                    limit: format!("{IMPORT_ROWS_MAX} rows"),
                });
            }
            let line = record.position().map(|p| p.line()).unwrap_or(rows + 1);
            if rows.is_multiple_of(4096) {
                progress(record.position().map(|p| p.byte()).unwrap_or(0));
            }
            let cells: std::result::Result<Vec<&str>, _> =
                record.iter().map(std::str::from_utf8).collect();
            let Ok(cells) = cells else {
                reject(&mut rejects, line, "not valid UTF-8".into());
                continue;
            };
            if cells.len() != columns {
                reject(
                    &mut rejects,
                    line,
                    resident::RowError::Columns(cells.len()).to_string(),
                );
                continue;
            }
            let facts = match resident::parse_row(&cells, today) {
                Ok(f) => f,
                Err(e) => {
                    reject(&mut rejects, line, e.to_string());
                    continue;
                }
            };
            let sealed = seal_facts(&vault, &facts)?;
            if let Some(first) = seen.get(&sealed.id_blind) {
                reject(
                    &mut rejects,
                    line,
                    resident::RowError::Duplicate(*first).to_string(),
                );
                continue;
            }
            seen.insert(sealed.id_blind, line);
            if facts.student == Some(resident::Student::Graduated) {
                graduated.push(sealed.id_blind);
            }
            batch.push(sealed);
            if batch.len() == IMPORT_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(IMPORT_BATCH));
                let grads = std::mem::take(&mut graduated);
                if out.blocking_send(Batch::Rows(full, grads)).is_err() {
                    return Err(PlatformError::Unexpected("import stopped".into()));
                }
            }
        }
        if !batch.is_empty() && out.blocking_send(Batch::Rows(batch, graduated)).is_err() {
            return Err(PlatformError::Unexpected("import stopped".into()));
        }
        Ok((rows, rejects, rejected))
    };
    let msg = match run() {
        Ok((rows, rejects, rejected)) => Batch::Done {
            rows,
            rejects,
            rejected,
        },
        Err(e) => Batch::Failed(e),
    };
    let _ = out.blocking_send(msg);
}

impl Platform {
    pub(crate) fn may_feed(caller: &Caller, source: Source) -> Result<()> {
        match caller.role {
            Role::Administrator => Ok(()),
            Role::DepartmentOfficer if caller.department == Some(source) => Ok(()),
            Role::DepartmentOfficer => Err(PlatformError::Forbidden(format!(
                "a {} officer may only feed data for that department, not {}",
                caller.department.map(Source::as_str).unwrap_or("?"),
                source.as_str()
            ))),
            _ => Err(PlatformError::Forbidden(
                "only administrators and department officers import feeds".into(),
            )),
        }
    }

    /// Imports a department feed (`id_number,name,phone,address,residency`, UTF-8, with the
    /// header). Valid rows are upserted batch by batch, each batch in one transaction with its
    /// history and audit entry; invalid rows are reported with their line and reason. Importing
    /// the same file again changes nothing. `progress` receives bytes read so far.
    pub async fn import_residents(
        &self,
        caller: &Caller,
        source: Source,
        channel: &str,
        digest: String,
        reader: Box<dyn Read + Send>,
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<ImportReport> {
        Self::may_feed(caller, source)?;
        let feed_id = self
            .store
            .feed_begin(
                &NewFeed {
                    source,
                    channel: channel.into(),
                    digest: digest.clone(),
                },
                caller.draft(
                    "resident.feed.begin",
                    "",
                    format!("source={} digest={digest}", source.as_str()),
                ),
                self.clock.now_ms(),
            )
            .await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let vault = self.vault.clone();
        let today = self.clock.today();
        let producer =
            tokio::task::spawn_blocking(move || produce(reader, vault, today, tx, progress));
        let mut totals = FeedTotals::default();
        let mut held = 0u64;
        let mut concessions_ended = Vec::new();
        let mut result = Err(PlatformError::Unexpected("import ended early".into()));
        let mut batch_no = 0u64;
        while let Some(msg) = rx.recv().await {
            match msg {
                Batch::Rows(rows, graduated) => {
                    batch_no += 1;
                    let counts = self
                        .store
                        .residents_apply(
                            feed_id,
                            &rows,
                            caller.draft(
                                "resident.import",
                                format!("feed:{feed_id}"),
                                format!("batch={batch_no} rows={}", rows.len()),
                            ),
                            self.clock.now_ms(),
                        )
                        .await?;
                    totals.inserted += counts.inserted;
                    totals.updated += counts.updated;
                    totals.unchanged += counts.unchanged;
                    held += counts.held;
                    concessions_ended.extend(self.graduations_applied(caller, &graduated).await?);
                }
                Batch::Done {
                    rows,
                    rejects,
                    rejected,
                } => {
                    totals.rows = rows;
                    totals.rejected = rejected;
                    result = Ok((rejects, rejected));
                }
                Batch::Failed(e) => result = Err(e),
            }
        }
        producer
            .await
            .map_err(|e| PlatformError::Unexpected(format!("import reader: {e}")))?;
        let (rejects, rejected) = match result {
            Ok(r) => r,
            Err(e) => {
                // The feed stays unfinished; the log says why. Batches already applied stay:
                // each was whole, and importing the corrected file converges.
                self.audit(caller.draft(
                    "resident.feed.failed",
                    format!("feed:{feed_id}"),
                    e.to_string(),
                ))
                .await?;
                return Err(e);
            }
        };
        self.store
            .feed_finish(feed_id, &totals, self.clock.now_ms())
            .await?;
        Ok(ImportReport {
            feed_id,
            source,
            totals,
            rejects_truncated: rejected as usize > rejects.len(),
            rejects,
            held,
            concessions_ended,
        })
    }

    fn may_read(caller: &Caller, unmask: bool) -> Result<()> {
        if caller.role == Role::ClearingOfficer {
            return Err(PlatformError::Forbidden(
                "clearing officers have no access to the resident base database".into(),
            ));
        }
        if unmask && !UNMASK_ROLES.contains(&caller.role) {
            return Err(PlatformError::Forbidden(format!(
                "the {} role sees personal data masked only",
                caller.role.as_str()
            )));
        }
        Ok(())
    }

    /// Checks the caller may read (and unmask); a refusal is itself put on the audit log.
    async fn check_read(&self, caller: &Caller, unmask: bool) -> Result<()> {
        if let Err(e) = Self::may_read(caller, unmask) {
            self.audit(caller.draft("resident.read.denied", "", e.to_string()))
                .await?;
            return Err(e);
        }
        Ok(())
    }

    fn parse_id(&self, id_number: &str) -> Result<ResidentId> {
        ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))
    }

    /// Looks a resident up by ID number. The read is audited (unmasking separately named)
    /// before anything is returned.
    pub async fn resident_by_id_number(
        &self,
        caller: &Caller,
        id_number: &str,
        unmask: bool,
    ) -> Result<ResidentView> {
        self.check_read(caller, unmask).await?;
        let id = self.parse_id(id_number)?;
        let blind = self.vault.blind("id_number", id.as_str());
        let row = self.store.resident_by_blind(&blind).await?;
        let action = if unmask {
            "resident.unmask"
        } else {
            "resident.read"
        };
        match row {
            None => {
                self.audit(caller.draft(action, "resident:none", "lookup by id_number: no match"))
                    .await?;
                Err(PlatformError::NotFound("resident".into()))
            }
            Some(row) => {
                self.audit(caller.draft(
                    action,
                    format!("resident:{}", row.id),
                    "lookup by id_number",
                ))
                .await?;
                self.view(row, unmask).await
            }
        }
    }

    /// Residents with exactly this name (names are sealed, so matching is by blind index).
    pub async fn residents_by_name(
        &self,
        caller: &Caller,
        name: &str,
        unmask: bool,
    ) -> Result<Vec<ResidentView>> {
        self.check_read(caller, unmask).await?;
        let name = name.trim();
        if name.is_empty() || name.chars().count() > resident::NAME_CHARS_MAX {
            return Err(PlatformError::invalid(
                "name",
                "give a name of 1 to 50 characters",
            ));
        }
        let mac = self.vault.blind(Field::Name.as_str(), name);
        let rows = self
            .store
            .residents_by_name(&mac, SEARCH_RESULTS_MAX)
            .await?;
        let ids: Vec<String> = rows.iter().map(|r| r.id.to_string()).collect();
        self.audit(caller.draft(
            if unmask {
                "resident.unmask"
            } else {
                "resident.read"
            },
            format!("resident:{}", ids.join(",")),
            format!("search by name: {} match(es)", rows.len()),
        ))
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.view(r, unmask).await?);
        }
        Ok(out)
    }

    /// A page of residents, masked, for browsing.
    pub async fn residents_page(
        &self,
        caller: &Caller,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<ResidentView>> {
        self.check_read(caller, false).await?;
        let rows = self
            .store
            .residents_page(after_id, limit.min(store::PAGE_MAX))
            .await?;
        self.audit(caller.draft(
            "resident.read",
            format!("residents:after:{after_id}"),
            format!("list: {} row(s)", rows.len()),
        ))
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.view(r, false).await?);
        }
        Ok(out)
    }

    /// Every change of one resident with its source, values masked unless `unmask`.
    pub async fn resident_history(
        &self,
        caller: &Caller,
        id_number: &str,
        unmask: bool,
    ) -> Result<Vec<ChangeView>> {
        self.check_read(caller, unmask).await?;
        let id = self.parse_id(id_number)?;
        let blind = self.vault.blind("id_number", id.as_str());
        let row = self
            .store
            .resident_by_blind(&blind)
            .await?
            .ok_or_else(|| PlatformError::NotFound("resident".into()))?;
        self.audit(caller.draft(
            if unmask {
                "resident.unmask"
            } else {
                "resident.read"
            },
            format!("resident:{}", row.id),
            "history",
        ))
        .await?;
        let changes = self.store.resident_history(row.id).await?;
        changes
            .into_iter()
            .map(|c| {
                let text = self
                    .vault
                    .open_string(&change_ctx(&blind), &c.values_sealed)?;
                let mut values: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| PlatformError::Unexpected(format!("history row: {e}")))?;
                if !unmask && let Some(obj) = values.as_object_mut() {
                    mask_json(obj);
                }
                Ok(ChangeView {
                    feed_id: c.feed_id,
                    source: c.source,
                    channel: c.channel,
                    fields: Field::from_mask(c.fields_mask),
                    values,
                    at_ms: c.at_ms,
                })
            })
            .collect()
    }

    pub async fn resident_count(&self) -> Result<u64> {
        Ok(self.store.resident_count().await?)
    }

    /// A resident's name and ID number, masked, for pages about something else (a card).
    pub(crate) fn resident_view_masked(&self, row: ResidentRow) -> Result<(String, String)> {
        let b = row.id_blind;
        let id = self
            .vault
            .open_string(&ctx(&b, "id_number"), &row.id_sealed)?;
        let name = row
            .name_sealed
            .as_ref()
            .map(|s| self.vault.open_string(&ctx(&b, "name"), s))
            .transpose()?
            .unwrap_or_default();
        Ok((resident::mask_name(&name), resident::mask_id_number(&id)))
    }

    async fn view(&self, row: ResidentRow, unmask: bool) -> Result<ResidentView> {
        let b = row.id_blind;
        let open = |field: &str, sealed: &Option<Vec<u8>>| -> Result<Option<String>> {
            sealed
                .as_ref()
                .map(|s| self.vault.open_string(&ctx(&b, field), s))
                .transpose()
                .map_err(PlatformError::from)
        };
        let id_number = self
            .vault
            .open_string(&ctx(&b, "id_number"), &row.id_sealed)?;
        let mut name = open("name", &row.name_sealed)?;
        let mut phone = open("phone", &row.phone_sealed)?;
        let mut address = open("address", &row.address_sealed)?;
        let mut assistance = open("assistance", &row.assistance_sealed)?;
        let mut student = open("student", &row.student_sealed)?;
        let id_number = if unmask {
            id_number
        } else {
            assistance = assistance.map(|_| "***".into());
            student = student.map(|_| "***".into());
            name = name.map(|n| resident::mask_name(&n));
            phone = phone.map(|p| resident::mask_phone(&p));
            address = address.map(|a| resident::mask_address(&a));
            resident::mask_id_number(&id_number)
        };
        // Provenance: the latest change that touched each field.
        let history = self.store.resident_history(row.id).await?;
        let mut provenance = Vec::new();
        for f in Field::ALL {
            if let Some(c) = history.iter().rev().find(|c| c.fields_mask & f.bit() != 0) {
                provenance.push(Provenance {
                    field: f,
                    source: c.source.clone(),
                    feed_id: c.feed_id,
                    at_ms: c.at_ms,
                });
            }
        }
        Ok(ResidentView {
            resident_id: row.id,
            id_number,
            name,
            phone,
            address,
            residency: row.residency,
            assistance,
            student,
            region: resident::region_name(&row.region_code).unwrap_or_default(),
            birth_date: row.birth_date,
            gender: row.gender,
            unmasked: unmask,
            provenance,
            updated_ms: row.updated_ms,
        })
    }
}

fn mask_json(obj: &mut serde_json::Map<String, serde_json::Value>) {
    for (k, v) in obj.iter_mut() {
        if let Some(s) = v.as_str() {
            let masked = match k.as_str() {
                "name" => resident::mask_name(s),
                "phone" => resident::mask_phone(s),
                "address" => resident::mask_address(s),
                "assistance" | "student" => "***".into(),
                _ => continue,
            };
            *v = serde_json::Value::String(masked);
        }
    }
}
