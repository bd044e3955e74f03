//! The card life cycle as one explicit state machine.
//!
//! ```text
//! applied → approved → in_production → produced → at_outlet → issued → active
//!    │         │  ▲          │            └──────── post ──────┘        │
//!    └─────────┴──┼──────────┘ production failed                        │
//!   withdrawn ◄───┘                                                     │
//! active ⇄ reported_lost (undo within the policy's period) → frozen ⇄ active (officer)
//! active(damaged) | reported_lost | frozen ─ replace → replaced   (+ a new card at approved)
//! active (inside the renewal window)       ─ renew   → replaced   (+ a new card at approved)
//! active | reported_lost | frozen          ─ cancel  → cancelled
//! any produced card past its validity      ─ expire  → expired
//! ```
//!
//! [`transition`] is the only way a card changes state. It checks the state,
//! the actor and the reason, and returns the new card value with the effects
//! the platform must carry out. Two rules are structural rather than written
//! per action, so no action can forget them:
//! - deny-list membership is [`must_deny`] of the state: a transition that
//!   crosses it emits [`Effect::DenyAdd`] or [`Effect::DenyRemove`];
//! - money leaves a card only when the card stops being live: towards the
//!   successor ([`Effect::MoveBalancesAfter`]) on replacement and renewal,
//!   otherwise back to the holder ([`Effect::RefundAfter`]), in both cases
//!   after the cooling-off period so offline purchases still in flight settle
//!   on the old card first.

use core::fmt;

use chip::CardNumber;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::time::Timestamp;

/// A resident in the resident base database, by the opaque key the platform
/// stores (never the ID number: the core needs identity, not personal data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResidentKey(pub u64);

/// A clerk at a service outlet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClerkId(pub u32);

/// A card-company or department officer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OfficerId(pub u32);

/// A service outlet (服务网点).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OutletId(pub u32);

/// Who asks for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// The card holder (online, app, kiosk). Must be the card's own holder.
    Holder(ResidentKey),
    /// A clerk at a service outlet, acting for the holder.
    Clerk(ClerkId),
    /// An officer with authority over cards (freeze, unfreeze, reject).
    Officer(OfficerId),
    /// A scheduled job of the platform (production import, lost-period sweep, expiry).
    System,
}

/// The kind of an [`Actor`], for errors and permission tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActorKind {
    Holder,
    Clerk,
    Officer,
    System,
}

impl Actor {
    pub fn kind(self) -> ActorKind {
        match self {
            Actor::Holder(_) => ActorKind::Holder,
            Actor::Clerk(_) => ActorKind::Clerk,
            Actor::Officer(_) => ActorKind::Officer,
            Actor::System => ActorKind::System,
        }
    }
}

/// Why a transition is asked for. A closed list, so reports can count by
/// reason and no free text (which might hold personal data) reaches the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// The holder asked (apply, activate, withdraw, cancel, undo a loss).
    HolderRequest,
    /// A step of the normal production and distribution flow.
    Routine,
    /// The card is lost or stolen.
    Lost,
    /// The card is damaged or faulty.
    Damaged,
    /// Suspected or proven fraud.
    Fraud,
    /// The card is near the end of its validity.
    Renewal,
    /// The holder died or left the city.
    HolderGone,
    /// The application failed an eligibility or document check.
    Ineligible,
    /// The card bureau reported a personalization failure.
    ProductionFailure,
    /// The lost-report period ran out without an undo.
    LostPeriodOver,
    /// The card passed its validity date.
    ValidityOver,
    /// An officer cleared an earlier freeze.
    Cleared,
}

/// The life-cycle states. `ReportedLost` and `Replaced` carry what later
/// transitions need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CardState {
    Applied,
    Approved,
    InProduction,
    Produced,
    AtOutlet(OutletId),
    Issued,
    Active,
    /// 挂失: temporary; the holder can undo it until `reported_at` plus the
    /// policy's undo period.
    ReportedLost {
        reported_at: Timestamp,
    },
    Frozen,
    /// Superseded by `successor` (补卡 or renewal).
    Replaced {
        successor: CardNumber,
    },
    /// 注销.
    Cancelled,
    Expired,
    /// An application withdrawn or rejected before the card was handed over.
    Withdrawn,
}

