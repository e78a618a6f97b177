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
UPDATE runs
SET status = 'failed', finished_at = :now, error = :reason
WHERE status IN ('pending', 'running');
