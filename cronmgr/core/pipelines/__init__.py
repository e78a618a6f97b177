"""Pipeline definitions: `pipelines/*.toml` files, validated and turned into frozen records.

A file holds a name, a description, an optional `[schedule]` and its steps: commands,
shell strings, inline HTTP requests or references to targets defined through the API.
Files on disk are the only source of commands: nothing here accepts a step from anywhere
else, so the API can start a pipeline but never define what it executes.

The schema, with examples, is documented in `pipelines/README.md`. Field rules are the
API's own where the API has the field (`TargetSpec` for an inline request, `ScheduleSpec`
for the schedule), so a file and a request body can never disagree on what is valid.

`steps` holds a step and its kinds, `pipeline` a pipeline, its schedule and the set loaded
from one directory, `loading` the reading of the files, `schema` the file's shape checked
by pydantic (with the tables the API's models check), and `messages` pydantic's errors in
the file's words.
"""
