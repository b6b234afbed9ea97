"""The trace view (``GET /``) in headless Chromium against a real ``tracelake serve``: a known
four-service trace with an error span and an orphan, looked up through the page as a user would.

Set ``TRACELAKE_TRACE_VIEW_SCREENSHOT=docs/trace-view.png`` to keep the screenshot the test takes
(that is how the README's picture is made).
"""

from __future__ import annotations

import http.client
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from tests import png
from tests.browser import Chromium
from tests.querier.test_trace_by_id_api import HOLD, get
from tests.server.harness import Server

TENANT = "acme"
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
WIDTH, HEIGHT = 1000, 720
BAR, ERROR = (0x3D, 0x71, 0xD9), (0xD9, 0x30, 0x25)  # --bar and --error in querier/ui/index.html
MS = 1_000_000
MISSING_PARENT = b"\xee" * 8
T0 = (time.time_ns() - 60 * 10**9) // MS * MS


@dataclass(frozen=True)
class Planned:
    key: str
    service: str
    name: str
    parent: str | None
    start_ms: int
    end_ms: int
    kind: int = Span.SPAN_KIND_INTERNAL
    error: bool = False

    @property
    def span_id(self) -> bytes:
        return bytes([PLAN.index(self) + 1]) * 8

    @property
    def parent_id(self) -> bytes:
        """Empty for the root; a span id that is nowhere in the trace for an orphan."""
        if self.parent is None:
            return b""
        return BY_KEY[self.parent].span_id if self.parent in BY_KEY else MISSING_PARENT


PLAN = [
    Planned("root", "frontend", "GET /checkout", None, 0, 400, Span.SPAN_KIND_SERVER),
    Planned("cart-call", "frontend", "POST /api/cart", "root", 10, 130, Span.SPAN_KIND_CLIENT),
    Planned("cart", "cart", "add item", "cart-call", 20, 120, Span.SPAN_KIND_SERVER),
    Planned("db", "cart", "SELECT carts", "cart", 30, 80, Span.SPAN_KIND_CLIENT),
    Planned("charge", "payment", "charge card", "root", 150, 390, Span.SPAN_KIND_SERVER, error=True),
    Planned("fraud", "payment", "fraud check", "charge", 160, 260),
    Planned("orphan", "worker", "retry queue", "gone", 300, 350, Span.SPAN_KIND_CONSUMER),
]
BY_KEY = {p.key: p for p in PLAN}
TREE_ORDER = [
    ("root", 0),
    ("cart-call", 1),
    ("cart", 2),
    ("db", 3),
    ("charge", 1),
    ("fraud", 2),
    ("orphan", 0),
]
TOTAL_MS = 400
CHARGE_ID = BY_KEY["charge"].span_id.hex()


def kv(key: str, **value: object) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(**value))


def charge_details(span: Span) -> None:
    """Every AnyValue form, an event and a link on the error span."""
    span.attributes.extend(
        [
            kv("payment.provider", string_value="stripe"),
            kv("payment.amount_cents", int_value=4999),
            kv("payment.amount", double_value=49.99),
            kv("payment.retry", bool_value=False),
            kv("payment.token", bytes_value=b"\x01\x02\xab"),
            kv(
                "payment.methods",
                array_value=ArrayValue(values=[AnyValue(string_value="card"), AnyValue(int_value=7)]),
            ),
            kv("payment.card", kvlist_value=KeyValueList(values=[kv("brand", string_value="visa")])),
        ]
    )
    span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message="card declined"))
    event = span.events.add(time_unix_nano=T0 + 370 * MS, name="exception")
    event.attributes.append(kv("exception.message", string_value="insufficient funds"))
    link = span.links.add(trace_id=bytes.fromhex("0af7651916cd43dd8448eb211c80319c"), span_id=b"\xb7" * 8)
    link.attributes.append(kv("link.reason", string_value="retry of"))


def request() -> ExportTraceServiceRequest:
    """The plan backwards (children before parents, the orphan first): the page must find the order."""
    by_service: dict[str, ResourceSpans] = {}
    for planned in reversed(PLAN):
        rs = by_service.get(planned.service)
        if rs is None:
            rs = by_service[planned.service] = ResourceSpans()
            rs.resource.attributes.extend(
                [
                    kv("service.name", string_value=planned.service),
                    kv("host.name", string_value=f"{planned.service}-1"),
                ]
            )
            rs.scope_spans.add().scope.name = "checkout-demo"
        span = rs.scope_spans[0].spans.add(
            trace_id=TRACE_ID,
            span_id=planned.span_id,
            parent_span_id=planned.parent_id,
            name=planned.name,
            kind=planned.kind,
            start_time_unix_nano=T0 + planned.start_ms * MS,
            end_time_unix_nano=T0 + planned.end_ms * MS,
        )
        if planned.error:
            charge_details(span)
        if planned.key == "db":
            span.attributes.append(kv("db.system", string_value="postgresql"))
    return ExportTraceServiceRequest(resource_spans=list(by_service.values()))


