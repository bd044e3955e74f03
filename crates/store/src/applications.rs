//! Card applications' details (channel, delivery choice, photo reference, guardian) and the
//! service enrolment of non-residents who hold another city's social security card.

use crate::Result;
use async_trait::async_trait;
use keys::BlindIndex;

/// What an application for a card asked for, beside the card row itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplicationRow {
    pub number: String,
    /// `counter` or `online`.
    pub channel: String,
    /// `outlet_now` (instant issuance), `outlet_later` (collect at an outlet) or `post`.
    pub delivery: String,
    pub outlet_code: Option<String>,
    /// Where the holder's photo is kept (`police:<id>` or `upload:<digest>`), never the photo.
    pub photo_ref: Option<String>,
    pub guardian_resident_id: Option<i64>,
    pub created_ms: i64,
}

/// A non-resident enrolled for the city's services with the social security card another
/// city issued. The card number is personal data: sealed, with a blind index for uniqueness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnrolment {
    pub resident_id: i64,
    /// GB/T 2260 code of the issuing city (six digits).
    pub issuer_region: String,
    pub card_blind: BlindIndex,
    pub card_sealed: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentRow {
    pub id: i64,
    pub resident_id: i64,
    pub issuer_region: String,
    pub card_blind: BlindIndex,
    pub card_sealed: Vec<u8>,
    pub created_ms: i64,
    pub withdrawn_ms: Option<i64>,
}

#[async_trait]
pub trait ApplicationStore: Send + Sync {
    async fn card_application(&self, number: &str) -> Result<Option<ApplicationRow>>;

    /// Enrols a non-resident. `Conflict` when the resident or the card is already enrolled
    /// (and not withdrawn).
    async fn enrolment_insert(
        &self,
        e: &NewEnrolment,
        audit: audit::Draft,
        now_ms: i64,
    ) -> Result<EnrolmentRow>;

    async fn enrolments_of_resident(&self, resident_id: i64) -> Result<Vec<EnrolmentRow>>;
}
