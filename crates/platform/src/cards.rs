//! Cards (issue 4, first slice): applying for a card with eligibility from the resident base
//! database, card numbers from a sequence that never repeats, and every life-cycle action
//! through `issuance::transition`, whose effects (audit, deny-list, successor card, balance
//! moves) are written in one transaction.

use crate::applications::{CardApplicationForm, Delivery};
use crate::{Caller, Platform, PlatformError, Result};
use chip::CardNumber;
pub use issuance::Reason;
use issuance::{
    Action, Actor, Card, CardState, ClerkId, Command, Effect, LifecyclePolicy, OfficerId, OutletId,
    ResidentKey, Timestamp, transition,
};
use resident::{Residency, ResidentId};
use store::{ApplicationRow, BalanceMoveRow, CardChange, CardEventRow, CardRow, DenyOp, Role};

/// Card types of the chip profile (EF15 byte 28).
pub const CARD_TYPES: [&str; 6] = [
    "ordinary",
    "student",
    "senior",
    "disabled",
    "employee",
    "temporary",
];
/// A resident younger than this applies with a guardian.
pub const ADULT_AGE: u32 = 16;
/// Validity of a produced card (EF15: start + 10 years).
pub const VALIDITY_S: i64 = 10 * 365 * 86_400 + 2 * 86_400;

/// What an operator asks of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardRequest {
    Approve,
    Reject,
    Withdraw,
    SendToProduction,
    ProductionDone,
    ProductionFailed,
    DeliverToOutlet(u32),
    Post,
    HandOver,
    Activate,
    ReportLost,
    UndoLost,
    Freeze,
    Unfreeze,
    Replace,
    Renew,
    Cancel,
    Expire,
}

impl CardRequest {
    /// Parses the API's action name (`report_lost`, `deliver_to_outlet` with an outlet, …).
    pub fn parse(name: &str, outlet: Option<u32>) -> Result<Self> {
        use CardRequest::*;
        Ok(match name {
            "approve" => Approve,
            "reject" => Reject,
            "withdraw" => Withdraw,
            "send_to_production" => SendToProduction,
            "production_done" => ProductionDone,
            "production_failed" => ProductionFailed,
            "deliver_to_outlet" => DeliverToOutlet(outlet.ok_or_else(|| {
                PlatformError::invalid("outlet", "deliver_to_outlet needs an outlet number")
            })?),
            "post" => Post,
            "hand_over" => HandOver,
            "activate" => Activate,
            "report_lost" => ReportLost,
            "undo_lost" => UndoLost,
            "freeze" => Freeze,
            "unfreeze" => Unfreeze,
            "replace" => Replace,
            "renew" => Renew,
            "cancel" => Cancel,
            "expire" => Expire,
            other => {
                return Err(PlatformError::invalid(
                    "action",
                    format!("unknown card action {other:?}"),
                ));
            }
        })
    }
}

impl CardRequest {
    /// The API's action name, the inverse of [`CardRequest::parse`].
    pub fn name(self) -> &'static str {
        use CardRequest::*;
        match self {
            Approve => "approve",
            Reject => "reject",
            Withdraw => "withdraw",
            SendToProduction => "send_to_production",
            ProductionDone => "production_done",
            ProductionFailed => "production_failed",
            DeliverToOutlet(_) => "deliver_to_outlet",
            Post => "post",
            HandOver => "hand_over",
            Activate => "activate",
            ReportLost => "report_lost",
            UndoLost => "undo_lost",
            Freeze => "freeze",
            Unfreeze => "unfreeze",
            Replace => "replace",
            Renew => "renew",
            Cancel => "cancel",
            Expire => "expire",
        }
    }
}

/// Reasons by their API name (`lost`, `holder_request`, …).
pub fn parse_reason(name: &str) -> Result<Reason> {
    let pascal: String = name
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    serde_json::from_value(serde_json::Value::String(pascal))
        .map_err(|_| PlatformError::invalid("reason", format!("unknown reason {name:?}")))
}

