-- Named queries of the PostgreSQL store (PostgreSQL 15), the twins of sqlite.sql: every
-- block has the name of a block there, does what it does and takes the same `:name`
-- parameters (rewritten to $1..$n for asyncpg; casts are written CAST(x AS type)). Each
-- block starts with `-- name: <name>`; the store loads them once and runs them by name.
-- Schema upgrades are `migration_<version>` blocks, applied in version order in one
-- transaction under an advisory lock, and recorded in the table schema_version (created
-- and written by the store, never by a migration). migration_1 is the schema SQLite
-- reaches after its migrations 1 to 5; migration_2 is its migration 6.
--
-- Kept as in SQLite: ids and timestamps are TEXT in the fixed-width UTC form of `_ts`, so
-- text order is time order; structured fields are JSON text (orjson); flags are 0/1
-- integers. SQLite INTEGER is bigint here, REAL double precision.
-- No comment below holds a quote mark or a colon before a word: the parameter rewriter
-- reads comments as it reads SQL.

-- name: migration_1
CREATE TABLE runs (
    id text PRIMARY KEY,
    job text NOT NULL,
    schedule_id text,
    scheduled_for text NOT NULL,
    trigger text NOT NULL,
    status text NOT NULL,
    started_at text,
    finished_at text,
    error text,
    created_at text NOT NULL
);
-- One slot of one schedule is one run, whoever tries to fire it and however often.
CREATE UNIQUE INDEX runs_slot ON runs (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL;
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_job_created ON runs (job, created_at);
-- Newest-first listing of all runs walks this index instead of sorting the table.
CREATE INDEX runs_created ON runs (created_at, id);
CREATE TABLE step_results (
    run_id text NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position bigint NOT NULL,
    step text NOT NULL,
    attempt bigint NOT NULL,
    status text NOT NULL,
    started_at text NOT NULL,
    duration_ms bigint NOT NULL,
    exit_code bigint,
    signal bigint,
    status_code bigint,
    response_size bigint,
    error_type text,
    error text,
    output_tail text NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, position, attempt)
);
-- Definitions written by the controller, progress by the daemon.
CREATE TABLE targets (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    url text NOT NULL,
    method text NOT NULL,
    headers text NOT NULL,            -- JSON object; env references kept unresolved
    body_template text,
    timeout_seconds double precision NOT NULL,
    expected_status text NOT NULL,    -- JSON array of status codes; empty means any 2xx
    assertions text NOT NULL,         -- JSON array of objects (type, value, path)
    follow_redirects bigint NOT NULL, -- 0 or 1
    verify_tls bigint NOT NULL,       -- 0 or 1
    retry text NOT NULL,              -- JSON object of RetryPolicy
    created_at text NOT NULL,
    updated_at text NOT NULL
);
-- Deleting a target that schedules use is refused or cascaded by the store, in code; the
-- foreign key (no ON DELETE action) is the backstop that keeps a schedule from dangling.
CREATE TABLE schedules (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    schedule_type text NOT NULL,
    target_id text REFERENCES targets (id),
    pipeline text,
    interval_seconds double precision,
    cron_expression text,
    run_at text,
    timezone text NOT NULL,
    jitter_seconds double precision NOT NULL,
    start_at text,
    end_at text,
    duration_seconds double precision,
    max_runs bigint,
    misfire_policy text NOT NULL,
    misfire_grace_seconds double precision NOT NULL,
    catch_up_max bigint NOT NULL,
    overlap_policy text NOT NULL,
    failure_policy text NOT NULL,
    failure_threshold bigint NOT NULL,
    cooldown_seconds double precision NOT NULL,
    status text NOT NULL,
    status_reason text,
    run_count bigint NOT NULL,
    consecutive_failures bigint NOT NULL,
    circuit_open_until text,
    last_run_at text,
    next_run_at text,
    revision bigint NOT NULL,         -- meta.revision of the last definition or status write
    created_at text NOT NULL,
    updated_at text NOT NULL
);
CREATE INDEX schedules_status ON schedules (status);
CREATE INDEX schedules_target ON schedules (target_id);
CREATE INDEX schedules_revision ON schedules (revision);
-- One row per deleted schedule, so a daemon that knows revision R learns what went away
-- after R. Kept forever, as in SQLite.
CREATE TABLE schedule_tombstones (
    id text PRIMARY KEY,
    revision bigint NOT NULL
);
CREATE INDEX schedule_tombstones_revision ON schedule_tombstones (revision);
-- The store-wide revision counter: every schedule write takes the next value in its own
-- transaction (bump_revision), whose row lock serializes the writers until commit, so
-- revisions commit in order.
CREATE TABLE meta (
    id bigint PRIMARY KEY CHECK (id = 1),
    revision bigint NOT NULL
);
INSERT INTO meta (id, revision) VALUES (1, 0);
-- Run metrics, kept up to date by triggers in the transaction that finishes each run (see
-- sqlite.sql, migration 3): per job, schedule (empty for runs without one) and UTC hour
-- the run finished in (YYYY-MM-DDTHH); the lifetime rows have the empty hour.
CREATE TABLE run_stats (
    hour text NOT NULL,
    job text NOT NULL,
    schedule_id text NOT NULL,
    succeeded bigint NOT NULL,
    failed bigint NOT NULL,
    cancelled bigint NOT NULL,
    skipped bigint NOT NULL,
    timed bigint NOT NULL,            -- runs with a duration, all but skipped ones
    duration_sum double precision NOT NULL, -- seconds
    -- A cumulative duration histogram: bNN counts the timed runs that took at most the
    -- NNth of store.records.DURATION_BOUNDS seconds (timed is +Inf).
    b01 bigint NOT NULL,
    b02 bigint NOT NULL,
    b03 bigint NOT NULL,
    b04 bigint NOT NULL,
    b05 bigint NOT NULL,
    b06 bigint NOT NULL,
    b07 bigint NOT NULL,
    b08 bigint NOT NULL,
    b09 bigint NOT NULL,
    b10 bigint NOT NULL,
    b11 bigint NOT NULL,
    b12 bigint NOT NULL,
    b13 bigint NOT NULL,
    b14 bigint NOT NULL,
    b15 bigint NOT NULL,
    -- Hour first: a window is one range of the key, the lifetime rows another.
    PRIMARY KEY (hour, job, schedule_id)
);
-- Hours before folded_before are in the lifetime rows already.
CREATE TABLE run_stats_meta (
    id bigint PRIMARY KEY CHECK (id = 1),
    folded_before text NOT NULL
);
INSERT INTO run_stats_meta (id, folded_before) VALUES (1, '');
-- Failed runs by error class: the error_type of the first step whose last attempt failed,
-- unknown when no step says.
CREATE TABLE run_error_stats (
    hour text NOT NULL,
    job text NOT NULL,
    schedule_id text NOT NULL,
    error_class text NOT NULL,
    failed bigint NOT NULL,
    PRIMARY KEY (hour, job, schedule_id, error_class)
);
-- The last run that executed (skipped slots do not count) per job and schedule, and per
-- job as a whole under the schedule_id *, with the failed runs in a row up to it (a
-- cancelled run neither adds to them nor ends them).
CREATE TABLE run_latest (
    job text NOT NULL,
    schedule_id text NOT NULL,
    run_id text NOT NULL,
    status text NOT NULL,
    finished_at text NOT NULL,
    first_finished_at text NOT NULL,
    consecutive_failures bigint NOT NULL,
    PRIMARY KEY (job, schedule_id)
);
-- Downtime windows of a job: opened after incident_threshold failed runs in a row,
-- resolved by the next success.
CREATE TABLE incidents (
    id text PRIMARY KEY,
    job text NOT NULL,
    started_at text NOT NULL,
    opened_at text NOT NULL,
    resolved_at text,
    failed_runs bigint NOT NULL,
    error_class text,
    cause text,
    first_failed_run_id text,
    last_failed_run_id text,
    resolved_by_run_id text
);
-- At most one open incident per job, whichever daemon (or restart of one) opens it.
CREATE UNIQUE INDEX incidents_open_job ON incidents (job) WHERE resolved_at IS NULL;
CREATE INDEX incidents_started ON incidents (started_at, id);
CREATE INDEX incidents_job_started ON incidents (job, started_at);
-- The process group of each command step a run started (see sqlite.sql, migration 5).
CREATE TABLE step_groups (
    run_id text NOT NULL,
    pgid bigint NOT NULL,
    leader_created double precision,  -- the leader create time (psutil); NULL if unread
    recorded_at text NOT NULL,
    PRIMARY KEY (run_id, pgid)
);
-- A run that ends: its hour row, its error class, its latest rows (sqlite.sql, migration
-- 4). The duration is exact to the microsecond, NULL when either end is unknown. A later
-- migration changes what a trigger does with CREATE OR REPLACE FUNCTION.
CREATE FUNCTION runs_finished() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    v_hour text := substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13);
    v_schedule text := COALESCE(NEW.schedule_id, '');
    v_done text := COALESCE(NEW.finished_at, NEW.created_at);
    d double precision := EXTRACT(EPOCH FROM (NEW.finished_at::timestamptz
                                              - NEW.started_at::timestamptz));
