//! JWT claims, and the verifier and signer both the engine and the REST API use.
//!
//! | claim | meaning |
//! |---|---|
//! | `sub` | user id, required |
//! | `org` | organization id, required |
//! | `exp` | expiry, required |
//! | `role` | `owner`, `organizer` or `attendee`; missing means `attendee`, unknown is refused |
//! | `tier` | `vip` or `standard` (waitlist priority) |
//! | `rooms` | optional list of room names an attendee may join, a signed grant |
//!
//! HS256 is the default; RS256 and ES256 public keys are supported. The verifier accepts exactly
//! the one algorithm of its key, so `alg:none` and algorithm confusion (an HS256 token "signed"
//! with an RSA public key) are always refused. `aud` and `iss` are checked when configured.
//!
//! Long (about 580 lines) because claims, verifier and signer are one contract: the same key
//! handling and algorithm rules must hold on both sides, so they are read together.

use crate::room::validate_id;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    /// The organization; everything the holder does is scoped to it.
    pub org: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// The holder's role in `org`.
    #[serde(default)]
    pub role: Role,
    /// Waitlist priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Rooms an attendee may join without a ticket lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
    /// Issued at, unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Audience, when the issuer sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// Issuer, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// `aud` is a string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// A member's role in an org.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Joins what their tickets or `rooms` claim allow.
    #[default]
    Attendee,
    /// Manages the org's events; joins any room of the org.
    Organizer,
    /// Like organizer, and manages members.
    Owner,
}

impl Role {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Attendee => "attendee",
            Role::Organizer => "organizer",
            Role::Owner => "owner",
        }
    }

    /// Organizers and owners manage the org and may join any of its rooms.
    pub const fn is_staff(self) -> bool {
        matches!(self, Role::Organizer | Role::Owner)
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "attendee" => Some(Role::Attendee),
            "organizer" => Some(Role::Organizer),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Waitlist priority: VIP before standard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Ahead of every standard entry.
    Vip,
    /// First come, first served.
    #[default]
    Standard,
}

impl Tier {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Tier::Vip => "vip",
            Tier::Standard => "standard",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "vip" => Some(Tier::Vip),
            "standard" => Some(Tier::Standard),
            _ => None,
        }
    }
}

/// A key to verify (or sign) tokens with. Exactly one algorithm goes with each.
#[derive(Clone)]
pub enum KeySpec<'a> {
    /// HS256 with a shared secret.
    Hs256(&'a [u8]),
    /// RS256; PEM public key to verify, PEM private key to sign.
    Rs256Pem(&'a [u8]),
    /// ES256 (P-256); PEM public key to verify, PEM private key (PKCS#8) to sign.
    Es256Pem(&'a [u8]),
}

impl fmt::Debug for KeySpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeySpec::Hs256(_) => "Hs256(<redacted>)",
            KeySpec::Rs256Pem(_) => "Rs256Pem(..)",
            KeySpec::Es256Pem(_) => "Es256Pem(..)",
        })
    }
}

impl KeySpec<'_> {
    fn algorithm(&self) -> Algorithm {
        match self {
            KeySpec::Hs256(_) => Algorithm::HS256,
            KeySpec::Rs256Pem(_) => Algorithm::RS256,
            KeySpec::Es256Pem(_) => Algorithm::ES256,
        }
    }
}

/// A key could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("invalid {alg:?} key: {source}")]
pub struct KeyError {
    alg: Algorithm,
    #[source]
    source: jsonwebtoken::errors::Error,
}

/// Why a token was refused. The `Display` text is safe to send to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token in the header or query string.
    #[error("missing token: send `Authorization: Bearer <JWT>` or `?token=<JWT>`")]
    Missing,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// The signature does not match the configured key.
    #[error("invalid token signature")]
    BadSignature,
    /// The header names an algorithm other than the configured one (including `none`).
    #[error("token algorithm not accepted")]
    BadAlgorithm,
    /// `aud` does not match.
    #[error("invalid token audience")]
    BadAudience,
    /// `iss` does not match.
    #[error("invalid token issuer")]
    BadIssuer,
    /// Not a JWT, or a required claim is missing or malformed.
    #[error("invalid token: {0}")]
    Malformed(String),
}

/// Checks tokens against one key.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .field("aud", &self.validation.aud)
            .field("iss", &self.validation.iss)
            .finish_non_exhaustive()
    }
}

/// What a [`Verifier`] checks besides the signature.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Accepted audiences; empty means `aud` is not checked.
    pub audience: Vec<String>,
    /// Accepted issuers; empty means `iss` is not checked.
    pub issuer: Vec<String>,
    /// Clock skew allowed on `exp`, in seconds.
    pub leeway_secs: u64,
}

