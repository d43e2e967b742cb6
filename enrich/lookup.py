"""HTTP lookups for the stage: bounded concurrency, per-request timeout, retries with
backoff, a TTL cache and single-flight (one request per URL at a time, whoever asks).

Transient failures (timeouts, refused/reset connections, 5xx, 429) are retried with
exponential backoff and full jitter; other 4xx, bodies that are not JSON and bodies over
the size limit are final. Final answers (a JSON body, or a 4xx) are cached; transient
failures are not (the next record tries again).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from wirestream.enrich.cache import TtlCache
from wirestream.enrich.settings import LookupSettings

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(slots=True)
class Result:
    value: Any = None  # the decoded JSON answer
    error: dict[str, Any] | None = None  # {kind, detail, status, attempts}
    attempts: int = 0
    cached: bool = False


@dataclass(slots=True)
class LookupStats:
    requests: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    coalesced: int = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class _Failure(Exception):
    def __init__(self, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.status = kind, detail, status


class Lookup:
    """Use inside a running loop: `async with Lookup(settings) as lookup: await lookup.get(url)`."""

    def __init__(self, settings: LookupSettings, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.cache = TtlCache(settings.cache_ttl, settings.cache_size)
        self.stats = LookupStats()
        self._inflight: dict[str, asyncio.Future[Result]] = {}
        self._sem = asyncio.Semaphore(settings.max_in_flight)
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Lookup:
        s = self.settings
        connector = aiohttp.TCPConnector(
            limit=s.max_in_flight, limit_per_host=0, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=s.timeout),
            headers={"Accept": "application/json", "User-Agent": "wirestream-enrich"},
            raise_for_status=False,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    async def get(self, url: str) -> Result:
        hit, value = self.cache.get(url, time.monotonic())
        if hit:
            return Result(value=value[0], error=value[1], cached=True)
        waiting = self._inflight.get(url)
        if waiting is not None:
            self.stats.coalesced += 1
            return await asyncio.shield(waiting)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            result = await self._fetch(url)
        except BaseException as exc:  # cancelled: whoever waits must not hang
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            self._inflight.pop(url, None)
        future.set_result(result)
        if result.error is None or result.error.get("final"):
            self.cache.put(url, (result.value, result.error), time.monotonic())
        return result

    async def _fetch(self, url: str) -> Result:
        s = self.settings
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._sem:
                    value = await self._attempt(url)
                return Result(value=value, attempts=attempt)
            except _Final as exc:
                self.stats.error(exc.kind)
                return Result(error=_error(exc.kind, exc.detail, exc.status, attempt, True),
                              attempts=attempt)  # fmt: skip
            except _Transient as exc:
                if attempt > s.retries:
                    self.stats.error(exc.kind)
                    return Result(error=_error(exc.kind, exc.detail, exc.status, attempt, False),
                                  attempts=attempt)  # fmt: skip
                self.stats.retries += 1
                cap = min(s.backoff_max, s.backoff * (2 ** (attempt - 1)))
                await asyncio.sleep(self._rng.uniform(0, cap))

    async def _attempt(self, url: str) -> Any:
        assert self._session is not None, "use Lookup as an async context manager"
        self.stats.requests += 1
        try:
            async with self._session.get(url) as resp:
                status = resp.status
                if status in RETRY_STATUSES:
                    raise _Transient("http_status", f"HTTP {status}", status)
                if status >= 400:
                    raise _Final("http_status", f"HTTP {status}", status)
                body = await resp.content.read(self.settings.max_body + 1)
                if len(body) > self.settings.max_body:
                    raise _Final("too_large", f"body over {self.settings.max_body} bytes", status)
        except TimeoutError:
            raise _Transient("timeout", f"no answer within {self.settings.timeout} s") from None
        except aiohttp.ClientPayloadError as exc:
            raise _Transient("connection", f"{type(exc).__name__}: {exc}"[:200]) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise _Transient("connection", f"{type(exc).__name__}: {exc}"[:200]) from None
        except aiohttp.ClientError as exc:
            raise _Final("client", f"{type(exc).__name__}: {exc}"[:200]) from None
        try:
            return json.loads(body)
        except ValueError:
            raise _Final("invalid_json", "the answer is not JSON", status) from None


class _Transient(_Failure):
    """Worth another attempt."""


class _Final(_Failure):
    """Another attempt would get the same answer."""


def _error(
    kind: str, detail: str, status: int | None, attempts: int, final: bool
) -> dict[str, Any]:
    return {"kind": kind, "detail": detail, "status": status, "attempts": attempts, "final": final}
