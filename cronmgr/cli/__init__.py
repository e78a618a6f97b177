"""The `cronmgr` command: serve the controller, run the daemon, talk to a running controller.

Exit codes: 0 success, 1 the API or the operation failed (the error's detail goes to
stderr), 2 bad usage or configuration, 3 the controller cannot be reached, 130 Ctrl-C
(except for `logs -f`, which Ctrl-C is meant to end: 0).
"""

from cronmgr.cli.entry import main

__all__ = ["main"]
