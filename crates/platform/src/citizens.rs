//! Citizens as callers (issue 9, item 1): sign-in with ID number, password and an SMS
//! one-time code, or through the city's identity provider (the caller verifies its ID token,
//! [`Platform::citizen_sign_in_external`] maps the ID number to a resident); setting a first (or forgotten) password with a code sent to the mobile
//! number on file; throttling and lockout; citizen sessions for the portal (cookie) and the
//! phone app (bearer token), kept apart from operators' credentials.
//!
//! A signed-in citizen acts through the same platform functions the operator APIs call, with
//! [`Citizen::caller`]: a caller that is no operator (`operator_id` is `None`), audited as
//! `citizen:{resident id}`, and that acts on cards as their holder. The functions in
//! `citizen_services.rs` fix the resident to the signed-in one, so a citizen only ever reaches
//! their own records.

use crate::{Caller, Platform, PlatformError, Result};
use notices::Notice;
use sm3::{Digest, Sm3};
use std::collections::HashMap;
use std::sync::Mutex;
use store::Role;
use store::citizens::*;

/// Audit actors and callers of citizens start with this.
pub const CITIZEN_PREFIX: &str = "citizen:";
pub const PASSWORD_CHARS_MIN: usize = 8;
pub const PASSWORD_CHARS_MAX: usize = 128;
/// A one-time code lives this long.
pub const CODE_TTL_MS: i64 = 5 * 60 * 1000;
pub const CODE_DIGITS: usize = 6;
/// Codes sent to one resident per hour, at most.
pub const CODES_PER_HOUR_MAX: i64 = 5;
/// Wrong passwords per ID number within the window before the account is locked for it.
pub const PASSWORD_FAILURES_MAX: u32 = 5;
/// Failed sign-ins from one address within the window before it is refused for it.
pub const ORIGIN_FAILURES_MAX: u32 = 30;
pub const LOCK_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Portal sessions (cookie) and app sessions (bearer token).
pub const PORTAL_SESSION_TTL_MS: i64 = 2 * 3600 * 1000;
pub const APP_SESSION_TTL_MS: i64 = 30 * 86_400_000;
/// Keys the throttle tracks at once; beyond it, expired entries are dropped, then all.
pub const THROTTLE_TRACKED_MAX: usize = 100_000;
/// Portal e-code devices kept in memory at once.
pub const PORTAL_PHONES_MAX: usize = 100_000;

/// Why a sign-in step was refused, in Chinese and English; `code` is stable for clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub zh: String,
    pub en: String,
    /// Throttled or locked (HTTP 429) rather than a wrong credential (401).
    pub locked: bool,
}

fn refused(code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> PlatformError {
    PlatformError::SignInRefused(Refusal {
        code,
        zh: zh.into(),
        en: en.into(),
        locked: false,
    })
}

fn locked(code: &'static str, minutes: i64, zh: &str, en: &str) -> PlatformError {
    PlatformError::SignInRefused(Refusal {
        code,
        zh: format!("{zh}，请 {minutes} 分钟后再试"),
        en: format!("{en}; try again in {minutes} minute(s)"),
        locked: true,
    })
}

/// A signed-in citizen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citizen {
    pub resident_id: i64,
    /// `portal` or `app`.
    pub kind: String,
    pub origin: String,
}

impl Citizen {
    /// The caller the citizen acts as: no operator, audited as `citizen:{id}`. The role only
    /// opens the platform functions a counter would call for the citizen; the citizen
    /// functions fix every record to this resident.
    pub fn caller(&self) -> Caller {
        Caller {
            operator_id: None,
            username: format!("{CITIZEN_PREFIX}{}", self.resident_id),
            role: Role::CounterClerk,
            department: None,
            origin: self.origin.clone(),
        }
    }
}

impl Caller {
    /// The resident, when the caller is a signed-in citizen.
    pub fn citizen_id(&self) -> Option<i64> {
        if self.operator_id.is_some() {
            return None;
        }
        self.username.strip_prefix(CITIZEN_PREFIX)?.parse().ok()
    }
}

