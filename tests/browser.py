"""Headless Chromium for tests, driven over the DevTools protocol (CDP) with the ``websockets`` client
that ``uvicorn[standard]`` already installs: no selenium or playwright, no driver binary to match.

``Chromium.launch`` starts Debian's ``chromium`` on a fresh profile with every background service off
(this network is closed; without those flags Chromium keeps dialling out), opens one tab and attaches
to it in flat mode, so each command is one JSON message tagged with the tab's session.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

SKIP_ENV = "TRACELAKE_SKIP_BROWSER_TESTS"
FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--hide-scrollbars",
    "--force-color-profile=srgb",  # CSS colours land in the screenshot's pixels unchanged
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",  # Chromium picks a port and writes it to DevToolsActivePort
)


def chromium_path() -> str:
    """Debian's ``chromium``; a missing browser fails the test unless the developer opted out."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: the trace view's browser tests are off")
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else ""
    )
    if not path:
        pytest.fail(
            "headless Chromium not found: `apt-get install chromium` (.ci/run installs it), "
            f"or set {SKIP_ENV}=1 to skip the browser tests",
            pytrace=False,
        )
    return path


class CDPError(AssertionError):
    pass


@dataclass
class Chromium:
    proc: subprocess.Popen[bytes]
    ws: ClientConnection
    session: str
    log_path: Path
    _next_id: int = 0

    @classmethod
    @contextmanager
    def launch(cls, profile: Path, width: int, height: int, timeout: float = 30) -> Iterator[Chromium]:
        """A browser with one tab of ``width`` x ``height`` CSS pixels, closed (or killed) on exit."""
        log_path = profile.parent / f"{profile.name}-chromium.log"
        command = [chromium_path(), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            port, path = _devtools_endpoint(proc, profile / "DevToolsActivePort", log_path, timeout)
            with connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=timeout) as ws:
                browser = cls(proc, ws, "", log_path)
                browser.open_tab(width, height)
                yield browser
                with suppress(ConnectionClosed):  # the browser may hang up before it answers
                    browser.send("Browser.close", tab=False)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

    def open_tab(self, width: int, height: int) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, tab=False)["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, tab=False)[
            "sessionId"
        ]
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )

    def send(self, method: str, params: dict[str, Any] | None = None, tab: bool = True) -> dict[str, Any]:
        """One CDP command and its result; events arriving meanwhile are dropped (none are needed)."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if tab:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            answer = json.loads(self.ws.recv(timeout=30))
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise CDPError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the tab (promises awaited); page errors raise."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True}
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise CDPError(f"{expression[:200]}: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Poll ``expression`` until it is truthy: the page loads traces asynchronously."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"still false after {timeout}s: {expression}")
            time.sleep(0.05)

    def goto(self, url: str) -> None:
        """Load ``url`` and wait until the document, and the trace view's lookup, are done."""
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigating to {url}: {result['errorText']}")
        self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
            " && document.body.dataset.state !== 'loading'"
        )

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the element: hit-testing included."""
        box = self.evaluate(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.left + r.width / 2, r.top + r.height / 2]; })()"
        )
        if box is None:
            raise AssertionError(f"nothing matches {selector!r}")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            self.send(
                "Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}
            )

    def type_text(self, selector: str, text: str) -> None:
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def screenshot(self) -> bytes:
        """The viewport as PNG bytes."""
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])


def _devtools_endpoint(
    proc: subprocess.Popen[bytes], port_file: Path, log_path: Path, timeout: float
) -> tuple[int, str]:
    """The port and browser path Chromium writes once its DevTools server listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"chromium exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        lines = port_file.read_text().split() if port_file.exists() else []
        if len(lines) == 2:
            return int(lines[0]), lines[1]
        time.sleep(0.05)
    raise AssertionError(
        f"chromium's DevTools did not start in {timeout}s:\n{log_path.read_text(errors='replace')}"
    )
