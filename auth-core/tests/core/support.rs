//! Shared test helpers: a fresh, migrated database per test, on SQLite and on PostgreSQL.
//!
//! SQLite gets a new file in its own temporary directory. PostgreSQL (when
//! `AUTH_TEST_DATABASE_URL` is set) gets a new schema, selected through the connection's
//! `search_path`, so tests running in parallel never see each other's rows. Both are removed when
//! the [`TestDb`] is dropped, also when the test fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use auth_core::store::{SqlStore, Store, UserRecord};

/// Runs each listed `async fn case(db: &TestDb)` of the enclosing module on both backends, as
/// `sqlite::case` and `postgres::case`.
macro_rules! on_both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = crate::support::sqlite().await;
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[cfg_attr(not(auth_test_postgres), ignore = "AUTH_TEST_DATABASE_URL was not set when the tests were built")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = crate::support::postgres(stringify!($case)).await else {
                        return;
                    };
                    super::$case(&db).await;
                }
            )*
        }
    };
}

/// A fresh database for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The migrated store.
    pub store: Arc<SqlStore>,
    /// The URL the store was opened with (for a second connection to the same database).
    pub url: String,
    cleanup: Cleanup,
}

impl TestDb {
    /// The store as the trait object that services take.
    pub fn dyn_store(&self) -> Arc<dyn Store> {
        self.store.clone()
    }

    /// `sqlite` or `postgres`, for messages.
    pub fn backend(&self) -> &'static str {
        self.store.dialect().as_str()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.cleanup.run();
    }
}

#[derive(Debug)]
enum Cleanup {
    Directory(PathBuf),
    Schema { base_url: String, schema: String },
}

impl Cleanup {
    fn run(&self) {
        match self {
            Self::Directory(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Self::Schema { base_url, schema } => {
                // Drop runs inside the test's runtime, which cannot be blocked on: use a thread
                // with a runtime of its own.
                let (base_url, schema) = (base_url.clone(), schema.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build();
                    let Ok(runtime) = runtime else { return };
                    runtime.block_on(async {
                        if let Ok(admin) = SqlStore::connect(&base_url).await {
                            let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                            let _ = sqlx::query(&sql).execute(admin.pool()).await;
                            admin.close().await;
                        }
                    });
                });
                let _ = dropped.join();
            }
        }
    }
}

/// A name no other test of this run (or of a concurrent run) uses.
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A migrated SQLite database in a new file.
pub async fn sqlite() -> TestDb {
    let dir = std::env::temp_dir().join(format!("auth-core-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).expect("create the test directory");
    let cleanup = Cleanup::Directory(dir.clone());
    let url = format!("sqlite://{}?mode=rwc", dir.join("auth.db").display());
    let store = SqlStore::connect(&url).await.expect("open the SQLite test database");
    store.migrate().await.expect("migrate the SQLite test database");
    TestDb { store: Arc::new(store), url, cleanup }
}

/// A migrated PostgreSQL schema of its own, or `None` (the test is skipped) when
/// `AUTH_TEST_DATABASE_URL` is unset. In CI (`CI` set) a missing URL fails the test instead.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let Some(base_url) = std::env::var("AUTH_TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
    else {
        let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false");
        assert!(!in_ci, "CI is set but AUTH_TEST_DATABASE_URL is not: PostgreSQL tests cannot run");
        eprintln!("skipped {test} on PostgreSQL: AUTH_TEST_DATABASE_URL is not set");
        return None;
    };
    let schema = format!("auth_test_{}", unique_suffix());
    let admin = SqlStore::connect(&base_url).await.expect("connect to AUTH_TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(admin.pool())
        .await
        .expect("create the test schema");
    admin.close().await;
    let cleanup = Cleanup::Schema { base_url: base_url.clone(), schema: schema.clone() };

    let mut url = url::Url::parse(&base_url).expect("AUTH_TEST_DATABASE_URL is a URL");
    url.query_pairs_mut().append_pair("options", &format!("-c search_path={schema}"));
    let store = SqlStore::connect(url.as_str()).await.expect("connect to the test schema");
    let db = TestDb { store: Arc::new(store), url: url.into(), cleanup };
    db.store.migrate().await.expect("migrate the PostgreSQL test schema");
    Some(db)
}

/// A user record with one custom claim.
pub fn user(id: &str, username: &str, created_at: i64) -> UserRecord {
    let mut claims = serde_json::Map::new();
    claims.insert("tenant_id".into(), serde_json::json!("t-1"));
    UserRecord {
        id: id.into(),
        username: username.into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        claims,
        disabled: false,
        created_at,
    }
}
