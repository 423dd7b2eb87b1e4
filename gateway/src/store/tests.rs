//! Key store tests. Every scenario runs on SQLite; the same scenarios run on
//! PostgreSQL when `MFT_TEST_POSTGRES_URL` is set (see scripts/start-postgres),
//! each in a schema of its own so they can run in parallel.

use super::*;
use mft_filters::auth::api_key;
use std::sync::Mutex;

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn secret_of(token: &str) -> &str {
    // mgw_<16 hex>_<secret>; the secret itself may contain '_'.
    &token[api_key::PREFIX.len() + api_key::ID_LEN + 1..]
}

/// A clock the test moves by hand.
#[derive(Clone)]
struct FakeClock(Arc<Mutex<SystemTime>>);

impl FakeClock {
    fn new() -> FakeClock {
        // A whole second, so nothing depends on millisecond rounding.
        FakeClock(Arc::new(Mutex::new(
            UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        )))
    }
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
    fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
    fn clock(&self) -> Clock {
        let me = self.clone();
        Arc::new(move || me.now())
    }
}

async fn sqlite_store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, &dir.path().join("data")).await.unwrap();
    (store, dir)
}

/// A store in a fresh schema of the test PostgreSQL, or `None` (with a note)
/// when `MFT_TEST_POSTGRES_URL` is not set.
async fn postgres_store(test: &str) -> Option<(Store, PgSchema)> {
    let Ok(url) = std::env::var("MFT_TEST_POSTGRES_URL") else {
        eprintln!("skipped {test} on PostgreSQL: MFT_TEST_POSTGRES_URL is not set");
        return None;
    };
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).unwrap();
    let schema = format!(
        "t_{}",
        random
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let admin = PgPool::connect(&url)
        .await
        .expect("connect to MFT_TEST_POSTGRES_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let sep = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{sep}options[search_path]={schema}");
    let store = Store::open(Some(&schema_url), Path::new("/nonexistent"))
        .await
        .unwrap();
    assert!(store.is_postgres());
    Some((
        store,
        PgSchema {
            url,
            schema_url,
            schema,
        },
    ))
}

/// A test's own schema in the test PostgreSQL.
struct PgSchema {
    url: String,
    /// The URL with this schema as search_path, for more handles.
    schema_url: String,
    schema: String,
}

impl PgSchema {
    /// Drops the schema (after a passing test; a failing one leaves it to look at).
    async fn drop(self) {
        let admin = PgPool::connect(&self.url).await.unwrap();
        sqlx::query(&format!("DROP SCHEMA {} CASCADE", self.schema))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
    }
}

/// Declares `sqlite::NAME` and `postgres::NAME` tests running `NAME(store, clock)`.
macro_rules! on_both_engines {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let (store, _dir) = super::sqlite_store().await;
                    let clock = super::FakeClock::new();
                    super::$name(store.with_clock(clock.clock()), clock).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some((store, schema)) = super::postgres_store(stringify!($name)).await
                    else {
                        return;
                    };
                    let clock = super::FakeClock::new();
                    super::$name(store.clone().with_clock(clock.clock()), clock).await;
                    store.close().await;
                    schema.drop().await;
                }
            )*
        }
    };
}

on_both_engines!(
    create_then_get_verifies_token,
    list_returns_every_key_oldest_first,
    revoke_is_seen_through_changes_since,
    revoking_unknown_id_is_false,
    expiry_is_stored_and_reported,
    invalid_names_and_scopes_are_refused,
    touch_last_used_keeps_newest,
    accounts_are_created_once,
    rate_limit_override_is_stored,
    allowed_senders_are_stored_changed_and_fed,
    partners_round_trip,
    mailbox_positions_and_uidls,
    relay_queue_and_receipts,
    a_relay_lease_run_out_and_taken_over_fences_its_first_holder,
    connectors_round_trip,
    admins_and_sessions,
    webhook_outbox_and_disabling,
    transports_and_message_queue,
    partners_version_moves_with_every_write,
    sftp_users_round_trip,
    sftp_delivery_jobs_are_leased_fenced_and_finished,
    finished_work_older_than_the_retention_is_pruned_and_nothing_else,
);

/// Runs `sql` with `$1` bound to `at` (ms on the store's clock).
async fn exec_at(store: &Store, sql: &str, at: i64) {
    on_pool!(store, |pool, _e| {
        sqlx::query(sql).bind(at).execute(pool).await.unwrap();
    });
}

async fn count(store: &Store, table: &str) -> i64 {
    let sql = format!("SELECT COUNT(*) FROM {table}");
    let (n,): (i64,) = on_pool!(store, |pool, _e| sqlx::query_as(&sql)
        .fetch_one(pool)
        .await
        .unwrap());
    n
}

/// Only rows that ended successfully longer ago than the retention go;
/// failed, queued and recent ones stay, children go with their parents,
/// and more rows than one batch all go.
async fn finished_work_older_than_the_retention_is_pruned_and_nothing_else(
    store: Store,
    _clock: FakeClock,
) {
    use super::retention::Pruned;
    let day = 86_400_000i64;
    let now = store.now_ms();
    let (old, recent) = (now - 40 * day, now - day);
    // (statement, the time bound to its $1)
    let mut rows: Vec<(String, i64)> = Vec::new();
    for (id, state, at) in [
        ("d-old", "delivered", old),
        ("d-failed", "failed", old),
        ("d-queued", "queued", old),
        ("d-recent", "delivered", recent),
        ("d-bare", "delivered", old),
    ] {
        rows.push((
            format!(
                "INSERT INTO relay_jobs (delivery_id, partner, recipients, state, \
                 next_attempt_at, created_at, updated_at) \
                 VALUES ('{id}', 'p', '[]', '{state}', $1, $1, $1)"
            ),
            at,
        ));
    }
    for (id, file) in [("d-old", "f1"), ("d-old", "f2"), ("d-recent", "f3")] {
        rows.push((
            format!(
                "INSERT INTO relay_receipts (delivery_id, partner, file_id, downloaded_at, \
                 recorded_at) VALUES ('{id}', 'p', '{file}', 'x', $1)"
            ),
            old,
        ));
    }
    for (id, state, at) in [
        ("i-old", "sent", old),
        ("i-none", "none", old),
        ("i-recent", "sent", recent),
    ] {
        rows.push((
            format!(
                "INSERT INTO inbound_files (file_id, partner, relay_id, source_file_id, \
                 delivery_id, received_at, receipt_state, receipt_next_at) \
                 VALUES ('{id}', 'p', 'r', 's', 'd', $1, '{state}', $1)"
            ),
            at,
        ));
    }
    exec_at(
        &store,
        "INSERT INTO webhooks (id, url, events, secret_sealed, created_at, updated_at) \
         VALUES ('wh_1', 'https://x.example', 'a', 'x', $1, $1)",
        old,
    )
    .await;
    // Three batches' worth of old delivered messages, plus one of each other kind.
    exec_at(
        &store,
        "INSERT INTO webhook_messages (msg_id, webhook_id, event_type, payload, state, \
         next_attempt_at, created_at, updated_at) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1200) \
         SELECT 'm' || i, 'wh_1', 'a', '{}', 'delivered', $1, $1, $1 FROM n",
        old,
    )
    .await;
    for (id, state, at) in [("q", "queued", old), ("r", "delivered", recent)] {
        rows.push((
            format!(
                "INSERT INTO webhook_messages (msg_id, webhook_id, event_type, payload, state, \
                 next_attempt_at, created_at, updated_at) \
                 VALUES ('{id}', 'wh_1', 'a', '{{}}', '{state}', $1, $1, $1)"
            ),
            at,
        ));
    }
    for (id, state, at) in [
        ("o-old", "sent", old),
        ("o-failed", "failed", old),
        ("o-recent", "sent", recent),
    ] {
        rows.push((
            format!(
                "INSERT INTO outbound_messages (id, transport, content, state, next_attempt_at, \
                 created_at, updated_at) VALUES ('{id}', 't', '{{}}', '{state}', $1, $1, $1)"
            ),
            at,
        ));
    }
    for (id, to) in [("o-old", "a"), ("o-old", "b"), ("o-recent", "c")] {
        rows.push((
            format!(
                "INSERT INTO outbound_message_recipients (message_id, recipient, answer, sent_at) \
                 VALUES ('{id}', '{to}', 'ok', $1)"
            ),
            old,
        ));
    }
    for (id, state) in [
        ("s-old", "delivered"),
        ("s-failed", "failed"),
        ("s-queued", "queued"),
    ] {
        rows.push((
            format!(
                "INSERT INTO sftp_deliveries (id, sftp_user, path, file_id, idempotency_key, \
                 request, state, next_attempt_at, created_at, updated_at) \
                 VALUES ('{id}', 'u', '/a', 'f', '{id}', '{{}}', '{state}', $1, $1, $1)"
            ),
            old,
        ));
    }
    for (sql, at) in &rows {
        exec_at(&store, sql, *at).await;
    }

    let pruned = store
        .prune_finished(Duration::from_secs(30 * 86_400))
        .await
        .unwrap();
    assert_eq!(
        pruned,
        Pruned {
            relays: 2,
            relay_receipts: 2,
            inbound_files: 1,
            webhook_messages: 1200,
            outbound_messages: 1,
            sftp_deliveries: 1,
        }
    );
    assert_eq!(pruned.total(), 1207);
    for (table, left) in [
        ("relay_jobs", 3),
        ("relay_receipts", 1),
        ("inbound_files", 2),
        ("webhook_messages", 2),
        ("outbound_messages", 2),
        ("outbound_message_recipients", 1),
        ("sftp_deliveries", 2),
    ] {
        assert_eq!(count(&store, table).await, left, "{table}");
    }
    // Nothing more to prune; a shorter retention reaches the recent rows.
    assert_eq!(
        store
            .prune_finished(Duration::from_secs(30 * 86_400))
            .await
            .unwrap()
            .total(),
        0
    );
    let pruned = store
        .prune_finished(Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (pruned.relays, pruned.relay_receipts, pruned.inbound_files),
        (1, 1, 1)
    );
    assert_eq!((pruned.webhook_messages, pruned.outbound_messages), (1, 1));
    assert_eq!(count(&store, "outbound_message_recipients").await, 0);
}

