//! Operators: accounts with argon2id password hashes, console sessions and API tokens (stored
//! only as SM3 hashes of their secrets), sign-in with throttling, and turning a presented token
//! into a [`Caller`].

use crate::{Caller, Platform, PlatformError, Result};
use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use resident::Source;
use sm3::{Digest, Sm3};
use std::collections::HashMap;
use std::sync::Mutex;
use store::{CredentialKind, NewCredential, NewOperator, OperatorRow, Role};

pub const SESSION_TTL_MS: i64 = 8 * 3600 * 1000;
pub const API_TOKEN_TTL_DAYS_MAX: u32 = 366;
pub const PASSWORD_CHARS_MIN: usize = 10;
pub const PASSWORD_CHARS_MAX: usize = 128;
/// Failed sign-ins within the window before an account is locked for the window.
pub const SIGN_IN_FAILURES_MAX: u32 = 5;
pub const SIGN_IN_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Accounts tracked by the throttle at once; the oldest entries are dropped beyond it.
pub const THROTTLE_TRACKED_MAX: usize = 100_000;
/// How long a checked credential is trusted without asking the store again. A revocation in
/// this process takes effect at once; one made by another process within this time.
pub const CREDENTIAL_CACHE_TTL_MS: i64 = 5_000;
pub const CREDENTIAL_CACHE_MAX: usize = 10_000;

/// Recently checked credentials, by the hash of their secret.
#[derive(Debug, Default)]
pub struct CredentialCache {
    /// Caller, kind, and until when the entry may be used (the earlier of the cache time
    /// limit and the credential's own expiry).
    entries: Mutex<HashMap<[u8; 32], (Caller, CredentialKind, i64)>>,
}

impl CredentialCache {
    fn get(&self, hash: &[u8; 32], now_ms: i64) -> Option<(Caller, CredentialKind)> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(hash) {
            Some((c, k, until)) if now_ms < *until => Some((c.clone(), *k)),
            _ => None,
        }
    }

    fn put(&self, hash: [u8; 32], caller: &Caller, kind: CredentialKind, until_ms: i64) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CREDENTIAL_CACHE_MAX {
            map.clear();
        }
        map.insert(hash, (caller.clone(), kind, until_ms));
    }

    fn forget(&self, hash: &[u8; 32]) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(hash);
    }
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    failures: Mutex<HashMap<String, (u32, i64)>>,
}

impl LoginThrottle {
    fn check(&self, username: &str, now_ms: i64) -> Result<()> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((n, first)) = map.get(username)
            && *n >= SIGN_IN_FAILURES_MAX
            && now_ms - first < SIGN_IN_WINDOW_MS
        {
            let minutes = (SIGN_IN_WINDOW_MS - (now_ms - first)) / 60_000 + 1;
            return Err(PlatformError::Locked(format!(
                "too many failed sign-ins for this account; try again in {minutes} minute(s)"
            )));
        }
        Ok(())
    }

    fn fail(&self, username: &str, now_ms: i64) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= THROTTLE_TRACKED_MAX {
            map.retain(|_, (_, first)| now_ms - *first < SIGN_IN_WINDOW_MS);
            if map.len() >= THROTTLE_TRACKED_MAX {
                map.clear();
            }
        }
        let e = map.entry(username.to_string()).or_insert((0, now_ms));
        if now_ms - e.1 >= SIGN_IN_WINDOW_MS {
            *e = (0, now_ms);
        }
        e.0 += 1;
    }

    fn succeed(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(username);
    }
}

pub fn hash_password(password: &str) -> Result<String> {
    let hash: PasswordHash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| PlatformError::Unexpected(format!("password hash: {e}")))?;
    Ok(hash.to_string())
}

/// A real hash of a password nobody has, verified against when the user is unknown.
pub(crate) fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password("no operator has this password").unwrap_or_default())
        .clone()
}

pub(crate) fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn token_hash(token: &str) -> [u8; 32] {
    Sm3::digest(token.as_bytes()).into()
}

