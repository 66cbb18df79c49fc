//! Per-tenant ingest rate limits: a token bucket of events per tenant, so one tenant's flood is
//! refused with 429 while every other tenant keeps its full rate.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use vigil_model::TenantId;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets by tenant.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    /// Takes `n` events from the tenant's bucket (rate `per_sec`, capacity `burst`). On refusal
    /// returns the seconds until `n` events would be available.
    pub fn take(&self, tenant: &TenantId, n: u32, per_sec: f64, burst: u32) -> Result<(), u64> {
        self.take_at(tenant, n, per_sec, burst, Instant::now())
    }

    fn take_at(
        &self,
        tenant: &TenantId,
        n: u32,
        per_sec: f64,
        burst: u32,
        now: Instant,
    ) -> Result<(), u64> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = buckets.entry(tenant.clone()).or_insert(Bucket {
            tokens: f64::from(burst),
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * per_sec).min(f64::from(burst));
        b.last = now;
        let want = f64::from(n);
        if b.tokens >= want {
            b.tokens -= want;
            Ok(())
        } else {
            Err(((want - b.tokens) / per_sec).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn buckets_refill_and_are_per_tenant() {
        let l = RateLimiter::default();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let t0 = Instant::now();
        assert!(l.take_at(&a, 100, 10.0, 100, t0).is_ok());
        assert_eq!(l.take_at(&a, 10, 10.0, 100, t0), Err(1));
        assert_eq!(l.take_at(&a, 50, 10.0, 100, t0), Err(5));
        // Another tenant is untouched.
        assert!(l.take_at(&b, 100, 10.0, 100, t0).is_ok());
        // Two seconds later, 20 events are back.
        assert!(
            l.take_at(&a, 20, 10.0, 100, t0 + Duration::from_secs(2))
                .is_ok()
        );
        assert!(
            l.take_at(&a, 1, 10.0, 100, t0 + Duration::from_secs(2))
                .is_err()
        );
    }
}
