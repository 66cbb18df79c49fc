//! Tenant ids: validated once where they enter, then carried structurally.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A tenant id that matches `^[a-z0-9][a-z0-9_]{0,62}$`.
///
/// The grammar has no `-`, `.`, `*` or `>`, so a tenant id can be used as a NATS subject token
/// and inside an index name without escaping, and can never act as a wildcard.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

/// The reason a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tenant id `{0}`: must match ^[a-z0-9][a-z0-9_]{{0,62}}$")]
pub struct InvalidTenant(pub String);

/// Whether `s` is a valid tenant id; allocation-free, for the hot path.
pub fn is_valid_tenant(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

impl TenantId {
    /// Validates `s` as a tenant id.
    pub fn parse(s: &str) -> Result<Self, InvalidTenant> {
        if is_valid_tenant(s) {
            Ok(TenantId(s.to_owned()))
        } else {
            Err(InvalidTenant(s.to_owned()))
        }
    }

    /// The tenant id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["acme", "a", "0", "tenant_5", "a_b_c", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_attack_payloads() {
        // Each of these would be dangerous inside a subject, an index name or a path.
        for bad in [
            "",
            "Acme",
            "_acme",
            "acme-corp",
            "acme.prod",
            "*",
            ">",
            "a,b",
            "../..",
            "a b",
            "a/b",
            "acme\n",
            "ACME",
            "é",
            &"a".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
            assert!(!is_valid_tenant(bad));
        }
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantId>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"a.b\"").is_err());
    }
}
