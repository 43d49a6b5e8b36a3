"""The AddData fast path (msgspec, `wire.decode_chunks`) and the contract (pydantic,
`api.Data`) must agree: on every body, both accept it or both refuse it, and when they
accept it they read the same chunks. Hypothesis builds the bodies, valid and not."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from wiz_executor.api import Data, data_adapter, data_batch_adapter, unknown_fields
from wiz_executor.errors import InvalidInput
from wiz_executor.runs import Chunk
from wiz_executor.wire import chunk_from_data, decode_add_data, decode_chunks

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
ids = st.text(max_size=6) | st.sampled_from(["c1", "o1", ""])
enum_spellings = st.sampled_from(
    [
        "RAW",
        "FILESYSTEM_REF",
        "raw",
        "DataFormat(0)",
        "DataFormat(1)",
        "WAITING",
        "DataChunkState(0)",
        "INPUT",
        "OUTPUT",
        "DataType(0)",
        0,
        1,
        2,
        3,
        -1,
        0.0,
        1.0,
        True,
        False,
        None,
    ]
)
fs_refs = st.none() | st.fixed_dictionaries(
    {},
    optional={"Driver": ids | json_scalars, "Location": ids | json_scalars, "Other": json_scalars},
)
data_objects = st.fixed_dictionaries(
    {},
    optional={
        "ChunkID": ids | json_scalars,
        "Format": enum_spellings | json_values,
        "Type": enum_spellings | json_values,
        "State": enum_spellings | json_values,
        "RawData": json_values,
        "FilesystemReference": fs_refs | json_values,
        "AssociatedChunkID": ids | json_scalars,
        "Unknown": json_values,
    },
)
bodies = st.one_of(
    data_objects,
    st.lists(data_objects, max_size=4),
    json_values,
).map(lambda value: json.dumps(value, allow_nan=False).encode())
broken = bodies.flatmap(
    lambda body: st.integers(min_value=0, max_value=max(len(body) - 1, 0)).map(lambda n: body[:n])
)

Summary = tuple[str, str, bool, str, Any, str, str]


def summary(chunk: Chunk) -> Summary:
    return (
        chunk.id,
        chunk.output_id,
        chunk.generated_output_id,
        chunk.in_format.value,
        chunk.raw_data,
        chunk.fs_driver,
        chunk.fs_location,
    )


def fast_path(body: bytes) -> list[Summary] | None:
    try:
        return [summary(c) for c in decode_chunks(body)]
    except InvalidInput:
        return None


def contract(body: bytes) -> list[Summary] | None:
    try:
        if body.lstrip()[:1] == b"[":
            items = data_batch_adapter.validate_json(body)
        else:
            items = [data_adapter.validate_json(body)]
        return [summary(chunk_from_data(d)) for d in items]
    except (ValidationError, InvalidInput):
        return None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies | broken)
@example(b'{"ChunkID":"a","Format":false}')
@example(b'{"ChunkID":"a","Format":0.0}')
@example(b'{"ChunkID":"a","FilesystemReference":null}')
@example(b'{"ChunkID":"a","RawData":1e400}')
@example(b'{"ChunkID":"a","RawData":[NaN]}')
@example(b'{"ChunkID":"a","RawData":{"x":-Infinity}}')
@example(b'{"ChunkID":"a","RawData":123456789012345678901234567890}')
@example(b'{"ChunkID":"a","State":"DataChunkState(0)","Type":"DataType(0)"}')
@example(b'  [{"ChunkID":"a"},{"ChunkID":"b","AssociatedChunkID":"x"}]')
@example(b"[]")
@example(b"")
def test_fast_path_and_contract_agree(body: bytes) -> None:
    assert fast_path(body) == contract(body), body


def test_the_agreement_is_not_vacuous() -> None:
    """Both sides accept the Go client's body and refuse a bad Format (sanity check)."""
    good = b'{"ChunkID":"c","Format":2,"State":"DataChunkState(0)","RawData":{"a":[1,2.5]}}'
    assert (
        fast_path(good)
        == contract(good)
        == [("c", "c-out", True, "FILESYSTEM_REF", {"a": [1, 2.5]}, "", "")]
    )
    assert fast_path(b'{"ChunkID":"c","Format":"raw"}') is None
    assert contract(b'{"ChunkID":"c","Format":"raw"}') is None


def nested(depth: int, single: bool = True) -> bytes:
    item = b'{"ChunkID":"a","RawData":' + b"[" * depth + b"]" * depth + b"}"
    return item if single else b"[" + item + b"]"


def test_deep_nesting_is_refused_by_both() -> None:
    """Past about 200 levels both refuse a body; msgspec alone would read up to the
    interpreter's recursion limit and then fail to write the data back (a 500)."""
    for single in (True, False):
        assert fast_path(nested(150, single)) == contract(nested(150, single)) is not None
        for depth in (250, 990, 5000, 100_000):
            assert fast_path(nested(depth, single)) is None, depth
            assert contract(nested(depth, single)) is None, depth


def contract_unknown(body: bytes) -> list[str]:
    """The unknown fields the pydantic side would name: the same dotted paths, each
    once, with the count of the batch's chunks that held it."""
    value = json.loads(body)
    many = isinstance(value, list)
    counts: dict[str, int] = {}
    for item in value if many else [value]:
        for path in dict.fromkeys(unknown_fields(Data, item)):
            counts[path] = counts.get(path, 0) + 1
    return [f"{p} (in {n} chunks)" if many and n > 1 else p for p, n in counts.items()]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies)
@example(b'{"ChunkID":"a","Unknown":1,"FilesystemReference":{"Other":2}}')
@example(b'[{"ChunkID":"a","Unknown":1},{"ChunkID":"b","Unknown":[]}]')
def test_fast_path_names_the_unknown_fields_the_models_ignore(body: bytes) -> None:
    """msgspec skips unknown fields without a word; the fast path must still name each
    one the pydantic models ignore, whenever it accepts the body."""
    try:
        _, unknown = decode_add_data(body)
    except InvalidInput:
        return
    assert unknown == contract_unknown(body), body


def test_the_unknown_field_agreement_is_not_vacuous() -> None:
    body = b'[{"ChunkID":"a","X":1},{"ChunkID":"b","X":2,"FilesystemReference":{"Y":3}}]'
    assert decode_add_data(body)[1] == ["X (in 2 chunks)", "FilesystemReference.Y"]
    assert decode_add_data(b'{"ChunkID":"a","RawData":{"X":1}}')[1] == []