BROKEN_ID = bytes.fromhex("00000000000000000000000000000bad")


def broken_trace() -> ExportTraceServiceRequest:
    """Data the page must survive: a parent cycle, a span that is its own parent, a zero-length span."""
    rs = ResourceSpans()
    spans = rs.scope_spans.add().spans
    for name, span_id, parent in [
        ("a", b"\xa1", b"\xa2"),
        ("b", b"\xa2", b"\xa1"),
        ("self", b"\xa3", b"\xa3"),
    ]:
        spans.add(
            trace_id=BROKEN_ID,
            span_id=span_id * 8,
            parent_span_id=parent * 8,
            name=name,
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + 10 * MS,
        )
    spans.add(
        trace_id=BROKEN_ID,
        span_id=b"\xa4" * 8,
        name="instant",
        start_time_unix_nano=T0 + MS,
        end_time_unix_nano=T0 + MS,
    )
    return ExportTraceServiceRequest(resource_spans=[rs])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Multi-tenant, so the page's tenant field (sent as X-Scope-OrgID) is exercised too."""
    extra = {"multitenancy_enabled": True, **HOLD}
    server = Server(tmp_path_factory.mktemp("trace-view"), receivers=("otlp_http",), extra=extra).start()
    try:
        for payload in (request(), broken_trace()):
            conn = http.client.HTTPConnection("127.0.0.1", server.ports["otlp_http"], timeout=30)
            headers = {"Content-Type": "application/x-protobuf", "X-Scope-OrgID": TENANT}
            conn.request("POST", "/v1/traces", payload.SerializeToString(), headers)
            assert conn.getresponse().status == 200
            conn.close()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    with Chromium.launch(tmp_path_factory.mktemp("chromium") / "profile", WIDTH, HEIGHT) as chromium:
        yield chromium


def page_url(server: Server, query: str = "") -> str:
    return server.url("api", "/" + (f"?{query}" if query else ""))


def open_trace(browser: Chromium, server: Server, extra: str = "") -> None:
    browser.goto(page_url(server, f"trace={TRACE_ID.hex()}&tenant={TENANT}{extra}"))
    state, text = browser.evaluate("[document.body.dataset.state, document.body.innerText]")
    assert state == "ready", text


ROWS_JS = """[...document.querySelectorAll('.row')].map((row) => {
  const text = (selector) => row.querySelector(selector).textContent;
  const bar = row.querySelector('.bar').getBoundingClientRect();
  const track = row.querySelector('.track').getBoundingClientRect();
  return {id: row.dataset.spanId, depth: Number(row.dataset.depth), error: row.classList.contains('error'),
          service: text('.svc'), name: text('.name'), duration: text('.dur'), left: bar.left - track.left,
          width: bar.width, track: track.width, x: bar.left + bar.width / 2, y: bar.top + bar.height / 2};
})"""

DETAILS_JS = """Object.fromEntries([...document.querySelectorAll('.details section')].map((section) => [
  section.querySelector('h3').textContent,
  {rows: [...section.querySelectorAll('tr')].map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]),
   items: [...section.querySelectorAll('.item strong')].map((e) => e.textContent),
   text: section.innerText}]))"""


def test_page_is_served_self_contained(server: Server) -> None:
    status, content_type, body = get(server, "/")
    assert (status, content_type) == (200, "text/html; charset=utf-8")
    page = body.decode()
    assert "<script>" in page and "api/v2/traces/" in page
    assert (
        "http://" not in page and "https://" not in page and "<script src" not in page
    )  # nothing from a CDN
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["api"], timeout=10)
    conn.request("POST", "/", b"")
    assert conn.getresponse().status == 405
    conn.close()
    assert get(server, "/nothing-here")[0] == 404