fn snake(s: &str) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if c.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A card as an operator sees it: the holder masked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CardView {
    pub number: String,
    pub state: String,
    pub card_type: String,
    pub valid_until_s: Option<i64>,
    pub version: i64,
    pub holder_name: String,
    pub holder_id_number: String,
    pub updated_ms: i64,
}

pub(crate) fn actor_of(caller: &Caller) -> Result<Actor> {
    if let Some(resident) = caller.citizen_id() {
        // A signed-in citizen acts as the holder: the state machine refuses another's card.
        return Ok(Actor::Holder(ResidentKey(resident as u64)));
    }
    match (caller.role, caller.operator_id) {
        (_, None) => Ok(Actor::System),
        (Role::CounterClerk, Some(id)) => Ok(Actor::Clerk(ClerkId(id as u32))),
        (Role::Administrator, Some(id)) => Ok(Actor::Officer(OfficerId(id as u32))),
        _ => Err(PlatformError::Forbidden(format!(
            "the {} role does not act on cards",
            caller.role.as_str()
        ))),
    }
}

/// The acts that have their own path, which keeps what the generic card action cannot: a
/// production batch (the personalization file and the bureau's results), the outlet's stock,
/// and the counter journal with its fees. The generic action refuses them and names the path.
fn refuse_outside_its_path(caller: &Caller, request: CardRequest) -> Result<()> {
    let path = match request {
        CardRequest::DeliverToOutlet(_) => Some(
            "cards reach an outlet with their production batch, which keeps the outlet's \
             stock: POST /api/v1/batches/{batch}/distribution (citycard batches distribute)",
        ),
        CardRequest::HandOver => Some(
            "a card is handed over at its outlet's counter, which journals it: \
             POST /api/v1/outlets/{code}/hand-over (citycard counter hand-over)",
        ),
        CardRequest::SendToProduction
        | CardRequest::ProductionDone
        | CardRequest::ProductionFailed
            if caller.operator_id.is_some() =>
        {
            Some(
                "cards go to production in a batch and come back with the bureau's result \
                 file: POST /api/v1/batches, /api/v1/batches/{batch}/results \
                 (citycard batches create|import)",
            )
        }
        CardRequest::ReportLost
            if caller.role == Role::CounterClerk && caller.operator_id.is_some() =>
        {
            Some(
                "at the counter a lost report is journaled: \
             POST /api/v1/outlets/{code}/lost-reports (citycard counter report-lost)",
            )
        }
        CardRequest::Replace
            if caller.role == Role::CounterClerk && caller.operator_id.is_some() =>
        {
            Some(
                "at the counter a replacement is journaled with its fee: \
             POST /api/v1/outlets/{code}/replacements (citycard counter replace)",
            )
        }
        _ => None,
    };
    match path {
        Some(path) => Err(PlatformError::Forbidden(format!(
            "{} is not a generic card action here: {path}",
            request.name()
        ))),
        None => Ok(()),
    }
}

pub(crate) fn row_to_card(row: &CardRow) -> Result<Card> {
    let number = CardNumber::parse(&row.number)
        .map_err(|e| PlatformError::Unexpected(format!("stored card number: {e}")))?;
    let state: CardState = serde_json::from_str(&row.state_json)
        .map_err(|e| PlatformError::Unexpected(format!("stored card state: {e}")))?;
    Ok(Card {
        number,
        holder: ResidentKey(row.resident_id as u64),
        state,
        valid_until: row.valid_until_s.map(Timestamp),
    })
}

pub(crate) fn state_json(state: &CardState) -> Result<String> {
    serde_json::to_string(state).map_err(|e| PlatformError::Unexpected(e.to_string()))
}

