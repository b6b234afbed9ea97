"""gRPC clients of the ingesters, one channel per member address, kept while the member is in the ring.

Raw-bytes methods (no generated stubs): the messages are encoded by ``rpc.messages``. Every call has a
deadline (``ingester_client.remote_timeout``); calls to several ingesters run at once as gRPC futures.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import grpc

from tracelake.rpc import messages

# The querier may receive every span an ingester holds in memory; no size limit on answers.
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    ("grpc.enable_retries", 0),
]


class IngesterClient:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.push = self.channel.unary_unary(messages.PUSH)
        self.find_trace = self.channel.unary_unary(messages.FIND_TRACE)
        self.recent_spans = self.channel.unary_stream(messages.RECENT_SPANS)
        self.recent_blocks = self.channel.unary_unary(messages.RECENT_BLOCKS)

    def close(self) -> None:
        self.channel.close()


class ClientPool:
    """The clients of the ring's current members; a member that left has its channel closed."""

    def __init__(self) -> None:
        self._clients: dict[str, IngesterClient] = {}
        self._lock = threading.Lock()

    def get(self, address: str) -> IngesterClient:
        with self._lock:
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = IngesterClient(address)
            return client

    def keep_only(self, addresses: Iterable[str]) -> None:
        keep = set(addresses)
        with self._lock:
            for address in [a for a in self._clients if a not in keep]:
                self._clients.pop(address).close()

    def close(self) -> None:
        self.keep_only(())


class FailedCall:
    """A call that could not even be started (a channel closed as the ring changed): it fails like a
    gRPC future that did, so callers handle both alike."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def result(self) -> bytes:
        raise self.error

    def exception(self) -> Exception:
        return self.error

    def add_done_callback(self, callback) -> None:
        callback(self)


def failure_reason(exc: BaseException) -> str:
    return exc.code().name if isinstance(exc, grpc.RpcError) else str(exc)
