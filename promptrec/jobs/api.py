"""HTTP for `promptrec serve`: the FastAPI app, its request schemas, its error answers, the uvicorn runner.

Routes: `GET /healthz`, `GET /v1/info`, `POST /v1/rank`, `POST /v1/score`; with the playground also
`GET /playground` (plain HTML/JS shipped in `promptrec/serve_static/`, no build step) and its JSON calls
under `/playground/api/`. A user mistake is a 4xx whose body is `{"error": "<one line>"}`: a body that
does not match its schema, an unknown id, a template that fails on the request's data, a configured
limit (422), a body over `max_body_bytes` (413), saving over a file without `overwrite` (409), a full
queue (503). Anything else is logged with its traceback and answered 500 with one line, never the
traceback, and the server goes on serving.

fastapi, pydantic and uvicorn are imported inside the functions that use them, so `promptrec --help`
stays fast. For the same reason the schemas are classes made by a function, and this module does not
use `from __future__ import annotations`: FastAPI reads them from the route functions' annotations.
"""

import functools
import logging
import socket
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from promptrec import __version__
from promptrec.core.errors import ConfigError, PromptrecError, first_line
from promptrec.jobs.batching import BusyError
from promptrec.jobs.playground import MAX_EXAMPLES, ExistsError, Playground, metrics, score_rows
from promptrec.jobs.serve import Service

STATIC_DIR = Path(__file__).resolve().parents[1] / "serve_static"


logger = logging.getLogger(__name__)


