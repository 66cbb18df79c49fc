//! A worker-local table of tenant ids: small integer indexes for state, constant-time lookup
//! whatever the number of tenants. Indexes never leave the worker (records carry the ids).

use std::collections::HashMap;

/// Tenant id → dense index, in order of first appearance.
#[derive(Clone, Debug, Default)]
pub struct TenantIndex {
    names: Vec<String>,
    index: HashMap<String, u32>,
}

impl TenantIndex {
    /// The index of `tenant`, adding it if new.
    pub fn index(&mut self, tenant: &str) -> u32 {
        if let Some(&i) = self.index.get(tenant) {
            return i;
        }
        let i = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push(tenant.to_owned());
        self.index.insert(tenant.to_owned(), i);
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
    }
}
