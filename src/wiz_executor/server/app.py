"""The HTTP app: routes translate requests into executor calls and back, nothing more.

All state lives in the `Executor`, which the app's lifespan starts and stops (or which
the caller owns, when one is passed in). Rarely used endpoints get FastAPI's comforts;
AddData, the hot path, is answered by `AddDataFastPath` before any middleware. In front
of both, `Guard` checks the token and the browser defences of every request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from .. import __version__
from ..api import (
    AddDataResult,
    CancelResult,
    Configuration,
    Data,
    DataChunkState,
    DataSpec,
    EndOfInputResult,
    ErrorBody,
    ExecutorLimits,
    Processor,
    RetryResult,
    Run,
    RunChange,
    RunHistory,
    unknown_fields,
)
from ..errors import InvalidInput, WizError
from ..executor import Executor
from ..history import history_samples
from ..runs import Run as RunState
from ..settings import Settings
from ..waiting import Asking, free_room, slow_after, waiting
from ..wire import encode, render_input, render_output, render_run
from ._data import DEFAULT_PAGE, MAX_PAGE, data_response, next_link, select_page
from ._docs import add_docs_routes
from ._errors import error_body, error_headers, status_of
from ._fastpath import (
    FREE_ROOM_HEADER,
    AddDataFastPath,
    add_data_response,
    free_room_value,
    read_body,
)
from ._guard import Guard, document_guard
from ._http import HttpRules, allowed_methods
from ._metrics import HttpMetricsMiddleware, Metrics, executor_getter
from ._observability import add_observability_routes

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in {
        400: "bad body or rejected configuration",
        404: "unknown processor, run or chunk",
        409: "conflicts with what the executor holds",
        413: "body too large",
        429: "the executor is full; retry after `Retry-After` seconds",
        503: "the executor is shutting down and takes no new runs or chunks",
    }.items()
}

_LINK_HEADER = {
    "description": 'On a page that is not the last: `<URL of the next page>; rel="next"` '
    "(RFC 8288).",
    "schema": {"type": "string"},
}


_FREE_ROOM_DOC = {
    "description": "*Extension*: how many more chunks the executor would accept now "
    "(`--max-pending` less the chunks waiting, as /healthz's `free_room`): an upstream "
    "executor paces its deliveries to this host by it.",
    "schema": {"type": "integer", "minimum": 0},
}


def _ref(model: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model}"}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


M = TypeVar("M", bound=BaseModel)


def _inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema for a request body no route's answer lists among the
    components (its nested models are components already, referred to as such)."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return schema


def _parse(model: type[M], body: bytes) -> M:
    # Strict, as Go's decoder and the AddData fast path are: "3" is not a number.
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise InvalidInput(f"invalid {model.__name__}: {problems}") from None


async def _body(request: Request) -> bytes:
    """The request body, refused with 413 as soon as it passes the executor's limit."""
    return await read_body(request.receive, _executor(request).settings.max_body_bytes)


def _json(payload: Any, status: int = 200) -> Response:
    return Response(encode(payload), status_code=status, media_type="application/json")


