"""A fuzz run over /openapi.json: schemathesis makes requests from the document the
server serves and sends them to a real server on 127.0.0.1, so the document and the
server cannot drift apart unnoticed.

Checks, and why these:
- `not_a_server_error`: no request, valid or not, gets a 5xx.
- `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`:
  every answer is one the document lists, with its media type and body schema.
- `positive_data_acceptance`: what the schema allows is not refused with a 4xx. The
  executor is stateful, so 404 (no such processor or run: a run must be configured
  before it takes data) and 409 (the run exists with another configuration, or its input
  is closed) are documented answers to valid requests, not rejections, and are expected.
- `negative_data_rejection`: a request the schema forbids (wrong types, missing
  ChunkID, ...) is refused with a 4xx, so the schema is no looser than the server.
  Only operations with a body get negative cases: schemathesis cannot make a path
  parameter invalid without changing the route.

The run goes twice: against an executor without a token, and against one with a token
that the fuzzer sends (fewer examples: the same operations, behind the guard). A third
pass sends requests without the token to the second: every operation but /healthz and
the dashboard page must answer 401 with a `WWW-Authenticate` challenge, as the document
says.

Left out: `response_headers_conformance` (few headers are documented), the stateful and
the built-in authorization checks (the API has no links; the third pass checks the
token), `unsupported_method` (test_http covers 405 and `Allow`), and the event streams
(they never end by themselves).

What is adjusted in the generated requests, and why:
- the processor is `noop` for half of the cases (and for any that names another
  built-in: `get`, `git` and `scrape` would fetch URLs), and a third of run IDs name a
  run configured up front, so requests reach real runs and not only 404s; GetData's
  `after` is dropped for that run, which holds no chunk: an `after` naming no chunk
  of a run is a 400 that depends on the run's state, as a 404 does;
- Configure's `Processor` is null: each processor checks its own configuration model,
  which one OpenAPI schema per path cannot express (test_configure covers those 400s);
- downstream `Hostname`s point at 127.0.0.1:1, so nothing leaves the machine;
- `PATCH /executor` sets valid limits to the ones the server started with: the limits
  change live for every later request, and a `MaxPending` of 1 would make every later
  batch a 413 (invalid values are left as generated: they must be refused).

Bounded by `MAX_EXAMPLES` per operation and mode (and `TOKEN_EXAMPLES`,
`UNAUTHORIZED_EXAMPLES` for the other passes): about a minute in all.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from wiz_executor import Settings, create_app

schemathesis = pytest.importorskip(
    "schemathesis", reason="a dev dependency: pip install -e '.[dev]'"
)
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 100
TOKEN_EXAMPLES = 30
UNAUTHORIZED_EXAMPLES = 5
TOKEN = "fuzz-token-0"
OPEN_OPERATIONS = {"GET /healthz", "GET /"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    positive_data_acceptance,
    negative_data_rejection,
]
CONFIG = schemathesis.Config.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409"]}}}
)
OTHER_BUILT_INS = {"get", "git", "ls", "scrape"}
OPEN_RUN = "open"


class _Server(uvicorn.Server):
    """uvicorn, with an event set once it listens (or has given up)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@pytest.fixture(scope="module", params=["no token", "token"])
def auth(request: pytest.FixtureRequest) -> dict[str, str]:
    """The headers the fuzzer sends: none, then the token of an executor that has one."""
    return {"Authorization": f"Bearer {TOKEN}"} if request.param == "token" else {}


