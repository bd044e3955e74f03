//! The e-code through the platform on both backends: enrolling phones (one active per card),
//! revocation on request and with the card's loss in the card's own transaction, certificates
//! and their refusals, root rotation and withdrawal, and online verification.

use crate::fixture::{Fixture, admin, caller, id, import};
use crate::on_both_backends;
use ecode::{
    CardNumber, Code, DeviceId, Phone, Purpose, RootKeyId, RootKeys, Uses, Verifier, VerifierConfig,
};
use platform::cards::{CardRequest, parse_reason};
use platform::{Caller, Platform, PlatformError};
use resident::Source;
use store::Role;

on_both_backends!(
    enrolment_certificates_and_revocation_on_loss,
    root_rotation_and_withdrawal,
    certificate_requests_are_checked,
    identity_scans_reveal_what_the_use_allows_and_the_citizen_sees_them
);

fn clerk() -> Caller {
    caller("clerk", Role::CounterClerk, None)
}

fn phone(name: &str, seed: u8) -> Phone {
    let mut secret = [seed; 32];
    secret[0] = 0x11;
    Phone::new(
        DeviceId::parse(name).unwrap(),
        &crypto::Key32::from_bytes(secret),
    )
    .unwrap()
}

fn now_s(f: &Fixture) -> u32 {
    use platform::clock::Clock;
    (f.clock.now_ms() / 1000) as u32
}

/// An active ordinary card for a new adult resident.
async fn active_card(p: &Platform, seq: u16) -> String {
    let adult = id("410105", 1980, 5, 1, seq);
    let csv = format!("id_number,name,phone,address,residency\n{adult},张成年,,,resident\n");
    import(p, &admin(), Source::Police, "csv:t", csv.as_bytes())
        .await
        .unwrap();
    let card = p
        .apply_for_card(&clerk(), &adult, "ordinary", None)
        .await
        .unwrap();
    for (who, req, reason) in [
        (clerk(), CardRequest::Approve, "routine"),
        (admin(), CardRequest::SendToProduction, "routine"),
        (admin(), CardRequest::ProductionDone, "routine"),
        (clerk(), CardRequest::Post, "routine"),
        (clerk(), CardRequest::Activate, "holder_request"),
    ] {
        p.card_action(&who, &card.number, req, parse_reason(reason).unwrap())
            .await
            .unwrap();
    }
    card.number
}

async fn enrol(p: &Platform, card: &str, phone: &Phone) -> platform::Result<i64> {
    p.ecode_device_bind(
        &clerk(),
        card,
        phone.device_id().as_str(),
        &phone.public_key().to_compressed(),
    )
    .await
    .map(|d| d.id)
}

async fn certify(f: &Fixture, card: &str, phone: &mut Phone) -> platform::Result<()> {
    let request = phone.certificate_request(CardNumber::parse(card).unwrap(), now_s(f));
    let issued = f.p.ecode_certify(&clerk(), &request).await?;
    phone.install_certificate(issued.certificate).unwrap();
    Ok(())
}

async fn online(f: &Fixture, code: &Code) -> (bool, String) {
    let o =
        f.p.ecode_verify(&clerk(), &code.to_text(), Purpose::Transit)
            .await
            .unwrap();
    (o.accepted, o.reason)
}

async fn audit_count(p: &Platform, action: &str) -> usize {
    p.store.audit_recent(Some(action), 100).await.unwrap().len()
}

