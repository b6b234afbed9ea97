"""Deterministic, fast synthetic OTLP traces that look like real instrumentation.

The demo dataset, the benchmarks (storage bytes per span, import throughput, lookup latency on
1M-span blocks) and tests all draw from here, so two things matter:

* Realism. Storage-size figures are only meaningful if the data compresses like real telemetry: a
  handful of services with full SDK resources, instrumentation scopes, semantic-convention attributes
  mixing low-cardinality values (methods, routes, db systems) with high-cardinality ones (ids in URLs,
  SQL parameters, user ids), span trees whose children sit inside their parents, errors with stack
  traces. Both the old (``http.method``) and the new (``http.request.method``) HTTP conventions appear,
  because in a real fleet SDKs of different ages coexist.
* Speed. Building protobuf messages field by field costs tens of microseconds per span, so spans are
  hand-encoded into protobuf wire format from precomputed pieces (resources, scopes, constant
  attributes) and only ids, times and variable values are encoded per span. The encoding follows field
  number order, so it is byte-identical to ``SerializeToString()`` of the parsed message.

Output is a pure function of ``SynthConfig`` (one ``random.Random`` per call, no hash-ordered
containers); leave ``start_unix_nano`` unset only if you do not need byte-identical reruns.
"""

from __future__ import annotations

import random
import re
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tracelake.otlp.wire import encode_varint

__all__ = ["SERVICE_NAMES", "SynthConfig", "generate_request_bytes", "generate_requests"]


@dataclass
class SynthConfig:
    """What to generate; every field has a realistic default.

    ``error_rate`` is the fraction of *traces* that fail: one span raises (status ERROR plus an
    ``exception`` event) and the failure propagates to all its ancestors, as it does in a real request.
    ``attributes_per_span`` is exact for every span: semantic-convention attributes of the span's
    kind first, then common extras (thread, user, session ids ...), truncated to the count.
    """

    traces: int = 1000
    spans_per_trace: tuple[int, int] = (5, 15)
    services: int = 5
    attributes_per_span: int = 10
    error_rate: float = 0.05
    start_unix_nano: int | None = None
    window_seconds: float = 3600.0
    seed: int = 0
    traces_per_request: int = 100


def generate_requests(cfg: SynthConfig) -> Iterator[ExportTraceServiceRequest]:
    """Yield export requests of ``cfg.traces_per_request`` traces each (the last may hold fewer)."""
    for payload in generate_request_bytes(cfg):
        yield ExportTraceServiceRequest.FromString(payload)


def generate_request_bytes(cfg: SynthConfig) -> Iterator[bytes]:
    """Yield serialized ``ExportTraceServiceRequest`` messages; the fast path for bulk loads."""
    lo, hi = cfg.spans_per_trace
    if not 1 <= lo <= hi:
        raise ValueError(f"spans_per_trace must satisfy 1 <= min <= max, got {cfg.spans_per_trace}")
    if cfg.services < 1:
        raise ValueError(f"services must be >= 1, got {cfg.services}")
    if cfg.traces_per_request < 1:
        raise ValueError(f"traces_per_request must be >= 1, got {cfg.traces_per_request}")
    if cfg.attributes_per_span < 0 or cfg.traces < 0:
        raise ValueError("traces and attributes_per_span must be >= 0")
    return _Generator(cfg).requests()


# --------------------------------------------------------------------------------------------------
# Protobuf wire-format helpers. Field tags are written as byte literals: (field_number << 3) | wire_type.


_VARINT_TABLE = tuple(encode_varint(i) for i in range(1 << 14))


def _varint(n: int) -> bytes:
    return _VARINT_TABLE[n] if 0 <= n < 16384 else encode_varint(n)


