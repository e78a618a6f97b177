"""The API description: an OpenAPI 3.1 document built from the route table and the models.

Every route of the API is an `Endpoint` (method, path, handler, summary, query and body
models, reply). `app.add_routes` registers the same table, so nothing of the API is routed
that is not described. The dashboard's pages under `/ui` (HTML forms that answer with
redirects, see `dashboard`) are not part of the API and not in the document. Request
bodies and query parameters are the pydantic models that validate them
(`model_json_schema`, with their definitions hoisted into `components/schemas`); resource
replies are derived from those models plus the read-only fields of the domain records, so
a new field shows up in the document by itself.

`docs_context` turns the document into plain rows for `templates/docs.html`, which renders
it on the server: the page needs no script and no network.

The modules: `endpoints` (`Endpoint`, `Reply`, `ref`, `array_of`), `shapes` (the
hand-written schemas), `components` (the schemas derived from the models), `document`
(`build_document`) and `page` (`docs_context`). Part of `cronmgr.controller`, under the
same rules.
"""

from cronmgr.controller.openapi.document import build_document, operations
from cronmgr.controller.openapi.endpoints import Endpoint, Reply, Schema, array_of, ref
from cronmgr.controller.openapi.page import docs_context

__all__ = [
    "Endpoint",
    "Reply",
    "Schema",
    "array_of",
    "build_document",
    "docs_context",
    "operations",
    "ref",
]