async fn enrolment_certificates_and_revocation_on_loss(f: Fixture) {
    let p = &f.p;
    let card = active_card(p, 21).await;
    p.ecode_root_generate(&admin()).await.unwrap();

    // Enrol and certify: validity, limit and uses from the card and the policy.
    let mut a = phone("phone-a", 1);
    let a_id = enrol(p, &card, &a).await.unwrap();
    certify(&f, &card, &mut a).await.unwrap();
    let cert = a.certificate().unwrap().clone();
    let now = now_s(&f);
    assert_eq!(cert.root_key_id(), RootKeyId(1));
    assert_eq!(cert.card_number().to_string(), card);
    assert_eq!(cert.fields().not_after, now + 7 * 86_400);
    assert_eq!(cert.fields().not_before, now - 600);
    assert_eq!(cert.fields().offline_limit_fen, 20_000);
    assert_eq!(cert.fields().uses, Uses::ALL);
    assert_eq!(audit_count(p, "ecode.certify").await, 1);

    // A terminal holding the exported roots accepts its codes offline; the platform online.
    let roots = RootKeys::from_pem(&p.ecode_roots_pem().await.unwrap()).unwrap();
    let mut gate = Verifier::new(roots, VerifierConfig::default()).unwrap();
    let code = a.make_code(now).unwrap();
    gate.verify(&code, now + 1, Purpose::Transit).unwrap();
    assert_eq!(online(&f, &code).await, (true, "accepted".into()));
    assert_eq!(online(&f, &code).await, (false, "replay".into()));

    // A second phone replaces the first (one active device per card).
    let mut b = phone("phone-b", 2);
    let b_id = enrol(p, &card, &b).await.unwrap();
    let devices = p.ecode_devices(&clerk(), &card).await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0].id, a_id);
    assert_eq!(devices[0].state, "revoked");
    assert_eq!(devices[0].revoked_reason.as_deref(), Some("replaced"));
    assert_eq!((devices[1].id, devices[1].state.as_str()), (b_id, "active"));
    let r = certify(&f, &card, &mut a).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("revoked")),
        "{r:?}"
    );
    // The replaced phone's still-valid certificate is refused online.
    let stale = a.make_code(now + 2).unwrap();
    assert_eq!(online(&f, &stale).await, (false, "device_revoked".into()));
    certify(&f, &card, &mut b).await.unwrap();
    let before_loss = b.make_code(now + 3).unwrap();

    // The same key cannot be active on two cards.
    let other = active_card(p, 22).await;
    let r = enrol(p, &other, &b).await;
    assert!(matches!(&r, Err(PlatformError::Conflict(_))), "{r:?}");

    // Reporting the card lost revokes its phone in the same change, on the record.
    let revokes = audit_count(p, "ecode.device.revoke").await;
    let desk = p
        .ensure_outlet_with_clerk(&admin(), "ZZ-E1", "desk", "desk-password-1")
        .await
        .unwrap();
    p.counter_report_lost(&desk, "ZZ-E1", &card).await.unwrap();
    let devices = p.ecode_devices(&clerk(), &card).await.unwrap();
    assert!(devices.iter().all(|d| d.state == "revoked"), "{devices:?}");
    assert_eq!(
        devices[1].revoked_reason.as_deref(),
        Some("card_reported_lost")
    );
    assert_eq!(audit_count(p, "ecode.device.revoke").await, revokes + 1);

    // No certificate and no enrolment for a lost card; its codes are refused online.
    let r = certify(&f, &card, &mut b).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("reported_lost")),
        "{r:?}"
    );
    let r = enrol(p, &card, &phone("phone-c", 3)).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("reported_lost")),
        "{r:?}"
    );
    assert_eq!(
        online(&f, &before_loss).await,
        (false, "deny_listed".into())
    );

    // Undoing the loss does not bring the phone back: the holder enrols again.
    p.card_action(
        &clerk(),
        &card,
        CardRequest::UndoLost,
        parse_reason("holder_request").unwrap(),
    )
    .await
    .unwrap();
    let r = certify(&f, &card, &mut b).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("revoked")),
        "{r:?}"
    );
    enrol(p, &card, &b).await.unwrap();
    certify(&f, &card, &mut b).await.unwrap();

    // Revocation on request, once.
    let b_now = p
        .ecode_devices(&clerk(), &card)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    let v = p
        .ecode_device_revoke(&clerk(), b_now, "device_lost")
        .await
        .unwrap();
    assert_eq!(v.revoked_reason.as_deref(), Some("device_lost"));
    let r = p.ecode_device_revoke(&clerk(), b_now, "device_lost").await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    let r = p.ecode_device_revoke(&clerk(), b_now, "bored").await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let r = p
        .ecode_device_revoke(&caller("a", Role::Auditor, None), b_now, "fraud")
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
}

