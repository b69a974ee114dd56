//! Issue 11: master-key rotation — every sealed value rewritten in one transaction, or none.

use reconbanker_store::*;

use crate::fixtures::*;

/// A stand-in for "open with the old key, seal with the new one": the value with `tag` appended,
/// refusing values that end with `poison`.
fn retag(tag: u8, poison: Option<u8>) -> impl Fn(&SealedOwner, &[u8]) -> Result<Vec<u8>, String> + Send + Sync {
    move |_, v| {
        if poison.is_some() && v.last().copied() == poison {
            return Err("does not open".into());
        }
        let mut out = v.to_vec();
        out.push(tag);
        Ok(out)
    }
}

async fn sealed_values(
    s: &dyn Store,
    owner: &UserRow,
    a: &AccountRow,
    bare: &AccountRow,
    run: &RunRow,
) -> Vec<Vec<u8>> {
    let config = s.account_config(owner.id, a.id).await.unwrap().unwrap();
    let none = s.account_config(owner.id, bare.id).await.unwrap().unwrap();
    assert_eq!(none.secrets, None, "a config without secrets stays without");
    let totp = s.user_totp(owner.id).await.unwrap().unwrap();
    let evidence = s.list_evidence(owner.id, a.id, run.id, now()).await.unwrap().unwrap();
    let mut out = vec![config.secrets.unwrap(), totp.secret];
    out.extend(evidence.into_iter().map(|e| e.sealed));
    out.extend(s.device_state(a.id).await.unwrap());
    out.extend(s.carried_keys().await.unwrap().into_iter().map(|k| k.sealed));
    out
}

pub async fn check_reseal_all(s: &dyn Store) {
    let owner = user(s).await;
    let b = bank(s).await;
    let (a, bare) = (account(s, owner.id, &b).await, account(s, owner.id, &b).await);
    let t = now();
    s.put_account_config(
        owner.id,
        &AccountConfigRow {
            account_id: a.id,
            settings: "{}".into(),
            secrets: Some(vec![1, 1]),
            updated_at: t,
        },
    )
    .await
    .unwrap();
    s.put_account_config(
        owner.id,
        &AccountConfigRow {
            account_id: bare.id,
            settings: "{}".into(),
            secrets: None,
            updated_at: t,
        },
    )
    .await
    .unwrap();
    s.begin_totp(owner.id, &[2, 2], t).await.unwrap();
    s.set_device_state(a.id, Some(&[6, 6]), t).await.unwrap();
    let run = run_row(a.id, t);
    s.create_run(&run).await.unwrap();
    let evidence = EvidenceRow {
        id: EvidenceId::new(),
        run_id: run.id,
        step: "otp".into(),
        sealed: vec![3, 3],
        taken_at: t,
        expires_at: t + chrono::Duration::days(7),
    };
    assert!(s.insert_evidence(&evidence).await.unwrap());
    assert_eq!(
        s.carried_keys().await.unwrap(),
        vec![],
        "none before the first rotation"
    );

    // The first rotation: every value is rewritten, the carried keys are added.
    let seen = std::sync::Mutex::new(Vec::new());
    let record = |o: &SealedOwner, v: &[u8]| {
        seen.lock().unwrap().push(o.clone());
        retag(9, None)(o, v)
    };
    let added = [
        CarriedKeyRow {
            label: "checksum".into(),
            sealed: vec![4],
            created_at: t,
        },
        CarriedKeyRow {
            label: "recovery".into(),
            sealed: vec![5],
            created_at: t + ms(1),
        },
    ];
    let counts = s.reseal_all(&record, &added).await.unwrap().unwrap();
    assert_eq!(
        counts,
        ResealCounts {
            account_configs: 1,
            totp_secrets: 1,
            evidence: 1,
            carried_keys: 2,
            devices: 1,
        }
    );
    let mut seen = seen.into_inner().unwrap();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            SealedOwner::AccountConfig(a.id),
            SealedOwner::Totp(owner.id),
            SealedOwner::Evidence(evidence.id),
            SealedOwner::Device(a.id),
        ],
        "every sealed value, each with its owner (added keys are sealed already)"
    );
    assert_eq!(
        sealed_values(s, &owner, &a, &bare, &run).await,
        vec![
            vec![1, 1, 9],
            vec![2, 2, 9],
            vec![3, 3, 9],
            vec![6, 6, 9],
            vec![4],
            vec![5]
        ]
    );
    assert_eq!(s.carried_keys().await.unwrap().to_vec(), added.to_vec(), "by label");

    // A value that does not open: nothing changes, and the refusal names it.
    s.put_account_config(
        owner.id,
        &AccountConfigRow {
            account_id: bare.id,
            settings: "{}".into(),
            secrets: None,
            updated_at: t,
        },
    )
    .await
    .unwrap();
    let refused = s.reseal_all(&retag(7, Some(9)), &[]).await.unwrap().unwrap_err();
    assert!(
        matches!(
            refused.owner,
            SealedOwner::AccountConfig(_) | SealedOwner::Totp(_) | SealedOwner::Evidence(_) | SealedOwner::Device(_)
        ),
        "{refused:?}"
    );
    assert_eq!(refused.reason, "does not open");
    let refused_key = s.reseal_all(&retag(7, Some(5)), &[]).await.unwrap().unwrap_err();
    assert_eq!(refused_key.owner, SealedOwner::CarriedKey("recovery".into()));
    assert_eq!(
        sealed_values(s, &owner, &a, &bare, &run).await,
        vec![
            vec![1, 1, 9],
            vec![2, 2, 9],
            vec![3, 3, 9],
            vec![6, 6, 9],
            vec![4],
            vec![5]
        ],
        "unchanged"
    );

    // Adding a label that exists is a conflict, and rolls the rewrite back.
    let again = s.reseal_all(&retag(8, None), &added[..1]).await;
    assert!(
        conflict(again, Constraint::Other("carried_keys_pkey".into())),
        "a label that exists"
    );
    assert_eq!(
        sealed_values(s, &owner, &a, &bare, &run).await,
        vec![
            vec![1, 1, 9],
            vec![2, 2, 9],
            vec![3, 3, 9],
            vec![6, 6, 9],
            vec![4],
            vec![5]
        ],
        "a failed insert rolls the rewrite back"
    );

    // The second rotation rewrites the carried keys too.
    let counts = s.reseal_all(&retag(8, None), &[]).await.unwrap().unwrap();
    assert_eq!(counts.carried_keys, 2);
    assert_eq!(
        sealed_values(s, &owner, &a, &bare, &run).await,
        vec![
            vec![1, 1, 9, 8],
            vec![2, 2, 9, 8],
            vec![3, 3, 9, 8],
            vec![6, 6, 9, 8],
            vec![4, 8],
            vec![5, 8]
        ]
    );
}
