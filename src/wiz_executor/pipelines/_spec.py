"""Reading a pipeline file (the original Wiz shape) into a graph of nodes.

    name: hello
    data: [...]                    # the input chunks (or one value: a single chunk)
    spec:
      sequential:                  # each item feeds the next
        - name: prepare
          processor: {id: noop, configuration: {SleepMs: 5}}
        - parallel:                # the predecessor feeds every branch;
            - name: left           # every branch feeds the successor
              processor: {id: noop}
            - sequential: [...]    # blocks nest

A block is a mapping with `sequential` and/or `parallel` lists; an item is a node (a
mapping with `processor`) or a nested block. As in the original, a block with both keys
hangs its sequential chain and each parallel branch off the same predecessor, and a
node's `children` block hangs off that node (a side branch that does not feed the
node's sequential successor). Nodes with no predecessor get the pipeline's `data`;
nodes with no successor hold the final outputs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..api import Data, ExecutorConfig
from ..errors import InvalidInput

_BLOCK_KEYS = frozenset({"sequential", "parallel"})
_NODE_KEYS = frozenset({"name", "processor", "children", "description", "executor"})
_PROCESSOR_KEYS = frozenset({"id", "name", "version", "type", "configuration"})


@dataclass
class Node:
    """One processor run of the pipeline and its place in the graph."""

    name: str
    proc_id: str
    configuration: Any = None
    """The processor's own configuration (`Configuration.Processor`)."""
    executor: dict[str, Any] = field(default_factory=dict)
    """`ExecutorConfig` fields for this run (MaxWorkers, WorkModel, ChunkTimeout)."""
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)

    @property
    def first(self) -> bool:
        return not self.upstream

    @property
    def final(self) -> bool:
        return not self.downstream


@dataclass
class Pipeline:
    name: str
    data: list[Data]
    nodes: dict[str, Node]
    """By name, in an order where every node comes after its upstream nodes."""

    @property
    def first(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.first]

    @property
    def final(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.final]

    def joins(self) -> list[Node]:
        """Nodes fed by more than one node."""
        return [n for n in self.nodes.values() if len(n.upstream) > 1]


def load_pipeline(path: Path) -> Pipeline:
    """Read and check a pipeline file; InvalidInput says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read pipeline file {str(path)!r}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    return parse_pipeline(document, default_name=path.stem)


def parse_pipeline(document: Any, default_name: str = "pipeline") -> Pipeline:
    if not isinstance(document, dict):
        raise InvalidInput("a pipeline is a mapping with `name`, `data` and `spec`")
    unknown = set(document) - {"name", "data", "spec", "description"}
    if unknown:
        raise InvalidInput(f"unknown pipeline keys: {', '.join(sorted(map(str, unknown)))}")
    name = str(document.get("name") or default_name)
    if "spec" not in document:
        raise InvalidInput("the pipeline has no `spec` (its sequential/parallel nodes)")
    builder = _Builder()
    builder.block(document["spec"], [], "spec")
    if not builder.nodes:
        raise InvalidInput("the pipeline's spec has no nodes")
    return Pipeline(name, _chunks(document.get("data")), builder.nodes)


def _chunks(data: Any) -> list[Data]:
    """A list is one chunk per item; any other value is a single chunk. An item that is
    a mapping with a `ChunkID` is a whole chunk; anything else is a chunk's RawData."""
    if data is None:
        return []
    items = data if isinstance(data, list) else [data]
    chunks = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and "ChunkID" in item:
            try:
                chunks.append(Data.model_validate(item))
            except ValidationError as exc:
                raise InvalidInput(f"data[{i}] is not a valid chunk: {exc}") from None
        else:
            chunks.append(Data.model_validate({"ChunkID": f"chunk-{i}", "RawData": item}))
    ids = [c.ChunkID for c in chunks]
    if len(set(ids)) != len(ids):
        raise InvalidInput("the pipeline's data has two chunks with the same ChunkID")
    return chunks


