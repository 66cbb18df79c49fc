//! A worker-local table of tenant ids: small integer indexes for state, constant-time lookup
//! whatever the number of tenants. Indexes never leave the worker (records carry the ids).

use std::collections::HashMap;

/// Tenant id → dense index, in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct TenantIndex {
    names: Vec<String>,
    /// Only filled past [`SCAN_LIMIT`] tenants: below it a scan beats hashing.
    index: HashMap<String, u32>,
}

/// Up to this many tenants, lookups scan the names (measured faster than SipHash for a few
/// short ids, which is the common case per chunk).
const SCAN_LIMIT: usize = 16;

impl TenantIndex {
    /// The index of `tenant`, adding it if new.
    pub fn index(&mut self, tenant: &str) -> u32 {
        let found = if self.names.len() <= SCAN_LIMIT {
            self.names
                .iter()
                .position(|n| n == tenant)
                .map(|i| i as u32)
        } else {
            self.index.get(tenant).copied()
        };
        if let Some(i) = found {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(tenant.to_owned());
        if self.names.len() > SCAN_LIMIT {
            if self.index.is_empty() {
                for (j, n) in self.names.iter().enumerate() {
                    self.index.insert(n.clone(), j as u32);
                }
            } else {
                self.index.insert(tenant.to_owned(), i);
            }
        }
        i
    }

    /// The tenant at `i`.
    pub fn name(&self, i: u32) -> &str {
        &self.names[i as usize]
    }

    /// Every tenant, by index.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Takes the tenant names out, leaving the table empty.
    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_are_dense_and_stable() {
        let mut t = TenantIndex::default();
        assert_eq!(t.index("acme"), 0);
        assert_eq!(t.index("globex"), 1);
        assert_eq!(t.index("acme"), 0);
        assert_eq!(t.name(1), "globex");
        assert_eq!(t.names(), ["acme", "globex"]);
        // Past the scan limit, lookups switch to the hash map and agree with the scan.
        for k in 0..100 {
            assert_eq!(t.index(&format!("t{k}")), k + 2);
        }
        assert_eq!(t.index("acme"), 0);
        assert_eq!(t.index("t50"), 52);
        assert_eq!(t.index("new"), 102);
    }
}
