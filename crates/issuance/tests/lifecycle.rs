//! The life-cycle state machine: paths, refusals, effects and the complete
//! table of which state accepts which action.

use chip::CardNumber;
use issuance::lifecycle::DAY_S;
use issuance::{
    Action, ActionKind, Actor, Card, CardState, ClerkId, Command, Effect, LifecycleError,
    LifecyclePolicy, OfficerId, OutletId, Reason, ResidentKey, StateName, Timestamp, must_deny,
    transition,
};

const HOLDER: ResidentKey = ResidentKey(7);
const CLERK: Actor = Actor::Clerk(ClerkId(1));
const OFFICER: Actor = Actor::Officer(OfficerId(1));
const T0: Timestamp = Timestamp(1_700_000_000);
const TEN_YEARS_S: u64 = 3653 * DAY_S;

fn number(sequence: u32) -> CardNumber {
    CardNumber::from_sequence(sequence).unwrap()
}

fn policy() -> LifecyclePolicy {
    LifecyclePolicy::default()
}

fn card_in(state: CardState) -> Card {
    Card {
        number: number(1),
        holder: HOLDER,
        state,
        valid_until: Some(T0.plus_s(TEN_YEARS_S)),
    }
}

/// One accepted step: checks the audit record comes first and the notice last.
fn step(
    card: &Card,
    action: Action,
    reason: Reason,
    actor: Actor,
    now: Timestamp,
) -> (Card, Vec<Effect>) {
    let t = transition(card, &Command::new(action, reason, actor), now, &policy())
        .unwrap_or_else(|e| panic!("{action:?} from {:?} refused: {e}", card.state));
    match t.effects.first() {
        Some(Effect::Audit(a)) => {
            assert_eq!(a.from, card.state.name());
            assert_eq!(a.to, t.card.state.name());
            assert_eq!(
                (a.action, a.reason, a.actor, a.at),
                (action.kind(), reason, actor, now)
            );
        }
        other => panic!("first effect must be the audit record, got {other:?}"),
    }
    assert!(matches!(t.effects.last(), Some(Effect::Notify { .. })));
    (t.card, t.effects)
}

/// Effects other than audit and notify, which every transition has.
fn side_effects(effects: &[Effect]) -> Vec<Effect> {
    effects
        .iter()
        .filter(|e| !matches!(e, Effect::Audit(_) | Effect::Notify { .. }))
        .copied()
        .collect()
}

fn active() -> Card {
    card_in(CardState::Active)
}

#[test]
fn application_to_active_changes_no_list_and_moves_no_money() {
    let holder = Actor::Holder(HOLDER);
    let mut card = Card::applied(number(1), HOLDER);
    let valid_until = T0.plus_s(TEN_YEARS_S);
    let path = [
        (Action::Approve, Reason::Routine, CLERK, StateName::Approved),
        (
            Action::SendToProduction,
            Reason::Routine,
            Actor::System,
            StateName::InProduction,
        ),
        (
            Action::ProductionDone { valid_until },
            Reason::Routine,
            Actor::System,
            StateName::Produced,
        ),
        (
            Action::DeliverToOutlet(OutletId(3)),
            Reason::Routine,
            Actor::System,
            StateName::AtOutlet,
        ),
        (Action::HandOver, Reason::Routine, CLERK, StateName::Issued),
        (
            Action::Activate,
            Reason::HolderRequest,
            holder,
            StateName::Active,
        ),
    ];
    for (action, reason, actor, expected) in path {
        let (next, effects) = step(&card, action, reason, actor, T0);
        assert_eq!(next.state.name(), expected);
        assert_eq!(side_effects(&effects), vec![], "{action:?}");
        card = next;
    }
    assert_eq!(card.valid_until, Some(valid_until));
}

