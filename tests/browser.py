"""Headless Chromium driven over the DevTools protocol on a pipe: the standard library only.

`chromium --remote-debugging-pipe` reads JSON commands from fd 3 and writes
replies and events to fd 4, each message ended by a NUL byte (what Playwright and
Puppeteer use). That lets a test wait for what the page shows, not for a guessed
time, and screenshot it, with no driver package and no browser download.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")


def find_chromium() -> str | None:
    """$CHROMIUM, else Debian's chromium, else any chromium/chrome on PATH."""
    for c in (os.environ.get("CHROMIUM"), *CANDIDATES):
        if c and os.access(c, os.X_OK):
            return c
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    """One headless Chromium with one page. `with Browser(exe, width, height) as b: b.goto(url) ...`"""

    def __init__(self, exe: str, width: int = 1400, height: int = 900, timeout: float = 60.0):
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="mm-chromium-")
        cmd_r, cmd_w = os.pipe()   # we write commands, Chromium reads fd 3
        ev_r, ev_w = os.pipe()     # Chromium writes fd 4, we read
        # Above 4, so that moving them onto 3 and 4 in the child cannot overwrite one with the other.
        child_r, child_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(ev_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(ev_w)
        args = [exe, "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--no-proxy-server",
                "--disable-component-update", "--disable-sync", "--disable-extensions", "--mute-audio",
                f"--user-data-dir={self._profile}", f"--window-size={width},{height}", "about:blank"]

        def fds():  # in the child: the command pipe on fd 3, the event pipe on fd 4
            os.dup2(child_r, 3)
            os.dup2(child_w, 4)

        # pass_fds keeps 3 and 4 open: Popen closes every other descriptor after fds() ran.
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=fds, pass_fds=(3, 4),
                                     start_new_session=True)
        os.close(child_r)
        os.close(child_w)
        self._out = os.fdopen(cmd_w, "wb", buffering=0)
        self._in = os.fdopen(ev_r, "rb", buffering=0)
        self._buf = b""
        self._id = 0
        self.session = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    # --- protocol ---------------------------------------------------------------------
    def _read_message(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            # A Chromium that hangs must fail the call, not the whole test run.
            if not select.select([self._in], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise BrowserError(f"chromium sent nothing for {self.timeout:.0f} s")
            chunk = self._in.read(1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed its pipe (exit code {self.proc.poll()})")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        self._out.write(json.dumps(msg).encode() + b"\0")
        while True:  # events interleave with replies: skip them
            reply = self._read_message()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})

    # --- page ---------------------------------------------------------------------------
    def goto(self, url: str) -> None:
        res = self.call("Page.navigate", url=url)
        if res.get("errorText"):
            raise BrowserError(f"{url}: {res['errorText']}")

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in res:
            raise BrowserError(f"{expression[:60]}: {res['exceptionDetails'].get('text')}")
        return res["result"].get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, needles, timeout: float | None = None) -> str:
        """Poll the page's visible text until every needle shows; return the text (BrowserError if not)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if all(n in text for n in needles):
                return text
            time.sleep(0.25)
        missing = [n for n in needles if n not in text]
        raise BrowserError(f"not shown within {timeout or self.timeout:.0f} s: {missing}; page text: {text[:500]!r}")

    def wait_for(self, expression: str, what: str, timeout: float | None = None) -> None:
        """Poll a JavaScript expression until it is truthy (BrowserError naming `what` if it never is)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"not shown within {timeout or self.timeout:.0f} s: {what}")
            time.sleep(0.25)

    def screenshot(self, path: str | Path) -> Path:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        for f in (self._out, self._in):
            f.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