class _ExecutorApp(FastAPI):
    """FastAPI with the guard and the AddData fast path in front of all of its middleware.

    AddData is the one request a pipeline sends per chunk; passing it through the
    framework's middleware layers cost about a fifth of the server's CPU per request
    (see benchmarks/results/history.md), so it is answered before any of them. The
    guard comes first of all, so that it covers the fast path too.
    """

    fast_path: AddDataFastPath | None = None
    guard: Guard | None = None

    def openapi(self) -> dict[str, Any]:
        """FastAPI's document, made to say what the server does (see `_honest`)."""
        if self.openapi_schema is None:
            document = super().openapi()
            _honest(document)
            if self.guard is not None:
                document_guard(document, self.guard)
        return super().openapi()

    def attach(self, executor: Executor) -> None:
        """Serve `executor`: the routes read it from `app.state`, the fast path keeps it
        as a plain attribute (Starlette's `State` lookup cost about 1 µs per request)."""
        self.state.executor = executor
        if self.fast_path is not None:
            self.fast_path.executor = executor

    async def call_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Everything but the fast path: FastAPI, its middleware and its routes."""
        await super().__call__(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = self
        if self.guard is not None:
            await self.guard(scope, receive, send)
        elif self.fast_path is not None:
            await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _honest(document: dict[str, Any]) -> None:
    """Correct what FastAPI documents but the server does not do.

    - FastAPI lists a 422 `HTTPValidationError` on every operation with parameters; this
      server answers a bad request with 400 and `ErrorBody`, which are listed.
    - A path parameter is one non-empty path segment: the router matches no other (a
      `:path` parameter, the chunk ID, may hold slashes)."""
    for item in document.get("paths", {}).values():
        for operation in item.values():
            operation.get("responses", {}).pop("422", None)
            for parameter in operation.get("parameters", ()):
                if parameter.get("in") == "path":
                    schema = parameter.setdefault("schema", {})
                    schema["minLength"] = 1
                    if parameter["name"] != "chunkID":
                        schema["pattern"] = "^[^/]+$"
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def create_app(settings: Settings | None = None, executor: Executor | None = None) -> FastAPI:
    """The Processor API app. Without `executor`, the app makes and owns one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert isinstance(app, _ExecutorApp)
        if executor is not None:
            app.attach(executor)
            yield
            return
        async with Executor(settings) as owned:
            app.attach(owned)
            yield

    app = _ExecutorApp(
        title="wiz-executor",
        version=__version__,
        summary="The Wiz Processor API: runs processors on data chunks.",
        lifespan=lifespan,
        # The wire models' serializer (which drops unset extensions) has no schema of its
        # own; described by their fields, the models show their real shape in /docs.
        separate_input_output_schemas=False,
        docs_url=None,  # FastAPI's pages load from CDNs: add_docs_routes serves /docs
        redoc_url=None,
    )
    metrics = app.state.metrics = Metrics(executor_getter(app.state))
    app.add_middleware(HttpRules)
    app.add_middleware(HttpMetricsMiddleware, stats=metrics.http)  # outermost: counts all
    app.fast_path = AddDataFastPath(app.call_stack, on_request=metrics.http.add_data_observer())
    if executor is not None:
        app.attach(executor)
    own = settings or (executor.settings if executor is not None else Settings())
    app.guard = Guard(app.fast_path, own, on_refused=metrics.http.refusal_observer())
    _install_error_handlers(app)
    _add_routes(app)
    add_observability_routes(app, metrics, ERRORS)
    add_docs_routes(app)
    return app


def _executor(request: Request) -> Executor:
    executor: Executor = request.app.state.executor
    return executor


