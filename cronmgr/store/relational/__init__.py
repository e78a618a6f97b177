"""The store's operations written once for every SQL backend, and the rows they map.

`definitions`, `runs`, `stats` and `nodes` hold the store's verbs over named queries;
`connection` is what they ask of a backend (transactions, snapshots, statements, progress
writes, its constraint errors); `columns` and `rows` turn models into query parameters and rows back
into models; `writes` lists the kinds of run write the batcher queues. SQLite and
PostgreSQL each run these over their own connection, with their own SQL file holding the
same named queries. It may import `cronmgr.core` and the store's own modules only.
"""
