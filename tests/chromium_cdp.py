"""A small Chrome DevTools Protocol driver over ``--remote-debugging-pipe`` (no websocket, no extra package).

Starts headless Chromium with its DevTools pipe on file descriptors 3 (commands in) and 4 (answers out),
opens one page and offers what the dashboard tests need: navigate, wait for a condition, evaluate JavaScript
(awaiting promises), and PNG screenshots of the page or of one element.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe")


class CdpError(RuntimeError):
    """A DevTools command failed, or a page script threw."""


class Chromium:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 900) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: its DevTools pipe on fds 3 and 4 (via fds above 10, never clobbered)
            high_r = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, preexec_fn=wire_fds, pass_fds=(3, 4), close_fds=True)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._ready = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Emulation.setDeviceMetricsOverride", self.session, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def _read(self) -> None:
        buffer = b""
        while chunk := os.read(self._from_browser, 1 << 20):
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                if "id" in message:
                    with self._ready:
                        self._answers[message["id"]] = message
                        self._ready.notify_all()

    def send(self, method: str, session: str | None = None, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one command (to the page's ``session``, or the browser) and return its result."""
        self._next += 1
        number = self._next
        message = {"id": number, "method": method, "params": params, **({"sessionId": session} if session else {})}
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        with self._ready:
            if not self._ready.wait_for(lambda: number in self._answers, timeout):
                raise CdpError(f"{method}: no answer within {timeout} s")
            answer = self._answers.pop(number)
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    def evaluate(self, expression: str, timeout: float = 60) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.send("Runtime.evaluate", self.session, timeout, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(json.dumps(result["exceptionDetails"])[:2000])
        return result["result"].get("value")

    def wait_for(self, condition: str, timeout: float = 30) -> None:
        """Wait until the JavaScript ``condition`` is true in the page."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(f"Boolean({condition})"):
            if time.monotonic() > deadline:
                raise CdpError(f"not true within {timeout} s: {condition}")
            time.sleep(0.05)

    def open(self, url: str, timeout: float = 60) -> None:
        """Navigate to ``url`` and wait for the dashboard's first load (``body[data-loaded]``)."""
        self.send("Page.navigate", self.session, url=url)
        self.wait_for("document.readyState === 'complete' && document.body && document.body.dataset.loaded", timeout)

    def screenshot(self, path: Path, selector: str | None = None) -> bytes:
        """A PNG of the viewport, or of the element ``selector`` (scrolled into view), written to ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if selector:
            box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                                "e.scrollIntoView(); const r = e.getBoundingClientRect();"
                                "return {x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height}; })()")
            params.update(clip={**box, "scale": 1}, captureBeyondViewport=True)
        data = base64.b64decode(self.send("Page.captureScreenshot", self.session, **params)["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        """Close the browser and wait for it to exit."""
        try:
            self.send("Browser.close", timeout=10)
        except (CdpError, OSError):
            self.process.kill()
        self.process.wait(20)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
