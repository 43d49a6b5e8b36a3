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

The file's shape is checked by pydantic models (`PipelineSpec` and the models it holds):
an unknown key is refused with its name and the keys allowed there, and every error
names the path of the field (`spec.sequential[1].parallel[0] (left).processor.id`) and,
for a file, its line. What the shape cannot say (unique node names, distinct run IDs,
unique ChunkIDs, at least one node) is checked while the graph is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..api import Data, ExecutorConfig
from ..errors import InvalidInput

Loc = tuple[str | int, ...]
"""Where a value sits in the document: keys and list indexes from the top."""

_EXECUTOR_KEYS = ("ChunkTimeout", "MaxWorkers", "WorkModel")


def _problem(message: str) -> PydanticCustomError:
    """An error whose message is shown as written (no "Value error, " prefix)."""
    return PydanticCustomError("pipeline", message)


class _Spec(BaseModel):
    """A mapping of the pipeline file: unknown keys are refused, naming them and the
    keys allowed there (a misspelt `paralel` must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    what: ClassVar[str] = "this mapping"

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _problem(f"expected {cls.what}, got {_kind(data)}")
        unknown = sorted(map(str, set(data) - set(cls.model_fields)))
        if unknown:
            keys = ", ".join(repr(k) for k in unknown)
            allowed = ", ".join(f"`{k}`" for k in cls.model_fields)
            raise _problem(
                f"unknown key{'s' if len(unknown) > 1 else ''} {keys} (allowed: {allowed})"
            )
        return data


def _processor_shorthand(value: Any) -> Any:
    return {"id": value} if isinstance(value, str) else value


class ProcessorSpec(_Spec):
    """`processor:` of a node: which processor runs it, and its configuration."""

    what: ClassVar[str] = "a mapping with `id` and `configuration` (or just the id)"

    id: Any = None
    name: Any = None
    """The original's spelling of `id`."""
    version: Any = None
    type: Any = None
    configuration: Any = None
    """The run's `Processor` configuration, checked by the processor at Configure."""

    @model_validator(mode="after")
    def _has_an_id(self) -> ProcessorSpec:
        if not isinstance(self.proc_id, str) or not self.proc_id:
            raise _problem("the processor needs an `id` (e.g. noop)")
        return self

    @property
    def proc_id(self) -> Any:
        return self.id if self.id is not None else self.name


