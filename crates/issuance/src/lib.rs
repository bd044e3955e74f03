//! The pure core of card issuance (发行管理): the card life cycle as one state
//! machine, eligibility of applications, card number allocation, and the
//! deny-list (黑名单) terminals download.
//!
//! Nothing here does I/O, reads a clock or runs async code: time comes in as a
//! [`Timestamp`], and every side effect a transition needs (audit entry,
//! deny-list change, balance move, refund, notification) comes out as an
//! [`Effect`] for the platform to carry out.

pub mod allocator;
pub mod apps;
pub mod denylist;
pub mod lifecycle;
pub mod production;
pub mod registry;
pub mod time;

pub use allocator::{AllocatorError, CardNumberAllocator, card_sequence};
pub use denylist::{
    DENY_LIST_ENTRIES_MAX, DenyList, DenyListDelta, DenyListError, DenyListSigner,
    DenyListVerifier, DenyListVersion, SIGNATURE_LEN_MAX, SignatureError, Unsigned,
};
pub use lifecycle::{
    Action, ActionKind, Actor, ActorKind, AuditRecord, Card, CardState, ClerkId, Command, Effect,
    LifecycleError, LifecyclePolicy, OfficerId, OutletId, Reason, ResidentKey, StateName,
    Transition, must_deny, transition,
};
pub use registry::{
    Applicant, Application, BalanceDestination, Refusal, Registry, RegistryError, Residency,
};
pub use time::Timestamp;
