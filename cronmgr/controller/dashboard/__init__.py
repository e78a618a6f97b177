"""The web dashboard: pages under `/ui`, rendered from `templates/` by aiohttp-jinja2.

Each page reads the store and the daemon's status in-process, never over HTTP to the
controller itself, and is complete without JavaScript: every change is a form that POSTs
and is answered with a redirect back to a page (Post/Redirect/Get), which shows what came
of it. The one small script served beside the stylesheet only refreshes the live parts of
a page and follows the log over server-sent events.

Security, in one place:

- every page but the login form needs a session (`cronmgr.controller.sessions`): the API token,
  typed once into the login form, buys a cookie that is HttpOnly, SameSite=Strict and
  confined to `/ui`; the bearer-token API is untouched by it;
- every state-changing request carries the session's CSRF token (a form field, or the
  `X-CSRF-Token` header) and is refused with 403 without it; the login form carries one
  too (a double-submit cookie, as there is no session yet);
- templates autoescape everything, target headers and URLs are shown redacted, and the
  token is never put into a page;
- every answer forbids framing and any script or style that the controller does not serve
  itself (Content-Security-Policy), and pages are not cached.

The modules: `routes` (the route table and `add_dashboard`), `guards` (sessions, CSRF and
the security headers), `common` (rendering, redirects, flash messages, form actions and
paging), `auth` (login and logout), `names` (how pages name jobs and schedules), the pages
`overview`, `controls`, `schedules` (with `sparklines`), `runs`, `pipelines`, `targets`,
`target_page` (with `charts`: a target's response times, availability and "send now"),
`incidents`, `nodes` and `logs`; the create, edit and delete forms `target_forms` and
`schedule_forms` (with `forms`, what they share: they go through the API's own paths and
models); and `format`, the formatting helpers the templates use.

Part of `cronmgr.controller`, under the same rules.
"""