/// What the partner cache polls: every add, change and removal moves the
/// fingerprint (and this handle's write count), and each read is one
/// counted operation.
async fn partners_version_moves_with_every_write(store: Store, clock: FakeClock) {
    use super::partners::{OutboundKey, PartnersVersion};
    let empty = store.partners_version().await.unwrap();
    assert_eq!(
        empty,
        PartnersVersion {
            count: 0,
            newest: 0
        }
    );
    let before = store.operations();
    store.partners_version().await.unwrap();
    assert_eq!(store.operations(), before + 1);

    let writes = store.partner_writes();
    store
        .add_partner("beta", "https://beta.example", &["beta.example".into()])
        .await
        .unwrap();
    let added = store.partners_version().await.unwrap();
    assert_eq!(added.count, 1);
    assert_ne!(added, empty);
    assert_eq!(store.partner_writes(), writes + 1);

    clock.advance(Duration::from_millis(5));
    store
        .set_partner_key("beta", &OutboundKey::Reference("env:K".into()))
        .await
        .unwrap();
    let keyed = store.partners_version().await.unwrap();
    assert_eq!(keyed.count, 1);
    assert!(
        keyed.newest > added.newest,
        "an update moves the newest time"
    );

    assert!(store.remove_partner("beta").await.unwrap());
    assert_eq!(store.partners_version().await.unwrap(), empty);
    assert_eq!(store.partner_writes(), writes + 3);
}

async fn transports_and_message_queue(store: Store, clock: FakeClock) {
    use super::transports::TransportSecret;
    let settings = serde_json::json!({"host": "smtp.example", "from": "a@b.example"});
    let sealed = TransportSecret::Sealed(b"sealed".to_vec());
    assert!(store
        .add_transport("mail", "smtp", &settings, &sealed, None)
        .await
        .unwrap());
    assert!(!store
        .add_transport("mail", "smtp", &settings, &TransportSecret::None, None)
        .await
        .unwrap());
    let reference = TransportSecret::Reference("env:X".into());
    assert!(store
        .add_transport("alt", "threema", &settings, &reference, Some(b"key"))
        .await
        .unwrap());
    let alt = store.get_transport("alt").await.unwrap().unwrap();
    assert_eq!(alt.key_sealed.as_deref(), Some(&b"key"[..]));
    assert!(alt.credits.is_none());
    store.transport_credits("alt", "42.5").await.unwrap();
    let alt = store.get_transport("alt").await.unwrap().unwrap();
    assert_eq!(alt.credits.as_deref(), Some("42.5"));
    assert!(alt.credits_checked_at.is_some());
    let day = Duration::from_secs(86_400);
    assert!(store.claim_credit_warning("alt", day).await.unwrap());
    assert!(!store.claim_credit_warning("alt", day).await.unwrap());
    clock.advance(day + Duration::from_secs(1));
    assert!(store.claim_credit_warning("alt", day).await.unwrap());
    let hour = Duration::from_secs(3600);
    assert!(store
        .claim_notification("credit_low|m|a", hour)
        .await
        .unwrap());
    assert!(!store
        .claim_notification("credit_low|m|a", hour)
        .await
        .unwrap());
    assert!(store
        .claim_notification("relay_failed|m|a", hour)
        .await
        .unwrap());
    clock.advance(hour);
    assert!(store
        .claim_notification("credit_low|m|a", hour)
        .await
        .unwrap());
    let t = store.get_transport("mail").await.unwrap().unwrap();
    assert_eq!(t.settings, settings);
    assert!(t.secret == sealed);
    assert_eq!(t.to_json()["secret"], "stored encrypted");
    store.transport_used("mail", Some("535 no")).await.unwrap();
    let t = store.get_transport("mail").await.unwrap().unwrap();
    assert_eq!(
        (t.last_used_at, t.last_error.as_deref()),
        (None, Some("535 no"))
    );
    store.transport_used("mail", None).await.unwrap();
    let t = store.get_transport("mail").await.unwrap().unwrap();
    assert!(t.last_used_at.is_some() && t.last_error.is_none());
    let names: Vec<String> = store
        .list_transports()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["alt", "mail"]);

    store.queue_message("msg_1", "mail", "{}").await.unwrap();
    let lease = Duration::from_secs(60);
    let due = store.claim_due_messages(10, lease).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(store
        .claim_due_messages(10, lease)
        .await
        .unwrap()
        .is_empty());
    store
        .message_outcome("msg_1", Some(Duration::from_secs(5)), "refused", false)
        .await
        .unwrap();
    assert!(store
        .claim_due_messages(10, lease)
        .await
        .unwrap()
        .is_empty());
    clock.advance(Duration::from_secs(6));
    let due = store.claim_due_messages(10, lease).await.unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    store
        .message_outcome("msg_1", None, "250 ok", false)
        .await
        .unwrap();
    let m = store.get_message("msg_1").await.unwrap().unwrap();
    assert_eq!(
        (m.state.as_str(), m.attempts, m.answer.as_deref()),
        ("sent", 2, Some("250 ok"))
    );
    clock.advance(Duration::from_secs(600));
    assert!(store
        .claim_due_messages(10, lease)
        .await
        .unwrap()
        .is_empty());
    assert!(store.get_message("msg_2").await.unwrap().is_none());
    assert!(store.remove_transport("alt").await.unwrap());
    assert!(!store.remove_transport("alt").await.unwrap());
}

