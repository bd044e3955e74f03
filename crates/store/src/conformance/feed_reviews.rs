//! Conformance: per-field authority in `residents_apply`, the review queue decided once, and
//! the end of a student concession.

use super::{NOW, b, card, draft, event, facts, feed, field};
use crate::*;
use resident::{Field, Source};

pub async fn feeds_hold_contradictions_for_review_once(s: &dyn Store) {
    let police = feed(s, Source::Police).await;
    s.residents_apply(
        police,
        &[facts(1, "a", Some("p1"), Some("addr1"))],
        draft("resident.import"),
        NOW,
    )
    .await
    .unwrap();
    let rid = s.resident_by_blind(&b("id", 1)).await.unwrap().unwrap().id;

    // Education reports another name and address (not its fields), a new phone (nobody's
    // field) and a student status (its own, empty so far): the name and address are held, the
    // phone and status apply.
    let edu = feed(s, Source::Education).await;
    let mut row = facts(1, "z", Some("p9"), Some("addr9"));
    row.residency = None;
    row.fields.push(field(Field::Student, "enrolled"));
    let c = s
        .residents_apply(edu, &[row.clone()], draft("resident.import"), NOW + 1)
        .await
        .unwrap();
    assert_eq!((c.updated, c.held, c.unchanged), (1, 1, 0));
    let r = s.resident_by_id(rid).await.unwrap().unwrap();
    assert_eq!(r.name_sealed.as_deref(), Some(&b"sealed-a"[..]));
    assert_eq!(r.address_sealed.as_deref(), Some(&b"sealed-addr1"[..]));
    assert_eq!(r.phone_sealed.as_deref(), Some(&b"sealed-p9"[..]));
    assert_eq!(r.student_sealed.as_deref(), Some(&b"sealed-enrolled"[..]));
    let h = s.resident_history(rid).await.unwrap();
    assert_eq!(
        h.last().unwrap().fields_mask,
        Field::Phone.bit() | Field::Student.bit()
    );

    let pending = s
        .feed_reviews(Some(ReviewStatus::Pending), 0, 100)
        .await
        .unwrap();
    let fields: Vec<Field> = pending.iter().map(|r| r.field).collect();
    assert_eq!(fields, vec![Field::Name, Field::Address]);
    assert!(pending.iter().all(|r| r.resident_id == rid
        && r.feed_id == edu
        && r.source == "education"
        && r.status == ReviewStatus::Pending));
    assert_eq!(pending[0].sealed, b"sealed-z");

    // The same contradiction again is held again (a second review), not applied.
    let c = s
        .residents_apply(edu, &[row], draft("resident.import"), NOW + 2)
        .await
        .unwrap();
    assert_eq!((c.updated, c.held), (0, 1));
    assert_eq!(s.feed_reviews(None, 0, 100).await.unwrap().len(), 4);

    // Police, the authority, changes the address: applied at once.
    let police2 = feed(s, Source::Police).await;
    let mut moved = facts(1, "a", None, Some("addr2"));
    moved.residency = None;
    let c = s
        .residents_apply(police2, &[moved], draft("resident.import"), NOW + 3)
        .await
        .unwrap();
    assert_eq!((c.updated, c.held), (1, 0));

    // Accepting the held name applies it with a history row; deciding again is refused.
    let name_review = pending[0].id;
    let got = s
        .feed_review_decide(
            name_review,
            true,
            "operator:officer",
            "confirmed with the citizen",
            b"change-accepted",
            draft("resident.review.accept"),
            NOW + 4,
        )
        .await
        .unwrap();
    assert_eq!(got.status, ReviewStatus::Accepted);
    let r = s.resident_by_id(rid).await.unwrap().unwrap();
    assert_eq!(r.name_sealed.as_deref(), Some(&b"sealed-z"[..]));
    let last = s.resident_history(rid).await.unwrap().pop().unwrap();
    assert_eq!((last.fields_mask, last.feed_id), (Field::Name.bit(), edu));
    let again = s
        .feed_review_decide(
            name_review,
            false,
            "operator:other",
            "",
            b"",
            draft("resident.review.reject"),
            NOW + 5,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let missing = s
        .feed_review_decide(9_999, true, "x", "", b"", draft("x"), NOW)
        .await;
    assert!(
        matches!(missing, Err(StoreError::NotFound(_))),
        "{missing:?}"
    );

    // Rejecting the held address leaves the police's value.
    let rejected = s
        .feed_review_decide(
            pending[1].id,
            false,
            "operator:officer",
            "police is the authority",
            b"",
            draft("resident.review.reject"),
            NOW + 6,
        )
        .await
        .unwrap();
    assert_eq!(rejected.status, ReviewStatus::Rejected);
    assert_eq!(rejected.decided_by.as_deref(), Some("operator:officer"));
    let r = s.resident_by_id(rid).await.unwrap().unwrap();
    assert_eq!(r.address_sealed.as_deref(), Some(&b"sealed-addr2"[..]));
    let left = s
        .feed_reviews(Some(ReviewStatus::Pending), 0, 100)
        .await
        .unwrap();
    assert_eq!(left.len(), 2);

    // Graduation: the student card becomes ordinary, other cards are left alone, once.
    let (student, other) = ("4101000000000018", "4101000000000026");
    let mut c1 = card(student, rid, "active", 1);
    c1.card_type = "student".into();
    s.card_insert(
        &c1,
        &event(student, "-", "applied"),
        None,
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();
    let mut c2 = card(other, rid, "cancelled", 1);
    c2.card_type = "senior".into();
    s.card_insert(
        &c2,
        &event(other, "-", "applied"),
        None,
        draft("card.apply"),
        NOW,
    )
    .await
    .unwrap();
    let audit_before = s.audit_head().await.unwrap().unwrap().0;
    let ended = s
        .cards_end_student_concession(rid, draft("card.concession.end"), NOW + 7)
        .await
        .unwrap();
    assert_eq!(ended, vec![student.to_string()]);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, audit_before + 1);
    let c = s.card_by_number(student).await.unwrap().unwrap();
    assert_eq!((c.card_type.as_str(), c.version), ("ordinary", 2));
    assert_eq!(
        s.card_by_number(other).await.unwrap().unwrap().card_type,
        "senior"
    );
    let none = s
        .cards_end_student_concession(rid, draft("card.concession.end"), NOW + 8)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, audit_before + 1);

    // The chip must follow (issue 8, item 6): the type change recorded a pending chip update
    // for the changed card only, in the same transaction.
    let u = s.chip_updates(student).await.unwrap();
    assert_eq!(u.len(), 1);
    assert_eq!(
        (
            u[0].item.as_str(),
            u[0].value.as_str(),
            u[0].version,
            u[0].pending
        ),
        ("card_type", "ordinary", 1, true)
    );
    assert_eq!(u[0].updated_ms, NOW + 7);
    assert!(s.chip_updates(other).await.unwrap().is_empty());
    let step = |action: &str, version: i64, sw: Option<i32>| ChipUpdateEventRow {
        number: student.into(),
        item: "card_type".into(),
        value: "ordinary".into(),
        version,
        action: action.into(),
        sw,
        actor: "clerk".into(),
        at_ms: NOW + 9,
    };
    // A script and a refusal leave it pending; each is an event with its audit entry.
    s.chip_update_record(
        &step("script", 1, None),
        false,
        draft("card.chip.script"),
        NOW + 9,
    )
    .await
    .unwrap();
    s.chip_update_record(
        &step("failed", 1, Some(0x6988)),
        false,
        draft("card.chip.confirm"),
        NOW + 9,
    )
    .await
    .unwrap();
    assert!(s.chip_updates(student).await.unwrap()[0].pending);
    // Applying another version is a conflict and writes nothing.
    let head = s.audit_head().await.unwrap().unwrap().0;
    let r = s
        .chip_update_record(
            &step("applied", 2, Some(0x9000)),
            true,
            draft("card.chip.confirm"),
            NOW + 9,
        )
        .await;
    assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head);
    s.chip_update_record(
        &step("applied", 1, Some(0x9000)),
        true,
        draft("card.chip.confirm"),
        NOW + 10,
    )
    .await
    .unwrap();
    assert!(!s.chip_updates(student).await.unwrap()[0].pending);
    assert_eq!(s.audit_head().await.unwrap().unwrap().0, head + 1);
    let again = s
        .chip_update_record(
            &step("applied", 1, Some(0x9000)),
            true,
            draft("card.chip.confirm"),
            NOW + 11,
        )
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let history: Vec<(String, Option<i32>)> = s
        .chip_update_events(student)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.action, e.sw))
        .collect();
    assert_eq!(
        history,
        [
            ("script".to_string(), None),
            ("failed".to_string(), Some(0x6988)),
            ("applied".to_string(), Some(0x9000)),
        ]
    );
    // A card without an update: NotFound.
    let mut none = step("applied", 1, Some(0x9000));
    none.number = other.into();
    let r = s
        .chip_update_record(&none, true, draft("card.chip.confirm"), NOW + 12)
        .await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    // Any later change of the type (here a transition that sets it) makes it pending again at
    // the next version; a transition that keeps the type records nothing.
    let mut back = s.card_by_number(student).await.unwrap().unwrap();
    back.version += 1;
    back.updated_ms = NOW + 13;
    s.card_apply(
        &CardChange {
            card: back.clone(),
            successor: None,
            events: vec![event(student, "active", "active")],
            deny: vec![],
            moves: vec![],
        },
        vec![draft("card.test")],
        NOW + 13,
    )
    .await
    .unwrap();
    assert_eq!(s.chip_updates(student).await.unwrap()[0].version, 1);
    back.version += 1;
    back.card_type = "senior".into();
    back.updated_ms = NOW + 14;
    s.card_apply(
        &CardChange {
            card: back,
            successor: None,
            events: vec![event(student, "active", "active")],
            deny: vec![],
            moves: vec![],
        },
        vec![draft("card.test")],
        NOW + 14,
    )
    .await
    .unwrap();
    let u = s.chip_updates(student).await.unwrap();
    assert_eq!(
        (
            u[0].value.as_str(),
            u[0].version,
            u[0].pending,
            u[0].updated_ms
        ),
        ("senior", 2, true, NOW + 14)
    );
}