def test_waterfall_shows_every_span_in_tree_order_with_proportional_bars(
    server: Server, browser: Chromium
) -> None:
    open_trace(browser, server)
    rows = browser.evaluate(ROWS_JS)
    assert [(r["id"], r["depth"]) for r in rows] == [(BY_KEY[k].span_id.hex(), d) for k, d in TREE_ORDER]
    for row, (key, _) in zip(rows, TREE_ORDER, strict=True):
        planned = BY_KEY[key]
        assert (row["service"], row["name"], row["error"]) == (planned.service, planned.name, planned.error)
        assert row["duration"] == f"{planned.end_ms - planned.start_ms} ms"
        # bars are placed and scaled by start and duration relative to the whole trace (within a pixel)
        assert row["width"] == pytest.approx(
            row["track"] * (planned.end_ms - planned.start_ms) / TOTAL_MS, abs=1
        )
        assert row["left"] == pytest.approx(row["track"] * planned.start_ms / TOTAL_MS, abs=1)
    summary = browser.evaluate("document.getElementById('summary').innerText")
    for text in (TRACE_ID.hex(), "frontend: GET /checkout", "400 ms", "cart, frontend, payment, worker"):
        assert text in summary
    assert browser.evaluate("document.querySelector('#summary .span-count').textContent") == "7"
    assert browser.evaluate("document.querySelector('#summary .errors').textContent") == "1"


def test_clicking_a_row_shows_the_spans_details(server: Server, browser: Chromium) -> None:
    open_trace(browser, server)
    assert browser.evaluate("document.querySelectorAll('.details').length") == 0
    browser.click(f'.row[data-span-id="{CHARGE_ID}"] .name')
    details = browser.evaluate(DETAILS_JS)
    assert browser.evaluate("document.querySelector('.details').dataset.for") == CHARGE_ID
    facts = dict(details["Span"]["rows"])
    assert facts["Span ID"] == CHARGE_ID and facts["Parent"] == BY_KEY["root"].span_id.hex()
    assert (facts["Kind"], facts["Status"], facts["Start"], facts["Duration"]) == (
        "server",
        "error: card declined",
        "+150 ms",
        "240 ms",
    )
    assert details["Span attributes"]["rows"] == [
        ["payment.provider", "stripe"],
        ["payment.amount_cents", "4999"],
        ["payment.amount", "49.99"],
        ["payment.retry", "false"],
        ["payment.token", "0x0102ab"],
        ["payment.methods", '["card", 7]'],
        ["payment.card", '{brand: "visa"}'],
    ]
    assert details["Resource attributes"]["rows"] == [["service.name", "payment"], ["host.name", "payment-1"]]
    assert details["Events (1)"]["items"] == ["exception"] and "at +220 ms" in details["Events (1)"]["text"]
    assert details["Events (1)"]["rows"] == [["exception.message", "insufficient funds"]]
    assert details["Links (1)"]["rows"] == [
        ["Trace", "0af7651916cd43dd8448eb211c80319c"],
        ["Span", "b7" * 8],
        ["link.reason", "retry of"],
    ]
    assert (
        browser.evaluate("new URLSearchParams(location.search).get('span')") == CHARGE_ID
    )  # a shareable link
    browser.click(f'.row[data-span-id="{CHARGE_ID}"] .name')
    assert browser.evaluate("document.querySelectorAll('.details').length") == 0


def test_a_link_with_span_opens_its_details(server: Server, browser: Chromium) -> None:
    db_id = BY_KEY["db"].span_id.hex()
    open_trace(browser, server, f"&span={db_id}")
    details = browser.evaluate(DETAILS_JS)
    assert dict(details["Span"]["rows"])["Span ID"] == db_id
    assert details["Span attributes"]["rows"] == [["db.system", "postgresql"]]
    assert details["Resource attributes"]["rows"] == [["service.name", "cart"], ["host.name", "cart-1"]]
    assert details["Events (0)"]["text"].endswith("none") and details["Links (0)"]["text"].endswith("none")
    assert (
        browser.evaluate("document.querySelector('.details').previousElementSibling.dataset.spanId") == db_id
    )
    open_trace(browser, server, f"&span={BY_KEY['orphan'].span_id.hex()}")
    assert (
        dict(browser.evaluate(DETAILS_JS)["Span"]["rows"])["Parent"]
        == MISSING_PARENT.hex() + " (not in this trace)"
    )


def test_collapsing_a_span_hides_its_subtree(server: Server, browser: Chromium) -> None:
    open_trace(browser, server)
    visible = "[...document.querySelectorAll('.row')].map((r) => r.dataset.spanId)"
    browser.click(f'.row[data-span-id="{BY_KEY["cart-call"].span_id.hex()}"] .toggle')
    assert browser.evaluate(visible) == [
        BY_KEY[k].span_id.hex() for k in ("root", "cart-call", "charge", "fraud", "orphan")
    ]
    browser.click(f'.row[data-span-id="{BY_KEY["cart-call"].span_id.hex()}"] .toggle')
    assert len(browser.evaluate(visible)) == len(PLAN)


