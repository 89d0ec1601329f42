"""The reviewer's page driven by the keyboard in headless Chromium.

    python review_keys.py CHROMIUM BASE_URL QUEUE ARTIFACTS

Starts Chromium with the DevTools protocol on a free port, opens
BASE_URL/ui/review/QUEUE?reviewer=browser, and labels three items by pressing `g`
(good: the default schema needs nothing else, so the form is sent and the next item
opens), checking after each that a new item is shown and the "labelled today" count
went up by one. A console error or an uncaught exception fails the run. Exit 0 on
success, 1 with a message otherwise; the last page's DOM is kept in ARTIFACTS.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # websocket-client


def fail(msg):
    print(f"browser: FAIL: review keys: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Page:
    """One tab over the DevTools protocol: commands by id, events kept as they come."""

    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=30)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    fail(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.ws.settimeout(max(0.1, deadline - time.time()))
            try:
                self.events.append(json.loads(self.ws.recv()))
            except websocket.WebSocketTimeoutException:
                break
        fail(f"no {method} within {timeout}s")

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def key(self, ch):
        code = f"Key{ch.upper()}"
        vk = ord(ch.upper())
        self.call("Input.dispatchKeyEvent", type="keyDown", key=ch, code=code, text=ch,
                  windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=ch, code=code,
                  windowsVirtualKeyCode=vk, nativeVirtualKeyCode=vk)

    def console_errors(self):
        out = []
        for e in self.events:
            m = e.get("method")
            if m == "Runtime.exceptionThrown":
                out.append(e["params"]["exceptionDetails"].get("text", "exception"))
            elif m == "Runtime.consoleAPICalled" and e["params"].get("type") == "error":
                out.append(str(e["params"].get("args")))
            elif m == "Log.entryAdded" and e["params"]["entry"].get("level") == "error":
                entry = e["params"]["entry"]
                # The browser asks for /favicon.ico by itself; the dashboard has none.
                if not entry.get("url", "").endswith("/favicon.ico"):
                    out.append(f"{entry.get('text', '')} ({entry.get('url', '')})")
        return out


def main():
    if len(sys.argv) != 5:
        fail(__doc__)
    chromium, base, queue, artifacts = sys.argv[1:]
    port = free_port()
    profile = tempfile.mkdtemp()
    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         f"--remote-debugging-port={port}", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tabs = None
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                    tabs = [t for t in json.load(r) if t.get("type") == "page"]
                if tabs:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        if not tabs:
            fail("Chromium's DevTools endpoint did not answer")
        page = Page(tabs[0]["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=f"{base}/ui/review/{queue}?reviewer=browser")
        page.wait_event("Page.loadEventFired")

        def state():
            return page.eval(
                "(function(){var i=document.getElementById('item');"
                "var p=document.getElementById('progress');"
                "return {item: i ? i.dataset.item : null,"
                " done: p ? Number(p.dataset.doneToday) : null,"
                " left: p ? Number(p.dataset.left) : null};})()")

        first = state()
        if not first or first["item"] is None:
            fail(f"no item on the queue's page: {first}")
        seen = [first["item"]]
        done = first["done"]
        for n in range(3):
            page.key("g")
            page.wait_event("Page.loadEventFired")
            now = state()
            if now["done"] != done + 1:
                fail(f"after label {n + 1}: labelled today {now['done']}, expected {done + 1}")
            done = now["done"]
            if n < 2:
                if now["item"] is None or now["item"] in seen:
                    fail(f"after label {n + 1}: no new item ({now['item']}, seen {seen})")
                seen.append(now["item"])
        html = page.eval("document.documentElement.outerHTML") or ""
        with open(os.path.join(artifacts, "review-keys.html"), "w") as f:
            f.write(html)
        errors = page.console_errors()
        if errors:
            fail(f"console errors: {errors[:3]}")
        print(f"browser: review keys: labelled items {seen} with the keyboard; labelled today {done}",
              file=sys.stderr)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