/// The name of a [`CardState`] without its data, for errors, lists and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StateName {
    Applied,
    Approved,
    InProduction,
    Produced,
    AtOutlet,
    Issued,
    Active,
    ReportedLost,
    Frozen,
    Replaced,
    Cancelled,
    Expired,
    Withdrawn,
}

impl StateName {
    /// The snake-case name used in APIs and the CLI (`--state reported_lost`).
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::Applied => "applied",
            StateName::Approved => "approved",
            StateName::InProduction => "in_production",
            StateName::Produced => "produced",
            StateName::AtOutlet => "at_outlet",
            StateName::Issued => "issued",
            StateName::Active => "active",
            StateName::ReportedLost => "reported_lost",
            StateName::Frozen => "frozen",
            StateName::Replaced => "replaced",
            StateName::Cancelled => "cancelled",
            StateName::Expired => "expired",
            StateName::Withdrawn => "withdrawn",
        }
    }
}

impl fmt::Display for StateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CardState {
    pub fn name(self) -> StateName {
        match self {
            CardState::Applied => StateName::Applied,
            CardState::Approved => StateName::Approved,
            CardState::InProduction => StateName::InProduction,
            CardState::Produced => StateName::Produced,
            CardState::AtOutlet(_) => StateName::AtOutlet,
            CardState::Issued => StateName::Issued,
            CardState::Active => StateName::Active,
            CardState::ReportedLost { .. } => StateName::ReportedLost,
            CardState::Frozen => StateName::Frozen,
            CardState::Replaced { .. } => StateName::Replaced,
            CardState::Cancelled => StateName::Cancelled,
            CardState::Expired => StateName::Expired,
            CardState::Withdrawn => StateName::Withdrawn,
        }
    }

    /// A live card counts towards the one-card-per-resident rule: every state
    /// but the four terminal ones.
    pub fn is_live(self) -> bool {
        !matches!(
            self,
            CardState::Replaced { .. }
                | CardState::Cancelled
                | CardState::Expired
                | CardState::Withdrawn
        )
    }
}

/// THE deny-list rule: which states terminals must refuse offline. Lost,
/// frozen (which covers fraud), replaced and cancelled cards. Expired cards are
/// not listed: the terminal refuses them by the expiry date in EF15, and
/// dropping them keeps the list from growing forever. Cards never handed over
/// are not listed either: no terminal can meet them.
pub fn must_deny(state: CardState) -> bool {
    matches!(
        state,
        CardState::ReportedLost { .. }
            | CardState::Frozen
            | CardState::Replaced { .. }
            | CardState::Cancelled
    )
}

/// Durations the life cycle depends on, all in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecyclePolicy {
    /// How long the holder may undo a lost report (default 7 days); after it
    /// the system freezes the card.
    pub lost_undo_period_s: u64,
    /// How long balances wait on a card that stopped being live, so offline
    /// purchases still in flight settle first (default 7 days).
    pub cooling_off_s: u64,
    /// How long before expiry renewal is allowed (default 90 days).
    pub renewal_window_s: u64,
}

/// One day in seconds.
pub const DAY_S: u64 = 24 * 60 * 60;

impl Default for LifecyclePolicy {
    fn default() -> Self {
        LifecyclePolicy {
            lost_undo_period_s: 7 * DAY_S,
            cooling_off_s: 7 * DAY_S,
            renewal_window_s: 90 * DAY_S,
        }
    }
}

/// What is asked of a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    Approve,
    /// Refused after review (applied or approved → withdrawn).
    Reject,
    /// The holder withdraws the application (applied or approved → withdrawn).
    Withdraw,
    SendToProduction,
    /// The bureau's result file reports the card personalized, valid until the
    /// expiry date written to EF15 (start + 10 years).
    ProductionDone {
        valid_until: Timestamp,
    },
    /// The bureau's result file reports a failure: back to the production queue.
    ProductionFailed,
    DeliverToOutlet(OutletId),
    /// Delivery by post (produced → issued).
    Post,
    /// Handed over at the outlet (at_outlet → issued).
    HandOver,
    Activate,
    ReportLost,
    UndoLost,
    Freeze,
    Unfreeze,
    /// 补卡 with the newly allocated `successor` number.
    Replace {
        successor: CardNumber,
    },
    /// Renewal before expiry with the newly allocated `successor` number.
    Renew {
        successor: CardNumber,
    },
    Cancel,
    Expire,
}

