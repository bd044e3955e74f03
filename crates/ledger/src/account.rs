//! What accounts exist: their kinds, owners, units, normal sides and floors.
//!
//! An account is named by its natural key, kind + owner + unit, so that opening one twice
//! gives the same account. Owners are internal ids (a resident's row id, a card number, a
//! merchant code), never personal data.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The unit an account counts in. Every transfer balances per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Renminbi, counted in fen.
    Cny,
    /// Loyalty points (积分), counted in whole points.
    Points,
}

impl Unit {
    pub const ALL: [Unit; 2] = [Unit::Cny, Unit::Points];
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Cny => "CNY",
            Unit::Points => "POINTS",
        }
    }
    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.as_str() == s)
    }
}

/// The side on which an account's balance grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormalSide {
    /// Assets (money at banks, suspense): debits increase the balance.
    Debit,
    /// Liabilities and income (citizens' money, payables, fees): credits increase it.
    Credit,
}

impl NormalSide {
    pub fn as_str(self) -> &'static str {
        match self {
            NormalSide::Debit => "debit",
            NormalSide::Credit => "credit",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "debit" => Some(NormalSide::Debit),
            "credit" => Some(NormalSide::Credit),
            _ => None,
        }
    }
}

/// The kinds of account of the citizen card's books (see `DOMAIN.md`, "Where the money sits").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A resident's online account (账户): money the company holds for them.
    CitizenOnline,
    /// The platform's mirror of one chip's e-purse balance (电子钱包影子账户).
    EpurseShadow,
    /// Money owed to one chip, credited on the chip at its next contact (待圈存).
    EpursePendingLoad,
    /// A resident's sub-account for one purpose (a canteen subsidy): spendable only there.
    Earmarked,
    /// What the company owes a merchant or transit operator until settlement.
    MerchantPayable,
    /// What a department prefunded for disbursements and has not yet paid out.
    DepartmentFunding,
    /// Fees and taxes collected for a department from citizens' accounts (代收), owed to the
    /// department until settlement.
    DepartmentCollection,
    /// The company's fee income.
    FeeIncome,
    /// The company's settlement account at a partner bank (asset).
    BankSettlement,
    /// The customer-fund (float, 沉淀资金) account at a partner bank (asset).
    BankFloat,
    /// Money whose destination is not yet known; worked off by an operator.
    Suspense,
    /// A resident's points (积分), in [`Unit::Points`]: never below zero.
    CitizenPoints,
    /// Where points come from (积分发行): its debit balance is every point ever earned, so
    /// points are never created anywhere else.
    PointsIssuance,
    /// Points spent on the redemption catalogue (兑换).
    PointsRedeemed,
    /// Points that reached their expiry (过期).
    PointsExpired,
    /// Points donated to one charity project (公益捐赠).
    PointsCharity,
}

