"""Where cross-cutting concerns plug into the runtime: middleware factories.

The bus knows nothing of tracing or metrics. Whoever provides such a concern
installs a factory here (``sitemesh.telemetry.setup_telemetry`` does, for spans and
messaging metrics); every :class:`~sitemesh.bus.Worker` and
:class:`~sitemesh.bus.Publisher` built afterwards asks the factories for its
middleware once, at construction. A worker can also be given its chain explicitly
(``Worker(..., middleware=[...])``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ._acking import Decision
    from ._publish import PubAck
    from ._types import Outbound

Settle = Callable[["Msg"], Awaitable["tuple[Decision, Exception | None]"]]
"""The runtime's per-message core (decode, handle, publish, settle): returns how the
message was settled and the error that decided it, if any."""


class ProcessMiddleware(Protocol):
    """Wraps the handling of one consumed message."""

    async def process(self, msg: Msg, settle: Settle) -> None:
        """Call ``await settle(msg)`` once, doing what it must around it."""
        ...


class SendMiddleware(Protocol):
    """Wraps the publishing of outbound messages (e.g. a span per message)."""

    def start(self, out: Outbound, headers: dict[str, str]) -> Any:
        """Before publishing ``out``; may add ``headers``. Returns a token for :meth:`finish`."""
        ...

    def finish(
        self,
        tokens: Sequence[Any],
        acks: Sequence[PubAck] | None,
        error: BaseException | None,
        started: float,
    ) -> None:
        """After the PubAcks of a batch (or its failure)."""
        ...


WorkerMiddlewareFactory = Callable[..., ProcessMiddleware | None]
"""``factory(site=, role=, stream=, durable=) -> middleware | None``."""

PublishMiddlewareFactory = Callable[[], SendMiddleware | None]

_worker_factories: list[WorkerMiddlewareFactory] = []
_publish_factory: list[PublishMiddlewareFactory] = []


def install_middleware(
    *,
    worker: WorkerMiddlewareFactory | None = None,
    publish: PublishMiddlewareFactory | None = None,
) -> None:
    """Install middleware factories for workers and publishers built from now on.

    Installing the same factory twice has no effect. Worker factories chain in
    installation order (the first is outermost); there is one publish factory (the
    last installed wins).
    """
    if worker is not None and worker not in _worker_factories:
        _worker_factories.append(worker)
    if publish is not None:
        _publish_factory[:] = [publish]


def worker_middlewares(
    *, site: str, role: str, stream: str, durable: str
) -> list[ProcessMiddleware]:
    """The chain for a new worker, from the installed factories (those returning ``None``
    are left out)."""
    chain = (f(site=site, role=role, stream=stream, durable=durable) for f in _worker_factories)
    return [m for m in chain if m is not None]


def publish_middleware() -> SendMiddleware | None:
    """The publish middleware for a new publisher, or ``None``."""
    return _publish_factory[0]() if _publish_factory else None