BEGIN
    INSERT INTO run_stats AS t (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                                timed, duration_sum,
                                b01, b02, b03, b04, b05, b06, b07, b08,
                                b09, b10, b11, b12, b13, b14, b15)
    VALUES (v_hour, NEW.job, v_schedule,
            (NEW.status = 'succeeded')::int, (NEW.status = 'failed')::int,
            (NEW.status = 'cancelled')::int, (NEW.status = 'skipped')::int,
            (d IS NOT NULL)::int, COALESCE(d, 0),
            COALESCE((d <= 0.005)::int, 0), COALESCE((d <= 0.01)::int, 0),
            COALESCE((d <= 0.025)::int, 0), COALESCE((d <= 0.05)::int, 0),
            COALESCE((d <= 0.1)::int, 0), COALESCE((d <= 0.25)::int, 0),
            COALESCE((d <= 0.5)::int, 0), COALESCE((d <= 1)::int, 0),
            COALESCE((d <= 2.5)::int, 0), COALESCE((d <= 5)::int, 0),
            COALESCE((d <= 10)::int, 0), COALESCE((d <= 30)::int, 0),
            COALESCE((d <= 60)::int, 0), COALESCE((d <= 120)::int, 0),
            COALESCE((d <= 300)::int, 0))
    ON CONFLICT (hour, job, schedule_id) DO UPDATE SET
        succeeded = t.succeeded + excluded.succeeded,
        failed = t.failed + excluded.failed,
        cancelled = t.cancelled + excluded.cancelled,
        skipped = t.skipped + excluded.skipped,
        timed = t.timed + excluded.timed,
        duration_sum = t.duration_sum + excluded.duration_sum,
        b01 = t.b01 + excluded.b01, b02 = t.b02 + excluded.b02, b03 = t.b03 + excluded.b03,
        b04 = t.b04 + excluded.b04, b05 = t.b05 + excluded.b05, b06 = t.b06 + excluded.b06,
        b07 = t.b07 + excluded.b07, b08 = t.b08 + excluded.b08, b09 = t.b09 + excluded.b09,
        b10 = t.b10 + excluded.b10, b11 = t.b11 + excluded.b11, b12 = t.b12 + excluded.b12,
        b13 = t.b13 + excluded.b13, b14 = t.b14 + excluded.b14, b15 = t.b15 + excluded.b15;
    IF NEW.status = 'failed' THEN
        INSERT INTO run_error_stats AS t (hour, job, schedule_id, error_class, failed)
        VALUES (v_hour, NEW.job, v_schedule,
                COALESCE((SELECT s.error_type FROM step_results AS s
                          WHERE s.run_id = NEW.id AND s.status = 'failed'
                            AND s.error_type IS NOT NULL
                            AND s.attempt = (SELECT MAX(a.attempt) FROM step_results AS a
                                             WHERE a.run_id = s.run_id
                                               AND a.position = s.position)
                          ORDER BY s.position LIMIT 1), 'unknown'),
                1)
        ON CONFLICT (hour, job, schedule_id, error_class) DO UPDATE SET
            failed = t.failed + 1;
    END IF;
    IF NEW.status <> 'skipped' THEN
        INSERT INTO run_latest AS t (job, schedule_id, run_id, status, finished_at,
                                     first_finished_at, consecutive_failures)
        VALUES (NEW.job, v_schedule, NEW.id, NEW.status, v_done, v_done,
                (NEW.status = 'failed')::int)
        ON CONFLICT (job, schedule_id) DO UPDATE SET
            run_id = excluded.run_id,
            status = excluded.status,
            finished_at = excluded.finished_at,
            consecutive_failures = CASE excluded.status
                WHEN 'succeeded' THEN 0
                WHEN 'failed' THEN t.consecutive_failures + 1
                ELSE t.consecutive_failures
            END;
        INSERT INTO run_latest AS t (job, schedule_id, run_id, status, finished_at,
                                     first_finished_at, consecutive_failures)
        VALUES (NEW.job, '*', NEW.id, NEW.status, v_done, v_done,
                (NEW.status = 'failed')::int)
        ON CONFLICT (job, schedule_id) DO UPDATE SET
            run_id = excluded.run_id,
            status = excluded.status,
            finished_at = excluded.finished_at,
            consecutive_failures = CASE excluded.status
                WHEN 'succeeded' THEN 0
                WHEN 'failed' THEN t.consecutive_failures + 1
                ELSE t.consecutive_failures
            END;
    END IF;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER runs_finished AFTER UPDATE OF status ON runs FOR EACH ROW
