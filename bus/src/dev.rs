//! Finding the dev services that `scripts/services.sh up` started: each setting comes from its
//! environment variable, else from `var/services.env` at the repository root. Used by
//! integration tests and local runs. Outage tests also kill a service here
//! ([`kill_service`]) and bring it back with the script ([`services_up`]).

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

/// SIGKILLs the service whose pid file the setting `pidfile` names (`VIGIL_PG_PIDFILE`,
/// `VIGIL_OPENSEARCH_PIDFILE`): the first line of that file is the pid.
pub fn kill_service(pidfile: &str) -> Result<(), String> {
    let file = setting(pidfile)?;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
    let pid = text.lines().next().unwrap_or_default().trim();
    let status = std::process::Command::new("kill")
        .args(["-9", pid])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -9 {pid} ({pidfile}) failed: {status}"))
    }
}

/// `scripts/services.sh up`: starts whatever dev service is down, and waits until all are
/// ready.
pub fn services_up() -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("up")
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "services.sh up: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A tenant id no other test (or earlier run) uses: `prefix`, the process id, the clock and a
/// per-process counter (tests of one binary start in parallel, within the clock's resolution).
/// Tests share the long-lived dev services, so each works in tenants of its own.
pub fn unique_tenant(prefix: &str) -> vigil_model::TenantId {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000,
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    vigil_model::TenantId::parse(&id)
        .unwrap_or_else(|e| panic!("`{prefix}` makes an invalid tenant id `{id}`: {e}"))
}

/// Stream limits sized for the dev server and tests (JetStream reserves `max_bytes` against its
/// file store, so the production-sized defaults of several test runs would not fit).
pub fn small_streams() -> crate::StreamsConfig {
    let small = |days: u64| crate::Retention {
        max_age: std::time::Duration::from_secs(86_400 * days),
        max_bytes: 256 << 20,
    };
    crate::StreamsConfig {
        raw: small(1),
        normalized: small(2),
        alerts: small(3),
        dlq: small(4),
        ..crate::StreamsConfig::default()
    }
}

/// Connects to the dev NATS and creates (or migrates to) the dev stream limits: the setup every
/// integration test starts with.
pub async fn jetstream() -> Result<async_nats::jetstream::Context, String> {
    let url = setting("VIGIL_NATS_URL")?;
    let js = crate::connect(&url, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    crate::ensure_streams(&js, &small_streams())
        .await
        .map_err(|e| e.to_string())?;
    Ok(js)
}

/// Every message stored on `subject` in `stream`, read with a throwaway consumer (for tests and
/// inspection; it stops at the first empty fetch).
pub async fn read_subject(
    js: &async_nats::jetstream::Context,
    stream: &str,
    subject: String,
) -> Result<Vec<async_nats::jetstream::Message>, String> {
    use futures::StreamExt;
    let s = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    let c = s
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject,
            // Nothing is acknowledged: without this the server stops after `max_ack_pending`.
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    loop {
        let mut batch = c
            .fetch()
            .max_messages(5_000)
            .expires(std::time::Duration::from_millis(400))
            .messages()
            .await
            .map_err(|e| e.to_string())?;
        let before = out.len();
        while let Some(m) = batch.next().await {
            out.push(m.map_err(|e| e.to_string())?);
        }
        if out.len() == before {
            return Ok(out);
        }
    }
}
