"""Running pipelines: command steps in process groups, HTTP steps, every attempt reported.

Each command step runs in its own session (so its own process group, led by the step's
process). Whatever way a step ends - exit, timeout, cancellation - the whole group is
stopped the same way: SIGTERM, `kill_grace` seconds, SIGKILL. So a background process a
step leaves behind (`sleep 1000 &`) never outlives it, and never holds the output pipe open.

Conventions a caller relies on:

- `exit_code` is the process's exit status when it exited, None when a signal killed it;
  `signal` is then the signal's number (asyncio's negative return codes are not exposed).
- The environment of a step is the daemon's own, then `CRONMGR_RUN_ID`,
  `CRONMGR_PIPELINE`, `CRONMGR_STEP`, `CRONMGR_SCHEDULED_FOR`, `CRONMGR_WORK_DIR`, then
  the run's extra variables, then the step's `env`: later layers win.
- An output line is logged as one `step_output` event; lines longer than `MAX_LINE_CHARS`
  characters are cut and end with `LINE_CUT_MARKER`; undecodable bytes become U+FFFD.
- Every attempt of every step goes to `on_step_finished(position, result)`, `position`
  being the step's index in the file (also when steps run in parallel) and
  `result.attempt` counting from 1. A step's outcome is its last attempt's.
- A failed command attempt is retried, timeouts included (a step that hung once may well
  pass the next time, and `retries = 0` says otherwise); a command that cannot even start
  (missing program or working directory) is not, as the next attempt would fail the same.
- A run's work directory is `<work_root>/<run_id>/` and outlives the run: retention
  removes it with `purge_work_dirs`. Without a `work_root` the run gets a temporary
  directory that is removed when it ends, as nothing else would know to remove it.
"""
