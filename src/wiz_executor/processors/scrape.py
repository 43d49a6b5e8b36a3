"""`scrape`: extract JSON from HTML pages with CSS selectors, as the original's jsonscrape.

The configuration keeps jsonscrape's shape, so existing pipeline definitions carry over:

    {"config":  {"Sites": ["https://example.org/"]},
     "colly":   {"MaxDepth": 2, "AllowedDomains": ["example.org"]},
     "scraper": {"links": {"selector": "a", "values": {"title": "text", "href": "href"}}}}

gives `{"links": [{"title": ..., "href": ...}, ...]}`: one object per element matched,
each value the element's text (`"text"`) or the named attribute ("" when absent, as in
Go). Pages come from `Sites`, from a chunk's URL, or from an HTML file the chunk refers
to (FILESYSTEM_REF, e.g. downloaded by `get`). Links (`a[href]`) are followed breadth
first up to `MaxDepth` (start pages are depth 1; 0 = no limit, as in colly) and only
to `AllowedDomains` (all domains when empty), never past `MaxPages`.

HTML is parsed with selectolax (the Lexbor engine: a fast, standards-following HTML5
parser) on a worker thread, so a large page never stalls the event loop. Selectors are
checked when the configuration is: a bad one is a 400 at Configure, or a FAILED chunk
when a chunk's override brings it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
from pydantic import BaseModel, Field, field_validator
from selectolax.lexbor import LexborHTMLParser, SelectolaxError

from ..api import DataFormat
from ..errors import ChunkFailed
from ._base import Context, Input, Limits, Output, Processor, ProcessorConfig, ceiling
from ._http import first_error, make_client, status_error, transport_error, with_retries
from ._sandbox import Sandbox

log = logging.getLogger(__name__)

HTML_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "application/xml", "text/xml")


class SitesConfig(ProcessorConfig):
    """jsonscrape's own `config` section."""

    Sites: list[str] = Field(default_factory=list, description="start pages")
    MaxPages: int = Field(100, ge=1, description="most pages visited in one chunk")
    MaxPageBytes: int = Field(
        10 * 1024 * 1024,
        ge=0,
        description="largest page read (held in memory); 0 = the executor's "
        "--max-page-bytes, which a run may not exceed",
    )
    Timeout: float = Field(30, ge=0, description="seconds a server may stay silent; 0 = none")
    Retries: int = Field(2, ge=0, le=10, description="further attempts after a transient error")
    Backoff: float = Field(0.5, ge=0, description="seconds before the first retry, then doubled")
    Parallelism: int = Field(
        4,
        ge=1,
        le=32,
        description="pages fetched at once; at most the executor's --max-scrape-parallelism",
    )


class CollyConfig(ProcessorConfig):
    """The colly collector settings jsonscrape passed through."""

    MaxDepth: int = Field(1, ge=0, description="link depth; start pages are 1; 0 = no limit")
    AllowedDomains: list[str] = Field(
        default_factory=list, description="host names that may be visited; empty = any"
    )
    UserAgent: str = Field("", description="User-Agent header; empty = wiz-executor's")


class Extractor(ProcessorConfig):
    selector: str = Field(description="CSS selector of the elements to extract")
    values: dict[str, str] = Field(
        min_length=1, description='output name -> "text" or the name of an attribute'
    )

    @field_validator("selector")
    @classmethod
    def _valid_css(cls, value: str) -> str:
        try:
            LexborHTMLParser("").css(value)
        except SelectolaxError as exc:
            raise ValueError(f"selector {value!r} is not valid CSS: {exc}") from None
        return value


class ScrapeConfig(ProcessorConfig):
    config: SitesConfig = Field(default_factory=SitesConfig)
    colly: CollyConfig = Field(default_factory=CollyConfig)
    scraper: dict[str, Extractor] = Field(
        default_factory=dict, description="output name -> what to extract"
    )