def _ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field."""
    return tag + _varint(len(payload)) + payload


_pack_u64 = struct.Struct("<Q").pack
_pack_u32 = struct.Struct("<I").pack
_pack_f64 = struct.Struct("<d").pack


def _av_str(s: str) -> bytes:
    b = s.encode()
    return b"\x0a" + _varint(len(b)) + b


def _av_bool(v: bool) -> bytes:
    return b"\x10\x01" if v else b"\x10\x00"


def _av_int(v: int) -> bytes:
    return b"\x18" + _varint(v)


def _av_double(v: float) -> bytes:
    return b"\x21" + _pack_f64(v)


def _av(value: object) -> bytes:
    if isinstance(value, bool):
        return _av_bool(value)
    if isinstance(value, int):
        return _av_int(value)
    if isinstance(value, float):
        return _av_double(value)
    return _av_str(str(value))


_KEY_PREFIX: dict[str, bytes] = {}


def _kp(key: str) -> bytes:
    """KeyValue prefix: the encoded key plus the tag of the value field."""
    p = _KEY_PREFIX.get(key)
    if p is None:
        p = _KEY_PREFIX[key] = _ld(b"\x0a", key.encode()) + b"\x12"
    return p


def _kv(prefix: bytes, av: bytes) -> bytes:
    """A KeyValue message (without the enclosing field tag)."""
    return prefix + _varint(len(av)) + av


def _sattr(prefix: bytes, av: bytes) -> bytes:
    """A span attribute field (Span.attributes = 9)."""
    kv = prefix + _varint(len(av)) + av
    return b"\x4a" + _varint(len(kv)) + kv


def _sa(key: str, value: object) -> bytes:
    """A precomputed span attribute field."""
    return _sattr(_kp(key), _av(value))


def _ss(prefix: bytes, s: str) -> bytes:
    """A span attribute field with a string value: the hot path.

    Indexes the varint table directly (no range check): generated values are far below
    16 KiB, and a longer one would raise IndexError rather than encode wrongly.
    """
    b = s.encode()
    av = b"\x0a" + _VARINT_TABLE[len(b)] + b
    kv = prefix + _VARINT_TABLE[len(av)] + av
    return b"\x4a" + _VARINT_TABLE[len(kv)] + kv


def _si(prefix: bytes, v: int) -> bytes:
    """A span attribute field with a non-negative int value."""
    av = b"\x18" + _varint(v)
    kv = prefix + _VARINT_TABLE[len(av)] + av
    return b"\x4a" + _VARINT_TABLE[len(kv)] + kv


def _message_attrs(tag: bytes, attrs: list[tuple[str, object]]) -> bytes:
    return b"".join(_ld(tag, _kv(_kp(k), _av(v))) for k, v in attrs)


# --------------------------------------------------------------------------------------------------
# The simulated fleet. Modelled on the OpenTelemetry demo shop so names and call paths look familiar.

_SPAN_KIND_INTERNAL = b"\x30\x01"
_SPAN_KIND_SERVER = b"\x30\x02"
_SPAN_KIND_CLIENT = b"\x30\x03"
_FLAGS_LOCAL_PARENT = b"\x85\x01" + _pack_u32(0x101)  # has-is-remote + sampled
_FLAGS_REMOTE_PARENT = b"\x85\x01" + _pack_u32(0x301)  # parent is remote + sampled

# (name, language, server protocol, db system, external host, callers)
_FLEET: list[tuple[str, str, str, str | None, str | None, tuple[str, ...]]] = [
    ("frontend", "nodejs", "http", None, None, ()),
    ("cart", "dotnet", "grpc", "redis", None, ("frontend", "checkout")),
    ("checkout", "go", "grpc", "postgresql", None, ("frontend",)),
    ("payment", "java", "http", "postgresql", "api.stripe.com", ("checkout",)),
    ("inventory", "python", "http", "mysql", None, ("frontend", "checkout")),
    ("shipping", "go", "http", None, "onlinetools.ups.com", ("checkout", "frontend")),
    ("recommendation", "python", "grpc", "redis", None, ("frontend",)),
    ("currency", "java", "grpc", None, None, ("frontend", "checkout")),
    ("email", "python", "http", None, "api.sendgrid.com", ("checkout",)),
    ("ad", "java", "grpc", None, None, ("frontend",)),
    ("quote", "nodejs", "http", None, None, ("shipping",)),
    ("fraud-detection", "java", "grpc", "postgresql", None, ("checkout",)),
    ("accounting", "dotnet", "grpc", "postgresql", None, ("checkout",)),
    ("product-catalog", "go", "grpc", "postgresql", None, ("frontend", "recommendation")),
    ("image-provider", "nodejs", "http", None, None, ("frontend",)),
]
SERVICE_NAMES: tuple[str, ...] = tuple(f[0] for f in _FLEET)
"""Service names in order; services beyond these are named ``service-<n>``."""

_HTTP_ENDPOINTS: dict[str, list[tuple[str, str, str]]] = {
    # service: [(method, route, query)]
    "frontend": [
        ("GET", "/", ""),
        ("GET", "/api/products", "?currencyCode={currency}&page={page}"),
        ("GET", "/api/products/{productId}", "?currencyCode={currency}"),
        ("GET", "/api/cart", "?sessionId={session}"),
        ("POST", "/api/cart/items", ""),
        ("POST", "/api/checkout", ""),
        ("GET", "/api/recommendations", "?productIds={productId}"),
        ("GET", "/api/orders/{orderId}", ""),
        ("GET", "/api/data", "?contextKeys={category}"),
    ],
    "payment": [
        ("POST", "/v1/payments", ""),
        ("GET", "/v1/payments/{paymentId}", ""),
        ("POST", "/v1/refunds", ""),
    ],
    "inventory": [
        ("GET", "/inventory/items/{sku}", ""),
        ("POST", "/inventory/reservations", ""),
        ("GET", "/inventory/stock", "?sku={sku}&warehouse={warehouse}"),
    ],
    "shipping": [("POST", "/get-quote", ""), ("POST", "/ship-order", "")],
    "email": [("POST", "/send_order_confirmation", "")],
    "quote": [("POST", "/getquote", "")],
    "image-provider": [("GET", "/static/img/products/{productId}.jpg", "")],
    "_generic": [
        ("GET", "/api/v1/resources/{itemId}", ""),
        ("POST", "/api/v1/resources", ""),
        ("GET", "/api/v1/resources", "?page={page}"),
    ],
}
_GRPC_ENDPOINTS: dict[str, tuple[str, list[str]]] = {
    "cart": ("oteldemo.CartService", ["GetCart", "AddItem", "EmptyCart"]),
    "checkout": ("oteldemo.CheckoutService", ["PlaceOrder", "GetOrderStatus"]),
    "recommendation": ("oteldemo.RecommendationService", ["ListRecommendations"]),
    "currency": ("oteldemo.CurrencyService", ["Convert", "GetSupportedCurrencies"]),
    "ad": ("oteldemo.AdService", ["GetAds"]),
    "fraud-detection": ("oteldemo.FraudDetectionService", ["CheckOrder"]),
    "accounting": ("oteldemo.AccountingService", ["RecordOrder"]),
    "product-catalog": ("oteldemo.ProductCatalogService", ["GetProduct", "ListProducts", "SearchProducts"]),
}
_EXTERNAL_ENDPOINTS: dict[str, list[tuple[str, str]]] = {
    "api.stripe.com": [("POST", "/v1/payment_intents"), ("POST", "/v1/charges")],
    "onlinetools.ups.com": [("POST", "/api/rating/v1/Rate"), ("POST", "/api/shipments/v1/ship")],
    "api.sendgrid.com": [("POST", "/v3/mail/send")],
}
# db system: (db name, port, [(operation, table or None, statement template)])
_DB: dict[str, tuple[str, int, list[tuple[str, str | None, str]]]] = {
    "postgresql": (
        "shop",
        5432,
        [
            (
                "SELECT",
                "orders",
                (
                    "SELECT id, status, total_cents, created_at FROM orders WHERE customer_id = {userId}"
                    " AND status = '{status}' ORDER BY created_at DESC LIMIT 20"
                ),
            ),
            ("SELECT", "products", "SELECT * FROM products WHERE id = '{productId}'"),
            (
                "INSERT",
                "orders",
                (
                    "INSERT INTO orders (id, customer_id, total_cents, currency) VALUES "
                    "('{orderId}', {userId}, {cents}, '{currency}')"
                ),
            ),
            (
                "UPDATE",
                "payments",
                "UPDATE payments SET status = '{status}', updated_at = now() WHERE id = '{paymentId}'",
            ),
            ("SELECT", "customers", "SELECT * FROM customers WHERE id = {userId}"),
        ],
    ),
    "mysql": (
        "inventory",
        3306,
        [
            (
                "SELECT",
                "stock",
                "SELECT quantity FROM stock WHERE sku = '{sku}' AND warehouse_id = {warehouse}",
            ),
            (
                "UPDATE",
                "stock",
                "UPDATE stock SET quantity = quantity - {qty} WHERE sku = '{sku}' AND quantity >= {qty}",
            ),
            (
                "INSERT",
                "reservations",
                "INSERT INTO reservations (order_id, sku, qty) VALUES ('{orderId}', '{sku}', {qty})",
            ),
        ],
    ),
    "redis": (
        "0",
        6379,
        [
            ("HGET", None, "HGET cart:{userId} items"),
            ("HSET", None, "HSET cart:{userId} {productId} {qty}"),
            ("EXPIRE", None, "EXPIRE cart:{userId} 3600"),
            ("GET", None, "GET session:{session}"),
        ],
    ),
}
_INTERNAL_OPS = [
    "validate_request",
    "load_feature_flags",
    "compute_total",
    "serialize_response",
    "authorize",
    "render",
    "apply_discounts",
    "convert_currency",
]
_USER_AGENTS = [
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36"
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Safari/605.1.15"
    ),
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.5 Mobile/15E148 Safari/604.1"
    ),
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "python-requests/2.32.3",
]
# Non-error response codes, weighted by repetition: mostly 200, a few redirects and client errors.
_HTTP_OK_CODES = [200] * 90 + [201, 201, 204, 204, 304, 304, 400, 401, 404, 404, 404, 429]


@dataclass(frozen=True)
class _Lang:
    sdk_version: str
    old_semconv: bool  # emits http.method/http.status_code/net.peer.name instead of the new names
    resource_schema_url: str
    http_server: tuple[str, str, str]  # scope name, version, schema_url
    http_client: tuple[str, str, str]
    grpc_server: tuple[str, str, str]
    grpc_client: tuple[str, str, str]
    db: dict[str, tuple[str, str, str]]
    thread_names: tuple[str, ...]
    exceptions: tuple[tuple[str, str, str], ...]  # type, message, stack frame template ({svc})


_PY_SCHEMA = "https://opentelemetry.io/schemas/1.11.0"
_LANGS: dict[str, _Lang] = {
    "nodejs": _Lang(
        "1.25.1",
        True,
        "",
        ("@opentelemetry/instrumentation-http", "0.52.1", ""),
        ("@opentelemetry/instrumentation-http", "0.52.1", ""),
        ("@opentelemetry/instrumentation-grpc", "0.52.1", ""),
        ("@opentelemetry/instrumentation-grpc", "0.52.1", ""),
        {
            "postgresql": ("@opentelemetry/instrumentation-pg", "0.43.0", ""),
            "mysql": ("@opentelemetry/instrumentation-mysql2", "0.40.0", ""),
            "redis": ("@opentelemetry/instrumentation-ioredis", "0.42.0", ""),
        },
        ("main",),
        (
            ("Error", "Request failed with status code 503", "    at {svc}/src/handlers/api.js:{line}:17"),
            (
                "TypeError",
                "Cannot read properties of undefined (reading 'items')",
                "    at {svc}/src/cart.js:{line}:9",
            ),
        ),
    ),
    "dotnet": _Lang(
        "1.9.0",
        False,
        "",
        ("Microsoft.AspNetCore", "", ""),
        ("System.Net.Http", "8.0.0", ""),
        ("Microsoft.AspNetCore", "", ""),
        ("OpenTelemetry.Instrumentation.GrpcNetClient", "1.9.0-beta.1", ""),
        {
            "postgresql": ("Npgsql", "8.0.3", ""),
            "mysql": ("MySqlConnector", "2.3.7", ""),
            "redis": ("OpenTelemetry.Instrumentation.StackExchangeRedis", "1.0.0-rc9.15", ""),
        },
        (".NET ThreadPool Worker", ".NET TP Worker"),
        (
            (
                "StackExchange.Redis.RedisTimeoutException",
                (
                    "Timeout awaiting response (outbound=0KiB, inbound=0KiB, 5000ms elapsed, "
                    "timeout is 5000ms)"
                ),
                (
                    "   at {svc}.Services.{svc}Store.GetAsync(String userId) in "
                    "/src/Services/Store.cs:line {line}"
                ),
            ),
            (
                "System.InvalidOperationException",
                "Sequence contains no matching element",
                (
                    "   at {svc}.Services.{svc}Service.Handle(Request request) in "
                    "/src/Services/Service.cs:line {line}"
                ),
            ),
        ),
    ),
    "go": _Lang(
        "1.28.0",
        False,
        "https://opentelemetry.io/schemas/1.26.0",
        ("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", "0.53.0", ""),
        ("go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp", "0.53.0", ""),
        ("go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc", "0.53.0", ""),
        ("go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc", "0.53.0", ""),
        {
            "postgresql": ("github.com/XSAM/otelsql", "0.32.0", ""),
            "mysql": ("github.com/XSAM/otelsql", "0.32.0", ""),
            "redis": ("github.com/redis/go-redis/extra/redisotel", "9.5.1", ""),
        },
        ("main",),
        (
            (
                "*errors.errorString",
                "context deadline exceeded",
                "main.(*{svc}Server).Handle\n\t/app/{svc}/server.go:{line}",
            ),
            (
                "*pq.Error",
                "pq: could not serialize access due to concurrent update",
                "main.(*store).Save\n\t/app/{svc}/store.go:{line}",
            ),
        ),
    ),
    "java": _Lang(
        "1.40.0",
        False,
        "https://opentelemetry.io/schemas/1.24.0",
        ("io.opentelemetry.tomcat-10.0", "2.6.0-alpha", ""),
        ("io.opentelemetry.java-http-client", "2.6.0-alpha", ""),
        ("io.opentelemetry.grpc-1.6", "2.6.0-alpha", ""),
        ("io.opentelemetry.grpc-1.6", "2.6.0-alpha", ""),
        {
            "postgresql": ("io.opentelemetry.jdbc", "2.6.0-alpha", ""),
            "mysql": ("io.opentelemetry.jdbc", "2.6.0-alpha", ""),
            "redis": ("io.opentelemetry.lettuce-5.1", "2.6.0-alpha", ""),
        },
        ("http-nio-8080-exec-1", "http-nio-8080-exec-2", "http-nio-8080-exec-7", "grpc-default-executor-0"),
        (
            (
                "java.sql.SQLTransientConnectionException",
                "HikariPool-1 - Connection is not available, request timed out after 30000ms.",
                "\tat com.example.{svc}.Repository.find(Repository.java:{line})",
            ),
            (
                "java.lang.IllegalStateException",
                "Payment provider rejected the request",
                "\tat com.example.{svc}.Service.process(Service.java:{line})",
            ),
        ),
    ),
    "python": _Lang(
        "1.26.0",
        True,
        "",
        ("opentelemetry.instrumentation.flask", "0.47b0", _PY_SCHEMA),
        ("opentelemetry.instrumentation.requests", "0.47b0", _PY_SCHEMA),
        ("opentelemetry.instrumentation.grpc", "0.47b0", ""),
        ("opentelemetry.instrumentation.grpc", "0.47b0", ""),
        {
            "postgresql": ("opentelemetry.instrumentation.psycopg2", "0.47b0", ""),
            "mysql": ("opentelemetry.instrumentation.pymysql", "0.47b0", ""),
            "redis": ("opentelemetry.instrumentation.redis", "0.47b0", ""),
        },
        ("MainThread", "ThreadPoolExecutor-0_0", "ThreadPoolExecutor-0_1"),
        (
            (
                "pymysql.err.OperationalError",
                "(1205, 'Lock wait timeout exceeded; try restarting transaction')",
                '  File "/app/{svc}/db.py", line {line}, in execute',
            ),
            ("KeyError", "'sku'", '  File "/app/{svc}/handlers.py", line {line}, in handle'),
        ),
    ),
}
_CLIENT_USER_AGENTS = {
    "nodejs": "node-fetch/1.0",
    "dotnet": "dotnet-httpclient/8.0",
    "go": "Go-http-client/1.1",
    "java": "Java-http-client/21.0.3",
    "python": "python-requests/2.32.3",
}
_LANG_CYCLE = ("go", "java", "python", "nodejs", "dotnet")


def _stacktrace(exc_type: str, message: str, frame: str, svc: str, rng: random.Random) -> str:
    """A plausible multi-frame stack trace; the frame template gets the service and line numbers."""
    frames = [frame.format(svc=svc, line=rng.randrange(20, 900)) for _ in range(rng.randrange(6, 14))]
    return f"{exc_type}: {message}\n" + "\n".join(frames)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_PLACEHOLDER_RE = re.compile(r"\{(\w+)\}")


def _split_template(template: str) -> tuple[str, ...]:
    """Split ``a{x}b`` into ("a", "x", "b"): odd positions are placeholder names."""
    return tuple(_PLACEHOLDER_RE.split(template))


class _Service:
    """Everything precomputed about one service: pods, encoded resources and scopes, endpoints."""

    def __init__(self, idx: int, rng: random.Random) -> None:
        if idx < len(_FLEET):
            name, lang_name, protocol, db, external, callers = _FLEET[idx]
        else:
            name = f"service-{idx + 1}"
            lang_name = _LANG_CYCLE[idx % len(_LANG_CYCLE)]
            protocol = "http" if idx % 2 else "grpc"
            db = ("postgresql", None, "redis", "mysql")[idx % 4]
            external = None
            callers = (SERVICE_NAMES[rng.randrange(min(idx, 5))],)
        self.idx = idx
        self.name = name
        self.lang = lang = _LANGS[lang_name]
        self.lang_name = lang_name
        self.old = lang.old_semconv
        self.protocol = protocol
        self.db = db
        self.external = external
        self.callers = callers
        self.host = name  # k8s service DNS name used by callers
        self.port = 8080 if protocol == "http" else 50051
        self.version = f"{rng.randrange(1, 4)}.{rng.randrange(0, 20)}.{rng.randrange(0, 10)}"
        self.callees: list[_Service] = []  # filled once all services exist

        deploy_hash = "".join(rng.choice("0123456789abcdef") for _ in range(10))
        self.pods = [
            f"{name}-{deploy_hash}-{''.join(rng.choice('bcdfghjklmnpqrstvwxz2456789') for _ in range(5))}"
            for _ in range(3)
        ]
        self.pod_ips = [f"10.42.{rng.randrange(0, 16)}.{rng.randrange(2, 255)}" for _ in self.pods]
        nodes = [f"ip-10-0-{rng.randrange(0, 64)}-{rng.randrange(2, 255)}.ec2.internal" for _ in self.pods]
        self.resources: list[bytes] = []  # ResourceSpans.resource field, per pod
        for pod, node in zip(self.pods, nodes, strict=True):
            attrs: list[tuple[str, object]] = [
                ("service.name", name),
                ("service.version", self.version),
                ("service.namespace", "shop"),
                ("service.instance.id", _uuid(rng)),
                ("deployment.environment", "production"),
                ("host.name", pod),
                ("k8s.namespace.name", "shop-prod"),
                ("k8s.pod.name", pod),
                ("k8s.deployment.name", name),
                ("k8s.node.name", node),
                ("telemetry.sdk.name", "opentelemetry"),
                ("telemetry.sdk.language", lang_name),
                ("telemetry.sdk.version", lang.sdk_version),
            ]
            self.resources.append(_ld(b"\x0a", _message_attrs(b"\x0a", attrs)))
        self.resource_schema = (
            _ld(b"\x1a", lang.resource_schema_url.encode()) if lang.resource_schema_url else b""
        )

        # Scopes: (ScopeSpans.scope field, ScopeSpans.schema_url field), keyed by instrumentation role.
        internal_scope = {
            "nodejs": name,
            "dotnet": f"{name.title().replace('-', '')}Service",
            "go": f"github.com/example/shop/{name}",
            "java": f"com.example.{name.replace('-', '')}",
            "python": f"{name.replace('-', '_')}.app",
        }[lang_name]
        roles = {
            "server": lang.http_server if protocol == "http" else lang.grpc_server,
            "http_client": lang.http_client,
            "grpc_client": lang.grpc_client,
            "internal": (internal_scope, self.version, ""),
        }
        if db:
            roles["db"] = lang.db[db]
        self.scopes: dict[str, tuple[bytes, bytes]] = {}
        for role, (sname, sversion, schema) in roles.items():
            body = _ld(b"\x0a", sname.encode()) + (_ld(b"\x12", sversion.encode()) if sversion else b"")
            self.scopes[role] = (_ld(b"\x0a", body), _ld(b"\x1a", schema.encode()) if schema else b"")

        # Endpoints this service serves (and external APIs it calls).
        old = self.old
        if protocol == "http":
            eps = _HTTP_ENDPOINTS.get(name, _HTTP_ENDPOINTS["_generic"])
            self.endpoints: list[_HttpEndpoint] | list[_GrpcEndpoint] = [
                _HttpEndpoint(m, r, q, self.host, self.port, old) for m, r, q in eps
            ]
        else:
            rpc_service, methods = _GRPC_ENDPOINTS.get(
                name, (f"shop.{name.replace('-', '').title()}Service", ["Get", "List"])
            )
            self.endpoints = [_GrpcEndpoint(rpc_service, m, self.host, self.port, old) for m in methods]
        self.external_endpoints = [
            _HttpEndpoint(m, p, "", external, 443, old)
            for m, p in _EXTERNAL_ENDPOINTS.get(external or "", [])
        ]
        self.statements = [
            _DbStatement(db, op, table, tmpl, _DB[db][0], name)
            for op, table, tmpl in (_DB[db][2] if db else [])
        ]
        self.internal_ops = [_InternalOp(name, lang_name, op, rng) for op in _INTERNAL_OPS]
        self.thread_attrs = [_sa("thread.id", t) for t in range(1, 65)]
        self.thread_name_attrs = [_sa("thread.name", t) for t in lang.thread_names]
        self.build_attr = _sa("app.build.sha", f"{rng.getrandbits(160):040x}")
        self.region_attr = _sa("app.region", rng.choice(["us-east-1", "eu-west-1"]))
        self.exceptions = [
            (
                _kv(_kp("exception.type"), _av_str(t)),
                _kv(_kp("exception.message"), _av_str(m)),
                _kv(_kp("exception.stacktrace"), _av_str(_stacktrace(t, m, f, name, rng))),
                m,
            )
            for t, m, f in lang.exceptions
        ]


class _HttpEndpoint:
    """An HTTP route served by ``host:port``, with its constant attribute fields.

    ``client_attrs`` is indexed by the *caller's* convention: [new, old] semconv names.
    """

    __slots__ = ("client_attrs", "client_name", "path", "query", "server_attrs", "server_name")

    def __init__(self, method: str, route: str, query: str, host: str, port: int, old: bool) -> None:
        self.path = _split_template(route)
        self.query = _split_template(query) if query else ()
        self.server_name = _ld(b"\x2a", f"{method} {route}".encode())
        self.client_name = _ld(b"\x2a", method.encode())
        if old:
            self.server_attrs = (
                _sa("http.method", method),
                _sa("http.route", route),
                _sa("http.scheme", "http"),
                _sa("http.host", f"{host}:{port}"),
                _sa("net.host.port", port),
                _sa("http.flavor", "1.1"),
            )
        else:
            self.server_attrs = (
                _sa("http.request.method", method),
                _sa("http.route", route),
                _sa("url.scheme", "http"),
                _sa("server.address", host),
                _sa("server.port", port),
                _sa("network.protocol.version", "1.1"),
            )
        self.client_attrs = (
            (
                _sa("http.request.method", method),
                _sa("server.address", host),
                _sa("server.port", port),
                _sa("network.protocol.version", "1.1"),
                _sa("peer.service", host),
            ),
            (
                _sa("http.method", method),
                _sa("net.peer.name", host),
                _sa("net.peer.port", port),
                _sa("http.flavor", "1.1"),
                _sa("peer.service", host),
            ),
        )


class _GrpcEndpoint:
    """A gRPC method served by ``host:port``, with its constant attribute fields."""

    __slots__ = ("client_attrs", "name", "server_attrs")

    def __init__(self, service: str, method: str, host: str, port: int, old: bool) -> None:
        self.name = _ld(b"\x2a", f"{service}/{method}".encode())
        common = (_sa("rpc.system", "grpc"), _sa("rpc.service", service), _sa("rpc.method", method))
        if old:
            self.server_attrs = (*common, _sa("net.host.name", host), _sa("net.host.port", port))
        else:
            self.server_attrs = (*common, _sa("server.address", host), _sa("server.port", port))
        self.client_attrs = (
            (*common, _sa("server.address", host), _sa("server.port", port), _sa("peer.service", host)),
            (*common, _sa("net.peer.name", host), _sa("net.peer.port", port), _sa("peer.service", host)),
        )


class _DbStatement:
    """A query shape; ``attrs`` [new, old] leave db.statement out (inserted second)."""

    __slots__ = ("attrs", "name", "template")

    def __init__(
        self, system: str, operation: str, table: str | None, template: str, db_name: str, svc_name: str
    ) -> None:
        self.template = _split_template(template)
        self.name = _ld(b"\x2a", (f"{operation} {db_name}.{table}" if table else operation).encode())
        _, port, _ = _DB[system]
        role = "primary" if system != "redis" else "master"
        host = f"{system}-{role}.shop-prod.svc.cluster.local"
        head: tuple[bytes, ...] = (_sa("db.system", system), _sa("db.operation", operation))
        if table:
            head += (
                _sa("db.name", db_name),
                _sa("db.sql.table", table),
                _sa("db.user", f"{svc_name.replace('-', '_')}_svc"),
            )
        else:
            head += (_sa("db.redis.database_index", int(db_name)),)
        self.attrs = (
            (*head, _sa("server.address", host), _sa("server.port", port)),
            (*head, _sa("net.peer.name", host), _sa("net.peer.port", port)),
        )


class _InternalOp:
    __slots__ = ("attrs", "name")

    def __init__(self, svc: str, lang: str, op: str, rng: random.Random) -> None:
        module = svc.replace("-", "_")
        if lang == "java":
            func = "".join(w.title() if i else w for i, w in enumerate(op.split("_")))
            ns, path = (f"com.example.{module}.Handler", f"com/example/{module}/Handler.java")
        elif lang in ("nodejs", "dotnet"):
            func = "".join(w.title() if i else w for i, w in enumerate(op.split("_")))
            ns, path = (f"{module}.handlers", f"src/{module}/handlers.{'js' if lang == 'nodejs' else 'cs'}")
        else:
            func = op
            ns, path = (f"{module}.handlers", f"/app/{module}/handlers.{'go' if lang == 'go' else 'py'}")
        self.name = _ld(b"\x2a", func.encode())
        self.attrs = [
            _sa("code.function", func),
            _sa("code.namespace", ns),
            _sa("code.filepath", path),
            _sa("code.lineno", rng.randrange(10, 800)),
        ]


_T_SERVER, _T_CLIENT, _T_DB, _T_EXT, _T_INTERNAL = range(5)
_GRPC_ERROR_CODES = (13, 14, 4)  # INTERNAL, UNAVAILABLE, DEADLINE_EXCEEDED
_ZERO_SPAN_ID = b"\x00" * 8


class _Node:
    """One span of a trace under construction; encoded once the whole tree is known."""

    __slots__ = ("code", "end", "ep", "err", "parent", "peer", "pod", "sid", "start", "svc", "typ", "url")

    def __init__(
        self,
        svc: _Service,
        pod: int,
        typ: int,
        ep: object,
        parent: int,
        start: int,
        end: int,
        peer: _Service | None = None,
    ) -> None:
        self.svc = svc
        self.pod = pod
        self.typ = typ
        self.ep = ep
        self.parent = parent
        self.start = start
        self.end = end
        self.peer = peer  # the called service, for call CLIENT spans
        self.sid = b""
        self.code = 0  # HTTP or gRPC status code, shared by a CLIENT/SERVER pair
        self.url: str | None = None  # path and query, shared by a CLIENT/SERVER pair
        self.err = 0  # 1: the span that failed, 2: an ancestor the failure propagated to


class _Generator:
    """Builds the fleet once per config, then encodes traces request by request."""

    def __init__(self, cfg: SynthConfig) -> None:
        self.cfg = cfg
        world_rng = random.Random(f"tracelake-synth-world-{cfg.seed}")
        self.rng = random.Random(cfg.seed)
        self.services = [_Service(i, world_rng) for i in range(cfg.services)]
        by_name = {s.name: s for s in self.services}
        for s in self.services:
            for caller in s.callers:
                if caller in by_name and by_name[caller].idx < s.idx:
                    by_name[caller].callees.append(s)
        self.products = ["".join(world_rng.choice(_ALNUM) for _ in range(10)) for _ in range(500)]
        self.trace_states = [
            _ld(b"\x1a", s.encode()) for s in ("rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE", "dd=s:1;o:rum")
        ]
        self.k = {
            k: _kp(k)
            for k in [
                "http.target",
                "http.url",
                "url.full",
                "url.path",
                "url.query",
                "http.user_agent",
                "user_agent.original",
                "net.peer.ip",
                "client.address",
                "network.peer.address",
                "db.statement",
                "enduser.id",
                "session.id",
                "app.request.id",
                "app.tenant.id",
                "http.status_code",
                "http.response.status_code",
                "rpc.grpc.status_code",
                "net.peer.port",
                "network.peer.port",
            ]
        }
        cache_hit = (_sa("app.cache.hit", False), _sa("app.cache.hit", True))
        retry = [_sa("app.retry.count", i) for i in range(4)]
        self.flag = (_sa("app.feature_flag.new_checkout", False), _sa("app.feature_flag.new_checkout", True))
        # Common extras that pad a span up to ``attributes_per_span``, most common first.
        self.fillers: list[Callable[[_Trace, _Service, Callable[[], float]], bytes]] = [
            lambda t, s, r: s.thread_attrs[int(r() * 64)],
            lambda t, s, r: s.thread_name_attrs[int(r() * len(s.thread_name_attrs))],
            lambda t, s, r: t.enduser,
            lambda t, s, r: t.session,
            lambda t, s, r: t.request_id,
            lambda t, s, r: t.tenant,
            lambda t, s, r: cache_hit[r() < 0.8],
            lambda t, s, r: retry[int(r() ** 4 * 4)],
            lambda t, s, r: s.region_attr,
            lambda t, s, r: t.flag,
            lambda t, s, r: s.build_attr,
        ]
        self.extra_keys = [_kp(f"app.custom.attr_{i}") for i in range(cfg.attributes_per_span)]
        self.message_event = _ld(b"\x12", b"message")
        self.msg_types = (
            _ld(b"\x1a", _kv(_kp("message.type"), _av_str("SENT"))),
            _ld(b"\x1a", _kv(_kp("message.type"), _av_str("RECEIVED"))),
        )
        self.msg_id = _ld(b"\x1a", _kv(_kp("message.id"), _av_int(1)))
        self.cache_miss_event = _ld(b"\x12", b"cache miss")
        self.retry_event = _ld(b"\x12", b"retry")
        self.ff_event = _ld(b"\x12", b"feature_flag") + _ld(
            b"\x1a", _kv(_kp("feature_flag.key"), _av_str("new-checkout-flow"))
        )
        self.ff_variants = tuple(
            _ld(b"\x1a", _kv(_kp("feature_flag.variant"), _av_str(v))) for v in ("on", "off")
        )
        self.exception_name = _ld(b"\x12", b"exception")

    def requests(self) -> Iterator[bytes]:
        cfg = self.cfg
        start = cfg.start_unix_nano
        if start is None:
            start = time.time_ns() - 3_600_000_000_000
        slot = cfg.window_seconds * 1e9 / max(cfg.traces, 1)
        rand = self.rng.random
        done = 0
        while done < cfg.traces:
            n = min(cfg.traces_per_request, cfg.traces - done)
            groups: dict[tuple[int, int], dict[str, list[bytes]]] = {}
            for i in range(done, done + n):
                # Stratified uniform: trace i starts in the i-th slot of the window, so
                # successive requests cover successive time ranges like a live stream.
                self._trace(start + int((i + rand()) * slot), groups)
            done += n
            yield self._assemble(groups)

    def _assemble(self, groups: dict[tuple[int, int], dict[str, list[bytes]]]) -> bytes:
        """One ResourceSpans per (service, pod), one ScopeSpans per instrumentation."""
        out = []
        for (svc_idx, pod), scopes in groups.items():
            svc = self.services[svc_idx]
            parts = [svc.resources[pod]]
            for role, spans in scopes.items():
                scope, schema = svc.scopes[role]
                body = scope + b"".join(spans) + schema
                parts.append(b"\x12" + _varint(len(body)) + body)
            parts.append(svc.resource_schema)
            rs = b"".join(parts)
            out.append(b"\x0a" + _varint(len(rs)) + rs)
        return b"".join(out)

    # ------------------------------------------------------------------------------------

    def _tree(self, t0: int) -> list[_Node]:
        """A span tree of exactly the drawn size, children inside their parents' time.

        A root SERVER span in the first service, then spans attach under existing SERVER or
        INTERNAL spans: calls (a CLIENT span and the callee's SERVER span), db CLIENT spans,
        external HTTP CLIENT spans or INTERNAL spans.
        """
        rng = self.rng
        rand = rng.random
        lo, hi = self.cfg.spans_per_trace
        target = lo + int(rand() * (hi - lo + 1))
        front = self.services[0]
        dur = int(min(max(rng.lognormvariate(18.0, 0.9), 1e6), 3e10))  # median 66 ms
        ep = front.endpoints[int(rand() * len(front.endpoints))]
        nodes = [_Node(front, int(rand() * 3), _T_SERVER, ep, -1, t0, t0 + dur)]
        attachable = [0]
        while len(nodes) < target:
            # Favour the newest SERVER/INTERNAL span so trees get depth, not just breadth.
            p_idx = attachable[-1] if rand() < 0.4 else attachable[int(rand() * len(attachable))]
            parent = nodes[p_idx]
            svc = parent.svc
            p_start = parent.start
            p_dur = parent.end - p_start
            r = rand()
            if r < 0.55 and svc.callees and target - len(nodes) >= 2:
                callee = svc.callees[int(rand() * len(svc.callees))]
                dur = min(max(int(p_dur * (0.1 + 0.5 * rand())), 2000), p_dur)
                cs = p_start + int(rand() * (p_dur - dur))
                ce = cs + dur
                lat = min(dur // 8, 40_000 + int(rand() * 700_000))  # network + queueing
                ep = callee.endpoints[int(rand() * len(callee.endpoints))]
                nodes.append(_Node(svc, parent.pod, _T_CLIENT, ep, p_idx, cs, ce, callee))
                attachable.append(len(nodes))
                ss, se = cs + lat, ce - lat - int(rand() * lat)
                nodes.append(_Node(callee, int(rand() * 3), _T_SERVER, ep, len(nodes) - 1, ss, se))
                continue
            if r < 0.8 and svc.db:
                typ = _T_DB
                ep = svc.statements[int(rand() * len(svc.statements))]
                want = min(rng.lognormvariate(14.2, 0.8), p_dur * 0.8)  # median 1.5 ms
            elif r < 0.87 and svc.external:
                typ = _T_EXT
                ep = svc.external_endpoints[int(rand() * len(svc.external_endpoints))]
                want = p_dur * (0.2 + 0.6 * rand())
            else:
                typ = _T_INTERNAL
                ep = svc.internal_ops[int(rand() * len(svc.internal_ops))]
                want = p_dur * (0.05 + 0.45 * rand())
                attachable.append(len(nodes))
            dur = min(max(int(want), 1000), p_dur)
            s = p_start + int(rand() * (p_dur - dur))
            nodes.append(_Node(svc, parent.pod, typ, ep, p_idx, s, s + dur))
        return nodes

    def _fail(self, nodes: list[_Node]) -> tuple[int, int]:
        """Maybe make one span fail and propagate to its ancestors; returns the codes."""
        rand = self.rng.random
        if rand() >= self.cfg.error_rate:
            return 0, 0
        # A call CLIENT span only fails because its SERVER span did, so never start there;
        # prefer a span below the root when there is one.
        candidates = [i for i, nd in enumerate(nodes) if nd.typ != _T_CLIENT][1:] or [0]
        i = candidates[int(rand() * len(candidates))]
        nodes[i].err = 1
        i = nodes[i].parent
        while i >= 0:
            nodes[i].err = 2
            i = nodes[i].parent
        return (500 if rand() < 0.7 else 503), _GRPC_ERROR_CODES[int(rand() * 3)]

    def _trace(self, t0: int, groups: dict[tuple[int, int], dict[str, list[bytes]]]) -> None:
        rng = self.rng
        rand = rng.random
        randbytes = rng.randbytes
        nodes = self._tree(t0)
        err_http, err_grpc = self._fail(nodes)
        trace = _Trace(self, rng)
        tid_field = b"\x0a\x10" + randbytes(16)
        ts_field = self.trace_states[int(rand() * 3)] if rand() < 0.1 else b""
        for nd in nodes:
            sid = randbytes(8)
            while sid == _ZERO_SPAN_ID:
                sid = randbytes(8)
            nd.sid = sid

        n_attrs = self.cfg.attributes_per_span
        fillers = self.fillers
        for nd in nodes:
            svc = nd.svc
            typ = nd.typ
            err = nd.err
            if typ == _T_SERVER:
                if nd.parent >= 0:
                    client = nodes[nd.parent]
                    nd.url, nd.code = client.url, client.code
                else:
                    self._request_values(nd, trace)
                if err:
                    nd.code = err_http if svc.protocol == "http" else err_grpc
                name, attrs = self._server(nd, nodes, trace)
                role = "server"
                kind = _SPAN_KIND_SERVER
            elif typ == _T_CLIENT:
                self._request_values(nd, trace)
                callee = nd.peer
                assert callee is not None
                if err:
                    nd.code = err_http if callee.protocol == "http" else err_grpc
                name, attrs = self._client(nd)
                role = "http_client" if callee.protocol == "http" else "grpc_client"
                kind = _SPAN_KIND_CLIENT
            elif typ == _T_DB:
                name, attrs = self._db(nd, trace)
                role = "db"
                kind = _SPAN_KIND_CLIENT
            elif typ == _T_EXT:
                nd.code = err_http if err else _HTTP_OK_CODES[int(rand() * len(_HTTP_OK_CODES))]
                name, attrs = self._external(nd, trace)
                role = "http_client"
                kind = _SPAN_KIND_CLIENT
            else:
                name, attrs = nd.ep.name, list(nd.ep.attrs)
                role = "internal"
                kind = _SPAN_KIND_INTERNAL
            if len(attrs) < n_attrs:
                for f in fillers[: n_attrs - len(attrs)]:
                    attrs.append(f(trace, svc, rand))
                for k in range(n_attrs - len(attrs)):
                    value = self.products[int(rand() * 500)].lower()
                    attrs.append(_ss(self.extra_keys[k], value))
            elif len(attrs) > n_attrs:
                del attrs[n_attrs:]

            # Span fields in field-number order (flags, field 16, last).
            start, end = nd.start, nd.end
            parts = [tid_field, b"\x12\x08", nd.sid, ts_field]
            if nd.parent >= 0:
                parts.append(b"\x22\x08")
                parts.append(nodes[nd.parent].sid)
            parts += (name, kind, b"\x39", _pack_u64(start), b"\x41", _pack_u64(end))
            parts += attrs
            if rand() < 0.05:
                parts.append(self._event(nd))
            if err:
                parts.append(self._error(nd))
            if typ == _T_SERVER and nd.parent >= 0:
                parts.append(_FLAGS_REMOTE_PARENT)
            else:
                parts.append(_FLAGS_LOCAL_PARENT)
            body = b"".join(parts)
            key = (svc.idx, nd.pod)
            scopes = groups.get(key)
            if scopes is None:
                scopes = groups[key] = {}
            spans = scopes.get(role)
            if spans is None:
                spans = scopes[role] = []
            spans.append(b"\x12" + _varint(len(body)) + body)

    # ------------------------------------------------------------------------------------
    # Per-kind builders: each returns (encoded name field, encoded attribute fields).

    def _request_values(self, nd: _Node, trace: _Trace) -> None:
        """Draw the URL (path + query) and response code of an HTTP call."""
        ep = nd.ep
        if isinstance(ep, _HttpEndpoint):
            url = trace.fill(ep.path)
            if ep.query:
                url += trace.fill(ep.query)
            nd.url = url
            nd.code = _HTTP_OK_CODES[int(self.rng.random() * len(_HTTP_OK_CODES))]

    def _server(self, nd: _Node, nodes: list[_Node], trace: _Trace) -> tuple[bytes, list[bytes]]:
        k = self.k
        svc = nd.svc
        ep = nd.ep
        rand = self.rng.random
        if nd.parent < 0:  # an end user's browser or app, seen through the ingress
            peer_ip = trace.client_ip
            ua = _USER_AGENTS[int(rand() * len(_USER_AGENTS))]
        else:  # another service's pod
            client = nodes[nd.parent]
            peer_ip = client.svc.pod_ips[client.pod]
            ua = _CLIENT_USER_AGENTS[client.svc.lang_name]
        if isinstance(ep, _GrpcEndpoint):
            attrs = list(ep.server_attrs)
            attrs.append(_si(k["rpc.grpc.status_code"], nd.code))
            if svc.old:
                attrs.append(_ss(k["net.peer.ip"], peer_ip))
                attrs.append(_si(k["net.peer.port"], 30000 + int(rand() * 30000)))
            else:
                attrs.append(_ss(k["network.peer.address"], peer_ip))
                attrs.append(_si(k["network.peer.port"], 30000 + int(rand() * 30000)))
            return ep.name, attrs
        assert isinstance(ep, _HttpEndpoint) and nd.url is not None
        attrs = list(ep.server_attrs)
        if svc.old:
            attrs.append(_ss(k["http.target"], nd.url))
            attrs.append(_ss(k["http.user_agent"], ua))
            attrs.append(_ss(k["net.peer.ip"], peer_ip))
            attrs.append(_si(k["http.status_code"], nd.code))
        else:
            path, _, query = nd.url.partition("?")
            attrs.append(_ss(k["url.path"], path))
            if query:
                attrs.append(_ss(k["url.query"], query))
            attrs.append(_ss(k["user_agent.original"], ua))
            attrs.append(_ss(k["client.address"], peer_ip))
            attrs.append(_si(k["http.response.status_code"], nd.code))
        return ep.server_name, attrs

    def _client(self, nd: _Node) -> tuple[bytes, list[bytes]]:
        k = self.k
        ep = nd.ep
        callee = nd.peer
        assert callee is not None
        old = nd.svc.old
        if isinstance(ep, _GrpcEndpoint):
            attrs = list(ep.client_attrs[old])
            attrs.append(_si(k["rpc.grpc.status_code"], nd.code))
            return ep.name, attrs
        assert isinstance(ep, _HttpEndpoint)
        attrs = list(ep.client_attrs[old])
        url = f"http://{callee.host}:{callee.port}{nd.url}"
        if old:
            attrs.append(_ss(k["http.url"], url))
            attrs.append(_si(k["http.status_code"], nd.code))
        else:
            attrs.append(_ss(k["url.full"], url))
            attrs.append(_si(k["http.response.status_code"], nd.code))
        return ep.client_name, attrs

    def _external(self, nd: _Node, trace: _Trace) -> tuple[bytes, list[bytes]]:
        k = self.k
        ep = nd.ep
        assert isinstance(ep, _HttpEndpoint)
        url = f"https://{nd.svc.external}{trace.fill(ep.path)}"
        attrs = list(ep.client_attrs[nd.svc.old])
        if nd.svc.old:
            attrs.append(_ss(k["http.url"], url))
            attrs.append(_si(k["http.status_code"], nd.code))
        else:
            attrs.append(_ss(k["url.full"], url))
            attrs.append(_si(k["http.response.status_code"], nd.code))
        return ep.client_name, attrs

    def _db(self, nd: _Node, trace: _Trace) -> tuple[bytes, list[bytes]]:
        st = nd.ep
        assert isinstance(st, _DbStatement)
        attrs = list(st.attrs[nd.svc.old])
        attrs.insert(1, _ss(self.k["db.statement"], trace.fill(st.template)))
        return st.name, attrs

    def _event(self, nd: _Node) -> bytes:
        """A short, non-error span event of a kind that fits the span."""
        rand = self.rng.random
        body = b"\x09" + _pack_u64(nd.start + int(rand() * (nd.end - nd.start)))
        if isinstance(nd.ep, _GrpcEndpoint):
            size = 20 + int(rand() * 4000)
            body += self.message_event + self.msg_types[nd.typ == _T_SERVER]
            body += self.msg_id
            body += _ld(b"\x1a", _kv(_kp("message.uncompressed_size"), _av_int(size)))
        elif nd.typ == _T_DB or rand() < 0.4:
            key = f"product:{self.products[int(rand() * 500)]}"
            body += self.cache_miss_event
            body += _ld(b"\x1a", _kv(_kp("cache.key"), _av_str(key)))
        elif rand() < 0.5:
            attempt = _av_int(1 + int(rand() * 3))
            body += self.retry_event + _ld(b"\x1a", _kv(_kp("retry.attempt"), attempt))
        else:
            body += self.ff_event + self.ff_variants[rand() < 0.5]
        return _ld(b"\x5a", body)

    def _error(self, nd: _Node) -> bytes:
        """Status ERROR; the span that failed also records an ``exception`` event."""
        rand = self.rng.random
        exc_type, exc_msg, exc_stack, message = nd.svc.exceptions[int(rand() * len(nd.svc.exceptions))]
        event = b""
        if nd.err == 1:
            t = nd.end - int(rand() * min(nd.end - nd.start, 200_000))
            ev = b"\x09" + _pack_u64(t) + self.exception_name
            ev += _ld(b"\x1a", exc_type) + _ld(b"\x1a", exc_msg) + _ld(b"\x1a", exc_stack)
            event = _ld(b"\x5a", ev)
        elif nd.typ == _T_CLIENT or nd.typ == _T_SERVER:
            message = f"HTTP {nd.code}" if isinstance(nd.ep, _HttpEndpoint) else _GRPC_NAMES[nd.code]
        else:
            message = "downstream call failed"
        msg = message.encode()
        status = b"\x12" + _varint(len(msg)) + msg + b"\x18\x02"
        return event + b"\x7a" + _varint(len(status)) + status


_GRPC_NAMES = {4: "DEADLINE_EXCEEDED", 13: "INTERNAL", 14: "UNAVAILABLE"}


class _Trace:
    """Values shared by all spans of a trace: the user, session and request it serves."""

    __slots__ = (
        "_vals",
        "client_ip",
        "enduser",
        "flag",
        "products",
        "request_id",
        "rng",
        "session",
        "session_id",
        "tenant",
        "user",
    )

    def __init__(self, gen: _Generator, rng: random.Random) -> None:
        self.rng = rng
        self.products = gen.products
        rand = rng.random
        k = gen.k
        # Power-law-ish user popularity: a few heavy users, a long tail.
        self.user = str(100_000 + int(rand() ** 3 * 900_000))
        self.session_id = f"{rng.getrandbits(64):016x}"
        self.client_ip = (
            f"{1 + int(rand() * 222)}.{int(rand() * 256)}.{int(rand() * 256)}.{1 + int(rand() * 254)}"
        )
        self.enduser = _ss(k["enduser.id"], f"user_{self.user}")
        self.session = _ss(k["session.id"], self.session_id)
        self.request_id = _ss(k["app.request.id"], _uuid(rng))
        self.tenant = _ss(k["app.tenant.id"], f"tenant-{int(rand() ** 2 * 40):03d}")
        self.flag = gen.flag[rand() < 0.3]
        self._vals: dict[str, str] = {}

    def fill(self, template: tuple[str, ...]) -> str:
        """Substitute placeholders (odd positions of a split template) with values."""
        if len(template) == 1:
            return template[0]
        value = self.value
        return "".join(value(part) if i & 1 else part for i, part in enumerate(template))

    def value(self, name: str) -> str:
        """A placeholder value; ids stay fixed within a trace so URLs and SQL agree."""
        v = self._vals.get(name)
        if v is not None:
            return v
        rng = self.rng
        rand = rng.random
        if name == "status":  # per statement, not per trace
            return ("pending", "paid", "shipped", "cancelled")[int(rand() * 4)]
        if name == "qty":
            return str(1 + int(rand() ** 2 * 5))
        if name == "cents":
            return str(100 + int(rand() * 50_000))
        if name == "userId":
            v = self.user
        elif name == "session":
            v = self.session_id
        elif name == "productId":
            v = self.products[int(rand() ** 2 * len(self.products))]
        elif name == "orderId":
            v = _uuid(rng)
        elif name == "paymentId":
            v = f"pi_{rng.getrandbits(96):024x}"
        elif name == "sku":
            v = f"SKU-{int(rand() ** 2 * 5000):06d}"
        elif name == "itemId":
            v = str(int(rand() * 1_000_000))
        elif name == "warehouse":
            v = str(1 + int(rand() * 12))
        elif name == "currency":
            v = ("USD", "USD", "USD", "EUR", "GBP", "JPY", "CAD")[int(rand() * 7)]
        elif name == "page":
            v = str(1 + int(rand() ** 3 * 20))
        elif name == "category":
            v = ("books", "electronics", "garden", "toys", "kitchen")[int(rand() * 5)]
        else:
            raise KeyError(f"unknown placeholder {name!r}")
        self._vals[name] = v
        return v


def _main(argv: list[str]) -> None:
    """Print generation speed and OTLP bytes per span: ``python -m tracelake.synth [traces]``."""
    traces = int(argv[1]) if len(argv) > 1 else 10_000
    cfg = SynthConfig(traces=traces, start_unix_nano=1_700_000_000_000_000_000)
    t = time.process_time()
    payloads = list(generate_request_bytes(cfg))
    gen_s = time.process_time() - t
    t = time.process_time()
    spans = 0
    for p in payloads:
        req = ExportTraceServiceRequest.FromString(p)
        spans += sum(len(ss.spans) for rs in req.resource_spans for ss in rs.scope_spans)
    parse_s = time.process_time() - t
    size = sum(len(p) for p in payloads)
    print(f"{traces} traces, {spans} spans, {len(payloads)} requests")
    print(
        f"bytes: {spans / gen_s:,.0f} spans/s ({gen_s:.2f} s); "
        f"as messages: {spans / (gen_s + parse_s):,.0f} spans/s"
    )
    print(f"OTLP protobuf: {size / spans:.1f} bytes/span")


if __name__ == "__main__":
    _main(sys.argv)
