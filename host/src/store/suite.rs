//! The storage test suite, written once and run against every backend: each backend's module
//! calls [`storage_suite!`] with an async expression that opens a fresh, empty [`Fixture`], or
//! yields `None` when the backend's server cannot be reached and the test may be skipped (the
//! expression decides, and says so: see `postgres.rs`); each test then returns at once.
//!
//! The tests speak only through the traits, so what passes here holds for the host on that
//! backend: kv (namespaces, quota, ttl, increment), tokens (sealed cache, the refresh lock),
//! the journal (begin, record, finish, replay, mismatch, leases, crash resume), the ledger
//! (accept, batches as a work queue, status, report order) and pacing (the window, bans).

use super::Storage;

/// A fresh backend, and whatever keeps it alive (a temporary folder, a schema to drop).
pub(crate) struct Fixture {
    pub(crate) storage: Storage,
    pub(crate) _guard: Box<dyn std::any::Any + Send>,
}

macro_rules! storage_suite {
    ($open:expr) => {
        #[allow(unused_imports, reason = "every test uses some of these")]
        use $crate::store::suite::Fixture;
        use $crate::store::*;
        use $crate::types::{AdapterError, ErrorClass, IssuedCoupon, Recipient};

        async fn fixture() -> Option<Fixture> {
            $open.await
        }

        fn scope(plugin: &str, account: &str) -> Scope {
            Scope::new(plugin, account)
        }

        fn send(key: &str) -> SendKey {
            SendKey {
                scope: scope("p", DEFAULT_ACCOUNT),
                key: key.to_owned(),
            }
        }

        fn lease(holder: &str, ttl_ms: i64) -> Lease {
            Lease {
                holder: holder.to_owned(),
                ttl_ms,
            }
        }

        fn nicks(n: usize) -> Vec<Recipient> {
            (0..n).map(|i| Recipient::Nick(format!("n{i}"))).collect()
        }

        fn issued(row: &Row) -> RowUpdate {
            Row {
                state: RowState::Issued,
                detail: Some(Detail::Issued(IssuedCoupon {
                    coupon_id: Some(format!("c-{}", row.position)),
                    ..IssuedCoupon::new(row.recipient.clone())
                })),
                ..row.clone()
            }
            .update()
        }

        fn failed(row: &Row, class: ErrorClass) -> RowUpdate {
            Row {
                state: if class == ErrorClass::Unknown {
                    RowState::Unknown
                } else {
                    RowState::Failed
                },
                detail: Some(Detail::Error(AdapterError::new(class, "15", "refused"))),
                ..row.clone()
            }
            .update()
        }

        fn new_rows(begin: Begin) -> Vec<Row> {
            match begin {
                Begin::New { rows, .. } => rows,
                other => panic!("expected a new send, got {other:?}"),
            }
        }

        // ---- kv ----

        #[tokio::test]
        async fn kv_namespaces_are_separate_per_plugin_and_account() {
            let Some(f) = fixture().await else { return };
            let quota = KvQuota::default();
            f.storage
                .kv_set(&scope("a", "x"), "k", b"1", None, &quota)
                .await
                .unwrap();
            assert_eq!(
                f.storage.kv_get(&scope("a", "x"), "k").await.unwrap(),
                Some(b"1".to_vec())
            );
            assert_eq!(f.storage.kv_get(&scope("b", "x"), "k").await.unwrap(), None);
            assert_eq!(f.storage.kv_get(&scope("a", "y"), "k").await.unwrap(), None);
            f.storage.kv_delete(&scope("a", "x"), "k").await.unwrap();
            assert_eq!(f.storage.kv_get(&scope("a", "x"), "k").await.unwrap(), None);
        }

        #[tokio::test]
        async fn kv_quota_and_sizes_are_enforced() {
            let Some(f) = fixture().await else { return };
            let s = scope("a", "x");
            let quota = KvQuota {
                max_keys: 2,
                max_key_bytes: 8,
                max_value_bytes: 4,
            };
            f.storage
                .kv_set(&s, "k1", b"1", None, &quota)
                .await
                .unwrap();
            f.storage
                .kv_set(&s, "k2", b"1", None, &quota)
                .await
                .unwrap();
            assert_eq!(
                f.storage.kv_set(&s, "k3", b"1", None, &quota).await,
                Err(KvError::QuotaExceeded)
            );
            // Overwriting an existing key does not count against the quota.
            f.storage
                .kv_set(&s, "k1", b"2", None, &quota)
                .await
                .unwrap();
            assert_eq!(
                f.storage.kv_set(&s, "k1", b"12345", None, &quota).await,
                Err(KvError::TooLarge)
            );
            assert_eq!(
                f.storage.kv_set(&s, "longer-key", b"1", None, &quota).await,
                Err(KvError::TooLarge)
            );
            // Another namespace has its own quota.
            f.storage
                .kv_set(&scope("a", "y"), "k3", b"1", None, &quota)
                .await
                .unwrap();
        }

        #[tokio::test]
        async fn kv_ttl_expires_and_frees_the_quota() {
            let Some(f) = fixture().await else { return };
            let s = scope("a", "x");
            let quota = KvQuota {
                max_keys: 1,
                ..KvQuota::default()
            };
            f.storage
                .kv_set(&s, "t", b"x", Some(0), &quota)
                .await
                .unwrap();
            assert_eq!(f.storage.kv_get(&s, "t").await.unwrap(), None);
            // The expired key does not hold the only slot.
            f.storage
                .kv_set(&s, "u", b"y", Some(60_000), &quota)
                .await
                .unwrap();
            assert_eq!(
                f.storage.kv_get(&s, "u").await.unwrap(),
                Some(b"y".to_vec())
            );
        }

        #[tokio::test]
        async fn kv_increment_counts_and_refuses_what_is_not_a_number() {
            let Some(f) = fixture().await else { return };
            let s = scope("a", "x");
            let quota = KvQuota::default();
            assert_eq!(f.storage.kv_increment(&s, "n", 5, &quota).await.unwrap(), 5);
            assert_eq!(
                f.storage.kv_increment(&s, "n", -2, &quota).await.unwrap(),
                3
            );
            f.storage
                .kv_set(&s, "s", b"abc", None, &quota)
                .await
                .unwrap();
            assert_eq!(
                f.storage.kv_increment(&s, "s", 1, &quota).await,
                Err(KvError::NotANumber)
            );
            f.storage
                .kv_set(&s, "max", i64::MAX.to_string().as_bytes(), None, &quota)
                .await
                .unwrap();
            assert_eq!(
                f.storage.kv_increment(&s, "max", 1, &quota).await,
                Err(KvError::NotANumber)
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn kv_concurrent_increments_are_never_lost() {
            let Some(f) = fixture().await else { return };
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let storage = f.storage.clone();
                    tokio::spawn(async move {
                        for _ in 0..50 {
                            storage
                                .kv_increment(&scope("a", "x"), "n", 1, &KvQuota::default())
                                .await
                                .unwrap();
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(
                f.storage.kv_get(&scope("a", "x"), "n").await.unwrap(),
                Some(b"400".to_vec())
            );
        }

        // ---- tokens ----

        #[tokio::test]
        async fn tokens_are_kept_per_scope_and_credential() {
            let Some(f) = fixture().await else { return };
            let token = StoredToken {
                sealed: vec![1, 2, 3],
                refresh_at_ms: 42,
            };
            f.storage
                .token_put(&scope("d", "x"), "key", &token)
                .await
                .unwrap();
            assert_eq!(
                f.storage.token_get(&scope("d", "x"), "key").await.unwrap(),
                Some(token)
            );
            assert_eq!(
                f.storage.token_get(&scope("d", "y"), "key").await.unwrap(),
                None
            );
            assert_eq!(
                f.storage
                    .token_get(&scope("d", "x"), "other")
                    .await
                    .unwrap(),
                None
            );
            let newer = StoredToken {
                sealed: vec![9],
                refresh_at_ms: 43,
            };
            f.storage
                .token_put(&scope("d", "x"), "key", &newer)
                .await
                .unwrap();
            assert_eq!(
                f.storage.token_get(&scope("d", "x"), "key").await.unwrap(),
                Some(newer)
            );
        }

        #[tokio::test]
        async fn the_token_lock_has_one_holder_until_it_expires_or_is_released() {
            let Some(f) = fixture().await else { return };
            let s = scope("d", "x");
            let far = now_ms() + 60_000;
            assert!(f.storage.token_lock(&s, "key", "a", far).await.unwrap());
            assert!(!f.storage.token_lock(&s, "key", "b", far).await.unwrap());
            // The holder may take it again (extending it); an unlock by another does nothing.
            assert!(f.storage.token_lock(&s, "key", "a", far).await.unwrap());
            f.storage.token_unlock(&s, "key", "b").await.unwrap();
            assert!(!f.storage.token_lock(&s, "key", "b", far).await.unwrap());
            f.storage.token_unlock(&s, "key", "a").await.unwrap();
            assert!(
                f.storage
                    .token_lock(&s, "key", "b", now_ms() - 1)
                    .await
                    .unwrap()
            );
            // b's lock has expired already: a takes it.
            assert!(f.storage.token_lock(&s, "key", "a", far).await.unwrap());
            // Locking creates no token.
            assert_eq!(f.storage.token_get(&s, "key").await.unwrap(), None);
        }

        // ---- journal ----

        #[tokio::test]
        async fn journal_begin_record_finish_then_replay() {
            let Some(f) = fixture().await else { return };
            let (key, me) = (send("k1"), lease("me", 60_000));
            let rows = new_rows(
                f.storage
                    .journal_begin(&key, "fp", &nicks(3), 2, &me)
                    .await
                    .unwrap(),
            );
            assert_eq!(rows.len(), 3);
            let (state, so_far) = f.storage.journal_outcome(&key).await.unwrap().unwrap();
            assert_eq!(state, "pending");
            // Rows written in flight count as unknown until recorded.
            assert_eq!(so_far.failed.len(), 3);
            assert!(so_far.failed.iter().all(|f| f.error.code == "interrupted"));
            let none = f
                .storage
                .journal_record(&key, &me, vec![issued(&rows[0])], vec!["r1".into()], false)
                .await
                .unwrap();
            assert!(none.is_none());
            let outcome = f
                .storage
                .journal_record(
                    &key,
                    &me,
                    vec![
                        failed(&rows[1], ErrorClass::RecipientInvalid),
                        issued(&rows[2]),
                    ],
                    vec!["r2".into()],
                    true,
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!(outcome.issued.len(), 2);
            assert_eq!(outcome.issued[0].coupon_id.as_deref(), Some("c-0"));
            assert_eq!(outcome.failed.len(), 1);
            assert_eq!(outcome.failed[0].error.class, ErrorClass::RecipientInvalid);
            assert_eq!(outcome.platform_request_ids, vec!["r1", "r2"]);
            assert_eq!(outcome.idempotency_key, "k1");
            // Anyone beginning it again gets the recorded outcome, whatever their lease.
            match f
                .storage
                .journal_begin(&key, "fp", &nicks(3), 3, &lease("other", 60_000))
                .await
                .unwrap()
            {
                Begin::Ended(replayed) => assert_eq!(replayed, outcome),
                other => panic!("expected the recorded outcome, got {other:?}"),
            }
            assert_eq!(
                f.storage.journal_outcome(&key).await.unwrap().unwrap().0,
                "done"
            );
        }

        #[tokio::test]
        async fn journal_a_send_with_an_unknown_recipient_ends_unknown() {
            let Some(f) = fixture().await else { return };
            let (key, me) = (send("k"), lease("me", 60_000));
            let rows = new_rows(
                f.storage
                    .journal_begin(&key, "fp", &nicks(2), 2, &me)
                    .await
                    .unwrap(),
            );
            let outcome = f
                .storage
                .journal_record(
                    &key,
                    &me,
                    vec![issued(&rows[0]), failed(&rows[1], ErrorClass::Unknown)],
                    vec![],
                    true,
                )
                .await
                .unwrap()
                .unwrap();
            assert_eq!((outcome.issued.len(), outcome.failed.len()), (1, 1));
            assert_eq!(
                f.storage.journal_outcome(&key).await.unwrap().unwrap().0,
                "unknown"
            );
        }

        #[tokio::test]
        async fn journal_refuses_a_key_reused_for_another_request() {
            let Some(f) = fixture().await else { return };
            let me = lease("me", 60_000);
            f.storage
                .journal_begin(&send("k"), "fp-1", &nicks(1), 1, &me)
                .await
                .unwrap();
            assert!(matches!(
                f.storage
                    .journal_begin(&send("k"), "fp-2", &nicks(1), 1, &me)
                    .await
                    .unwrap(),
                Begin::Mismatch
            ));
            // The same key in another scope is another send.
            let elsewhere = SendKey {
                scope: scope("p", "other"),
                key: "k".into(),
            };
            assert!(matches!(
                f.storage
                    .journal_begin(&elsewhere, "fp-2", &nicks(1), 1, &me)
                    .await
                    .unwrap(),
                Begin::New { .. }
            ));
        }

        #[tokio::test]
        async fn journal_a_live_lease_keeps_others_out_and_an_expired_one_is_taken_over() {
            let Some(f) = fixture().await else { return };
            let key = send("k");
            let (first, second) = (lease("first", 60_000), lease("second", 60_000));
            let rows = new_rows(
                f.storage
                    .journal_begin(&key, "fp", &nicks(2), 1, &first)
                    .await
                    .unwrap(),
            );
            f.storage
                .journal_record(&key, &first, vec![issued(&rows[0])], vec![], false)
                .await
                .unwrap();
            match f
                .storage
                .journal_begin(&key, "fp", &nicks(2), 1, &second)
                .await
                .unwrap()
            {
                Begin::Busy { until_ms } => assert!(until_ms > now_ms()),
                other => panic!("expected busy, got {other:?}"),
            }
            // The first holder renews with a lease that has already run out, as if it had
            // stalled: the second takes the send over and finds the rows as recorded.
            let stalled = lease("first", -1);
            f.storage.journal_renew(&key, &stalled).await.unwrap();
            let resumed = match f
                .storage
                .journal_begin(&key, "fp", &nicks(2), 1, &second)
                .await
                .unwrap()
            {
                Begin::Resumed(rows) => rows,
                other => panic!("expected a takeover, got {other:?}"),
            };
            assert_eq!(resumed[0].state, RowState::Issued);
            assert_eq!(resumed[1].state, RowState::New);
            // The first holder's next write fails: it lost the lease.
            let lost = f
                .storage
                .journal_record(&key, &first, vec![issued(&rows[1])], vec![], true)
                .await;
            assert!(
                matches!(lost, Err($crate::Error::LeaseLost { .. })),
                "{lost:?}"
            );
            assert!(matches!(
                f.storage.journal_renew(&key, &first).await,
                Err($crate::Error::LeaseLost { .. })
            ));
            let outcome = f
                .storage
                .journal_record(&key, &second, vec![issued(&resumed[1])], vec![], true)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(outcome.issued.len(), 2);
        }

        #[tokio::test]
        async fn journal_a_holder_cut_short_gives_its_leases_up() {
            let Some(f) = fixture().await else { return };
            let key = send("k");
            new_rows(f.storage.journal_begin(&key, "fp", &nicks(1), 1, &lease("cut", 60_000)).await.unwrap());
            let next = lease("next", 60_000);
            assert!(matches!(f.storage.journal_begin(&key, "fp", &nicks(1), 1, &next).await.unwrap(), Begin::Busy { .. }));
            f.storage.journal_release_holder("cut").await.unwrap();
            assert!(matches!(f.storage.journal_begin(&key, "fp", &nicks(1), 1, &next).await.unwrap(), Begin::Resumed(_)));
        }

        #[tokio::test]
        async fn journal_resumes_rows_left_in_flight_by_a_crash() {
            let Some(f) = fixture().await else { return };
            let key = send("k");
            let crashed = lease("crashed", 1);
            new_rows(
                f.storage
                    .journal_begin(&key, "fp", &nicks(3), 2, &crashed)
                    .await
                    .unwrap(),
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let rows = match f
                .storage
                .journal_begin(&key, "fp", &nicks(3), 2, &lease("next", 60_000))
                .await
                .unwrap()
            {
                Begin::Resumed(rows) => rows,
                other => panic!("expected the interrupted send, got {other:?}"),
            };
            let states: Vec<_> = rows.iter().map(|r| (r.state, r.attempts)).collect();
            assert_eq!(
                states,
                vec![
                    (RowState::InFlight, 1),
                    (RowState::InFlight, 1),
                    (RowState::New, 0)
                ]
            );
            // The same process (same holder) resumes its own send at once, lease or not.
            let mine = lease("next", 60_000);
            assert!(matches!(
                f.storage
                    .journal_begin(&key, "fp", &nicks(3), 2, &mine)
                    .await
                    .unwrap(),
                Begin::Resumed(_)
            ));
        }

        #[tokio::test]
        async fn journal_forget_frees_the_key() {
            let Some(f) = fixture().await else { return };
            let (key, me) = (send("k"), lease("me", 60_000));
            f.storage
                .journal_begin(&key, "fp-1", &nicks(1), 1, &me)
                .await
                .unwrap();
            f.storage.journal_forget(&key, &me).await.unwrap();
            assert!(f.storage.journal_outcome(&key).await.unwrap().is_none());
            assert!(matches!(
                f.storage
                    .journal_begin(&key, "fp-2", &nicks(1), 1, &me)
                    .await
                    .unwrap(),
                Begin::New { .. }
            ));
        }

        #[tokio::test]
        async fn journal_keeps_at_most_the_cap_of_request_ids() {
            let Some(f) = fixture().await else { return };
            let (key, me) = (send("k"), lease("me", 60_000));
            let rows = new_rows(
                f.storage
                    .journal_begin(&key, "fp", &nicks(1), 1, &me)
                    .await
                    .unwrap(),
            );
            let ids: Vec<String> = (0..2000).map(|i| format!("r{i}")).collect();
            let outcome = f
                .storage
                .journal_record(&key, &me, vec![issued(&rows[0])], ids, true)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(outcome.platform_request_ids.len(), journal::MAX_REQUEST_IDS);
            assert_eq!(outcome.platform_request_ids[0], "r0");
        }

        // ---- ledger ----

        fn campaign(id: &str, batch_size: u64) -> CampaignRecord {
            CampaignRecord {
                id: id.to_owned(),
                scope: scope("p", DEFAULT_ACCOUNT),
                coupon: "48552".into(),
                quantity: 1,
                options: vec![("simplify".into(), "true".into())],
                source: "/tmp/list.txt".into(),
                source_sha256: "ab".repeat(32),
                total_lines: 7,
                batch_size,
            }
        }

        /// Enqueues lines 1..=7: n0 n1 n0 (a repeat) n2 n3 n4, and a rejected line 5.
        async fn enqueue(f: &Fixture, id: &str) -> Vec<Recipient> {
            let mut candidates: Vec<(u64, Recipient)> = vec![
                (1, Recipient::Nick("n0".into())),
                (2, Recipient::Nick("n1".into())),
                (3, Recipient::Nick("n0".into())),
                (4, Recipient::Nick("n2".into())),
            ];
            let mut kept = f
                .storage
                .campaign_accept(id, candidates.clone(), 0, 2)
                .await
                .unwrap();
            // A rerun over the same lines accepts the same recipients again.
            assert_eq!(
                f.storage
                    .campaign_accept(id, candidates.clone(), 0, 2)
                    .await
                    .unwrap(),
                kept
            );
            f.storage
                .campaign_reject(
                    id,
                    vec![Reject {
                        line: 5,
                        text: "bogus".into(),
                        state: "rejected",
                        reason: "malformed".into(),
                    }],
                )
                .await
                .unwrap();
            candidates = vec![
                (6, Recipient::Nick("n3".into())),
                (7, Recipient::Nick("n4".into())),
            ];
            kept.extend(
                f.storage
                    .campaign_accept(id, candidates, 3, 2)
                    .await
                    .unwrap(),
            );
            kept
        }

        #[tokio::test]
        async fn ledger_open_registers_once_and_returns_what_was_registered() {
            let Some(f) = fixture().await else { return };
            assert_eq!(
                f.storage.campaign_open(&campaign("c", 2)).await.unwrap(),
                None
            );
            let mut changed = campaign("c", 2);
            changed.source_sha256 = "cd".repeat(32);
            assert_eq!(
                f.storage.campaign_open(&changed).await.unwrap(),
                Some(campaign("c", 2))
            );
            assert_eq!(
                f.storage.campaign_get("c").await.unwrap(),
                Some(campaign("c", 2))
            );
            assert_eq!(f.storage.campaign_get("nope").await.unwrap(), None);
            assert!(matches!(
                f.storage.campaign_status("nope").await,
                Err($crate::Error::UnknownCampaign(_))
            ));
        }

        #[tokio::test]
        async fn ledger_accepts_in_file_order_and_skips_repeats() {
            let Some(f) = fixture().await else { return };
            f.storage.campaign_open(&campaign("c", 2)).await.unwrap();
            let kept = enqueue(&f, "c").await;
            let names: Vec<String> = kept.iter().map(|r| r.id().to_owned()).collect();
            assert_eq!(names, ["n0", "n1", "n2", "n3", "n4"]);
            let status = f.storage.campaign_status("c").await.unwrap();
            assert_eq!(
                (status.total, status.rejected, status.skipped, status.pending),
                (7, 1, 1, 5)
            );
            assert_eq!(status.state, "running");
        }

        #[tokio::test]
        async fn ledger_batches_are_claimed_lowest_first_once_each_and_reclaimed_after_a_lease() {
            let Some(f) = fixture().await else { return };
            f.storage.campaign_open(&campaign("c", 2)).await.unwrap();
            enqueue(&f, "c").await;
            let far = now_ms() + 60_000;
            assert_eq!(
                f.storage
                    .campaign_claim(Some("c"), "w1", far)
                    .await
                    .unwrap(),
                Claim::Wait
            );
            for index in 0..3 {
                f.storage.campaign_queue("c", index).await.unwrap();
            }
            f.storage.campaign_queue("c", 0).await.unwrap();
            let Claim::Batch(first) = f
                .storage
                .campaign_claim(Some("c"), "w1", far)
                .await
                .unwrap()
            else {
                panic!("expected a batch");
            };
            assert_eq!((first.index, first.recipients.len()), (0, 2));
            assert_eq!(first.recipients[1], Recipient::Nick("n1".into()));
            // Batch 1 leased by a holder that then dies (its lease has run out already).
            let Claim::Batch(second) = f
                .storage
                .campaign_claim(Some("c"), "w2", now_ms() - 1)
                .await
                .unwrap()
            else {
                panic!("expected a batch");
            };
            assert_eq!(second.index, 1);
            let Claim::Batch(third) = f.storage.campaign_claim(None, "w3", far).await.unwrap()
            else {
                panic!("expected a batch");
            };
            assert_eq!(
                (third.index, third.recipients.len()),
                (1, 2),
                "the dead holder's batch first"
            );
            assert!(
                !f.storage.campaign_renew("c", 1, "w2", far).await.unwrap(),
                "w2 lost it"
            );
            assert!(f.storage.campaign_renew("c", 1, "w3", far).await.unwrap());
            let Claim::Batch(last) = f
                .storage
                .campaign_claim(Some("c"), "w1", far)
                .await
                .unwrap()
            else {
                panic!("expected a batch");
            };
            assert_eq!((last.index, last.recipients.len()), (2, 1));
            assert_eq!(
                f.storage
                    .campaign_claim(Some("c"), "w1", far)
                    .await
                    .unwrap(),
                Claim::Wait
            );
            // Released undone: queued again.
            f.storage
                .campaign_release("c", 2, "w1", false, 0)
                .await
                .unwrap();
            let Claim::Batch(again) = f
                .storage
                .campaign_claim(Some("c"), "w1", far)
                .await
                .unwrap()
            else {
                panic!("expected a batch");
            };
            assert_eq!(again.index, 2);
            f.storage
                .campaign_release("c", 0, "w1", true, 2)
                .await
                .unwrap();
            f.storage
                .campaign_release("c", 1, "w3", true, 2)
                .await
                .unwrap();
            f.storage
                .campaign_release("c", 2, "w1", true, 1)
                .await
                .unwrap();
            // Not enqueued to the end yet: more batches may come.
            assert_eq!(
                f.storage
                    .campaign_claim(Some("c"), "w1", far)
                    .await
                    .unwrap(),
                Claim::Wait
            );
            f.storage.campaign_enqueued("c").await.unwrap();
            assert_eq!(
                f.storage
                    .campaign_claim(Some("c"), "w1", far)
                    .await
                    .unwrap(),
                Claim::Done
            );
            assert_eq!(f.storage.campaign_status("c").await.unwrap().state, "done");
            let workers = f.storage.campaign_workers("c", 0).await.unwrap();
            let progress: Vec<_> = workers
                .iter()
                .map(|w| (w.id.as_str(), w.batches, w.recipients))
                .collect();
            assert_eq!(progress, vec![("w1", 2, 3), ("w3", 1, 2)]);
            assert!(
                f.storage
                    .campaign_workers("c", now_ms() + 1000)
                    .await
                    .unwrap()
                    .is_empty()
            );
        }

        #[tokio::test]
        async fn ledger_a_holder_cut_short_gives_its_batches_back() {
            let Some(f) = fixture().await else { return };
            f.storage.campaign_open(&campaign("c", 2)).await.unwrap();
            enqueue(&f, "c").await;
            f.storage.campaign_queue("c", 0).await.unwrap();
            let far = now_ms() + 60_000;
            assert!(matches!(f.storage.campaign_claim(Some("c"), "cut", far).await.unwrap(), Claim::Batch(_)));
            assert_eq!(f.storage.campaign_claim(Some("c"), "next", far).await.unwrap(), Claim::Wait);
            f.storage.campaign_release_holder("cut").await.unwrap();
            assert!(matches!(f.storage.campaign_claim(Some("c"), "next", far).await.unwrap(), Claim::Batch(b) if b.index == 0));
        }

        #[tokio::test]
        async fn ledger_a_stopped_campaign_hands_out_no_batch_until_started_again() {
            let Some(f) = fixture().await else { return };
            f.storage.campaign_open(&campaign("c", 2)).await.unwrap();
            enqueue(&f, "c").await;
            f.storage.campaign_queue("c", 0).await.unwrap();
            f.storage
                .campaign_stop("c", Some("coupon-unavailable"))
                .await
                .unwrap();
            let far = now_ms() + 60_000;
            assert_eq!(
                f.storage.campaign_claim(Some("c"), "w", far).await.unwrap(),
                Claim::Stopped("coupon-unavailable".into())
            );
            assert_eq!(
                f.storage.campaign_claim(None, "w", far).await.unwrap(),
                Claim::Wait
            );
            // Its status says so, with the refusal (as stored: an error's JSON, or plain text).
            let status = f.storage.campaign_status("c").await.unwrap();
            assert_eq!(status.state, "stopped");
            assert_eq!(
                status.error.as_ref().map(|e| e.message.as_str()),
                Some("coupon-unavailable")
            );
            let refusal = AdapterError::new(ErrorClass::CouponUnavailable, "15", "no such coupon");
            f.storage
                .campaign_stop("c", Some(&serde_json::to_string(&refusal).unwrap()))
                .await
                .unwrap();
            let status = f.storage.campaign_status("c").await.unwrap();
            assert_eq!((status.state.as_str(), status.error), ("stopped", Some(refusal)));
            f.storage.campaign_stop("c", None).await.unwrap();
            let status = f.storage.campaign_status("c").await.unwrap();
            assert_eq!((status.state.as_str(), status.error), ("running", None));
            assert!(matches!(
                f.storage.campaign_claim(Some("c"), "w", far).await.unwrap(),
                Claim::Batch(_)
            ));
        }

        #[tokio::test]
        async fn ledger_status_and_report_follow_the_journal_in_file_order() {
            let Some(f) = fixture().await else { return };
            f.storage.campaign_open(&campaign("c", 2)).await.unwrap();
            enqueue(&f, "c").await;
            // Batch 0 (n0, n1) sent: n0 issued, n1 failed; batch 1 (n2, n3) in flight.
            let me = lease("me", 60_000);
            let b0 = SendKey {
                scope: scope("p", DEFAULT_ACCOUNT),
                key: ledger::batch_key("c", 0),
            };
            let rows = new_rows(
                f.storage
                    .journal_begin(
                        &b0,
                        "fp",
                        &[Recipient::Nick("n0".into()), Recipient::Nick("n1".into())],
                        2,
                        &me,
                    )
                    .await
                    .unwrap(),
            );
            f.storage
                .journal_record(
                    &b0,
                    &me,
                    vec![
                        issued(&rows[0]),
                        failed(&rows[1], ErrorClass::RecipientLimit),
                    ],
                    vec![],
                    true,
                )
                .await
                .unwrap();
            let b1 = SendKey {
                scope: scope("p", DEFAULT_ACCOUNT),
                key: ledger::batch_key("c", 1),
            };
            f.storage
                .journal_begin(
                    &b1,
                    "fp",
                    &[Recipient::Nick("n2".into()), Recipient::Nick("n3".into())],
                    2,
                    &me,
                )
                .await
                .unwrap();
            // A send of another scope under a look-alike key does not count.
            let stranger = SendKey {
                scope: scope("p", "other"),
                key: ledger::batch_key("c", 2),
            };
            let rows = new_rows(
                f.storage
                    .journal_begin(&stranger, "fp", &[Recipient::Nick("n4".into())], 1, &me)
                    .await
                    .unwrap(),
            );
            f.storage
                .journal_record(&stranger, &me, vec![issued(&rows[0])], vec![], true)
                .await
                .unwrap();

            let status = f.storage.campaign_status("c").await.unwrap();
            assert_eq!(
                (
                    status.issued,
                    status.failed,
                    status.unknown,
                    status.rejected,
                    status.skipped,
                    status.pending
                ),
                (1, 1, 0, 1, 1, 3),
                "{status:?}"
            );
            let mut lines = Vec::new();
            let mut after = 0;
            loop {
                let page = f.storage.campaign_report("c", after, 3).await.unwrap();
                let Some(last) = page.last() else { break };
                after = last.line;
                lines.extend(page);
            }
            let shown: Vec<(u64, &str, &str)> = lines
                .iter()
                .map(|l| (l.line, l.recipient.as_str(), l.state.as_str()))
                .collect();
            assert_eq!(
                shown,
                vec![
                    (1, "nick:n0", "issued"),
                    (2, "nick:n1", "failed"),
                    (3, "nick:n0", "skipped"),
                    (4, "nick:n2", "pending"),
                    (5, "bogus", "rejected"),
                    (6, "nick:n3", "pending"),
                    (7, "nick:n4", "pending"),
                ]
            );
            assert_eq!(lines[0].coupon_id.as_deref(), Some("c-0"));
            assert_eq!(lines[1].class.as_deref(), Some("recipient-limit"));
            assert_eq!(
                lines[2].message.as_deref(),
                Some("repeats line 1; sent once")
            );
        }

        // ---- processes ----

        fn process(holder: &str, beat_ms: i64) -> Process {
            Process {
                holder: holder.to_owned(),
                host: "box".into(),
                pid: 42,
                works: "c".into(),
                beat_ms,
            }
        }

        #[tokio::test]
        async fn processes_beat_and_a_dead_ones_leases_are_given_back_at_once() {
            let Some(f) = fixture().await else { return };
            // A process holds a batch and its send, both leased for an hour.
            f.storage.campaign_open(&campaign("c", 2)).await.unwrap();
            enqueue(&f, "c").await;
            f.storage.campaign_queue("c", 0).await.unwrap();
            let hour = now_ms() + 3_600_000;
            let Claim::Batch(batch) = f.storage.campaign_claim(Some("c"), "dead", hour).await.unwrap() else {
                panic!("a batch to claim")
            };
            let key = SendKey {
                scope: scope("p", DEFAULT_ACCOUNT),
                key: ledger::batch_key("c", batch.index),
            };
            new_rows(f.storage.journal_begin(&key, "fp", &batch.recipients, 2, &lease("dead", 3_600_000)).await.unwrap());
            let beat = now_ms() - 60_000;
            f.storage.process_beat(&process("dead", beat)).await.unwrap();
            f.storage.process_beat(&process("live", now_ms())).await.unwrap();
            let listed = f.storage.processes().await.unwrap();
            assert_eq!(listed, vec![process("dead", beat), listed[1].clone()]);
            assert!(listed[1].works_on("c") && !listed[1].works_on("d"));
            // Nobody else gets them while the leases hold.
            assert_eq!(f.storage.campaign_claim(Some("c"), "live", hour).await.unwrap(), Claim::Wait);
            let next = lease("live", 60_000);
            assert!(matches!(f.storage.journal_begin(&key, "fp", &batch.recipients, 2, &next).await.unwrap(), Begin::Busy { .. }));

            // A reap that saw an older beat than the last leaves the process alone.
            assert_eq!(f.storage.process_reap("dead", Some(beat - 1)).await.unwrap(), None);
            assert_eq!(
                f.storage.process_reap("dead", Some(beat)).await.unwrap(),
                Some(Reaped { batches: 1, sends: 1 })
            );
            // Once: a second reaper finds it ended.
            assert_eq!(f.storage.process_reap("dead", Some(beat)).await.unwrap(), None);
            let listed: Vec<String> = f.storage.processes().await.unwrap().into_iter().map(|p| p.holder).collect();
            assert_eq!(listed, ["live"]);
            // Its batch and its send are taken over at once, an hour before their leases end.
            assert!(matches!(f.storage.campaign_claim(Some("c"), "live", hour).await.unwrap(), Claim::Batch(b) if b.index == batch.index));
            assert!(matches!(f.storage.journal_begin(&key, "fp", &batch.recipients, 2, &next).await.unwrap(), Begin::Resumed(_)));
            // A live process's own end gives back what it holds, whatever its last beat.
            assert_eq!(
                f.storage.process_reap("live", None).await.unwrap(),
                Some(Reaped { batches: 1, sends: 1 })
            );
            assert!(f.storage.processes().await.unwrap().is_empty());
            // Beating again says it is alive again.
            f.storage.process_beat(&process("live", now_ms())).await.unwrap();
            assert_eq!(f.storage.processes().await.unwrap().len(), 1);
        }

        // ---- accounts ----

        fn account(plugin: &str, name: &str) -> StoredAccount {
            StoredAccount {
                plugin: plugin.to_owned(),
                name: name.to_owned(),
                state: "active".into(),
                settings: [("brand_id".to_owned(), "b-1".to_owned())].into(),
                sealed: [("session".to_owned(), vec![1, 2, 3])].into(),
                client_key: Some("ck".into()),
                qps: Some(20),
                expires_at_ms: Some(1_000),
                refresh_expires_at_ms: Some(2_000),
                seller: Some("shop".into()),
                ..StoredAccount::default()
            }
        }

        #[tokio::test]
        async fn accounts_are_kept_per_plugin_listed_in_order_and_removed() {
            let Some(f) = fixture().await else { return };
            for (plugin, name) in [("taobao", "b"), ("taobao", "a"), ("douyin", "a")] {
                f.storage.account_put(&account(plugin, name)).await.unwrap();
            }
            let got = f.storage.account_get("taobao", "a").await.unwrap().unwrap();
            let mut expected = account("taobao", "a");
            expected.updated_ms = got.updated_ms;
            assert_eq!(got, expected);
            let names: Vec<_> = f
                .storage
                .account_list(Some("taobao"))
                .await
                .unwrap()
                .into_iter()
                .map(|a| a.name)
                .collect();
            assert_eq!(names, ["a", "b"]);
            assert_eq!(f.storage.account_list(None).await.unwrap().len(), 3);
            f.storage
                .account_set_state("taobao", "a", "needs-reauth", Some("27"))
                .await
                .unwrap();
            let changed = f.storage.account_get("taobao", "a").await.unwrap().unwrap();
            assert_eq!(
                (changed.state.as_str(), changed.reason.as_deref()),
                ("needs-reauth", Some("27"))
            );
            assert_eq!(
                changed.sealed, expected.sealed,
                "a state change keeps the secrets"
            );
            assert!(f.storage.account_remove("taobao", "a").await.unwrap());
            assert!(!f.storage.account_remove("taobao", "a").await.unwrap());
            assert_eq!(f.storage.account_get("taobao", "a").await.unwrap(), None);
            assert!(
                f.storage
                    .account_get("douyin", "a")
                    .await
                    .unwrap()
                    .is_some()
            );
        }

        #[tokio::test]
        async fn the_master_key_check_is_kept() {
            let Some(f) = fixture().await else { return };
            assert_eq!(f.storage.master_check_get().await.unwrap(), None);
            f.storage.master_check_put(b"one").await.unwrap();
            f.storage.master_check_put(b"two").await.unwrap();
            assert_eq!(
                f.storage.master_check_get().await.unwrap(),
                Some(b"two".to_vec())
            );
        }

        // ---- pacing ----

        #[tokio::test]
        async fn pacing_admits_qps_per_window_counting_until_released() {
            let Some(f) = fixture().await else { return };
            let now = now_ms();
            let mut granted = Vec::new();
            for _ in 0..3 {
                match f
                    .storage
                    .pace_admit("app", 3, 1000, "h", now, now + 5000)
                    .await
                    .unwrap()
                {
                    Admission::Granted(id) => granted.push(id),
                    other => panic!("expected a grant, got {other:?}"),
                }
            }
            // All three in flight: the next waits for one to finish.
            assert!(matches!(
                f.storage
                    .pace_admit("app", 3, 1000, "h", now, now + 5000)
                    .await
                    .unwrap(),
                Admission::Wait(_)
            ));
            // Another credential has its own window.
            assert!(matches!(
                f.storage
                    .pace_admit("other", 3, 1000, "h", now, now + 5000)
                    .await
                    .unwrap(),
                Admission::Granted(_)
            ));
            f.storage
                .pace_release("app", granted[0], now + 10)
                .await
                .unwrap();
            // Finished, but within the window still: wait until it leaves it.
            match f
                .storage
                .pace_admit("app", 3, 1000, "h", now + 20, now + 5000)
                .await
                .unwrap()
            {
                Admission::Wait(ms) => assert_eq!(ms, 990),
                other => panic!("expected a wait, got {other:?}"),
            }
            assert!(matches!(
                f.storage
                    .pace_admit("app", 3, 1000, "h", now + 1010, now + 5000)
                    .await
                    .unwrap(),
                Admission::Granted(_)
            ));
        }

        #[tokio::test]
        async fn pacing_a_dead_holders_request_leaves_the_window_after_its_lease() {
            let Some(f) = fixture().await else { return };
            let now = now_ms();
            assert!(matches!(
                f.storage
                    .pace_admit("app", 1, 1000, "dead", now, now + 100)
                    .await
                    .unwrap(),
                Admission::Granted(_)
            ));
            assert!(matches!(
                f.storage
                    .pace_admit("app", 1, 1000, "h", now + 500, now + 5000)
                    .await
                    .unwrap(),
                Admission::Wait(_)
            ));
            assert!(matches!(
                f.storage
                    .pace_admit("app", 1, 1000, "h", now + 1100, now + 5000)
                    .await
                    .unwrap(),
                Admission::Granted(_)
            ));
        }

        #[tokio::test]
        async fn pacing_a_ban_holds_every_admission_and_a_longer_one_stays() {
            let Some(f) = fixture().await else { return };
            let now = now_ms();
            f.storage.pace_ban("app", now + 3000).await.unwrap();
            f.storage.pace_ban("app", now + 1000).await.unwrap();
            assert_eq!(
                f.storage.pace_banned_until("app", now).await.unwrap(),
                Some(now + 3000)
            );
            assert_eq!(
                f.storage
                    .pace_admit("app", 100, 1000, "h", now, now + 5000)
                    .await
                    .unwrap(),
                Admission::Wait(3000)
            );
            assert_eq!(
                f.storage
                    .pace_banned_until("app", now + 3000)
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                f.storage.pace_banned_until("other", now).await.unwrap(),
                None
            );
        }
    };
}

pub(crate) use storage_suite;