async fn webhook_outbox_and_disabling(store: Store, clock: FakeClock) {
    use super::webhook_messages::NewEvent;
    use super::webhooks::{NewWebhook, WebhookState};
    let event = |id: &str, kind: &str, at: SystemTime| NewEvent {
        msg_id: id.to_string(),
        event_type: kind.to_string(),
        payload: format!("{{\"id\":\"{id}\"}}"),
        occurred_at: at,
    };
    // An event from before the subscription existed is not queued for it.
    let before = clock.now();
    clock.advance(Duration::from_secs(1));
    let events = scopes(&["delivery.created", "receipt.received"]);
    let w = store
        .add_webhook(&NewWebhook {
            id: "wh_0001",
            url: "https://hooks.example/in",
            events: &events,
            allow_private: false,
            secret_sealed: b"sealed",
        })
        .await
        .unwrap();
    let other_events = scopes(&["file.downloaded"]);
    store
        .add_webhook(&NewWebhook {
            id: "wh_0002",
            url: "https://other.example/in",
            events: &other_events,
            allow_private: true,
            secret_sealed: b"sealed2",
        })
        .await
        .unwrap();
    assert!(store.webhooks_want("delivery.created").await.unwrap());
    assert!(!store.webhooks_want("delivery.relayed").await.unwrap());
    assert!(!store.webhooks_want("delivery").await.unwrap());
    assert_eq!(store.webhook_cursor().await.unwrap(), None);
    let now = clock.now();
    let batch = [
        event("msg_old", "delivery.created", before),
        event("msg_a", "delivery.created", now),
        event("msg_b", "delivery.relayed", now),
        event("msg_c", "receipt.received", now),
    ];
    assert_eq!(
        store.queue_webhook_events(&batch, Some(5)).await.unwrap(),
        2
    );
    // Reading the same feed page again queues nothing twice.
    assert_eq!(
        store.queue_webhook_events(&batch, Some(6)).await.unwrap(),
        0
    );
    assert_eq!(store.webhook_cursor().await.unwrap(), Some(6));
    let listed = store.get_webhook(&w.id).await.unwrap().unwrap();
    assert_eq!((listed.queued, listed.delivered), (2, 0));
    assert_eq!(listed.secret_sealed, b"sealed");

    let lease = Duration::from_secs(60);
    let due = store.claim_due_webhook_messages(10, lease).await.unwrap();
    assert_eq!(due.len(), 2);
    assert_eq!(due[0].url, "https://hooks.example/in");
    // Leased: a second worker gets nothing.
    assert!(store
        .claim_due_webhook_messages(10, lease)
        .await
        .unwrap()
        .is_empty());
    store.webhook_delivered(&due[0]).await.unwrap();
    let disabled = store
        .webhook_failed(
            &due[1],
            Duration::from_secs(30),
            "the receiver answered 503",
            Duration::from_secs(5 * 86400),
        )
        .await
        .unwrap();
    assert!(!disabled);
    assert!(store
        .claim_due_webhook_messages(10, lease)
        .await
        .unwrap()
        .is_empty());
    clock.advance(Duration::from_secs(31));
    let again = store.claim_due_webhook_messages(10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].msg_id, due[1].msg_id);
    assert_eq!(again[0].attempts, 1);
    let listed = store.get_webhook(&w.id).await.unwrap().unwrap();
    assert_eq!((listed.queued, listed.delivered), (1, 1));
    assert_eq!(
        listed.last_error.as_deref(),
        Some("the receiver answered 503")
    );
    assert!(listed.failing_since.is_some());

    // Failing on for five days (no success in between) disables it.
    clock.advance(Duration::from_secs(5 * 86400));
    let disabled = store
        .webhook_failed(
            &again[0],
            Duration::from_secs(30),
            "no answer",
            Duration::from_secs(5 * 86400),
        )
        .await
        .unwrap();
    assert!(disabled);
    let listed = store.get_webhook(&w.id).await.unwrap().unwrap();
    assert_eq!(listed.state, WebhookState::Disabled);
    assert!(listed
        .disabled_reason
        .as_deref()
        .unwrap_or("")
        .contains("5days"));
    assert_eq!(listed.to_json()["state"], "disabled");
    // A disabled subscription gets no new events and sends nothing.
    clock.advance(Duration::from_secs(60));
    let later = [event("msg_d", "delivery.created", clock.now())];
    assert_eq!(store.queue_webhook_events(&later, None).await.unwrap(), 0);
    assert!(store
        .claim_due_webhook_messages(10, lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.webhook_messages(&w.id).await.unwrap(),
        vec![
            ("msg_a".to_string(), "delivered".to_string(), 1),
            ("msg_c".to_string(), "queued".to_string(), 2),
        ]
    );

    assert!(store.remove_webhook(&w.id).await.unwrap());
    assert!(!store.remove_webhook(&w.id).await.unwrap());
    assert!(store.webhook_messages(&w.id).await.unwrap().is_empty());
    assert_eq!(store.list_webhooks().await.unwrap().len(), 1);
}

/// A lease that ran out (the store was away longer than it lasts) and was
/// claimed by another gateway: the first holder's writes match nothing, so
/// it learns it lost the job and cannot overwrite the new owner's state.
async fn a_relay_lease_run_out_and_taken_over_fences_its_first_holder(
    store: Store,
    clock: FakeClock,
) {
    use super::relay::RelayState;
    let job = (
        "d9".to_string(),
        "beta".to_string(),
        vec!["b@beta.example".to_string()],
    );
    store.queue_relays(&[job], 1).await.unwrap();
    let lease = Duration::from_secs(60);
    let first = store.claim_due_relays(10, lease).await.unwrap().remove(0);
    assert!(first.lease.until() > 0);
    // Renewed while ours: the token moves with it.
    let before = first.lease.until();
    clock.advance(Duration::from_secs(10));
    assert!(store.renew_relay_lease(&first, lease).await.unwrap());
    assert!(first.lease.until() > before);

    // The lease runs out; another gateway claims the job.
    clock.advance(Duration::from_secs(61));
    let second = store.claim_due_relays(10, lease).await.unwrap().remove(0);
    assert_ne!(second.lease.until(), first.lease.until());
    assert!(!store.renew_relay_lease(&first, lease).await.unwrap());
    assert!(!store
        .relay_retry_later(&first, Duration::from_secs(1), "late")
        .await
        .unwrap());
    assert!(!store
        .relay_finish(&first, RelayState::Failed, None, Some("late"))
        .await
        .unwrap());
    store.release_relay_lease(&first).await.unwrap();
    // Still the second's: not claimable, and its own writes apply.
    assert!(store.claim_due_relays(10, lease).await.unwrap().is_empty());
    let row = store.relay_job("d9", "beta").await.unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (RelayState::Queued, 0));
    assert!(store
        .relay_finish(&second, RelayState::Delivered, Some("remote-9"), None)
        .await
        .unwrap());
    let row = store.relay_job("d9", "beta").await.unwrap().unwrap();
    assert_eq!(row.state, RelayState::Delivered);
    assert_eq!(row.remote_delivery_id.as_deref(), Some("remote-9"));
}

