"""The web console at ``/ui`` and the self-hosted API docs at ``/docs``, served by the service.

Everything the pages load ships in the package: templates and static files here, and the
Swagger UI assets from the ``swagger-ui-bundle`` package (FastAPI's own ``/docs`` loads them
from a CDN, which an offline host cannot reach; ``/redoc`` has no packaged assets and is not
served).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from netpersona.service import reachability_api
from netpersona.service.console import live, pages, reach_pages
from netpersona.service.console.access import ConsoleSessions
from netpersona.service.console.common import STATIC

__all__ = ["mount_console"]

CDN_DOCS = ("/docs", "/docs/oauth2-redirect", "/redoc")


def mount_console(app: FastAPI) -> None:
    """Add the reachability API, the console, its static files and the offline ``/docs``."""
    app.state.console_sessions = ConsoleSessions()
    app.include_router(reachability_api.router)
    app.include_router(pages.router)
    app.include_router(reach_pages.router)
    app.include_router(live.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="console-static")
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    app.router.routes[:] = [
        r for r in app.router.routes if getattr(r, "path", None) not in CDN_DOCS
    ]

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )
