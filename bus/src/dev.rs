//! Finding the dev services that `scripts/services.sh up` started: each setting comes from its
//! environment variable, else from `var/services.env` at the repository root. Used by
//! integration tests and local runs; nothing here starts a service.

use std::path::Path;

/// The value of `key` (`VIGIL_NATS_URL`, `VIGIL_PG_URL`, `VIGIL_NATS_BIN`), or an error that
/// says how to start the services.
pub fn setting(key: &str) -> Result<String, String> {
    if let Ok(v) = std::env::var(key) {
        return Ok(v);
    }
    let env = Path::new(env!("CARGO_MANIFEST_DIR")).join("../var/services.env");
    let text = std::fs::read_to_string(&env).map_err(|_| {
        format!(
            "{key} is not set and {} is missing: start the dev services with `make services-up`",
            env.display()
        )
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
        .map(str::to_owned)
        .ok_or_else(|| format!("{key} is not in {}", env.display()))
}