#[test]
fn production_failure_requeues_and_post_skips_the_outlet() {
    let card = card_in(CardState::InProduction);
    let (card, _) = step(
        &card,
        Action::ProductionFailed,
        Reason::ProductionFailure,
        Actor::System,
        T0,
    );
    assert_eq!(card.state, CardState::Approved);
    let (card, _) = step(
        &card_in(CardState::Produced),
        Action::Post,
        Reason::Routine,
        CLERK,
        T0,
    );
    assert_eq!(card.state, CardState::Issued);
    let err = transition(
        &card_in(CardState::InProduction),
        &Command::new(
            Action::ProductionDone { valid_until: T0 },
            Reason::Routine,
            Actor::System,
        ),
        T0,
        &policy(),
    );
    assert_eq!(
        err,
        Err(LifecycleError::ValidityInPast {
            valid_until: T0,
            now: T0
        })
    );
}

#[test]
fn lost_report_can_be_undone_only_within_the_period() {
    let holder = Actor::Holder(HOLDER);
    let (lost, effects) = step(&active(), Action::ReportLost, Reason::Lost, holder, T0);
    assert_eq!(lost.state, CardState::ReportedLost { reported_at: T0 });
    assert_eq!(side_effects(&effects), vec![Effect::DenyAdd(number(1))]);

    let last_moment = T0.plus_s(7 * DAY_S - 1);
    let (back, effects) = step(
        &lost,
        Action::UndoLost,
        Reason::HolderRequest,
        holder,
        last_moment,
    );
    assert_eq!(back.state, CardState::Active);
    assert_eq!(side_effects(&effects), vec![Effect::DenyRemove(number(1))]);

    let deadline = T0.plus_s(7 * DAY_S);
    let late = Command::new(Action::UndoLost, Reason::HolderRequest, holder);
    assert_eq!(
        transition(&lost, &late, deadline, &policy()),
        Err(LifecycleError::UndoPeriodOver {
            deadline,
            now: deadline
        })
    );

    // The system's sweep freezes only after the period; the card stays listed.
    let sweep = Command::new(Action::Freeze, Reason::LostPeriodOver, Actor::System);
    assert_eq!(
        transition(&lost, &sweep, last_moment, &policy()),
        Err(LifecycleError::LostPeriodNotOver {
            deadline,
            now: last_moment
        })
    );
    let (frozen, effects) = step(
        &lost,
        Action::Freeze,
        Reason::LostPeriodOver,
        Actor::System,
        deadline,
    );
    assert_eq!(frozen.state, CardState::Frozen);
    assert_eq!(side_effects(&effects), vec![]);
    // The sweep cannot freeze an active card; an officer can.
    assert_eq!(
        transition(&active(), &sweep, deadline, &policy()),
        Err(LifecycleError::NotAllowed {
            state: StateName::Active,
            action: ActionKind::Freeze
        })
    );
    let (frozen, effects) = step(&active(), Action::Freeze, Reason::Fraud, OFFICER, T0);
    assert_eq!(frozen.state, CardState::Frozen);
    assert_eq!(side_effects(&effects), vec![Effect::DenyAdd(number(1))]);
    let (cleared, effects) = step(&frozen, Action::Unfreeze, Reason::Cleared, OFFICER, T0);
    assert_eq!(cleared.state, CardState::Active);
    assert_eq!(side_effects(&effects), vec![Effect::DenyRemove(number(1))]);
}

