"""The dashboard's Starlette app: server-side pages over the index, a fragment per page for live
refresh, server-sent events when the index changes, and the chart library from node_modules."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.templating import Jinja2Templates
from web3 import Web3

from marketplace import toolchain
from marketplace.errors import ToolchainError
from marketplace.indexer import Indexer, IndexReader
from marketplace.indexer.queries import phase_name
from node.dashboard import formatting

HERE = Path(__file__).resolve().parent
CHART_JS = Path("chart.js") / "dist" / "chart.umd.min.js"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def chart_js_path() -> Path:
    """chart.js as npm installed it (``npm install`` / scripts/bootstrap); no CDN."""
    path = toolchain.node_modules() / CHART_JS
    if not path.is_file():
        raise ToolchainError(f"chart.js not found at {path}: run `npm install` (scripts/bootstrap)")
    return path


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value on these pages came from the chain or IPFS
        undefined=jinja2.ChainableUndefined,  # a field another contract version lacks
    )
    env.filters.update(
        token=formatting.token,
        short=formatting.short,
        ppm=formatting.ppm,
        when=formatting.when,
        phase_name=phase_name,
    )
    return env


def create_app(db_path: Path, *, indexer: Indexer | None = None, title: str = "") -> Starlette:
    """The dashboard over the index at ``db_path``; ``indexer`` (when this process runs one)
    drives the live updates. Page handlers are synchronous (SQLite), so Starlette runs them on
    its thread pool and the event loop stays free for the event streams."""
    templates = Jinja2Templates(env=_environment())
    chart_js = chart_js_path()
    state: dict[str, Any] = {"stopping": False}

    def render(request: Request, name: str, context: dict[str, Any]) -> Response:
        fragment = request.query_params.get("fragment") == "1"
        with _Reader(db_path) as r:
            status = r.status()
        base = {"status": status, "title": title, "fragment": fragment,
                "indexer_error": indexer.last_error if indexer is not None else None,
                "live_url": request.url.path + "?fragment=1"}  # fmt: skip
        template = name if not fragment else name.replace(".html", "_live.html")
        return templates.TemplateResponse(request, template, base | context)

    def tasks_page(request: Request) -> Response:
        with _Reader(db_path) as r:
            ctx = {"tasks": r.tasks(), "other": r.market_other_events()}
        return render(request, "tasks.html", ctx)

    def task_page(request: Request) -> Response:
        task_id = _int_param(request, "task_id")
        with _Reader(db_path) as r:
            task = r.task(task_id)
        if task is None:
            raise HTTPException(404, f"task {task_id} is not in the index (yet)")
        return render(request, "task.html", {"task": task})

    def participant_page(request: Request) -> Response:
        address = request.path_params["address"]
        if not ADDRESS.match(address):
            raise HTTPException(400, "not an address: give 0x and 40 hex digits")
        address = Web3.to_checksum_address(address)
        with _Reader(db_path) as r:
            who = r.participant(address)
        return render(request, "participant.html", {"who": who})

    def chart_data(request: Request) -> Response:
        with _Reader(db_path) as r:
            return JSONResponse(r.chart(_int_param(request, "task_id")))

    def status(request: Request) -> Response:
        with _Reader(db_path) as r:
            return JSONResponse(r.status())

    async def events(request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            seen = -1
            yield "retry: 1000\n\n"
            idle = 0.0
            while not state["stopping"]:
                gen = indexer.generation if indexer is not None else 0
                if gen != seen:
                    seen = gen
                    yield f"event: index\ndata: {json.dumps({'generation': gen})}\n\n"
                    idle = 0.0
                elif idle >= 15:
                    yield ": keep-alive\n\n"
                    idle = 0.0
                if await request.is_disconnected():
                    return
                await asyncio.sleep(0.1)
                idle += 0.1

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        files = {"app.js": HERE / "static" / "app.js", "app.css": HERE / "static" / "app.css",
                 "chart.js": chart_js}  # fmt: skip
        if name not in files:
            raise HTTPException(404, "no such file")
        return FileResponse(files[name])

    app = Starlette(
        routes=[
            Route("/", tasks_page),
            Route("/task/{task_id}", task_page),
            Route("/participant/{address}", participant_page),
            Route("/api/task/{task_id}/chart", chart_data),
            Route("/api/status", status),
            Route("/events", events),
            Route("/static/{name}", static),
        ],
        middleware=[
            Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"]),
            Middleware(SecurityHeaders),
        ],
    )
    app.state.flags = state
    return app


class SecurityHeaders:
    """ASGI middleware: a strict Content-Security-Policy (no inline script, no other origin)
    and no MIME sniffing on every response."""

    HEADERS = (
        (b"content-security-policy", CSP.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
    )

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Reader:
    """An :class:`IndexReader` for one request (sqlite connections are cheap to open)."""

    def __init__(self, db_path: Path):
        self.db_path = db_path

    def __enter__(self) -> IndexReader:
        self.reader = IndexReader(self.db_path)
        return self.reader

    def __exit__(self, *exc: object) -> None:
        self.reader.close()


def _int_param(request: Request, name: str) -> int:
    try:
        return int(request.path_params[name])
    except ValueError:
        raise HTTPException(400, f"{name} must be an integer") from None