/// What one accepted transition writes: the card at its next version, its successor, events,
/// deny-list changes, balance moves, and one audit entry per transition.
pub(crate) fn change_of(
    caller: &Caller,
    row: &CardRow,
    t: &issuance::Transition,
    reason: Reason,
    now: i64,
) -> Result<(CardChange, Vec<audit::Draft>)> {
    let mut updated = row.clone();
    updated.state = t.card.state.name().as_str().into();
    updated.state_json = state_json(&t.card.state)?;
    updated.valid_until_s = t.card.valid_until.map(|v| v.0);
    updated.version = row.version + 1;
    updated.updated_ms = now;
    let mut change = CardChange {
        card: updated,
        successor: None,
        events: Vec::new(),
        deny: Vec::new(),
        moves: Vec::new(),
    };
    let mut drafts = Vec::new();
    for e in &t.effects {
        match *e {
            Effect::Audit(a) => {
                let action = snake(&format!("{:?}", a.action));
                change.events.push(CardEventRow {
                    number: a.card.to_string(),
                    from_state: a.from.as_str().into(),
                    to_state: a.to.as_str().into(),
                    action: action.clone(),
                    reason: snake(&format!("{:?}", a.reason)),
                    actor: caller.actor(),
                    at_ms: now,
                });
                drafts.push(caller.draft(
                    &format!("card.{action}"),
                    format!("card:{}", a.card),
                    format!(
                        "{} -> {} reason={:?}",
                        a.from.as_str(),
                        a.to.as_str(),
                        a.reason
                    ),
                ));
            }
            Effect::DenyAdd(n) => change.deny.push((n.to_string(), DenyOp::Add)),
            Effect::DenyRemove(n) => change.deny.push((n.to_string(), DenyOp::Remove)),
            Effect::CreateSuccessor { number: s, .. } => {
                change.successor = Some(CardRow {
                    number: s.to_string(),
                    resident_id: row.resident_id,
                    state: issuance::StateName::Approved.as_str().into(),
                    state_json: state_json(&CardState::Approved)?,
                    card_type: row.card_type.clone(),
                    valid_until_s: None,
                    version: 1,
                    created_ms: now,
                    updated_ms: now,
                });
                change.events.push(CardEventRow {
                    number: s.to_string(),
                    from_state: "-".into(),
                    to_state: "approved".into(),
                    action: "create_successor".into(),
                    reason: snake(&format!("{reason:?}")),
                    actor: caller.actor(),
                    at_ms: now,
                });
            }
            Effect::MoveBalancesAfter {
                from,
                to,
                not_before,
            } => change.moves.push(BalanceMoveRow {
                from_number: from.to_string(),
                to_number: Some(to.to_string()),
                not_before_s: not_before.0,
            }),
            Effect::RefundAfter {
                card, not_before, ..
            } => change.moves.push(BalanceMoveRow {
                from_number: card.to_string(),
                to_number: None,
                not_before_s: not_before.0,
            }),
            // Notices go out through the notification outbox, which is not built yet.
            Effect::Notify { .. } => {}
        }
    }
    Ok((change, drafts))
}

impl Platform {
    pub(crate) fn now_s(&self) -> i64 {
        self.clock.now_ms().div_euclid(1000)
    }

    async fn new_card_number(&self) -> Result<CardNumber> {
        let seq = self.store.card_sequence_next().await?;
        CardNumber::from_sequence(seq)
            .map_err(|e| PlatformError::Unexpected(format!("card number sequence: {e}")))
    }

    /// A resident applies for a card (at a counter, or online later). Eligibility comes from
    /// the resident base database: a registered resident of the city, one live card per
    /// person, minors with a registered adult guardian. Non-residents are refused a city card
    /// with a reason (they enrol for services with their own city's card).
    pub async fn apply_for_card(
        &self,
        caller: &Caller,
        id_number: &str,
        card_type: &str,
        guardian_id_number: Option<&str>,
    ) -> Result<CardView> {
        self.apply_for_card_with(
            caller,
            &CardApplicationForm {
                id_number: id_number.into(),
                card_type: card_type.into(),
                guardian_id_number: guardian_id_number.map(Into::into),
                ..CardApplicationForm::default()
            },
        )
        .await
    }

