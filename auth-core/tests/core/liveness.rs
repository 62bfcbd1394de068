//! Session liveness with its cache, on SQLite and PostgreSQL: what is cached, for how long, and
//! how revocations made here, in another process, or while PostgreSQL's feed is down are seen.

use std::sync::Arc;
use std::time::{Duration, Instant};

use auth_core::clock::FixedClock;
use auth_core::random::OsEntropy;
use auth_core::refresh::RefreshFamilies;
use auth_core::liveness::FamilyLiveness;
use auth_core::spec::TokenPolicy;
use auth_core::store::{FamilyStore, SqlStore, Store, UserStore};

use crate::support::{TestDb, user};

on_both_backends!(revocations_made_here_are_seen_at_once, nothing_is_cached_with_a_zero_ttl);

const START: i64 = 1_700_000_000;
const TTL: Duration = Duration::from_secs(10);

struct Fixture {
    clock: Arc<FixedClock>,
    liveness: Arc<FamilyLiveness>,
    families: RefreshFamilies,
    follow: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.follow.abort();
    }
}

/// Sessions of users `u1` and `u2` in `store`, their liveness cached for `ttl` and followed.
async fn fixture(db: &TestDb, store: Arc<dyn Store>, ttl: Duration) -> Fixture {
    for (id, name) in [("u1", "alice"), ("u2", "bob")] {
        db.store.create_user(&user(id, name, START)).await.unwrap();
    }
    let clock = Arc::new(FixedClock::at_seconds(START));
    let liveness = Arc::new(FamilyLiveness::new(store.clone(), clock.clone(), ttl));
    let families = RefreshFamilies::new(store, clock.clone(), Arc::new(OsEntropy::new()), TokenPolicy::default())
        .with_liveness(liveness.clone());
    let follow = tokio::spawn(liveness.clone().follow());
    Fixture { clock, liveness, families, follow }
}

impl Fixture {
    async fn session(&self, user: &str) -> String {
        self.families.start(Some(user), "booking-web", "bookings:read").await.unwrap().0.id
    }

    async fn live(&self, sid: &str) -> bool {
        self.families.is_live(sid).await.unwrap()
    }

    async fn wait_in_use(&self, in_use: bool) {
        let started = Instant::now();
        while self.liveness.in_use() != in_use {
            assert!(started.elapsed() < Duration::from_secs(10), "in_use never became {in_use}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Revokes `sid` as another process would: straight in the database, past this process's cache.
async fn revoke_elsewhere(store: &SqlStore, sid: &str) {
    assert!(store.revoke_family(sid, START + 1, "logout").await.unwrap());
}

async fn revocations_made_here_are_seen_at_once(db: &TestDb) {
    let f = fixture(db, db.dyn_store(), TTL).await;
    f.wait_in_use(true).await;
    let (one, two, other) = (f.session("u1").await, f.session("u1").await, f.session("u2").await);
    for sid in [&one, &two, &other] {
        assert!(f.live(sid).await);
    }
    assert_eq!(f.liveness.len(), 3);
    assert!(!f.live("no-such-session").await, "an unknown session is not live");

    assert!(f.families.revoke_family(&one, "logout").await.unwrap());
    assert!(!f.live(&one).await, "this session at once");
    assert!(f.live(&two).await);
    assert_eq!(f.families.revoke_user("u1", "logout_all").await.unwrap(), 1);
    assert!(!f.live(&two).await, "every session of the user at once");
    assert!(f.live(&other).await, "another user's session stays live");
}

async fn nothing_is_cached_with_a_zero_ttl(db: &TestDb) {
    let f = fixture(db, db.dyn_store(), Duration::ZERO).await;
    let sid = f.session("u1").await;
    assert!(f.live(&sid).await);
    assert!(!f.liveness.in_use());
    assert_eq!(f.liveness.len(), 0);
    revoke_elsewhere(&db.store, &sid).await;
    assert!(!f.live(&sid).await, "read from the database");
}

/// SQLite has no feed: a revocation made by another process (an operator's CLI beside the server)
/// is seen once the cached answer is older than the TTL, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sees_revocations_made_elsewhere_within_the_ttl() {
    let db = crate::support::sqlite().await;
    let f = fixture(&db, db.dyn_store(), TTL).await;
    f.wait_in_use(true).await;
    let sid = f.session("u1").await;
    assert!(f.live(&sid).await);
    revoke_elsewhere(&db.store, &sid).await;
    assert!(f.live(&sid).await, "the cached answer, within the TTL");
    f.clock.advance_millis(9_999);
    assert!(f.live(&sid).await, "still within the TTL");
    f.clock.advance_millis(1);
    assert!(!f.live(&sid).await, "read again once the TTL has passed");
    f.clock.advance_seconds(3_600);
    assert!(!f.live(&sid).await, "a revocation is final");
}

/// `db` with a connection for the liveness checks whose `application_name` names it, so that the
/// test can find its listening connection among those of other tests.
async fn named_store(db: &TestDb, name: &str) -> Arc<SqlStore> {
    let mut url = url::Url::parse(&db.url).unwrap();
    url.query_pairs_mut().append_pair("application_name", name);
    Arc::new(SqlStore::connect(url.as_str()).await.unwrap())
}

/// PostgreSQL announces every revocation: another process's is seen without waiting for the TTL.
/// When the announcing connection is lost, every check reads the database (even an unannounced
/// revocation is seen at once); when it is back, what was cached before is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_announces_revocations_and_a_lost_feed_stops_the_cache() {
    let Some(db) = crate::support::postgres("postgres_announces_revocations_and_a_lost_feed_stops_the_cache").await
    else {
        return;
    };
    let name = format!("liveness_{}", std::process::id());
    let store = named_store(&db, &name).await;
    let f = fixture(&db, store, Duration::from_secs(600)).await;
    f.wait_in_use(true).await;

    let (one, two) = (f.session("u1").await, f.session("u2").await);
    assert!(f.live(&one).await && f.live(&two).await);
    assert_eq!(f.liveness.len(), 2);
    revoke_elsewhere(&db.store, &one).await;
    let started = Instant::now();
    while f.live(&one).await {
        assert!(started.elapsed() < Duration::from_secs(10), "the announcement never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(f.live(&two).await, "only the announced session is forgotten");

    // Cut the listening connection (its `application_name` is this test's).
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(&name)
    .fetch_all(db.store.pool())
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "one listening connection");
    f.wait_in_use(false).await;
    assert_eq!(f.liveness.len(), 0, "nothing cached is trusted after a loss");

    // An unannounced revocation (triggers off for that one transaction) is read from the database.
    let mut tx = db.store.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica").execute(&mut *tx).await.unwrap();
    sqlx::query("UPDATE refresh_families SET revoked_at = $2, revoked_reason = 'logout' WHERE id = $1")
        .bind(&two)
        .bind(START + 2)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    if !f.liveness.in_use() {
        assert!(!f.live(&two).await, "read from the database while the feed is down");
    }
    f.wait_in_use(true).await;
    assert!(!f.live(&two).await, "and after the feed is back");
}
