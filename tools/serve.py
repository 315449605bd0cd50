"""The latent explorer: `python main.py --serve` serves one page that shows the generator.

The generator is loaded once (the run's newest checkpoint, or an exported
SavedModel with --serve_model) and every request runs it in one batch on a
thread of the standard library's ThreadingHTTPServer: TensorFlow's
Session.run is thread-safe, so a slow grid never blocks the page's other
requests.  Images are answered as PNG; z travels as comma-separated numbers in
the URL, so the page keeps it in its own address (a reload or a shared link
shows the same picture).  Bad input gets a 4xx with a one-line JSON message;
nothing a client sends can stop the server.

API (all GET but arithmetic):
  /api/info                         the generator's inputs: z_dim, z_dist, size, classes, limits
  /api/samples?count&seed           z (and labels) of a sample grid, drawn from the training distribution
  /api/grid?count&seed[&label]      those samples as one PNG grid (utils.image_grid's layout)
  /api/image?z[&label]              one image
  /api/interpolate?a&b&t&mode[&label]  the image at t in [0, 1] between z a and z b, mode linear or slerp
  POST /api/arithmetic {a, b, c: [[z]...], label?, seed?}  A - B + C as in the DCGAN paper, PNG grid
A style generator's (--arch style) images also take `psi` (the truncation ψ; "psi" in arithmetic's
body); other generators refuse it.
"""

import contextlib
import dataclasses
import http.server
import json
import logging
import math
import os
import signal
import threading
import urllib.parse

import numpy as np

import utils
from runtime.errors import UserError
from runtime.tf_runtime import tf
from tools import visualize
from training.inference import fixed_z, restored_generator

v1 = tf.compat.v1
log = logging.getLogger("dcgan")

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8"}
MAX_IMAGES = 64  # per request: a grid larger than a screen only costs the other clients time
MAX_BODY_BYTES = 1 << 20
MAX_ABS_Z = 10.0  # far beyond either training distribution; larger values only saturate G
MAX_SEED = 2 ** 31 - 1
# Truncation ψ accepted: StyleGAN's figures go from -1 to 1; beyond ±2 w only moves further from the average.
MAX_ABS_PSI = 2.0
INTERPOLATIONS = ("linear", "slerp")


class BadRequest(Exception):
    """A client's mistake: answered with `status` and the message, never a crash."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Explorer:
    """The loaded generator behind the page: a session and the tensors of its z -> images interface."""

    session: object
    z: object
    labels: object  # None for an unconditional generator
    images: object
    config: object  # z_dim, z_dist, output size, c_dim, y_dim and arch of the generator
    source: str
    truncation_psi: object = None  # the style generator's ψ input (a scalar with a default); None for others

    def info(self):
        c = self.config
        truncation = self.truncation_psi is not None
        return {"z_dim": c.z_dim, "z_dist": c.z_dist, "height": c.output_height, "width": c.output_width,
                "channels": c.c_dim, "classes": c.y_dim, "truncation": truncation,
                "psi": float(self.session.run(self.truncation_psi)) if truncation else None,
                "max_abs_psi": MAX_ABS_PSI, "style_mixing": False, "max_images": MAX_IMAGES, "max_abs_z": MAX_ABS_Z,
                "source": self.source}

    def generate(self, z, labels, psi=None):
        feed = {self.z: z}
        if self.labels is not None:
            feed[self.labels] = labels
        if psi is not None:
            feed[self.truncation_psi] = psi
        return self.session.run(self.images, feed)

    # ---- request parsing: each raises BadRequest naming the parameter ----

    def z_vector(self, text, name="z"):
        """z from the URL's comma-separated numbers."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise BadRequest(f"{name}: give {self.config.z_dim} comma-separated numbers") from None
        return self.checked_z(values, name)

    def checked_z(self, values, name):
        if not isinstance(values, list) or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                                   for v in values):
            raise BadRequest(f"{name}: give each z as a list of {self.config.z_dim} numbers")
        z = np.array(values, np.float32)
        if z.shape != (self.config.z_dim,):
            raise BadRequest(f"{name}: {z.size} numbers given, this generator takes z_dim={self.config.z_dim}")
        if not np.all(np.isfinite(z)) or np.abs(z).max() > MAX_ABS_Z:
            raise BadRequest(f"{name}: values must be finite numbers within ±{MAX_ABS_Z:g}")
        return z

    def z_group(self, body, name):
        group = body.get(name)
        if not isinstance(group, list) or not 1 <= len(group) <= MAX_IMAGES:
            raise BadRequest(f"{name}: give a list of 1 to {MAX_IMAGES} z vectors")
        return np.stack([self.checked_z(z, name) for z in group])

    def label(self, value, count):
        """[count] labels of a conditional generator: the given class, by default 0, 1, ... in turn
        (a grid shows every class); None for an unconditional one."""
        classes = self.config.y_dim
        if not classes:
            if value is not None:
                raise BadRequest("label: this generator is unconditional (it has no classes)")
            return None
        if value is None:
            return np.arange(count, dtype=np.int64) % classes
        return np.full(count, _integer("label", value, 0, classes - 1), np.int64)

    def psi(self, params):
        """The request's truncation ψ, None when not given (the generator's own default)."""
        if "psi" not in params:
            return None
        if self.truncation_psi is None:
            raise BadRequest(f"psi: this generator (--arch {self.config.arch}) has no truncation; psi applies to "
                             "--arch style")
        return _number("psi", params["psi"], -MAX_ABS_PSI, MAX_ABS_PSI)


