//! The settings of `evd-api`: defaults, then an optional TOML file, then the environment.

use crate::cors::CorsSettings;
use crate::rate_limit::RateLimitSettings;
use crate::store::{StoreConfig, redact_url};
use evd_protocol::auth::JwtSettings;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// Everything `evd-api` can be told.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// `sqlite://path` (created if missing) or `postgres://…`.
    pub database_url: String,
    /// Most database connections (SQLite: readers; writes use one connection).
    pub pool_size: u32,
    /// How long a waitlist offer holds its seat before it goes to the next person. Long enough
    /// to see a notification and tap; short enough that a line keeps moving.
    pub offer_ttl_secs: u64,
    /// How often lapsed offers and due polls are swept.
    pub sweep_interval_ms: u64,
    /// Largest request body. The biggest legitimate body, an event with a long description,
    /// is about 40 KiB.
    pub max_body_bytes: usize,
    /// Per-user request rate.
    pub rate_limit: RateLimitSettings,
    /// Token verification, shared with the engine.
    pub jwt: JwtSettings,
    /// Which other web origins may call the API (and, in the engine, open `/ws`).
    pub cors: CorsSettings,
    /// How long a member's role (which caps their token's) is trusted once read, seconds:
    /// removing a member or lowering their role takes effect on REST and on the sockets within
    /// this long (the engine also acts at once on the change's outbox event). Ten seconds is one
    /// lookup per staff user per ten seconds, and soon enough for a removal.
    pub membership_cache_secs: u64,
    /// Most memberships held in that cache: one per staff user active in the time above.
    pub membership_cache_entries: u64,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            database_url: "sqlite://evd.db".into(),
            pool_size: 8,
            offer_ttl_secs: 600,
            sweep_interval_ms: 1000,
            max_body_bytes: 64 * 1024,
            rate_limit: RateLimitSettings::default(),
            jwt: JwtSettings::default(),
            cors: CorsSettings::default(),
            membership_cache_secs: 10,
            membership_cache_entries: 100_000,
        }
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("pool_size", &self.pool_size)
            .field("offer_ttl_secs", &self.offer_ttl_secs)
            .field("sweep_interval_ms", &self.sweep_interval_ms)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("rate_limit", &self.rate_limit)
            .field("jwt", &self.jwt)
            .field("cors", &self.cors)
            .field("membership_cache_secs", &self.membership_cache_secs)
            .field("membership_cache_entries", &self.membership_cache_entries)
            .finish()
    }
}

impl Settings {
    /// Defaults, then the TOML file at `config`, then `DATABASE_URL`, then `EVD_*`. Nested
    /// settings take their section as a prefix: `EVD_JWT_SECRET`, `EVD_RATE_LIMIT_BURST`,
    /// `EVD_CORS_ALLOWED_ORIGINS`.
    pub fn load(config: Option<&Path>) -> Result<Settings, Box<figment::Error>> {
        Self::figment(config, Env::raw(), Env::prefixed("EVD_"))
            .extract()
            .map_err(Box::new)
    }

    fn figment(config: Option<&Path>, raw: Env, evd: Env) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment
            .merge(raw.only(&["DATABASE_URL"]).map(|_| "database_url".into()))
            // Other programs read `EVD_*` too (the engine, the test suites): only this
            // struct's own keys are taken, so theirs are not refused as unknown.
            .merge(evd.filter(|key| is_own_key(key.as_str())).map(|key| {
                let key = key.as_str().to_ascii_lowercase();
                for section in SECTIONS {
                    if let Some(rest) = key.strip_prefix(section).and_then(|k| k.strip_prefix('_'))
                    {
                        return format!("{section}.{rest}").into();
                    }
                }
                key.into()
            }))
    }

    /// The top-level keys, as `EVD_<KEY>` spells them.
    const KEYS: [&str; 6] = [
        "listen",
        "database_url",
        "pool_size",
        "offer_ttl_secs",
        "sweep_interval_ms",
        "max_body_bytes",
    ];

    /// The store's part.
    pub fn store_config(&self) -> StoreConfig {
        StoreConfig {
            pool_size: self.pool_size,
            offer_ttl: Duration::from_secs(self.offer_ttl_secs),
            migrate: true,
        }
    }
}

/// The sections, as `EVD_<SECTION>_<FIELD>` spells them.
const SECTIONS: [&str; 3] = ["jwt", "rate_limit", "cors"];

fn is_own_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    Settings::KEYS.contains(&key.as_str())
        || SECTIONS
            .iter()
            .any(|s| key.strip_prefix(s).is_some_and(|r| r.starts_with('_')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn layers_file_then_database_url_then_evd_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "evd.toml",
                "pool_size = 3\noffer_ttl_secs = 60\n[rate_limit]\nburst = 7\n",
            )?;
            jail.set_env("DATABASE_URL", "postgres://plain@db/evd");
            jail.set_env("EVD_OFFER_TTL_SECS", "90");
            jail.set_env("EVD_RATE_LIMIT_PER_SECOND", "5");
            jail.set_env("EVD_JWT_SECRET", "0123456789abcdef0123456789abcdef");
            jail.set_env("EVD_REDIS_URL", "redis://not-ours");
            jail.set_env(
                "EVD_CORS_ALLOWED_ORIGINS",
                "https://app.example,http://localhost:5173",
            );
            let s = Settings::load(Some(Path::new("evd.toml"))).map_err(|e| *e)?;
            assert_eq!(s.pool_size, 3);
            assert_eq!(s.offer_ttl_secs, 90);
            assert_eq!(s.database_url, "postgres://plain@db/evd");
            assert_eq!(
                (s.rate_limit.per_second.get(), s.rate_limit.burst.get()),
                (5, 7)
            );
            assert_eq!(
                s.jwt.secret.as_deref(),
                Some("0123456789abcdef0123456789abcdef")
            );
            assert_eq!(
                s.cors.allowed_origins,
                ["https://app.example", "http://localhost:5173"]
            );
            jail.set_env("EVD_DATABASE_URL", "sqlite://wins.db");
            assert_eq!(
                Settings::load(None).map_err(|e| *e)?.database_url,
                "sqlite://wins.db"
            );
            jail.set_env("EVD_POOL_SIZE", "many");
            let err = Settings::load(None).unwrap_err().to_string();
            assert!(err.contains("POOL_SIZE") && err.contains("EVD_"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn debug_hides_secrets() {
        let settings = Settings {
            database_url: "postgres://app:hunter2@db/evd".into(),
            jwt: JwtSettings {
                secret: Some("a-very-long-secret-of-at-least-32-bytes".into()),
                ..JwtSettings::default()
            },
            ..Settings::default()
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("a-very-long-secret"), "{shown}");
        assert!(
            shown.contains("postgres://app:<redacted>@db/evd"),
            "{shown}"
        );
    }
}