/// The kind of an [`Action`] without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ActionKind {
    Approve,
    Reject,
    Withdraw,
    SendToProduction,
    ProductionDone,
    ProductionFailed,
    DeliverToOutlet,
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

impl Action {
    pub fn kind(self) -> ActionKind {
        match self {
            Action::Approve => ActionKind::Approve,
            Action::Reject => ActionKind::Reject,
            Action::Withdraw => ActionKind::Withdraw,
            Action::SendToProduction => ActionKind::SendToProduction,
            Action::ProductionDone { .. } => ActionKind::ProductionDone,
            Action::ProductionFailed => ActionKind::ProductionFailed,
            Action::DeliverToOutlet(_) => ActionKind::DeliverToOutlet,
            Action::Post => ActionKind::Post,
            Action::HandOver => ActionKind::HandOver,
            Action::Activate => ActionKind::Activate,
            Action::ReportLost => ActionKind::ReportLost,
            Action::UndoLost => ActionKind::UndoLost,
            Action::Freeze => ActionKind::Freeze,
            Action::Unfreeze => ActionKind::Unfreeze,
            Action::Replace { .. } => ActionKind::Replace,
            Action::Renew { .. } => ActionKind::Renew,
            Action::Cancel => ActionKind::Cancel,
            Action::Expire => ActionKind::Expire,
        }
    }
}

impl ActionKind {
    /// Who may ask for this action at all (the state checks come after).
    fn actors(self) -> &'static [ActorKind] {
        use ActorKind::*;
        match self {
            ActionKind::Approve | ActionKind::Reject => &[Clerk, Officer],
            ActionKind::Withdraw => &[Holder, Clerk],
            ActionKind::SendToProduction => &[Officer, System],
            ActionKind::ProductionDone | ActionKind::ProductionFailed => &[System],
            ActionKind::DeliverToOutlet | ActionKind::Post => &[Clerk, System],
            ActionKind::HandOver => &[Clerk],
            ActionKind::Activate | ActionKind::ReportLost | ActionKind::UndoLost => {
                &[Holder, Clerk]
            }
            // System freezes only when the lost period is over (checked below).
            ActionKind::Freeze => &[Officer, System],
            ActionKind::Unfreeze => &[Officer],
            ActionKind::Replace | ActionKind::Cancel => &[Holder, Clerk, Officer],
            ActionKind::Renew => &[Holder, Clerk, System],
            ActionKind::Expire => &[System],
        }
    }

    /// Which reasons make sense for this action.
    fn reasons(self) -> &'static [Reason] {
        use Reason::*;
        match self {
            ActionKind::Approve
            | ActionKind::SendToProduction
            | ActionKind::ProductionDone
            | ActionKind::DeliverToOutlet
            | ActionKind::Post
            | ActionKind::HandOver => &[Routine],
            ActionKind::Reject => &[Ineligible, Fraud],
            ActionKind::Withdraw => &[HolderRequest],
            ActionKind::ProductionFailed => &[ProductionFailure],
            ActionKind::Activate | ActionKind::UndoLost => &[HolderRequest],
            ActionKind::ReportLost => &[Lost],
            ActionKind::Freeze => &[Fraud, LostPeriodOver, HolderGone],
            ActionKind::Unfreeze => &[Cleared],
            ActionKind::Replace => &[Lost, Damaged, Fraud],
            ActionKind::Renew => &[Renewal],
            ActionKind::Cancel => &[HolderRequest, HolderGone, Fraud],
            ActionKind::Expire => &[ValidityOver],
        }
    }
}

/// An action with its reason and actor: everything a transition is asked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub action: Action,
    pub reason: Reason,
    pub actor: Actor,
}

impl Command {
    pub fn new(action: Action, reason: Reason, actor: Actor) -> Self {
        Command {
            action,
            reason,
            actor,
        }
    }
}

/// A card as the life cycle sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub number: CardNumber,
    pub holder: ResidentKey,
    pub state: CardState,
    /// Set when the bureau reports the card produced (the EF15 expiry date).
    pub valid_until: Option<Timestamp>,
}

impl Card {
    /// A new application: a card in `applied`.
    pub fn applied(number: CardNumber, holder: ResidentKey) -> Self {
        Card {
            number,
            holder,
            state: CardState::Applied,
            valid_until: None,
        }
    }

