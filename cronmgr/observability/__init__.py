"""What cronmgr tells about itself: the structured JSON log and its
follower, engine metrics and their Prometheus exposition, the nodes of the store as
shown, incidents, and webhook notifications.

It may import `cronmgr.store` and `cronmgr.core`.
"""
