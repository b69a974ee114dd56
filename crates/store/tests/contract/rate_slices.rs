//! Issue 11 (scale-out): the `/v1` per-key budget shared by every instance (GCRA slices).

use reconbanker_store::*;

pub async fn check_rate_slices(s: &dyn Store) {
    let second = 1_000_000_000i64;
    let t = 1_800_000_000 * second;
    // 10 a second (an interval of 0.1 s), bursts of 20 (a tolerance of 2 s).
    let (interval, tolerance) = (second / 10, 2 * second);

    // A new key has its whole burst: slices are granted until it is spent, then nothing.
    let a = s.take_rate_slice("key:a", t, interval, tolerance, 8).await.unwrap();
    assert_eq!(
        a,
        RateSlice {
            granted: 8,
            tat_ns: t + 8 * interval
        }
    );
    let b = s.take_rate_slice("key:a", t, interval, tolerance, 8).await.unwrap();
    assert_eq!(
        b,
        RateSlice {
            granted: 8,
            tat_ns: t + 16 * interval
        }
    );
    let c = s.take_rate_slice("key:a", t, interval, tolerance, 8).await.unwrap();
    assert_eq!(
        c,
        RateSlice {
            granted: 4,
            tat_ns: t + 20 * interval
        },
        "only what is left"
    );
    let none = s.take_rate_slice("key:a", t, interval, tolerance, 8).await.unwrap();
    assert_eq!(
        none,
        RateSlice {
            granted: 0,
            tat_ns: t + 20 * interval
        },
        "nothing, and nothing moved"
    );
    // Keys are independent.
    assert_eq!(
        s.take_rate_slice("key:b", t, interval, tolerance, 3)
            .await
            .unwrap()
            .granted,
        3
    );

    // The rate refills: 0.25 s later, two requests' worth.
    let later = s
        .take_rate_slice("key:a", t + second / 4, interval, tolerance, 8)
        .await
        .unwrap();
    assert_eq!(
        later,
        RateSlice {
            granted: 2,
            tat_ns: t + 22 * interval
        }
    );
    // Asking for nothing grants nothing.
    assert_eq!(
        s.take_rate_slice("key:b", t, interval, tolerance, 0)
            .await
            .unwrap()
            .granted,
        0
    );

    // Rows whose arrival time has passed say nothing (the key has its whole burst): swept.
    assert_eq!(s.sweep_rate_tats(t + second).await.unwrap(), 1, "key:b's (t + 0.3 s)");
    assert_eq!(
        s.sweep_rate_tats(t + 3 * second).await.unwrap(),
        1,
        "key:a's (t + 2.2 s)"
    );
    let fresh = s
        .take_rate_slice("key:a", t + 3 * second, interval, tolerance, 100)
        .await
        .unwrap();
    assert_eq!(fresh.granted, 20, "a swept key starts with its whole burst");
}