WHEN (OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running'))
EXECUTE FUNCTION runs_finished();
-- A slot recorded skipped is inserted finished (the only run that is): one more skipped.
CREATE FUNCTION runs_skipped() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    INSERT INTO run_stats AS t (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                                timed, duration_sum,
                                b01, b02, b03, b04, b05, b06, b07, b08,
                                b09, b10, b11, b12, b13, b14, b15)
    VALUES (substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13),
            NEW.job, COALESCE(NEW.schedule_id, ''),
            0, 0, 0, 1, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    ON CONFLICT (hour, job, schedule_id) DO UPDATE SET skipped = t.skipped + 1;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER runs_skipped AFTER INSERT ON runs FOR EACH ROW
WHEN (NEW.status = 'skipped')
EXECUTE FUNCTION runs_skipped();
-- A run has process groups only while it is unfinished: they go when it ends.
CREATE FUNCTION step_groups_run_ended() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM step_groups WHERE run_id = NEW.id;
    RETURN NULL;
END
$fn$;
CREATE TRIGGER step_groups_run_ended AFTER UPDATE OF status ON runs FOR EACH ROW
WHEN (NEW.status NOT IN ('pending', 'running'))
EXECUTE FUNCTION step_groups_run_ended();
-- Definition changes and requested runs are announced on the channel cronmgr_changes when
-- their transaction commits, so a daemon learns of a write by any controller on any host
-- at once (store/postgres/listen.py), with no polling. Every definition write bumps
-- meta.revision; a run someone asked for (manual, API) is inserted pending.
CREATE FUNCTION cronmgr_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cronmgr_changes', TG_TABLE_NAME);
    RETURN NULL;
END;
$$;
CREATE TRIGGER meta_revision_changed AFTER UPDATE OF revision ON meta
FOR EACH ROW EXECUTE FUNCTION cronmgr_notify_change();
CREATE TRIGGER runs_requested AFTER INSERT ON runs
FOR EACH ROW WHEN (NEW.trigger <> 'schedule' AND NEW.status = 'pending')
EXECUTE FUNCTION cronmgr_notify_change();

-- name: insert_run
-- No row when the slot (runs_slot) or the id is taken already.
INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, started_at,
                  finished_at, error, created_at, node_id)
VALUES (:id, :job, :schedule_id, :scheduled_for, :trigger, :status, :started_at,
        :finished_at, :error, :created_at, :node_id)
ON CONFLICT DO NOTHING;

-- name: update_run
UPDATE runs
SET status = :status,
    started_at = COALESCE(CAST(:started_at AS text), started_at),
    finished_at = COALESCE(CAST(:finished_at AS text), finished_at),
    error = COALESCE(CAST(:error AS text), error)
WHERE id = :id;

-- name: insert_step_result
INSERT INTO step_results (run_id, position, step, attempt, status, started_at,
                          duration_ms, exit_code, signal, status_code,
                          response_size, error_type, error, output_tail)
VALUES (:run_id, :position, :step, :attempt, :status, :started_at, :duration_ms,
        :exit_code, :signal, :status_code, :response_size, :error_type, :error,
        :output_tail)
ON CONFLICT (run_id, position, attempt) DO UPDATE SET
    step = excluded.step,
    status = excluded.status,
    started_at = excluded.started_at,
    duration_ms = excluded.duration_ms,
    exit_code = excluded.exit_code,
    signal = excluded.signal,
    status_code = excluded.status_code,
    response_size = excluded.response_size,
    error_type = excluded.error_type,
    error = excluded.error,
    output_tail = excluded.output_tail;

-- name: get_run
SELECT * FROM runs WHERE id = :id;

-- name: get_step_results
SELECT * FROM step_results WHERE run_id = :run_id ORDER BY position, attempt;

-- name: list_runs
SELECT * FROM runs
WHERE (CAST(:job AS text) IS NULL OR job = :job)
  AND (CAST(:schedule_id AS text) IS NULL OR schedule_id = :schedule_id)
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:since AS text) IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT CAST(:limit AS bigint) OFFSET CAST(:offset AS bigint);

-- name: fail_orphaned_runs
-- A pending manual run has not started yet: the next daemon picks it up instead. A slot
-- claimed ahead (pending, never started) may or may not have been sent: its own reason.
UPDATE runs
SET status = 'failed', finished_at = :now,
    error = CASE WHEN status = 'pending' AND started_at IS NULL
                 THEN CAST(:claimed_reason AS text)
                 ELSE CAST(:reason AS text) END
