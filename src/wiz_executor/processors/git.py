"""`git`: clone a repository at a branch, tag or commit into the data directory.

It drives the `git` program rather than a Python library. git is the reference
implementation: every transport (smart HTTP, `git://`, `file://`), shallow and
single-branch clones, protocol v2 and fetching one commit by ID work exactly as users
know them from the command line, and its error messages are the ones they can search
for. Dulwich (pure Python) is slower on large packs and thinner on shallow fetches,
pygit2 needs libgit2 and its shallow support is partial, and GitPython runs the same
program underneath. The process runs with a clean environment (no system or global
config, no prompts, only the file/git/http/https transports, so no `ext::` commands),
in its own process group so cancellation kills it and its helpers, and a failed clone
is removed.

A local source (a path, or `file://`) is checked twice: its path against the sandbox,
then what git itself makes of it. git follows a `.git` file (`gitdir: ELSEWHERE`), a
`commondir` file, `objects/info/alternates` and symlinks to other folders, so each
folder `git rev-parse --git-dir --git-common-dir` names, each symlink inside them and
each alternate object store must lie inside the allowed folders too; the clone then
reads the resolved git directory itself, with `--no-local` (no hard links, no borrowed
alternates).

The output is a FILESYSTEM_REF to the checkout, with RawData recording the resolved
commit, so the run can be reproduced exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, field_validator

from ..errors import ChunkFailed, InvalidConfiguration
from ..netpolicy import NetworkPolicy
from ._base import Context, Input, Limits, Output, Processor, ProcessorConfig
from ._sandbox import OutsideSandbox, Sandbox, partial_result, remove_quietly

SCHEMES = ("https", "http", "git", "file")
_HEX = re.compile(r"[0-9a-fA-F]{4,64}")
_PROGRESS = re.compile(r"(Receiving objects|Resolving deltas):\s+\d+% \((\d+)/(\d+)\)")
MAX_ALTERNATES_DEPTH = 6
"""Alternates of alternates checked; git itself ignores those nested deeper than 5."""

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_ASKPASS": "",
    "SSH_ASKPASS": "",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_ALLOW_PROTOCOL": "file:git:http:https",
    "LC_ALL": "C",
    "LANGUAGE": "C",
}
GIT_OPTIONS = (
    "-c",
    "advice.detachedHead=false",
    "-c",
    "init.defaultBranch=wiz",
    "-c",
    "credential.helper=",
    "-c",
    "protocol.version=2",
)


class GitConfig(ProcessorConfig):
    URL: str = Field(
        "",
        description="repository: https://, http://, git://, file:// or a local path "
        "inside the allowed folders",
    )
    ReferenceName: str = Field(
        "", description="branch or tag (`main`, `v1.0`, `refs/heads/main`); default: HEAD"
    )
    Commit: str = Field("", description="commit to check out (full or abbreviated ID)")
    Depth: int = Field(0, ge=0, description="history depth; 0 = full history")
    SingleBranch: bool = Field(False, description="fetch only the branch being checked out")
    Timeout: float = Field(0, ge=0, description="seconds the clone may take; 0 = no limit")

    @field_validator("Commit")
    @classmethod
    def _hex(cls, value: str) -> str:
        if value and not _HEX.fullmatch(value):
            raise ValueError(f"{value!r} is not a commit ID (4 to 64 hex digits)")
        return value.lower()

    @field_validator("ReferenceName")
    @classmethod
    def _ref(cls, value: str) -> str:
        if value.startswith("-") or any(c in value for c in " ~^:?*[\\\x00"):
            raise ValueError(f"{value!r} is not a valid branch or tag name")
        return value


class Git(Processor[GitConfig]):
    """Clones `URL` into the chunk's folder; a chunk's RawData may be a URL string or
    an object overriding `URL`, `ReferenceName`, `Commit`, ... for that chunk."""

    id = "git"
    name = "Git clone"
    version = "0.1.0"
    Config = GitConfig

    @classmethod
    def config_for_chunk(cls, run_config: BaseModel, raw_data: Any) -> BaseModel:
        if isinstance(raw_data, str):
            raw_data = {"URL": raw_data}
        return super().config_for_chunk(run_config, raw_data)

    @classmethod
    def apply_limits(cls, config: BaseModel, limits: Limits) -> BaseModel:
        """A URL git may not use, or a local path outside the allowed folders, is
        refused at Configure (what git makes of the folder is checked per chunk, when
        it exists)."""
        assert isinstance(config, GitConfig)
        if config.URL:
            try:
                _classify(config.URL, Sandbox(limits.data_dir, limits.allowed_roots))
            except OutsideSandbox as exc:
                raise InvalidConfiguration(
                    f"Processor.URL: {exc.message}; processors read only there (the "
                    "executor's --allow-root adds folders)"
                ) from None
            except ChunkFailed as exc:
                raise InvalidConfiguration(f"Processor.URL: {exc.message}") from None
        return config

    async def run(self, data: Input, context: Context[GitConfig]) -> Output:
        config = context.config
        if not config.URL:
            raise ChunkFailed(
                "git needs a repository URL: set URL in the configuration or the chunk's RawData"
            )
        git = shutil.which("git")
        if git is None:
            raise ChunkFailed("the git program is not installed on this executor's machine")
        sandbox = Sandbox.of(context)
        source, local = _classify(config.URL, sandbox)
        source, pins = await _pinned(source, context.network)  # network URLs only
        folder = context.scratch_dir
        dest = folder / _repo_name(config.URL)
        clone = _Clone(git, source, dest, config, context, pins)
        if local is not None:
            if not local.is_dir():
                raise ChunkFailed(f"repository path {config.URL!r} is not a folder")
            await clone.use_local(local, sandbox)
        await asyncio.to_thread(remove_quietly, dest)  # left by an earlier run of this ID
        async with partial_result(dest, folder, config.Timeout, f"clone of {config.URL}"):
            state = await clone.run()
        return Output.file(dest, state)


def _classify(url: str, sandbox: Sandbox) -> tuple[str, Path | None]:
    """The URL git is given, and the checked real path when the source is local
    (which `_Clone.use_local` then checks as git resolves it)."""
    if url.startswith("-"):
        raise ChunkFailed(f"{url!r} is not a repository URL")
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme == "file":
        path = sandbox.file_url_path(url)
        return path.as_uri(), path
    if scheme:
        if scheme not in SCHEMES:
            raise ChunkFailed(
                f"cannot clone {url!r}: git supports https://, http://, git://, file:// "
                "and local paths"
            )
        return url, None
    if re.match(r"^[^/]*:", url):  # scp-like "host:path" means ssh
        raise ChunkFailed(
            f"cannot clone {url!r}: this looks like an ssh address or a transport helper; "
            "only https://, http://, git://, file:// URLs and local paths are supported"
        )
    path = sandbox.readable(url, "repository path")
    # file:// (not a bare path) so that Depth is honoured instead of hard-linking.
    return path.as_uri(), path


DEFAULT_PORTS = {"http": 80, "https": 443, "git": 9418}


async def _pinned(source: str, network: NetworkPolicy) -> tuple[str, tuple[str, ...]]:
    """Check a network URL's host against the network policy, and pin git to the
    address that was checked, so git's own lookup cannot land elsewhere (DNS rebinding).

    http(s): `http.curloptResolve` hands curl the address for host:port (the URL, and
    so the Host header and TLS verification, keep the name), and redirects are not
    followed (a redirect would take git to a host nobody checked; it also stops
    http-alternates). git://: the protocol has no such option, so a URL naming a host
    is rewritten to the checked address (the daemon then sees the address as its
    virtual host). Returns the URL for git and the `-c` options to run it with."""
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return source, ()
    host = parts.hostname
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise ChunkFailed(f"{source!r} has an invalid port") from None
    try:
        addresses = await network.resolve_checked(host, port)
    except OSError as exc:
        raise ChunkFailed(f"cannot resolve {host}: {exc}") from None
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    if scheme == "git":
        if host.strip("[]") != str(address):
            netloc = f"{literal}:{port}"
            source = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return source, ()
    no_redirects = ("-c", "http.followRedirects=false")
    if host.strip("[]") == str(address):  # an address already: curl looks nothing up
        return source, no_redirects
    return source, ("-c", f"http.curloptResolve={host}:{port}:{literal}", *no_redirects)


def _repo_name(url: str) -> str:
    tail = url.rstrip("/").rpartition("/")[2].rpartition(":")[2]
    tail = tail.removesuffix(".git")
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in tail).lstrip(".")
    return cleaned or "repo"


class GitFailed(ChunkFailed):
    """A git command failed; the message ends with git's own explanation."""


