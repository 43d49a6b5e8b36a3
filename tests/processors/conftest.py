"""Fixtures for the built-in processors: local services, repositories and helpers.

The fixture web server and the git repositories are made once per session (they are
read-only for the tests); each test gets its own executor whose data directory is in
its own tmp_path and whose allowed roots are the fixture folders.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import wait_run_done
from processors._servers import GIT_ENV, FixtureHTTP, GitDaemon
from wiz_executor import Settings

PAGE = (
    b"<html><head><title>Fixture page</title></head><body>"
    b'<h1 class="title">Hello</h1>'
    b'<ul><li class="item" data-id="1"><a href="/x">One</a></li>'
    b'<li class="item" data-id="2"><a href="/y">  Two  </a></li></ul>'
    b"</body></html>"
)


@dataclass(frozen=True)
class Repos:
    root: Path
    """The folder holding the bare repositories (allowed root; git daemon's base path)."""
    bare: Path
    main_commits: list[str]
    """Commits of `main`, oldest first."""
    tag_v1: str
    feature: str


@dataclass(frozen=True)
class Fixtures:
    files_root: Path
    """Fixture files on disk (an allowed root)."""
    files: dict[str, bytes]


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, **GIT_ENV, "GIT_TERMINAL_PROMPT": "0"}
    cmd = ["git", "-c", "user.name=Wiz Test", "-c", "user.email=wiz@example.invalid"]
    cmd += ["-c", "init.defaultBranch=main", *args]
    return subprocess.run(
        cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture(scope="session")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    """A repository with three commits on main, a tag v1 and a branch feature."""
    work = tmp_path_factory.mktemp("git-work") / "repo"
    root = tmp_path_factory.mktemp("git-root")
    _git("init", "--quiet", str(work))
    commits = []
    for i, (name, text) in enumerate(
        [("README.md", "# fixture\n"), ("src/a.txt", "a\n"), ("v3.txt", "three\n")]
    ):
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
        _git("add", name, cwd=work)
        _git("commit", "--quiet", "-m", f"commit {i + 1}", cwd=work)
        commits.append(_git("rev-parse", "HEAD", cwd=work))
        if i == 1:
            _git("tag", "-a", "v1", "-m", "version 1", cwd=work)
            _git("checkout", "--quiet", "-b", "feature", cwd=work)
            (work / "feature.txt").write_text("feature\n")
            _git("add", "feature.txt", cwd=work)
            _git("commit", "--quiet", "-m", "feature", cwd=work)
            feature = _git("rev-parse", "HEAD", cwd=work)
            _git("checkout", "--quiet", "main", cwd=work)
    bare = root / "repo.git"
    _git("clone", "--quiet", "--bare", str(work), str(bare))
    return Repos(root, bare, commits, commits[1], feature)


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    root = tmp_path_factory.mktemp("fixture-files")
    files = {
        "page.html": PAGE,
        "data.bin": bytes(range(256)) * 8192,  # 2 MiB
        "small.txt": b"hello, wiz\n",
        "logo.bin": b"\x89PNG not really",
    }
    for name, body in files.items():
        (root / name).write_bytes(body)
    return Fixtures(root, files)


@pytest.fixture(scope="session")
def web(fixtures: Fixtures, repos: Repos) -> Iterator[FixtureHTTP]:
    with FixtureHTTP(fixtures.files, repos.root) as server:
        yield server


@pytest.fixture(scope="session")
def git_daemon(repos: Repos) -> Iterator[GitDaemon]:
    with GitDaemon(repos.root) as daemon:
        yield daemon


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder that is neither the data directory nor an allowed root."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("not for processors\n")
    return folder


@pytest.fixture
def settings(tmp_path: Path, repos: Repos, fixtures: Fixtures) -> Settings:
    return Settings(
        data_dir=tmp_path / "wiz-data",
        db_path=tmp_path / "wiz.db",  # beside the data directory, whose files tests list
        allowed_roots=(repos.root, fixtures.files_root),
        downstream_backoff=0.01,
        shutdown_grace=5,
        allow_net=("127.0.0.1/32",),  # the fixture servers are on loopback
    )


def tree(folder: Path) -> list[str]:
    """Every path under `folder` (files and folders), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def files_in(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir())


async def run_chunks(
    client: httpx.AsyncClient,
    proc: str,
    run: str,
    processor_config: Any,
    chunks: list[dict[str, Any]],
    wait: float = 20.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Configure a run, send its chunks, wait for it; the run and its output chunks."""
    resp = await client.post(
        f"/processors/{proc}/runs/{run}/config",
        json={"ExpectedData": {"NumChunks": len(chunks)}, "Processor": processor_config},
    )
    assert resp.status_code == 200, resp.text
    for i, chunk in enumerate(chunks):
        body = {"ChunkID": f"c{i}", **chunk}
        resp = await client.post(f"/processors/{proc}/runs/{run}/data", json=body)
        assert resp.status_code == 200, resp.text
    info = await wait_run_done(client, proc, run, wait)
    data = (await client.get(f"/processors/{proc}/runs/{run}/data")).json()
    return info, data["Out"]


async def run_one(
    client: httpx.AsyncClient,
    proc: str,
    processor_config: Any,
    chunk: dict[str, Any] | None = None,
    run: str = "r",
    wait: float = 20.0,
) -> dict[str, Any]:
    """One chunk through a fresh run; its output chunk."""
    _, out = await run_chunks(
        client, proc, run, processor_config, [chunk or {"RawData": None}], wait
    )
    return out[0]


def failed_with(out: dict[str, Any], *words: str) -> None:
    """Assert the output chunk FAILED with a message holding every one of `words`."""
    assert out["State"] == "FAILED", out
    message = out.get("Error") or ""
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
