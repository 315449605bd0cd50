"""The explorer page end to end in a real headless Chromium, driven through its DevTools protocol.

Skips, saying why, where Debian's `chromium` (apt-get install chromium) or websocket-client is absent;
tests/test_serve.py covers the API without a browser.  By default the page shows a tiny untrained
generator; with EXPLORER_RUN_OUT_DIR=DIR it shows the MNIST run trained with `--out_dir DIR` (batch 64),
and with EXPLORER_SCREENSHOT=PATH the screenshot it takes is also written there (docs/explorer.png).
"""

import base64
import contextlib
import json
import os
import shutil
import subprocess
import urllib.request

import imageio.v2 as imageio
import pytest
import tensorflow as tf
from conftest import StderrLines, tiny_config

import config as config_lib
import serve
from checkpoints import restored_generator
from model import InferenceGenerator

v1 = tf.compat.v1
websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (requirements-dev.txt)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                                          "chromium); the API tests in test_serve.py still run")
MESSAGE_TIMEOUT_SECONDS = 120  # guards against a hung browser only: every wait ends when its message arrives
MAX_MESSAGES = 10000


class DevTools:
    """A minimal DevTools protocol client on one websocket: commands by id, events kept until waited for."""

    def __init__(self, url):
        self.socket = websocket.create_connection(url, timeout=MESSAGE_TIMEOUT_SECONDS, suppress_origin=True)
        self.next_id, self.events = 0, []

    def close(self):
        self.socket.close()

    def _receive(self):
        return json.loads(self.socket.recv())

    def call(self, method, **params):
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        for _ in range(MAX_MESSAGES):
            message = self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)
        raise AssertionError(f"{method}: no answer")

    def wait_event(self, method, accept=lambda params: True):
        for _ in range(MAX_MESSAGES):
            for event in self.events:
                if event.get("method") == method and accept(event["params"]):
                    self.events.remove(event)
                    return event["params"]
            self.events.append(self._receive())
        raise AssertionError(f"no {method} event")

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page, promises awaited."""
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


# Resolves once the <img> shows its current src.  `complete` is no test: Chromium starts a new src's load
# a moment after it is set, so the old picture still counts as complete.  The page's own load listener,
# registered before this one (app.js start), records the src that loaded.
LOADED = """(async (id) => {
  const img = document.getElementById(id);
  while (img.dataset.loaded !== img.getAttribute("src")) {
    await new Promise((ok, fail) => { img.addEventListener("load", ok, {once: true});
                                      img.addEventListener("error", () => fail(new Error(img.src)), {once: true}); });
  }
  const canvas = document.createElement("canvas");
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  canvas.getContext("2d").drawImage(img, 0, 0);
  return {src: img.src, pixels: canvas.toDataURL()};
})"""


def shown(page, element_id):
    """{src, pixels} of the image the element shows, once it is loaded."""
    return page.evaluate(f"{LOADED}({json.dumps(element_id)})")


def act(page, script):
    page.evaluate(f"(() => {{ {script} }})()")


@contextlib.contextmanager
def chromium(profile_dir):
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile_dir}",
         "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        lines = StderrLines(process, timeout_seconds=MESSAGE_TIMEOUT_SECONDS)
        browser_url = lines.wait_for(r"DevTools listening on (ws://\S+)").group(1)
        port = browser_url.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=MESSAGE_TIMEOUT_SECONDS) as f:
            page_url = next(t["webSocketDebuggerUrl"] for t in json.load(f) if t["type"] == "page")
        browser, page = DevTools(browser_url), DevTools(page_url)
        try:
            yield browser, page
        finally:
            page.close()
            browser.close()
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def explorer_to_show(tmp_path):
    run_dir = os.environ.get("EXPLORER_RUN_OUT_DIR")
    if run_dir:
        config = config_lib.resolve(config_lib.Config(dataset="mnist", out_dir=run_dir))
        with restored_generator(config) as restored:
            yield serve.checkpoint_explorer(restored)
        return
    config = tiny_config(tmp_path, z_dim=8)
    with tf.Graph().as_default(), v1.Session() as session:
        generator = InferenceGenerator(config)
        session.run(v1.global_variables_initializer())
        # Initial weights (std 0.02) draw the same grey picture for every z; ten times larger, each z its own.
        # (Global variables: with --g_ema, on by default, the generator drawn is the averaged, untrainable copy.)
        session.run([v.assign(v * 10) for v in v1.global_variables() if v.shape.ndims >= 2])
        yield serve.Explorer(session, generator.z, generator.labels, generator.images_uint8, config, "untrained")


def fetch(url):
    with urllib.request.urlopen(url, timeout=MESSAGE_TIMEOUT_SECONDS) as f:
        return f.read()


def test_page_slider_interpolation_arithmetic_download_and_reload(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with explorer_to_show(tmp_path) as explorer, serve.serving_in_background(explorer) as server, \
            chromium(tmp_path / "profile") as (browser, page):
        base = f"http://127.0.0.1:{server.server_address[1]}"
        page.call("Page.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1200, height=1000, deviceScaleFactor=1, mobile=False)
        page.call("Page.navigate", url=base + "/")
        page.wait_event("Page.loadEventFired")
        page.evaluate("window.explorerReady")
        grid, first = shown(page, "grid"), shown(page, "selected")
        assert "/api/grid?count=16&seed=0" in grid["src"] and "/api/image?z=" in first["src"]
        assert page.evaluate('document.getElementById("psi-control").hidden') and "psi" not in first["src"]

        # A slider moves its z dimension: the image changes, and the address holds the new z.
        act(page, """const s = document.querySelector("#sliders input");
                     s.value = +s.value > 0 ? -0.95 : 0.95; s.dispatchEvent(new Event("input"));""")
        moved = shown(page, "selected")
        assert moved["src"] != first["src"] and moved["pixels"] != first["pixels"]
        address = page.evaluate("location.hash")
        assert address.startswith("#z=") and address.split("&")[0][3:] in moved["src"]

        # Interpolation: A is this sample, B another one; t = 0 shows A, t = 1 shows B.
        act(page, 'document.getElementById("set-a").click();')
        act(page, """const grid = document.getElementById("grid"), box = grid.getBoundingClientRect();
                     grid.dispatchEvent(new MouseEvent("click", {bubbles: true, clientX: box.right - 3,
                                                                 clientY: box.top + 3}));""")
        other = shown(page, "selected")  # the grid's top-right sample
        assert other["src"] != moved["src"] and other["pixels"] != moved["pixels"]
        if explorer.config.y_dim:  # interpolation draws in the selected class: A's
            act(page, """const c = document.getElementById("class");
                         c.value = "0"; c.dispatchEvent(new Event("change"));""")
            other = shown(page, "selected")
            assert "&label=0" in moved["src"] and "&label=0" in other["src"]
        act(page, 'document.getElementById("set-b").click(); document.getElementById("mode").value = "slerp";')
        for t, expected in (("0", moved), ("1", other)):
            act(page, f"""const s = document.getElementById("scrub"); s.value = {t};
                          s.dispatchEvent(new Event("input"));""")
            interpolated = shown(page, "interp")
            assert "mode=slerp" in interpolated["src"] and interpolated["pixels"] == expected["pixels"]

        # Vector arithmetic: one sample per group, the result grid appears.
        act(page, """for (const g of ["a", "b", "c"]) document.getElementById("add-" + g).click();
                     document.getElementById("compute-arith").click();""")
        arithmetic = shown(page, "arith")
        assert arithmetic["src"].startswith("blob:")
        assert page.evaluate('document.getElementById("status").textContent') == ""  # no error shown

        # "Save this image" downloads the selected sample's PNG.
        browser.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(downloads), eventsEnabled=True)
        act(page, 'document.getElementById("save").click();')
        browser.wait_event("Browser.downloadProgress", lambda p: p["state"] == "completed")
        saved = downloads / "dcgan.png"
        assert saved.read_bytes() == fetch(other["src"])
        assert imageio.imread(saved).shape[:2] == (explorer.config.output_height, explorer.config.output_width)

        screenshot = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
        assert imageio.imread(screenshot).shape[:2] == (1000, 1200)
        (tmp_path / "explorer.png").write_bytes(screenshot)
        if os.environ.get("EXPLORER_SCREENSHOT"):
            with open(os.environ["EXPLORER_SCREENSHOT"], "wb") as f:
                f.write(screenshot)

        # The z in the address survives a reload: the same picture comes back.
        page.call("Page.reload")
        page.wait_event("Page.loadEventFired")
        page.evaluate("window.explorerReady")
        assert shown(page, "selected")["pixels"] == other["pixels"]


def test_a_style_generator_gets_a_truncation_slider(tmp_path):
    """Issue 24, bug 8: the page offers ψ for a style generator: it redraws the grid and the selected
    sample at the new ψ (ψ = 0: the average w for every sample), and the address keeps it."""
    config = tiny_config(tmp_path, arch="style", w_dim=8, mapping_layers=2, z_dim=8, dataset="celebA", c_dim=3,
                         y_dim=0)
    with tf.Graph().as_default(), v1.Session() as session:
        generator = InferenceGenerator(config)
        session.run(v1.global_variables_initializer())
        session.run([v.assign(v + 0.5) for v in v1.global_variables() if v.op.name.endswith("w_avg")])
        explorer = serve.Explorer(session, generator.z, generator.labels, generator.images_uint8, config,
                                  "untrained", generator.truncation_psi)
        with serve.serving_in_background(explorer) as server, chromium(tmp_path / "profile") as (_, page):
            page.call("Page.enable")
            page.call("Page.navigate", url=f"http://127.0.0.1:{server.server_address[1]}/")
            page.wait_event("Page.loadEventFired")
            page.evaluate("window.explorerReady")
            grid, selected = shown(page, "grid"), shown(page, "selected")
            assert not page.evaluate('document.getElementById("psi-control").hidden')
            assert "&psi=1" in grid["src"] and "&psi=1" in selected["src"]
            act(page, """const s = document.getElementById("psi"); s.value = 0; s.dispatchEvent(new Event("input"));""")
            average_grid, average = shown(page, "grid"), shown(page, "selected")
            assert "&psi=0" in average_grid["src"] and "&psi=0" in average["src"] and "&psi=0" in page.evaluate(
                "location.hash")
            assert average["pixels"] != selected["pixels"] and average_grid["pixels"] != grid["pixels"]
            base = f"http://127.0.0.1:{server.server_address[1]}"  # ψ = 0, no noise yet: any z draws the same
            assert fetch(average["src"]) == fetch(f"{base}/api/image?z={','.join(['0.3'] * 8)}&psi=0")
            assert page.evaluate('document.getElementById("status").textContent') == ""