WHERE status = 'running' OR (status = 'pending' AND trigger = 'schedule');

-- name: recount_runs
-- See sqlite.sql: after fail_orphaned_runs, each schedule with max_runs adds the runs of
-- its own firing after its last_run_at (succeeded and failed, not skipped, not manual,
-- none of an earlier schedule of the same id), and never counts fewer than all such runs
-- the store holds. A second recount changes nothing.
UPDATE schedules
SET run_count = GREATEST(schedules.run_count + counted.after, counted.total),
    last_run_at = GREATEST(COALESCE(schedules.last_run_at, ''), counted.latest)
FROM (SELECT s.id,
             count(*) FILTER (WHERE r.scheduled_for > COALESCE(s.last_run_at, '')) AS after,
             count(*) AS total, max(r.scheduled_for) AS latest
      FROM schedules AS s JOIN runs AS r ON r.schedule_id = s.id
      WHERE s.max_runs IS NOT NULL
        AND r.trigger = 'schedule' AND r.status IN ('succeeded', 'failed')
        AND r.created_at >= s.created_at
      GROUP BY s.id) AS counted
WHERE schedules.id = counted.id
  AND (counted.after > 0 OR counted.total > schedules.run_count);

-- name: start_run
-- A slot claimed ahead begins; a run that ended meanwhile (skipped) is left as it is.
UPDATE runs SET status = 'running', started_at = :started_at
WHERE id = :id AND status = 'pending';

-- name: release_claim
-- A slot claimed ahead that will not fire (schedule changed, daemon stopping): as if never
-- claimed, so the next plan (or the next daemon misfire policy) decides about it anew.
DELETE FROM runs WHERE id = :id AND status = 'pending' AND started_at IS NULL;

-- name: list_requested_runs
-- Pending runs someone asked for (manual, API), newest first, not the slots claimed ahead.
SELECT * FROM runs
WHERE status = 'pending' AND trigger <> 'schedule'
ORDER BY created_at DESC, id DESC
LIMIT CAST(:limit AS bigint);

-- name: claim_run
-- The node that claims a requested run runs it (node_id, migration 2); none keeps the old.
UPDATE runs
SET status = 'running', started_at = :now, node_id = COALESCE(CAST(:node_id AS text), node_id)
WHERE id = :id AND status = 'pending';

-- name: bump_revision
-- The row lock this takes on the one meta row is held until the transaction commits, so
-- schedule writers are serialized on it and revisions commit in order (a second writer
-- waits here, then adds one to the committed value). The statements of the transaction
-- that read the revision after it see the bumped value.
UPDATE meta SET revision = revision + 1 WHERE id = 1;

-- name: get_revision
SELECT revision FROM meta WHERE id = 1;

-- name: insert_target
INSERT INTO targets (id, name, url, method, headers, body_template, timeout_seconds,
                     expected_status, assertions, follow_redirects, verify_tls, retry,
                     created_at, updated_at)
VALUES (:id, :name, :url, :method, :headers, :body_template, :timeout_seconds,
        :expected_status, :assertions, :follow_redirects, :verify_tls, :retry,
        :created_at, :updated_at);

-- name: update_target
UPDATE targets
SET name = :name, url = :url, method = :method, headers = :headers,
    body_template = :body_template, timeout_seconds = :timeout_seconds,
    expected_status = :expected_status, assertions = :assertions,
    follow_redirects = :follow_redirects, verify_tls = :verify_tls, retry = :retry,
    updated_at = :updated_at
WHERE id = :id;

-- name: get_target
SELECT * FROM targets WHERE id = :id;

-- name: get_targets
-- Many targets at once, their ids as a JSON array.
SELECT * FROM targets
WHERE id IN (SELECT value FROM jsonb_array_elements_text(CAST(CAST(:ids AS text) AS jsonb)));

-- name: get_target_by_name
SELECT * FROM targets WHERE name = :name;

-- name: list_targets
SELECT * FROM targets ORDER BY name LIMIT CAST(:limit AS bigint) OFFSET CAST(:offset AS bigint);

-- name: delete_target
DELETE FROM targets WHERE id = :id;

-- name: target_schedule_ids
SELECT id FROM schedules WHERE target_id = :target_id ORDER BY name;

-- name: touch_target_schedules
-- A target edit changes what its schedules do: the daemon finds out through their revision.
UPDATE schedules SET revision = (SELECT revision FROM meta WHERE id = 1)
WHERE target_id = :target_id;

-- name: bury_target_schedules
INSERT INTO schedule_tombstones (id, revision)
SELECT id, (SELECT revision FROM meta WHERE id = 1) FROM schedules WHERE target_id = :target_id
ON CONFLICT (id) DO UPDATE SET revision = excluded.revision;

-- name: delete_target_schedules
DELETE FROM schedules WHERE target_id = :target_id;

-- name: insert_schedule
INSERT INTO schedules (id, name, schedule_type, target_id, pipeline, interval_seconds,
                       cron_expression, run_at, timezone, jitter_seconds, start_at, end_at,
                       duration_seconds, max_runs, misfire_policy, misfire_grace_seconds,
                       catch_up_max, overlap_policy, failure_policy, failure_threshold,
                       cooldown_seconds, status, status_reason, run_count,
                       consecutive_failures, circuit_open_until, last_run_at, next_run_at,
                       revision, created_at, updated_at)
VALUES (:id, :name, :schedule_type, :target_id, :pipeline, :interval_seconds,
        :cron_expression, :run_at, :timezone, :jitter_seconds, :start_at, :end_at,
        :duration_seconds, :max_runs, :misfire_policy, :misfire_grace_seconds,
        :catch_up_max, :overlap_policy, :failure_policy, :failure_threshold,
        :cooldown_seconds, :status, :status_reason, :run_count,
        :consecutive_failures, :circuit_open_until, :last_run_at, :next_run_at,
        (SELECT revision FROM meta WHERE id = 1), :created_at, :updated_at);

