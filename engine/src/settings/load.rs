//! Loading: defaults, then an optional TOML file, then the environment.

use super::{Settings, SettingsError};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use std::path::Path;

/// Sections whose fields are reached as `EVD_<SECTION>_<FIELD>`.
const SECTIONS: [&str; 8] = [
    "jwt",
    "broker",
    "tls",
    "limits",
    "history",
    "presence",
    "drain",
    "rate_limit",
];

/// `EVD_*` variables that are not settings: read by the binary or the test suites.
const IGNORED_ENV: [&str; 3] = ["CONFIG", "LOG", "REQUIRE_SERVICES"];

fn map_env_key(key: &figment::value::UncasedStr) -> figment::value::Uncased<'_> {
    let lower = key.as_str().to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(rest) = lower
            .strip_prefix(section)
            .and_then(|r| r.strip_prefix('_'))
        {
            return format!("{section}.{rest}").into();
        }
    }
    lower.into()
}

/// Dotted names of every setting, from the serialized defaults.
fn known_keys() -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(serde_json::Value::Object(top)) = serde_json::to_value(Settings::default()) {
        for (k, v) in top {
            match v {
                serde_json::Value::Object(section) => {
                    keys.extend(section.keys().map(|f| format!("{k}.{f}")));
                }
                _ => keys.push(k),
            }
        }
    }
    keys
}

impl Settings {
    /// Defaults, then `file` (TOML) if given, then plain `DATABASE_URL`, then `EVD_*` variables
    /// from the environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let database_url = Env::raw()
            .only(&["DATABASE_URL"])
            .map(|_| "database_url".into());
        let redis_url = Env::raw().only(&["REDIS_URL"]).map(|_| "broker.url".into());
        Self::from_figment(
            Self::figment(file)
                .merge(database_url)
                .merge(redis_url)
                .merge(Self::env()),
        )
    }


    /// The layered sources without the environment, for callers that add their own.
    pub fn figment(file: Option<&Path>) -> Figment {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = file {
            fig = fig.merge(Toml::file_exact(path));
        }
        fig
    }

    /// `EVD_*` variables, mapped onto sections (`EVD_LIMITS_OPS_PER_SEC` → `limits.ops_per_sec`).
    /// Only names of real settings are read; [`Settings::unknown_env`] lists the others so the
    /// binary can warn about them (a typo must not pass silently, nor must another tool's
    /// `EVD_*` variable stop the engine from starting).
    pub fn env() -> Env {
        let known = known_keys();
        Env::prefixed("EVD_")
            .map(map_env_key)
            .filter(move |key| known.iter().any(|k| k == key.as_str()))
    }

    /// `EVD_*` variables in the environment that name no setting.
    pub fn unknown_env() -> Vec<String> {
        let known = known_keys();
        std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("EVD_").map(str::to_owned))
            .filter(|k| !IGNORED_ENV.contains(&k.as_str()))
            // Service URLs of the test suites (EVD_TEST_DATABASE_URL, …).
            .filter(|k| !k.starts_with("TEST_"))
            .filter(|k| !known.contains(&map_env_key(k.as_str().into()).to_string()))
            .map(|k| format!("EVD_{k}"))
            .collect()
    }

    /// Extracts and validates.
    pub fn from_figment(fig: Figment) -> Result<Settings, SettingsError> {
        let s: Settings = fig.extract().map_err(Box::new)?;
        s.validate()?;
        Ok(s)
    }

}