def create_app(service: Service, playground: Playground | None = None):
    """The app; its lifespan starts and stops the service's scoring worker."""
    from fastapi import FastAPI

    @asynccontextmanager
    async def lifespan(app):
        service.batcher.start()
        yield
        service.batcher.stop()

    app = FastAPI(title="promptrec", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(BodyLimit, max_bytes=service.config.max_body_bytes)
    add_error_answers(app)
    add_service_routes(app, service, schemas())
    if playground is not None:
        add_playground_routes(app, playground, schemas())
    return app


def add_service_routes(app, service: Service, s) -> None:
    from fastapi.concurrency import run_in_threadpool

    @app.get("/healthz")
    def healthz():
        batcher = service.batcher
        body = {"status": "ok" if batcher.alive else "down", "queued": batcher.queued, "turns": batcher.num_turns}
        body["jobs"] = batcher.num_jobs  # jobs / turns = the mean micro-batch size
        return body if batcher.alive else error_answer(503, "the scoring worker is not running; restart the server")

    @app.get("/v1/info")
    def info():
        return service.info

    @app.post("/v1/rank")
    async def rank(body: s.RankRequest):
        job = await run_in_threadpool(service.rank_job, given(body))
        scores = await service.batcher.submit(job)
        return finite(service.rank_response(job, scores, body.top_k))

    @app.post("/v1/score")
    async def score(body: s.ScoreRequest):
        job = await run_in_threadpool(service.score_job, body.examples)
        parts = await service.batcher.submit(job)
        return finite(service.score_response(job, parts))


def add_playground_routes(app, playground: Playground, s) -> None:
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, RedirectResponse
    from fastapi.staticfiles import StaticFiles

    app.mount("/playground/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def home():
        return RedirectResponse("/playground")

    @app.get("/playground", include_in_schema=False)
    def page():
        return FileResponse(STATIC_DIR / "playground.html")

    @app.get("/playground/api/state")
    def state():
        return playground.state()

    @app.post("/playground/api/check")
    def check(body: s.CheckRequest):
        return {"problems": playground.lint(body.text)}

    @app.post("/playground/api/render")
    def render(body: s.RenderRequest):
        return playground.render(body.texts, body.split, body.num_examples, body.seed)

    @app.post("/playground/api/score")
    async def score(body: s.PlaygroundScoreRequest):
        args = (body.text, body.split, body.num_examples, body.seed, body.positions, body.choice)
        job = await run_in_threadpool(playground.score_job, *args)
        parts = await playground.service.batcher.submit(job)
        return finite({"rows": score_rows(job, body.positions, parts)})

    @app.post("/playground/api/metrics")
    def scored_metrics(body: s.MetricsRequest):
        if len(body.labels) != len(body.scores):
            return error_answer(422, f"{len(body.labels)} labels but {len(body.scores)} scores; send one of each")
        return metrics(body.labels, body.scores)

    @app.post("/playground/api/save")
    def save(body: s.SaveRequest):
        return playground.save(body.name, body.text, body.overwrite)


@functools.cache
def schemas():
    """The request bodies: unknown keys are errors, so a typo is a 422 instead of a silent default."""
    from typing import Annotated

    from pydantic import BaseModel, ConfigDict, Field, StringConstraints

    Id = Annotated[str, StringConstraints(min_length=1, max_length=200)]
    Text = Annotated[str, StringConstraints(max_length=200_000)]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class ItemRecord(BaseModel):
        """An item as a template reads it (title, genres, ...); its id need not be in the catalogue."""

        model_config = ConfigDict(extra="allow")
        item_id: Id

    class RankRequest(Strict):
        user_id: Id | None = None  # a user of --data (their context), or a name for the user sent here
        profile: dict[str, Any] | None = None  # the template's `user` (age, occupation, ...)
        history: list[dict[str, Any]] | None = Field(None, max_length=10_000)
        query: Text | None = None  # search templates
        fields: dict[str, Any] | None = None  # any other example field a template reads (e.g. stats)
        timestamp: int | None = None  # the moment of the request: catalogue stats count what came before
        candidates: list[Id | ItemRecord] = Field(min_length=1)
        top_k: int = Field(0, ge=0)  # 0 keeps every candidate

    class ScoreRequest(Strict):
        examples: list[dict[str, Any]] = Field(min_length=1)  # prepared-split examples

    class CheckRequest(Strict):
        text: Text

    class RenderRequest(Strict):
        texts: list[Text] = Field(min_length=1, max_length=2)  # template A, and B to compare
        split: Id
        num_examples: int = Field(8, ge=1, le=MAX_EXAMPLES)
        seed: int = 0

    class PlaygroundScoreRequest(Strict):
        text: Text
        split: Id
        num_examples: int = Field(8, ge=1, le=MAX_EXAMPLES)
        seed: int = 0
        positions: list[int] = Field(min_length=1, max_length=MAX_EXAMPLES)  # which of the sample to score
        choice: Id = "ensemble"

    class MetricsRequest(Strict):
        labels: list[int] = Field(min_length=1, max_length=100_000)
        scores: list[float] = Field(min_length=1, max_length=100_000)

    class SaveRequest(Strict):
        name: Id
        text: Text
        overwrite: bool = False

    return SimpleNamespace(
        RankRequest=RankRequest, ScoreRequest=ScoreRequest, CheckRequest=CheckRequest, RenderRequest=RenderRequest,
        PlaygroundScoreRequest=PlaygroundScoreRequest, MetricsRequest=MetricsRequest, SaveRequest=SaveRequest,
    )  # fmt: skip


def given(body) -> dict:
    """The top-level fields a request set to something (a JSON null counts as not given)."""
    return {key: value for key, value in body.model_dump(exclude_unset=True).items() if value is not None}


def finite(value):
    """JSON has no NaN or infinity: such a number is answered as null."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [finite(item) for item in value]
    return value


# ---------------------------------------------------------------- errors
STATUS = {BusyError: 503, ExistsError: 409}  # every other PromptrecError is the request's fault: 422


def error_answer(status: int, message: str):
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": " ".join(message.split())[:1000]}, status_code=status)


def add_error_answers(app) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def invalid(request, error):
        return error_answer(422, validation_line(error.errors()))

    async def http(request, error):
        return error_answer(error.status_code, str(error.detail))

    async def user_mistake(request, error):
        return error_answer(STATUS.get(type(error), 422), first_line(error))

    async def bug(request, error):
        logger.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        return error_answer(500, f"internal error ({type(error).__name__}); the server log has the details")

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http)
    app.add_exception_handler(PromptrecError, user_mistake)
    app.add_exception_handler(Exception, bug)


def validation_line(errors: list[dict]) -> str:
    """pydantic's first complaint as one line: where in the body, and what is wrong there."""
    first = errors[0]
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    if first.get("type") == "json_invalid":
        reason = (first.get("ctx") or {}).get("error", "invalid JSON")
        return f"the body is not valid JSON ({reason} at character {first['loc'][-1]}){more}"
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    return f"{where}: {first.get('msg', 'invalid')}{more}"


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is a 413, whether declared up front or streamed in chunks."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            message = f"the body has {int(declared)} bytes; this server takes at most {self.max_bytes}"
            return await error_answer(413, message)(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                from starlette.exceptions import HTTPException

                message = f"the body is over {self.max_bytes} bytes; this server takes at most {self.max_bytes}"
                raise HTTPException(413, message)  # FastAPI passes it on to `add_error_answers`
            return message

        await self.app(scope, limited, send)


# ---------------------------------------------------------------- running
def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), bound before the server starts so its address is known."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror or error}); pick another --port") from None


def run(app, sock: socket.socket, access_log: bool = True) -> None:
    """Serve `app` on `sock` with uvicorn until interrupted (Ctrl-C finishes the requests in flight)."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, access_log=access_log, log_level="info")).run(sockets=[sock])


class BackgroundServer:
    """The app served by uvicorn in a thread of this process, on 127.0.0.1 (tests and benchmarks).

    `with BackgroundServer(app) as server:` requests go to `server.url` until the block ends.
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = bind(host, port)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, access_log=False, log_level="warning", timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(600):  # up to 30 s
            if self.server.started or not self.thread.is_alive():
                break
            threading.Event().wait(0.05)
        if not self.server.started:
            raise RuntimeError("the server did not start; see the log above")
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()
