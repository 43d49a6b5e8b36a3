"""Escapes from the sandbox that went through what git, get and the file reads trust:
`.git` files and folders, alternates, `commondir`, and a symlink swapped in between the
check of a path and its opening. Each was tried against the executor and worked."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from processors.conftest import PAGE, Repos, _git, failed_with, run_one, tree
from wiz_executor import Settings
from wiz_executor.errors import ChunkFailed
from wiz_executor.processors._sandbox import Sandbox

TITLES = {"titles": {"selector": "h1", "values": {"text": "text"}}}


@pytest.fixture
def outside_repo(outside: Path, repos: Repos) -> Path:
    """A bare repository outside the data directory and the allowed roots."""
    repo = outside / "secret.git"
    _git("clone", "--quiet", "--bare", str(repos.bare), str(repo))
    return repo


def _text(path: Path) -> str:
    return path.read_text()


# -- .git files and folders written by processors --------------------------------------


async def test_get_may_not_be_asked_for_a_file_named_dot_git(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    source = settings.data_dir / "payload.txt"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_text("gitdir: /anywhere/.git\n")
    for name in (".git", ".GIT", ".git."):
        resp = await client.post(
            "/processors/get/runs/r/config",
            json={"Processor": {"URL": source.as_uri(), "FileName": name}},
        )
        assert resp.status_code == 400, (name, resp.text)
        assert ".git" in resp.json()["value"]
    # ... nor by a chunk's override.
    out = await run_one(
        client, "get", {}, {"RawData": {"URL": source.as_uri(), "FileName": ".git"}}
    )
    failed_with(out, "FileName", ".git")
    assert ".git" not in [p.name for p in settings.data_dir.rglob("*")]


async def test_a_url_ending_in_dot_git_gets_a_safe_name(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    folder = settings.data_dir / "src" / "repo"
    folder.mkdir(parents=True)
    (folder / ".git").write_text("gitdir: /anywhere/.git\n")
    out = await run_one(client, "get", {"URL": (folder / ".git").as_uri()})
    assert out["State"] == "SUCCEEDED", out
    written = Path(out["FilesystemReference"]["Location"])
    assert written.name != ".git"
    assert _text(written) == "gitdir: /anywhere/.git\n"
    assert ".git" not in [p.name for p in (settings.data_dir / "get").rglob("*")]


def test_no_writer_but_git_may_write_dot_git(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path)
    for path in (".git", "a/.git", "a/.git/config", "a/.Git/HEAD"):
        with pytest.raises(ChunkFailed, match=r"\.git"):
            sandbox.writable(path, "download target")
    assert sandbox.writable("a/git") == tmp_path.resolve() / "a" / "git"
    assert sandbox.writable("a/.git", git=True) == tmp_path.resolve() / "a" / ".git"


# -- git: what git itself resolves must stay inside -------------------------------------


async def test_git_refuses_a_dot_git_file_that_leads_outside(
    client: httpx.AsyncClient, settings: Settings, outside_repo: Path
) -> None:
    """The escape as it was tried: a folder whose `.git` file says `gitdir: OUTSIDE`."""
    folder = settings.data_dir / "evil"
    folder.mkdir(parents=True)
    (folder / ".git").write_text(f"gitdir: {outside_repo}\n")
    for i, url in enumerate(("evil", folder.as_uri())):
        out = await run_one(client, "git", {}, {"RawData": url}, run=f"r{i}")
        failed_with(out, "outside", str(outside_repo))
    assert (
        not (settings.data_dir / "git").exists()
        or [p for p in (settings.data_dir / "git").rglob("*") if p.is_file()] == []
    )


async def test_git_refuses_alternates_that_lead_outside(
    client: httpx.AsyncClient, settings: Settings, outside_repo: Path
) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    shared = settings.data_dir / "shared.git"
    # A repository whose objects live outside, through objects/info/alternates.
    _git("clone", "--quiet", "--bare", "--shared", str(outside_repo), str(shared))
    assert (shared / "objects" / "info" / "alternates").exists()
    out = await run_one(client, "git", {"URL": "shared.git"})
    failed_with(out, "alternates", "outside")
    # Chained: an alternate inside whose own alternates lead out.
    chain = settings.data_dir / "chain.git"
    _git("clone", "--quiet", "--bare", "--shared", str(shared), str(chain))
    out = await run_one(client, "git", {"URL": "chain.git"}, run="r2")
    failed_with(out, "alternates", "outside")


async def test_git_refuses_a_commondir_that_leads_outside(
    client: httpx.AsyncClient, settings: Settings, outside_repo: Path
) -> None:
    gitdir = settings.data_dir / "common"
    gitdir.mkdir(parents=True)
    head = (outside_repo / "HEAD").read_text()
    (gitdir / "HEAD").write_text(head)
    (gitdir / "commondir").write_text(f"{outside_repo}\n")
    out = await run_one(client, "git", {"URL": "common"})
    failed_with(out, "outside", str(outside_repo))


async def test_git_refuses_a_git_directory_with_symlinks_that_lead_outside(
    client: httpx.AsyncClient, settings: Settings, outside_repo: Path
) -> None:
    """A clone may check out a folder that looks like a bare repository, with `objects`
    a symlink to another repository's objects: git would read them through it."""
    evil = settings.data_dir / "evil.git"
    shutil.copytree(outside_repo, evil, ignore=shutil.ignore_patterns("objects"))
    os.symlink(outside_repo / "objects", evil / "objects")
    out = await run_one(client, "git", {"URL": "evil.git"})
    failed_with(out, "symlink", "outside")