/// The SFTP delivery queue (migration 0015): a job is written leased by
/// the close that makes its first attempt; nobody else claims it before
/// its lease runs out; a lease taken over fences the first holder's writes;
/// `next_sftp_delivery_due` is what the worker sleeps until.
async fn sftp_delivery_jobs_are_leased_fenced_and_finished(store: Store, clock: FakeClock) {
    use super::sftp_deliveries::{NewSftpDelivery, SftpDeliveryCounts, SftpDeliveryState};
    assert_eq!(store.next_sftp_delivery_due().await.unwrap(), None);
    let new = NewSftpDelivery {
        user: "bob".into(),
        path: "/inv.pdf".into(),
        file_id: "f1".into(),
        idempotency_key: "sftp:bob:f1".into(),
        request: "{}".into(),
    };
    let lease = Duration::from_secs(30);
    let first = store
        .queue_sftp_delivery(&new, lease)
        .await
        .unwrap()
        .expect("queued");
    assert!(first.lease.until() > 0);
    // The same key again (a file closed twice) is not a second job.
    assert!(store
        .queue_sftp_delivery(&new, lease)
        .await
        .unwrap()
        .is_none());
    // Leased by the close: due now, but nobody else may claim it.
    assert!(store
        .claim_due_sftp_deliveries(10, lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.next_sftp_delivery_due().await.unwrap(),
        Some(clock.now() + lease)
    );
    // The first attempt failed transiently: due again after the delay.
    assert!(store
        .sftp_delivery_retry_later(&first, Duration::from_secs(4), "503")
        .await
        .unwrap());
    assert_eq!(
        store.next_sftp_delivery_due().await.unwrap(),
        Some(clock.now() + Duration::from_secs(4))
    );
    assert!(store
        .claim_due_sftp_deliveries(10, lease)
        .await
        .unwrap()
        .is_empty());
    clock.advance(Duration::from_secs(4));
    let a = store
        .claim_due_sftp_deliveries(10, lease)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((a.attempts, a.last_error.as_deref()), (1, Some("503")));
    assert_eq!(a.request, "{}");
    // The first holder's lease is fenced: its writes match nothing once the
    // row moved on.
    assert!(!store
        .sftp_delivery_retry_later(&first, Duration::ZERO, "late")
        .await
        .unwrap());
    assert!(!store
        .sftp_delivery_finish(
            &first,
            SftpDeliveryState::Delivered,
            Some("d-x"),
            None,
            true
        )
        .await
        .unwrap());
    // A renewal moves the token.
    let before = a.lease.until();
    clock.advance(Duration::from_secs(10));
    assert!(store.renew_sftp_delivery_lease(&a, lease).await.unwrap());
    assert!(a.lease.until() > before);
    // A's lease runs out (the store was away); gateway B takes the job.
    clock.advance(Duration::from_secs(31));
    let b = store
        .claim_due_sftp_deliveries(10, lease)
        .await
        .unwrap()
        .remove(0);
    assert_ne!(b.lease.until(), a.lease.until());
    assert!(!store.renew_sftp_delivery_lease(&a, lease).await.unwrap());
    assert!(!store
        .sftp_delivery_finish(&a, SftpDeliveryState::Delivered, Some("d-a"), None, true)
        .await
        .unwrap());
    store.release_sftp_delivery_lease(&a).await.unwrap();
    // Still B's: not claimable, and B's outcome is the one recorded.
    assert!(store
        .claim_due_sftp_deliveries(10, lease)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.sftp_delivery_counts().await.unwrap(),
        SftpDeliveryCounts {
            queued: 1,
            failed: 0
        }
    );
    assert!(store
        .sftp_delivery_finish(&b, SftpDeliveryState::Delivered, Some("d-1"), None, true)
        .await
        .unwrap());
    let row = store.sftp_delivery(&first.id).await.unwrap().unwrap();
    assert_eq!(row.state, SftpDeliveryState::Delivered);
    assert_eq!(row.delivery_id.as_deref(), Some("d-1"));
    assert_eq!(row.attempts, 2);
    // Nothing queued: the worker sleeps until a new job is written.
    assert_eq!(store.next_sftp_delivery_due().await.unwrap(), None);

    // A second job, released at shutdown: claimable at once, then given
    // up without an attempt (too old), which is not counted as one.
    let new2 = NewSftpDelivery {
        file_id: "f2".into(),
        idempotency_key: "sftp:bob:f2".into(),
        ..new
    };
    let c = store
        .queue_sftp_delivery(&new2, lease)
        .await
        .unwrap()
        .unwrap();
    store.release_sftp_delivery_lease(&c).await.unwrap();
    let c = store
        .claim_due_sftp_deliveries(10, lease)
        .await
        .unwrap()
        .remove(0);
    assert!(store
        .sftp_delivery_finish(&c, SftpDeliveryState::Failed, None, Some("too old"), false)
        .await
        .unwrap());
    assert_eq!(
        store.sftp_delivery_counts().await.unwrap(),
        SftpDeliveryCounts {
            queued: 0,
            failed: 1
        }
    );
    let list = store.list_sftp_deliveries(10).await.unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, c.id, "newest first");
    assert_eq!(
        (
            list[0].state,
            list[0].attempts,
            list[0].last_error.as_deref()
        ),
        (SftpDeliveryState::Failed, 0, Some("too old"))
    );
}

async fn relay_queue_and_receipts(store: Store, clock: FakeClock) {
    use super::inbound_files::InboundFile;
    use super::relay::RelayState;
    assert_eq!(store.relay_cursor().await.unwrap(), None);
    let job = (
        "d1".to_string(),
        "beta".to_string(),
        vec!["bob@beta.example".to_string()],
    );
    store
        .queue_relays(std::slice::from_ref(&job), 7)
        .await
        .unwrap();
    // Queuing the same delivery again (a feed re-read) changes nothing.
    store.queue_relays(&[job], 9).await.unwrap();
    assert_eq!(store.relay_cursor().await.unwrap(), Some(9));
    assert_eq!(store.list_relays().await.unwrap().len(), 1);

    let lease = Duration::from_secs(60);
    let due = store.claim_due_relays(10, lease).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].recipients, vec!["bob@beta.example".to_string()]);
    assert_eq!(due[0].state, RelayState::Queued);
    // Leased: a second worker (or gateway) does not get it.
    assert!(store.claim_due_relays(10, lease).await.unwrap().is_empty());

    let job = &due[0];
    store.relay_file_sent(job, "f1", "r1").await.unwrap();
    store
        .relay_retry_later(job, Duration::from_secs(30), "partner unreachable")
        .await
        .unwrap();
    assert!(store.claim_due_relays(10, lease).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(31));
    let again = store.claim_due_relays(10, lease).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(
        again[0].files_sent.get("f1").map(String::as_str),
        Some("r1")
    );
    assert_eq!(again[0].last_error.as_deref(), Some("partner unreachable"));
    store
        .relay_finish(&again[0], RelayState::Delivered, Some("remote-1"), None)
        .await
        .unwrap();
    let done = store.relay_job("d1", "beta").await.unwrap().unwrap();
    assert_eq!(done.state, RelayState::Delivered);
    assert_eq!(done.remote_delivery_id.as_deref(), Some("remote-1"));
    clock.advance(Duration::from_secs(3600));
    assert!(store.claim_due_relays(10, lease).await.unwrap().is_empty());
    assert!(store.relay_job("d1", "other").await.unwrap().is_none());

    // The partner's receipt for the relayed file: kept once, listed per relay.
    assert!(store.list_relay_receipts().await.unwrap().is_empty());
    for _ in 0..2 {
        store
            .record_relay_receipt("d1", "beta", "f1", "2026-01-31T12:00:00Z")
            .await
            .unwrap();
    }
    let receipts = store.list_relay_receipts().await.unwrap();
    let got = &receipts[&("d1".to_string(), "beta".to_string())];
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].file_id, "f1");
    assert_eq!(got[0].downloaded_at, "2026-01-31T12:00:00Z");
    assert_eq!(got[0].to_json()["file_id"], "f1");

    let file = InboundFile {
        file_id: "ours-1".into(),
        partner: "acme".into(),
        relay_id: "their-delivery".into(),
        source_file_id: "their-file".into(),
        delivery_id: "our-delivery".into(),
        downloaded_at: None,
        receipt_attempts: 0,
    };
    store
        .record_inbound_files(std::slice::from_ref(&file))
        .await
        .unwrap();
    store
        .record_inbound_files(std::slice::from_ref(&file))
        .await
        .unwrap();
    assert_eq!(store.inbound_file("ours-1").await.unwrap(), Some(file));
    assert!(store.due_receipts(10).await.unwrap().is_empty());
    assert!(store.mark_downloaded("ours-1", clock.now()).await.unwrap());
    // Only the first download owes a receipt.
    assert!(!store.mark_downloaded("ours-1", clock.now()).await.unwrap());
    assert!(!store
        .mark_downloaded("not-inbound", clock.now())
        .await
        .unwrap());
    let due = store.due_receipts(10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert!(due[0].downloaded_at.is_some());
    store
        .receipt_outcome("ours-1", Some(Duration::from_secs(10)), Some("down"))
        .await
        .unwrap();
    assert!(store.due_receipts(10).await.unwrap().is_empty());
    clock.advance(Duration::from_secs(11));
    assert_eq!(store.due_receipts(10).await.unwrap()[0].receipt_attempts, 1);
    store.receipt_outcome("ours-1", None, None).await.unwrap();
    assert_eq!(
        store.receipt_state("ours-1").await.unwrap().as_deref(),
        Some("sent")
    );
    assert!(store.due_receipts(10).await.unwrap().is_empty());
}

