"""The aiohttp server: the app factory, its keys, responses and middlewares,
token auth and lockout, daemon control through the PID file and psutil, the REST resources
(`api`), the OpenAPI document and the dashboard.

It may import `cronmgr.observability`, `cronmgr.store` and `cronmgr.core`; never the engine
nor the runners: it starts the daemon as a process and reads what it recorded.
"""