class NodeSpec(_Spec):
    """A node: one processor run."""

    what: ClassVar[str] = "a node"

    name: str
    processor: Annotated[ProcessorSpec, BeforeValidator(_processor_shorthand)]
    children: BlockSpec | None = None
    description: Any = None
    executor: dict[str, Any] | None = None
    """`ExecutorConfig` fields for this run: MaxWorkers, WorkModel, ChunkTimeout."""

    @field_validator("name", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            raise _problem("a node needs a `name` (a non-empty string)")
        return value

    @field_validator("executor")
    @classmethod
    def _executor(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Checked against ExecutorConfig now, not mid-run."""
        if not value:
            return value
        unknown = sorted(map(str, set(value) - set(_EXECUTOR_KEYS)))
        if unknown:
            keys = ", ".join(repr(k) for k in unknown)
            raise _problem(
                f"unknown key {keys}: `executor` may set only {', '.join(_EXECUTOR_KEYS)}"
            )
        try:
            ExecutorConfig.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            place = ".".join(map(str, error["loc"]))
            raise _problem(f"invalid {place}: {error['msg']}") from None
        return value


def _item_kind(value: Any) -> str:
    """A node has a `processor` (or at least a `name`); anything else is a block."""
    if isinstance(value, dict) and ("processor" in value or "name" in value):
        return "node"
    return "block"


class BlockSpec(_Spec):
    """A block: a `sequential` chain and/or `parallel` branches."""

    what: ClassVar[str] = "a node (with `processor`) or a block (with `sequential` or `parallel`)"

    sequential: list[Item] | None = None
    parallel: list[Item] | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> BlockSpec:
        if self.sequential is None and self.parallel is None:
            raise _problem("expected a mapping with `sequential` or `parallel`")
        return self


Item = Annotated[
    Annotated[NodeSpec, Tag("node")] | Annotated[BlockSpec, Tag("block")],
    Discriminator(_item_kind),
]


BlockSpec.model_rebuild()
NodeSpec.model_rebuild()


class PipelineSpec(_Spec):
    """A whole pipeline file."""

    what: ClassVar[str] = "a mapping with `name`, `data` and `spec`"

    name: Any = None
    description: Any = None
    data: Any = None
    """The input chunks: a list (one chunk per item), or one value (a single chunk)."""
    spec: BlockSpec


_MISSING = {
    "spec": "the pipeline has no `spec` (its sequential/parallel nodes)",
    "processor": "a node needs a `processor`",
}


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
    loc: Loc = ()
    """Where the node is in the pipeline document (empty for a node built in code)."""

    @property
    def first(self) -> bool:
        return not self.upstream

    @property
    def final(self) -> bool:
        return not self.downstream


def _dotted(loc: Sequence[str | int]) -> str:
    return ".".join(map(str, loc)) or "the pipeline"


@dataclass
class Pipeline:
    name: str
    data: list[Data]
    nodes: dict[str, Node]
    """By name, in an order where every node comes after its upstream nodes."""
    at: Callable[[Loc], str] = field(default=_dotted, repr=False, compare=False)
    """A place of the document for people: its path, node name and line (from a file)."""

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
    document, line_of = read_pipeline_file(path)
    try:
        return parse_pipeline(document, default_name=path.stem, line_of=line_of)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc.message}") from None


def read_pipeline_file(path: Path) -> tuple[Any, Callable[[Loc], int | None]]:
    """A pipeline file's parsed YAML and the line finder of its places; InvalidInput
    when it cannot be read or is not YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read pipeline file {str(path)!r}: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
        tree = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{path}: not valid YAML: {exc}") from None
    return document, _line_finder(tree)


def parse_pipeline(
    document: Any,
    default_name: str = "pipeline",
    line_of: Callable[[Loc], int | None] | None = None,
) -> Pipeline:
    """Check a pipeline document (parsed YAML) and build its graph. `line_of` gives
    the line of a place in the document, when it came from a file."""
    pipeline, problems = check_document(document, default_name, line_of)
    if pipeline is None or problems:
        raise InvalidInput("; ".join(problems))
    return pipeline


def check_document(
    document: Any,
    default_name: str = "pipeline",
    line_of: Callable[[Loc], int | None] | None = None,
) -> tuple[Pipeline | None, list[str]]:
    """`parse_pipeline` that gathers every problem it finds rather than stopping at the
    first: the pipeline and the problems, each naming its place (for `wiz pipeline
    validate`, which lists them all). The pipeline is None when the document's shape is
    wrong; with problems in its graph (names), it is what could be built, to be checked
    further but never run."""
    places = _Places(document, line_of)
    if not isinstance(document, dict):
        return None, ["a pipeline is a mapping with `name`, `data` and `spec`"]
    try:
        spec = PipelineSpec.model_validate(document)
    except ValidationError as exc:
        return None, [places.explain(e) for e in exc.errors()]
    builder = _Builder(places)
    builder.block(spec.spec, [], ("spec",))
    problems = builder.problems
    if not builder.nodes:
        return None, [*problems, "the pipeline's spec has no nodes"]
    chunks: list[Data] = []
    try:
        chunks = _chunks(spec.data)
    except InvalidInput as exc:
        problems.append(exc.message)
    return Pipeline(str(spec.name or default_name), chunks, builder.nodes, places.at), problems


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


class _Places:
    """Names places of the document for people: `spec.sequential[1] (left).processor`,
    with the line when known."""

    def __init__(self, document: Any, line_of: Callable[[Loc], int | None] | None) -> None:
        self.document = document
        self.line_of = line_of

    def where(self, loc: Sequence[str | int]) -> tuple[str, Loc]:
        """The readable path of `loc` and the part of it found in the document (pydantic
        adds the tags of unions, e.g. `node`, which the document does not have)."""
        text, found, value = "", [], self.document
        for part in loc:
            if isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value):
                text += f"[{part}]"
            elif isinstance(value, dict) and part in value:
                text += f".{part}" if text else str(part)
            else:
                continue  # a union's tag, not a place in the document
            found.append(part)
            value = value[part]
            name = value.get("name") if isinstance(value, dict) else None
            if isinstance(part, int) and isinstance(name, str) and name:
                text += f" ({name})"  # a node: say which
        return text or "the pipeline", tuple(found)

    def at(self, loc: Sequence[str | int]) -> str:
        text, found = self.where(loc)
        line = self.line_of(found) if self.line_of else None
        return f"{text} (line {line})" if line else text

    def explain(self, error: Any) -> str:
        loc = tuple(error["loc"])
        kind = error["type"]
        if kind == "missing" and loc:
            field_name = loc[-1]
            hint = _MISSING.get(str(field_name), f"needs `{field_name}`")
            return f"{self.at(loc[:-1])}: {hint}" if loc[:-1] else hint
        if kind == "extra_forbidden" and loc:  # caught by _known_keys first; kept as a net
            return f"{self.at(loc[:-1])}: unknown key {loc[-1]!r}"
        return f"{self.at(loc)}: {error['msg']}"


def _line_finder(tree: yaml.Node | None) -> Callable[[Loc], int | None]:
    """The 1-based line of a place in a YAML document, from its composed node tree."""

    def line_of(loc: Loc) -> int | None:
        node = tree
        for part in loc:
            if isinstance(node, yaml.MappingNode):
                node = next((v for k, v in node.value if k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                node = node.value[part] if part < len(node.value) else None
            else:
                node = None
            if node is None:
                return None
        return None if node is None else node.start_mark.line + 1

    return line_of


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    return repr(value)


class _Builder:
    def __init__(self, places: _Places) -> None:
        self.places = places
        self.nodes: dict[str, Node] = {}
        self.slugs: dict[str, str] = {}
        """Node names by the part of the run ID they give (`run_id_for`)."""
        self.problems: list[str] = []
        """What is wrong with the graph, in the order found (the build goes on after one,
        so that all are reported at once)."""

    def block(self, block: BlockSpec, preds: list[str], loc: Loc) -> list[str]:
        """Add a block's nodes fed by `preds`; return the nodes that feed what follows."""
        exits: list[str] = []
        if block.sequential is not None:
            prev = preds
            for i, item in enumerate(block.sequential):
                prev = self.item(item, prev, (*loc, "sequential", i))
            exits += prev
        if block.parallel is not None:
            for i, item in enumerate(block.parallel):
                exits += self.item(item, preds, (*loc, "parallel", i))
        return list(dict.fromkeys(exits))

    def item(self, item: NodeSpec | BlockSpec, preds: list[str], loc: Loc) -> list[str]:
        if isinstance(item, NodeSpec):
            return [self.node(item, preds, loc)]
        return self.block(item, preds, loc)

    def node(self, spec: NodeSpec, preds: list[str], loc: Loc) -> str:
        name = spec.name
        other = self.slugs.setdefault(_slug(name), name)
        if name in self.nodes:
            self.problems.append(
                f"{self.places.at(loc)}: two nodes are named {name!r}; names must be unique"
            )
            name = f"{name} #{len(self.nodes)}"  # kept apart, so its children still hang on
        elif other != name:
            # Two nodes on one run would silently share its chunks and its output.
            self.problems.append(
                f"{self.places.at(loc)}: nodes {other!r} and {name!r} would get the same "
                "run ID; make their names differ by more than case and punctuation"
            )
        processor = spec.processor
        node = Node(
            name,
            str(processor.proc_id),
            processor.configuration,
            dict(spec.executor or {}),
            loc=loc,
        )
        self.nodes[name] = node
        for pred in preds:
            node.upstream.append(pred)
            self.nodes[pred].downstream.append(name)
        if spec.children is not None:
            self.block(spec.children, [name], (*loc, "children"))
        return name


def run_id_for(pipeline: str, node: str, suffix: str) -> str:
    """A readable run ID: pipeline and node names, plus a suffix unique to this launch."""
    return f"{_slug(pipeline)}-{_slug(node)}-{suffix}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-") or "x"