    /// [`Platform::apply_for_card`] with the whole form: channel, delivery choice (collect at
    /// an outlet now or later, or by post) and the photo reference.
    pub async fn apply_for_card_with(
        &self,
        caller: &Caller,
        form: &CardApplicationForm,
    ) -> Result<CardView> {
        let id_number = form.id_number.as_str();
        let card_type = form.card_type.as_str();
        let guardian_id_number = form.guardian_id_number.as_deref();
        if !matches!(caller.role, Role::Administrator | Role::CounterClerk) {
            return Err(PlatformError::Forbidden(
                "only counter clerks and administrators take card applications".into(),
            ));
        }
        if !CARD_TYPES.contains(&card_type) {
            return Err(PlatformError::invalid(
                "card_type",
                format!("one of {}", CARD_TYPES.join(", ")),
            ));
        }
        form.check()?;
        let today = self.clock.today();
        let id = ResidentId::parse(id_number, today)
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        let row = self
            .store
            .resident_by_blind(&self.vault.blind("id_number", id.as_str()))
            .await?
            .ok_or_else(|| {
                PlatformError::invalid("id_number", "not in the resident base database")
            })?;
        if row.residency != Some(Residency::Resident) {
            return Err(PlatformError::Conflict(
                "not a registered resident of the city: a holder of another city's \
                 social security card enrols for services with that card instead \
                 (POST /api/v1/enrolments)"
                    .into(),
            ));
        }
        if form.delivery == Delivery::Post && row.address_sealed.is_none() {
            return Err(PlatformError::invalid(
                "delivery",
                "delivery by post needs an address in the resident base database",
            ));
        }
        let mut guardian_resident_id = None;
        if id.age_on(today) < ADULT_AGE {
            let g = guardian_id_number.ok_or_else(|| {
                PlatformError::invalid("guardian_id_number", "a minor applies with a guardian")
            })?;
            let gid = ResidentId::parse(g, today)
                .map_err(|e| PlatformError::invalid("guardian_id_number", e.to_string()))?;
            let grow = self
                .store
                .resident_by_blind(&self.vault.blind("id_number", gid.as_str()))
                .await?;
            match grow {
                Some(g) if gid.age_on(today) >= 18 => guardian_resident_id = Some(g.id),
                _ => {
                    return Err(PlatformError::invalid(
                        "guardian_id_number",
                        "the guardian must be an adult in the resident base database",
                    ));
                }
            }
        }
        let number = self.new_card_number().await?;
        let now = self.clock.now_ms();
        let card = CardRow {
            number: number.to_string(),
            resident_id: row.id,
            state: issuance::StateName::Applied.as_str().into(),
            state_json: state_json(&CardState::Applied)?,
            card_type: card_type.into(),
            valid_until_s: None,
            version: 1,
            created_ms: now,
            updated_ms: now,
        };
        let event = CardEventRow {
            number: card.number.clone(),
            from_state: "-".into(),
            to_state: card.state.clone(),
            action: "apply".into(),
            reason: "holder_request".into(),
            actor: caller.actor(),
            at_ms: now,
        };
        let application = ApplicationRow {
            number: card.number.clone(),
            channel: form.channel.as_str().into(),
            delivery: form.delivery.as_str().into(),
            outlet_code: form.outlet_code.clone(),
            photo_ref: form.photo_ref.clone(),
            guardian_resident_id,
            created_ms: now,
        };
        self.store
            .card_insert(
                &card,
                &event,
                Some(&application),
                caller.draft(
                    "card.apply",
                    format!("card:{}", card.number),
                    format!(
                        "resident:{} type={card_type} channel={} delivery={}",
                        row.id,
                        form.channel.as_str(),
                        form.delivery.as_str()
                    ),
                ),
                now,
            )
            .await
            .map_err(|e| match e {
                store::StoreError::Conflict(m) if m.contains("live card") => {
                    PlatformError::Conflict("this resident already has a live card".into())
                }
                e => e.into(),
            })?;
        self.card_view(caller, card).await
    }

