//! Tests of loading and checking the settings.

use super::*;
use figment::Jail;
use std::path::Path;

#[test]
fn defaults_are_valid_and_listen_on_loopback_8080() {
    let s = Settings::default();
    s.validate().unwrap();
    assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn file_then_env_override_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "evd.toml",
            "heartbeat_ms = 5000\n[limits]\nops_per_sec = 7\n[jwt]\nsecret = \"from-file-from-file-from-file-xx\"\n",
        )?;
        jail.set_env("EVD_LIMITS_OPS_PER_SEC", "9");
        jail.set_env("EVD_JWT_SECRET", "from-env-from-env-from-env-from-env");
        jail.set_env("EVD_LISTEN", "127.0.0.1:9999");
        jail.set_env("EVD_HISTORY_TTL_SECS", "60");
        jail.set_env("DATABASE_URL", "postgres://plain@db/evd");
        jail.set_env("EVD_RATE_LIMIT_BURST", "7");
        let s = Settings::load(Some(Path::new("evd.toml"))).expect("loads");
        assert_eq!(s.heartbeat_ms, 5000);
        assert_eq!(s.limits.ops_per_sec, 9);
        assert_eq!(s.history.ttl_secs, 60);
        assert_eq!(s.listen.port(), 9999);
        assert_eq!(s.api.database_url, "postgres://plain@db/evd");
        assert_eq!(s.api.rate_limit.burst.get(), 7);
        assert_eq!(s.api().rate_limit.burst.get(), 7);
        assert_eq!(
            s.api.jwt.secret.as_deref(),
            Some("from-env-from-env-from-env-from-env")
        );
        let debug = format!("{s:?}");
        assert!(
            !debug.contains("from-env"),
            "Debug must redact the secret: {debug}"
        );
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn broker_url_from_redis_url_or_evd_broker_url_and_redacted() {
    Jail::expect_with(|jail| {
        assert_eq!(Settings::load(None).expect("loads").broker.url, "memory");
        jail.set_env("REDIS_URL", "redis://:hunter2@r1:6379");
        let s = Settings::load(None).expect("loads");
        assert_eq!(s.broker.url, "redis://:hunter2@r1:6379");
        assert!(
            !format!("{s:?}").contains("hunter2"),
            "the password is redacted"
        );
        jail.set_env("EVD_BROKER_URL", "redis-cluster://h1:7000,h2:7001");
        jail.set_env("EVD_BROKER_PROBE_INTERVAL_MS", "250");
        let s = Settings::load(None).expect("loads");
        assert_eq!(s.broker.url, "redis-cluster://h1:7000,h2:7001");
        assert_eq!(s.broker.probe_interval_ms, 250);
        jail.set_env("EVD_BROKER_URL", "kafka://nope");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(err.contains("broker.url"), "{err}");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn bad_values_give_clear_errors() {
    Jail::expect_with(|jail| {
        jail.set_env("EVD_LIMITS_OPS_PER_SEC", "lots");
        let err = Settings::load(None).unwrap_err().to_string().to_lowercase();
        assert!(err.contains("ops_per_sec"), "{err}");
        jail.set_env("EVD_LIMITS_OPS_PER_SEC", "0");
        let err = Settings::load(None).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid setting `limits.ops_per_sec`: must be positive"
        );
        jail.set_env("EVD_LIMITS_OPS_PER_SEC", "5");
        jail.set_env("EVD_LIMITS_OPS_PER_SECOND", "5");
        jail.set_env("EVD_REQUIRE_SERVICES", "1");
        assert_eq!(Settings::load(None).unwrap().limits.ops_per_sec, 5);
        let unknown = Settings::unknown_env();
        assert!(
            unknown.contains(&"EVD_LIMITS_OPS_PER_SECOND".to_string()),
            "{unknown:?}"
        );
        assert!(
            !unknown
                .iter()
                .any(|k| k == "EVD_REQUIRE_SERVICES" || k == "EVD_LIMITS_OPS_PER_SEC"),
            "{unknown:?}"
        );
        jail.create_file("bad.toml", "[limits]\nops_per_second = 5\n")?;
        let err = Settings::load(Some(Path::new("bad.toml")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ops_per_second"),
            "unknown keys in the file are refused: {err}"
        );
        jail.set_env("EVD_TOKEN_EXPIRY_WARNING_SECS", "0");
        let err = Settings::load(None).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid setting `token_expiry_warning_secs`: must be 1 to 86400"
        );
        jail.set_env("EVD_TOKEN_EXPIRY_WARNING_SECS", "45");
        assert_eq!(Settings::load(None).unwrap().token_expiry_warning_secs, 45);
        jail.set_env("EVD_WORKERS", "9000");
        let err = Settings::load(None).unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid setting `workers`: must be 0 (one per core) to 1024"
        );
        jail.set_env("EVD_WORKERS", "1");
        assert_eq!(Settings::load(None).unwrap().workers, 1);
        jail.create_file("tls.toml", "[tls]\ncert_path = \"c.pem\"\n")?;
        let err = Settings::load(Some(Path::new("tls.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.key_path"), "{err}");
        Ok(())
    });
}

/// Every shared key, from the file: the REST API's part of `evd serve`/`evd engine`/`evd api`
/// (one loader) is what `evd-api` reads from the same file.
const SHARED_TOML: &str = "listen = \"127.0.0.1:7000\"\n\
    database_url = \"postgres://file@db/evd\"\n\
    pool_size = 3\n\
    offer_ttl_secs = 60\n\
    sweep_interval_ms = 250\n\
    max_body_bytes = 2048\n\
    [rate_limit]\nper_second = 4\nburst = 9\n\
    [jwt]\nsecret = \"from-file-from-file-from-file-xx\"\nleeway_secs = 5\n\
    [cors]\nallowed_origins = [\"https://app.example\"]\n";

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn shared_keys_load_from_the_file_as_evd_api_reads_them() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("evd.toml", SHARED_TOML)?;
        let file = Some(Path::new("evd.toml"));
        let s = Settings::load(file).expect("loads");
        let api = evd_api::settings::Settings::load(file).map_err(|e| *e)?;
        assert_eq!(s.api(), api);
        assert_eq!(
            s.api, api,
            "the embedded part listens where the engine does"
        );
        assert_eq!(s.listen.port(), 7000);
        assert_eq!(s.api.database_url, "postgres://file@db/evd");
        assert_eq!(
            (
                s.api.pool_size,
                s.api.offer_ttl_secs,
                s.api.sweep_interval_ms
            ),
            (3, 60, 250)
        );
        assert_eq!(s.api.max_body_bytes, 2048);
        assert_eq!(
            (
                s.api.rate_limit.per_second.get(),
                s.api.rate_limit.burst.get()
            ),
            (4, 9)
        );
        assert_eq!(
            s.api.jwt.secret.as_deref(),
            Some("from-file-from-file-from-file-xx")
        );
        assert_eq!(s.api.jwt.leeway_secs, 5);
        assert_eq!(s.api.cors.allowed_origins, ["https://app.example"]);
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn shared_keys_load_from_the_environment_as_evd_api_reads_them() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("evd.toml", SHARED_TOML)?;
        let file = Some(Path::new("evd.toml"));
        jail.set_env("EVD_LISTEN", "127.0.0.1:7001");
        jail.set_env("DATABASE_URL", "postgres://plain@db/evd");
        jail.set_env("EVD_POOL_SIZE", "4");
        jail.set_env("EVD_OFFER_TTL_SECS", "90");
        jail.set_env("EVD_SWEEP_INTERVAL_MS", "500");
        jail.set_env("EVD_MAX_BODY_BYTES", "4096");
        jail.set_env("EVD_RATE_LIMIT_PER_SECOND", "6");
        jail.set_env("EVD_RATE_LIMIT_BURST", "11");
        jail.set_env("EVD_JWT_SECRET", "from-env-from-env-from-env-from-env");
        jail.set_env("EVD_JWT_LEEWAY_SECS", "7");
        jail.set_env(
            "EVD_CORS_ALLOWED_ORIGINS",
            "http://localhost:5173,https://app.example/",
        );
        let s = Settings::load(file).expect("loads");
        let api = evd_api::settings::Settings::load(file).map_err(|e| *e)?;
        assert_eq!(s.api(), api);
        assert_eq!(s.api, api);
        assert_eq!(s.listen.port(), 7001);
        assert_eq!(s.api.database_url, "postgres://plain@db/evd");
        assert_eq!(
            (
                s.api.pool_size,
                s.api.offer_ttl_secs,
                s.api.sweep_interval_ms
            ),
            (4, 90, 500)
        );
        assert_eq!(s.api.max_body_bytes, 4096);
        assert_eq!(
            (
                s.api.rate_limit.per_second.get(),
                s.api.rate_limit.burst.get()
            ),
            (6, 11)
        );
        assert_eq!(
            s.api.jwt.secret.as_deref(),
            Some("from-env-from-env-from-env-from-env")
        );
        assert_eq!(s.api.jwt.leeway_secs, 7);
        assert_eq!(
            s.api.cors.allowed_origins,
            ["http://localhost:5173", "https://app.example"]
        );
        jail.set_env("EVD_DATABASE_URL", "sqlite://wins.db");
        let s = Settings::load(file).expect("loads");
        assert_eq!(s.api.database_url, "sqlite://wins.db");
        assert_eq!(
            s.api(),
            evd_api::settings::Settings::load(file).map_err(|e| *e)?
        );
        assert!(Settings::unknown_env().is_empty(), "all are settings");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn an_unknown_key_in_either_part_is_refused() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        for (file, key) in [
            ("heartbeat = 5000\n", "heartbeat"),
            ("pool_sise = 3\n", "pool_sise"),
            ("[limits]\nops_per_second = 5\n", "ops_per_second"),
            ("[jwt]\nsecrets = \"x\"\n", "secrets"),
            ("[rate_limit]\nburts = 5\n", "burts"),
        ] {
            jail.create_file("bad.toml", file)?;
            let err = Settings::load(Some(Path::new("bad.toml")))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains("bad.toml"), "{err}");
        }
        jail.set_env("EVD_POOL_SISE", "3");
        jail.set_env("EVD_JWT_SECRETS", "x");
        jail.set_env("EVD_RATE_LIMIT_BURTS", "5");
        jail.set_env("EVD_POOL_SIZE", "3");
        jail.set_env("EVD_JWT_LEEWAY_SECS", "3");
        jail.set_env("EVD_RATE_LIMIT_BURST", "5");
        let mut unknown = Settings::unknown_env();
        unknown.sort();
        assert_eq!(
            unknown,
            ["EVD_JWT_SECRETS", "EVD_POOL_SISE", "EVD_RATE_LIMIT_BURTS"]
        );
        assert_eq!(Settings::load(None).expect("loads").api.pool_size, 3);
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail closure type
fn a_bad_shared_value_is_named() {
    Jail::expect_with(|jail| {
        jail.clear_env();
        jail.set_env("EVD_POOL_SIZE", "many");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(err.contains("POOL_SIZE") && err.contains("EVD_"), "{err}");
        jail.set_env("EVD_POOL_SIZE", "0");
        let err = Settings::load(None).unwrap_err().to_string();
        assert_eq!(err, "invalid setting `pool_size`: must be positive");
        jail.create_file("bad.toml", "[rate_limit]\nburst = \"lots\"\n")?;
        let err = Settings::load(Some(Path::new("bad.toml")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rate_limit.burst"), "{err}");
        jail.set_env("EVD_POOL_SIZE", "3");
        jail.set_env("EVD_CORS_ALLOWED_ORIGINS", "https://app.example/login");
        let err = Settings::load(None).unwrap_err().to_string();
        assert!(
            err.contains("ALLOWED_ORIGINS") && err.contains("https://app.example/login"),
            "{err}"
        );
        Ok(())
    });
}
