//! Rebuilds the crate when a migration changes (`sqlx::migrate!` embeds them at compile time), and
//! tells the tests which backing services were configured when they were built
//! (`AUTH_TEST_DATABASE_URL`, `AUTH_TEST_REDIS_URL`): a test whose service is missing is then
//! reported as ignored, with the reason, and counted in the summary, instead of passing without
//! having run.

fn main() {
    println!("cargo::rerun-if-changed=../migrations");
    for (variable, cfg) in [("AUTH_TEST_DATABASE_URL", "auth_test_postgres"), ("AUTH_TEST_REDIS_URL", "auth_test_redis")] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var(variable).is_ok_and(|value| !value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