#[test]
fn replacement_lists_the_old_card_and_moves_balances_after_cooling_off() {
    let holder = Actor::Holder(HOLDER);
    let lost = card_in(CardState::ReportedLost { reported_at: T0 });
    let now = T0.plus_s(DAY_S);
    let (old, effects) = step(
        &lost,
        Action::Replace {
            successor: number(2),
        },
        Reason::Lost,
        holder,
        now,
    );
    assert_eq!(
        old.state,
        CardState::Replaced {
            successor: number(2)
        }
    );
    assert!(!old.state.is_live());
    // Already listed while lost: no second add.
    assert_eq!(
        side_effects(&effects),
        vec![
            Effect::CreateSuccessor {
                number: number(2),
                holder: HOLDER
            },
            Effect::MoveBalancesAfter {
                from: number(1),
                to: number(2),
                not_before: now.plus_s(7 * DAY_S)
            },
        ]
    );

    // A damaged active card goes straight to replacement and onto the list.
    let (_, effects) = step(
        &active(),
        Action::Replace {
            successor: number(2),
        },
        Reason::Damaged,
        CLERK,
        now,
    );
    assert_eq!(side_effects(&effects)[0], Effect::DenyAdd(number(1)));
    let lost_active = Command::new(
        Action::Replace {
            successor: number(2),
        },
        Reason::Lost,
        holder,
    );
    assert_eq!(
        transition(&active(), &lost_active, now, &policy()),
        Err(LifecycleError::ReplaceActiveNeedsDamage)
    );
    let to_self = Command::new(
        Action::Replace {
            successor: number(1),
        },
        Reason::Lost,
        holder,
    );
    assert_eq!(
        transition(&lost, &to_self, now, &policy()),
        Err(LifecycleError::SuccessorIsSelf)
    );
    assert_eq!(
        Card::successor(number(2), HOLDER).state,
        CardState::Approved
    );
}

#[test]
fn renewal_only_inside_the_window_before_expiry() {
    let card = active();
    let closes = T0.plus_s(TEN_YEARS_S);
    let opens = closes.minus_s(90 * DAY_S);
    let renew = Command::new(
        Action::Renew {
            successor: number(2),
        },
        Reason::Renewal,
        Actor::System,
    );
    for now in [opens.minus_s(1), closes] {
        assert_eq!(
            transition(&card, &renew, now, &policy()),
            Err(LifecycleError::OutsideRenewalWindow { opens, closes, now })
        );
    }
    let (old, effects) = step(&card, renew.action, Reason::Renewal, Actor::System, opens);
    assert_eq!(
        old.state,
        CardState::Replaced {
            successor: number(2)
        }
    );
    assert!(side_effects(&effects).contains(&Effect::DenyAdd(number(1))));
    assert!(
        side_effects(&effects)
            .iter()
            .any(|e| matches!(e, Effect::MoveBalancesAfter { .. }))
    );
}

#[test]
fn cancellation_refunds_and_lists() {
    let now = T0;
    for state in [
        CardState::Active,
        CardState::Frozen,
        CardState::ReportedLost { reported_at: T0 },
    ] {
        let (card, effects) = step(
            &card_in(state),
            Action::Cancel,
            Reason::HolderRequest,
            CLERK,
            now,
        );
        assert_eq!(card.state, CardState::Cancelled);
        let refund = Effect::RefundAfter {
            card: number(1),
            holder: HOLDER,
            not_before: now.plus_s(7 * DAY_S),
        };
        let expected = if must_deny(state) {
            vec![refund]
        } else {
            vec![Effect::DenyAdd(number(1)), refund]
        };
        assert_eq!(side_effects(&effects), expected, "{state:?}");
    }
    let cancel = Command::new(Action::Cancel, Reason::HolderRequest, CLERK);
    assert_eq!(
        transition(&card_in(CardState::Issued), &cancel, now, &policy()),
        Err(LifecycleError::NotAllowed {
            state: StateName::Issued,
            action: ActionKind::Cancel
        })
    );
}

