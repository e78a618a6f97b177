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
-- node_id: migration 6.
INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, started_at,
                  finished_at, error, created_at, node_id)
VALUES (:id, :job, :schedule_id, :scheduled_for, :trigger, :status, :started_at,
        :finished_at, :error, :created_at, :node_id)
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
-- A pending manual run has not started yet: the next daemon picks it up instead. A slot
-- claimed ahead (pending, never started) may or may not have been sent: its own reason.
UPDATE runs
SET status = 'failed', finished_at = :now,
    error = CASE WHEN status = 'pending' AND started_at IS NULL THEN :claimed_reason
                 ELSE :reason END
WHERE status = 'running' OR (status = 'pending' AND trigger = 'schedule');

-- name: recount_runs
-- The engine writes run_count with last_run_at (the latest slot it counted) every 0.2 s,
-- after the runs' own ends: a daemon killed in between recorded runs its schedules do not
-- count yet, and the next one could run a max_runs schedule once too often. So, after
-- fail_orphaned_runs (whose runs count as failed), each schedule with max_runs adds the
-- runs of its own firing after its last_run_at: succeeded and failed ones, not skipped,
-- not manual, none of an earlier schedule of the same id. Runs that overlapped (overlap
-- allow, catch-up) can end out of order, so an uncounted one may lie before last_run_at:
-- the count is also never less than all such runs the store holds (fewer once retention
-- purged some, when the sum is the better bound). Moving last_run_at along makes a second
-- recount change nothing; the runs_slot index keeps it to each schedule's own runs.
UPDATE schedules
SET run_count = max(schedules.run_count + counted.after, counted.total),
    last_run_at = max(COALESCE(schedules.last_run_at, ''), counted.latest)
