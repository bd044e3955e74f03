//! What a card application carries (delivery choice, photo reference, guardian) and the
//! service enrolment of non-residents with another city's social security card, on both
//! backends.

use crate::fixture::{Fixture, admin, caller, id, import};
use crate::on_both_backends;
use platform::PlatformError;
use platform::applications::{CardApplicationForm, Channel, Delivery};
use resident::Source;
use store::Role;

on_both_backends!(applications_record_delivery_photo_and_guardian);
on_both_backends!(non_residents_enrol_with_their_own_card);

async fn applications_record_delivery_photo_and_guardian(f: Fixture) {
    let with_address = id("410105", 1980, 5, 1, 21);
    let without_address = id("410105", 1981, 5, 1, 22);
    let minor = id("410105", 2015, 3, 1, 23);
    let csv = format!(
        "id_number,name,phone,address,residency\n\
         {with_address},王有址,,金水路1号,resident\n\
         {without_address},王无址,,,resident\n\
         {minor},王小,,,resident\n"
    );
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let clerk = caller("clerk", Role::CounterClerk, None);
    let p = &f.p;
    let photo = format!("upload:{}", "ab".repeat(32));

    // By post, to the address on file, with a photo reference.
    let posted = p
        .apply_for_card_with(
            &clerk,
            &CardApplicationForm {
                id_number: with_address.clone(),
                card_type: "ordinary".into(),
                delivery: Delivery::Post,
                photo_ref: Some(photo.clone()),
                ..CardApplicationForm::default()
            },
        )
        .await
        .unwrap();
    let stored =
        f.p.store
            .card_application(&posted.number)
            .await
            .unwrap()
            .expect("application details stored with the card");
    assert_eq!(
        (
            stored.channel.as_str(),
            stored.delivery.as_str(),
            stored.photo_ref.as_deref(),
            stored.outlet_code.as_deref()
        ),
        ("counter", "post", Some(photo.as_str()), None)
    );

    // No address on file: posting is refused, and nothing is written.
    let before = crate::fixture::audit_seq(p).await;
    let r = p
        .apply_for_card_with(
            &clerk,
            &CardApplicationForm {
                id_number: without_address.clone(),
                card_type: "ordinary".into(),
                delivery: Delivery::Post,
                ..CardApplicationForm::default()
            },
        )
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.starts_with("delivery:") && message.contains("address")),
        "{r:?}"
    );
    assert_eq!(crate::fixture::audit_seq(p).await, before);

    // Instant issuance names the outlet; an online application cannot ask for it.
    let r = p
        .apply_for_card_with(
            &clerk,
            &CardApplicationForm {
                id_number: without_address.clone(),
                card_type: "ordinary".into(),
                delivery: Delivery::OutletNow,
                ..CardApplicationForm::default()
            },
        )
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.starts_with("outlet_code:")),
        "{r:?}"
    );
    let r = p
        .apply_for_card_with(
            &clerk,
            &CardApplicationForm {
                id_number: without_address.clone(),
                card_type: "ordinary".into(),
                channel: Channel::Online,
                delivery: Delivery::OutletNow,
                outlet_code: Some("ZZ-JINSHUI".into()),
                ..CardApplicationForm::default()
            },
        )
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.starts_with("delivery:")),
        "{r:?}"
    );
    let later = p
        .apply_for_card_with(
            &clerk,
            &CardApplicationForm {
                id_number: without_address.clone(),
                card_type: "ordinary".into(),
                channel: Channel::Online,
                delivery: Delivery::OutletLater,
                outlet_code: Some("ZZ-JINSHUI".into()),
                photo_ref: Some("police:P-410105-22".into()),
                ..CardApplicationForm::default()
            },
        )
        .await
        .unwrap();
    let stored = p
        .store
        .card_application(&later.number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.channel.as_str(), stored.outlet_code.as_deref()),
        ("online", Some("ZZ-JINSHUI"))
    );

    // A minor's application records the guardian (by resident id, not ID number).
    let kid = p
        .apply_for_card_with(
            &clerk,
            &CardApplicationForm {
                id_number: minor.clone(),
                card_type: "student".into(),
                guardian_id_number: Some(with_address.clone()),
                delivery: Delivery::OutletLater,
                outlet_code: Some("ZZ-JINSHUI".into()),
                ..CardApplicationForm::default()
            },
        )
        .await
        .unwrap();
    let stored = p
        .store
        .card_application(&kid.number)
        .await
        .unwrap()
        .unwrap();
    let guardian = p
        .store
        .cards_of_resident(stored.guardian_resident_id.expect("guardian recorded"))
        .await
        .unwrap();
    assert_eq!(
        guardian[0].number, posted.number,
        "the guardian is the adult applicant"
    );
}

async fn non_residents_enrol_with_their_own_card(f: Fixture) {
    let visitor = id("320102", 1990, 1, 1, 31);
    let local = id("410105", 1980, 5, 1, 32);
    let csv = format!(
        "id_number,name,phone,address,residency\n{visitor},李外地,,,non_resident\n{local},张本地,,,resident\n"
    );
    import(&f.p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let clerk = caller("clerk", Role::CounterClerk, None);
    let p = &f.p;

    // Refused a city card, with the way forward in the message.
    let r = p.apply_for_card(&clerk, &visitor, "ordinary", None).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("enrolments")),
        "{r:?}"
    );
    let e = p
        .enrol_non_resident(&clerk, &visitor, "320100", "a12345678")
        .await
        .unwrap();
    assert_eq!(
        (e.issuer_region.as_str(), e.card_number.as_str()),
        ("320100", "*****5678")
    );

    // The card number is sealed at rest.
    assert!(f.find_at_rest(&["A12345678"]).await.is_empty());

    // Twice, or the same card for someone else, or a local resident, or a card of this city.
    let again = p
        .enrol_non_resident(&clerk, &visitor, "320100", "B00000001")
        .await;
    assert!(
        matches!(&again, Err(PlatformError::Conflict(_))),
        "{again:?}"
    );
    let r = p
        .enrol_non_resident(&clerk, &local, "320100", "C00000001")
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("city card")),
        "{r:?}"
    );
    let r = p
        .enrol_non_resident(&clerk, &visitor, "410100", "D00000001")
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.starts_with("issuer_region:")),
        "{r:?}"
    );
    let r = p
        .enrol_non_resident(&clerk, &visitor, "320100", "A1 2")
        .await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.starts_with("ssc_number:")),
        "{r:?}"
    );
    let r = p
        .enrol_non_resident(
            &caller("aud", Role::Auditor, None),
            &visitor,
            "320100",
            "E1",
        )
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // Listed masked; the read is audited.
    let before = crate::fixture::audit_seq(p).await;
    let list = p.enrolments(&clerk, &visitor).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].card_number, "*****5678");
    assert!(crate::fixture::audit_seq(p).await > before);
}