def test_the_form_looks_a_trace_up_and_updates_the_address(server: Server, browser: Chromium) -> None:
    browser.goto(page_url(server))
    assert (
        browser.evaluate("document.getElementById('message').textContent")
        == "Enter a trace id to see its spans."
    )
    browser.type_text("#trace-id", TRACE_ID.hex())
    browser.type_text("#tenant", TENANT)
    browser.click("form button")
    browser.wait_for("document.body.dataset.state === 'ready'")
    assert browser.evaluate("location.search") == f"?trace={TRACE_ID.hex()}&tenant={TENANT}"
    assert browser.evaluate("document.querySelectorAll('.row').length") == len(PLAN)
    browser.evaluate("history.back()")  # back to the empty page: the trace goes away
    browser.wait_for("document.body.dataset.state === 'idle'")
    assert browser.evaluate("document.getElementById('waterfall').hidden") is True


def test_broken_parent_links_still_show_every_span(server: Server, browser: Chromium) -> None:
    browser.goto(page_url(server, f"trace={BROKEN_ID.hex()}&tenant={TENANT}"))
    assert browser.evaluate("document.body.dataset.state") == "ready"
    rows = browser.evaluate(ROWS_JS)
    assert sorted(r["name"] for r in rows) == ["a", "b", "instant", "self"]
    assert sorted(r["depth"] for r in rows) == [0, 0, 0, 1]  # the cycle cut once: one of a, b below the other
    assert next(r for r in rows if r["name"] == "instant")["width"] >= 2  # zero-length spans stay visible


@pytest.mark.parametrize(
    ("query", "state", "message"),
    [
        (
            f"trace=0123456789abcdef0123456789abcdef&tenant={TENANT}",
            "not-found",
            f"Trace 0123456789abcdef0123456789abcdef not found for tenant {TENANT}.",
        ),
        (
            f"trace={TRACE_ID.hex()}&tenant=other",
            "not-found",
            f"Trace {TRACE_ID.hex()} not found for tenant other.",
        ),
        (
            f"trace=xyz&tenant={TENANT}",
            "error",
            "The server refused this lookup: "
            "trace IDs can only contain hex characters: invalid character 'x' at position 1",
        ),
        (
            f"trace={'ab' * 17}&tenant={TENANT}",
            "error",
            "The server refused this lookup: trace IDs can't be larger than 128 bits",
        ),
        (f"trace={TRACE_ID.hex()}", "error", "This server needs a tenant (X-Scope-OrgID): no org id"),
    ],
    ids=["missing", "other-tenant", "not-hex", "too-long", "no-tenant"],
)
def test_lookups_that_fail_say_why(
    server: Server, browser: Chromium, query: str, state: str, message: str
) -> None:
    browser.goto(page_url(server, query))
    assert browser.evaluate("document.body.dataset.state") == state
    assert browser.evaluate("document.getElementById('message').textContent") == message
    assert browser.evaluate("document.getElementById('waterfall').hidden") is True


def test_screenshot_shows_the_bars_and_the_error_in_red(server: Server, browser: Chromium) -> None:
    open_trace(browser, server, f"&span={CHARGE_ID}")
    shot = browser.screenshot()
    if os.environ.get("TRACELAKE_TRACE_VIEW_SCREENSHOT"):
        Path(os.environ["TRACELAKE_TRACE_VIEW_SCREENSHOT"]).write_bytes(shot)
    image = png.decode(shot)[:, :, :3]
    assert image.shape == (HEIGHT, WIDTH, 3)
    colours = np.unique(image.reshape(-1, 3), axis=0)
    assert len(colours) > 50, "the screenshot is (nearly) blank"
    rows = browser.evaluate(ROWS_JS)
    for row in rows:  # the pixel in the middle of each bar has the bar's colour, red for the error span
        assert tuple(image[round(row["y"]), round(row["x"])]) == (ERROR if row["error"] else BAR), row["name"]
    red = int(np.all(image == ERROR, axis=2).sum())
    blue = int(np.all(image == BAR, axis=2).sum())
    charge = next(r for r in rows if r["error"])
    assert red >= 0.8 * charge["width"] * 12  # the error bar (12 px high), nearly all of it solid red
    assert blue >= 0.8 * sum(r["width"] for r in rows if not r["error"]) * 12
