-- The case store (ADR 0008). Every table carries tenant_id and has row-level security
-- enabled and forced; the application role vigil_app is neither owner, superuser nor
-- BYPASSRLS, and sees a row only when its tenant_id equals the transaction-local setting
-- vigil.tenant (set with set_config(..., true), never per session).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'vigil_app') THEN
        CREATE ROLE vigil_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA vigil TO vigil_app;
GRANT SELECT ON vigil.schema_migrations TO vigil_app;

-- The tenant of the current transaction; NULL when none is set (no row matches NULL).
CREATE FUNCTION vigil.current_tenant() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('vigil.tenant', true), '') $$;

CREATE FUNCTION vigil.refuse_change() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TABLE vigil.tenants (
    tenant_id        text PRIMARY KEY CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_]{0,62}$'),
    next_case_number bigint NOT NULL DEFAULT 1 CHECK (next_case_number > 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    created_by       text NOT NULL
);

-- Alerts as the engine raised them; immutable, one row per tenant and alert id.
CREATE TABLE vigil.alerts (
    tenant_id    text NOT NULL REFERENCES vigil.tenants,
    alert_id     text NOT NULL CHECK (alert_id ~ '^[0-9a-f]{32}$'),
    rule_id      text NOT NULL,
    rule_version bigint NOT NULL,
    title        text NOT NULL,
    severity     text NOT NULL CHECK (severity IN ('informational', 'low', 'medium', 'high', 'critical')),
    group_values jsonb NOT NULL,
    event_time   timestamptz NOT NULL,
    detected_at  timestamptz NOT NULL,
    body         jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alert_id)
);
CREATE TRIGGER alerts_immutable BEFORE UPDATE ON vigil.alerts
    FOR EACH ROW EXECUTE FUNCTION vigil.refuse_change();

CREATE TABLE vigil.cases (
    tenant_id      text NOT NULL REFERENCES vigil.tenants,
    number         bigint NOT NULL CHECK (number > 0),
    title          text NOT NULL,
    severity       text NOT NULL CHECK (severity IN ('informational', 'low', 'medium', 'high', 'critical')),
    status         text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'in_progress', 'on_hold', 'closed')),
    resolution     text CHECK (resolution IN ('true_positive', 'benign_positive', 'false_positive', 'duplicate')),
    impact         text CHECK (impact IN ('none', 'low', 'medium', 'high', 'critical')),
    assignee       text,
    tags           text[] NOT NULL DEFAULT '{}',
    rule_id        text NOT NULL,
    -- The grouping slot: alerts of rule_id with these entity values join this case while
    -- grouping_open, their event time is before group_until and the case is below the cap.
    grouping_key   text NOT NULL,
    grouping_open  boolean NOT NULL DEFAULT true,
    group_until    timestamptz NOT NULL,
    alert_count    integer NOT NULL DEFAULT 0 CHECK (alert_count >= 0),
    first_alert_at timestamptz NOT NULL,
    last_alert_at  timestamptz NOT NULL,
    previous_case  bigint,
    version        bigint NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    created_by     text NOT NULL,
    closed_at      timestamptz,
    PRIMARY KEY (tenant_id, number),
    FOREIGN KEY (tenant_id, previous_case) REFERENCES vigil.cases (tenant_id, number),
    CONSTRAINT closed_has_outcome
        CHECK ((status = 'closed') = (resolution IS NOT NULL AND impact IS NOT NULL AND closed_at IS NOT NULL)),
    CONSTRAINT closed_takes_no_alerts CHECK (status <> 'closed' OR NOT grouping_open)
) WITH (fillfactor = 80);
-- Room on each page, and no index on the columns alerts change (counts, times, severity,
-- updated_at), keep those updates HOT: no index entry per update, so the per-key lookups
-- of grouping stay one probe however often a case takes alerts.
-- At most one open grouping slot per key: the race-safe part of grouping.
CREATE UNIQUE INDEX cases_open_slot ON vigil.cases (tenant_id, grouping_key) WHERE grouping_open;

-- The newest case of each grouping key (only it can be open): one primary-key probe per key
-- when alerts arrive, however many cases the tenant has.
CREATE TABLE vigil.case_slots (
    tenant_id    text NOT NULL,
    grouping_key text NOT NULL,
    case_number  bigint NOT NULL,
    PRIMARY KEY (tenant_id, grouping_key),
    FOREIGN KEY (tenant_id, case_number) REFERENCES vigil.cases
);
CREATE INDEX cases_by_status ON vigil.cases (tenant_id, status, number DESC);

-- Which case holds an alert: one case per alert.
CREATE TABLE vigil.case_alerts (
    tenant_id   text NOT NULL,
    alert_id    text NOT NULL,
    case_number bigint NOT NULL,
    linked_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, alert_id),
    FOREIGN KEY (tenant_id, alert_id) REFERENCES vigil.alerts,
    FOREIGN KEY (tenant_id, case_number) REFERENCES vigil.cases
);
CREATE INDEX case_alerts_by_case ON vigil.case_alerts (tenant_id, case_number);
CREATE TRIGGER case_alerts_immutable BEFORE UPDATE ON vigil.case_alerts
    FOR EACH ROW EXECUTE FUNCTION vigil.refuse_change();

CREATE TABLE vigil.case_comments (
    tenant_id   text NOT NULL,
    comment_id  bigint GENERATED ALWAYS AS IDENTITY,
    case_number bigint NOT NULL,
    body        text NOT NULL CHECK (length(body) BETWEEN 1 AND 65536),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL,
    PRIMARY KEY (tenant_id, comment_id),
    FOREIGN KEY (tenant_id, case_number) REFERENCES vigil.cases
);
CREATE INDEX case_comments_by_case ON vigil.case_comments (tenant_id, case_number, comment_id);

-- Who did what: append-only, for the application and for the owner alike.
CREATE TABLE vigil.audit_log (
    tenant_id   text NOT NULL REFERENCES vigil.tenants,
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    case_number bigint,
    details     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_by_case ON vigil.audit_log (tenant_id, case_number, seq);
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON vigil.audit_log
    FOR EACH ROW EXECUTE FUNCTION vigil.refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON vigil.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vigil.refuse_change();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenants', 'alerts', 'cases', 'case_slots', 'case_alerts', 'case_comments', 'audit_log'] LOOP
        EXECUTE format('ALTER TABLE vigil.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE vigil.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON vigil.%I USING (tenant_id = vigil.current_tenant()) '
                       'WITH CHECK (tenant_id = vigil.current_tenant())', t);
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE ON vigil.tenants, vigil.cases, vigil.case_slots TO vigil_app;
GRANT SELECT, INSERT ON vigil.alerts, vigil.case_alerts, vigil.audit_log TO vigil_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON vigil.case_comments TO vigil_app;