    /// Applies one life-cycle action. Any transition the state machine refuses is refused here
    /// with its reason; an accepted one is written with all its effects at once.
    pub async fn card_action(
        &self,
        caller: &Caller,
        number: &str,
        request: CardRequest,
        reason: Reason,
    ) -> Result<CardView> {
        let actor = actor_of(caller)?;
        let number = CardNumber::parse(number)
            .map_err(|e| PlatformError::invalid("number", e.to_string()))?;
        let row = self
            .store
            .card_by_number(&number.to_string())
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        refuse_outside_its_path(caller, request)?;
        let card = row_to_card(&row)?;
        let now_s = self.now_s();
        let action = match request {
            CardRequest::Approve => Action::Approve,
            CardRequest::Reject => Action::Reject,
            CardRequest::Withdraw => Action::Withdraw,
            CardRequest::SendToProduction => Action::SendToProduction,
            CardRequest::ProductionDone => Action::ProductionDone {
                valid_until: Timestamp(now_s + VALIDITY_S),
            },
            CardRequest::ProductionFailed => Action::ProductionFailed,
            CardRequest::DeliverToOutlet(o) => Action::DeliverToOutlet(OutletId(o)),
            CardRequest::Post => Action::Post,
            CardRequest::HandOver => Action::HandOver,
            CardRequest::Activate => Action::Activate,
            CardRequest::ReportLost => Action::ReportLost,
            CardRequest::UndoLost => Action::UndoLost,
            CardRequest::Freeze => Action::Freeze,
            CardRequest::Unfreeze => Action::Unfreeze,
            CardRequest::Cancel => Action::Cancel,
            CardRequest::Expire => Action::Expire,
            // The successor's number is taken only when the state machine would accept; a
            // refused replacement burns a number, which is allowed (numbers are never reused).
            CardRequest::Replace => Action::Replace {
                successor: self.new_card_number().await?,
            },
            CardRequest::Renew => Action::Renew {
                successor: self.new_card_number().await?,
            },
        };
        let t = transition(
            &card,
            &Command::new(action, reason, actor),
            Timestamp(now_s),
            &LifecyclePolicy::default(),
        )
        .map_err(|e| PlatformError::Conflict(format!("card {number}: {e}")))?;

        let now = self.clock.now_ms();
        let (change, mut drafts) = change_of(caller, &row, &t, reason, now)?;
        // Phones enrolled on a card that leaves `active` are revoked by the storage in this
        // same transaction; their audit entries go with it.
        drafts.extend(
            self.ecode_devices_leaving(caller, &row.state, &change.card)
                .await?,
        );
        let view_row = change.card.clone();
        self.store.card_apply(&change, drafts, now).await?;
        self.card_view(caller, view_row).await
    }

    pub async fn card(&self, caller: &Caller, number: &str) -> Result<CardView> {
        let row = self
            .store
            .card_by_number(number)
            .await?
            .ok_or_else(|| PlatformError::NotFound(format!("card {number}")))?;
        self.card_view(caller, row).await
    }