fn new_token(prefix: &str) -> Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| PlatformError::Unexpected("random source".into()))?;
    Ok(format!("{prefix}_{}", hex::encode(b)))
}

/// What an administrator asks for when creating an operator.
#[derive(Debug, Clone)]
pub struct OperatorRequest {
    pub username: String,
    pub display_name: String,
    pub password: String,
    pub role: Role,
    pub department: Option<Source>,
}

fn validate(req: &OperatorRequest) -> Result<()> {
    let u = &req.username;
    if !(3..=32).contains(&u.len())
        || !u
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return Err(PlatformError::invalid(
            "username",
            "3 to 32 characters: lower-case letters, digits, '.', '_' or '-'",
        ));
    }
    let n = req.password.chars().count();
    if !(PASSWORD_CHARS_MIN..=PASSWORD_CHARS_MAX).contains(&n) {
        return Err(PlatformError::invalid(
            "password",
            format!("{PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} characters"),
        ));
    }
    if req.display_name.trim().is_empty() || req.display_name.chars().count() > 64 {
        return Err(PlatformError::invalid("display_name", "1 to 64 characters"));
    }
    match (req.role, req.department) {
        (Role::DepartmentOfficer, None) => Err(PlatformError::invalid(
            "department",
            "a department officer belongs to exactly one department",
        )),
        (Role::DepartmentOfficer, Some(_)) => Ok(()),
        (_, Some(_)) => Err(PlatformError::invalid(
            "department",
            "only department officers have a department",
        )),
        (_, None) => Ok(()),
    }
}

fn caller_of(op: &OperatorRow, origin: &str) -> Caller {
    Caller {
        operator_id: Some(op.id),
        username: op.username.clone(),
        role: op.role,
        department: op.department,
        origin: origin.into(),
    }
}