FROM (SELECT s.id,
             count(*) FILTER (WHERE r.scheduled_for > COALESCE(s.last_run_at, '')) AS after,
             count(*) AS total, max(r.scheduled_for) AS latest
      -- Schedules first (CROSS JOIN keeps the order), then each one's slots by runs_slot;
      -- `+` keeps runs_status (every finished run) out of it.
      FROM schedules AS s CROSS JOIN runs AS r
      WHERE s.max_runs IS NOT NULL AND r.schedule_id = s.id
        AND r.trigger = 'schedule' AND +r.status IN ('succeeded', 'failed')
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
-- claimed, so the next plan (or the next daemon's misfire policy) decides about it anew.
DELETE FROM runs WHERE id = :id AND status = 'pending' AND started_at IS NULL;

-- name: list_requested_runs
-- Pending runs someone asked for (manual, API), newest first: not the slots claimed ahead.
SELECT * FROM runs
WHERE status = 'pending' AND trigger <> 'schedule'
ORDER BY created_at DESC, id DESC
LIMIT :limit;

-- name: claim_run
-- The node that claims a requested run runs it (node_id: migration 6); none keeps the old.
UPDATE runs SET status = 'running', started_at = :now, node_id = COALESCE(:node_id, node_id)
WHERE id = :id AND status = 'pending';

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

-- name: get_targets
-- Many targets at once, their ids as a JSON array.
SELECT * FROM targets WHERE id IN (SELECT value FROM json_each(:ids));

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
-- The definition only: status has its own verb, and progress belongs to the daemon; but an
-- edit that passed validation ends an `error` status, which only a bad definition causes.
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
-- The failure count and the circuit are the API's too (a resume resets them): written
-- only when the engine saw the schedule's current revision.
UPDATE schedules
SET run_count = :run_count,
    consecutive_failures = CASE
        WHEN :revision IS NULL OR revision = :revision THEN :consecutive_failures
        ELSE consecutive_failures
    END,
    last_run_at = :last_run_at,
    next_run_at = :next_run_at,
    circuit_open_until = CASE
        WHEN :revision IS NULL OR revision = :revision THEN :circuit_open_until
        ELSE circuit_open_until
    END,
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

-- name: count_job_runs_since
-- A job's runs since a moment by status (a target page's availability); the (job,
-- created_at) index applies.
SELECT status, COUNT(*) AS runs FROM runs
WHERE job = :job AND created_at >= :since
GROUP BY status;

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

-- name: migration_3
-- Run metrics, kept up to date by triggers in the transaction that finishes each run, so
-- reading them never scans the runs, and purging runs never changes them (counters only
-- grow). Per job (`target:<id>`, `pipeline:<name>`) and schedule ('' for runs without one)
-- and per UTC hour the run finished in ('YYYY-MM-DDTHH'). A run adds to its hour's row
-- only; complete hours are folded, once, into the lifetime row of the hour '', and old hour
-- rows are dropped later (fold_run_stats, drop_run_stats): lifetime totals are that row
-- plus the hours not folded yet.
CREATE TABLE run_stats (
    hour TEXT NOT NULL,
    job TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    succeeded INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    cancelled INTEGER NOT NULL,
    skipped INTEGER NOT NULL,
    timed INTEGER NOT NULL,           -- runs with a duration: all but skipped ones
    duration_sum REAL NOT NULL,       -- seconds
    -- A cumulative duration histogram, as Prometheus has it: bNN counts the timed runs that
    -- took at most the NNth of store.records.DURATION_BOUNDS seconds (`timed` is +Inf):
    -- b01 <= 0.005, b02 <= 0.01, b03 <= 0.025, b04 <= 0.05, b05 <= 0.1, b06 <= 0.25,
    -- b07 <= 0.5, b08 <= 1, b09 <= 2.5, b10 <= 5, b11 <= 10, b12 <= 30, b13 <= 60,
    -- b14 <= 120, b15 <= 300.
    b01 INTEGER NOT NULL,
    b02 INTEGER NOT NULL,
    b03 INTEGER NOT NULL,
    b04 INTEGER NOT NULL,
    b05 INTEGER NOT NULL,
    b06 INTEGER NOT NULL,
    b07 INTEGER NOT NULL,
    b08 INTEGER NOT NULL,
    b09 INTEGER NOT NULL,
    b10 INTEGER NOT NULL,
    b11 INTEGER NOT NULL,
    b12 INTEGER NOT NULL,
    b13 INTEGER NOT NULL,
    b14 INTEGER NOT NULL,
    b15 INTEGER NOT NULL,
    -- Hour first: a window is one range of the key, the lifetime rows another.
    PRIMARY KEY (hour, job, schedule_id)
) WITHOUT ROWID;
-- Hours before folded_before are in the lifetime rows already.
CREATE TABLE run_stats_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    folded_before TEXT NOT NULL
);
INSERT INTO run_stats_meta (id, folded_before) VALUES (1, '');
-- Failed runs by error class: the error_type of the first step whose last attempt failed
-- (the step the run's error names), 'unknown' when no step says.
CREATE TABLE run_error_stats (
    hour TEXT NOT NULL,
    job TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    error_class TEXT NOT NULL,
    failed INTEGER NOT NULL,
    PRIMARY KEY (hour, job, schedule_id, error_class)
) WITHOUT ROWID;
-- The last run that executed (skipped slots do not count) per job and schedule, and per job
-- as a whole under the schedule_id '*', with the failed runs in a row up to it (a
-- cancelled run neither adds to them nor ends them).
CREATE TABLE run_latest (
    job TEXT NOT NULL,
    schedule_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    first_finished_at TEXT NOT NULL,
    consecutive_failures INTEGER NOT NULL,
    PRIMARY KEY (job, schedule_id)
) WITHOUT ROWID;
-- A run that ends: its hour's row, its error class, its latest rows. Plain statements on
-- NEW, each upserting one row: measured cheaper than one statement of two rows or a view
-- with an INSTEAD OF trigger. The one-row subquery with LIMIT computes the duration once
-- (without the LIMIT SQLite would inline it into every bucket column).
CREATE TRIGGER runs_finished AFTER UPDATE OF status ON runs
WHEN OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running')
BEGIN
    INSERT INTO run_stats (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                           timed, duration_sum,
                           b01, b02, b03, b04, b05, b06, b07, b08,
                           b09, b10, b11, b12, b13, b14, b15)
    SELECT substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13),
           NEW.job, COALESCE(NEW.schedule_id, ''),
           NEW.status = 'succeeded', NEW.status = 'failed', NEW.status = 'cancelled',
           NEW.status = 'skipped', d IS NOT NULL, COALESCE(d, 0),
           COALESCE(d <= 0.005, 0), COALESCE(d <= 0.01, 0), COALESCE(d <= 0.025, 0),
           COALESCE(d <= 0.05, 0), COALESCE(d <= 0.1, 0), COALESCE(d <= 0.25, 0),
           COALESCE(d <= 0.5, 0), COALESCE(d <= 1, 0), COALESCE(d <= 2.5, 0),
           COALESCE(d <= 5, 0), COALESCE(d <= 10, 0), COALESCE(d <= 30, 0),
           COALESCE(d <= 60, 0), COALESCE(d <= 120, 0), COALESCE(d <= 300, 0)
    FROM (SELECT (julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400.0 AS d
          LIMIT 1)
    WHERE true
    ON CONFLICT (hour, job, schedule_id) DO UPDATE SET
        succeeded = succeeded + excluded.succeeded,
        failed = failed + excluded.failed,
        cancelled = cancelled + excluded.cancelled,
        skipped = skipped + excluded.skipped,
        timed = timed + excluded.timed,
        duration_sum = duration_sum + excluded.duration_sum,
        b01 = b01 + excluded.b01, b02 = b02 + excluded.b02, b03 = b03 + excluded.b03,
        b04 = b04 + excluded.b04, b05 = b05 + excluded.b05, b06 = b06 + excluded.b06,
        b07 = b07 + excluded.b07, b08 = b08 + excluded.b08, b09 = b09 + excluded.b09,
        b10 = b10 + excluded.b10, b11 = b11 + excluded.b11, b12 = b12 + excluded.b12,
        b13 = b13 + excluded.b13, b14 = b14 + excluded.b14, b15 = b15 + excluded.b15;
    INSERT INTO run_error_stats (hour, job, schedule_id, error_class, failed)
    SELECT substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13),
           NEW.job, COALESCE(NEW.schedule_id, ''), COALESCE(c, 'unknown'), 1
    FROM (SELECT (SELECT error_type FROM step_results AS s
                   WHERE run_id = NEW.id AND status = 'failed' AND error_type IS NOT NULL
                     AND attempt = (SELECT MAX(attempt) FROM step_results
                                    WHERE run_id = s.run_id AND position = s.position)
                   ORDER BY position LIMIT 1) AS c
          LIMIT 1)
    WHERE NEW.status = 'failed'
    ON CONFLICT (hour, job, schedule_id, error_class) DO UPDATE SET failed = failed + 1;
    INSERT INTO run_latest (job, schedule_id, run_id, status, finished_at, first_finished_at,
                            consecutive_failures)
    SELECT NEW.job, COALESCE(NEW.schedule_id, ''), NEW.id, NEW.status,
           COALESCE(NEW.finished_at, NEW.created_at), COALESCE(NEW.finished_at, NEW.created_at),
           NEW.status = 'failed'
    WHERE NEW.status <> 'skipped'
    ON CONFLICT (job, schedule_id) DO UPDATE SET
        run_id = excluded.run_id,
        status = excluded.status,
        finished_at = excluded.finished_at,
        consecutive_failures = CASE excluded.status
            WHEN 'succeeded' THEN 0
            WHEN 'failed' THEN consecutive_failures + 1
            ELSE consecutive_failures
        END;
    INSERT INTO run_latest (job, schedule_id, run_id, status, finished_at, first_finished_at,
                            consecutive_failures)
    SELECT NEW.job, '*', NEW.id, NEW.status,
           COALESCE(NEW.finished_at, NEW.created_at), COALESCE(NEW.finished_at, NEW.created_at),
           NEW.status = 'failed'
    WHERE NEW.status <> 'skipped'
    ON CONFLICT (job, schedule_id) DO UPDATE SET
        run_id = excluded.run_id,
        status = excluded.status,
        finished_at = excluded.finished_at,
        consecutive_failures = CASE excluded.status
            WHEN 'succeeded' THEN 0
            WHEN 'failed' THEN consecutive_failures + 1
            ELSE consecutive_failures
        END;
