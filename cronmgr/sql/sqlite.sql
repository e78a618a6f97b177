-- Named queries of the SQLite store. Each block starts with `-- name: <name>`; the store
-- loads them once and runs them by name. Schema upgrades are `migration_<version>` blocks,
-- applied in order and recorded in PRAGMA user_version.

-- name: migration_1
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    schedule_id TEXT,
    scheduled_for TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    error TEXT,
    created_at TEXT NOT NULL
);
-- One slot of one schedule is one run, whoever tries to fire it and however often.
CREATE UNIQUE INDEX runs_slot ON runs (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL;
CREATE INDEX runs_status ON runs (status);
CREATE INDEX runs_job_created ON runs (job, created_at);
CREATE TABLE step_results (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    exit_code INTEGER,
    signal INTEGER,
    status_code INTEGER,
    response_size INTEGER,
    error_type TEXT,
    error TEXT,
    output_tail TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (run_id, position, attempt)
);

-- name: insert_run
INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, started_at,
                  finished_at, error, created_at)
VALUES (:id, :job, :schedule_id, :scheduled_for, :trigger, :status, :started_at,
        :finished_at, :error, :created_at)
ON CONFLICT DO NOTHING;

-- name: update_run
UPDATE runs
SET status = :status,
    started_at = COALESCE(:started_at, started_at),
    finished_at = COALESCE(:finished_at, finished_at),
    error = COALESCE(:error, error)
WHERE id = :id;

-- name: insert_step_result
INSERT OR REPLACE INTO step_results (run_id, position, step, attempt, status, started_at,
                                     duration_ms, exit_code, signal, status_code,
                                     response_size, error_type, error, output_tail)
VALUES (:run_id, :position, :step, :attempt, :status, :started_at, :duration_ms,
        :exit_code, :signal, :status_code, :response_size, :error_type, :error,
        :output_tail);

-- name: get_run
SELECT * FROM runs WHERE id = :id;

-- name: get_step_results
SELECT * FROM step_results WHERE run_id = :run_id ORDER BY position, attempt;

