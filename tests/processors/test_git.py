"""`git` through the HTTP API: file://, smart HTTP and git daemon, all on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from processors._servers import FixtureHTTP, GitDaemon
from processors.conftest import Repos, failed_with, files_in, run_one
from wiz_executor import Settings


def checkout(out: dict[str, Any], settings: Settings) -> Path:
    assert out["State"] == "SUCCEEDED", out
    assert out["Format"] == "FILESYSTEM_REF"
    assert out["FilesystemReference"]["Driver"] == "local"
    path = Path(out["FilesystemReference"]["Location"])
    assert path.is_relative_to(settings.data_dir.resolve())
    assert (path / ".git").is_dir()
    return path


def names(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if ".git" not in p.parts)


async def test_clone_file_url_at_head(
    client: httpx.AsyncClient, repos: Repos, settings: Settings
) -> None:
    out = await run_one(client, "git", {"URL": repos.bare.as_uri()})
    path = checkout(out, settings)
    assert path.name == "repo"
    assert names(path) == ["README.md", "src", "src/a.txt", "v3.txt"]
    assert out["RawData"]["Commit"] == repos.main_commits[-1]
    assert out["RawData"]["ReferenceName"] == "refs/heads/main"


async def test_clone_a_tag(client: httpx.AsyncClient, repos: Repos, settings: Settings) -> None:
    out = await run_one(client, "git", {"URL": repos.bare.as_uri(), "ReferenceName": "v1"})
    path = checkout(out, settings)
    assert names(path) == ["README.md", "src", "src/a.txt"]
    assert out["RawData"]["Commit"] == repos.tag_v1
    assert out["RawData"]["ReferenceName"] == "refs/tags/v1"


async def test_shallow_single_branch(
    client: httpx.AsyncClient, repos: Repos, settings: Settings
) -> None:
    config = {
        "URL": str(repos.bare),  # a local path, cloned through file:// so Depth holds
        "ReferenceName": "refs/heads/feature",
        "Depth": 1,
        "SingleBranch": True,
    }
    out = await run_one(client, "git", config)
    path = checkout(out, settings)
    assert "feature.txt" in names(path)
    assert out["RawData"]["Commit"] == repos.feature
    assert out["RawData"]["ReferenceName"] == "refs/heads/feature"
    assert (path / ".git" / "shallow").read_text().split() == [repos.feature]


async def check_older_commit(client: httpx.AsyncClient, repos: Repos, want: str) -> None:
    commit = repos.main_commits[0]
    out = await run_one(client, "git", {"URL": repos.bare.as_uri(), "Commit": want, "Depth": 1})
    assert out["State"] == "SUCCEEDED", out
    assert names(Path(out["FilesystemReference"]["Location"])) == ["README.md"]
    assert out["RawData"]["Commit"] == commit
    assert out["RawData"]["ReferenceName"] is None


async def test_checkout_an_older_commit(client: httpx.AsyncClient, repos: Repos) -> None:
    await check_older_commit(client, repos, repos.main_commits[0])


async def test_checkout_an_abbreviated_commit(client: httpx.AsyncClient, repos: Repos) -> None:
    # A short ID cannot be fetched by itself: git fetches the branches and finds it there.
    await check_older_commit(client, repos, repos.main_commits[0][:10])


async def test_chunk_overrides_the_reference(
    client: httpx.AsyncClient, repos: Repos, settings: Settings
) -> None:
    out = await run_one(
        client, "git", {"URL": repos.bare.as_uri()}, {"RawData": {"ReferenceName": "feature"}}
    )
    assert out["RawData"]["Commit"] == repos.feature


async def test_clone_over_smart_http(
    client: httpx.AsyncClient, web: FixtureHTTP, repos: Repos, settings: Settings
) -> None:
    out = await run_one(client, "git", {"URL": web.url("/git/repo.git"), "Depth": 1})
    path = checkout(out, settings)
    assert names(path) == ["README.md", "src", "src/a.txt", "v3.txt"]
    assert out["RawData"]["Commit"] == repos.main_commits[-1]
    assert web.seen("/git/repo.git/info/refs")


async def test_clone_from_git_daemon(
    client: httpx.AsyncClient, git_daemon: GitDaemon, repos: Repos, settings: Settings
) -> None:
    out = await run_one(client, "git", {"URL": git_daemon.url("repo.git"), "ReferenceName": "v1"})
    checkout(out, settings)
    assert out["RawData"]["Commit"] == repos.tag_v1


async def test_progress_is_reported(
    client: httpx.AsyncClient, executor: Any, web: FixtureHTTP, settings: Settings
) -> None:
    seen: list[tuple[int, int | None]] = []
    executor.runs.listeners.append(
        lambda run, chunk: seen.append(chunk.progress) if chunk and chunk.progress else None
    )
    out = await run_one(client, "git", {"URL": web.url("/git/repo.git")})
    checkout(out, settings)
    assert seen, "git reported no progress"
    done, total = seen[-1]
    assert total is not None
    assert 0 < done <= total


async def test_unknown_branch_fails_with_gits_message(
    client: httpx.AsyncClient, repos: Repos, settings: Settings
) -> None:
    out = await run_one(client, "git", {"URL": repos.bare.as_uri(), "ReferenceName": "nope"})
    failed_with(out, "git clone of", "Remote branch nope not found")
    assert files_in(settings.data_dir) == []


async def test_unknown_commit(client: httpx.AsyncClient, repos: Repos, settings: Settings) -> None:
    out = await run_one(client, "git", {"URL": repos.bare.as_uri(), "Commit": "deadbeef"})
    failed_with(out, "commit 'deadbeef' is not in")
    assert files_in(settings.data_dir) == []


async def test_missing_repository_over_http(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    out = await run_one(client, "git", {"URL": web.url("/git/missing.git")})
    failed_with(out, "git clone of", "not found")
    assert files_in(settings.data_dir) == []


async def test_timeout_kills_git_and_removes_the_clone(
    client: httpx.AsyncClient, web: FixtureHTTP, settings: Settings
) -> None:
    # The server answers git's first request with a few bytes, then stays silent.
    out = await run_one(client, "git", {"URL": web.url("/slow/repo.git"), "Timeout": 0.5})
    failed_with(out, "did not finish within Timeout=0.5 s")
    assert files_in(settings.data_dir) == []


async def test_paths_and_transports_outside_the_rules(
    client: httpx.AsyncClient, outside: Path, settings: Settings
) -> None:
    cases = {
        str(outside): "outside the data directory",
        outside.as_uri(): "outside the data directory",
        "../../etc": "outside",
        "ssh://example.org/repo.git": "git supports",
        "git@example.org:repo.git": "looks like an ssh address",
        "ext::sh -c touch% /tmp/pwned": "transport helper",
        "--upload-pack=touch /tmp/pwned": "is not a repository URL",
    }
    for i, (url, words) in enumerate(cases.items()):
        # In the run's configuration these are a 400 at Configure (test_ceilings.py);
        # a chunk's override brings them past it, and the chunk is refused.
        resp = await client.post(
            f"/processors/git/runs/c{i}/config", json={"Processor": {"URL": url}}
        )
        assert resp.status_code == 400, (url, resp.text)
        out = await run_one(client, "git", {}, {"RawData": url}, run=f"r{i}")
        failed_with(out, words)
    assert files_in(settings.data_dir) == []
    assert files_in(outside) == ["secret.txt"]


async def test_bad_configuration_is_a_400(client: httpx.AsyncClient) -> None:
    for bad in ({"Commit": "not-hex"}, {"Depth": -1}, {"ReferenceName": "--force"}):
        resp = await client.post("/processors/git/runs/bad/config", json={"Processor": bad})
        assert resp.status_code == 400, (bad, resp.text)