    /// A successor of a replaced or renewed card: eligibility was already
    /// established, so it starts at `approved`.
    pub fn successor(number: CardNumber, holder: ResidentKey) -> Self {
        Card {
            number,
            holder,
            state: CardState::Approved,
            valid_until: None,
        }
    }
}

/// The audit entry of one transition (the audit crate chains it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub card: CardNumber,
    pub holder: ResidentKey,
    pub from: StateName,
    pub to: StateName,
    pub action: ActionKind,
    pub reason: Reason,
    pub actor: Actor,
    pub at: Timestamp,
}

/// What the platform must do after a transition, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    Audit(AuditRecord),
    DenyAdd(CardNumber),
    DenyRemove(CardNumber),
    /// Create the successor card (at `approved`) for the same holder.
    CreateSuccessor {
        number: CardNumber,
        holder: ResidentKey,
    },
    /// Move whatever the ledger holds for `from` (e-purse shadow and accounts)
    /// to `to` once `not_before` has passed. The amount is taken at release,
    /// not now, so offline purchases uploaded meanwhile settle on `from` first.
    MoveBalancesAfter {
        from: CardNumber,
        to: CardNumber,
        not_before: Timestamp,
    },
    /// Refund whatever the ledger holds for `card` to the holder's bank
    /// account or online account once `not_before` has passed.
    RefundAfter {
        card: CardNumber,
        holder: ResidentKey,
        not_before: Timestamp,
    },
    /// Tell the holder their card changed state.
    Notify {
        holder: ResidentKey,
        card: CardNumber,
        state: StateName,
    },
}

/// The outcome of an accepted transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The card after the transition.
    pub card: Card,
    pub effects: Vec<Effect>,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LifecycleError {
    #[error("a card in state {state} cannot {action:?}")]
    NotAllowed {
        state: StateName,
        action: ActionKind,
    },
    #[error("{actor:?} may not {action:?}")]
    ActorNotAllowed {
        action: ActionKind,
        actor: ActorKind,
    },
    #[error("reason {reason:?} does not fit {action:?}")]
    ReasonNotAllowed { action: ActionKind, reason: Reason },
    #[error("only the card's own holder may {action:?} it")]
    NotTheHolder { action: ActionKind },
    #[error("the lost report can be undone only until {deadline} (now {now})")]
    UndoPeriodOver { deadline: Timestamp, now: Timestamp },
    #[error("the lost report can be undone until {deadline}: the system may freeze only after it")]
    LostPeriodNotOver { deadline: Timestamp, now: Timestamp },
    #[error("an active card is replaced only when damaged; report it lost first")]
    ReplaceActiveNeedsDamage,
    #[error("renewal opens at {opens} and closes at {closes} (now {now})")]
    OutsideRenewalWindow {
        opens: Timestamp,
        closes: Timestamp,
        now: Timestamp,
    },
    #[error("the card is valid until {valid_until:?}: it has not expired at {now}")]
    NotExpired {
        valid_until: Option<Timestamp>,
        now: Timestamp,
    },
    #[error("the validity date {valid_until} is not after now ({now})")]
    ValidityInPast {
        valid_until: Timestamp,
        now: Timestamp,
    },
    #[error("a card cannot succeed itself")]
    SuccessorIsSelf,
}

