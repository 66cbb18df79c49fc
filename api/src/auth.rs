//! Bearer-token authentication: JWTs signed with HS256, RS256 or ES256, algorithm pinned per
//! key, `exp`, `iss` and `aud` required and checked; the tenant and role come from the token.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use vigil_model::TenantId;

use crate::config::{JwtConfig, KeyAlg, TenantEntry};
use crate::error::ApiError;

/// The platform roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Operates the platform, across tenants.
    PlatformAdmin,
    /// Administers one tenant.
    TenantAdmin,
    /// Works alerts and cases of one tenant.
    SocAnalyst,
    /// Reads, never writes.
    Auditor,
}

impl Role {
    fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "platform_admin" => Role::PlatformAdmin,
            "tenant_admin" => Role::TenantAdmin,
            "soc_analyst" => Role::SocAnalyst,
            "auditor" => Role::Auditor,
            _ => return None,
        })
    }

    /// Whether the role may change cases (status, assignee, comments): not auditors.
    pub fn may_work_cases(self) -> bool {
        !matches!(self, Role::Auditor)
    }

    /// Whether the role may send events.
    pub fn may_ingest(self) -> bool {
        matches!(self, Role::PlatformAdmin | Role::TenantAdmin)
    }
}

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    /// `sub`.
    pub subject: String,
    /// The tenant the token is for.
    pub tenant: TenantId,
    /// The role.
    pub role: Role,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    tenant_id: Option<String>,
    role: String,
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies tokens against the configured keys and the tenant registry.
pub struct Verifier {
    keys: Vec<Key>,
    issuer: String,
    audience: String,
    leeway: u64,
    tenants: HashMap<TenantId, TenantEntry>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Why the verifier could not be built.
#[derive(Debug, thiserror::Error)]
#[error("failed to load JWT key {index}: {message}")]
pub struct KeyError {
    /// Index in `jwt.keys`.
    pub index: usize,
    /// What went wrong.
    pub message: String,
}

impl Verifier {
    /// Loads the keys (reading PEM files and secret environment variables).
    pub fn new(jwt: &JwtConfig, tenants: &[TenantEntry]) -> Result<Verifier, KeyError> {
        let mut keys = Vec::new();
        for (index, k) in jwt.keys.iter().enumerate() {
            let err = |message: String| KeyError { index, message };
            let (alg, key) = match k.alg {
                KeyAlg::HS256 => {
                    let (secret, from) = match (&k.secret_env, &k.secret_file) {
                        (Some(var), _) => (
                            std::env::var(var).map_err(|_| {
                                err(format!("environment variable {var} is not set"))
                            })?,
                            var.clone(),
                        ),
                        (None, Some(path)) => (
                            std::fs::read_to_string(path)
                                .map_err(|e| {
                                    err(format!("failed to read {}: {e}", path.display()))
                                })?
                                .trim_end()
                                .to_owned(),
                            path.display().to_string(),
                        ),
                        (None, None) => {
                            return Err(err("HS256 needs secret_env or secret_file".into()));
                        }
                    };
                    if secret.len() < 32 {
                        return Err(err(format!(
                            "the secret in {from} is shorter than 32 bytes"
                        )));
                    }
                    let key = DecodingKey::from_secret(secret.as_bytes())
                        .map_err(|e| err(e.to_string()))?;
                    (Algorithm::HS256, key)
                }
                KeyAlg::RS256 | KeyAlg::ES256 => {
                    let path = k
                        .public_key_pem
                        .as_ref()
                        .ok_or_else(|| err("needs public_key_pem".into()))?;
                    let pem = std::fs::read(path)
                        .map_err(|e| err(format!("failed to read {}: {e}", path.display())))?;
                    if k.alg == KeyAlg::RS256 {
                        let key = DecodingKey::from_rsa_pem(&pem)
                            .map_err(|e| err(format!("{}: {e}", path.display())))?;
                        (Algorithm::RS256, key)
                    } else {
                        let key = DecodingKey::from_ec_pem(&pem)
                            .map_err(|e| err(format!("{}: {e}", path.display())))?;
                        (Algorithm::ES256, key)
                    }
                }
            };
            keys.push(Key {
                kid: k.kid.clone(),
                alg,
                key,
            });
        }
        Ok(Verifier {
            keys,
            issuer: jwt.issuer.clone(),
            audience: jwt.audience.clone(),
            leeway: jwt.leeway_secs,
            tenants: tenants.iter().map(|t| (t.id.clone(), t.clone())).collect(),
        })
    }

    /// The registry entry of a tenant.
    pub fn tenant(&self, t: &TenantId) -> Option<&TenantEntry> {
        self.tenants.get(t)
    }

    /// Checks an `Authorization` header value and returns the caller.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?
            .trim();
        let header = decode_header(token)
            .map_err(|e| ApiError::Unauthorized(format!("malformed token: {e}")))?;
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg)
            .filter(|k| k.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(ApiError::Unauthorized(format!(
                "no key accepts algorithm {:?}{}",
                header.alg,
                header
                    .kid
                    .as_deref()
                    .map(|k| format!(" with kid `{k}`"))
                    .unwrap_or_default()
            )));
        }
        let mut last = String::new();
        let claims = candidates
            .iter()
            .find_map(|k| {
                let mut v = Validation::new(k.alg);
                v.algorithms = vec![k.alg];
                v.leeway = self.leeway;
                v.set_issuer(&[&self.issuer]);
                v.set_audience(&[&self.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
                match decode::<Claims>(token, &k.key, &v) {
                    Ok(d) => Some(d.claims),
                    Err(e) => {
                        last = e.to_string();
                        None
                    }
                }
            })
            .ok_or_else(|| ApiError::Unauthorized(format!("token rejected: {last}")))?;
        let role = Role::parse(&claims.role)
            .ok_or_else(|| ApiError::Forbidden(format!("unknown role `{}`", claims.role)))?;
        let tenant_claim = claims
            .tenant_id
            .ok_or_else(|| ApiError::Forbidden("token names no tenant".into()))?;
        let tenant = TenantId::parse(&tenant_claim)
            .map_err(|e| ApiError::Unauthorized(format!("token rejected: {e}")))?;
        match self.tenants.get(&tenant) {
            None => Err(ApiError::Forbidden(format!(
                "tenant `{tenant}` is not registered"
            ))),
            Some(t) if !t.active => Err(ApiError::Forbidden(format!(
                "tenant `{tenant}` is not active"
            ))),
            Some(_) => Ok(Principal {
                subject: claims.sub,
                tenant,
                role,
            }),
        }
    }
}
