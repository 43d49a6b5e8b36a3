"""The OpenAPI document, the docs page and the health check describe the real API."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from _gates import add, configure

pytestmark = pytest.mark.anyio

RUN = "/processors/{procID}/runs/{runID}"
OPERATIONS = {
    ("get", "/processors"),
    ("get", "/processors/{procID}"),
    ("get", "/processors/{procID}/runs"),
    ("get", RUN),
    ("delete", RUN),
    ("get", RUN + "/config"),
    ("post", RUN + "/config"),
    ("get", RUN + "/data"),
    ("post", RUN + "/data"),
    ("get", RUN + "/data/input/{chunkID}"),
    ("get", RUN + "/data/output/{chunkID}"),
    ("post", RUN + "/end-of-input"),
    ("get", "/healthz"),
}


@pytest.fixture
async def openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    resp = await client.get("/openapi.json")
    assert resp.status_code == 200
    document: dict[str, Any] = resp.json()
    return document


async def test_every_operation_is_documented(openapi: dict[str, Any]) -> None:
    documented = {(method, path) for path, item in openapi["paths"].items() for method in item}
    assert documented >= OPERATIONS


async def test_error_answers_are_documented(openapi: dict[str, Any]) -> None:
    add_data = openapi["paths"][RUN + "/data"]["post"]
    for code in ("400", "404", "409", "413", "429", "503"):
        schema = add_data["responses"][code]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    error_body = openapi["components"]["schemas"]["ErrorBody"]
    assert error_body["required"] == ["value"]


async def test_request_bodies_use_the_wire_models(openapi: dict[str, Any]) -> None:
    paths = openapi["paths"]
    configure_body = paths[RUN + "/config"]["post"]["requestBody"]["content"]
    assert configure_body["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Configuration"
    }
    data_body = paths[RUN + "/data"]["post"]["requestBody"]["content"]["application/json"]
    assert data_body["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/Data"},
        {"type": "array", "items": {"$ref": "#/components/schemas/Data"}},
    ]


async def test_schemas_carry_the_wire_field_names(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    for model, fields in {
        "Processor": {"ProcID", "Name", "Version"},
        "Configuration": {"ExpectedData", "ExecutorConfig", "Processor"},
        "ExecutorConfig": {"MaxWorkers", "SendDownstream", "DownstreamLocations"},
        "DownstreamDataLocation": {"Hostname", "ProcID", "RunID"},
        "Run": {"RunID", "Configuration", "CurrentState", "ChunkCounts", "InputClosed"},
        "DataSpec": {"In", "Out"},
        "AddDataResult": {"Accepted", "Duplicates"},
        "Data": {
            "ChunkID",
            "Format",
            "Type",
            "State",
            "RawData",
            "FilesystemReference",
            "AssociatedChunkID",
        },
    }.items():
        # An empty schema ({}) here means the document says nothing about the model.
        assert set(schemas[model].get("properties", {})) >= fields, model


async def test_docs_page_is_served(client: httpx.AsyncClient) -> None:
    resp = await client.get("/docs")
    assert resp.status_code == 200
    assert "text/html" in resp.headers["content-type"]
    assert "/openapi.json" in resp.text


async def test_the_docs_page_loads_nothing_from_another_host(client: httpx.AsyncClient) -> None:
    """Every script, style sheet and icon of the docs page comes from the executor
    itself, so it works without internet (they came from a CDN)."""
    resp = await client.get("/docs")
    assert resp.status_code == 200
    links = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", resp.text)
    links += re.findall(r"""\burl\s*:\s*["']([^"']+)["']""", resp.text)  # Swagger UI's spec
    assert len(links) >= 3, resp.text
    origin = urlsplit(str(resp.url))
    for link in links:
        url = urlsplit(urljoin(str(resp.url), link))
        assert (url.scheme, url.netloc) == (origin.scheme, origin.netloc), link
        asset = await client.get(url.path)
        assert asset.status_code == 200, link
        assert asset.content, link
    assert "http://" not in resp.text.replace(str(resp.url), "")
    assert "https://" not in resp.text
    assert (await client.get("/redoc")).status_code == 404  # ReDoc's logo is on a CDN


async def test_healthz_reports_the_load(client: httpx.AsyncClient) -> None:
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok"
    assert health["runs"] == 0
    await configure(client, "noop", "r", num_chunks=1)
    assert (await add(client, "noop", "r", {"ChunkID": "c"})).is_success
    health = (await client.get("/healthz")).json()
    assert health["runs"] == 1
    assert sum(health["chunks"].values()) == 1
    assert health["workers"]["max"] == 64


async def test_the_schema_says_what_the_server_checks(openapi: dict[str, Any]) -> None:
    """Constraints the server enforces appear in the document (issue: an empty ChunkID
    was a 400 the schema did not mention)."""
    schemas = openapi["components"]["schemas"]
    data = schemas["Data"]
    assert "ChunkID" in data["required"]
    assert data["properties"]["ChunkID"]["minLength"] == 1
    formats = data["properties"]["Format"]["anyOf"]
    assert {"type": "integer", "enum": [0, 1, 2]} in formats
    assert {"type": "null"} in data["properties"]["FilesystemReference"]["anyOf"]
    # SendDownstream without locations is accepted (the manager's leaves): no constraint.
    assert "if" not in schemas["ExecutorConfig"]
    assert schemas["ExpectedData"]["properties"]["NumChunks"]["maximum"] == 2**32 - 1
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            # Bad requests are 400 with ErrorBody, never FastAPI's 422.
            assert "422" not in operation["responses"], (method, path)
            for parameter in operation.get("parameters", ()):
                if parameter["in"] == "path":
                    assert parameter["schema"]["minLength"] == 1, (method, path)
    assert "HTTPValidationError" not in schemas


async def test_whole_numbers_written_as_floats_are_integers(client: httpx.AsyncClient) -> None:
    """JSON (and JSON Schema) has one number type: 3.0 is the integer 3."""
    body = {"ExpectedData": {"NumChunks": 3.0}, "ExecutorConfig": {"MaxWorkers": 2.0}}
    resp = await client.post("/processors/noop/runs/w/config", json=body)
    assert resp.status_code == 200, resp.text
    assert resp.json()["Configuration"]["ExpectedData"]["NumChunks"] == 3
    for bad in (2.5, "3", True):
        body = {"ExpectedData": {"NumChunks": bad}}
        resp = await client.post("/processors/noop/runs/b/config", json=body)
        assert resp.status_code == 400, (bad, resp.text)