impl Verifier {
    /// A verifier for one key and algorithm.
    pub fn new(key: KeySpec<'_>, options: &VerifyOptions) -> Result<Verifier, KeyError> {
        let alg = key.algorithm();
        let decoding = match key {
            KeySpec::Hs256(secret) => Ok(DecodingKey::from_secret(secret)),
            KeySpec::Rs256Pem(pem) => DecodingKey::from_rsa_pem(pem),
            KeySpec::Es256Pem(pem) => DecodingKey::from_ec_pem(pem),
        }
        .map_err(|source| KeyError { alg, source })?;
        let mut validation = Validation::new(alg);
        validation.algorithms = vec![alg];
        validation.leeway = options.leeway_secs;
        // A configured audience or issuer must be present, not only match when present.
        let mut required = vec!["exp", "sub"];
        validation.validate_exp = true;
        if options.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&options.audience);
            required.push("aud");
        }
        if !options.issuer.is_empty() {
            validation.set_issuer(&options.issuer);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Verifier {
            key: decoding,
            validation,
        })
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::BadAlgorithm
                }
                ErrorKind::InvalidAudience => AuthError::BadAudience,
                ErrorKind::InvalidIssuer => AuthError::BadIssuer,
                ErrorKind::MissingRequiredClaim(c) => {
                    AuthError::Malformed(format!("missing claim `{c}`"))
                }
                ErrorKind::Json(err) => AuthError::Malformed(err.to_string()),
                _ => AuthError::Malformed(e.to_string()),
            },
        )?;
        let claims = data.claims;
        validate_id(&claims.sub).map_err(|e| AuthError::Malformed(format!("claim `sub`: {e}")))?;
        validate_id(&claims.org).map_err(|e| AuthError::Malformed(format!("claim `org`: {e}")))?;
        Ok(claims)
    }
}

/// Mints tokens. The engine's `evd token` and the load harness use it.
#[derive(Clone)]
pub struct Signer {
    key: EncodingKey,
    alg: Algorithm,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer; for RS256 and ES256 the PEM is the private key.
    pub fn new(key: KeySpec<'_>) -> Result<Signer, KeyError> {
        let alg = key.algorithm();
        let key = match key {
            KeySpec::Hs256(secret) => Ok(EncodingKey::from_secret(secret)),
            KeySpec::Rs256Pem(pem) => EncodingKey::from_rsa_pem(pem),
            KeySpec::Es256Pem(pem) => EncodingKey::from_ec_pem(pem),
        }
        .map_err(|source| KeyError { alg, source })?;
        Ok(Signer { key, alg })
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key)
    }
}

impl Claims {
    /// Claims for `sub` in `org` with `role`, valid for `ttl_secs` from `now_secs`.
    pub fn new(sub: &str, org: &str, role: Role, now_secs: u64, ttl_secs: u64) -> Claims {
        Claims {
            sub: sub.to_owned(),
            org: org.to_owned(),
            exp: now_secs + ttl_secs,
            role,
            tier: None,
            rooms: None,
            iat: Some(now_secs),
            aud: None,
            iss: None,
        }
    }

    /// The waitlist tier; standard when the token has none.
    pub fn tier(&self) -> Tier {
        self.tier.unwrap_or_default()
    }

    /// Whether the `rooms` grant lists `room`.
    pub fn grants_room(&self, room: &str) -> bool {
        self.rooms
            .as_ref()
            .is_some_and(|r| r.iter().any(|g| g == room))
    }
}

#[cfg(test)]
mod tests;

/// The HS256 secret used when none is configured. Fine on a laptop, never in production: the
/// engine logs a warning at start when it is in use.
pub const DEV_SECRET: &str = "evd-dev-secret-do-not-use-in-production";

/// Signing algorithm accepted by the verifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `secret`.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256 with `public_key_path`.
    RS256,
    /// ECDSA P-256 SHA-256 with `public_key_path`.
    ES256,
}

/// Token settings shared by the engine and the REST API (`[jwt]` in the config file,
/// `EVD_JWT_*` in the environment).
///
/// Building a verifier reads the key file named here once; nothing else in this crate touches
/// the file system.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtSettings {
    /// `HS256` (default), `RS256` or `ES256`.
    pub algorithm: JwtAlgorithm,
    /// HS256 shared secret. Unset means [`DEV_SECRET`].
    pub secret: Option<String>,
    /// PEM public key for RS256 / ES256.
    pub public_key_path: Option<std::path::PathBuf>,
    /// PEM private key for RS256 / ES256, only needed to mint tokens (`evd token`).
    pub private_key_path: Option<std::path::PathBuf>,
    /// Accepted `aud` values; empty: not checked. A comma-separated string is accepted too.
    #[serde(deserialize_with = "string_or_list")]
    pub audience: Vec<String>,
    /// Accepted `iss` values; empty: not checked. A comma-separated string is accepted too.
    #[serde(deserialize_with = "string_or_list")]
    pub issuer: Vec<String>,
    /// Clock skew tolerated on `exp`, seconds.
    pub leeway_secs: u64,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            algorithm: JwtAlgorithm::HS256,
            secret: None,
            public_key_path: None,
            private_key_path: None,
            audience: Vec::new(),
            issuer: Vec::new(),
            // Issuers' and engines' clocks drift a little; half a minute forgives that without
            // keeping an expired token alive for long.
            leeway_secs: 30,
        }
    }
}