-- name: update_schedule
-- The definition only: status has its own verb, and progress belongs to the daemon; but an
-- edit that passed validation ends an error status, which only a bad definition causes.
UPDATE schedules
SET status = CASE WHEN status = 'error' THEN 'active' ELSE status END,
    status_reason = CASE WHEN status = 'error' THEN NULL ELSE status_reason END,
    name = :name, schedule_type = :schedule_type, target_id = :target_id,
    pipeline = :pipeline, interval_seconds = :interval_seconds,
    cron_expression = :cron_expression, run_at = :run_at, timezone = :timezone,
    jitter_seconds = :jitter_seconds, start_at = :start_at, end_at = :end_at,
    duration_seconds = :duration_seconds, max_runs = :max_runs,
    misfire_policy = :misfire_policy, misfire_grace_seconds = :misfire_grace_seconds,
    catch_up_max = :catch_up_max, overlap_policy = :overlap_policy,
    failure_policy = :failure_policy, failure_threshold = :failure_threshold,
    cooldown_seconds = :cooldown_seconds, updated_at = :updated_at,
    revision = (SELECT revision FROM meta WHERE id = 1)
WHERE id = :id;

-- name: get_schedule
SELECT * FROM schedules WHERE id = :id;

-- name: list_schedules
SELECT * FROM schedules
WHERE (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:target_id AS text) IS NULL OR target_id = :target_id)
ORDER BY name
LIMIT CAST(:limit AS bigint) OFFSET CAST(:offset AS bigint);

-- name: schedule_ids_with_prefix
SELECT id FROM schedules WHERE left(id, length(CAST(:prefix AS text))) = :prefix ORDER BY id;

-- name: bury_schedule
INSERT INTO schedule_tombstones (id, revision)
SELECT id, (SELECT revision FROM meta WHERE id = 1) FROM schedules WHERE id = :id
ON CONFLICT (id) DO UPDATE SET revision = excluded.revision;

-- name: unbury_schedule
-- An id that comes back is a change, not a deletion.
DELETE FROM schedule_tombstones WHERE id = :id;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id;

-- name: set_schedule_status
-- Resuming starts the failure count and the circuit afresh and drops the old reason.
UPDATE schedules
SET status = CAST(:status AS text),
    status_reason = CASE WHEN CAST(:status AS text) = 'active' THEN NULL
                         ELSE CAST(:reason AS text) END,
    consecutive_failures = CASE WHEN CAST(:status AS text) = 'active' THEN 0
                                ELSE consecutive_failures END,
    circuit_open_until = CASE WHEN CAST(:status AS text) = 'active' THEN NULL
                              ELSE circuit_open_until END,
    updated_at = :now,
    revision = (SELECT revision FROM meta WHERE id = 1)
WHERE id = :id
RETURNING *;

-- name: record_progress
-- The engine fields; no revision, so the daemon writes never wake the daemon. The failure
-- count and the circuit are the API fields too (a resume resets them): written only when
-- the engine saw the current revision of the schedule.
UPDATE schedules
SET run_count = :run_count,
    consecutive_failures = CASE
        WHEN CAST(:revision AS bigint) IS NULL OR revision = CAST(:revision AS bigint)
            THEN CAST(:consecutive_failures AS bigint)
        ELSE consecutive_failures
    END,
    last_run_at = :last_run_at,
    next_run_at = :next_run_at,
    circuit_open_until = CASE
        WHEN CAST(:revision AS bigint) IS NULL OR revision = CAST(:revision AS bigint)
            THEN CAST(:circuit_open_until AS text)
        ELSE circuit_open_until
    END,
    -- The engine only ever ends an active schedule (completed, disabled); a pause or a
    -- resume the API wrote meanwhile wins over its older view.
    status = CASE
        WHEN CAST(:status AS text) IS NOT NULL AND status = 'active' THEN CAST(:status AS text)
        ELSE status
    END,
    status_reason = CASE
        WHEN CAST(:status AS text) IS NOT NULL AND status = 'active'
            THEN CAST(:status_reason AS text)
        ELSE status_reason
    END
WHERE id = :schedule_id;

-- name: changed_schedules
SELECT * FROM schedules WHERE revision > CAST(:since AS bigint) ORDER BY revision, id;

-- name: all_schedules
SELECT * FROM schedules;

-- name: deleted_schedules
SELECT id FROM schedule_tombstones WHERE revision > CAST(:since AS bigint) ORDER BY revision, id;

-- name: count_job_runs_since
-- A job's runs since a moment by status (a target page's availability); the (job,
-- created_at) index applies.
SELECT status, COUNT(*) AS runs FROM runs
WHERE job = :job AND created_at >= :since
GROUP BY status;

-- name: list_runs_of_job
-- list_runs with the job fixed (also how runs of a target are found), so that the
-- (job, created_at) index applies.
SELECT * FROM runs
WHERE job = :job
  AND (CAST(:schedule_id AS text) IS NULL OR schedule_id = :schedule_id)
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:since AS text) IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT CAST(:limit AS bigint) OFFSET CAST(:offset AS bigint);

-- name: list_runs_of_schedule
-- list_runs with the schedule fixed, for the same reason: the runs_slot index applies.
SELECT * FROM runs
WHERE schedule_id = :schedule_id
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:since AS text) IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT CAST(:limit AS bigint) OFFSET CAST(:offset AS bigint);

-- name: purge_runs
-- Finished runs past the newest keep of their schedule (runs without a schedule count per
-- job) or finished before older_than; a NULL bound deletes nothing by itself. Deleted by
-- id (there is no rowid). Step results go with their runs (ON DELETE CASCADE).
DELETE FROM runs WHERE id IN (
    SELECT ranked.id FROM (
        SELECT id, COALESCE(finished_at, created_at) AS done_at,
               ROW_NUMBER() OVER (PARTITION BY schedule_id ORDER BY scheduled_for DESC)
                   AS newest
        FROM runs
        WHERE schedule_id IS NOT NULL AND status NOT IN ('pending', 'running')
        UNION ALL
        SELECT id, COALESCE(finished_at, created_at),
               ROW_NUMBER() OVER (PARTITION BY job ORDER BY scheduled_for DESC, id DESC)
        FROM runs
        WHERE schedule_id IS NULL AND status NOT IN ('pending', 'running')) AS ranked
    WHERE ranked.newest > CAST(:keep AS bigint) OR ranked.done_at < CAST(:older_than AS text));