class _Clone:
    def __init__(
        self,
        git: str,
        source: str,
        dest: Path,
        config: GitConfig,
        context: Context[GitConfig],
        pins: tuple[str, ...] = (),
    ) -> None:
        self.git = git
        self.source = source
        self.pins = pins
        """`-c` options pinning git to the address the network policy checked."""
        self.dest = dest
        self.config = config
        self.context = context
        self.env = {**_base_env(), **GIT_ENV}
        self.local = False

    async def use_local(self, path: Path, sandbox: Sandbox) -> None:
        """Check a local source as git resolves it, and clone its git directory.

        git is asked where the repository at `path` keeps its git directory and its
        common directory (following `.git` files and `commondir`), looking at `path`
        alone (GIT_CEILING_DIRECTORIES: not at its parents); both, and every alternate
        object store, must lie inside the allowed folders. The clone is then made from
        the git directory itself, so git has nothing left to resolve differently.
        """
        url = self.config.URL
        env = {**self.env, "GIT_CEILING_DIRECTORIES": str(path.parent)}
        out = await self._git("rev-parse", "--git-dir", "--git-common-dir", cwd=path, env=env)
        lines = out.splitlines()
        if len(lines) != 2:
            raise ChunkFailed(f"git could not tell where {url!r} keeps its repository")
        git_dir = sandbox.readable(path / lines[0], f"the git directory of {url!r}")
        common = sandbox.readable(path / lines[1], f"the common git directory of {url!r}")
        await asyncio.to_thread(_check_git_dir, git_dir, common, sandbox, url)
        self.source = git_dir.as_uri()
        self.local = True

    async def run(self) -> dict[str, Any]:
        config = self.config
        ref = _short_ref(config.ReferenceName)
        if config.Commit or (config.ReferenceName and ref is None):
            await self._fetch_one()
        else:
            await self._clone(ref)
        if self.source != config.URL and "://" in config.URL and not config.URL.startswith("file"):
            # A git:// URL was cloned through its checked address: keep the name as origin.
            await self._git("remote", "set-url", "origin", "--", config.URL, cwd=self.dest)
        commit = (await self._git("rev-parse", "HEAD", cwd=self.dest)).strip()
        if config.Commit and not commit.startswith(config.Commit):
            raise ChunkFailed(f"checked out {commit}, not the commit {config.Commit} asked for")
        return {
            "URL": config.URL,
            "Commit": commit,
            "ReferenceName": await self._resolved_ref(),
            "Depth": config.Depth,
        }

    async def _clone(self, branch: str | None) -> None:
        config = self.config
        args = ["clone", "--progress"]
        if self.local:
            args.append("--no-local")
        if branch:
            args.append(f"--branch={branch}")
        if config.Depth:
            args.append(f"--depth={config.Depth}")
        args.append("--single-branch" if config.SingleBranch else "--no-single-branch")
        await self._git(*args, "--", self.source, str(self.dest), what="clone")

    async def _fetch_one(self) -> None:
        """Check out a commit (or an unusual ref): fetch just it when the server allows,
        otherwise the branch or all branches and tags, then look for it there."""
        config = self.config
        await self._git("init", "--quiet", str(self.dest))
        await self._git("remote", "add", "origin", "--", self.source, cwd=self.dest)
        want = config.Commit or config.ReferenceName
        depth = [f"--depth={config.Depth}"] if config.Depth else []
        fetched = False
        if not config.Commit or len(config.Commit) in (40, 64):
            try:
                await self._fetch(*depth, "origin", want)
                fetched = True
            except GitFailed:
                if not config.Commit:
                    raise
        if not fetched:
            refspecs = [config.ReferenceName] if config.ReferenceName else []
            if not refspecs:
                refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
            await self._fetch("origin", *refspecs)
        target = "FETCH_HEAD" if not config.Commit else config.Commit
        try:
            await self._git(
                "rev-parse", "--verify", "--quiet", f"{target}^{{commit}}", cwd=self.dest
            )
        except GitFailed:
            raise ChunkFailed(f"commit {want!r} is not in {config.URL}") from None
        await self._git("checkout", "--quiet", "--detach", target, cwd=self.dest)

    async def _fetch(self, *args: str) -> None:
        await self._git("fetch", "--progress", "--no-tags", *args, cwd=self.dest, what="fetch")

    async def _resolved_ref(self) -> str | None:
        """The full name of what was checked out: refs/heads/x, refs/tags/y, or None for
        a detached commit."""
        try:
            return (await self._git("symbolic-ref", "--quiet", "HEAD", cwd=self.dest)).strip()
        except GitFailed:
            pass
        name = self.config.ReferenceName
        if not name or self.config.Commit:
            return None
        return name if name.startswith("refs/") else f"refs/tags/{name}"

    async def _git(
        self,
        *args: str,
        cwd: Path | None = None,
        what: str = "",
        env: dict[str, str] | None = None,
    ) -> str:
        """Run git; its stdout, or `GitFailed` with the lines git explained itself in."""
        proc = await asyncio.create_subprocess_exec(
            self.git,
            *GIT_OPTIONS,
            *self.pins,
            *args,
            cwd=cwd,
            env=env or self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            out, errors = await asyncio.gather(proc.stdout.read(), self._watch(proc.stderr))
            code = await proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            raise
        if code != 0:
            verb = what or args[0]
            raise GitFailed(
                f"git {verb} of {self.config.URL} failed: {_explain(errors) or f'exit {code}'}"
            )
        return out.decode("utf-8", "replace")

    async def _watch(self, stream: asyncio.StreamReader) -> list[str]:
        """Read git's stderr: progress lines become progress reports, the rest is kept."""
        lines: list[str] = []
        buffer = b""
        while block := await stream.read(4096):
            buffer += block
            *complete, buffer = re.split(rb"[\r\n]", buffer)
            for raw in complete:
                line = raw.decode("utf-8", "replace").strip()
                match = _PROGRESS.search(line)
                if match:
                    if match[1] == "Receiving objects":
                        self.context.report_progress(int(match[2]), int(match[3]))
                elif line:
                    lines.append(line)
                    del lines[:-20]
        if buffer.strip():
            lines.append(buffer.decode("utf-8", "replace").strip())
        return lines


def _check_git_dir(git_dir: Path, common: Path, sandbox: Sandbox, url: str) -> None:
    """What git reads besides the two folders: a `.git` inside the git directory (which
    git tries before the folder itself), symlinks inside either (a checked-out folder
    that looks like a repository may have `objects` lead to another one's), and the
    alternates. (Blocking: in a thread.)"""
    if os.path.lexists(git_dir / ".git"):
        raise ChunkFailed(f"the git directory of {url!r} holds a .git of its own; refused")
    for folder in dict.fromkeys((git_dir, common)):
        _check_links(folder, sandbox, url)
    _check_alternates(common / "objects", sandbox, url, 0)


def _check_links(folder: Path, sandbox: Sandbox, url: str) -> None:
    """Every symlink under a git directory must lead inside the allowed folders (git
    makes none there itself)."""
    for top, dirs, files in os.walk(folder):
        for name in (*dirs, *files):
            path = Path(top, name)
            if path.is_symlink():
                sandbox.readable(path, f"a symlink in the git directory of {url!r}")


def _check_alternates(objects: Path, sandbox: Sandbox, url: str, depth: int) -> None:
    """Every object store `objects` borrows from (objects/info/alternates, and theirs in
    turn) must lie inside the allowed folders; http-alternates are refused outright.
    (Blocking: called from a thread.)"""
    info = objects / "info"
    if os.path.lexists(info / "http-alternates"):
        raise ChunkFailed(f"{url!r} borrows objects over http (objects/info/http-alternates)")
    try:
        text = (info / "alternates").read_text("utf-8", "replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ChunkFailed(f"cannot read the alternates of {url!r}: {exc.strerror}") from None
    what = f"an object store of {url!r} (objects/info/alternates)"
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry.startswith('"'):
            raise ChunkFailed(f"{what}: quoted alternates are not supported; refused")
        if depth >= MAX_ALTERNATES_DEPTH:
            raise ChunkFailed(f"{what}: alternates nest too deep; refused")
        real = sandbox.readable(objects / entry, what)  # relative ones start at `objects`
        _check_alternates(real, sandbox, url, depth + 1)


def _short_ref(name: str) -> str | None:
    """What `git clone --branch` takes for a reference; None if it takes no such name."""
    if not name:
        return ""
    for prefix in ("refs/heads/", "refs/tags/"):
        if name.startswith(prefix):
            return name.removeprefix(prefix)
    return None if name.startswith("refs/") else name


def _explain(lines: list[str]) -> str:
    """git's own explanation: its fatal/error lines, else the last thing it said."""
    important = [
        line.split(":", 1)[1].strip() for line in lines if line.startswith(("fatal:", "error:"))
    ]
    return "; ".join(important) if important else (lines[-1] if lines else "")


def _base_env() -> dict[str, str]:
    """The parts of our environment git needs; none of the user's GIT_* settings, and
    no proxy variables: a proxy would resolve and connect on its own, out of the network
    policy's reach (the executor's HTTP clients ignore them too)."""
    keep = ("PATH", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("PATH", os.defpath)
    return env