impl AccountKind {
    pub const ALL: [AccountKind; 16] = [
        AccountKind::CitizenOnline,
        AccountKind::EpurseShadow,
        AccountKind::EpursePendingLoad,
        AccountKind::Earmarked,
        AccountKind::MerchantPayable,
        AccountKind::DepartmentFunding,
        AccountKind::DepartmentCollection,
        AccountKind::FeeIncome,
        AccountKind::BankSettlement,
        AccountKind::BankFloat,
        AccountKind::Suspense,
        AccountKind::CitizenPoints,
        AccountKind::PointsIssuance,
        AccountKind::PointsRedeemed,
        AccountKind::PointsExpired,
        AccountKind::PointsCharity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::CitizenOnline => "citizen_online",
            AccountKind::EpurseShadow => "epurse_shadow",
            AccountKind::EpursePendingLoad => "epurse_pending_load",
            AccountKind::Earmarked => "earmarked",
            AccountKind::MerchantPayable => "merchant_payable",
            AccountKind::DepartmentFunding => "department_funding",
            AccountKind::DepartmentCollection => "department_collection",
            AccountKind::FeeIncome => "fee_income",
            AccountKind::BankSettlement => "bank_settlement",
            AccountKind::BankFloat => "bank_float",
            AccountKind::Suspense => "suspense",
            AccountKind::CitizenPoints => "citizen_points",
            AccountKind::PointsIssuance => "points_issuance",
            AccountKind::PointsRedeemed => "points_redeemed",
            AccountKind::PointsExpired => "points_expired",
            AccountKind::PointsCharity => "points_charity",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        AccountKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn normal_side(self) -> NormalSide {
        match self {
            AccountKind::BankSettlement
            | AccountKind::BankFloat
            | AccountKind::Suspense
            | AccountKind::PointsIssuance => NormalSide::Debit,
            _ => NormalSide::Credit,
        }
    }

    /// The lowest balance (on the normal side, after reservations) the account may reach;
    /// `None` when it may go below zero. Citizen-side accounts and prefunded department money
    /// never go negative. Bank accounts may (an overdraft is a fact the books must show), as
    /// may suspense, fee income (a fee refunded) and merchant payables (a refund before the
    /// merchant's earnings arrive is a claim on the merchant, netted at settlement).
    pub fn floor(self) -> Option<i64> {
        match self {
            AccountKind::CitizenOnline
            | AccountKind::EpurseShadow
            | AccountKind::EpursePendingLoad
            | AccountKind::Earmarked
            | AccountKind::DepartmentFunding
            | AccountKind::CitizenPoints
            | AccountKind::PointsRedeemed
            | AccountKind::PointsExpired
            | AccountKind::PointsCharity => Some(0),
            AccountKind::MerchantPayable
            | AccountKind::PointsIssuance
            | AccountKind::DepartmentCollection
            | AccountKind::FeeIncome
            | AccountKind::BankSettlement
            | AccountKind::BankFloat
            | AccountKind::Suspense => None,
        }
    }

    /// Accounts that hold a citizen's money: their sum is the float that must equal the
    /// customer funds at the banks.
    pub fn is_citizen_side(self) -> bool {
        matches!(
            self,
            AccountKind::CitizenOnline
                | AccountKind::EpurseShadow
                | AccountKind::EpursePendingLoad
                | AccountKind::Earmarked
        )
    }

    /// The Beancount root of this kind's accounts.
    pub fn beancount_root(self) -> &'static str {
        match self {
            AccountKind::PointsIssuance => return "Expenses",
            AccountKind::PointsRedeemed | AccountKind::PointsExpired => return "Income",
            _ => {}
        }
        match self.normal_side() {
            NormalSide::Debit => "Assets",
            NormalSide::Credit if self == AccountKind::FeeIncome => "Income",
            NormalSide::Credit => "Liabilities",
        }
    }

    fn owner_shape(self) -> &'static str {
        match self {
            AccountKind::CitizenOnline => "resident",
            AccountKind::EpurseShadow | AccountKind::EpursePendingLoad => "card",
            AccountKind::Earmarked => "earmark",
            AccountKind::MerchantPayable => "merchant",
            AccountKind::DepartmentFunding | AccountKind::DepartmentCollection => "department",
            AccountKind::BankSettlement | AccountKind::BankFloat => "bank",
            AccountKind::FeeIncome
            | AccountKind::Suspense
            | AccountKind::PointsIssuance
            | AccountKind::PointsRedeemed
            | AccountKind::PointsExpired => "company",
            AccountKind::CitizenPoints => "resident",
            AccountKind::PointsCharity => "project",
        }
    }

    /// The kinds that count points only: their accounts are in [`Unit::Points`].
    pub fn is_points(self) -> bool {
        matches!(
            self,
            AccountKind::CitizenPoints
                | AccountKind::PointsIssuance
                | AccountKind::PointsRedeemed
                | AccountKind::PointsExpired
                | AccountKind::PointsCharity
        )
    }
}

