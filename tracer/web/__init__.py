"""The investigator web view: one static page (graph, exposure, exports) served by the API process.

The page is plain files: `static/` (HTML, JS, CSS written here) and `vendor/` (built libraries
from npm with their licences). `tracer.web.server.add_routes(app)` mounts them on `/ui`; the page
talks to the same origin's `/v1` API with the user's API key.
"""