async fn partners_round_trip(store: Store, _clock: FakeClock) {
    use super::partners::OutboundKey;
    use mft_filters::auth::partner_key;
    let domains = vec!["beta.example".to_string(), "beta.test".to_string()];
    let (record, token) = store
        .add_partner("beta", "https://gw.beta.example", &domains)
        .await
        .unwrap();
    let parsed = partner_key::parse(&token).unwrap();
    assert_eq!(parsed.id, record.inbound_key_id);
    assert!(parsed.verify(&record.inbound_key_hash));
    assert_eq!(
        record.inbound_signing_key,
        partner_key::signing_key(&parsed)
    );
    assert!(store
        .add_partner("beta", "https://x.example", &domains)
        .await
        .is_err());
    assert!(store
        .add_partner("bad name", "https://x.example", &domains)
        .await
        .is_err());

    let found = store.partner_by_key_id(parsed.id).await.unwrap().unwrap();
    assert_eq!(found.name, "beta");
    assert_eq!(found.email_domains, domains);
    assert_eq!(found.inbound_key_hash, record.inbound_key_hash);
    assert!(found.outbound_key == OutboundKey::Missing);
    assert_eq!(found.status(), "pending");

    assert!(store
        .set_partner_key("beta", &OutboundKey::Sealed(vec![1, 2, 3]))
        .await
        .unwrap());
    let got = store.get_partner("beta").await.unwrap().unwrap();
    assert!(got.outbound_key == OutboundKey::Sealed(vec![1, 2, 3]));
    assert!(store
        .set_partner_key("beta", &OutboundKey::Reference("env:X".into()))
        .await
        .unwrap());
    let got = store.get_partner("beta").await.unwrap().unwrap();
    assert!(got.outbound_key == OutboundKey::Reference("env:X".into()));
    assert_eq!(got.status(), "configured");
    assert!(!store
        .set_partner_key("nobody", &OutboundKey::Missing)
        .await
        .unwrap());
    assert_eq!(store.list_partners().await.unwrap().len(), 1);
    assert!(store.remove_partner("beta").await.unwrap());
    assert!(!store.remove_partner("beta").await.unwrap());
    assert!(store.partner_by_key_id(parsed.id).await.unwrap().is_none());
}

async fn mailbox_positions_and_uidls(store: Store, _clock: FakeClock) {
    use super::mailbox_state::ImapPosition;
    use std::collections::HashSet;
    assert_eq!(store.imap_position("imap:a").await.unwrap(), None);
    let p = ImapPosition {
        uidvalidity: 7,
        last_uid: 42,
    };
    store.set_imap_position("imap:a", p).await.unwrap();
    // The whole u32 range fits (the columns are 64-bit).
    let q = ImapPosition {
        uidvalidity: u32::MAX,
        last_uid: u32::MAX - 1,
    };
    store.set_imap_position("imap:a", q).await.unwrap();
    assert_eq!(store.imap_position("imap:a").await.unwrap(), Some(q));
    assert_eq!(store.imap_position("imap:other").await.unwrap(), None);
    store.mark_pop3_seen("pop3:b", "u1").await.unwrap();
    store.mark_pop3_seen("pop3:b", "u1").await.unwrap();
    store.mark_pop3_seen("pop3:b", "u2").await.unwrap();
    assert_eq!(store.pop3_seen("pop3:b").await.unwrap().len(), 2);
    let present: HashSet<String> = ["u2".to_string()].into();
    assert_eq!(store.prune_pop3_seen("pop3:b", &present).await.unwrap(), 1);
    assert_eq!(store.pop3_seen("pop3:b").await.unwrap(), present);
    assert!(store.pop3_seen("pop3:c").await.unwrap().is_empty());
}

async fn rate_limit_override_is_stored(store: Store, _clock: FakeClock) {
    let (record, _) = store
        .create_key_with_limit(
            "partner",
            &scopes(&["files:read"]),
            None,
            Some("10/s burst 20"),
        )
        .await
        .unwrap();
    assert_eq!(record.rate_limit.as_deref(), Some("10/s burst 20"));
    let stored = store.get_key(&record.id).await.unwrap().unwrap();
    assert_eq!(stored, record);
    assert_eq!(
        stored.to_json(SystemTime::now())["rate_limit"],
        "10/s burst 20"
    );
}

async fn allowed_senders_are_stored_changed_and_fed(store: Store, _clock: FakeClock) {
    let (record, _) = store
        .create_key_bound(
            "ops",
            &scopes(&["deliveries:write"]),
            None,
            None,
            Some(" Ops@OurCorp.example, *@billing.ourcorp.example"),
        )
        .await
        .unwrap();
    assert_eq!(
        record.allowed_senders.as_deref(),
        Some("ops@ourcorp.example,*@billing.ourcorp.example")
    );
    let stored = store.get_key(&record.id).await.unwrap().unwrap();
    assert_eq!(stored, record);
    assert_eq!(
        stored.to_json(SystemTime::now())["allowed_senders"],
        serde_json::json!(["ops@ourcorp.example", "*@billing.ourcorp.example"])
    );
    // A bad list is refused, nothing stored.
    let refused = store
        .create_key_bound("ops", &scopes(&["files:read"]), None, None, Some("ops"))
        .await;
    assert!(
        matches!(refused, Err(StoreError::InvalidSenders(_))),
        "{refused:?}"
    );
    assert!(store
        .set_allowed_senders(&record.id, Some("not an address"))
        .await
        .is_err());

    // Changing the binding reaches running gateways through the feed.
    let (cursor, _) = store.changes_since(0).await.unwrap();
    assert!(store
        .set_allowed_senders(&record.id, Some("billing@ourcorp.example"))
        .await
        .unwrap());
    let (next, ids) = store.changes_since(cursor).await.unwrap();
    assert_eq!(ids, vec![record.id.clone()]);
    let stored = store.get_key(&record.id).await.unwrap().unwrap();
    assert_eq!(
        stored.allowed_senders.as_deref(),
        Some("billing@ourcorp.example")
    );
    // Unbinding; an unknown id is false.
    assert!(store.set_allowed_senders(&record.id, None).await.unwrap());
    let (_, ids) = store.changes_since(next).await.unwrap();
    assert_eq!(ids, vec![record.id.clone()]);
    let stored = store.get_key(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.allowed_senders, None);
    assert_eq!(
        stored.to_json(SystemTime::now())["allowed_senders"],
        serde_json::Value::Null
    );
    assert!(!store
        .set_allowed_senders("0123456789abcdef", None)
        .await
        .unwrap());
}

async fn create_then_get_verifies_token(store: Store, clock: FakeClock) {
    let (record, token) = store
        .create_key("ci-bot", &scopes(&["files:read", "files:write"]), None)
        .await
        .unwrap();
    let parsed = api_key::parse(&token).expect("token has the documented format");
    assert_eq!(parsed.id, record.id);
    assert_eq!(record.id.len(), 16);

    let stored = store
        .get_key(&record.id)
        .await
        .unwrap()
        .expect("key exists");
    assert_eq!(stored, record);
    assert_eq!(stored.account, "ci-bot");
    assert_eq!(stored.scopes, scopes(&["files:read", "files:write"]));
    assert_eq!(stored.created_at, clock.now());
    assert_eq!(stored.expires_at, None);
    assert_eq!(stored.revoked_at, None);
    assert_eq!(stored.rate_limit, None);
    assert!(
        parsed.verify(&stored.secret_hash),
        "token verifies against the stored hash"
    );
    assert!(stored.is_active(clock.now()));

    // A different key's token does not verify against this hash.
    let (_, other) = store
        .create_key("ci-bot", &scopes(&["files:read"]), None)
        .await
        .unwrap();
    assert!(!api_key::parse(&other).unwrap().verify(&stored.secret_hash));
    assert_eq!(store.get_key("0000000000000000").await.unwrap(), None);
    assert_eq!(store.get_key("not a key id!").await.unwrap(), None);
}

async fn list_returns_every_key_oldest_first(store: Store, clock: FakeClock) {
    assert!(store.list_keys().await.unwrap().is_empty());
    let mut ids = Vec::new();
    for (i, account) in ["alpha", "beta", "alpha"].iter().enumerate() {
        let (record, _) = store
            .create_key(account, &scopes(&["files:read"]), None)
            .await
            .unwrap();
        assert_eq!(record.created_at, clock.now(), "key {i}");
        ids.push(record.id);
        clock.advance(Duration::from_secs(1));
    }
    let listed = store.list_keys().await.unwrap();
    let listed_ids: Vec<_> = listed.iter().map(|k| k.id.clone()).collect();
    assert_eq!(listed_ids, ids);
    let accounts: Vec<_> = listed.iter().map(|k| k.account.as_str()).collect();
    assert_eq!(accounts, ["alpha", "beta", "alpha"]);
}