class _Builder:
    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.slugs: dict[str, str] = {}
        """Node names by the part of the run ID they give (`run_id_for`)."""

    def block(self, block: Any, preds: list[str], where: str) -> list[str]:
        """Add a block's nodes fed by `preds`; return the nodes that feed what follows."""
        if not isinstance(block, dict) or not (_BLOCK_KEYS & set(block)):
            raise InvalidInput(f"{where}: expected a mapping with `sequential` or `parallel`")
        unknown = set(block) - _BLOCK_KEYS
        if unknown:
            raise InvalidInput(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))}")
        exits: list[str] = []
        if "sequential" in block:
            prev = preds
            for i, item in enumerate(_items(block["sequential"], f"{where}.sequential")):
                prev = self.item(item, prev, f"{where}.sequential[{i}]")
            exits += prev
        if "parallel" in block:
            for i, item in enumerate(_items(block["parallel"], f"{where}.parallel")):
                exits += self.item(item, preds, f"{where}.parallel[{i}]")
        return list(dict.fromkeys(exits))

    def item(self, item: Any, preds: list[str], where: str) -> list[str]:
        if isinstance(item, dict) and "processor" in item:
            return [self.node(item, preds, where)]
        if isinstance(item, dict) and "name" in item:
            raise InvalidInput(f"{where}: node {item['name']!r} needs a `processor`")
        return self.block(item, preds, where)

    def node(self, item: dict[str, Any], preds: list[str], where: str) -> str:
        unknown = set(item) - _NODE_KEYS
        if unknown:
            raise InvalidInput(f"{where}: unknown node keys {', '.join(sorted(map(str, unknown)))}")
        name = item.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput(f"{where}: a node needs a `name`")
        if name in self.nodes:
            raise InvalidInput(f"{where}: two nodes are named {name!r}; names must be unique")
        other = self.slugs.setdefault(_slug(name), name)
        if other != name:
            # Two nodes on one run would silently share its chunks and its output.
            raise InvalidInput(
                f"{where}: nodes {other!r} and {name!r} would get the same run ID; "
                "make their names differ by more than case and punctuation"
            )
        where = f"{where} ({name})"
        processor = item["processor"]
        if isinstance(processor, str):
            processor = {"id": processor}
        if not isinstance(processor, dict):
            raise InvalidInput(f"{where}: `processor` is a mapping with `id` and `configuration`")
        unknown = set(processor) - _PROCESSOR_KEYS
        if unknown:
            raise InvalidInput(
                f"{where}: unknown processor keys {', '.join(sorted(map(str, unknown)))}"
            )
        proc_id = processor.get("id", processor.get("name"))
        if not isinstance(proc_id, str) or not proc_id:
            raise InvalidInput(f"{where}: the processor needs an `id` (e.g. noop)")
        node = Node(name, proc_id, processor.get("configuration"), _executor(item, where))
        self.nodes[name] = node
        for pred in preds:
            node.upstream.append(pred)
            self.nodes[pred].downstream.append(name)
        if item.get("children") is not None:
            self.block(item["children"], [name], f"{where}.children")
        return name


def _items(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: expected a list of nodes")
    return value


def _executor(item: dict[str, Any], where: str) -> dict[str, Any]:
    """A node's `executor` overrides, checked against ExecutorConfig now, not mid-run."""
    overrides = item.get("executor") or {}
    allowed = {"MaxWorkers", "WorkModel", "ChunkTimeout"}
    if not isinstance(overrides, dict) or set(overrides) - allowed:
        raise InvalidInput(f"{where}: `executor` may set only {', '.join(sorted(allowed))}")
    try:
        ExecutorConfig.model_validate(overrides)
    except ValidationError as exc:
        raise InvalidInput(f"{where}: invalid `executor`: {exc}") from None
    return dict(overrides)


def run_id_for(pipeline: str, node: str, suffix: str) -> str:
    """A readable run ID: pipeline and node names, plus a suffix unique to this launch."""
    return f"{_slug(pipeline)}-{_slug(node)}-{suffix}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-") or "x"