/// Who an account belongs to. Codes are short ASCII identifiers (`[A-Za-z0-9_-]`, 1..=32).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Owner {
    /// A resident by the resident base database's row id (not the ID number).
    Resident(i64),
    /// A card by its 16-digit number.
    Card(String),
    /// A resident's earmarked purpose (`canteen`, `library`).
    Earmark {
        resident: i64,
        purpose: String,
    },
    Merchant(String),
    Department(String),
    /// A partner bank by its code.
    Bank(String),
    /// The card company itself.
    Company,
    /// A charity project that receives donated points, by its code.
    Project(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a {kind} account is owned by a {expected}, not {got:?}")]
    WrongOwner {
        kind: &'static str,
        expected: &'static str,
        got: String,
    },
    #[error("owner code {0:?} must be 1 to 32 characters of A-Z, a-z, 0-9, _ or -")]
    BadCode(String),
    #[error("card number {0:?} must be 16 digits")]
    BadCard(String),
    #[error("unknown account kind {0:?}")]
    UnknownKind(String),
    #[error("unknown unit {0:?}")]
    UnknownUnit(String),
    #[error("a {0} account counts points only")]
    WrongUnit(&'static str),
    #[error(
        "owner {0:?} is not in the form resident:N, card:N, earmark:N:PURPOSE, merchant:CODE, department:CODE, bank:CODE or company"
    )]
    BadOwner(String),
}

fn code_ok(s: &str) -> bool {
    (1..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Owner {
    fn shape(&self) -> &'static str {
        match self {
            Owner::Resident(_) => "resident",
            Owner::Card(_) => "card",
            Owner::Earmark { .. } => "earmark",
            Owner::Merchant(_) => "merchant",
            Owner::Department(_) => "department",
            Owner::Bank(_) => "bank",
            Owner::Company => "company",
            Owner::Project(_) => "project",
        }
    }

    fn check(&self) -> Result<(), KeyError> {
        match self {
            Owner::Card(n) if n.len() != 16 || !n.bytes().all(|b| b.is_ascii_digit()) => {
                Err(KeyError::BadCard(n.clone()))
            }
            Owner::Earmark { purpose: c, .. }
            | Owner::Merchant(c)
            | Owner::Department(c)
            | Owner::Bank(c)
            | Owner::Project(c)
                if !code_ok(c) =>
            {
                Err(KeyError::BadCode(c.clone()))
            }
            _ => Ok(()),
        }
    }

    /// The stored text form: `resident:12`, `card:4101…`, `earmark:12:canteen`, `company`.
    pub fn text(&self) -> String {
        match self {
            Owner::Resident(id) => format!("resident:{id}"),
            Owner::Card(n) => format!("card:{n}"),
            Owner::Earmark { resident, purpose } => format!("earmark:{resident}:{purpose}"),
            Owner::Merchant(c) => format!("merchant:{c}"),
            Owner::Department(c) => format!("department:{c}"),
            Owner::Bank(c) => format!("bank:{c}"),
            Owner::Company => "company".into(),
            Owner::Project(c) => format!("project:{c}"),
        }
    }

    pub fn parse(s: &str) -> Result<Owner, KeyError> {
        let bad = || KeyError::BadOwner(s.to_string());
        let owner = match s.split_once(':') {
            None if s == "company" => Owner::Company,
            None => return Err(bad()),
            Some(("resident", id)) => Owner::Resident(id.parse().map_err(|_| bad())?),
            Some(("card", n)) => Owner::Card(n.into()),
            Some(("earmark", rest)) => {
                let (r, p) = rest.split_once(':').ok_or_else(bad)?;
                Owner::Earmark {
                    resident: r.parse().map_err(|_| bad())?,
                    purpose: p.into(),
                }
            }
            Some(("merchant", c)) => Owner::Merchant(c.into()),
            Some(("department", c)) => Owner::Department(c.into()),
            Some(("bank", c)) => Owner::Bank(c.into()),
            Some(("project", c)) => Owner::Project(c.into()),
            Some(_) => return Err(bad()),
        };
        owner.check()?;
        Ok(owner)
    }
}

/// The natural key of an account: opening the same key twice gives the same account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AccountKey {
    kind: AccountKind,
    owner: Owner,
    unit: Unit,
}

impl AccountKey {
    /// Checks that the owner fits the kind (a card for an e-purse, a resident for an online
    /// account, …) and that codes are well formed.
    pub fn new(kind: AccountKind, owner: Owner, unit: Unit) -> Result<Self, KeyError> {
        if owner.shape() != kind.owner_shape() {
            return Err(KeyError::WrongOwner {
                kind: kind.as_str(),
                expected: kind.owner_shape(),
                got: owner.text(),
            });
        }
        owner.check()?;
        if kind.is_points() && unit != Unit::Points {
            return Err(KeyError::WrongUnit(kind.as_str()));
        }
        Ok(AccountKey { kind, owner, unit })
    }

