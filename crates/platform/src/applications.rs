//! What a card application carries beside the applicant (channel, delivery choice, photo
//! reference), and the service enrolment of non-residents who hold another city's
//! third-generation social security card: they are not issued a city card, but are recorded
//! with their existing card so the city's services (library, hospital, transit concessions)
//! can accept it.

use crate::{Caller, Platform, PlatformError, Result};
use resident::{Residency, ResidentId};
use store::{EnrolmentRow, NewEnrolment, Role};

/// Where an application was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channel {
    /// At a service outlet's counter, by a clerk.
    #[default]
    Counter,
    /// By the resident online (portal or phone app).
    Online,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Counter => "counter",
            Channel::Online => "online",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "counter" => Ok(Channel::Counter),
            "online" => Ok(Channel::Online),
            _ => Err(PlatformError::invalid("channel", "counter or online")),
        }
    }
}

/// How the holder gets the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Personalized on the spot at the outlet (instant issuance).
    OutletNow,
    /// Produced by the bureau and collected later at the chosen outlet.
    #[default]
    OutletLater,
    /// Produced by the bureau and posted to the address in the resident base database.
    Post,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::OutletNow => "outlet_now",
            Delivery::OutletLater => "outlet_later",
            Delivery::Post => "post",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "outlet_now" => Ok(Delivery::OutletNow),
            "outlet_later" => Ok(Delivery::OutletLater),
            "post" => Ok(Delivery::Post),
            _ => Err(PlatformError::invalid(
                "delivery",
                "outlet_now, outlet_later or post",
            )),
        }
    }
}

/// A card application as a clerk or the resident fills it in.
#[derive(Debug, Clone, Default)]
pub struct CardApplicationForm {
    pub id_number: String,
    pub card_type: String,
    /// Required for applicants under [`crate::cards::ADULT_AGE`].
    pub guardian_id_number: Option<String>,
    pub channel: Channel,
    pub delivery: Delivery,
    /// The outlet that hands the card over: required for `outlet_now`; for `outlet_later`
    /// optional (without it, the outlet is chosen when the batch is distributed).
    pub outlet_code: Option<String>,
    /// Where the photo printed on the card is kept: `police:<id>` (the ID card photo the
    /// police feed holds) or `upload:<SM3 hex>` (a photo taken at the counter or uploaded).
    pub photo_ref: Option<String>,
}

/// Longest outlet code and photo reference accepted.
pub const OUTLET_CODE_MAX: usize = 16;
pub const PHOTO_REF_MAX: usize = 80;

impl CardApplicationForm {
    /// Checks the form's own fields (eligibility needs the database and comes later).
    pub fn check(&self) -> Result<()> {
        match (self.delivery, &self.outlet_code) {
            (Delivery::Post, Some(_)) => {
                return Err(PlatformError::invalid(
                    "outlet_code",
                    "a posted card names no outlet",
                ));
            }
            (Delivery::OutletNow, None) => {
                return Err(PlatformError::invalid(
                    "outlet_code",
                    "instant issuance names the outlet doing it",
                ));
            }
            (_, Some(code)) if !valid_outlet_code(code) => {
                return Err(PlatformError::invalid(
                    "outlet_code",
                    format!("1 to {OUTLET_CODE_MAX} characters A-Z, 0-9 or -"),
                ));
            }
            _ => {}
        }
        if self.delivery == Delivery::OutletNow && self.channel == Channel::Online {
            return Err(PlatformError::invalid(
                "delivery",
                "instant issuance happens at a counter, not online",
            ));
        }
        if let Some(p) = &self.photo_ref {
            check_photo_ref(p)?;
        }
        Ok(())
    }
}

fn valid_outlet_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= OUTLET_CODE_MAX
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

fn check_photo_ref(p: &str) -> Result<()> {
    let bad = |why: &str| PlatformError::invalid("photo_ref", why.to_string());
    if p.len() > PHOTO_REF_MAX {
        return Err(bad("longer than 80 characters"));
    }
    match p.split_once(':') {
        Some(("police", id))
            if !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            Ok(())
        }
        Some(("upload", digest))
            if digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(())
        }
        _ => Err(bad(
            "police:<photo id> or upload:<SM3 of the photo, 64 hex digits>",
        )),
    }
}

/// An enrolment as shown to operators: the other city's card number masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentView {
    pub id: i64,
    pub issuer_region: String,
    /// The card number with all but the last four characters masked.
    pub card_number: String,
    pub created_ms: i64,
    pub withdrawn: bool,
}

/// Longest social security card number accepted (the national format is 9 characters; some
/// issuers print longer card serials).
pub const SSC_NUMBER_MAX: usize = 20;

/// The city's own region prefix: its residents get a city card instead.
const CITY_REGION_PREFIX: &str = "4101";

