//! A pure model of the card registry: residents, their applications and
//! cards, with the one-live-card rule and card number allocation. The
//! platform keeps the same facts in storage; this model states the rules
//! once and is what the property tests drive.

use std::collections::{BTreeMap, BTreeSet};

use chip::CardNumber;
use thiserror::Error;

use crate::allocator::{AllocatorError, CardNumberAllocator};
use crate::denylist::{DenyList, DenyListVersion};
use crate::lifecycle::{
    Action, Card, CardState, Command, Effect, LifecycleError, LifecyclePolicy, ResidentKey,
    Transition, transition,
};
use crate::time::Timestamp;

/// Where a resident stands with the city, as the resident base database says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// A registered resident of the city.
    Registered,
    /// Not registered here; whether they hold another city's third-generation
    /// social security card (第三代社会保障卡), which can be enrolled for services.
    NonResident { other_city_sscard: bool },
}

/// The eligibility facts of an applicant, derived by the platform from the
/// resident base database (age comes from the ID number and today's date).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applicant {
    pub residency: Residency,
    pub minor: bool,
    /// The guardian of a minor, a registered adult resident.
    pub guardian: Option<ResidentKey>,
}

/// Why an application was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    #[error("not a registered resident of the city")]
    NotRegisteredResident,
    #[error("already holds a live card {0}")]
    AlreadyHasLiveCard(CardNumber),
    #[error("a minor applies with a guardian who is a registered adult resident")]
    MinorWithoutGuardian,
    #[error(transparent)]
    Allocator(#[from] AllocatorError),
}

/// What an accepted application produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Application {
    /// A card in `applied`.
    Card(CardNumber),
    /// A non-resident with another city's third-generation social security
    /// card: no city card, but the existing card is enrolled for services.
    EnrolledForServices,
}

/// Why the registry refused an action on a card.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RegistryError {
    #[error("no card {0}")]
    UnknownCard(CardNumber),
    #[error("successor {0} was not allocated by this registry or is already a card")]
    BadSuccessor(CardNumber),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Allocator(#[from] AllocatorError),
}

/// Where money left on a card belongs now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceDestination {
    /// A live card of the holder.
    Card(CardNumber),
    /// Back to the holder (the card chain ends in a cancelled, expired or
    /// withdrawn card).
    Refund(ResidentKey),
}

/// Residents, cards and the allocator.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    policy: LifecyclePolicy,
    allocator: CardNumberAllocator,
    residents: BTreeMap<ResidentKey, Applicant>,
    cards: BTreeMap<CardNumber, Card>,
    live_card: BTreeMap<ResidentKey, CardNumber>,
    enrolled_for_services: BTreeSet<ResidentKey>,
}

impl Registry {
    pub fn new(policy: LifecyclePolicy, allocator: CardNumberAllocator) -> Self {
        Registry {
            policy,
            allocator,
            ..Registry::default()
        }
    }

    pub fn policy(&self) -> &LifecyclePolicy {
        &self.policy
    }

    /// Records or updates a resident's facts (a resident base feed row).
    pub fn upsert_resident(&mut self, key: ResidentKey, facts: Applicant) {
        self.residents.insert(key, facts);
    }

    /// Applies for a card for `resident`.
    pub fn apply(&mut self, resident: ResidentKey) -> Result<Application, Refusal> {
        let facts = self
            .residents
            .get(&resident)
            .ok_or(Refusal::NotRegisteredResident)?;
        match facts.residency {
            Residency::NonResident {
                other_city_sscard: true,
            } => {
                self.enrolled_for_services.insert(resident);
                return Ok(Application::EnrolledForServices);
            }
            Residency::NonResident {
                other_city_sscard: false,
            } => return Err(Refusal::NotRegisteredResident),
            Residency::Registered => {}
        }
        if facts.minor {
            let guardian_ok = facts
                .guardian
                .and_then(|g| self.residents.get(&g))
                .is_some_and(|g| g.residency == Residency::Registered && !g.minor);
            if !guardian_ok {
                return Err(Refusal::MinorWithoutGuardian);
            }
        }
        if let Some(card) = self.live_card.get(&resident) {
            return Err(Refusal::AlreadyHasLiveCard(*card));
        }
        let number = self.allocator.allocate()?;
        self.cards.insert(number, Card::applied(number, resident));
        self.live_card.insert(resident, number);
        Ok(Application::Card(number))
    }

    /// Allocates a number for a replacement or renewal (pass it in the action).
    pub fn allocate_number(&mut self) -> Result<CardNumber, AllocatorError> {
        self.allocator.allocate()
    }

    /// Applies a command to a card; creates the successor of a replacement or
    /// renewal. Returns the effects for the platform.
    pub fn act(
        &mut self,
        number: CardNumber,
        command: &Command,
        now: Timestamp,
    ) -> Result<Vec<Effect>, RegistryError> {
        let card = self
            .cards
            .get(&number)
            .ok_or(RegistryError::UnknownCard(number))?;
        if let Action::Replace { successor } | Action::Renew { successor } = command.action
            && (!self.allocator.has_allocated(successor) || self.cards.contains_key(&successor))
        {
            return Err(RegistryError::BadSuccessor(successor));
        }
        let Transition {
            card: next,
            effects,
        } = transition(card, command, now, &self.policy)?;
        let holder = next.holder;
        self.cards.insert(number, next);
        for effect in &effects {
            if let Effect::CreateSuccessor { number, holder } = *effect {
                self.cards.insert(number, Card::successor(number, holder));
                self.live_card.insert(holder, number);
            }
        }
        if !next.state.is_live() && self.live_card.get(&holder) == Some(&number) {
            self.live_card.remove(&holder);
        }
        Ok(effects)
    }