class Scrape(Processor[ScrapeConfig]):
    """Scrapes `Sites`, the chunk's URL (a string, or RawData `{"URL": ...}`), or the
    HTML file of a FILESYSTEM_REF chunk; a chunk may override `config`, `colly` and
    `scraper` for itself."""

    id = "scrape"
    name = "Scrape JSON from HTML"
    version = "0.1.0"
    Config = ScrapeConfig

    @classmethod
    def apply_limits(cls, config: BaseModel, limits: Limits) -> BaseModel:
        """`MaxPageBytes` within `--max-page-bytes` (0 = the ceiling) and `Parallelism`
        within `--max-scrape-parallelism`: their product bounds the memory one chunk
        holds in pages."""
        assert isinstance(config, ScrapeConfig)
        sites = config.config
        page = ceiling(sites, "MaxPageBytes", limits.max_page_bytes, "--max-page-bytes", "config.")
        parallel = ceiling(
            sites,
            "Parallelism",
            limits.max_scrape_parallelism,
            "--max-scrape-parallelism",
            "config.",
        )
        update = {"MaxPageBytes": page, "Parallelism": parallel}
        return config.model_copy(update={"config": sites.model_copy(update=update)})

    async def run(self, data: Input, context: Context[ScrapeConfig]) -> Output:
        config = context.config
        if not config.scraper:
            raise ChunkFailed(
                "scrape has nothing to extract: name at least one entry under 'scraper'"
            )
        crawl = _Crawl(config, Sandbox.of(context), context)
        source_url = _chunk_url(data.raw_data)
        if data.format is DataFormat.FILESYSTEM_REF:
            path = crawl.sandbox.reference(data.driver, data.location)
            crawl.start_file(path, source_url or path.as_uri())
        else:
            starts = [source_url] if source_url else config.config.Sites
            if not starts:
                raise ChunkFailed(
                    "scrape has no page to read: set config.Sites, send a chunk whose RawData "
                    "is a URL (or has one in 'URL'), or send an HTML file as FILESYSTEM_REF"
                )
            for url in starts:
                crawl.start_url(url)
        return Output.raw(await crawl.run())


def _chunk_url(raw: Any) -> str:
    """A URL the chunk brings: a string, or `FinalURL`/`URL` of an object (get's state)."""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, dict):
        for key in ("FinalURL", "URL"):
            value = raw.get(key)
            if isinstance(value, str) and value:
                return value.strip()
    return ""


@dataclass(slots=True)
class _Page:
    url: str
    """Where relative links on the page start from."""
    path: Path | None = None
    """A local file to read instead of fetching `url`."""


