"""The web dashboard: server-rendered pages and forms under `/ui`, with
their own login, session cookie and CSRF token, and the formatting helpers the templates use.

Part of `cronmgr.controller`, under the same rules.
"""