async fn revoke_is_seen_through_changes_since(store: Store, clock: FakeClock) {
    let (kept, _) = store
        .create_key("ci-bot", &scopes(&["files:read"]), None)
        .await
        .unwrap();
    let (gone, token) = store
        .create_key("ci-bot", &scopes(&["files:read"]), None)
        .await
        .unwrap();
    // A gateway that starts now begins at the current cursor.
    let cursor = store.change_cursor().await.unwrap();
    assert!(cursor > 0, "creations are changes too");
    assert_eq!(store.changes_since(cursor).await.unwrap(), (cursor, vec![]));

    clock.advance(Duration::from_secs(5));
    assert!(store.revoke_key(&gone.id).await.unwrap());
    let (next, ids) = store.changes_since(cursor).await.unwrap();
    assert!(next > cursor, "cursor moves forward: {next} > {cursor}");
    assert_eq!(ids, vec![gone.id.clone()]);
    assert_eq!(store.changes_since(next).await.unwrap(), (next, vec![]));

    let revoked = store.get_key(&gone.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(clock.now()));
    assert_eq!(revoked.status(clock.now()), KeyStatus::Revoked);
    assert!(!revoked.is_active(clock.now()));
    // The secret still matches: revocation, not verification, refuses it.
    assert!(api_key::parse(&token).unwrap().verify(&revoked.secret_hash));
    let untouched = store.get_key(&kept.id).await.unwrap().unwrap();
    assert_eq!(untouched.revoked_at, None);

    // Revoking again keeps the first time and logs no new change.
    clock.advance(Duration::from_secs(5));
    assert!(store.revoke_key(&gone.id).await.unwrap());
    let again = store.get_key(&gone.id).await.unwrap().unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at);
    assert_eq!(store.changes_since(next).await.unwrap(), (next, vec![]));

    // From 0, every change shows up, each id once.
    let (all_cursor, all) = store.changes_since(0).await.unwrap();
    assert_eq!(all_cursor, next);
    assert_eq!(all.len(), 2);
    assert!(all.contains(&kept.id) && all.contains(&gone.id));
}

async fn revoking_unknown_id_is_false(store: Store, _clock: FakeClock) {
    let cursor = store.change_cursor().await.unwrap();
    assert!(!store.revoke_key("0123456789abcdef").await.unwrap());
    assert!(!store.revoke_key("").await.unwrap());
    assert!(!store
        .revoke_key("'; DROP TABLE api_keys; --")
        .await
        .unwrap());
    assert_eq!(store.change_cursor().await.unwrap(), cursor);
    assert!(store.list_keys().await.unwrap().is_empty());
}

async fn expiry_is_stored_and_reported(store: Store, clock: FakeClock) {
    let day = Duration::from_secs(86_400);
    let created = clock.now();
    let (record, _) = store
        .create_key("ci-bot", &scopes(&["files:read"]), Some(30 * day))
        .await
        .unwrap();
    assert_eq!(record.expires_at, Some(created + 30 * day));
    let stored = store.get_key(&record.id).await.unwrap().unwrap();
    assert_eq!(stored.expires_at, Some(created + 30 * day));
    assert_eq!(stored.status(created + 29 * day), KeyStatus::Active);
    assert_eq!(stored.status(created + 30 * day), KeyStatus::Expired);
    assert!(!stored.is_active(created + 31 * day));
    // Revoked wins over expired.
    clock.advance(31 * day);
    assert!(store.revoke_key(&record.id).await.unwrap());
    let revoked = store.get_key(&record.id).await.unwrap().unwrap();
    assert_eq!(revoked.status(clock.now()), KeyStatus::Revoked);

    assert!(matches!(
        store
            .create_key("ci-bot", &scopes(&["files:read"]), Some(Duration::ZERO))
            .await,
        Err(StoreError::InvalidExpiry(_))
    ));
    assert!(matches!(
        store
            .create_key("ci-bot", &scopes(&["files:read"]), Some(Duration::MAX))
            .await,
        Err(StoreError::InvalidExpiry(_))
    ));
}

async fn invalid_names_and_scopes_are_refused(store: Store, _clock: FakeClock) {
    let ok = scopes(&["files:read"]);
    for name in [
        "",
        "has space",
        "ünïcode",
        "semi;colon",
        "a/b",
        &"x".repeat(65),
    ] {
        let err = store.create_key(name, &ok, None).await.unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidAccount { .. }),
            "{name:?}: {err}"
        );
        assert!(err.to_string().contains("invalid service account name"));
    }
    store
        .create_key(&"x".repeat(64), &ok, None)
        .await
        .expect("64 characters are fine");
    store
        .create_key("Build-Bot_2.prod", &ok, None)
        .await
        .expect("letters, digits, . _ -");

    let err = store.create_key("ci-bot", &[], None).await.unwrap_err();
    assert!(matches!(err, StoreError::NoScopes), "{err}");
    for scope in [
        "",
        "Files:read",
        "1files",
        ":read",
        "files read",
        "files/read",
        "ä",
    ] {
        let err = store
            .create_key("ci-bot", &scopes(&["files:read", scope]), None)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidScope { .. }),
            "{scope:?}: {err}"
        );
        assert!(err.to_string().contains(&format!("{scope:?}")), "{err}");
    }
    let (record, _) = store
        .create_key(
            "ci-bot",
            &scopes(&["*", "files:*", "admin.keys-v2:read_all", "files:*"]),
            None,
        )
        .await
        .expect("valid scopes");
    assert_eq!(
        record.scopes,
        scopes(&["*", "files:*", "admin.keys-v2:read_all"])
    );
    // Only the three valid keys were written.
    assert_eq!(store.list_keys().await.unwrap().len(), 3);
}

async fn touch_last_used_keeps_newest(store: Store, clock: FakeClock) {
    let (a, _) = store.create_key("a", &scopes(&["x"]), None).await.unwrap();
    let (b, _) = store.create_key("b", &scopes(&["x"]), None).await.unwrap();
    let t1 = clock.now() + Duration::from_secs(10);
    let t2 = clock.now() + Duration::from_secs(20);
    store
        .touch_last_used(&[
            (a.id.clone(), t2),
            (b.id.clone(), t1),
            ("ffffffffffffffff".into(), t1),
        ])
        .await
        .unwrap();
    // An older report arriving late does not move last_used_at back.
    store.touch_last_used(&[(a.id.clone(), t1)]).await.unwrap();
    store.touch_last_used(&[]).await.unwrap();
    assert_eq!(
        store.get_key(&a.id).await.unwrap().unwrap().last_used_at,
        Some(t2)
    );
    assert_eq!(
        store.get_key(&b.id).await.unwrap().unwrap().last_used_at,
        Some(t1)
    );
}

