"""What runs one step of a run: a pipeline's command steps in their own process
groups, with their output and reports, and HTTP targets through the lean wire client.

It may import `cronmgr.observability` and `cronmgr.core`; it does not know how it was
scheduled, nor where its results are stored.
"""