/// Applies `command` to `card` at time `now`. The only way a card changes state.
pub fn transition(
    card: &Card,
    command: &Command,
    now: Timestamp,
    policy: &LifecyclePolicy,
) -> Result<Transition, LifecycleError> {
    let action = command.action;
    let kind = action.kind();
    let actor = command.actor;
    if !kind.actors().contains(&actor.kind()) {
        return Err(LifecycleError::ActorNotAllowed {
            action: kind,
            actor: actor.kind(),
        });
    }
    if let Actor::Holder(who) = actor
        && who != card.holder
    {
        return Err(LifecycleError::NotTheHolder { action: kind });
    }
    if !kind.reasons().contains(&command.reason) {
        return Err(LifecycleError::ReasonNotAllowed {
            action: kind,
            reason: command.reason,
        });
    }
    let not_allowed = LifecycleError::NotAllowed {
        state: card.state.name(),
        action: kind,
    };

    use CardState as S;
    let mut next = *card;
    let mut successor = None;
    next.state = match (card.state, action) {
        (S::Applied, Action::Approve) => S::Approved,
        (S::Applied | S::Approved, Action::Reject | Action::Withdraw) => S::Withdrawn,
        (S::Approved, Action::SendToProduction) => S::InProduction,
        (S::InProduction, Action::ProductionDone { valid_until }) => {
            if valid_until <= now {
                return Err(LifecycleError::ValidityInPast { valid_until, now });
            }
            next.valid_until = Some(valid_until);
            S::Produced
        }
        (S::InProduction, Action::ProductionFailed) => S::Approved,
        (S::Produced, Action::DeliverToOutlet(outlet)) => S::AtOutlet(outlet),
        (S::Produced, Action::Post) => S::Issued,
        (S::AtOutlet(_), Action::HandOver) => S::Issued,
        (S::Issued, Action::Activate) => S::Active,
        (S::Active, Action::ReportLost) => S::ReportedLost { reported_at: now },
        (S::ReportedLost { reported_at }, Action::UndoLost) => {
            let deadline = reported_at.plus_s(policy.lost_undo_period_s);
            if now >= deadline {
                return Err(LifecycleError::UndoPeriodOver { deadline, now });
            }
            S::Active
        }
        (S::ReportedLost { reported_at }, Action::Freeze) if actor == Actor::System => {
            let deadline = reported_at.plus_s(policy.lost_undo_period_s);
            if now < deadline {
                return Err(LifecycleError::LostPeriodNotOver { deadline, now });
            }
            S::Frozen
        }
        // The system's sweep freezes only lost cards whose period ran out.
        (_, Action::Freeze) if actor == Actor::System => return Err(not_allowed),
        (S::Active | S::ReportedLost { .. }, Action::Freeze) => S::Frozen,
        (S::Frozen, Action::Unfreeze) => S::Active,
        (S::Active | S::ReportedLost { .. } | S::Frozen, Action::Replace { successor: new }) => {
            if card.state == S::Active && command.reason != Reason::Damaged {
                return Err(LifecycleError::ReplaceActiveNeedsDamage);
            }
            if new == card.number {
                return Err(LifecycleError::SuccessorIsSelf);
            }
            successor = Some(new);
            S::Replaced { successor: new }
        }
        (S::Active, Action::Renew { successor: new }) => {
            let closes = card.valid_until.ok_or(not_allowed.clone())?;
            let opens = closes.minus_s(policy.renewal_window_s);
            if now < opens || now >= closes {
                return Err(LifecycleError::OutsideRenewalWindow { opens, closes, now });
            }
            if new == card.number {
                return Err(LifecycleError::SuccessorIsSelf);
            }
            successor = Some(new);
            S::Replaced { successor: new }
        }
        (S::Active | S::ReportedLost { .. } | S::Frozen, Action::Cancel) => S::Cancelled,
        (
            S::Produced
            | S::AtOutlet(_)
            | S::Issued
            | S::Active
            | S::ReportedLost { .. }
            | S::Frozen
            | S::Replaced { .. }
            | S::Cancelled,
            Action::Expire,
        ) => match card.valid_until {
            Some(valid_until) if now >= valid_until => S::Expired,
            valid_until => return Err(LifecycleError::NotExpired { valid_until, now }),
        },
        _ => return Err(not_allowed),
    };

    let mut effects = vec![Effect::Audit(AuditRecord {
        card: card.number,
        holder: card.holder,
        from: card.state.name(),
        to: next.state.name(),
        action: kind,
        reason: command.reason,
        actor,
        at: now,
    })];
    match (must_deny(card.state), must_deny(next.state)) {
        (false, true) => effects.push(Effect::DenyAdd(card.number)),
        (true, false) => effects.push(Effect::DenyRemove(card.number)),
        _ => {}
    }
    if let Some(number) = successor {
        effects.push(Effect::CreateSuccessor {
            number,
            holder: card.holder,
        });
    }
    if card.state.is_live() && !next.state.is_live() {
        let not_before = now.plus_s(policy.cooling_off_s);
        effects.push(match successor {
            Some(to) => Effect::MoveBalancesAfter {
                from: card.number,
                to,
                not_before,
            },
            None => Effect::RefundAfter {
                card: card.number,
                holder: card.holder,
                not_before,
            },
        });
    }
    effects.push(Effect::Notify {
        holder: card.holder,
        card: card.number,
        state: next.state.name(),
    });
    Ok(Transition {
        card: next,
        effects,
    })
}
