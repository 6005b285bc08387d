"""The request being served, visible to services, audit and event rows without threading it
through every call (a context variable; `Storage.db` carries it into its worker threads)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass


def _nobody() -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    method: str = ""
    addr: str = ""
    host: str = ""
    useragent: str = ""
    base_url: str = ""
    # Who the caller is becomes known only after authentication: looked up when needed.
    actor_lookup: Callable[[], str | None] = _nobody

    @property
    def actor(self) -> str | None:
        return self.actor_lookup()


CURRENT: ContextVar[RequestContext | None] = ContextVar("cargohold_request", default=None)


def current() -> RequestContext | None:
    return CURRENT.get()


def current_request_id() -> str | None:
    context = CURRENT.get()
    return context.request_id if context else None