-- name: record_step_group
INSERT INTO step_groups (run_id, pgid, leader_created, recorded_at)
VALUES (:run_id, :pgid, :leader_created, :recorded_at)
ON CONFLICT (run_id, pgid) DO UPDATE SET
    leader_created = excluded.leader_created,
    recorded_at = excluded.recorded_at;

-- name: list_step_groups
SELECT g.run_id, g.pgid, g.leader_created FROM step_groups AS g JOIN runs AS r ON r.id = g.run_id
WHERE r.status IN ('pending', 'running')
ORDER BY g.recorded_at;

-- name: fold_run_stats
-- Add the hours from the last fold up to the bound to the lifetime rows; then
-- advance_run_stats_fold, in the same transaction, so that no hour is added twice.
INSERT INTO run_stats AS t (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                            timed, duration_sum,
                            b01, b02, b03, b04, b05, b06, b07, b08,
                            b09, b10, b11, b12, b13, b14, b15)
SELECT '', job, schedule_id, SUM(succeeded), SUM(failed), SUM(cancelled), SUM(skipped),
       SUM(timed), SUM(duration_sum),
       SUM(b01), SUM(b02), SUM(b03), SUM(b04), SUM(b05), SUM(b06), SUM(b07), SUM(b08),
       SUM(b09), SUM(b10), SUM(b11), SUM(b12), SUM(b13), SUM(b14), SUM(b15)
FROM run_stats
WHERE hour > '' AND hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
  AND hour < CAST(:before AS text)
GROUP BY job, schedule_id
ON CONFLICT (hour, job, schedule_id) DO UPDATE SET
    succeeded = t.succeeded + excluded.succeeded,
    failed = t.failed + excluded.failed,
    cancelled = t.cancelled + excluded.cancelled,
    skipped = t.skipped + excluded.skipped,
    timed = t.timed + excluded.timed,
    duration_sum = t.duration_sum + excluded.duration_sum,
    b01 = t.b01 + excluded.b01, b02 = t.b02 + excluded.b02, b03 = t.b03 + excluded.b03,
    b04 = t.b04 + excluded.b04, b05 = t.b05 + excluded.b05, b06 = t.b06 + excluded.b06,
    b07 = t.b07 + excluded.b07, b08 = t.b08 + excluded.b08, b09 = t.b09 + excluded.b09,
    b10 = t.b10 + excluded.b10, b11 = t.b11 + excluded.b11, b12 = t.b12 + excluded.b12,
    b13 = t.b13 + excluded.b13, b14 = t.b14 + excluded.b14, b15 = t.b15 + excluded.b15;

-- name: fold_run_error_stats
INSERT INTO run_error_stats AS t (hour, job, schedule_id, error_class, failed)
SELECT '', job, schedule_id, error_class, SUM(failed)
FROM run_error_stats
WHERE hour > '' AND hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
  AND hour < CAST(:before AS text)
GROUP BY job, schedule_id, error_class
ON CONFLICT (hour, job, schedule_id, error_class) DO UPDATE SET
    failed = t.failed + excluded.failed;

-- name: advance_run_stats_fold
UPDATE run_stats_meta SET folded_before = CAST(:before AS text)
WHERE id = 1 AND folded_before < CAST(:before AS text);

-- name: drop_run_stats
-- Hour rows before the bound that are folded already; the lifetime rows stay.
DELETE FROM run_stats
WHERE hour > '' AND hour < CAST(:before AS text)
  AND hour < (SELECT folded_before FROM run_stats_meta WHERE id = 1);

-- name: drop_run_error_stats
DELETE FROM run_error_stats
WHERE hour > '' AND hour < CAST(:before AS text)
  AND hour < (SELECT folded_before FROM run_stats_meta WHERE id = 1);

-- name: run_stats_since
-- SUM of bigint is numeric in PostgreSQL: cast back, so that counts read as integers.
SELECT job, schedule_id, SUM(succeeded)::bigint AS succeeded, SUM(failed)::bigint AS failed,
       SUM(cancelled)::bigint AS cancelled, SUM(skipped)::bigint AS skipped,
       SUM(timed)::bigint AS timed, SUM(duration_sum) AS duration_sum,
       SUM(b01)::bigint AS b01, SUM(b02)::bigint AS b02, SUM(b03)::bigint AS b03,
       SUM(b04)::bigint AS b04, SUM(b05)::bigint AS b05, SUM(b06)::bigint AS b06,
       SUM(b07)::bigint AS b07, SUM(b08)::bigint AS b08, SUM(b09)::bigint AS b09,
       SUM(b10)::bigint AS b10, SUM(b11)::bigint AS b11, SUM(b12)::bigint AS b12,
       SUM(b13)::bigint AS b13, SUM(b14)::bigint AS b14, SUM(b15)::bigint AS b15
FROM run_stats
WHERE hour >= CAST(:since AS text)
GROUP BY job, schedule_id;

-- name: run_stats_lifetime
-- The lifetime row plus the hours not folded into it yet.
SELECT job, schedule_id, SUM(succeeded)::bigint AS succeeded, SUM(failed)::bigint AS failed,
       SUM(cancelled)::bigint AS cancelled, SUM(skipped)::bigint AS skipped,
       SUM(timed)::bigint AS timed, SUM(duration_sum) AS duration_sum,
       SUM(b01)::bigint AS b01, SUM(b02)::bigint AS b02, SUM(b03)::bigint AS b03,
       SUM(b04)::bigint AS b04, SUM(b05)::bigint AS b05, SUM(b06)::bigint AS b06,
       SUM(b07)::bigint AS b07, SUM(b08)::bigint AS b08, SUM(b09)::bigint AS b09,
       SUM(b10)::bigint AS b10, SUM(b11)::bigint AS b11, SUM(b12)::bigint AS b12,
       SUM(b13)::bigint AS b13, SUM(b14)::bigint AS b14, SUM(b15)::bigint AS b15