END;
-- A slot recorded skipped is inserted finished (the only run that is): one more skipped.
CREATE TRIGGER runs_skipped AFTER INSERT ON runs WHEN NEW.status = 'skipped'
BEGIN
    INSERT INTO run_stats (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                           timed, duration_sum,
                           b01, b02, b03, b04, b05, b06, b07, b08,
                           b09, b10, b11, b12, b13, b14, b15)
    VALUES (substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13),
            NEW.job, COALESCE(NEW.schedule_id, ''),
            0, 0, 0, 1, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    ON CONFLICT (hour, job, schedule_id) DO UPDATE SET skipped = skipped + 1;
END;
-- The runs finished before this version count too.
INSERT INTO run_stats (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                       timed, duration_sum,
                       b01, b02, b03, b04, b05, b06, b07, b08,
                       b09, b10, b11, b12, b13, b14, b15)
SELECT hour, job, schedule_id, SUM(status = 'succeeded'), SUM(status = 'failed'),
       SUM(status = 'cancelled'), SUM(status = 'skipped'), SUM(d IS NOT NULL),
       COALESCE(SUM(d), 0),
       SUM(COALESCE(d <= 0.005, 0)), SUM(COALESCE(d <= 0.01, 0)), SUM(COALESCE(d <= 0.025, 0)),
       SUM(COALESCE(d <= 0.05, 0)), SUM(COALESCE(d <= 0.1, 0)), SUM(COALESCE(d <= 0.25, 0)),
       SUM(COALESCE(d <= 0.5, 0)), SUM(COALESCE(d <= 1, 0)), SUM(COALESCE(d <= 2.5, 0)),
       SUM(COALESCE(d <= 5, 0)), SUM(COALESCE(d <= 10, 0)), SUM(COALESCE(d <= 30, 0)),
       SUM(COALESCE(d <= 60, 0)), SUM(COALESCE(d <= 120, 0)), SUM(COALESCE(d <= 300, 0))
