"""The ingester role's gRPC service (``tracelake.rpc.messages``): pushes from distributors, recent data
for queriers. Each push batch is stored as ``tracelake serve`` stores a request (WAL first, then live
traces), so durability, replay and flushing are the same in both modes."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from concurrent.futures import Executor

import grpc

from tracelake.errors import TracelakeError
from tracelake.ingester.distributor import store
from tracelake.ingester.ingester import Ingester
from tracelake.push import PushError, valid_tenant
from tracelake.rpc import messages

log = logging.getLogger(__name__)


class IngesterService:
    def __init__(self, ingester: Ingester, executor: Executor) -> None:
        self.ingester = ingester
        self.executor = executor

    def _push(self, data: bytes) -> bytes:
        request = messages.PushRequest.decode(data)
        if not valid_tenant(request.tenant):
            raise ValueError(f"invalid tenant {request.tenant[:160]!r}")
        results: list[messages.BatchResult] = []
        for batch in request.batches:
            try:
                result = store(self.ingester, request.tenant, batch, request.received_unix_nano)
            except PushError as exc:
                retry = math.ceil(exc.retry_after * 1000) if exc.retry_after else 0
                results.append(
                    messages.BatchResult(
                        error_status=exc.status,
                        error_message=str(exc),
                        error_reason=exc.reason,
                        retry_after_ms=retry,
                    )
                )
                continue
            results.append(messages.BatchResult(accepted=result.accepted_spans, refused=result.rejected))
        return messages.encode_push_response(results)

    def _find_trace(self, data: bytes) -> bytes:
        tenant, trace_id = messages.decode_find_trace(data)
        return messages.encode_tables(self.ingester.find_trace(tenant, trace_id))

    def _recent_blocks(self, data: bytes) -> bytes:
        metas = self.ingester.recent_blocks(messages.decode_tenant(data))
        return json.dumps([m.to_json() for m in metas], separators=(",", ":")).encode()

    async def _run(self, method: str, fn, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if not self.ingester.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the ingester is not ready")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, data)
        except (TracelakeError, ValueError, UnicodeDecodeError) as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            log.exception("ingester RPC failed", extra={"method": method})
            await context.abort(grpc.StatusCode.INTERNAL, f"{method} failed")
        raise AssertionError("unreachable: abort raises")

    async def push(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._run("push", self._push, data, context)

    async def find_trace(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._run("find_trace", self._find_trace, data, context)

    async def recent_blocks(self, data: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return await self._run("recent_blocks", self._recent_blocks, data, context)

    async def recent_spans(self, data: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        """One message per Arrow table, so no single message holds everything in memory."""
        tables = await self._run(
            "recent_spans", lambda d: self.ingester.recent_spans(messages.decode_tenant(d)), data, context
        )
        loop = asyncio.get_running_loop()
        for table in tables:
            yield await loop.run_in_executor(self.executor, messages.table_to_ipc, table)


def build_server(service: IngesterService, endpoint: str, max_message_bytes: int) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
    )
    handlers = {
        "Push": grpc.unary_unary_rpc_method_handler(service.push),
        "FindTrace": grpc.unary_unary_rpc_method_handler(service.find_trace),
        "RecentBlocks": grpc.unary_unary_rpc_method_handler(service.recent_blocks),
        "RecentSpans": grpc.unary_stream_rpc_method_handler(service.recent_spans),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(messages.SERVICE, handlers),))
    if server.add_insecure_port(endpoint) == 0:
        raise OSError(f"cannot listen on {endpoint} for the ingester service")
    return server