-- name: list_runs
SELECT * FROM runs
WHERE (:job IS NULL OR job = :job)
  AND (:schedule_id IS NULL OR schedule_id = :schedule_id)
  AND (:status IS NULL OR status = :status)
  AND (:since IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: fail_orphaned_runs
-- A pending manual run has not started yet: the next daemon picks it up instead.
UPDATE runs
SET status = 'failed', finished_at = :now, error = :reason
WHERE status = 'running' OR (status = 'pending' AND trigger = 'schedule');

-- name: claim_run
UPDATE runs SET status = 'running', started_at = :now WHERE id = :id AND status = 'pending';

-- name: migration_2
-- Definitions written by the controller, progress by the daemon. Structured fields are JSON
-- text (orjson); timestamps are the fixed-width UTC text of `_ts`, so text order is time order.
CREATE TABLE targets (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    url TEXT NOT NULL,
    method TEXT NOT NULL,
    headers TEXT NOT NULL,            -- JSON object; `${env:NAME}` references kept unresolved
    body_template TEXT,
    timeout_seconds REAL NOT NULL,
    expected_status TEXT NOT NULL,    -- JSON array of status codes; empty: any 2xx
    assertions TEXT NOT NULL,         -- JSON array of {type, value, path?}
    follow_redirects INTEGER NOT NULL,
    verify_tls INTEGER NOT NULL,
    retry TEXT NOT NULL,              -- JSON object of RetryPolicy
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- Deleting a target that schedules use is refused or cascaded by the store, in code; the
-- foreign key (no ON DELETE action) is the backstop that keeps a schedule from dangling.
CREATE TABLE schedules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    schedule_type TEXT NOT NULL,
    target_id TEXT REFERENCES targets (id),
    pipeline TEXT,
    interval_seconds REAL,
    cron_expression TEXT,
    run_at TEXT,
    timezone TEXT NOT NULL,
    jitter_seconds REAL NOT NULL,
    start_at TEXT,
    end_at TEXT,
    duration_seconds REAL,
    max_runs INTEGER,
    misfire_policy TEXT NOT NULL,
    misfire_grace_seconds REAL NOT NULL,
    catch_up_max INTEGER NOT NULL,
    overlap_policy TEXT NOT NULL,
    failure_policy TEXT NOT NULL,
    failure_threshold INTEGER NOT NULL,
    cooldown_seconds REAL NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    run_count INTEGER NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    circuit_open_until TEXT,
    last_run_at TEXT,
    next_run_at TEXT,
    revision INTEGER NOT NULL,        -- meta.revision of the last definition or status write
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX schedules_status ON schedules (status);
CREATE INDEX schedules_target ON schedules (target_id);
CREATE INDEX schedules_revision ON schedules (revision);
-- One row per deleted schedule, so a daemon that knows revision R learns what went away
-- after R. Kept forever: an id and an integer each, and pruning them safely would need to
-- know the oldest revision any daemon still holds.
CREATE TABLE schedule_tombstones (
    id TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE INDEX schedule_tombstones_revision ON schedule_tombstones (revision);
-- The store-wide revision counter: every schedule write takes the next value in its own
-- transaction, and writers are serialized, so revisions commit in order.
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO meta (id, revision) VALUES (1, 0);
-- Newest-first listing of all runs walks this index instead of sorting the table.
CREATE INDEX runs_created ON runs (created_at, id);

-- name: bump_revision
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

-- name: get_target_by_name
SELECT * FROM targets WHERE name = :name;

-- name: list_targets
SELECT * FROM targets ORDER BY name LIMIT :limit OFFSET :offset;

-- name: delete_target
DELETE FROM targets WHERE id = :id;

-- name: target_schedule_ids
SELECT id FROM schedules WHERE target_id = :target_id ORDER BY name;

-- name: touch_target_schedules
-- A target edit changes what its schedules do: the daemon finds out through their revision.
UPDATE schedules SET revision = (SELECT revision FROM meta WHERE id = 1)
WHERE target_id = :target_id;

-- name: bury_target_schedules
INSERT OR REPLACE INTO schedule_tombstones (id, revision)
SELECT id, (SELECT revision FROM meta WHERE id = 1) FROM schedules WHERE target_id = :target_id;

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
-- The definition only: status has its own verb, and progress belongs to the daemon.
UPDATE schedules
SET name = :name, schedule_type = :schedule_type, target_id = :target_id,
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
WHERE (:status IS NULL OR status = :status)
  AND (:target_id IS NULL OR target_id = :target_id)
ORDER BY name
LIMIT :limit OFFSET :offset;

-- name: schedule_ids_with_prefix
SELECT id FROM schedules WHERE substr(id, 1, length(:prefix)) = :prefix ORDER BY id;

-- name: bury_schedule
INSERT OR REPLACE INTO schedule_tombstones (id, revision)
SELECT id, (SELECT revision FROM meta WHERE id = 1) FROM schedules WHERE id = :id;

-- name: unbury_schedule
-- An id that comes back is a change, not a deletion.
DELETE FROM schedule_tombstones WHERE id = :id;

-- name: delete_schedule
DELETE FROM schedules WHERE id = :id;

-- name: set_schedule_status
-- Resuming starts the failure count and the circuit afresh and drops the old reason.
UPDATE schedules
SET status = :status,
    status_reason = CASE WHEN :status = 'active' THEN NULL ELSE :reason END,
    consecutive_failures = CASE WHEN :status = 'active' THEN 0 ELSE consecutive_failures END,
    circuit_open_until = CASE WHEN :status = 'active' THEN NULL ELSE circuit_open_until END,
    updated_at = :now,
    revision = (SELECT revision FROM meta WHERE id = 1)
WHERE id = :id
RETURNING *;

-- name: record_progress
-- The engine's own fields; no revision, so the daemon's writes never wake the daemon.
UPDATE schedules
SET run_count = :run_count,
    consecutive_failures = :consecutive_failures,
    last_run_at = :last_run_at,
    next_run_at = :next_run_at,
    circuit_open_until = :circuit_open_until,
    -- The engine only ever ends an active schedule (completed, disabled); a pause or a
    -- resume the API wrote meanwhile wins over its older view.
    status = CASE WHEN :status IS NOT NULL AND status = 'active' THEN :status ELSE status END,
    status_reason = CASE
        WHEN :status IS NOT NULL AND status = 'active' THEN :status_reason
        ELSE status_reason
    END
WHERE id = :schedule_id;

-- name: changed_schedules
SELECT * FROM schedules WHERE revision > :since ORDER BY revision, id;

-- name: all_schedules
SELECT * FROM schedules;

-- name: deleted_schedules
SELECT id FROM schedule_tombstones WHERE revision > :since ORDER BY revision, id;

-- name: list_runs_of_job
-- list_runs with the job fixed (also how runs of a target are found), so that the
-- (job, created_at) index applies; an optional `:job IS NULL OR` term would defeat it.
SELECT * FROM runs
WHERE job = :job
  AND (:schedule_id IS NULL OR schedule_id = :schedule_id)
  AND (:status IS NULL OR status = :status)
  AND (:since IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: list_runs_of_schedule
-- list_runs with the schedule fixed, for the same reason: the runs_slot index applies.
SELECT * FROM runs
WHERE schedule_id = :schedule_id
  AND (:status IS NULL OR status = :status)
  AND (:since IS NULL OR created_at >= :since)
ORDER BY created_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: purge_runs
-- Finished runs past the newest :keep of their schedule (runs without a schedule count per
-- job) or finished before :older_than; a NULL bound deletes nothing by itself. The window
-- walks the runs_slot index; deleting by rowid avoids a second lookup per run. Step results
-- go with their runs (ON DELETE CASCADE).
DELETE FROM runs WHERE rowid IN (
    SELECT rowid FROM (
        SELECT rowid, COALESCE(finished_at, created_at) AS done_at,
               ROW_NUMBER() OVER (PARTITION BY schedule_id ORDER BY scheduled_for DESC)
                   AS newest
        FROM runs
        WHERE schedule_id IS NOT NULL AND status NOT IN ('pending', 'running')
        UNION ALL
        SELECT rowid, COALESCE(finished_at, created_at),
               ROW_NUMBER() OVER (PARTITION BY job ORDER BY scheduled_for DESC, id DESC)
        FROM runs
        WHERE schedule_id IS NULL AND status NOT IN ('pending', 'running'))
    WHERE newest > :keep OR done_at < :older_than);