    /// Cards in number order, optionally in one state, holders masked. One audit entry covers
    /// the masked holder data the page shows.
    pub async fn cards(
        &self,
        caller: &Caller,
        state: Option<&str>,
        after: &str,
        limit: u32,
    ) -> Result<Vec<CardView>> {
        if let Some(s) = state
            && !ALL_STATES.contains(&s)
        {
            return Err(PlatformError::invalid(
                "state",
                format!("one of {}", ALL_STATES.join(", ")),
            ));
        }
        let rows = self.store.cards_page(state, after, limit).await?;
        self.audit(caller.draft(
            "card.list",
            "cards",
            format!("{} card(s), holders masked", rows.len()),
        ))
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.masked_view(r).await?);
        }
        Ok(out)
    }

    async fn card_view(&self, caller: &Caller, row: CardRow) -> Result<CardView> {
        self.audit(caller.draft("card.read", format!("card:{}", row.number), "holder masked"))
            .await?;
        self.masked_view(row).await
    }

    pub(crate) async fn masked_view(&self, row: CardRow) -> Result<CardView> {
        let resident = self
            .store
            .resident_by_id(row.resident_id)
            .await?
            .ok_or_else(|| {
                PlatformError::Unexpected(format!("card {} has no resident", row.number))
            })?;
        let view = self.resident_view_masked(resident)?;
        Ok(CardView {
            number: row.number,
            state: row.state,
            card_type: row.card_type,
            valid_until_s: row.valid_until_s,
            version: row.version,
            holder_name: view.0,
            holder_id_number: view.1,
            updated_ms: row.updated_ms,
        })
    }
}

/// Every state name, for filters.
pub const ALL_STATES: [&str; 13] = [
    "applied",
    "approved",
    "in_production",
    "produced",
    "at_outlet",
    "issued",
    "active",
    "reported_lost",
    "frozen",
    "replaced",
    "cancelled",
    "expired",
    "withdrawn",
];

/// Signs deny-lists with the platform's deny-list key.
struct DenySigner<'a>(&'a keys::Signer);

impl issuance::DenyListSigner for DenySigner<'_> {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).to_vec()
    }
}

/// Deny-list changes read per storage call while replaying the log.
const DENY_REPLAY_PAGE: u32 = 100_000;

/// The deny-list's card sequences at the last version this process built, so the next download
/// replays only the changes since then (a full list of a million cards is then a few
/// milliseconds of encoding, not a replay of the whole log).
#[derive(Default)]
pub(crate) struct DenyCache(tokio::sync::Mutex<Option<(i64, std::collections::BTreeSet<u32>)>>);

/// Signed deny-list deltas built at the current version, by the version they start from: ten
/// thousand terminals asking for the same delta get the same bytes, built and signed once.
/// Emptied when the version moves on; at most [`DELTA_CACHE_MAX`] entries.
/// The version the kept deltas lead to, and each delta by the version it starts from.
type KeptDeltas = (i64, std::collections::HashMap<i64, std::sync::Arc<Vec<u8>>>);

#[derive(Default)]
pub(crate) struct DeltaCache {
    kept: tokio::sync::Mutex<KeptDeltas>,
    /// Deltas built and signed by this process (the cache's misses).
    built: std::sync::atomic::AtomicU64,
}

/// Distinct starting versions whose delta is kept, at most.
pub const DELTA_CACHE_MAX: usize = 256;

fn deny_sequence(number: &str) -> Result<u32> {
    let n = CardNumber::parse(number)
        .map_err(|e| PlatformError::Unexpected(format!("deny-list entry: {e}")))?;
    Ok(issuance::card_sequence(n))
}

impl Platform {
    /// Calls `f` with every change in `(after, upto]`, oldest first.
    async fn deny_changes_between(
        &self,
        after: i64,
        upto: i64,
        mut f: impl FnMut(u32, DenyOp),
    ) -> Result<()> {
        let mut after = after;
        while after < upto {
            let page = self
                .store
                .deny_list_changes(after, DENY_REPLAY_PAGE)
                .await?;
            for c in &page {
                if c.version > upto {
                    return Ok(());
                }
                f(deny_sequence(&c.number)?, c.op);
                after = c.version;
            }
            if page.len() < DENY_REPLAY_PAGE as usize {
                break;
            }
        }
        Ok(())
    }