@pytest.fixture(scope="module")
def server(auth: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The executor served by uvicorn on 127.0.0.1 in a thread, stopped at the end;
    with a token when the fuzzer has one to send."""
    data_dir: Path = tmp_path_factory.mktemp("wiz-data")
    # No --max-chunk-timeout: it is each operator's own ceiling on ChunkTimeout, which
    # one document for every executor cannot state (test_ceilings covers its 400).
    token = TOKEN if auth else None
    app = create_app(
        Settings(data_dir=data_dir, shutdown_grace=1, max_chunk_timeout=None, token=token)
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = _Server(uvicorn.Config(app, log_level="warning", lifespan="on"))

    def serve() -> None:
        try:
            asyncio.run(uv.serve(sockets=[sock]))
        finally:
            uv.ready.set()

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        assert uv.ready.wait(30), "uvicorn did not start in time"
        assert uv.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def schema(server: str, auth: dict[str, str]) -> Any:
    import requests

    resp = requests.post(
        f"{server}/processors/noop/runs/{OPEN_RUN}/config", json={}, timeout=10, headers=auth
    )
    assert resp.status_code == 200, resp.text
    return schemathesis.openapi.from_url(f"{server}/openapi.json", config=CONFIG)


def _operations() -> list[str]:
    document = create_app().openapi()
    return [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if not path.endswith("/events")
    ]


def _adjust(case: Any) -> None:
    """The adjustments the module docstring lists."""
    params = case.path_parameters
    if params and "procID" in params:
        run_id = params.get("runID", "")
        if params["procID"] in OTHER_BUILT_INS or len(run_id) % 2 == 0:
            params["procID"] = "noop"
        if run_id and len(run_id) % 3 == 0 and case.method != "DELETE":
            params["runID"] = OPEN_RUN
            if isinstance(case.query, dict):
                case.query.pop("after", None)
    body = case.body
    if getattr(case, "path", "") == "/executor" and isinstance(body, dict):
        for key, started_with in (("MaxWorkers", 64), ("MaxPending", 100_000)):
            value = body.get(key)
            valid = type(value) in (int, float) and 1 <= value < 2**31
            if valid and float(value).is_integer():
                body[key] = started_with
    if isinstance(body, dict) and "Processor" in body:
        body["Processor"] = None
    config = body.get("ExecutorConfig") if isinstance(body, dict) else None
    locations = config.get("DownstreamLocations") if isinstance(config, dict) else None
    for location in locations if isinstance(locations, list) else ():
        # Only a valid Hostname is replaced: an invalid one (empty, not a string) is what
        # a negative case is about, and must reach the server as generated.
        hostname = location.get("Hostname") if isinstance(location, dict) else None
        if isinstance(hostname, str) and hostname:
            location["Hostname"] = "127.0.0.1:1"


@pytest.mark.parametrize("operation", _operations())
def test_the_server_does_what_its_openapi_document_says(
    server: str, auth: dict[str, str], schema: Any, operation: str
) -> None:
    op = schema.find_operation_by_label(operation)
    assert op is not None, operation
    modes = [GenerationMode.POSITIVE]
    if op.body:
        modes.append(GenerationMode.NEGATIVE)
    for mode in modes:

        @settings(
            max_examples=TOKEN_EXAMPLES if auth else MAX_EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(op.as_strategy(generation_mode=mode))
        def fuzz(case: Any) -> None:
            _adjust(case)
            case.call_and_validate(base_url=server, checks=CHECKS, headers=auth)

        fuzz()


@pytest.mark.parametrize("auth", ["token"], indirect=True)
@pytest.mark.parametrize("operation", _operations())
def test_without_the_token_every_operation_but_health_is_401(
    server: str, auth: dict[str, str], schema: Any, operation: str
) -> None:
    op = schema.find_operation_by_label(operation)
    assert op is not None, operation

    @settings(
        max_examples=UNAUTHORIZED_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(op.as_strategy(generation_mode=GenerationMode.POSITIVE))
    def fuzz(case: Any) -> None:
        _adjust(case)
        (case.headers or {}).pop("Authorization", None)
        response = case.call(base_url=server)
        case.validate_response(response, checks=[not_a_server_error, status_code_conformance])
        if operation in OPEN_OPERATIONS:
            assert response.status_code == 200, response.text
        else:
            assert response.status_code == 401, (response.status_code, response.text)
            headers = {name.lower(): value for name, value in response.headers.items()}
            challenge = headers["www-authenticate"]  # a list of values in schemathesis 4
            assert str(challenge[0] if isinstance(challenge, list) else challenge).startswith(
                "Bearer "
            )

    fuzz()