async fn root_rotation_and_withdrawal(f: Fixture) {
    let p = &f.p;
    let card = active_card(p, 31).await;
    let mut a = phone("phone-a", 4);
    enrol(p, &card, &a).await.unwrap();

    let r = certify(&f, &card, &mut a).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("no current e-code root")),
        "{r:?}"
    );
    let first = p.ecode_root_generate(&admin()).await.unwrap();
    assert_eq!((first.key_id, first.state.as_str()), (1, "current"));
    let r = p.ecode_root_generate(&clerk()).await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    certify(&f, &card, &mut a).await.unwrap();
    let under_first = a.make_code(now_s(&f)).unwrap();

    // A second key waits in standby, already in the exported roots, until rotated to.
    let second = p.ecode_root_generate(&admin()).await.unwrap();
    assert_eq!((second.key_id, second.state.as_str()), (2, "standby"));
    let pem = p.ecode_roots_pem().await.unwrap();
    let roots = RootKeys::from_pem(&pem).unwrap();
    assert_eq!(
        roots.ids().collect::<Vec<_>>(),
        [RootKeyId(1), RootKeyId(2)]
    );
    p.ecode_root_rotate(&admin(), 2).await.unwrap();
    let r = p.ecode_root_rotate(&admin(), 2).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    let states: Vec<String> = p
        .ecode_roots(&admin())
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.state)
        .collect();
    assert_eq!(states, ["retired", "current"]);

    // New certificates come from the new key; the old key's still verify.
    let mut b = a.clone();
    certify(&f, &card, &mut b).await.unwrap();
    assert_eq!(b.certificate().unwrap().root_key_id(), RootKeyId(2));
    let under_second = b.make_code(now_s(&f) + 1).unwrap();
    let mut gate = Verifier::new(roots, VerifierConfig::default()).unwrap();
    let t = now_s(&f) + 2;
    gate.verify(&under_first, t, Purpose::Transit).unwrap();
    gate.verify(&under_second, t, Purpose::Transit).unwrap();
    assert!(online(&f, &under_first).await.0);
    assert!(online(&f, &under_second).await.0);

    // Withdrawing the old key: refused online at once, and left out of the exported roots.
    p.ecode_root_withdraw(&admin(), 1).await.unwrap();
    let again = a.make_code(now_s(&f) + 3).unwrap();
    assert_eq!(online(&f, &again).await, (false, "root_withdrawn".into()));
    let roots = RootKeys::from_pem(&p.ecode_roots_pem().await.unwrap()).unwrap();
    assert_eq!(roots.ids().collect::<Vec<_>>(), [RootKeyId(2)]);
    let mut gate = Verifier::new(roots, VerifierConfig::default()).unwrap();
    assert_eq!(
        gate.verify(&again, now_s(&f) + 3, Purpose::Transit)
            .unwrap_err()
            .code(),
        "unknown_root"
    );
    let r = p.ecode_root_withdraw(&admin(), 1).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    let r = p.ecode_root_rotate(&admin(), 1).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    assert_eq!(audit_count(p, "ecode.root.generate").await, 2);
    assert_eq!(audit_count(p, "ecode.root.rotate").await, 1);
    assert_eq!(audit_count(p, "ecode.root.withdraw").await, 1);

    // Withdrawing the current key leaves no signer until the next rotation.
    p.ecode_root_withdraw(&admin(), 2).await.unwrap();
    let r = certify(&f, &card, &mut b).await;
    assert!(matches!(r, Err(PlatformError::Conflict(_))), "{r:?}");
    p.ecode_root_generate(&admin()).await.unwrap();
    certify(&f, &card, &mut b).await.unwrap();
    assert_eq!(b.certificate().unwrap().root_key_id(), RootKeyId(3));
}

async fn certificate_requests_are_checked(f: Fixture) {
    let p = &f.p;
    let card = active_card(p, 41).await;
    p.ecode_root_generate(&admin()).await.unwrap();
    let a = phone("phone-a", 5);
    let number = CardNumber::parse(&card).unwrap();

    // Not enrolled yet.
    let request = a.certificate_request(number, now_s(&f));
    let r = p.ecode_certify(&clerk(), &request).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("not enrolled")),
        "{r:?}"
    );
    enrol(p, &card, &a).await.unwrap();

    // A signature by another key, a time too far off, a role that may not.
    let mut forged = a.certificate_request(number, now_s(&f));
    forged.signature = phone("phone-x", 6)
        .certificate_request(number, now_s(&f))
        .signature;
    let r = p.ecode_certify(&clerk(), &forged).await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.contains("signature")),
        "{r:?}"
    );
    let late = a.certificate_request(number, now_s(&f) - 301);
    let r = p.ecode_certify(&clerk(), &late).await;
    assert!(
        matches!(&r, Err(PlatformError::Invalid { message, .. }) if message.contains("time")),
        "{r:?}"
    );
    let ok = a.certificate_request(number, now_s(&f));
    let r = p
        .ecode_certify(&caller("a", Role::Auditor, None), &ok)
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");
    p.ecode_certify(&clerk(), &ok).await.unwrap();

    // Bad enrolment input writes nothing.
    let r = p
        .ecode_device_bind(&clerk(), &card, "bad id!", &a.public_key().to_compressed())
        .await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    let r = p
        .ecode_device_bind(&clerk(), &card, "phone-z", &[0x02; 33])
        .await;
    assert!(matches!(r, Err(PlatformError::Invalid { .. })), "{r:?}");
    assert_eq!(p.ecode_devices(&clerk(), &card).await.unwrap().len(), 1);

    // Cancelled: refused with the state named.
    p.card_action(
        &clerk(),
        &card,
        CardRequest::Cancel,
        parse_reason("holder_request").unwrap(),
    )
    .await
    .unwrap();
    let again = a.certificate_request(number, now_s(&f));
    let r = p.ecode_certify(&clerk(), &again).await;
    assert!(
        matches!(&r, Err(PlatformError::Conflict(m)) if m.contains("cancelled")),
        "{r:?}"
    );
}