FROM run_stats
WHERE hour = '' OR hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
GROUP BY job, schedule_id;

-- name: run_error_stats_since
SELECT job, schedule_id, error_class, SUM(failed)::bigint AS failed
FROM run_error_stats
WHERE hour >= CAST(:since AS text)
GROUP BY job, schedule_id, error_class;

-- name: run_error_stats_lifetime
SELECT job, schedule_id, error_class, SUM(failed)::bigint AS failed
FROM run_error_stats
WHERE hour = '' OR hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
GROUP BY job, schedule_id, error_class;

-- name: latest_runs
SELECT * FROM run_latest;

-- name: failing_jobs
-- A deleted target streak is over: it will not run again.
SELECT * FROM run_latest
WHERE schedule_id = CAST(:whole AS text) AND consecutive_failures > 0
  AND (job NOT LIKE 'target:%' OR substr(job, 8) IN (SELECT id FROM targets));

-- name: resolve_incidents_of_job
-- A deleted target open incident ends with it; no run resolved it.
UPDATE incidents SET resolved_at = :resolved_at WHERE job = :job AND resolved_at IS NULL;

-- name: count_schedules_by_status
SELECT status, COUNT(*) AS schedules FROM schedules GROUP BY status;

-- name: stats_names
-- Names by id, of schedules and targets alike (both are time-ordered UUIDs, or a file
-- schedule pipeline.name, so they never collide).
SELECT id, name FROM schedules
UNION ALL
SELECT id, name FROM targets;

-- name: insert_incident
-- Nothing when the job has an open incident already (the partial unique index).
INSERT INTO incidents (id, job, started_at, opened_at, resolved_at, failed_runs, error_class,
                       cause, first_failed_run_id, last_failed_run_id, resolved_by_run_id)
VALUES (:id, :job, :started_at, :opened_at, :resolved_at, :failed_runs, :error_class,
        :cause, :first_failed_run_id, :last_failed_run_id, :resolved_by_run_id)
ON CONFLICT DO NOTHING;

-- name: resolve_incident
UPDATE incidents
SET resolved_at = :resolved_at,
    resolved_by_run_id = :resolved_by_run_id,
    failed_runs = GREATEST(failed_runs, CAST(:failed_runs AS bigint))
WHERE id = :id AND resolved_at IS NULL
RETURNING *;

-- name: list_incidents
-- Newest first. since keeps the incidents that were open at some moment at or after it.
SELECT * FROM incidents
WHERE (CAST(:status AS text) IS NULL OR (CAST(:status AS text) = 'open') = (resolved_at IS NULL))
  AND (CAST(:job AS text) IS NULL OR job = :job)
  AND (CAST(:since AS text) IS NULL OR resolved_at IS NULL OR resolved_at >= :since)
ORDER BY started_at DESC, id DESC
LIMIT CAST(:limit AS bigint) OFFSET CAST(:offset AS bigint);

-- name: migration_2
-- Several daemons (nodes) share one store (see sqlite.sql, migration 6): each run records
-- the node that ran or skipped it, and each node has a row with its lease. No index on
-- node_id, as in SQLite: the queries by node look at pending and running runs only.
ALTER TABLE runs ADD COLUMN node_id text;
-- pipelines is a JSON object (name to content hash) as text, like every structured column.
-- Ordered by id in the C collation, as SQLite orders text: the same order on every server.
CREATE TABLE nodes (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid bigint NOT NULL,
    version text NOT NULL,
    started_at text NOT NULL,
    heartbeat_at text NOT NULL,
    lease_expires_at text NOT NULL,
    state text NOT NULL,              -- live, left or lost
    pipelines text NOT NULL DEFAULT '{}',
    schedules_owned bigint NOT NULL DEFAULT 0,
    runs_in_flight bigint NOT NULL DEFAULT 0
);

-- name: join_node
-- The row of a node joining, or the row of its id replaced (see sqlite.sql). The upsert
-- locks a row it does not replace, so the row read next for the refusal is the one that
-- refused, and two daemons joining one id at once are serialized on it.
INSERT INTO nodes AS t (id, host, pid, version, started_at, heartbeat_at, lease_expires_at,
                        state, pipelines, schedules_owned, runs_in_flight)
VALUES (:id, :host, :pid, :version, :started_at, :heartbeat_at, :lease_expires_at,
        'live', :pipelines, :schedules_owned, :runs_in_flight)
ON CONFLICT (id) DO UPDATE SET
    host = excluded.host,
    pid = excluded.pid,
    version = excluded.version,
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at,
    lease_expires_at = excluded.lease_expires_at,
    state = 'live',
    pipelines = excluded.pipelines,
    schedules_owned = excluded.schedules_owned,
    runs_in_flight = excluded.runs_in_flight
WHERE t.state <> 'live' OR t.lease_expires_at <= excluded.heartbeat_at
   OR t.host = excluded.host
RETURNING id;

-- name: get_node
SELECT * FROM nodes WHERE id = :id;

-- name: renew_lease
-- Only while live: a node declared lost (or that left) meanwhile changes nothing.
UPDATE nodes
SET heartbeat_at = :heartbeat_at,
    lease_expires_at = :lease_expires_at,
    pipelines = :pipelines,
    schedules_owned = :schedules_owned,
    runs_in_flight = :runs_in_flight
WHERE id = :id AND state = 'live';

-- name: live_nodes
SELECT * FROM nodes WHERE state = 'live' AND lease_expires_at > :now ORDER BY id COLLATE "C";

-- name: expire_nodes
-- A second node expiring at once waits for the row lock of the first, then reads the row
-- again and finds it lost already: each id is returned to one caller.
UPDATE nodes SET state = 'lost'
WHERE state = 'live' AND lease_expires_at <= :now
RETURNING id;

-- name: leave_node
-- A clean stop: the lease ends now, so that the others take over at once.
UPDATE nodes SET state = 'left', heartbeat_at = :now, lease_expires_at = :now WHERE id = :id;