FROM (SELECT substr(COALESCE(finished_at, created_at), 1, 13) AS hour, job,
             COALESCE(schedule_id, '') AS schedule_id, status,
             CASE WHEN status <> 'skipped'
                  THEN (julianday(finished_at) - julianday(started_at)) * 86400.0 END AS d
      FROM runs
      WHERE status NOT IN ('pending', 'running'))
GROUP BY hour, job, schedule_id;
INSERT INTO run_error_stats (hour, job, schedule_id, error_class, failed)
SELECT hour, job, schedule_id, error_class, COUNT(*)
FROM (SELECT substr(COALESCE(finished_at, created_at), 1, 13) AS hour, job,
             COALESCE(schedule_id, '') AS schedule_id,
             COALESCE((SELECT error_type FROM step_results AS s
                       WHERE run_id = runs.id AND status = 'failed' AND error_type IS NOT NULL
                         AND attempt = (SELECT MAX(attempt) FROM step_results
                                        WHERE run_id = s.run_id AND position = s.position)
                       ORDER BY position LIMIT 1), 'unknown') AS error_class
      FROM runs
      WHERE status = 'failed')
GROUP BY hour, job, schedule_id, error_class;
-- Per job and schedule (and per job, '*'): the newest executed run, the first one's time,
-- and the failed runs newer than the newest success.
INSERT INTO run_latest (job, schedule_id, run_id, status, finished_at, first_finished_at,
                        consecutive_failures)
SELECT job, key, id, status, done, first_done, failures
FROM (SELECT job, key, id, status, done,
             MIN(done) OVER whole AS first_done,
             SUM(status = 'failed' AND successes_since = 0) OVER whole AS failures,
             ROW_NUMBER() OVER (PARTITION BY job, key ORDER BY done DESC, id DESC) AS newest
      FROM (SELECT job, key, id, status, done,
                   SUM(status = 'succeeded') OVER (
                       PARTITION BY job, key ORDER BY done DESC, id DESC
                       ROWS UNBOUNDED PRECEDING) AS successes_since
            FROM (SELECT job, COALESCE(schedule_id, '') AS key, id, status,
                         COALESCE(finished_at, created_at) AS done
                  FROM runs
                  WHERE status NOT IN ('pending', 'running', 'skipped')
                  UNION ALL
                  SELECT job, '*', id, status, COALESCE(finished_at, created_at)
                  FROM runs
                  WHERE status NOT IN ('pending', 'running', 'skipped')))
      WINDOW whole AS (PARTITION BY job, key))
WHERE newest = 1;
-- Downtime windows of a job: opened after incident_threshold failed runs in a row, resolved
-- by the next success. started_at is when the first failed run of the streak started.
CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    started_at TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    resolved_at TEXT,
    failed_runs INTEGER NOT NULL,
    error_class TEXT,
    cause TEXT,
    first_failed_run_id TEXT,
    last_failed_run_id TEXT,
    resolved_by_run_id TEXT
);
-- At most one open incident per job, whichever daemon (or restart of one) opens it.
CREATE UNIQUE INDEX incidents_open_job ON incidents (job) WHERE resolved_at IS NULL;
CREATE INDEX incidents_started ON incidents (started_at, id);
CREATE INDEX incidents_job_started ON incidents (job, started_at);

