"""The REST resources, one module a resource, each with its handlers and its
`ENDPOINTS` table: `daemon` (`/api/cron/*`), `logs`, `meta` (health, the document) and
the `/api/v1` resources `targets`, `schedules`, `runs`, `pipelines`, `notifications`,
`metrics`, `incidents` and `nodes`, whose handlers share `common`.

Part of `cronmgr.controller`, under the same rules; the app factory routes the tables.
"""
