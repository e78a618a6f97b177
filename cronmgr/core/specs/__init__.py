"""Request bodies and query strings, declared once: they validate and they document.

One model per resource definition. POST validates the body as the spec; PATCH applies the
body to the stored definition as a JSON merge patch and validates the merged whole again,
so a PATCH can never leave a definition that a POST would have refused.

`fields` holds the field types and their checks, `targets` and `schedules` the resource
specs, `queries` the query strings (and the body of a daemon start), `notifications` the
webhook test, `metrics` the metrics and incidents answers, and `validation` the helpers
that turn pydantic's errors into the API's.
"""
