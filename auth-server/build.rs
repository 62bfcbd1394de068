//! Tells the tests which backing services were configured when they were built
//! (`AUTH_TEST_DATABASE_URL`, `AUTH_TEST_REDIS_URL`): a test whose service is missing is then
//! reported as ignored, with the reason, and counted in the summary, instead of passing without
//! having run. With `CI` set, a test that finds its variable unset at run time fails instead.

fn main() {
    for (variable, cfg) in [("AUTH_TEST_DATABASE_URL", "auth_test_postgres"), ("AUTH_TEST_REDIS_URL", "auth_test_redis")] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={variable}");
        if std::env::var(variable).is_ok_and(|value| !value.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
