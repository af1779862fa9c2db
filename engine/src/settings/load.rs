//! Loading: defaults, then an optional TOML file, then the environment.
//!
//! The engine's own settings and the REST API's (crud-api's `Settings`, embedded as `api`) are
//! read from the same sources under the same top-level names, but extracted apart:
//! `#[serde(flatten)]` would make them one struct, yet it does not combine with
//! `deny_unknown_fields`. So each part has its own figment over the same sources, narrowed to its
//! own top-level keys, and keeps `deny_unknown_fields`. The API's part takes the API's keys but
//! `listen` (the engine's address serves both); the engine's part takes every other key, so a key
//! of neither is refused there, by name and file. A section belongs to one part and refuses its
//! own unknown keys. `EVD_*` variables are read for the settings of either part;
//! [`Settings::unknown_env`] lists the others for a warning.

use super::{Settings, SettingsError};
use evd_api::settings::Settings as ApiSettings;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use std::path::Path;

/// Sections whose fields are reached as `EVD_<SECTION>_<FIELD>`.
const SECTIONS: [&str; 11] = [
    "jwt",
    "cors",
    "broker",
    "tls",
    "limits",
    "history",
    "presence",
    "drain",
    "rate_limit",
    "socketio",
    "admin",
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

/// Dotted names of every setting of one part, from its serialized defaults.
fn known_keys(defaults: impl Serialize) -> Vec<String> {
    let mut keys = Vec::new();
    if let Ok(serde_json::Value::Object(top)) = serde_json::to_value(defaults) {
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

/// The dotted names each part reads.
struct Keys {
    engine: Vec<String>,
    /// All of `evd-api`'s but `listen`, which is the engine's.
    api: Vec<String>,
}

impl Keys {
    fn new() -> Keys {
        Keys {
            engine: known_keys(Settings::default()),
            api: known_keys(ApiSettings::default())
                .into_iter()
                .filter(|k| k != "listen")
                .collect(),
        }
    }

    /// `source` narrowed to the API's top-level keys (`api`) or to all others.
    fn part<P: Provider>(&self, source: P, api: bool) -> Part<P> {
        Part {
            source,
            api_keys: self.api.clone(),
            api,
        }
    }
}

/// A source narrowed to the top-level keys of one part. It keeps the source's metadata, so an
/// error still names the file.
struct Part<P> {
    source: P,
    api_keys: Vec<String>,
    /// Keep the API's keys (else all others).
    api: bool,
}

impl<P: Provider> Provider for Part<P> {
    fn metadata(&self) -> Metadata {
        self.source.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.source.data()?;
        for dict in data.values_mut() {
            dict.retain(|key, _| {
                let is_api = self
                    .api_keys
                    .iter()
                    .any(|k| k.split('.').next() == Some(key.as_str()));
                is_api == self.api
            });
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.source.profile()
    }
}

/// `EVD_*` variables, mapped onto sections (`EVD_LIMITS_OPS_PER_SEC` → `limits.ops_per_sec`).
/// Only names in `known` are read; [`Settings::unknown_env`] lists the others so the binary can
/// warn about them (a typo must not pass silently, nor must another tool's `EVD_*` variable stop
/// the engine from starting).
fn env(known: Vec<String>) -> Env {
    Env::prefixed("EVD_")
        .map(map_env_key)
        .filter(move |key| known.iter().any(|k| k == key.as_str()))
}

impl Settings {
    /// Defaults, then `file` (TOML) if given, then plain `DATABASE_URL` and `REDIS_URL`, then
    /// `EVD_*` variables from the environment. The API's part is read as `evd-api` reads it.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let keys = Keys::new();
        let mut engine = Figment::from(Serialized::defaults(Settings::default()));
        let mut api = Figment::from(Serialized::defaults(ApiSettings::default()));
        if let Some(path) = file {
            engine = engine.merge(keys.part(Toml::file_exact(path), false));
            api = api.merge(keys.part(Toml::file_exact(path), true));
        }
        let engine = engine
            .merge(Env::raw().only(&["REDIS_URL"]).map(|_| "broker.url".into()))
            .merge(env(keys.engine));
        let api = api
            .merge(
                Env::raw()
                    .only(&["DATABASE_URL"])
                    .map(|_| "database_url".into()),
            )
            .merge(env(keys.api));
        let mut s: Settings = engine.extract().map_err(Box::new)?;
        s.api = ApiSettings {
            listen: s.listen,
            ..api.extract().map_err(Box::new)?
        };
        s.validate()?;
        Ok(s)
    }

    /// `EVD_*` variables in the environment that name no setting.
    pub fn unknown_env() -> Vec<String> {
        let keys = Keys::new();
        let known: Vec<String> = keys.engine.into_iter().chain(keys.api).collect();
        std::env::vars()
            .filter_map(|(k, _)| k.strip_prefix("EVD_").map(str::to_owned))
            .filter(|k| !IGNORED_ENV.contains(&k.as_str()))
            // Service URLs of the test suites (EVD_TEST_DATABASE_URL, …).
            .filter(|k| !k.starts_with("TEST_"))
            .filter(|k| !known.contains(&map_env_key(k.as_str().into()).to_string()))
            .map(|k| format!("EVD_{k}"))
            .collect()
    }
}
