//! Banks.

use chrono::Duration;
use reconbanker_store::*;

use crate::fixtures::*;

pub async fn check_banks(s: &dyn Store) {
    let b = bank(s).await;
    let plain = BankRow {
        login_url: None,
        status: "disabled".into(),
        ..bank_row()
    };
    s.create_bank(&plain).await.unwrap();
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(b.clone()));
    assert_eq!(s.bank_by_id(plain.id).await.unwrap(), Some(plain.clone()));
    assert_eq!(s.bank_by_id(BankId::new()).await.unwrap(), None);

    let dup = BankRow {
        code: b.code.clone(),
        name: "Impostor".into(),
        ..bank_row()
    };
    let r = s.create_bank(&dup).await;
    assert!(
        conflict(r, Constraint::BanksCode),
        "duplicate bank code must be a Conflict"
    );
    assert_eq!(s.bank_by_id(dup.id).await.unwrap(), None);
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(b.clone()));

    let all = s.list_banks().await.unwrap();
    assert!(
        all.contains(&b) && all.contains(&plain),
        "list_banks lists the created banks"
    );
    assert!(!all.iter().any(|x| x.id == dup.id));
    let codes: Vec<&str> = all.iter().map(|x| x.code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted, "list_banks is ordered by code");
}

pub async fn check_upsert_bank(s: &dyn Store) {
    // A new code inserts the row as given.
    let b = bank_row();
    assert_eq!(s.upsert_bank(&b).await.unwrap(), b);
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(b.clone()));

    // A known code updates name and login URL only, keeping id, status and creation time.
    let again = BankRow {
        id: BankId::new(),
        code: b.code.clone(),
        name: "Renamed Bank".into(),
        login_url: Some("https://new.example.test/".into()),
        status: "disabled".into(),
        created_at: b.created_at + Duration::days(1),
    };
    let expected = BankRow {
        name: again.name.clone(),
        login_url: again.login_url.clone(),
        ..b.clone()
    };
    assert_eq!(s.upsert_bank(&again).await.unwrap(), expected);
    assert_eq!(s.bank_by_id(b.id).await.unwrap(), Some(expected.clone()));
    assert_eq!(s.bank_by_id(again.id).await.unwrap(), None);

    // … including clearing the login URL.
    let cleared = BankRow {
        login_url: None,
        ..again
    };
    let got = s.upsert_bank(&cleared).await.unwrap();
    assert_eq!(
        got,
        BankRow {
            login_url: None,
            ..expected
        }
    );
    assert_eq!(
        s.list_banks()
            .await
            .unwrap()
            .iter()
            .filter(|x| x.code == b.code)
            .count(),
        1
    );
}