-- name: list_nodes
SELECT * FROM nodes ORDER BY id COLLATE "C";

-- name: prune_nodes
DELETE FROM nodes WHERE state <> 'live' AND heartbeat_at < :before;

-- name: fail_node_runs
-- The runs a gone node left: running ones, and the slots it claimed ahead that are due
-- already (they may or may not have been sent, so their own reason). Its claims still to
-- come go instead (free_node_claims), for the node taking over the schedule to fire.
UPDATE runs
SET status = 'failed', finished_at = :now,
    error = CASE WHEN status = 'running' THEN CAST(:reason AS text)
                 ELSE CAST(:claimed_reason AS text) END
WHERE node_id = :node_id
  AND (status = 'running'
       OR (status = 'pending' AND trigger = 'schedule' AND started_at IS NULL
           AND scheduled_for <= :now));

-- name: free_node_claims
DELETE FROM runs
WHERE node_id = :node_id AND status = 'pending' AND trigger = 'schedule'
  AND started_at IS NULL AND scheduled_for > :now;

-- name: fail_orphaned_runs_of_node
-- fail_orphaned_runs for a node starting among others: only its own runs, those of no
-- node, and those of nodes no longer live with an unexpired lease; the runs of the live
-- ones are theirs.
UPDATE runs
SET status = 'failed', finished_at = :now,
    error = CASE WHEN status = 'pending' AND started_at IS NULL
                 THEN CAST(:claimed_reason AS text)
                 ELSE CAST(:reason AS text) END
WHERE (status = 'running' OR (status = 'pending' AND trigger = 'schedule'))
  AND (node_id IS NULL OR node_id = :node_id
       OR NOT EXISTS (SELECT 1 FROM nodes AS n
                      WHERE n.id = runs.node_id AND n.state = 'live'
                        AND n.lease_expires_at > :now));

-- Bulk forms of the run and progress writes: <name>_bulk does what <name> does for every
-- object of the JSON array rows (text), whose keys are the parameters of <name>, in one
-- statement (see sqlite.sql).

-- name: insert_run_bulk
-- RETURNING names the runs that went in: a slot or id taken already inserts nothing.
INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, started_at,
                  finished_at, error, created_at, node_id)
SELECT w.id, w.job, w.schedule_id, w.scheduled_for, w.trigger, w.status, w.started_at,
       w.finished_at, w.error, w.created_at, w.node_id
FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb))
    AS w(id text, job text, schedule_id text, scheduled_for text, trigger text, status text,
         started_at text, finished_at text, error text, created_at text, node_id text)
ON CONFLICT DO NOTHING
RETURNING id;

-- name: update_run_bulk
UPDATE runs
SET status = w.status,
    started_at = COALESCE(w.started_at, runs.started_at),
    finished_at = COALESCE(w.finished_at, runs.finished_at),
    error = COALESCE(w.error, runs.error)
FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb))
    AS w(id text, status text, started_at text, finished_at text, error text)
WHERE runs.id = w.id;

-- name: insert_step_result_bulk
-- The last object of a key wins, as with INSERT OR REPLACE (an upsert must not meet one
-- key twice in a statement).
INSERT INTO step_results AS t (run_id, position, step, attempt, status, started_at,
                               duration_ms, exit_code, signal, status_code,
                               response_size, error_type, error, output_tail)
SELECT DISTINCT ON (w.run_id, w.position, w.attempt)
       w.run_id, w.position, w.step, w.attempt, w.status, w.started_at, w.duration_ms,
       w.exit_code, w.signal, w.status_code, w.response_size, w.error_type, w.error,
       w.output_tail
FROM jsonb_array_elements(CAST(CAST(:rows AS text) AS jsonb)) WITH ORDINALITY AS e(value, n)
CROSS JOIN LATERAL jsonb_to_record(e.value)
    AS w(run_id text, position bigint, step text, attempt bigint, status text,
         started_at text, duration_ms bigint, exit_code bigint, signal bigint,
         status_code bigint, response_size bigint, error_type text, error text,
         output_tail text)
ORDER BY w.run_id, w.position, w.attempt, e.n DESC
ON CONFLICT (run_id, position, attempt) DO UPDATE SET
    step = excluded.step,
    status = excluded.status,
    started_at = excluded.started_at,
    duration_ms = excluded.duration_ms,
    exit_code = excluded.exit_code,
    signal = excluded.signal,
    status_code = excluded.status_code,
    response_size = excluded.response_size,
    error_type = excluded.error_type,
    error = excluded.error,
    output_tail = excluded.output_tail;

-- name: start_run_bulk
UPDATE runs SET status = 'running', started_at = w.started_at
FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb)) AS w(id text, started_at text)
WHERE runs.id = w.id AND runs.status = 'pending';

-- name: release_claim_bulk
DELETE FROM runs
WHERE id IN (SELECT w.id FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb)) AS w(id text))
  AND status = 'pending' AND started_at IS NULL;

-- name: record_progress_bulk
UPDATE schedules
SET run_count = p.run_count,
    consecutive_failures = CASE
        WHEN p.revision IS NULL OR schedules.revision = p.revision THEN p.consecutive_failures
        ELSE schedules.consecutive_failures
    END,
    last_run_at = p.last_run_at,
    next_run_at = p.next_run_at,
    circuit_open_until = CASE
        WHEN p.revision IS NULL OR schedules.revision = p.revision THEN p.circuit_open_until
        ELSE schedules.circuit_open_until
    END,
    status = CASE
        WHEN p.status IS NOT NULL AND schedules.status = 'active' THEN p.status
        ELSE schedules.status
    END,
    status_reason = CASE
        WHEN p.status IS NOT NULL AND schedules.status = 'active' THEN p.status_reason
        ELSE schedules.status_reason
    END
FROM jsonb_to_recordset(CAST(CAST(:rows AS text) AS jsonb))
    AS p(schedule_id text, run_count bigint, consecutive_failures bigint, last_run_at text,
         next_run_at text, circuit_open_until text, status text, status_reason text,
         revision bigint)
WHERE schedules.id = p.schedule_id;
