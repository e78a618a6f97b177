"""HTTP targets: the runner that renders a request, sends it with retries and
checks the answer, and the lean HTTP/1.1 client (`wire`) it sends with.

Part of `cronmgr.runners`, under the same rules.
"""