-- name: migration_4
-- Durations to the microsecond. julianday() keeps milliseconds only, so a 5.06 ms run
-- could count as 4.99 ms, in the bucket below its own. Timestamps are `_ts` text, fixed
-- width with six fraction digits: whole seconds (through julianday, rounded) plus the
-- difference of the fractions. Hours counted before keep their millisecond durations.
DROP TRIGGER runs_finished;
CREATE TRIGGER runs_finished AFTER UPDATE OF status ON runs
WHEN OLD.status IN ('pending', 'running') AND NEW.status NOT IN ('pending', 'running')
BEGIN
    INSERT INTO run_stats (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                           timed, duration_sum,
                           b01, b02, b03, b04, b05, b06, b07, b08,
                           b09, b10, b11, b12, b13, b14, b15)
    SELECT substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13),
           NEW.job, COALESCE(NEW.schedule_id, ''),
           NEW.status = 'succeeded', NEW.status = 'failed', NEW.status = 'cancelled',
           NEW.status = 'skipped', d IS NOT NULL, COALESCE(d, 0),
           COALESCE(d <= 0.005, 0), COALESCE(d <= 0.01, 0), COALESCE(d <= 0.025, 0),
           COALESCE(d <= 0.05, 0), COALESCE(d <= 0.1, 0), COALESCE(d <= 0.25, 0),
           COALESCE(d <= 0.5, 0), COALESCE(d <= 1, 0), COALESCE(d <= 2.5, 0),
           COALESCE(d <= 5, 0), COALESCE(d <= 10, 0), COALESCE(d <= 30, 0),
           COALESCE(d <= 60, 0), COALESCE(d <= 120, 0), COALESCE(d <= 300, 0)
    FROM (SELECT ROUND((julianday(substr(NEW.finished_at, 1, 19))
                        - julianday(substr(NEW.started_at, 1, 19))) * 86400)
                 + (substr(NEW.finished_at, 21, 6) - substr(NEW.started_at, 21, 6)) / 1e6 AS d
          LIMIT 1)
    WHERE true
    ON CONFLICT (hour, job, schedule_id) DO UPDATE SET
        succeeded = succeeded + excluded.succeeded,
        failed = failed + excluded.failed,
        cancelled = cancelled + excluded.cancelled,
        skipped = skipped + excluded.skipped,
        timed = timed + excluded.timed,
        duration_sum = duration_sum + excluded.duration_sum,
        b01 = b01 + excluded.b01, b02 = b02 + excluded.b02, b03 = b03 + excluded.b03,
        b04 = b04 + excluded.b04, b05 = b05 + excluded.b05, b06 = b06 + excluded.b06,
        b07 = b07 + excluded.b07, b08 = b08 + excluded.b08, b09 = b09 + excluded.b09,
        b10 = b10 + excluded.b10, b11 = b11 + excluded.b11, b12 = b12 + excluded.b12,
        b13 = b13 + excluded.b13, b14 = b14 + excluded.b14, b15 = b15 + excluded.b15;
    INSERT INTO run_error_stats (hour, job, schedule_id, error_class, failed)
    SELECT substr(COALESCE(NEW.finished_at, NEW.created_at), 1, 13),
           NEW.job, COALESCE(NEW.schedule_id, ''), COALESCE(c, 'unknown'), 1
    FROM (SELECT (SELECT error_type FROM step_results AS s
                   WHERE run_id = NEW.id AND status = 'failed' AND error_type IS NOT NULL
                     AND attempt = (SELECT MAX(attempt) FROM step_results
                                    WHERE run_id = s.run_id AND position = s.position)
                   ORDER BY position LIMIT 1) AS c
          LIMIT 1)
    WHERE NEW.status = 'failed'
    ON CONFLICT (hour, job, schedule_id, error_class) DO UPDATE SET failed = failed + 1;
    INSERT INTO run_latest (job, schedule_id, run_id, status, finished_at, first_finished_at,
                            consecutive_failures)
    SELECT NEW.job, COALESCE(NEW.schedule_id, ''), NEW.id, NEW.status,
           COALESCE(NEW.finished_at, NEW.created_at), COALESCE(NEW.finished_at, NEW.created_at),
           NEW.status = 'failed'
    WHERE NEW.status <> 'skipped'
    ON CONFLICT (job, schedule_id) DO UPDATE SET
        run_id = excluded.run_id,
        status = excluded.status,
        finished_at = excluded.finished_at,
        consecutive_failures = CASE excluded.status
            WHEN 'succeeded' THEN 0
            WHEN 'failed' THEN consecutive_failures + 1
            ELSE consecutive_failures
        END;
    INSERT INTO run_latest (job, schedule_id, run_id, status, finished_at, first_finished_at,
                            consecutive_failures)
    SELECT NEW.job, '*', NEW.id, NEW.status,
           COALESCE(NEW.finished_at, NEW.created_at), COALESCE(NEW.finished_at, NEW.created_at),
           NEW.status = 'failed'
    WHERE NEW.status <> 'skipped'
    ON CONFLICT (job, schedule_id) DO UPDATE SET
        run_id = excluded.run_id,
        status = excluded.status,
        finished_at = excluded.finished_at,
        consecutive_failures = CASE excluded.status
            WHEN 'succeeded' THEN 0
            WHEN 'failed' THEN consecutive_failures + 1
            ELSE consecutive_failures
        END;
END;

-- name: migration_5
-- The process group of each command step a run started (its leader's pid, which is the
-- group's id, and the leader's start time), so that a daemon started after a kill -9 can
-- end the groups the dead one left running, and never a group whose pid was recycled.
-- A run's groups go once it ends: only unfinished runs have any.
CREATE TABLE step_groups (
    run_id TEXT NOT NULL,
    pgid INTEGER NOT NULL,
    leader_created REAL,              -- the leader's create time (psutil); NULL if unread
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (run_id, pgid)
);
CREATE TRIGGER step_groups_run_ended AFTER UPDATE OF status ON runs
WHEN NEW.status NOT IN ('pending', 'running')
BEGIN
    DELETE FROM step_groups WHERE run_id = NEW.id;
END;