async def test_git_still_clones_a_repository_inside(
    client: httpx.AsyncClient, settings: Settings, repos: Repos
) -> None:
    """A clone inside the data directory (a checkout with its `.git` folder) and a bare
    repository in an allowed root remain valid sources."""
    out = await run_one(client, "git", {"URL": str(repos.bare)})
    assert out["State"] == "SUCCEEDED", out
    first = Path(out["FilesystemReference"]["Location"])
    relative = first.relative_to(settings.data_dir)
    out = await run_one(client, "git", {"URL": str(relative)}, run="again")
    assert out["State"] == "SUCCEEDED", out
    assert _text(Path(out["FilesystemReference"]["Location"]) / "v3.txt") == "three\n"


# -- the race between checking a path and opening it ------------------------------------


def _swap_after_check(monkeypatch: pytest.MonkeyPatch, folder: Path, outside: Path) -> list[Path]:
    """Make `Sandbox.readable` replace `folder` by a symlink to `outside` right after it
    has checked a path: the race, made deterministic."""
    original = Sandbox.readable
    checked: list[Path] = []

    def readable(self: Sandbox, user_path: str | Path, what: str = "path") -> Path:
        real = original(self, user_path, what)
        if real.is_relative_to(folder.resolve()) and not checked:
            checked.append(real)
            shutil.rmtree(folder)
            os.symlink(outside, folder)
        return real

    monkeypatch.setattr(Sandbox, "readable", readable)
    return checked


def test_opening_a_checked_path_refuses_a_symlink_swapped_in(tmp_path: Path) -> None:
    data, outside = tmp_path / "data", tmp_path / "outside"
    (data / "pages").mkdir(parents=True)
    outside.mkdir()
    (data / "pages" / "page.html").write_text("inside")
    (outside / "page.html").write_text("secret")
    sandbox = Sandbox(data)
    real = sandbox.readable("pages/page.html")
    shutil.rmtree(data / "pages")
    os.symlink(outside, data / "pages")
    with pytest.raises(ChunkFailed, match="symlink"):
        sandbox.open_checked(real).close()
    # What did not change opens as before.
    (data / "ok.html").write_text("inside")
    with sandbox.open_checked(sandbox.readable("ok.html")) as f:
        assert f.read() == b"inside"


async def test_scrape_reads_no_file_swapped_in_after_the_check(
    client: httpx.AsyncClient,
    settings: Settings,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = settings.data_dir / "pages"
    folder.mkdir(parents=True)
    (folder / "page.html").write_bytes(PAGE)
    (outside / "page.html").write_text("<h1>secret from outside</h1>")
    checked = _swap_after_check(monkeypatch, folder, outside)
    chunk = {
        "Format": "FILESYSTEM_REF",
        "FilesystemReference": {"Driver": "local", "Location": str(folder / "page.html")},
    }
    out = await run_one(client, "scrape", {"scraper": TITLES}, chunk)
    assert checked
    assert "secret" not in str(out.get("RawData"))
    failed_with(out, "symlink")


async def test_get_copies_no_file_swapped_in_after_the_check(
    client: httpx.AsyncClient,
    settings: Settings,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = settings.data_dir / "src"
    folder.mkdir(parents=True)
    (folder / "secret.txt").write_text("inside\n")
    checked = _swap_after_check(monkeypatch, folder, outside)
    out = await run_one(client, "get", {"URL": (folder / "secret.txt").as_uri()})
    assert checked
    failed_with(out, "symlink")
    assert "not for processors" not in "".join(
        p.read_text() for p in (settings.data_dir / "get").rglob("*") if p.is_file()
    )


async def test_ls_lists_no_folder_swapped_in_after_the_check(
    client: httpx.AsyncClient,
    settings: Settings,
    outside: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = settings.data_dir / "tree"
    folder.mkdir(parents=True)
    (folder / "inside.txt").write_text("inside\n")
    checked = _swap_after_check(monkeypatch, folder, outside)
    chunk = {
        "Format": "FILESYSTEM_REF",
        "FilesystemReference": {"Driver": "local", "Location": str(folder)},
    }
    out = await run_one(client, "ls", {}, chunk)
    assert checked
    assert "secret" not in str(out.get("RawData"))
    failed_with(out, "symlink")
    assert tree(outside) == ["secret.txt"]
