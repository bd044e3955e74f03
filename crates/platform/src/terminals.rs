//! The terminal network (issue 6, items 1–3): merchants and transit operators, terminals
//! registered for them with a one-time activation code, activation with the terminal's SM2
//! key, every later request authenticated by its signature (`terminals` crate: canonical
//! form, clock window, replay cache), and the parameters a terminal downloads.

use std::sync::Mutex;

use crate::{Caller, Platform, PlatformError, Result};
use store::{MerchantRow, Role, StoreError, TerminalRow};
use terminals::{AuthError, ReplayCache, RequestParts};

/// Terminal kinds of the network.
pub const KINDS: [&str; 6] = ["validator", "gate", "pos", "kiosk", "desk", "door"];
/// Merchant categories (the fee schedule's and clearing's categories).
pub const CATEGORIES: [&str; 9] = [
    "transit",
    "canteen",
    "shop",
    "hospital",
    "library",
    "utility",
    "taxi",
    "bike",
    "government",
];

/// The replay cache of terminal nonces, one per process.
#[derive(Default)]
pub struct TerminalAuth {
    replay: Mutex<ReplayCache>,
}

/// Who a signed request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalCaller {
    pub terminal: String,
    pub merchant: String,
    pub kind: String,
}

/// A registration: the terminal and its activation code, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub terminal: TerminalRow,
    pub activation_code: String,
}

/// What a terminal downloads: versioned parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Parameters {
    /// Changes whenever any part changes.
    pub version: String,
    pub server_time_s: i64,
    pub deny_list_version: i64,
    pub fares: fares::FareRules,
    pub merchant: String,
}

fn admin_only(caller: &Caller, what: &str) -> Result<()> {
    if caller.role == Role::Administrator {
        Ok(())
    } else {
        Err(PlatformError::Forbidden(format!(
            "only administrators {what}"
        )))
    }
}

fn conflict(e: StoreError) -> PlatformError {
    match e {
        StoreError::Conflict(m) => PlatformError::Conflict(format!("{m} already exists")),
        e => e.into(),
    }
}