-- name: record_step_group
INSERT OR REPLACE INTO step_groups (run_id, pgid, leader_created, recorded_at)
VALUES (:run_id, :pgid, :leader_created, :recorded_at);

-- name: list_step_groups
SELECT g.run_id, g.pgid, g.leader_created FROM step_groups AS g JOIN runs AS r ON r.id = g.run_id
WHERE r.status IN ('pending', 'running')
ORDER BY g.recorded_at;

-- name: fold_run_stats
-- Add the hours from the last fold up to :before to the lifetime rows; then
-- advance_run_stats_fold, in the same transaction, so that no hour is added twice.
INSERT INTO run_stats (hour, job, schedule_id, succeeded, failed, cancelled, skipped,
                       timed, duration_sum,
                       b01, b02, b03, b04, b05, b06, b07, b08,
                       b09, b10, b11, b12, b13, b14, b15)
SELECT '', job, schedule_id, SUM(succeeded) AS succeeded, SUM(failed) AS failed,
       SUM(cancelled) AS cancelled, SUM(skipped) AS skipped, SUM(timed) AS timed,
       SUM(duration_sum) AS duration_sum,
       SUM(b01) AS b01, SUM(b02) AS b02, SUM(b03) AS b03, SUM(b04) AS b04, SUM(b05) AS b05,
       SUM(b06) AS b06, SUM(b07) AS b07, SUM(b08) AS b08, SUM(b09) AS b09, SUM(b10) AS b10,
       SUM(b11) AS b11, SUM(b12) AS b12, SUM(b13) AS b13, SUM(b14) AS b14, SUM(b15) AS b15
FROM run_stats
WHERE hour > '' AND hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
  AND hour < :before
GROUP BY job, schedule_id
ON CONFLICT (hour, job, schedule_id) DO UPDATE SET
    succeeded = succeeded + excluded.succeeded,
    failed = failed + excluded.failed,
    cancelled = cancelled + excluded.cancelled,
    skipped = skipped + excluded.skipped,
    timed = timed + excluded.timed,
    duration_sum = duration_sum + excluded.duration_sum,
    b01 = b01 + excluded.b01, b02 = b02 + excluded.b02, b03 = b03 + excluded.b03,
    b04 = b04 + excluded.b04, b05 = b05 + excluded.b05, b06 = b06 + excluded.b06,
    b07 = b07 + excluded.b07, b08 = b08 + excluded.b08, b09 = b09 + excluded.b09,
    b10 = b10 + excluded.b10, b11 = b11 + excluded.b11, b12 = b12 + excluded.b12,
    b13 = b13 + excluded.b13, b14 = b14 + excluded.b14, b15 = b15 + excluded.b15;

-- name: fold_run_error_stats
INSERT INTO run_error_stats (hour, job, schedule_id, error_class, failed)
SELECT '', job, schedule_id, error_class, SUM(failed)
FROM run_error_stats
WHERE hour > '' AND hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
  AND hour < :before
GROUP BY job, schedule_id, error_class
ON CONFLICT (hour, job, schedule_id, error_class) DO UPDATE SET
    failed = failed + excluded.failed;

-- name: advance_run_stats_fold
UPDATE run_stats_meta SET folded_before = :before WHERE id = 1 AND folded_before < :before;

-- name: drop_run_stats
-- Hour rows before :before that are folded already; the lifetime rows stay.
DELETE FROM run_stats
WHERE hour > '' AND hour < :before
  AND hour < (SELECT folded_before FROM run_stats_meta WHERE id = 1);

-- name: drop_run_error_stats
DELETE FROM run_error_stats
WHERE hour > '' AND hour < :before
  AND hour < (SELECT folded_before FROM run_stats_meta WHERE id = 1);

-- name: run_stats_since
SELECT job, schedule_id, SUM(succeeded) AS succeeded, SUM(failed) AS failed,
       SUM(cancelled) AS cancelled, SUM(skipped) AS skipped, SUM(timed) AS timed,
       SUM(duration_sum) AS duration_sum,
       SUM(b01) AS b01, SUM(b02) AS b02, SUM(b03) AS b03, SUM(b04) AS b04, SUM(b05) AS b05,
       SUM(b06) AS b06, SUM(b07) AS b07, SUM(b08) AS b08, SUM(b09) AS b09, SUM(b10) AS b10,
       SUM(b11) AS b11, SUM(b12) AS b12, SUM(b13) AS b13, SUM(b14) AS b14, SUM(b15) AS b15
FROM run_stats
WHERE hour >= :since
GROUP BY job, schedule_id;