impl Platform {
    pub async fn create_operator(
        &self,
        caller: &Caller,
        req: OperatorRequest,
    ) -> Result<OperatorRow> {
        if caller.role != Role::Administrator {
            return Err(PlatformError::Forbidden(
                "only administrators create operators".into(),
            ));
        }
        validate(&req)?;
        let password_hash = hash_password(&req.password)?;
        let op = NewOperator {
            username: req.username.clone(),
            display_name: req.display_name.trim().to_string(),
            password_hash,
            role: req.role,
            department: req.department,
        };
        let detail = format!(
            "role={} department={}",
            req.role.as_str(),
            req.department.map(Source::as_str).unwrap_or("-")
        );
        self.store
            .operator_create(
                &op,
                caller.draft(
                    "operator.create",
                    format!("operator:{}", req.username),
                    detail,
                ),
                self.clock.now_ms(),
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(_) => {
                    PlatformError::Conflict(format!("operator {} already exists", req.username))
                }
                e => e.into(),
            })
    }

    /// The caller as the active operator `username` (for the command line, which is trusted
    /// with the data directory and acts in a named operator's place; audited under that name).
    pub async fn operator_caller(&self, username: &str, origin: &str) -> Result<Caller> {
        let op = self
            .store
            .operator_by_username(username)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("operator {username}")))?;
        if op.disabled {
            return Err(PlatformError::Forbidden(format!("{username} is disabled")));
        }
        Ok(Caller {
            operator_id: Some(op.id),
            username: op.username,
            role: op.role,
            department: op.department,
            origin: origin.into(),
        })
    }

    pub async fn operators(&self) -> Result<Vec<OperatorRow>> {
        Ok(self.store.operators_list().await?)
    }

    /// Signs an operator in and returns a console session token. Unknown users and wrong
    /// passwords get the same answer and take the same time; repeated failures lock the account
    /// for a while.
    pub async fn sign_in(
        &self,
        username: &str,
        password: &str,
        origin: &str,
    ) -> Result<(String, Caller)> {
        let now = self.clock.now_ms();
        if let Err(e) = self.logins.check(username, now) {
            let name: String = username.chars().take(32).collect();
            self.audit(audit::Draft::new(
                format!("anonymous:{name}"),
                "auth.sign_in.locked",
                format!("operator:{name}"),
                origin,
                "",
            ))
            .await?;
            return Err(e);
        }
        let op = self.store.operator_by_username(username).await?;
        // Verify against a real hash even when the user is unknown, so timing does not tell.
        let (hash, op) = match op {
            Some(op) if !op.disabled => (op.password_hash.clone(), Some(op)),
            _ => (dummy_hash(), None),
        };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&hash, &pw))
            .await
            .unwrap_or(false);
        let Some(op) = op.filter(|_| ok) else {
            self.logins.fail(username, now);
            let name: String = username.chars().take(32).collect();
            self.audit(audit::Draft::new(
                format!("anonymous:{name}"),
                "auth.sign_in.fail",
                format!("operator:{name}"),
                origin,
                "",
            ))
            .await?;
            return Err(PlatformError::Unauthenticated);
        };
        self.logins.succeed(username);
        let token = new_token("cs")?;
        let caller = caller_of(&op, origin);
        self.store
            .credential_create(
                &NewCredential {
                    token_hash: token_hash(&token),
                    operator_id: op.id,
                    kind: CredentialKind::Session,
                    label: "console".into(),
                    expires_ms: now + SESSION_TTL_MS,
                },
                caller.draft("auth.sign_in", format!("operator:{}", op.username), ""),
                now,
            )
            .await?;
        Ok((token, caller))
    }

    /// Issues a bearer token for a machine client acting as operator `username`.
    pub async fn create_api_token(
        &self,
        caller: &Caller,
        username: &str,
        label: &str,
        ttl_days: u32,
    ) -> Result<String> {
        if caller.role != Role::Administrator {
            return Err(PlatformError::Forbidden(
                "only administrators issue API tokens".into(),
            ));
        }
        if !(1..=API_TOKEN_TTL_DAYS_MAX).contains(&ttl_days) {
            return Err(PlatformError::invalid(
                "ttl_days",
                format!("1 to {API_TOKEN_TTL_DAYS_MAX} days"),
            ));
        }
        if label.trim().is_empty() || label.chars().count() > 64 {
            return Err(PlatformError::invalid("label", "1 to 64 characters"));
        }
        let op = self
            .store
            .operator_by_username(username)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("operator {username}")))?;
        let token = new_token("ct")?;
        let now = self.clock.now_ms();
        self.store
            .credential_create(
                &NewCredential {
                    token_hash: token_hash(&token),
                    operator_id: op.id,
                    kind: CredentialKind::ApiToken,
                    label: label.trim().into(),
                    expires_ms: now + i64::from(ttl_days) * 86_400_000,
                },
                caller.draft("auth.token.create", format!("operator:{username}"), label),
                now,
            )
            .await?;
        Ok(token)
    }

    /// The caller behind a presented session or API token.
    pub async fn authenticate(
        &self,
        token: &str,
        origin: &str,
    ) -> Result<(Caller, CredentialKind)> {
        if token.len() > 128 {
            return Err(PlatformError::Unauthenticated);
        }
        let hash = token_hash(token);
        let now = self.clock.now_ms();
        if let Some((mut caller, kind)) = self.credentials.get(&hash, now) {
            caller.origin = origin.into();
            return Ok((caller, kind));
        }
        let found = self.store.credential_lookup(&hash, now).await?;
        let (op, kind, expires_ms) = found.ok_or(PlatformError::Unauthenticated)?;
        let caller = caller_of(&op, origin);
        let until = expires_ms.min(now.saturating_add(CREDENTIAL_CACHE_TTL_MS));
        self.credentials.put(hash, &caller, kind, until);
        Ok((caller, kind))
    }

    pub async fn sign_out(&self, caller: &Caller, token: &str) -> Result<()> {
        let hash = token_hash(token);
        self.credentials.forget(&hash);
        self.store
            .credential_revoke(&hash, self.clock.now_ms())
            .await?;
        self.audit(caller.draft("auth.sign_out", format!("operator:{}", caller.username), ""))
            .await?;
        Ok(())
    }
}