#[test]
fn expiry_refunds_live_cards_and_drops_dead_ones_from_the_list() {
    let end = T0.plus_s(TEN_YEARS_S);
    let expire = Command::new(Action::Expire, Reason::ValidityOver, Actor::System);
    assert_eq!(
        transition(&active(), &expire, end.minus_s(1), &policy()),
        Err(LifecycleError::NotExpired {
            valid_until: Some(end),
            now: end.minus_s(1)
        })
    );
    let (card, effects) = step(
        &active(),
        Action::Expire,
        Reason::ValidityOver,
        Actor::System,
        end,
    );
    assert_eq!(card.state, CardState::Expired);
    assert_eq!(
        side_effects(&effects),
        vec![Effect::RefundAfter {
            card: number(1),
            holder: HOLDER,
            not_before: end.plus_s(7 * DAY_S)
        }]
    );
    let replaced = card_in(CardState::Replaced {
        successor: number(2),
    });
    let (_, effects) = step(
        &replaced,
        Action::Expire,
        Reason::ValidityOver,
        Actor::System,
        end,
    );
    assert_eq!(side_effects(&effects), vec![Effect::DenyRemove(number(1))]);
}

#[test]
fn actor_and_reason_are_checked() {
    let other = Actor::Holder(ResidentKey(8));
    let lost = Command::new(Action::ReportLost, Reason::Lost, other);
    assert_eq!(
        transition(&active(), &lost, T0, &policy()),
        Err(LifecycleError::NotTheHolder {
            action: ActionKind::ReportLost
        })
    );
    let by_clerk = Command::new(Action::Expire, Reason::ValidityOver, CLERK);
    assert_eq!(
        transition(&active(), &by_clerk, T0, &policy()),
        Err(LifecycleError::ActorNotAllowed {
            action: ActionKind::Expire,
            actor: issuance::ActorKind::Clerk
        })
    );
    let wrong_reason = Command::new(Action::Unfreeze, Reason::HolderRequest, OFFICER);
    assert_eq!(
        transition(&card_in(CardState::Frozen), &wrong_reason, T0, &policy()),
        Err(LifecycleError::ReasonNotAllowed {
            action: ActionKind::Unfreeze,
            reason: Reason::HolderRequest
        })
    );
}