-- name: run_stats_lifetime
-- The lifetime row plus the hours not folded into it yet.
SELECT job, schedule_id, SUM(succeeded) AS succeeded, SUM(failed) AS failed,
       SUM(cancelled) AS cancelled, SUM(skipped) AS skipped, SUM(timed) AS timed,
       SUM(duration_sum) AS duration_sum,
       SUM(b01) AS b01, SUM(b02) AS b02, SUM(b03) AS b03, SUM(b04) AS b04, SUM(b05) AS b05,
       SUM(b06) AS b06, SUM(b07) AS b07, SUM(b08) AS b08, SUM(b09) AS b09, SUM(b10) AS b10,
       SUM(b11) AS b11, SUM(b12) AS b12, SUM(b13) AS b13, SUM(b14) AS b14, SUM(b15) AS b15
FROM run_stats
WHERE hour = '' OR hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
GROUP BY job, schedule_id;

-- name: run_error_stats_since
SELECT job, schedule_id, error_class, SUM(failed) AS failed
FROM run_error_stats
WHERE hour >= :since
GROUP BY job, schedule_id, error_class;

-- name: run_error_stats_lifetime
SELECT job, schedule_id, error_class, SUM(failed) AS failed
FROM run_error_stats
WHERE hour = '' OR hour >= (SELECT folded_before FROM run_stats_meta WHERE id = 1)
GROUP BY job, schedule_id, error_class;

-- name: latest_runs
SELECT * FROM run_latest;

-- name: failing_jobs
-- A deleted target's streak is over: it will not run again.
SELECT * FROM run_latest
WHERE schedule_id = :whole AND consecutive_failures > 0
  AND (job NOT LIKE 'target:%' OR substr(job, 8) IN (SELECT id FROM targets));

-- name: resolve_incidents_of_job
-- A deleted target's open incident ends with it; no run resolved it.
UPDATE incidents SET resolved_at = :resolved_at WHERE job = :job AND resolved_at IS NULL;

-- name: count_schedules_by_status
SELECT status, COUNT(*) AS schedules FROM schedules GROUP BY status;

-- name: stats_names
-- Names by id, schedules' and targets' alike (both are time-ordered UUIDs, or a file
-- schedule's `pipeline.<name>`, so they never collide).
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
    failed_runs = MAX(failed_runs, :failed_runs)
WHERE id = :id AND resolved_at IS NULL
RETURNING *;

-- name: list_incidents
-- Newest first. :since keeps the incidents that were open at some moment at or after it.
SELECT * FROM incidents
WHERE (:status IS NULL OR (:status = 'open') = (resolved_at IS NULL))
  AND (:job IS NULL OR job = :job)
  AND (:since IS NULL OR resolved_at IS NULL OR resolved_at >= :since)
ORDER BY started_at DESC, id DESC
LIMIT :limit OFFSET :offset;

-- name: migration_6
-- Several daemons ("nodes") share one store. Each run records the node that ran or skipped
-- it, so that when a node is gone its runs can be failed and its claims freed by another.
-- No index on node_id: every run would pay for it, and the queries by node look at the
-- few pending and running runs only, through runs_status.
ALTER TABLE runs ADD COLUMN node_id TEXT;
-- One row per node, renewed by its heartbeat: it holds its lease until lease_expires_at
-- (the fixed-width UTC text of `_ts`, compared as text). A node that stops cleanly is
-- 'left', one whose lease ran out is declared 'lost' by another; rows that are neither
-- are pruned after a while. pipelines is a JSON object of name -> content hash.
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    version TEXT NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    lease_expires_at TEXT NOT NULL,
    state TEXT NOT NULL,              -- live, left or lost
    pipelines TEXT NOT NULL DEFAULT '{}',
    schedules_owned INTEGER NOT NULL DEFAULT 0,
    runs_in_flight INTEGER NOT NULL DEFAULT 0
);

