//! The API server's configuration: listen address, NATS, the tenant registry, token keys and
//! limits. `validate` checks everything that needs no IO, so `vigil check`-style dry runs can
//! reject a bad file without touching a service.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;
use vigil_bus::StreamsConfig;
use vigil_model::TenantId;

/// `[api]` and friends in the server's TOML file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// NATS server URL, e.g. `nats://127.0.0.1:4222`.
    pub nats_url: String,
    /// JetStream stream settings (created or migrated at start-up).
    #[serde(default)]
    pub streams: StreamsConfig,
    /// Bearer-token verification.
    pub jwt: JwtConfig,
    /// Known tenants. A token for a tenant that is not listed, or not active, is refused.
    pub tenants: Vec<TenantEntry>,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// The case store; without it the `/v1/cases` routes answer 503.
    #[serde(default)]
    pub cases: Option<CasesConfig>,
}

/// Where the case API reads and writes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesConfig {
    /// The case store as the application role, e.g. `postgres://vigil_app@127.0.0.1:5433/vigil`.
    pub database_url: String,
    /// Connections in the pool.
    #[serde(default = "default_connections")]
    pub connections: usize,
}

fn default_connections() -> usize {
    4
}

/// How bearer tokens are verified.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
    /// Verification keys. Each pins one algorithm: a token is checked only with keys of the
    /// algorithm its header names, and `none` never verifies.
    pub keys: Vec<KeyConfig>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_leeway() -> u64 {
    30
}

/// One verification key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Key id; when set, a token's `kid` header must match it.
    #[serde(default)]
    pub kid: Option<String>,
    /// `HS256`, `RS256` or `ES256`.
    pub alg: KeyAlg,
    /// For HS256: the name of the environment variable holding the shared secret (never the
    /// secret itself in the file).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// For HS256: a file holding the shared secret (a mounted secret), instead of `secret_env`.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// For RS256 and ES256: the PEM file of the public key.
    #[serde(default)]
    pub public_key_pem: Option<PathBuf>,
}

/// Supported signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum KeyAlg {
    /// HMAC-SHA256 with a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// ECDSA P-256 with SHA-256.
    ES256,
}

/// A registered tenant.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantEntry {
    /// The tenant id.
    pub id: TenantId,
    /// Inactive tenants are refused (403).
    #[serde(default = "yes")]
    pub active: bool,
    /// Sustained ingest rate, events per second.
    #[serde(default = "default_rate")]
    pub events_per_sec: f64,
    /// Events allowed in a burst above the sustained rate.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn yes() -> bool {
    true
}

fn default_rate() -> f64 {
    5_000.0
}

fn default_burst() -> u32 {
    20_000
}

/// Request limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body as sent (compressed or not), bytes.
    pub max_body_bytes: usize,
    /// Largest body after gzip decompression, bytes.
    pub max_decompressed_bytes: usize,
    /// Largest single event, bytes.
    pub max_event_bytes: usize,
    /// Most events in one request.
    pub max_events: usize,
    /// Events more than this many seconds ahead of the server's clock are rejected
    /// (`future_timestamp`).
    pub max_clock_skew_secs: u64,
    /// Seconds to wait for JetStream to acknowledge a publish.
    pub publish_timeout_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 8 << 20,
            max_decompressed_bytes: 64 << 20,
            max_event_bytes: 1 << 20,
            max_events: 50_000,
            max_clock_skew_secs: 300,
            publish_timeout_secs: 10,
        }
    }
}

/// A configuration problem found without IO.
#[derive(Debug, thiserror::Error)]
#[error("invalid API configuration: {0}")]
pub struct ConfigError(pub String);

impl ApiConfig {
    /// Checks the configuration without touching the network or the key files.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.jwt.keys.is_empty() {
            return err("jwt.keys is empty: no token could ever verify".into());
        }
        for (i, k) in self.jwt.keys.iter().enumerate() {
            match k.alg {
                KeyAlg::HS256 if k.secret_env.is_some() == k.secret_file.is_some() => {
                    return err(format!(
                        "jwt.keys[{i}]: HS256 needs exactly one of `secret_env` and `secret_file`"
                    ));
                }
                KeyAlg::RS256 | KeyAlg::ES256 if k.public_key_pem.is_none() => {
                    return err(format!("jwt.keys[{i}]: {:?} needs `public_key_pem`", k.alg));
                }
                _ => {}
            }
            if k.alg == KeyAlg::HS256 && k.public_key_pem.is_some() {
                return err(format!(
                    "jwt.keys[{i}]: HS256 takes a secret, not `public_key_pem`"
                ));
            }
            if k.alg != KeyAlg::HS256 && (k.secret_env.is_some() || k.secret_file.is_some()) {
                return err(format!(
                    "jwt.keys[{i}]: {:?} takes `public_key_pem`, not a secret",
                    k.alg
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.tenants {
            if !seen.insert(t.id.as_str()) {
                return err(format!("tenant `{}` is listed twice", t.id));
            }
            if !(t.events_per_sec > 0.0 && t.events_per_sec.is_finite()) || t.burst == 0 {
                return err(format!(
                    "tenant `{}`: events_per_sec and burst must be positive",
                    t.id
                ));
            }
        }
        if self.limits.max_events == 0 || self.limits.max_body_bytes == 0 {
            return err("limits must be positive".into());
        }
        Ok(())
    }
}