class _Crawl:
    """One chunk's breadth-first visit of pages, with the results in visiting order."""

    def __init__(self, config: ScrapeConfig, sandbox: Sandbox, context: Context[Any]) -> None:
        self.config = config
        self.sandbox = sandbox
        self.context = context
        self.allowed = {d.lower().strip() for d in config.colly.AllowedDomains if d.strip()}
        self.starts: list[_Page] = []
        self.seen: set[str] = set()
        self.results: dict[str, list[dict[str, str]]] = {name: [] for name in config.scraper}
        self.visited = 0

    def start_file(self, path: Path, base_url: str) -> None:
        self.starts.append(_Page(base_url, path))
        self.seen.add(_canonical(base_url))

    def start_url(self, url: str) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            self.start_file(self.sandbox.file_url_path(url, "site"), url)
            return
        if scheme not in ("http", "https"):
            raise ChunkFailed(f"cannot scrape {url!r}: pages must be http://, https:// or file://")
        if not self._domain_ok(url):
            raise ChunkFailed(
                f"{url} is outside colly.AllowedDomains {sorted(self.allowed)}; add its host "
                "or remove the restriction"
            )
        self.starts.append(_Page(url))
        self.seen.add(_canonical(url))

    def _domain_ok(self, url: str) -> bool:
        host = (urlsplit(url).hostname or "").lower()
        return not self.allowed or host in self.allowed

    async def _check_redirect(self, request: httpx.Request) -> None:
        """Before every request, redirects included (pages are checked before they are
        queued): a redirect may not take the crawl out of AllowedDomains, as in colly."""
        if not self._domain_ok(str(request.url)):
            raise ChunkFailed(
                f"redirected to {request.url}, outside colly.AllowedDomains {sorted(self.allowed)}"
            )

    async def run(self) -> dict[str, list[dict[str, str]]]:
        sites = self.config.config
        max_depth = self.config.colly.MaxDepth
        async with make_client(self.context.network, sites.Timeout, tls=self.context.tls) as client:
            if self.config.colly.UserAgent:
                client.headers["User-Agent"] = self.config.colly.UserAgent
            if self.allowed:
                client.event_hooks["request"] = [self._check_redirect]
            level, depth = self.starts, 1
            limit = asyncio.Semaphore(sites.Parallelism)
            while level:
                follow = max_depth == 0 or depth < max_depth
                # A task group, not gather: when a start page fails the chunk, the other
                # reads are cancelled with it instead of running on as orphans.
                try:
                    async with asyncio.TaskGroup() as group:
                        reads = [
                            group.create_task(self._read(client, page, limit, depth == 1))
                            for page in level
                        ]
                except BaseExceptionGroup as errors:
                    raise first_error(errors) from None
                next_level: list[_Page] = []
                for body, base in (read.result() for read in reads):
                    if body is None:
                        continue
                    found, links = await asyncio.to_thread(
                        extract, body, base, self.config.scraper, follow
                    )
                    for name, rows in found.items():
                        self.results[name].extend(rows)
                    next_level.extend(self._new_pages(links))
                self.context.report_progress(self.visited, self.visited + len(next_level))
                level, depth = next_level, depth + 1
        return self.results

    def _new_pages(self, links: list[str]) -> list[_Page]:
        pages = []
        for link in links:
            url = _canonical(link)
            if urlsplit(url).scheme not in ("http", "https") or url in self.seen:
                continue
            if not self._domain_ok(url) or len(self.seen) >= self.config.config.MaxPages:
                continue
            self.seen.add(url)
            pages.append(_Page(url))
        return pages

    async def _read(
        self, client: httpx.AsyncClient, page: _Page, limit: asyncio.Semaphore, start: bool
    ) -> tuple[str | bytes | None, str]:
        """A page's body and final URL. A start page that cannot be read fails the
        chunk; a linked one is skipped (and logged), as a crawler skips dead links."""
        async with limit:
            try:
                if page.path is not None:
                    body: str | bytes | None = await asyncio.to_thread(self._read_file, page.path)
                    base = page.url
                else:
                    body, base = await self._fetch(client, page.url, start)
            except ChunkFailed as exc:
                if start:
                    raise ChunkFailed(f"scrape could not read {page.url}: {exc.message}") from None
                log.info("scrape skipped %s: %s", page.url, exc.message)
                return None, page.url
        if body is not None:
            self.visited += 1
        return body, base

    def _read_file(self, path: Path) -> bytes:
        """An HTML file's bytes, opened through the sandbox: no symlink swapped in
        since `path` was checked."""
        limit = self.config.config.MaxPageBytes
        with self.sandbox.open_checked(path) as f:
            kind = os.fstat(f.fileno()).st_mode
            if stat.S_ISDIR(kind):
                raise ChunkFailed(f"{path} is a folder; scrape reads an HTML file")
            if not stat.S_ISREG(kind):
                raise ChunkFailed(f"{path} is not a regular file")
            try:
                body = f.read(limit + 1)
            except OSError as exc:
                raise ChunkFailed(f"{path}: {exc.strerror}") from None
        if len(body) > limit:
            raise ChunkFailed(f"{path} is larger than config.MaxPageBytes={limit}")
        return body

    async def _fetch(
        self, client: httpx.AsyncClient, url: str, start: bool
    ) -> tuple[str | bytes | None, str]:
        sites = self.config.config
        limit = sites.MaxPageBytes

        async def attempt(n: int) -> tuple[str | bytes | None, str]:
            try:
                async with client.stream("GET", url) as resp:
                    if not resp.is_success:
                        raise await status_error(resp, url)
                    kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
                    if not start and kind and kind not in HTML_TYPES:
                        return None, url  # an image, a PDF...: nothing to scrape
                    body = bytearray()
                    async for block in resp.aiter_bytes():
                        body += block
                        if len(body) > limit:
                            raise ChunkFailed(
                                f"{url} is larger than config.MaxPageBytes={limit} bytes"
                            )
                    charset = resp.charset_encoding
                    text: str | bytes = _decode(bytes(body), charset) if charset else bytes(body)
                    return text, str(resp.url)
            except httpx.HTTPError as exc:
                raise transport_error(exc, url) from None

        return await with_retries(attempt, sites.Retries, sites.Backoff)


def _decode(body: bytes, charset: str) -> str | bytes:
    try:
        return body.decode(charset, "replace")
    except LookupError:
        return body  # an unknown charset: let the parser look for <meta charset>


def _canonical(url: str) -> str:
    return urldefrag(url)[0]


def extract(
    html: str | bytes, base_url: str, scraper: dict[str, Extractor], want_links: bool
) -> tuple[dict[str, list[dict[str, str]]], list[str]]:
    """Apply every extractor to one page; also its links when they will be followed.
    (CPU work: called on a worker thread.)"""
    tree = (
        LexborHTMLParser(html, encoding=True) if isinstance(html, bytes) else LexborHTMLParser(html)
    )
    found: dict[str, list[dict[str, str]]] = {}
    for name, extractor in scraper.items():
        rows = []
        for node in tree.css(extractor.selector):
            row = {}
            for key, what in extractor.values.items():
                if what == "text":
                    row[key] = (node.text(deep=True) or "").strip()
                else:
                    row[key] = node.attributes.get(what) or ""
            rows.append(row)
        found[name] = rows
    links: list[str] = []
    if want_links:
        for node in tree.css("a[href]"):
            href = (node.attributes.get("href") or "").strip()
            if href:
                links.append(urljoin(base_url, href))
    return found, links