def _integer(name, value, low, high):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name}: {value!r} is not an integer") from None
    if not low <= number <= high:
        raise BadRequest(f"{name}: {number} is outside {low}..{high}")
    return number


def _number(name, value, low, high):
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name}: {value!r} is not a number") from None
    if not (math.isfinite(number) and low <= number <= high):
        raise BadRequest(f"{name}: {value} is outside {low:g}..{high:g}")
    return number


def _required(params, name):
    if name not in params:
        raise BadRequest(f"{name}: missing")
    return params[name]


def interpolate(a, b, t, mode):
    return visualize.slerp(a, b, t).astype(np.float32) if mode == "slerp" else ((1 - t) * a + t * b).astype(np.float32)


class Routes:
    """Each endpoint: params -> (content type, bytes)."""

    def __init__(self, explorer):
        self.explorer = explorer

    def _png(self, images):
        return "image/png", utils.encode_png(images[0] if len(images) == 1 else utils.image_grid(images))

    def _sample_z(self, params):
        count = _integer("count", params.get("count", "16"), 1, MAX_IMAGES)
        seed = _integer("seed", params.get("seed", "0"), 0, MAX_SEED)
        return fixed_z(count, self.explorer.config, seed)

    def info(self, params):
        return "application/json", json.dumps(self.explorer.info()).encode()

    def samples(self, params):
        z = self._sample_z(params)
        labels = self.explorer.label(params.get("label"), len(z))
        return "application/json", json.dumps({"z": np.round(z, 6).tolist(),
                                               "labels": None if labels is None else labels.tolist()}).encode()

    def grid(self, params):
        psi = self.explorer.psi(params)
        z = self._sample_z(params)
        return self._png(self.explorer.generate(z, self.explorer.label(params.get("label"), len(z)), psi))

    def image(self, params):
        psi = self.explorer.psi(params)
        z = self.explorer.z_vector(_required(params, "z"))[np.newaxis]
        return self._png(self.explorer.generate(z, self.explorer.label(params.get("label"), 1), psi))

    def interpolate(self, params):
        psi = self.explorer.psi(params)
        a = self.explorer.z_vector(_required(params, "a"), "a")
        b = self.explorer.z_vector(_required(params, "b"), "b")
        t = _number("t", _required(params, "t"), 0.0, 1.0)
        mode = params.get("mode", "linear")
        if mode not in INTERPOLATIONS:
            raise BadRequest(f"mode: {mode!r}; choose {' or '.join(INTERPOLATIONS)}")
        z = interpolate(a, b, t, mode)[np.newaxis]
        return self._png(self.explorer.generate(z, self.explorer.label(params.get("label"), 1), psi))

    def arithmetic(self, body):
        psi = self.explorer.psi(body)
        a, b, c = (self.explorer.z_group(body, name) for name in ("a", "b", "c"))
        z = visualize.arithmetic_z(a, b, c, _integer("seed", body.get("seed", 0), 0, MAX_SEED))
        one_class = body.get("label", 0 if self.explorer.config.y_dim else None)  # all nine show one class
        return self._png(self.explorer.generate(z, self.explorer.label(one_class, len(z)), psi))