async fn accounts_are_created_once(store: Store, _clock: FakeClock) {
    store
        .create_key("ci-bot", &scopes(&["x"]), None)
        .await
        .unwrap();
    store
        .create_key("ci-bot", &scopes(&["y"]), None)
        .await
        .unwrap();
    let (count,): (i64,) = on_pool!(store, |pool, _e| sqlx::query_as(
        "SELECT COUNT(*) FROM service_accounts WHERE name = 'ci-bot'"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(count, 1);
}

// ---- SQLite only: the file on disk and several processes sharing it ----

#[tokio::test]
async fn sqlite_file_never_contains_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let mut secrets = Vec::new();
    for i in 0..5 {
        let (record, token) = store
            .create_key(&format!("acct{i}"), &scopes(&["files:read"]), None)
            .await
            .unwrap();
        secrets.push((record.id, token));
    }
    store.close().await;
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        // keys.sqlite plus any -wal / -shm left behind. SQLite may still
        // be removing those as the last connection's thread ends (`close`
        // does not wait for it): one gone by now holds nothing on disk.
        match std::fs::read(entry.unwrap().path()) {
            Ok(file) => bytes.extend(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("reading the store's files: {e}"),
        }
    }
    assert!(bytes.len() > 4096, "the store has data");
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    for (id, token) in &secrets {
        assert!(contains(id.as_bytes()), "sanity: the id {id} is stored");
        assert!(
            !contains(secret_of(token).as_bytes()),
            "secret of {id} stored"
        );
        assert!(!contains(token.as_bytes()), "token of {id} stored");
    }
    // Owner-only file mode.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join(SQLITE_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "mode {mode:o}");
}

#[tokio::test]
async fn two_handles_on_one_file_see_each_others_writes() {
    // Like the CLI and a running gateway: separate pools on the same file.
    let dir = tempfile::tempdir().unwrap();
    let (cli, gateway) = tokio::join!(Store::open(None, dir.path()), Store::open(None, dir.path()));
    let (cli, gateway) = (cli.unwrap(), gateway.unwrap());
    let mut cursor = gateway.change_cursor().await.unwrap();

    let (record, token) = cli
        .create_key("ci-bot", &scopes(&["files:read"]), None)
        .await
        .unwrap();
    let seen = gateway.get_key(&record.id).await.unwrap().expect("visible");
    assert!(api_key::parse(&token).unwrap().verify(&seen.secret_hash));
    let (next, ids) = gateway.changes_since(cursor).await.unwrap();
    assert_eq!(ids, vec![record.id.clone()]);
    cursor = next;

    assert!(cli.revoke_key(&record.id).await.unwrap());
    let (next, ids) = gateway.changes_since(cursor).await.unwrap();
    assert!(next > cursor);
    assert_eq!(ids, vec![record.id.clone()]);
    assert!(gateway
        .get_key(&record.id)
        .await
        .unwrap()
        .unwrap()
        .revoked_at
        .is_some());

    // The gateway's batched last-use write lands while the CLI keeps writing.
    let now = SystemTime::now();
    let writes = async {
        for i in 0..20 {
            cli.create_key(&format!("bulk{i}"), &scopes(&["x"]), None)
                .await
                .unwrap();
        }
    };
    let touches = async {
        for _ in 0..20 {
            gateway
                .touch_last_used(&[(record.id.clone(), now)])
                .await
                .unwrap();
        }
    };
    tokio::join!(writes, touches);
    assert_eq!(gateway.list_keys().await.unwrap().len(), 21);
    assert!(cli
        .get_key(&record.id)
        .await
        .unwrap()
        .unwrap()
        .last_used_at
        .is_some());
}

#[tokio::test]
async fn postgres_instances_see_each_others_changes() {
    let Some((first, schema)) = postgres_store("postgres_instances_see_each_others_changes").await
    else {
        return;
    };
    let second = Store::open(Some(&schema.schema_url), Path::new("/nonexistent"))
        .await
        .unwrap();
    let cursor = second.change_cursor().await.unwrap();
    // Revocations from both instances at once: every one reaches the poller.
    let mut ids = Vec::new();
    for i in 0..10 {
        let (record, _) = first
            .create_key(&format!("acct{i}"), &scopes(&["x"]), None)
            .await
            .unwrap();
        ids.push(record.id);
    }
    let (after_create, _) = second.changes_since(cursor).await.unwrap();
    let revokes = ids.iter().enumerate().map(|(i, id)| {
        let store = if i % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let id = id.clone();
        tokio::spawn(async move { store.revoke_key(&id).await.unwrap() })
    });
    for task in revokes.collect::<Vec<_>>() {
        assert!(task.await.unwrap());
    }
    let (next, mut seen) = first.changes_since(after_create).await.unwrap();
    assert!(next > after_create);
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
    first.close().await;
    second.close().await;
    schema.drop().await;
}

#[tokio::test]
async fn reopening_keeps_keys_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    let (record, _) = store
        .create_key("ci-bot", &scopes(&["files:read"]), None)
        .await
        .unwrap();
    store.close().await;
    let store = Store::open(None, dir.path()).await.unwrap();
    assert_eq!(store.get_key(&record.id).await.unwrap(), Some(record));
    let (version,): (i64,) = on_pool!(store, |pool, _e| sqlx::query_as(
        "SELECT MAX(version) FROM _sqlx_migrations WHERE success"
    )
    .fetch_one(pool)
    .await
    .unwrap());
    assert_eq!(version, migrations::SCHEMA_VERSION);
}