/// Failures per key (an ID number's digest, an address) in a sliding window.
#[derive(Debug, Default)]
struct Throttle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl Throttle {
    /// Minutes left when `key` has `max` failures within the window.
    fn blocked(&self, key: &str, max: u32, now_ms: i64) -> Option<i64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((n, first)) if *n >= max && now_ms - first < LOCK_WINDOW_MS => {
                Some((LOCK_WINDOW_MS - (now_ms - first)) / 60_000 + 1)
            }
            _ => None,
        }
    }

    /// Counts a failure; returns the failures in the window.
    fn fail(&self, key: &str, now_ms: i64) -> u32 {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= THROTTLE_TRACKED_MAX {
            map.retain(|_, (_, first)| now_ms - *first < LOCK_WINDOW_MS);
            if map.len() >= THROTTLE_TRACKED_MAX {
                map.clear();
            }
        }
        let e = map.entry(key.to_string()).or_insert((0, now_ms));
        if now_ms - e.1 >= LOCK_WINDOW_MS {
            *e = (0, now_ms);
        }
        e.0 += 1;
        e.0
    }

    fn clear(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

/// The process's citizen state: the sign-in throttle and the portal's e-code phones.
#[derive(Default)]
pub struct CitizenState {
    throttle: Throttle,
    /// The portal's own e-code device per card, with its installed certificate.
    pub(crate) portal_phones: tokio::sync::Mutex<HashMap<String, ecode::Phone>>,
}

/// A code sent: the challenge the client answers with the code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChallengeView {
    /// Opaque; sent back with the code.
    pub challenge: String,
    pub expires_ms: i64,
    /// Where the code went, masked (`138****5678`), when known.
    pub phone_masked: Option<String>,
}

fn sm3(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sm3::new();
    for p in parts {
        h.update((p.len() as u32).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| PlatformError::Unexpected("random source".into()))?;
    Ok(b)
}

fn new_code() -> Result<String> {
    // Rejection sampling keeps the six digits uniform.
    loop {
        let n = u32::from_be_bytes(random_bytes::<4>()?);
        if n < 4_294_000_000 {
            return Ok(format!("{:06}", n % 1_000_000));
        }
    }
}

fn id_key(id_number: &str) -> String {
    format!(
        "id:{}",
        hex::encode(
            &sm3(&[
                b"citizen-id",
                id_number.trim().to_ascii_uppercase().as_bytes()
            ])[..8]
        )
    )
}

fn check_password(p: &str) -> Result<()> {
    let n = p.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&n) {
        return Err(PlatformError::invalid(
            "password",
            format!("{PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"),
        ));
    }
    Ok(())
}

const PURPOSE_SIGN_IN: &str = "sign_in";
const PURPOSE_SET_PASSWORD: &str = "set_password";

impl Platform {
    fn origin_blocked(&self, origin: &str, now: i64) -> Result<()> {
        if let Some(m) =
            self.citizens
                .throttle
                .blocked(&format!("ip:{origin}"), ORIGIN_FAILURES_MAX, now)
        {
            return Err(locked(
                "rate_limited",
                m,
                "来自此地址的失败尝试过多",
                "Too many failed attempts from this address",
            ));
        }
        Ok(())
    }

    async fn resident_of(&self, id_number: &str) -> Result<Option<store::ResidentRow>> {
        let Ok(id) = resident::ResidentId::parse(id_number.trim(), self.clock.today()) else {
            return Ok(None);
        };
        Ok(self
            .store
            .resident_by_blind(&self.vault.blind("id_number", id.as_str()))
            .await?)
    }

    /// Creates a challenge and sends its code to the resident's mobile (SMS through the
    /// outbox, delivered at once when a gateway is attached) and to the portal's messages.
    async fn send_code(&self, resident_id: i64, purpose: &str) -> Result<ChallengeView> {
        let now = self.clock.now_ms();
        let sent = self
            .store
            .citizen_challenges_since(resident_id, now - 3_600_000)
            .await?;
        if sent >= CODES_PER_HOUR_MAX {
            return Err(locked(
                "codes_exhausted",
                60,
                "一小时内发送验证码次数过多",
                "Too many codes were sent within the hour",
            ));
        }
        let challenge = hex::encode(random_bytes::<16>()?);
        let code = new_code()?;
        let id_hash = sm3(&[b"challenge", challenge.as_bytes()]);
        let expires_ms = now + CODE_TTL_MS;
        self.store
            .citizen_challenge_create(
                &NewChallenge {
                    id_hash,
                    resident_id,
                    purpose: purpose.into(),
                    code_hash: sm3(&[b"code", challenge.as_bytes(), code.as_bytes()]),
                    expires_ms,
                },
                now,
            )
            .await?;
        let system = Caller::cli("citizen-sign-in");
        self.notify_residents(
            &system,
            &[crate::notifications::NoticeItem {
                key: format!("otp:{challenge}"),
                resident_id,
                notice: Notice::OneTimeCode { code },
            }],
        )
        .await?;
        let prefs = self.store.notify_prefs(resident_id).await?;
        let phone = self.notice_phone(resident_id, prefs.as_ref()).await?.0;
        // Deliver now rather than at the worker's next turn: the citizen is waiting.
        if let Err(e) = self.deliver_notifications(&system, 100).await {
            tracing::warn!(error = %e, "one-time code not delivered at once; the worker retries");
        }
        Ok(ChallengeView {
            challenge,
            expires_ms,
            phone_masked: phone.map(|p| p.masked()),
        })
    }