    /// The card sequences on the deny-list at `version` (the current one or later than the
    /// cached one): the cached set brought forward by the changes since, or the whole log
    /// replayed once.
    async fn deny_set_at(&self, version: i64) -> Result<std::collections::BTreeSet<u32>> {
        let mut cache = self.deny_cache.0.lock().await;
        let (from, mut set) = match cache.take() {
            Some((v, set)) if v <= version => (v, set),
            _ => (0, std::collections::BTreeSet::new()),
        };
        let result = self
            .deny_changes_between(from, version, |seq, op| {
                match op {
                    DenyOp::Add => set.insert(seq),
                    DenyOp::Remove => set.remove(&seq),
                };
            })
            .await;
        // A failed read leaves the cache empty, so the next call starts again from the log.
        result?;
        *cache = Some((version, set.clone()));
        Ok(set)
    }

    /// The whole deny-list at its current version, in the signed binary format terminals load
    /// (`issuance::DenyList::encode`), with that version.
    pub async fn deny_list_full(&self) -> Result<(i64, Vec<u8>)> {
        let version = self.store.deny_list_version().await?;
        let set = self.deny_set_at(version).await?;
        let list = issuance::DenyList::from_sorted_sequences(
            issuance::DenyListVersion(version as u64),
            set.into_iter().collect(),
        )
        .map_err(|e| PlatformError::Unexpected(format!("deny-list: {e}")))?;
        Ok((version, list.encode(&DenySigner(&self.denylist_signer))))
    }

    /// What changed since `since`, signed, for a terminal that holds the list at `since`.
    /// Folds only the changes after `since`, so its cost is proportional to them: a card's
    /// first change after `since` says whether it was listed then, its last whether it is now.
    pub async fn deny_list_delta(&self, since: i64) -> Result<(i64, Vec<u8>)> {
        let version = self.store.deny_list_version().await?;
        if since < 0 || since > version {
            return Err(PlatformError::invalid(
                "since",
                format!("the deny-list is at version {version}"),
            ));
        }
        if since == version {
            return Err(PlatformError::Conflict(format!(
                "the deny-list is still at version {version}: nothing changed"
            )));
        }
        // Held while building, so a crowd asking for the same delta builds it once.
        let mut cache = self.deny_deltas.kept.lock().await;
        if cache.0 != version {
            cache.0 = version;
            cache.1.clear();
        }
        if let Some(bytes) = cache.1.get(&since) {
            return Ok((version, bytes.as_ref().clone()));
        }
        let bytes = self.deny_list_delta_build(since, version).await?;
        self.deny_deltas
            .built
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if cache.1.len() >= DELTA_CACHE_MAX {
            cache.1.clear();
        }
        cache.1.insert(since, std::sync::Arc::new(bytes.clone()));
        Ok((version, bytes))
    }

    /// Builds and signs the delta from `since` to `version`.
    async fn deny_list_delta_build(&self, since: i64, version: i64) -> Result<Vec<u8>> {
        // sequence → (listed at `since`, listed now)
        let mut net: std::collections::BTreeMap<u32, (bool, bool)> = Default::default();
        self.deny_changes_between(since, version, |seq, op| {
            let now = op == DenyOp::Add;
            net.entry(seq)
                .and_modify(|e| e.1 = now)
                .or_insert((!now, now));
        })
        .await?;
        let (mut adds, mut removes) = (Vec::new(), Vec::new());
        for (seq, (before, after)) in net {
            match (before, after) {
                (false, true) => adds.push(seq),
                (true, false) => removes.push(seq),
                _ => {}
            }
        }
        let delta = issuance::DenyListDelta::from_sorted_sequences(
            issuance::DenyListVersion(since as u64),
            issuance::DenyListVersion(version as u64),
            adds,
            removes,
        )
        .map_err(|e| PlatformError::Unexpected(format!("deny-list delta: {e}")))?;
        Ok(delta.encode(&DenySigner(&self.denylist_signer)))
    }