/// Every (state, action) pair with a permitted actor and reason at a time when
/// the period checks pass: the accepted pairs are exactly this table, every
/// refusal names the state and the action, and deny-list effects follow
/// `must_deny` of the two states.
#[test]
fn transition_table_is_exactly_the_documented_one() {
    let states = [
        CardState::Applied,
        CardState::Approved,
        CardState::InProduction,
        CardState::Produced,
        CardState::AtOutlet(OutletId(1)),
        CardState::Issued,
        CardState::Active,
        CardState::ReportedLost { reported_at: T0 },
        CardState::Frozen,
        CardState::Replaced {
            successor: number(3),
        },
        CardState::Cancelled,
        CardState::Expired,
        CardState::Withdrawn,
    ];
    let far = T0.plus_s(TEN_YEARS_S);
    let actions: [(Action, Reason, Actor); 18] = [
        (Action::Approve, Reason::Routine, CLERK),
        (Action::Reject, Reason::Ineligible, OFFICER),
        (
            Action::Withdraw,
            Reason::HolderRequest,
            Actor::Holder(HOLDER),
        ),
        (Action::SendToProduction, Reason::Routine, Actor::System),
        (
            Action::ProductionDone { valid_until: far },
            Reason::Routine,
            Actor::System,
        ),
        (
            Action::ProductionFailed,
            Reason::ProductionFailure,
            Actor::System,
        ),
        (Action::DeliverToOutlet(OutletId(2)), Reason::Routine, CLERK),
        (Action::Post, Reason::Routine, CLERK),
        (Action::HandOver, Reason::Routine, CLERK),
        (
            Action::Activate,
            Reason::HolderRequest,
            Actor::Holder(HOLDER),
        ),
        (Action::ReportLost, Reason::Lost, Actor::Holder(HOLDER)),
        (
            Action::UndoLost,
            Reason::HolderRequest,
            Actor::Holder(HOLDER),
        ),
        (Action::Freeze, Reason::Fraud, OFFICER),
        (Action::Unfreeze, Reason::Cleared, OFFICER),
        (
            Action::Replace {
                successor: number(2),
            },
            Reason::Damaged,
            CLERK,
        ),
        (
            Action::Renew {
                successor: number(2),
            },
            Reason::Renewal,
            CLERK,
        ),
        (Action::Cancel, Reason::HolderRequest, CLERK),
        (Action::Expire, Reason::ValidityOver, Actor::System),
    ];
    use ActionKind as A;
    use StateName as S;
    let allowed: &[(S, A)] = &[
        (S::Applied, A::Approve),
        (S::Applied, A::Reject),
        (S::Applied, A::Withdraw),
        (S::Approved, A::Reject),
        (S::Approved, A::Withdraw),
        (S::Approved, A::SendToProduction),
        (S::InProduction, A::ProductionDone),
        (S::InProduction, A::ProductionFailed),
        (S::Produced, A::DeliverToOutlet),
        (S::Produced, A::Post),
        (S::Produced, A::Expire),
        (S::AtOutlet, A::HandOver),
        (S::AtOutlet, A::Expire),
        (S::Issued, A::Activate),
        (S::Issued, A::Expire),
        (S::Active, A::ReportLost),
        (S::Active, A::Freeze),
        (S::Active, A::Replace),
        (S::Active, A::Renew),
        (S::Active, A::Cancel),
        (S::Active, A::Expire),
        (S::ReportedLost, A::UndoLost),
        (S::ReportedLost, A::Freeze),
        (S::ReportedLost, A::Replace),
        (S::ReportedLost, A::Cancel),
        (S::ReportedLost, A::Expire),
        (S::Frozen, A::Unfreeze),
        (S::Frozen, A::Replace),
        (S::Frozen, A::Cancel),
        (S::Frozen, A::Expire),
        (S::Replaced, A::Expire),
        (S::Cancelled, A::Expire),
    ];
    let mut accepted = Vec::new();
    for state in states {
        for (action, reason, actor) in actions {
            let card = Card {
                valid_until: Some(T0.plus_s(60 * DAY_S)),
                ..card_in(state)
            };
            // Inside the lost period and the renewal window, but past expiry
            // for Expire.
            let now = if action == Action::Expire {
                T0.plus_s(61 * DAY_S)
            } else {
                T0.plus_s(DAY_S)
            };
            match transition(&card, &Command::new(action, reason, actor), now, &policy()) {
                Ok(t) => {
                    accepted.push((state.name(), action.kind()));
                    let adds = t.effects.iter().any(|e| matches!(e, Effect::DenyAdd(_)));
                    let removes = t.effects.iter().any(|e| matches!(e, Effect::DenyRemove(_)));
                    assert_eq!(adds, !must_deny(state) && must_deny(t.card.state));
                    assert_eq!(removes, must_deny(state) && !must_deny(t.card.state));
                }
                Err(e) => assert_eq!(
                    e,
                    LifecycleError::NotAllowed {
                        state: state.name(),
                        action: action.kind()
                    }
                ),
            }
        }
    }
    assert_eq!(accepted, allowed);
}

#[test]
fn deny_rule_and_liveness_per_state() {
    let denied: Vec<StateName> = [
        CardState::Active,
        CardState::ReportedLost { reported_at: T0 },
        CardState::Frozen,
        CardState::Replaced {
            successor: number(2),
        },
        CardState::Cancelled,
        CardState::Expired,
        CardState::Withdrawn,
        CardState::Issued,
    ]
    .into_iter()
    .filter(|s| must_deny(*s))
    .map(CardState::name)
    .collect();
    assert_eq!(
        denied,
        [
            StateName::ReportedLost,
            StateName::Frozen,
            StateName::Replaced,
            StateName::Cancelled
        ]
    );
    assert!(CardState::Applied.is_live() && CardState::Frozen.is_live());
    assert!(!CardState::Expired.is_live() && !CardState::Withdrawn.is_live());
    assert_eq!(StateName::ReportedLost.to_string(), "reported_lost");
}