def _render(executor: Executor, run: RunState, asking: Asking | None = None) -> dict[str, Any]:
    """A run as answered, with why its chunks wait and its free room, computed now
    (`asking`: one for all the runs of one answer)."""
    why = waiting(executor, run, asking)
    return render_run(run, None if why is None else why.wire(), free_room(executor, run))


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(WizError)
    async def wiz_error(request: Request, exc: WizError) -> Response:
        return Response(
            error_body(exc.message),
            status_code=status_of(exc),
            media_type="application/json",
            headers=error_headers(exc),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return Response(
            error_body("invalid request: " + "; ".join(problems)),
            status_code=400,
            media_type="application/json",
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = exc.headers
        if exc.status_code == 405:
            headers = {
                **(headers or {}),
                "Allow": allowed_methods(app.router.routes, request.scope),
            }
        return Response(
            error_body(f"{exc.detail}: {request.method} {request.url.path}"),
            status_code=exc.status_code,
            media_type="application/json",
            headers=headers,
        )


def _add_routes(app: FastAPI) -> None:
    run_path = "/processors/{procID}/runs/{runID}"

    @app.get("/healthz", tags=["executor"])
    async def healthz(request: Request) -> dict[str, Any]:
        """Liveness, and the executor's load."""
        ex = _executor(request)
        if ex.closing:
            status = "stopping"
        elif ex.recovering:
            status = "recovering"  # rebuilding the runs from the journal; writes get 503
        elif ex.recovery_error is not None:
            status = "failed"
        else:
            status = "ok"
        return {
            "status": status,
            "runs": len(ex.runs),
            "chunks": {state.value: n for state, n in ex.runs.counts.items()},
            "workers": {
                "busy": ex.runs.counts[DataChunkState.RUNNING],
                "instances": ex.scheduler.limiter.in_use,
                "max": ex.settings.max_workers,
                "abandoned": ex.threads.abandoned,
            },
            # *Extension*: how many more chunks it would accept now (--max-pending less
            # the chunks waiting; 0 while it refuses writes)
            "free_room": free_room(ex),
            "max_pending": ex.settings.max_pending,
        }

    @app.get("/executor", tags=["executor"], response_model=ExecutorLimits)
    async def get_executor(request: Request) -> Response:
        """*Extension*: the executor-wide limits now (`--max-workers`, `--max-pending`,
        or what `PATCH /executor` made of them)."""
        return _json(_executor(request).executor_limits())

    @app.patch(
        "/executor",
        tags=["executor"],
        response_model=ExecutorLimits,
        responses=ERRORS,
        openapi_extra=_json_body(_ref("ExecutorLimits")),
    )
    async def patch_executor(request: Request) -> Response:
        """*Extension*: change the executor-wide limits live. `MaxWorkers` raised starts
        waiting chunks at once; lowered, running chunks finish and no new one starts
        above it (idle POOL instances are let go). `MaxPending` bounds the waiting
        chunks from the next AddData on. Absent or null fields stay. Not kept across a
        restart: the flags (or configuration) the executor starts with are the operator's.
        Answers the limits as they now are."""
        change = _parse(ExecutorLimits, await _body(request))
        executor = _executor(request)
        executor.set_limits(change.MaxWorkers, change.MaxPending)
        return _json(executor.executor_limits())

    @app.get("/processors", tags=["processors"], response_model=list[Processor])
    async def get_all_processors(request: Request) -> Any:
        """GetAllProcessors: every processor this executor serves."""
        return _executor(request).processors()

    @app.get(
        "/processors/{procID}", tags=["processors"], response_model=Processor, responses=ERRORS
    )
    async def get_processor(request: Request, procID: str) -> Any:
        """GetProcessor."""
        return _executor(request).processor(procID)

    @app.get("/processors/{procID}/runs", tags=["runs"], response_model=list[Run], responses=ERRORS)
    async def get_all_runs(request: Request, procID: str) -> Response:
        """GetAllRuns: every run of a processor (an empty list when none)."""
        executor = _executor(request)
        asking = Asking(executor)
        return _json([_render(executor, r, asking) for r in executor.list_runs(procID)])

    @app.get(run_path, tags=["runs"], response_model=Run, responses=ERRORS)
    async def get_run(request: Request, procID: str, runID: str) -> Response:
        """GetRun: a run's configuration, state and (extension) chunk counts, why its
        waiting chunks are not running (`Waiting`) and how many more it would take now
        (`FreeRoom`)."""
        executor = _executor(request)
        return _json(_render(executor, executor.get_run(procID, runID)))

    @app.delete(run_path, tags=["runs"], response_model=Run, responses=ERRORS)
    async def delete_run(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: cancel a run's waiting and running chunks and forget it."""
        executor = _executor(request)
        run = await executor.delete_run(procID, runID)
        return _json(_render(executor, run))

    @app.get(run_path + "/history", tags=["runs"], response_model=RunHistory, responses=ERRORS)
    async def get_history(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: the run's recent counts (chunks finished, queued, running),
        sampled by the executor once a second, about the last ten minutes, oldest first:
        what the dashboard charts its rate and queue depth from."""
        return _json(history_samples(_executor(request).get_run(procID, runID)))

    @app.post(run_path + "/cancel", tags=["runs"], response_model=CancelResult, responses=ERRORS)
    async def cancel(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: stop a run early, keeping what it did. End of input is declared
        and its WAITING chunks fail without running ("cancelled before it ran"); its
        RUNNING chunks finish, and the run then ends ERRORED (a retry runs the cancelled
        chunks after all). Idempotent: with nothing waiting it cancels nothing (0)."""
        executor = _executor(request)
        run, cancelled = executor.cancel(procID, runID)
        state = run.state.value
        await executor.commit()  # the cancel is in the journal before the 200
        return _json({"RunID": run.run_id, "CurrentState": state, "Cancelled": cancelled})

    @app.get(run_path + "/config", tags=["runs"], response_model=Configuration, responses=ERRORS)
    async def get_config(request: Request, procID: str, runID: str) -> Any:
        """GetConfig: the run's configuration, as created and changed live since."""
        return _executor(request).get_run(procID, runID).configuration

    @app.post(
        run_path + "/config",
        tags=["runs"],
        response_model=Run,
        responses=ERRORS,
        openapi_extra=_json_body(_ref("Configuration")),
    )
    async def configure(request: Request, procID: str, runID: str) -> Response:
        """Configure: create the run. The same configuration again is a no-op; a
        different one is a 409. An invalid processor configuration is a 400 and creates
        nothing. A field the executor does not know is ignored and named in the run's
        `Warnings` (a 400 under `--strict-config`). (The body is read as JSON whatever
        its Content-Type says.)"""
        body = await _body(request)
        configuration = _parse(Configuration, body)
        # Parsed, so valid JSON: read again to find the fields the models ignored.
        unknown = unknown_fields(Configuration, json.loads(body))
        executor = _executor(request)
        await executor.check_downstream(procID, runID, configuration)
        run, _ = executor.configure(procID, runID, configuration, unknown)
        await executor.commit()  # the run is in the journal before the 200
        return _json(_render(executor, run))

    @app.get(
        run_path + "/data",
        tags=["data"],
        response_model=DataSpec,
        responses={**ERRORS, 200: {"headers": {"Link": _LINK_HEADER}}},
    )
    async def get_data(
        request: Request,
        procID: str,
        runID: str,
        state: Annotated[
            DataChunkState | None,
            Query(description="*Extension*: only chunks in this state (when chosen)."),
        ] = None,
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_PAGE,
                description=f"*Extension*: at most this many chunks (default {DEFAULT_PAGE} "
                "when `state` or `after` is given).",
            ),
        ] = None,
        after: Annotated[
            str | None,
            Query(
                description="*Extension*: start after this input ChunkID, the last one of the "
                "previous page (in arrival order)."
            ),
        ] = None,
    ) -> Response:
        """GetData: the run's input chunks and the outputs they produce, in arrival order.

        Without query parameters, the whole run, as the original answered. With any of
        `state`, `limit`, `after`, one page; a `Link: <...>; rel="next"` header (RFC 8288)
        names the next page and is absent on the last. Large answers are streamed.
        A RUNNING input chunk says since when (`RunningSince`), and `Slow: true` once it
        has run longer than half its ChunkTimeout."""
        executor = _executor(request)
        run = executor.get_run(procID, runID)
        slow = slow_after(executor, run)
        if state is None and limit is None and after is None:
            if run.stored:  # finished: its chunks are in the journal only
                return data_response(await executor.chunks_of(run))
            return data_response(run.order[:], slow_after=slow)
        size = limit or DEFAULT_PAGE
        page, more = await select_page(executor, run, state, after, size)
        headers = None
        if more:
            root = request.scope.get("root_path", "")
            headers = {"Link": next_link(root, procID, runID, state, size, page[-1])}
        return data_response(page, headers, slow)

    @app.post(
        run_path + "/data",
        tags=["data"],
        response_model=AddDataResult,
        responses={
            **ERRORS,
            200: {"headers": {FREE_ROOM_HEADER: _FREE_ROOM_DOC}},
            429: {**ERRORS[429], "headers": {FREE_ROOM_HEADER: _FREE_ROOM_DOC}},
        },
        openapi_extra=_json_body(
            {"oneOf": [_ref("Data"), {"type": "array", "items": _ref("Data")}]}
        ),
    )
    async def add_data(request: Request, procID: str, runID: str) -> Response:
        """AddData: one chunk, or (extension) a JSON array of chunks accepted or rejected
        as a whole. Resending a held ChunkID with the same content is a no-op; with other
        content it is a 409. A full executor answers 429 with `Retry-After`. `State` and
        `Type` are the executor's to set and are ignored. (Served by a fast path before
        routing; this handler is the same operation, for the OpenAPI document.)"""
        body = await _body(request)
        executor = _executor(request)
        payload = await add_data_response(executor, procID, runID, body)
        room = free_room_value(executor).decode()
        return Response(payload, media_type="application/json", headers={FREE_ROOM_HEADER: room})

    @app.get(
        run_path + "/data/input/{chunkID:path}",
        tags=["data"],
        response_model=Data,
        responses=ERRORS,
    )
    async def get_input_chunk(request: Request, procID: str, runID: str, chunkID: str) -> Response:
        """*Extension*: one input chunk."""
        executor = _executor(request)
        chunk = await executor.input_chunk(procID, runID, chunkID)
        return _json(render_input(chunk, slow_after(executor, executor.get_run(procID, runID))))

    @app.get(
        run_path + "/data/output/{chunkID:path}",
        tags=["data"],
        response_model=Data,
        responses=ERRORS,
    )
    async def get_output_chunk(request: Request, procID: str, runID: str, chunkID: str) -> Response:
        """*Extension*: one output chunk, by its own ID (the input's AssociatedChunkID)."""
        return _json(render_output(await _executor(request).output_chunk(procID, runID, chunkID)))

    @app.post(
        run_path + "/end-of-input", tags=["data"], response_model=EndOfInputResult, responses=ERRORS
    )
    async def end_of_input(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: no more chunks will come. The run completes once the chunks it
        holds have finished (even fewer than a nonzero NumChunks); later AddData calls
        get 409."""
        executor = _executor(request)
        run = executor.end_of_input(procID, runID)
        await executor.commit()
        return _json(
            {"RunID": run.run_id, "CurrentState": run.state.value, "Accepted": run.accepted}
        )

    @app.patch(
        run_path + "/config",
        tags=["runs"],
        response_model=Run,
        responses=ERRORS,
        # Inline: no route answers a RunChange, so FastAPI lists no component for it.
        openapi_extra=_json_body(_inline_schema(RunChange)),
    )
    async def change_config(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: change a running run live: a partial ExecutorConfig of
        `MaxWorkers`, `ChunkTimeout` and `WorkModel` (absent or null fields stay).
        Raised, MaxWorkers starts workers at once; lowered, running chunks finish and
        none starts above it; a new work model takes over once the old one's chunks in
        flight have finished. No chunk is lost or run twice. GetConfig then answers the
        changed configuration; the change is journalled. The same change again is a
        no-op; 409 on a finished run; 400 on a bad value (a ChunkTimeout above
        `--max-chunk-timeout`), which changes nothing; a MaxWorkers above `--max-workers`
        is clamped, with a warning in the answer's `Warnings`. Answers the run."""
        body = await _body(request)
        change = _parse(RunChange, body)
        unknown = unknown_fields(RunChange, json.loads(body))
        executor = _executor(request)
        run, warnings = executor.change_run(procID, runID, change, unknown)
        await executor.commit()  # the change is in the journal before the 200
        out = render_run(run)
        if warnings:
            out["Warnings"] = list(dict.fromkeys([*out.get("Warnings", []), *warnings]))
        return _json(out)

    @app.post(run_path + "/pause", tags=["runs"], response_model=Run, responses=ERRORS)
    async def pause(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: pause a run: none of its chunks starts (those running finish),
        AddData still takes chunks up to `--max-pending`, and the run does not finish
        until resumed. Its `Paused` is true. Idempotent; journalled (a restart keeps it
        paused); 409 on a finished run."""
        executor = _executor(request)
        run = executor.pause(procID, runID)
        await executor.commit()
        return _json(render_run(run))

    @app.post(run_path + "/resume", tags=["runs"], response_model=Run, responses=ERRORS)
    async def resume(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: resume a paused run: its waiting chunks start again. Idempotent
        (a run not paused is left as it is); journalled; 409 on a finished run."""
        executor = _executor(request)
        run = executor.resume(procID, runID)
        await executor.commit()
        return _json(render_run(run))

    @app.post(run_path + "/retry", tags=["runs"], response_model=RetryResult, responses=ERRORS)
    async def retry(request: Request, procID: str, runID: str) -> Response:
        """*Extension*: retry what failed. The run's FAILED chunks are queued again
        (WAITING, error and output cleared) and its failed downstream deliveries sent
        again; a finished run is RUNNING again until they end, then SUCCEEDED or ERRORED
        as ever. Idempotent: with nothing failed it re-queues nothing (0 and 0). A 429
        with `Retry-After` when the chunks would not fit in the waiting queue."""
        executor = _executor(request)
        run, chunks, deliveries = await executor.retry(procID, runID)
        state = run.state.value  # as the retry left it (its chunks may end meanwhile)
        await executor.commit()  # the retry is in the journal before the 200
        return _json(
            {
                "RunID": run.run_id,
                "CurrentState": state,
                "Chunks": chunks,
                "Deliveries": deliveries,
            }
        )