def make_handler(routes):
    get_routes = {"/api/info": routes.info, "/api/samples": routes.samples, "/api/grid": routes.grid,
                  "/api/image": routes.image, "/api/interpolate": routes.interpolate}
    static_files = {name for name in os.listdir(STATIC_DIR) if os.path.splitext(name)[1] in STATIC_TYPES}

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "DCGANExplorer"

        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            log.debug("%s %s", self.address_string(), format % args)

        def _send(self, status, content_type, body):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, produce):
            try:
                self._send(200, *produce())
            except ConnectionError:  # the client left (a page replaces an image still loading): nobody to answer
                self.close_connection = True
            except BadRequest as e:
                self._send(e.status, "application/json", json.dumps({"error": str(e)}).encode())
            except Exception as e:  # a bug or a TensorFlow error: this request fails, the server goes on
                log.exception("request %s failed", self.path)
                self._send(500, "application/json", json.dumps({"error": f"internal error: {e}"}).encode())

        def _params(self, query):
            params = {}
            for name, values in urllib.parse.parse_qs(query, keep_blank_values=True).items():
                if len(values) != 1:
                    raise BadRequest(f"{name}: given {len(values)} times")
                params[name] = values[0]
            return params

        def _static(self, name):
            if name not in static_files:  # only the page's own files: no path reaches outside static/
                raise BadRequest(f"{self.path}: no such page", status=404)
            with open(os.path.join(STATIC_DIR, name), "rb") as f:
                return STATIC_TYPES[os.path.splitext(name)[1]], f.read()

        def do_GET(self):  # noqa: N802 (http.server's name)
            url = urllib.parse.urlsplit(self.path)

            def produce():
                if url.path in get_routes:
                    return get_routes[url.path](self._params(url.query))
                if url.path == "/":
                    return self._static("index.html")
                if url.path.startswith("/static/"):
                    return self._static(url.path[len("/static/"):])
                raise BadRequest(f"{url.path}: no such page", status=404)

            self._answer(produce)

        def do_POST(self):  # noqa: N802
            def produce():
                if urllib.parse.urlsplit(self.path).path != "/api/arithmetic":
                    raise BadRequest(f"{self.path}: no such endpoint for POST", status=404)
                length = _integer("Content-Length", self.headers.get("Content-Length", "0"), 0, 1 << 62)
                if length > MAX_BODY_BYTES:
                    raise BadRequest(f"body of {length} bytes; at most {MAX_BODY_BYTES}", status=413)
                try:
                    body = json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    raise BadRequest("body: not JSON") from None
                if not isinstance(body, dict):
                    raise BadRequest('body: give a JSON object {"a": [[z]...], "b": ..., "c": ...}')
                return routes.arithmetic(body)

            self._answer(produce)

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a client that never finishes its request cannot keep the process alive
    # Refuse, rather than queue forever, connections beyond this backlog while every thread is busy.
    request_queue_size = 64


def make_server(explorer, host, port):
    """A server bound to host:port (port 0 = any free one); the caller runs serve_forever()."""
    try:
        return Server((host, port), make_handler(Routes(explorer)))
    except OSError as e:
        raise UserError(f"--host {host} --port {port}: cannot listen ({e.strerror}); "
                        "choose another --port (0 = any free one)") from None


def saved_model_explorer(config, session):
    """An Explorer on the SavedModel at --serve_model, loaded into `session`'s graph; ψ comes from its
    `truncation` signature (a style generator's), whose other inputs and output are serving_default's."""
    from tools import export

    description = export.read_description(config.serve_model)
    signatures = v1.saved_model.loader.load(session, ["serve"], config.serve_model).signature_def
    signature, graph = signatures["serving_default"], session.graph
    model_config = dataclasses.replace(
        config, z_dim=description["z_dim"], z_dist=description["z_dist"], output_height=description["height"],
        output_width=description["width"], c_dim=description["channels"], y_dim=description["classes"],
        arch=description.get("generator", "dcgan"))
    labels = graph.get_tensor_by_name(signature.inputs["labels"].name) if "labels" in signature.inputs else None
    psi = (graph.get_tensor_by_name(signatures["truncation"].inputs["truncation_psi"].name)
           if "truncation" in signatures else None)
    return Explorer(session, graph.get_tensor_by_name(signature.inputs["z"].name), labels,
                    graph.get_tensor_by_name(signature.outputs["images"].name), model_config, config.serve_model,
                    psi)


@contextlib.contextmanager
def serving_in_background(explorer, host="127.0.0.1", port=0):
    """Yields a server answering on a thread (tests and bench/serve_load.py); stops it on exit."""
    server = make_server(explorer, host, port)
    thread = threading.Thread(target=server.serve_forever, name="explorer", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def checkpoint_explorer(restored):
    """An Explorer on an inference.RestoredGenerator."""
    generator = restored.generator
    return Explorer(restored.session, generator.z, generator.labels, generator.images_uint8, restored.config,
                    restored.path, generator.truncation_psi)


def run_server(explorer, config):
    server = make_server(explorer, config.host, config.port)
    host, port = server.server_address[:2]
    log.info("explorer of %s on http://%s:%d/ (Ctrl-C stops it)", explorer.source, host, port)
    # Python leaves SIGINT ignored when it starts ignored (nohup, a background job), and then Ctrl-C or
    # `kill -INT` could not stop the server; training installs its own SIGINT handler for the same reason.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("stopped")
    finally:
        server.server_close()
        signal.signal(signal.SIGINT, previous)


def serve(config):
    """Loads the generator once and serves the explorer until Ctrl-C."""
    if config.serve_model:
        with tf.Graph().as_default(), v1.Session() as session:
            run_server(saved_model_explorer(config, session), config)
        return
    with restored_generator(config) as restored:
        run_server(checkpoint_explorer(restored), config)