    pub fn card(&self, number: CardNumber) -> Option<&Card> {
        self.cards.get(&number)
    }

    pub fn cards(&self) -> impl Iterator<Item = &Card> {
        self.cards.values()
    }

    /// The resident's live card, if any.
    pub fn live_card(&self, resident: ResidentKey) -> Option<CardNumber> {
        self.live_card.get(&resident).copied()
    }

    pub fn is_enrolled_for_services(&self, resident: ResidentKey) -> bool {
        self.enrolled_for_services.contains(&resident)
    }

    /// Where money still on `number` belongs: follows replacements to the live
    /// successor, or back to the holder if the chain ends in a dead card.
    pub fn balance_destination(&self, number: CardNumber) -> Option<BalanceDestination> {
        let mut card = self.cards.get(&number)?;
        // Each replacement points at a newer number, so the chain is finite;
        // the bound guards against a corrupted model all the same.
        for _ in 0..=self.cards.len() {
            match card.state {
                CardState::Replaced { successor } => card = self.cards.get(&successor)?,
                state if state.is_live() => return Some(BalanceDestination::Card(card.number)),
                _ => return Some(BalanceDestination::Refund(card.holder)),
            }
        }
        None
    }

    /// The deny-list at `version` built from the card states by [`crate::must_deny`].
    pub fn deny_list(&self, version: DenyListVersion) -> DenyList {
        DenyList::from_cards(
            version,
            self.cards
                .values()
                .filter(|c| crate::lifecycle::must_deny(c.state))
                .map(|c| c.number),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{Actor, Reason};

    const ADULT: Applicant = Applicant {
        residency: Residency::Registered,
        minor: false,
        guardian: None,
    };

    fn registry() -> Registry {
        let mut r = Registry::default();
        r.upsert_resident(ResidentKey(1), ADULT);
        r
    }

    #[test]
    fn refusals_name_their_reason() {
        let mut r = registry();
        assert_eq!(
            r.apply(ResidentKey(99)),
            Err(Refusal::NotRegisteredResident)
        );
        r.upsert_resident(
            ResidentKey(2),
            Applicant {
                residency: Residency::NonResident {
                    other_city_sscard: false,
                },
                ..ADULT
            },
        );
        assert_eq!(r.apply(ResidentKey(2)), Err(Refusal::NotRegisteredResident));
        r.upsert_resident(
            ResidentKey(3),
            Applicant {
                residency: Residency::NonResident {
                    other_city_sscard: true,
                },
                ..ADULT
            },
        );
        assert_eq!(
            r.apply(ResidentKey(3)),
            Ok(Application::EnrolledForServices)
        );
        assert!(r.is_enrolled_for_services(ResidentKey(3)));
        assert_eq!(r.live_card(ResidentKey(3)), None);

        let minor = Applicant {
            minor: true,
            guardian: Some(ResidentKey(4)),
            ..ADULT
        };
        r.upsert_resident(ResidentKey(5), minor);
        // The guardian is not a known resident yet.
        assert_eq!(r.apply(ResidentKey(5)), Err(Refusal::MinorWithoutGuardian));
        r.upsert_resident(ResidentKey(4), ADULT);
        assert!(matches!(r.apply(ResidentKey(5)), Ok(Application::Card(_))));

        let Ok(Application::Card(first)) = r.apply(ResidentKey(1)) else {
            panic!("adult resident must get a card");
        };
        assert_eq!(
            r.apply(ResidentKey(1)),
            Err(Refusal::AlreadyHasLiveCard(first))
        );
    }

    #[test]
    fn withdrawn_application_frees_the_resident_but_not_the_number() {
        let mut r = registry();
        let Ok(Application::Card(first)) = r.apply(ResidentKey(1)) else {
            panic!("card expected");
        };
        let withdraw = Command::new(
            Action::Withdraw,
            Reason::HolderRequest,
            Actor::Holder(ResidentKey(1)),
        );
        r.act(first, &withdraw, Timestamp(0)).unwrap();
        assert_eq!(r.live_card(ResidentKey(1)), None);
        let Ok(Application::Card(second)) = r.apply(ResidentKey(1)) else {
            panic!("card expected");
        };
        assert_ne!(first, second);
    }

    #[test]
    fn successor_must_come_from_the_allocator() {
        let mut r = registry();
        let Ok(Application::Card(card)) = r.apply(ResidentKey(1)) else {
            panic!("card expected");
        };
        let foreign = CardNumber::from_sequence(500).unwrap();
        let replace = Command::new(
            Action::Replace { successor: foreign },
            Reason::Lost,
            Actor::Holder(ResidentKey(1)),
        );
        assert_eq!(
            r.act(card, &replace, Timestamp(0)),
            Err(RegistryError::BadSuccessor(foreign))
        );
        let reuse = Command::new(
            Action::Replace { successor: card },
            Reason::Lost,
            Actor::Holder(ResidentKey(1)),
        );
        assert_eq!(
            r.act(card, &reuse, Timestamp(0)),
            Err(RegistryError::BadSuccessor(card))
        );
    }
}