    /// Deny-list deltas this process built and signed (the others came from the cache).
    pub fn deny_list_deltas_built(&self) -> u64 {
        self.deny_deltas
            .built
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The SEC1 compressed SM2 public key terminals verify deny-lists with.
    pub fn deny_list_public_key(&self) -> [u8; 33] {
        self.denylist_signer.public_key()
    }

    /// Whether a card is on the deny-list at its current version (the set terminals get).
    /// Whether each of `numbers` is on the deny-list now: one version read, answered from the
    /// cached listed set when it is current.
    pub async fn deny_listed_many(&self, numbers: &[&str]) -> Result<Vec<bool>> {
        let seqs = numbers
            .iter()
            .map(|n| deny_sequence(n))
            .collect::<Result<Vec<u32>>>()?;
        let version = self.store.deny_list_version().await?;
        if let Some((v, set)) = self.deny_cache.0.lock().await.as_ref()
            && *v == version
        {
            return Ok(seqs.iter().map(|s| set.contains(s)).collect());
        }
        let set = self.deny_set_at(version).await?;
        Ok(seqs.iter().map(|s| set.contains(s)).collect())
    }

    pub async fn deny_listed(&self, number: &str) -> Result<bool> {
        let seq = deny_sequence(number)?;
        let version = self.store.deny_list_version().await?;
        // Usually the cached set is current: answer from it without copying it.
        if let Some((v, set)) = self.deny_cache.0.lock().await.as_ref()
            && *v == version
        {
            return Ok(set.contains(&seq));
        }
        Ok(self.deny_set_at(version).await?.contains(&seq))
    }
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Lost reports whose undo period ran out: frozen.
    pub frozen: u64,
    /// Cards past their validity: expired.
    pub expired: u64,
    /// Balance moves whose cooling-off had passed (`Platform::release_balance_moves`).
    pub balances: crate::ledger::ReleaseReport,
}

/// States whose cards can expire (a card not yet handed over is renewed or withdrawn instead).
const EXPIRABLE: [&str; 4] = ["active", "reported_lost", "frozen", "issued"];

impl Platform {
    /// The scheduled job of the life cycle: freezes cards whose lost report can no longer be
    /// undone, and expires cards past their validity. Each card is one transition through the
    /// state machine (actor: the system), so the deny-list and balance moves follow as for any
    /// other action. Then releases the balance moves whose cooling-off has passed. Safe to
    /// run at any time and any number of times.
    pub async fn sweep_cards(&self) -> Result<SweepReport> {
        let system = Caller::cli("sweep");
        let now_s = self.now_s();
        let policy = LifecyclePolicy::default();
        let mut report = SweepReport::default();
        for state in ["reported_lost"].into_iter().chain(EXPIRABLE) {
            let mut after = String::new();
            loop {
                let page = self
                    .store
                    .cards_page(Some(state), &after, store::PAGE_MAX)
                    .await?;
                let Some(last) = page.last() else { break };
                after = last.number.clone();
                for row in &page {
                    let card = row_to_card(row)?;
                    let expired = card.valid_until.is_some_and(|v| v.0 <= now_s);
                    let lost_over = matches!(card.state, CardState::ReportedLost { reported_at }
                        if reported_at.0 + policy.lost_undo_period_s as i64 <= now_s);
                    let (request, reason) = if expired && EXPIRABLE.contains(&state) {
                        (CardRequest::Expire, Reason::ValidityOver)
                    } else if lost_over && state == "reported_lost" {
                        (CardRequest::Freeze, Reason::LostPeriodOver)
                    } else {
                        continue;
                    };
                    match self
                        .card_action(&system, &row.number, request, reason)
                        .await
                    {
                        Ok(_) if request == CardRequest::Expire => report.expired += 1,
                        Ok(_) => report.frozen += 1,
                        // Changed by someone else meanwhile: the next sweep sees it again.
                        Err(PlatformError::Conflict(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
                if page.len() < store::PAGE_MAX as usize {
                    break;
                }
            }
        }
        report.balances = self.release_balance_moves().await?;
        Ok(report)
    }
}
