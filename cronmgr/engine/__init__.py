"""The daemon: the process `python -m cronmgr daemon` starts. It owns the
scheduler and its wake-ups, misfire and overlap policies, the jobs that turn a slot into a
run, manual runs, concurrency limits, ended orphans and the PID file it holds.

It may import `cronmgr.runners`, `cronmgr.observability`, `cronmgr.store` and
`cronmgr.core`; never the controller, which it meets only through the store, the PID file
and the launch handshake (`cronmgr.core.launch`).
"""
