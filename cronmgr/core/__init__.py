"""The vocabulary every other part speaks, and nothing else: the data model, triggers,
retry policies, secret references, the bounds and the field rules shared by the API and the
files (specs), pipeline definitions, settings, the launch handshake and the PID file.

It may import only the standard library and third-party packages, never another cronmgr
subpackage, so that anything can build on it.
"""