/// Identity use (7.6): the same code verified for a hotel, a counter, an age check and a
/// library reveals what each may see; a refused code reveals nothing; the citizen can list
/// every identification, with who and where.
async fn identity_scans_reveal_what_the_use_allows_and_the_citizen_sees_them(f: Fixture) {
    use platform::ecode_identity::IdentityUse;
    let p = &f.p;
    let card = active_card(p, 41).await;
    let holder_id = id("410105", 1980, 5, 1, 41);
    p.ecode_root_generate(&admin()).await.unwrap();
    let mut ph = phone("phone-id", 7);
    enrol(p, &card, &ph).await.unwrap();
    certify(&f, &card, &mut ph).await.unwrap();
    let now = now_s(&f);
    let mut seen = Vec::new();
    for (k, use_) in IdentityUse::ALL.into_iter().enumerate() {
        let code = ph.make_code(now + k as u32).unwrap();
        let v = p
            .ecode_identify(&clerk(), &code.to_text(), use_)
            .await
            .unwrap();
        assert!(v.accepted, "{v:?}");
        assert_eq!(v.adult, Some(true));
        seen.push((v.name, v.id_number));
    }
    assert_eq!(
        seen[0],
        (Some("张成年".into()), Some(holder_id.clone())),
        "hotel"
    );
    assert_eq!(seen[1].0.as_deref(), Some("张成年"), "counter");
    let masked = seen[1].1.clone().unwrap();
    assert!(masked.contains("****") && masked != holder_id, "{masked}");
    assert_eq!(seen[2], (None, None), "age check");
    assert_eq!(seen[3].1, None, "library");
    assert_ne!(
        seen[3].0.as_deref(),
        Some("张成年"),
        "library sees the name masked"
    );

    // A replayed code reveals nothing and is not an identification.
    let code = ph.make_code(now + 10).unwrap();
    p.ecode_identify(&clerk(), &code.to_text(), IdentityUse::Hotel)
        .await
        .unwrap();
    let again = p
        .ecode_identify(&clerk(), &code.to_text(), IdentityUse::Hotel)
        .await
        .unwrap();
    assert!(!again.accepted && again.name.is_none() && again.id_number.is_none());
    assert_eq!(again.reason, "replay");
    let r = p
        .ecode_identify(
            &caller("dept", Role::DepartmentOfficer, Some(Source::Police)),
            &code.to_text(),
            IdentityUse::Hotel,
        )
        .await;
    assert!(matches!(r, Err(PlatformError::Forbidden(_))), "{r:?}");

    // The citizen's list: five identifications, newest first, each naming the use.
    let uses = p.ecode_identity_uses(&clerk(), &holder_id).await.unwrap();
    assert_eq!(uses.len(), 5);
    assert!(uses[0].detail.starts_with("use=hotel"), "{uses:?}");
    assert!(uses[4].detail.starts_with("use=hotel"), "{uses:?}");
    assert!(
        uses.iter()
            .any(|u| u.detail.starts_with("use=age_check revealed=adult only"))
    );
    assert!(
        uses.iter()
            .all(|u| u.actor == "operator:clerk" && !u.detail.contains(&holder_id))
    );
    assert!(p.audit_verify().await.unwrap().is_ok());
}
