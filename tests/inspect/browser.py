"""Open a local HTML page in headless Chromium through the DevTools protocol (over a pipe,
no extra package): console errors, images that did not load, and a screenshot.

    python tests/inspect/browser.py PAGE.html SHOT.png   # prints the findings as JSON
"""

from __future__ import annotations

import base64
import json
import os
import signal
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Runs in the page once it has loaded: every <img src> and every map thumbnail, loaded
# afresh; resolves to the list of those that fail.
CHECK_IMAGES = """
(async () => {
  const urls = [...document.querySelectorAll('img[src]')].map(i => i.src)
    .concat([...document.querySelectorAll('[data-thumb]')].map(c => new URL(c.dataset.thumb, location.href).href));
  const bad = [];
  await Promise.all([...new Set(urls)].map(u => new Promise(done => {
    const im = new Image();
    im.onload = () => { if (!im.naturalWidth) bad.push(u); done(); };
    im.onerror = () => { bad.push(u); done(); };
    im.src = u;
  })));
  return JSON.stringify({checked: new Set(urls).size, bad: bad});
})()
"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


class _Pipe:
    """Minimal DevTools client: JSON messages separated by NUL bytes on fds 3 (in) / 4 (out)."""

    def __init__(self, binary: str, profile: str):
        self._to_r, self._to_w = os.pipe()
        self._from_r, self._from_w = os.pipe()
        args = [binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--allow-file-access-from-files", f"--user-data-dir={profile}", "about:blank"]
        # fds 3 and 4 are kept open in the child; _fds points them at the pipe ends
        self.proc = subprocess.Popen(args, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=self._fds)
        os.close(self._to_r)
        os.close(self._from_w)
        self._buf, self._id, self.events = b"", 0, []

    def _fds(self):  # in the child: the pipe ends at 3 and 4, where Chromium expects them
        os.setsid()  # its own process group: close() ends the renderer and GPU children too
        read_end, write_end = os.dup(self._to_r), os.dup(self._from_w)  # above 4: not clobbered below
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._next()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        while True:
            e = self._next()
            if e.get("method") == method:
                return e
            self.events.append(e)

    def _next(self, timeout: float = 60.0) -> dict:
        import select

        while b"\0" not in self._buf:
            if not select.select([self._from_r], [], [], timeout)[0]:
                raise RuntimeError(f"chromium sent nothing for {timeout:.0f} s")
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # chromium and every child it started
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self._to_w)
        os.close(self._from_r)


def _errors(events: list[dict]) -> list[str]:
    found = []
    for e in events:
        p = e.get("params", {})
        if e.get("method") == "Runtime.exceptionThrown":
            found.append(p["exceptionDetails"].get("exception", {}).get("description", "exception"))
        elif e.get("method") == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            found.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
        elif e.get("method") == "Log.entryAdded" and p["entry"].get("level") == "error":
            found.append(f"{p['entry'].get('text')} {p['entry'].get('url', '')}".strip())
    return found


def check_page(page: str | Path, screenshot: str | Path, width: int = 1280, height: int = 900,
               max_height: int = 8000) -> dict:
    """-> {"errors": [...], "images_checked": n, "bad_images": [...], "title": str}"""
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium not installed")
    # a child killed a moment late may still write to the profile: never fail the check on it
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        pipe = _Pipe(binary, profile)
        try:
            target = pipe.call("Target.createTarget", url="about:blank")["targetId"]
            s = pipe.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                pipe.call(f"{domain}.enable", session=s)
            pipe.call("Emulation.setDeviceMetricsOverride", session=s, width=width, height=height,
                      deviceScaleFactor=1, mobile=False)
            pipe.call("Page.navigate", session=s, url=Path(page).resolve().as_uri())
            pipe.wait_for("Page.loadEventFired")
            result = pipe.call("Runtime.evaluate", session=s, expression=CHECK_IMAGES, awaitPromise=True)
            images = json.loads(result["result"]["value"])
            title = pipe.call("Runtime.evaluate", session=s, expression="document.title")["result"]["value"]
            full = pipe.call("Runtime.evaluate", session=s, expression="document.documentElement.scrollHeight")
            pipe.call("Emulation.setDeviceMetricsOverride", session=s, width=width, deviceScaleFactor=1,
                      height=min(max_height, int(full["result"]["value"])), mobile=False)  # the whole page
            shot = pipe.call("Page.captureScreenshot", session=s, format="png")
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
            return {"errors": _errors(pipe.events), "images_checked": images["checked"],
                    "bad_images": images["bad"], "title": title}
        finally:
            pipe.close()


if __name__ == "__main__":  # PAGE SHOT [MAX_HEIGHT]
    print(json.dumps(check_page(sys.argv[1], sys.argv[2], max_height=int(sys.argv[3]) if len(sys.argv) > 3 else 8000),
                     indent=1))
    sys.exit(0)