    pub fn parse(kind: &str, owner: &str, unit: &str) -> Result<Self, KeyError> {
        AccountKey::new(
            AccountKind::parse(kind).ok_or_else(|| KeyError::UnknownKind(kind.into()))?,
            Owner::parse(owner)?,
            Unit::parse(unit).ok_or_else(|| KeyError::UnknownUnit(unit.into()))?,
        )
    }

    pub fn citizen_online(resident: i64) -> Self {
        AccountKey {
            kind: AccountKind::CitizenOnline,
            owner: Owner::Resident(resident),
            unit: Unit::Cny,
        }
    }
    /// A card's e-purse shadow. Panics on a malformed card number (a programmer error:
    /// callers hold a parsed `CardNumber`).
    pub fn epurse_shadow(card: &str) -> Self {
        AccountKey::new(
            AccountKind::EpurseShadow,
            Owner::Card(card.into()),
            Unit::Cny,
        )
        .expect("a 16-digit card number")
    }
    /// Money owed to a card's chip, loaded at its next contact.
    pub fn epurse_pending_load(card: &str) -> Self {
        AccountKey::new(
            AccountKind::EpursePendingLoad,
            Owner::Card(card.into()),
            Unit::Cny,
        )
        .expect("a 16-digit card number")
    }
    /// A resident's points account.
    pub fn citizen_points(resident: i64) -> Self {
        AccountKey {
            kind: AccountKind::CitizenPoints,
            owner: Owner::Resident(resident),
            unit: Unit::Points,
        }
    }
    /// One of the company's points accounts (issuance, redeemed, expired). Panics on a kind
    /// that is not one (a programmer error).
    pub fn points_company(kind: AccountKind) -> Self {
        AccountKey::new(kind, Owner::Company, Unit::Points).expect("a company points account")
    }
    /// A charity project's donated points; `Err` on a malformed code.
    pub fn points_charity(project: &str) -> Result<Self, KeyError> {
        AccountKey::new(
            AccountKind::PointsCharity,
            Owner::Project(project.into()),
            Unit::Points,
        )
    }
    pub fn company(kind: AccountKind, unit: Unit) -> Result<Self, KeyError> {
        AccountKey::new(kind, Owner::Company, unit)
    }

    pub fn kind(&self) -> AccountKind {
        self.kind
    }
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
    pub fn unit(&self) -> Unit {
        self.unit
    }
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.kind.as_str(),
            self.owner.text(),
            self.unit.as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_and_refuse() {
        let k = AccountKey::parse("earmarked", "earmark:12:canteen", "CNY").unwrap();
        assert_eq!(k.to_string(), "earmarked/earmark:12:canteen/CNY");
        assert_eq!(
            AccountKey::parse("epurse_shadow", "resident:1", "CNY"),
            Err(KeyError::WrongOwner {
                kind: "epurse_shadow",
                expected: "card",
                got: "resident:1".into()
            })
        );
        assert!(matches!(
            AccountKey::parse("epurse_shadow", "card:123", "CNY"),
            Err(KeyError::BadCard(_))
        ));
        assert!(matches!(
            AccountKey::parse("merchant_payable", "merchant:a b", "CNY"),
            Err(KeyError::BadCode(_))
        ));
        assert!(AccountKey::parse("nope", "company", "CNY").is_err());
        assert!(AccountKey::parse("suspense", "company", "USD").is_err());
        // Points accounts count points only; charity accounts belong to a project.
        assert_eq!(
            AccountKey::parse("citizen_points", "resident:1", "CNY"),
            Err(KeyError::WrongUnit("citizen_points"))
        );
        let k = AccountKey::parse("points_charity", "project:trees-2026", "POINTS").unwrap();
        assert_eq!(k, AccountKey::points_charity("trees-2026").unwrap());
        assert!(AccountKey::parse("points_charity", "company", "POINTS").is_err());
        for k in AccountKind::ALL {
            assert_eq!(AccountKind::parse(k.as_str()), Some(k));
            // Citizen-side money may never go negative.
            if k.is_citizen_side() {
                assert_eq!(k.floor(), Some(0));
            }
        }
    }
}
