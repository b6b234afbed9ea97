"""The Jaeger agent's UDP receivers: ``emitBatch`` thrift messages, compact (6831) and binary (6832).

UDP has no answer: a datagram that cannot be decoded or is refused is counted and logged, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor

from tracelake.config import DEFAULT_TENANT
from tracelake.errors import InvalidInputError
from tracelake.ingester import metrics
from tracelake.push import PushError, SpanPusher

log = logging.getLogger(__name__)

PROTOCOLS = {"jaeger_thrift_compact": "compact", "jaeger_thrift_binary": "binary"}


class AgentProtocol(asyncio.DatagramProtocol):
    def __init__(self, name: str, pusher: SpanPusher, executor: Executor) -> None:
        self.name = name
        self.protocol = PROTOCOLS[name]
        self.pusher = pusher
        self.executor = executor
        self.pending: set[asyncio.Future] = set()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        future = asyncio.get_running_loop().run_in_executor(self.executor, self._handle, data)
        self.pending.add(future)
        future.add_done_callback(self.pending.discard)

    def _handle(self, data: bytes) -> None:
        from tracelake.codec.jaeger import agent_datagram_to_otlp

        try:
            otlp = agent_datagram_to_otlp(data, self.protocol).SerializeToString()
            self.pusher.push(DEFAULT_TENANT, otlp, protocol=self.name)
            metrics.receiver_requests.labels(self.name, "ok").inc()
        except InvalidInputError as exc:
            metrics.receiver_requests.labels(self.name, "invalid_request").inc()
            log.warning("undecodable datagram", extra={"receiver": self.name, "error": str(exc)})
        except PushError as exc:
            metrics.receiver_requests.labels(self.name, exc.reason).inc()
            log.warning("datagram refused", extra={"receiver": self.name, "error": str(exc)})
        except Exception:  # a bug: count and log it here, or it dies unseen in the executor's future
            metrics.receiver_requests.labels(self.name, "internal").inc()
            log.exception("receiver failed", extra={"receiver": self.name})