fn code_ok(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 32
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

impl Platform {
    pub async fn merchant_create(
        &self,
        caller: &Caller,
        code: &str,
        name: &str,
        category: &str,
        settlement_account: &str,
    ) -> Result<MerchantRow> {
        admin_only(caller, "register merchants")?;
        if !code_ok(code) {
            return Err(PlatformError::invalid(
                "code",
                "1 to 32 characters a-z 0-9 - _",
            ));
        }
        if !CATEGORIES.contains(&category) {
            return Err(PlatformError::invalid(
                "category",
                format!("one of {}", CATEGORIES.join(", ")),
            ));
        }
        let (name, account) = (name.trim(), settlement_account.trim());
        if name.is_empty() || name.chars().count() > 100 || account.is_empty() || account.len() > 34
        {
            return Err(PlatformError::invalid(
                "name",
                "a name of 1 to 100 characters and a settlement account of 1 to 34",
            ));
        }
        let m = MerchantRow {
            code: code.into(),
            name: name.into(),
            category: category.into(),
            settlement_account: account.into(),
            created_ms: self.clock.now_ms(),
        };
        self.store
            .merchant_insert(
                &m,
                caller.draft("merchant.create", format!("merchant:{code}"), category),
                m.created_ms,
            )
            .await
            .map_err(conflict)?;
        Ok(m)
    }

    pub async fn merchants(&self) -> Result<Vec<MerchantRow>> {
        Ok(self.store.merchants().await?)
    }

    /// Registers a terminal for a merchant; the answer holds the activation code, shown once.
    pub async fn terminal_register(
        &self,
        caller: &Caller,
        id: &str,
        merchant: &str,
        kind: &str,
        site: &str,
        psam_serial: Option<&str>,
    ) -> Result<Registered> {
        admin_only(caller, "register terminals")?;
        terminals::check_terminal_id(id)
            .map_err(|e| PlatformError::invalid("id", e.to_string()))?;
        if !KINDS.contains(&kind) {
            return Err(PlatformError::invalid(
                "kind",
                format!("one of {}", KINDS.join(", ")),
            ));
        }
        let site = site.trim();
        if site.is_empty() || site.chars().count() > 64 {
            return Err(PlatformError::invalid("site", "1 to 64 characters"));
        }
        let mut random = [0u8; 10];
        getrandom::fill(&mut random).map_err(|_| {
            PlatformError::Unexpected("no randomness for the activation code".into())
        })?;
        let code = terminals::activation_code(&random);
        let now = self.clock.now_ms();
        let t = TerminalRow {
            id: id.into(),
            merchant: merchant.into(),
            kind: kind.into(),
            site: site.into(),
            status: "registered".into(),
            activation_digest: Some(terminals::activation_digest(id, &code)),
            public_key: None,
            psam_serial: psam_serial.map(str::to_string),
            software_version: None,
            registered_ms: now,
            activated_ms: None,
        };
        self.store
            .terminal_insert(
                &t,
                caller.draft(
                    "terminal.register",
                    format!("terminal:{id}"),
                    format!("merchant {merchant}, {kind} at {site}"),
                ),
                now,
            )
            .await
            .map_err(conflict)?;
        Ok(Registered {
            terminal: t,
            activation_code: code,
        })
    }

    pub async fn terminals(&self, merchant: Option<&str>) -> Result<Vec<TerminalRow>> {
        Ok(self.store.terminals_of(merchant).await?)
    }

    /// The terminal's first call: its activation code and its new SM2 public key. The code is
    /// spent; a wrong or spent code changes nothing.
    pub async fn terminal_activate(
        &self,
        id: &str,
        code: &str,
        public_key: &[u8],
        software_version: &str,
        origin: &str,
    ) -> Result<TerminalRow> {
        terminals::check_terminal_id(id)
            .map_err(|e| PlatformError::invalid("id", e.to_string()))?;
        crypto::Sm2PublicKey::from_sec1(public_key)
            .map_err(|e| PlatformError::invalid("public_key", e.to_string()))?;
        let version = software_version.trim();
        if version.is_empty() || version.len() > 32 {
            return Err(PlatformError::invalid(
                "software_version",
                "1 to 32 characters",
            ));
        }
        let system = Caller::cli(origin);
        self.store
            .terminal_activate(
                id,
                &terminals::activation_digest(id, code),
                public_key,
                version,
                system.draft(
                    "terminal.activate",
                    format!("terminal:{id}"),
                    format!("software {version}"),
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict(_) => PlatformError::Forbidden(format!(
                    "terminal {id}: unknown, already active, or a wrong activation code"
                )),
                e => e.into(),
            })
    }

    /// Authenticates a signed terminal request: an active terminal, the clock window, its
    /// signature, a nonce never seen in the window.
    pub async fn terminal_authenticate(
        &self,
        parts: &RequestParts<'_>,
        signature_hex: &str,
    ) -> Result<TerminalCaller> {
        let refuse = |e: AuthError| PlatformError::TerminalRefused(format!("terminal: {e}"));
        terminals::check_terminal_id(parts.terminal_id).map_err(refuse)?;
        let t = self
            .store
            .terminal(parts.terminal_id)
            .await?
            .filter(|t| t.status == "active")
            .ok_or_else(|| {
                PlatformError::TerminalRefused(format!(
                    "terminal {} is not an active terminal",
                    parts.terminal_id
                ))
            })?;
        let key = t
            .public_key
            .as_deref()
            .map(crypto::Sm2PublicKey::from_sec1)
            .transpose()
            .map_err(|e| PlatformError::Unexpected(format!("stored terminal key: {e}")))?
            .ok_or_else(|| PlatformError::Unexpected("an active terminal without a key".into()))?;
        let now_s = self.clock.now_ms().div_euclid(1000);
        terminals::verify(&key, parts, signature_hex, now_s).map_err(refuse)?;
        self.terminal_auth
            .replay
            .lock()
            .expect("replay cache lock")
            .check_and_insert(parts.terminal_id, parts.nonce, parts.time_s, now_s)
            .map_err(refuse)?;
        Ok(TerminalCaller {
            terminal: t.id,
            merchant: t.merchant,
            kind: t.kind,
        })
    }

    /// The parameters a terminal downloads (fares, deny-list version, clock); `version` lets it
    /// ask "what changed since".
    pub async fn terminal_parameters(&self, t: &TerminalCaller) -> Result<Parameters> {
        let fares = fares::default_rules();
        let deny = self.store.deny_list_version().await?;
        let fares_json =
            serde_json::to_vec(&fares).map_err(|e| PlatformError::Unexpected(e.to_string()))?;
        let version = {
            use sm3::Digest;
            let mut h = sm3::Sm3::new();
            h.update(&fares_json);
            h.update(deny.to_be_bytes());
            hex::encode_upper(&h.finalize()[..8])
        };
        Ok(Parameters {
            version,
            server_time_s: self.clock.now_ms().div_euclid(1000),
            deny_list_version: deny,
            fares,
            merchant: t.merchant.clone(),
        })
    }

    /// Ingests an upload from an authenticated terminal: its merchant's payable account is
    /// credited; the audit names the terminal. Per record, the same answers as
    /// [`Platform::ingest_purchases`] (a re-sent upload answers `duplicate` for every record it
    /// already posted, so a broken connection is resumed by sending the same upload again).
    pub async fn terminal_upload(
        &self,
        t: &TerminalCaller,
        records: Vec<chip::host::RawUpload>,
    ) -> Result<Vec<crate::purchases::PurchaseResult>> {
        let acting = Caller {
            operator_id: None,
            username: format!("terminal:{}", t.terminal),
            role: Role::ClearingOfficer,
            department: None,
            origin: format!("terminal:{}", t.terminal),
        };
        self.ingest_purchases(&acting, &t.merchant, records).await
    }
}