impl fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSettings")
            .field("algorithm", &self.algorithm)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_path", &self.public_key_path)
            .field("private_key_path", &self.private_key_path)
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

/// Token settings could not be turned into a key.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    /// RS256/ES256 without the key path it needs.
    #[error("jwt.algorithm = {0:?} needs jwt.{1} (EVD_JWT_{2})")]
    MissingKey(JwtAlgorithm, &'static str, &'static str),
    /// The key file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path from the settings.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key is not a valid key for the algorithm.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The HS256 secret is too short to be safe.
    #[error("jwt.secret must be at least 32 bytes")]
    WeakSecret,
}

impl JwtSettings {
    /// True when HS256 runs on the built-in development secret.
    pub fn uses_dev_secret(&self) -> bool {
        self.algorithm == JwtAlgorithm::HS256 && self.secret.is_none()
    }

    fn options(&self) -> VerifyOptions {
        VerifyOptions {
            audience: self.audience.clone(),
            issuer: self.issuer.clone(),
            leeway_secs: self.leeway_secs,
        }
    }

    fn secret_bytes(&self) -> Result<&[u8], JwtConfigError> {
        let secret = self.secret.as_deref().unwrap_or(DEV_SECRET);
        if secret.len() < 32 {
            return Err(JwtConfigError::WeakSecret);
        }
        Ok(secret.as_bytes())
    }

    fn read(
        path: Option<&std::path::Path>,
        alg: JwtAlgorithm,
        field: &'static str,
        env: &'static str,
    ) -> Result<Vec<u8>, JwtConfigError> {
        let path = path.ok_or(JwtConfigError::MissingKey(alg, field, env))?;
        std::fs::read(path).map_err(|source| JwtConfigError::Read {
            path: path.to_owned(),
            source,
        })
    }

    /// Builds the verifier, reading the public key file for RS256/ES256.
    pub fn verifier(&self) -> Result<Verifier, JwtConfigError> {
        let opts = self.options();
        Ok(match self.algorithm {
            JwtAlgorithm::HS256 => Verifier::new(KeySpec::Hs256(self.secret_bytes()?), &opts)?,
            alg => {
                let pem = Self::read(
                    self.public_key_path.as_deref(),
                    alg,
                    "public_key_path",
                    "PUBLIC_KEY_PATH",
                )?;
                let spec = if alg == JwtAlgorithm::RS256 {
                    KeySpec::Rs256Pem(&pem)
                } else {
                    KeySpec::Es256Pem(&pem)
                };
                Verifier::new(spec, &opts)?
            }
        })
    }

    /// Builds a signer, reading the private key file for RS256/ES256.
    pub fn signer(&self) -> Result<Signer, JwtConfigError> {
        Ok(match self.algorithm {
            JwtAlgorithm::HS256 => Signer::new(KeySpec::Hs256(self.secret_bytes()?))?,
            alg => {
                let pem = Self::read(
                    self.private_key_path.as_deref(),
                    alg,
                    "private_key_path",
                    "PRIVATE_KEY_PATH",
                )?;
                let spec = if alg == JwtAlgorithm::RS256 {
                    KeySpec::Rs256Pem(&pem)
                } else {
                    KeySpec::Es256Pem(&pem)
                };
                Signer::new(spec)?
            }
        })
    }
}

/// A token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The settings give no usable signing key.
    #[error(transparent)]
    Config(#[from] JwtConfigError),
    /// Signing failed.
    #[error("cannot sign the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

impl JwtSettings {
    /// Signs `claims` with the configured key, with the first configured audience and issuer
    /// filled in, so a verifier built from these settings accepts the token. `evd token` and
    /// the engine's development sign-in mint this way.
    pub fn mint(&self, mut claims: Claims) -> Result<String, MintError> {
        if let Some(aud) = self.audience.first() {
            claims.aud = Some(Audience::One(aud.clone()));
        }
        if let Some(iss) = self.issuer.first() {
            claims.iss = Some(iss.clone());
        }
        Ok(self.signer()?.sign(&claims)?)
    }
}

fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}