#[tokio::test]
async fn concurrent_first_opens_of_a_new_file_all_succeed() {
    // A new file: the WAL switch and migration race; every opener must win.
    let dir = tempfile::tempdir().unwrap();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let path = dir.path().to_path_buf();
            tokio::spawn(async move { Store::open(None, &path).await })
        })
        .collect();
    for task in tasks {
        let store = task.await.unwrap().expect("open succeeds");
        assert!(store.list_keys().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn a_schema_newer_than_the_binary_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(None, dir.path()).await.unwrap();
    on_pool!(store, |pool, _e| sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, X'00', 0)"
    )
    .execute(pool)
    .await
    .map(|_| ())
    .unwrap());
    store.close().await;
    let started = std::time::Instant::now();
    let err = Store::open(None, dir.path()).await.unwrap_err();
    assert!(matches!(err, StoreError::Migrate { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "no retrying");
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    let dir = tempfile::tempdir().unwrap();
    let err = Store::open(Some("mysql://root:hunter2@db/keys"), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn postgres_target_has_no_password() {
    let options = PgConnectOptions::from_str("postgres://mft:hunter2@127.0.0.1:6543/keys").unwrap();
    assert_eq!(
        describe_postgres(&options),
        "postgres://mft@127.0.0.1:6543/keys"
    );
}

#[test]
fn debug_of_a_record_hides_the_hash() {
    let record = KeyRecord {
        id: "0123456789abcdef".into(),
        account: "a".into(),
        scopes: vec!["x".into()],
        created_at: UNIX_EPOCH,
        expires_at: None,
        revoked_at: None,
        last_used_at: None,
        secret_hash: [0xab; 32],
        rate_limit: None,
        allowed_senders: None,
    };
    let text = format!("{record:?}");
    assert!(text.contains("0123456789abcdef"));
    assert!(!text.contains("171") && !text.contains("abab"), "{text}");
}

#[test]
fn rfc3339_whole_seconds() {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
    assert_eq!(super::rfc3339(t), "2023-11-14T22:13:20Z");
}

async fn connectors_round_trip(store: Store, clock: FakeClock) {
    use super::connectors::ConnectorReport;
    use mft_filters::auth::connector_key;
    let (record, token) = store.add_connector("lan-1", None).await.unwrap();
    assert!(token.starts_with("mgc_"));
    let parsed = connector_key::parse(&token).unwrap();
    assert_eq!(parsed.id, record.key_id);
    let found = store.connector_by_key_id(parsed.id).await.unwrap().unwrap();
    assert!(parsed.verify(&found.key_hash));
    assert_eq!(found.name, "lan-1");
    assert!(matches!(
        store.add_connector("lan-1", None).await,
        Err(StoreError::Connector { .. })
    ));
    assert!(matches!(
        store.add_connector("bad name", None).await,
        Err(StoreError::Connector { .. })
    ));
    assert_eq!(found.state(clock.now()), "disconnected");
    assert_eq!(found.client_cert_sha256, None);
    let pin = "ab".repeat(32);
    assert!(store.set_connector_pin("lan-1", Some(&pin)).await.unwrap());
    let pinned = store.connector_by_key_id(parsed.id).await.unwrap().unwrap();
    assert_eq!(pinned.client_cert_sha256.as_deref(), Some(pin.as_str()));
    assert!(!store.set_connector_pin("nobody", None).await.unwrap());
    let report = ConnectorReport {
        address: Some("10.0.0.2:5000".into()),
        connections: 3,
        bytes_out: 10,
        bytes_in: 20,
    };
    store.report_connector("lan-1", &report).await.unwrap();
    let listed = store.list_connectors().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].connections, 3);
    assert_eq!(listed[0].state(clock.now()), "connected");
    let json = listed[0].to_json(clock.now());
    assert_eq!(json["bytes_in"], 20);
    assert!(json.get("key_hash").is_none());
    clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(listed[0].state(clock.now()), "disconnected");
    assert!(store.remove_connector("lan-1").await.unwrap());
    assert!(!store.remove_connector("lan-1").await.unwrap());
    assert!(store
        .connector_by_key_id(parsed.id)
        .await
        .unwrap()
        .is_none());
}

async fn admins_and_sessions(store: Store, clock: FakeClock) {
    use super::admins::Role;
    let added = store
        .add_admin("alice", Role::Admin, "$argon2id$x")
        .await
        .unwrap();
    assert!(!added.totp_enabled);
    assert!(matches!(
        store.add_admin("alice", Role::Viewer, "h").await,
        Err(StoreError::Admin { .. })
    ));
    assert!(matches!(
        store.add_admin("bad name", Role::Viewer, "h").await,
        Err(StoreError::Admin { .. })
    ));
    store.add_admin("bob", Role::Viewer, "h").await.unwrap();
    let all = store.list_admins().await.unwrap();
    assert_eq!(
        all.iter()
            .map(|a| (a.name.as_str(), a.role))
            .collect::<Vec<_>>(),
        vec![("alice", Role::Admin), ("bob", Role::Viewer)]
    );
    assert!(all[0].to_json().get("password_hash").is_none());

    // Enrolment: pending secret, then confirmed with recovery codes.
    assert!(
        !store.enable_admin_totp("alice", &[]).await.unwrap(),
        "no secret yet"
    );
    store
        .set_admin_totp_pending("alice", b"sealed")
        .await
        .unwrap();
    let hashes = vec!["aa".to_string(), "bb".to_string()];
    assert!(store.enable_admin_totp("alice", &hashes).await.unwrap());
    assert!(
        !store.enable_admin_totp("alice", &hashes).await.unwrap(),
        "once"
    );
    store
        .set_admin_totp_pending("alice", b"other")
        .await
        .unwrap();
    let alice = store.get_admin("alice").await.unwrap().unwrap();
    assert!(alice.totp_enabled);
    assert_eq!(
        alice.totp_sealed.as_deref(),
        Some(&b"sealed"[..]),
        "enrolled secret kept"
    );
    assert_eq!(alice.recovery_hashes, hashes);

    // A TOTP step is accepted once, and only moving forward.
    assert!(store.accept_admin_totp_step("alice", 100).await.unwrap());
    assert!(!store.accept_admin_totp_step("alice", 100).await.unwrap());
    assert!(!store.accept_admin_totp_step("alice", 99).await.unwrap());
    assert!(store.accept_admin_totp_step("alice", 101).await.unwrap());

    // A recovery code works once.
    assert!(store.use_admin_recovery_code("alice", "aa").await.unwrap());
    assert!(!store.use_admin_recovery_code("alice", "aa").await.unwrap());
    assert!(!store.use_admin_recovery_code("alice", "zz").await.unwrap());
    let left = store
        .get_admin("alice")
        .await
        .unwrap()
        .unwrap()
        .recovery_hashes;
    assert_eq!(left, vec!["bb".to_string()]);

    // Sessions: stage, role, times; reset-totp ends them.
    let id = [7u8; 32];
    store
        .create_admin_session(&id, "alice", false)
        .await
        .unwrap();
    let s = store.admin_session(&id).await.unwrap().unwrap();
    assert!(!s.full);
    assert_eq!(s.role, Role::Admin);
    assert_eq!(s.created_at, clock.now());
    clock.advance(Duration::from_secs(60));
    store.touch_admin_session(&id, true).await.unwrap();
    let s = store.admin_session(&id).await.unwrap().unwrap();
    assert!(s.full);
    assert_eq!(s.last_seen_at, clock.now());
    assert!(store.reset_admin_totp("alice").await.unwrap());
    assert!(store.admin_session(&id).await.unwrap().is_none());
    let alice = store.get_admin("alice").await.unwrap().unwrap();
    assert!(!alice.totp_enabled && alice.totp_sealed.is_none() && alice.recovery_hashes.is_empty());
    assert!(
        store.accept_admin_totp_step("alice", 1).await.unwrap(),
        "steps start over"
    );

    let other = [8u8; 32];
    store
        .create_admin_session(&other, "bob", true)
        .await
        .unwrap();
    store.end_admin_session(&other).await.unwrap();
    assert!(store.admin_session(&other).await.unwrap().is_none());
    store
        .create_admin_session(&other, "bob", true)
        .await
        .unwrap();
    assert!(store.remove_admin("bob").await.unwrap());
    assert!(!store.remove_admin("bob").await.unwrap());
    assert!(store.admin_session(&other).await.unwrap().is_none());
    assert!(!store.reset_admin_totp("bob").await.unwrap());
}

/// SFTP users added at run time: stored as given (hash, never a password),
/// refused when invalid or taken, listed by name, removed once; their
/// logins are recorded in a batch; the fingerprint the bridge polls moves
/// with every add and removal, but not with a login.
async fn sftp_users_round_trip(store: Store, clock: FakeClock) {
    use super::sftp_users::NewSftpUser;
    use mft_config::sftp::Permissions;
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl e2e";
    let user = |name: &str| NewSftpUser {
        name: name.to_string(),
        password_hash: None,
        authorized_keys: vec![key.to_string()],
        folder: format!("partners/{name}"),
        permissions: Permissions {
            upload: true,
            list: true,
            ..Permissions::default()
        },
        max_connections: 3,
        deliver_to: vec!["ops@ourcorp.example".to_string()],
    };
    let empty = store.sftp_users_version().await.unwrap();
    assert_eq!((empty.count, empty.newest, empty.total), (0, 0, 0));
    let writes = store.sftp_user_writes();

    let added = store.add_sftp_user(&user("zeta")).await.unwrap();
    assert_eq!(added.created_at, clock.now());
    assert_eq!(store.sftp_user_writes(), writes + 1);
    let mut with_password = user("acme");
    with_password.authorized_keys.clear();
    with_password.password_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".to_string());
    clock.advance(Duration::from_secs(1));
    store.add_sftp_user(&with_password).await.unwrap();

    // Refused: taken, no way to log in, not argon2id, bad name, bad address.
    assert!(matches!(
        store.add_sftp_user(&user("zeta")).await,
        Err(StoreError::SftpUserExists(_))
    ));
    let mut no_login = user("nologin");
    no_login.authorized_keys.clear();
    let mut plain = user("plain");
    plain.password_hash = Some("hunter2".to_string());
    let mut bad_to = user("badto");
    bad_to.deliver_to = vec!["nobody".to_string()];
    let mut zero = user("zero");
    zero.max_connections = 0;
    for bad in [no_login, plain, user("bad name"), user(""), bad_to, zero] {
        assert!(
            matches!(
                store.add_sftp_user(&bad).await,
                Err(StoreError::SftpUser { .. })
            ),
            "{} accepted",
            bad.name
        );
    }
    assert_eq!(
        store.sftp_user_writes(),
        writes + 2,
        "refusals write nothing"
    );

    let all = store.list_sftp_users().await.unwrap();
    let names: Vec<&str> = all.iter().map(|u| u.user.name.as_str()).collect();
    assert_eq!(names, ["acme", "zeta"]);
    let zeta = store.get_sftp_user("zeta").await.unwrap().unwrap();
    assert_eq!(zeta.user.authorized_keys, [key]);
    assert_eq!(zeta.user.folder, "partners/zeta");
    assert_eq!(zeta.user.permissions, user("x").permissions);
    assert_eq!(zeta.user.max_connections, 3);
    assert_eq!(zeta.user.deliver_to, ["ops@ourcorp.example"]);
    assert!(zeta.user.password_hash.is_none() && zeta.last_login_at.is_none());
    let acme = store.get_sftp_user("acme").await.unwrap().unwrap();
    assert!(acme
        .user
        .password_hash
        .as_deref()
        .unwrap()
        .starts_with("$argon2id$"));
    assert!(acme.user.authorized_keys.is_empty());
    assert!(
        !format!("{acme:?}").contains("argon2"),
        "Debug hides the hash"
    );
    let config = acme.to_config();
    assert!(config.authorized_keys.is_none() && !config.api_key_login);
    assert!(store.get_sftp_user("nobody").await.unwrap().is_none());

    let two = store.sftp_users_version().await.unwrap();
    assert_eq!(two.count, 2);
    assert_ne!(two, empty);

    // Logins: one batch; an older time does not win; the version stays.
    clock.advance(Duration::from_secs(10));
    let later = clock.now();
    store
        .record_sftp_logins(&[("zeta".to_string(), later), ("nobody".to_string(), later)])
        .await
        .unwrap();
    store
        .record_sftp_logins(&[("zeta".to_string(), later - Duration::from_secs(5))])
        .await
        .unwrap();
    let zeta = store.get_sftp_user("zeta").await.unwrap().unwrap();
    assert_eq!(zeta.last_login_at, Some(later));
    assert_eq!(store.sftp_users_version().await.unwrap(), two);

    // One removed and one added: same count, another fingerprint.
    assert!(store.remove_sftp_user("zeta").await.unwrap());
    assert!(!store.remove_sftp_user("zeta").await.unwrap());
    store.add_sftp_user(&user("beta")).await.unwrap();
    let after = store.sftp_users_version().await.unwrap();
    assert_eq!(after.count, 2);
    assert_ne!(after, two);
    assert_eq!(store.sftp_user_writes(), writes + 4);
}