    /// Step one of sign-in: ID number and password. A right password sends a one-time code;
    /// a wrong one (or an unknown ID number, or one without a password) gets the same answer
    /// in the same time. Five failures lock the ID number for 15 minutes.
    pub async fn citizen_sign_in_start(
        &self,
        id_number: &str,
        password: &str,
        origin: &str,
    ) -> Result<ChallengeView> {
        let now = self.clock.now_ms();
        self.origin_blocked(origin, now)?;
        let key = id_key(id_number);
        if let Some(m) = self
            .citizens
            .throttle
            .blocked(&key, PASSWORD_FAILURES_MAX, now)
        {
            self.audit(audit::Draft::new(
                "anonymous:citizen",
                "citizen.sign_in.locked",
                format!("citizen:{key}"),
                origin,
                "",
            ))
            .await?;
            return Err(locked(
                "locked",
                m,
                "密码错误次数过多，账户已锁定",
                "Too many wrong passwords: this account is locked",
            ));
        }
        let row = self.resident_of(id_number).await?;
        let hash = match &row {
            Some(r) => self.store.citizen_password(r.id).await?,
            None => None,
        };
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(crate::operators::dummy_hash);
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || crate::operators::verify_password(&hash, &pw))
            .await
            .unwrap_or(false)
            && known
            && password.chars().count() <= PASSWORD_CHARS_MAX;
        let Some(row) = row.filter(|_| ok) else {
            let n = self.citizens.throttle.fail(&key, now);
            self.citizens.throttle.fail(&format!("ip:{origin}"), now);
            self.audit(audit::Draft::new(
                "anonymous:citizen",
                "citizen.sign_in.fail",
                format!("citizen:{key}"),
                origin,
                "",
            ))
            .await?;
            let left = PASSWORD_FAILURES_MAX.saturating_sub(n);
            return Err(refused(
                "bad_credentials",
                format!(
                    "身份证号或密码错误（还可尝试 {left} 次）。尚未设置密码的，请用手机验证码设置密码"
                ),
                format!(
                    "Wrong ID number or password ({left} attempt(s) left). No password yet? \
                     Set one with a code sent to your phone"
                ),
            ));
        };
        self.citizens.throttle.clear(&key);
        let prefs = self.store.notify_prefs(row.id).await?;
        if self.notice_phone(row.id, prefs.as_ref()).await?.0.is_none() {
            return Err(no_phone());
        }
        self.send_code(row.id, PURPOSE_SIGN_IN).await
    }

    /// Checks a code against its challenge and uses it up: unknown, used, expired and
    /// exhausted challenges are refused, each with its own message.
    async fn use_code(&self, challenge: &str, code: &str, purpose: &str) -> Result<i64> {
        let now = self.clock.now_ms();
        if challenge.len() != 32 || code.len() > 16 {
            return Err(refused(
                "code_unknown",
                "验证码无效，请重新获取",
                "This code is not valid; ask for a new one",
            ));
        }
        let id_hash = sm3(&[b"challenge", challenge.as_bytes()]);
        let row = self
            .store
            .citizen_challenge(&id_hash)
            .await?
            .filter(|r| r.purpose == purpose)
            .ok_or_else(|| {
                refused(
                    "code_unknown",
                    "验证码无效，请重新获取",
                    "This code is not valid; ask for a new one",
                )
            })?;
        if row.used_ms.is_some() {
            return Err(refused(
                "code_used",
                "验证码已使用过，请重新获取",
                "This code was already used; ask for a new one",
            ));
        }
        if now >= row.expires_ms {
            return Err(refused(
                "code_expired",
                "验证码已过期，请重新获取",
                "This code has expired; ask for a new one",
            ));
        }
        if row.attempts >= CHALLENGE_ATTEMPTS_MAX {
            return Err(refused(
                "code_exhausted",
                "验证码输错次数过多，请重新获取",
                "Too many wrong codes; ask for a new one",
            ));
        }
        let given = sm3(&[b"code", challenge.as_bytes(), code.trim().as_bytes()]);
        if given != row.code_hash {
            let n = self.store.citizen_challenge_fail(&id_hash).await?;
            let left = CHALLENGE_ATTEMPTS_MAX.saturating_sub(n);
            return Err(refused(
                "code_wrong",
                format!("验证码错误（还可尝试 {left} 次）"),
                format!("Wrong code ({left} attempt(s) left)"),
            ));
        }
        if !self.store.citizen_challenge_use(&id_hash, now).await? {
            return Err(refused(
                "code_used",
                "验证码已使用过，请重新获取",
                "This code was already used; ask for a new one",
            ));
        }
        Ok(row.resident_id)
    }

    /// Step two: the code from the SMS. Returns a session token for the portal (`portal`,
    /// set as a cookie) or the app (`app`, a bearer token).
    pub async fn citizen_sign_in_finish(
        &self,
        challenge: &str,
        code: &str,
        kind: &str,
        origin: &str,
    ) -> Result<(String, Citizen)> {
        let now = self.clock.now_ms();
        self.origin_blocked(origin, now)?;
        let ttl = match kind {
            "portal" => PORTAL_SESSION_TTL_MS,
            "app" => APP_SESSION_TTL_MS,
            _ => return Err(PlatformError::invalid("kind", "portal or app")),
        };
        let resident_id = match self.use_code(challenge, code, PURPOSE_SIGN_IN).await {
            Ok(r) => r,
            Err(e) => {
                self.citizens.throttle.fail(&format!("ip:{origin}"), now);
                return Err(e);
            }
        };
        self.citizen_session_open(resident_id, kind, ttl, kind, origin)
            .await
    }

    /// Opens a citizen session of `kind` for `ttl_ms` (every sign-in path ends here): a fresh
    /// token, stored as its SM3 hash with a `citizen.sign_in` audit entry whose detail is
    /// `detail` (the kind, and how the citizen proved who they are).
    async fn citizen_session_open(
        &self,
        resident_id: i64,
        kind: &str,
        ttl_ms: i64,
        detail: &str,
        origin: &str,
    ) -> Result<(String, Citizen)> {
        let now = self.clock.now_ms();
        let token = format!(
            "{}_{}",
            if kind == "app" { "ca" } else { "cp" },
            hex::encode(random_bytes::<32>()?)
        );
        let citizen = Citizen {
            resident_id,
            kind: kind.into(),
            origin: origin.into(),
        };
        self.store
            .citizen_session_create(
                &sm3(&[b"session", token.as_bytes()]),
                &CitizenSessionRow {
                    resident_id,
                    kind: kind.into(),
                    expires_ms: now + ttl_ms,
                },
                citizen.caller().draft(
                    "citizen.sign_in",
                    format!("resident:{resident_id}"),
                    detail,
                ),
                now,
            )
            .await?;
        Ok((token, citizen))
    }

    /// Sign-in through the city's identity provider: the caller (the server, through
    /// `idp-link`) has verified the provider's ID token; this maps the ID number it carries
    /// to a resident and opens the same session the password and code open. An ID number
    /// the resident base database does not hold is refused (`unknown_resident`) and counted
    /// against the address like a failed sign-in. `provider` names the provider in the audit
    /// entry (`portal oidc:{provider}`).
    pub async fn citizen_sign_in_external(
        &self,
        id_number: &str,
        provider: &str,
        kind: &str,
        origin: &str,
    ) -> Result<(String, Citizen)> {
        let now = self.clock.now_ms();
        self.origin_blocked(origin, now)?;
        let ttl = match kind {
            "portal" => PORTAL_SESSION_TTL_MS,
            "app" => APP_SESSION_TTL_MS,
            _ => return Err(PlatformError::invalid("kind", "portal or app")),
        };
        let Some(row) = self.resident_of(id_number).await? else {
            self.citizens.throttle.fail(&format!("ip:{origin}"), now);
            self.audit(audit::Draft::new(
                "anonymous:citizen",
                "citizen.sign_in.fail",
                format!("citizen:{}", id_key(id_number)),
                origin,
                format!("oidc:{provider}"),
            ))
            .await?;
            return Err(refused(
                "unknown_resident",
                "城市统一身份认证的账户没有对应的本市居民记录，请携带身份证到服务网点核实",
                "The city account's ID number matches no resident on record: please visit a \
                 service outlet with your ID card",
            ));
        };
        self.citizen_session_open(
            row.id,
            kind,
            ttl,
            &format!("{kind} oidc:{provider}"),
            origin,
        )
        .await
    }

    /// Setting a first (or forgotten) password, step one: a code to the mobile number on
    /// file (the notice phone, else the resident record's). Answers alike for unknown ID
    /// numbers (a challenge nobody can answer), so the form does not tell who is registered.
    pub async fn citizen_password_start(
        &self,
        id_number: &str,
        origin: &str,
    ) -> Result<ChallengeView> {
        let now = self.clock.now_ms();
        self.origin_blocked(origin, now)?;
        let Some(row) = self.resident_of(id_number).await? else {
            self.citizens.throttle.fail(&format!("ip:{origin}"), now);
            return Ok(ChallengeView {
                challenge: hex::encode(random_bytes::<16>()?),
                expires_ms: now + CODE_TTL_MS,
                phone_masked: None,
            });
        };
        let prefs = self.store.notify_prefs(row.id).await?;
        if self.notice_phone(row.id, prefs.as_ref()).await?.0.is_none() {
            return Err(no_phone());
        }
        self.send_code(row.id, PURPOSE_SET_PASSWORD).await
    }

    /// Step two: the code and the new password. Clears a lockout of the ID number.
    pub async fn citizen_password_finish(
        &self,
        challenge: &str,
        code: &str,
        new_password: &str,
        origin: &str,
    ) -> Result<()> {
        check_password(new_password)?;
        let now = self.clock.now_ms();
        self.origin_blocked(origin, now)?;
        let resident_id = match self.use_code(challenge, code, PURPOSE_SET_PASSWORD).await {
            Ok(r) => r,
            Err(e) => {
                self.citizens.throttle.fail(&format!("ip:{origin}"), now);
                return Err(e);
            }
        };
        let hash = crate::operators::hash_password(new_password)?;
        let citizen = Citizen {
            resident_id,
            kind: "portal".into(),
            origin: origin.into(),
        };
        self.store
            .citizen_password_set(
                resident_id,
                &hash,
                citizen.caller().draft(
                    "citizen.password.set",
                    format!("resident:{resident_id}"),
                    "",
                ),
                now,
            )
            .await?;
        if let Some(row) = self.store.resident_by_id(resident_id).await? {
            let id = self.vault.open_string(
                &crate::residents::ctx(&row.id_blind, "id_number"),
                &row.id_sealed,
            )?;
            self.citizens.throttle.clear(&id_key(&id));
        }
        Ok(())
    }

    /// The citizen behind a session token of `kind`.
    pub async fn citizen_authenticate(
        &self,
        token: &str,
        kind: &str,
        origin: &str,
    ) -> Result<Citizen> {
        if token.len() > 128 {
            return Err(PlatformError::Unauthenticated);
        }
        let s = self
            .store
            .citizen_session(&sm3(&[b"session", token.as_bytes()]), self.clock.now_ms())
            .await?
            .filter(|s| s.kind == kind)
            .ok_or(PlatformError::Unauthenticated)?;
        Ok(Citizen {
            resident_id: s.resident_id,
            kind: s.kind,
            origin: origin.into(),
        })
    }

    pub async fn citizen_sign_out(&self, citizen: &Citizen, token: &str) -> Result<()> {
        self.store
            .citizen_session_revoke(&sm3(&[b"session", token.as_bytes()]), self.clock.now_ms())
            .await?;
        self.audit(citizen.caller().draft(
            "citizen.sign_out",
            format!("resident:{}", citizen.resident_id),
            citizen.kind.clone(),
        ))
        .await?;
        Ok(())
    }

    /// Sets a citizen's password directly (the command line, for a counter that checked the
    /// citizen's ID card in person; audited).
    pub async fn citizen_password_set_by(
        &self,
        caller: &Caller,
        id_number: &str,
        password: &str,
    ) -> Result<()> {
        if !matches!(caller.role, Role::Administrator | Role::CounterClerk)
            || caller.citizen_id().is_some()
        {
            return Err(PlatformError::Forbidden(
                "only a counter sets a citizen's password".into(),
            ));
        }
        check_password(password)?;
        let resident_id = self.resident_id_of(id_number).await?;
        let hash = crate::operators::hash_password(password)?;
        self.store
            .citizen_password_set(
                resident_id,
                &hash,
                caller.draft(
                    "citizen.password.set",
                    format!("resident:{resident_id}"),
                    "counter",
                ),
                self.clock.now_ms(),
            )
            .await?;
        self.citizens.throttle.clear(&id_key(id_number));
        Ok(())
    }
}

fn no_phone() -> PlatformError {
    refused(
        "no_phone",
        "没有可接收短信的手机号码，请携带身份证到服务网点办理",
        "There is no mobile number on file to send a code to: please visit a service outlet \
         with your ID card",
    )
}