impl Platform {
    /// Enrols a non-resident for the city's services with the third-generation social
    /// security card another city issued (`issuer_region`, a GB/T 2260 code). Refused for
    /// residents of the city (they apply for a city card), for a card of this city, and for a
    /// resident or card already enrolled.
    pub async fn enrol_non_resident(
        &self,
        caller: &Caller,
        id_number: &str,
        issuer_region: &str,
        ssc_number: &str,
    ) -> Result<EnrolmentView> {
        if !matches!(caller.role, Role::Administrator | Role::CounterClerk) {
            return Err(PlatformError::Forbidden(
                "only counter clerks and administrators enrol non-residents".into(),
            ));
        }
        if issuer_region.len() != 6 || !issuer_region.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PlatformError::invalid(
                "issuer_region",
                "a six-digit GB/T 2260 region code",
            ));
        }
        if issuer_region.starts_with(CITY_REGION_PREFIX) {
            return Err(PlatformError::invalid(
                "issuer_region",
                "a card of this city: apply for a city card instead",
            ));
        }
        let ssc = ssc_number.trim().to_ascii_uppercase();
        if ssc.is_empty()
            || ssc.len() > SSC_NUMBER_MAX
            || !ssc.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(PlatformError::invalid(
                "ssc_number",
                format!("1 to {SSC_NUMBER_MAX} letters or digits"),
            ));
        }
        let id = ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        let row = self
            .store
            .resident_by_blind(&self.vault.blind("id_number", id.as_str()))
            .await?
            .ok_or_else(|| {
                PlatformError::invalid("id_number", "not in the resident base database")
            })?;
        if row.residency == Some(Residency::Resident) {
            return Err(PlatformError::Conflict(
                "a registered resident of the city applies for a city card instead".into(),
            ));
        }
        let context = format!("enrolment:{}", row.id);
        let sealed = self
            .vault
            .seal(context.as_bytes(), ssc.as_bytes())
            .map_err(|e| PlatformError::Unexpected(format!("sealing: {e}")))?;
        let enrolment = NewEnrolment {
            resident_id: row.id,
            issuer_region: issuer_region.into(),
            card_blind: self.vault.blind("ssc_number", &ssc),
            card_sealed: sealed,
        };
        let now = self.clock.now_ms();
        let stored = self
            .store
            .enrolment_insert(
                &enrolment,
                caller.draft(
                    "resident.enrol",
                    format!("resident:{}", row.id),
                    format!("issuer_region={issuer_region}"),
                ),
                now,
            )
            .await?;
        Ok(EnrolmentView {
            id: stored.id,
            issuer_region: stored.issuer_region,
            card_number: mask_ssc(&ssc),
            created_ms: stored.created_ms,
            withdrawn: false,
        })
    }

    /// A resident's service enrolments, card numbers masked; the read is audited.
    pub async fn enrolments(&self, caller: &Caller, id_number: &str) -> Result<Vec<EnrolmentView>> {
        let id = ResidentId::parse(id_number, self.clock.today())
            .map_err(|e| PlatformError::invalid("id_number", e.to_string()))?;
        let Some(row) = self
            .store
            .resident_by_blind(&self.vault.blind("id_number", id.as_str()))
            .await?
        else {
            return Err(PlatformError::NotFound("resident".into()));
        };
        self.audit(caller.draft(
            "resident.enrolments.read",
            format!("resident:{}", row.id),
            "masked",
        ))
        .await?;
        let rows: Vec<EnrolmentRow> = self.store.enrolments_of_resident(row.id).await?;
        rows.into_iter()
            .map(|e| {
                let ssc = self
                    .vault
                    .open_string(
                        format!("enrolment:{}", e.resident_id).as_bytes(),
                        &e.card_sealed,
                    )
                    .map_err(|err| PlatformError::Unexpected(format!("opening: {err}")))?;
                Ok(EnrolmentView {
                    id: e.id,
                    issuer_region: e.issuer_region,
                    card_number: mask_ssc(&ssc),
                    created_ms: e.created_ms,
                    withdrawn: e.withdrawn_ms.is_some(),
                })
            })
            .collect()
    }
}

fn mask_ssc(s: &str) -> String {
    let n = s.chars().count();
    s.chars()
        .enumerate()
        .map(|(i, c)| if i + 4 < n { '*' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(delivery: Delivery, outlet: Option<&str>) -> CardApplicationForm {
        CardApplicationForm {
            delivery,
            outlet_code: outlet.map(Into::into),
            ..CardApplicationForm::default()
        }
    }

    #[test]
    fn delivery_and_outlet_must_agree() {
        assert!(form(Delivery::OutletLater, Some("ZZ-001")).check().is_ok());
        assert!(form(Delivery::OutletLater, None).check().is_ok());
        assert!(form(Delivery::OutletNow, None).check().is_err());
        assert!(form(Delivery::Post, Some("ZZ-001")).check().is_err());
        assert!(form(Delivery::Post, None).check().is_ok());
        assert!(form(Delivery::OutletLater, Some("zz 1")).check().is_err());
        let mut online_now = form(Delivery::OutletNow, Some("ZZ-001"));
        online_now.channel = Channel::Online;
        assert!(online_now.check().is_err());
    }

    #[test]
    fn photo_references_name_their_store() {
        let mut f = form(Delivery::Post, None);
        for ok in ["police:P410105-7", &format!("upload:{}", "a".repeat(64))] {
            f.photo_ref = Some(ok.to_string());
            assert!(f.check().is_ok(), "{ok}");
        }
        for bad in [
            "police:",
            "upload:abc",
            "http://x/y.jpg",
            "police:a b",
            &format!("police:{}", "a".repeat(90)),
        ] {
            f.photo_ref = Some(bad.to_string());
            assert!(f.check().is_err(), "{bad}");
        }
    }

    #[test]
    fn social_security_numbers_are_masked_to_the_last_four() {
        assert_eq!(mask_ssc("A12345678"), "*****5678");
        assert_eq!(mask_ssc("123"), "123");
    }
}