-- name: join_node
-- The row of a node joining, or the row of its id replaced: a restarted daemon of the same
-- home keeps its id. Not while a live daemon on another host holds the id with an unexpired
-- lease: then no row comes back (on the same host the PID file keeps one daemon per home).
INSERT INTO nodes (id, host, pid, version, started_at, heartbeat_at, lease_expires_at,
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
WHERE nodes.state <> 'live' OR nodes.lease_expires_at <= excluded.heartbeat_at
   OR nodes.host = excluded.host
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
SELECT * FROM nodes WHERE state = 'live' AND lease_expires_at > :now ORDER BY id;

-- name: expire_nodes
-- Under the write lock: of several nodes expiring at once, one gets each id.
UPDATE nodes SET state = 'lost'
WHERE state = 'live' AND lease_expires_at <= :now
RETURNING id;

-- name: leave_node
-- A clean stop: the lease ends now, so that the others take over at once.
UPDATE nodes SET state = 'left', heartbeat_at = :now, lease_expires_at = :now WHERE id = :id;

-- name: list_nodes
SELECT * FROM nodes ORDER BY id;

-- name: prune_nodes
DELETE FROM nodes WHERE state <> 'live' AND heartbeat_at < :before;

-- name: fail_node_runs
-- The runs a gone node left: running ones, and the slots it claimed ahead that are due
-- already (they may or may not have been sent: their own reason). Its claims still to come
-- go instead (free_node_claims), for the node taking over the schedule to fire.
UPDATE runs
SET status = 'failed', finished_at = :now,
    error = CASE WHEN status = 'running' THEN :reason ELSE :claimed_reason END
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
-- node, and those of nodes that are no longer live with an unexpired lease; the runs of
-- the live ones are theirs.
UPDATE runs
SET status = 'failed', finished_at = :now,
    error = CASE WHEN status = 'pending' AND started_at IS NULL THEN :claimed_reason
                 ELSE :reason END
WHERE (status = 'running' OR (status = 'pending' AND trigger = 'schedule'))
  AND (node_id IS NULL OR node_id = :node_id
       OR NOT EXISTS (SELECT 1 FROM nodes AS n
                      WHERE n.id = runs.node_id AND n.state = 'live'
                        AND n.lease_expires_at > :now));

-- Bulk forms of the run and progress writes: `<name>_bulk` does what `<name>` does for
-- every object of the JSON array :rows, whose keys are `<name>`'s parameters, in one
-- statement. executemany takes the GIL back for every row it binds, and while the event
-- loop is busy each take waits out a switch interval: 500 rows cost 140 ms instead of
-- 3 ms. One statement over a JSON array runs in SQLite with the GIL let go throughout.

-- name: insert_run_bulk
INSERT INTO runs (id, job, schedule_id, scheduled_for, trigger, status, started_at,
                  finished_at, error, created_at, node_id)
SELECT json_extract(value, '$.id'), json_extract(value, '$.job'),
       json_extract(value, '$.schedule_id'), json_extract(value, '$.scheduled_for'),
       json_extract(value, '$.trigger'), json_extract(value, '$.status'),
       json_extract(value, '$.started_at'), json_extract(value, '$.finished_at'),
       json_extract(value, '$.error'), json_extract(value, '$.created_at'),
       json_extract(value, '$.node_id')
FROM json_each(:rows)
WHERE true
ON CONFLICT DO NOTHING;

-- name: update_run_bulk
UPDATE runs
SET status = w.status,
    started_at = COALESCE(w.started_at, runs.started_at),
    finished_at = COALESCE(w.finished_at, runs.finished_at),
    error = COALESCE(w.error, runs.error)
FROM (SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.status') AS status,
             json_extract(value, '$.started_at') AS started_at,
             json_extract(value, '$.finished_at') AS finished_at,
             json_extract(value, '$.error') AS error
      FROM json_each(:rows)) AS w
WHERE runs.id = w.id;

-- name: insert_step_result_bulk
INSERT OR REPLACE INTO step_results (run_id, position, step, attempt, status, started_at,
                                     duration_ms, exit_code, signal, status_code,
                                     response_size, error_type, error, output_tail)
SELECT json_extract(value, '$.run_id'), json_extract(value, '$.position'),
       json_extract(value, '$.step'), json_extract(value, '$.attempt'),
       json_extract(value, '$.status'), json_extract(value, '$.started_at'),
       json_extract(value, '$.duration_ms'), json_extract(value, '$.exit_code'),
       json_extract(value, '$.signal'), json_extract(value, '$.status_code'),
       json_extract(value, '$.response_size'), json_extract(value, '$.error_type'),
       json_extract(value, '$.error'), json_extract(value, '$.output_tail')
FROM json_each(:rows);

-- name: start_run_bulk
UPDATE runs SET status = 'running', started_at = w.started_at
FROM (SELECT json_extract(value, '$.id') AS id,
             json_extract(value, '$.started_at') AS started_at
      FROM json_each(:rows)) AS w
-- `+`: by id, not through the index of every pending run.
WHERE runs.id = w.id AND +runs.status = 'pending';

-- name: release_claim_bulk
DELETE FROM runs
WHERE id IN (SELECT json_extract(value, '$.id') FROM json_each(:rows))
  AND +status = 'pending' AND started_at IS NULL;

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
FROM (SELECT json_extract(value, '$.schedule_id') AS schedule_id,
             json_extract(value, '$.run_count') AS run_count,
             json_extract(value, '$.consecutive_failures') AS consecutive_failures,
             json_extract(value, '$.last_run_at') AS last_run_at,
             json_extract(value, '$.next_run_at') AS next_run_at,
             json_extract(value, '$.circuit_open_until') AS circuit_open_until,
             json_extract(value, '$.status') AS status,
             json_extract(value, '$.status_reason') AS status_reason,
             json_extract(value, '$.revision') AS revision
      FROM json_each(:rows)) AS p
WHERE schedules.id = p.schedule_id;
