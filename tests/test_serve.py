"""The explorer's HTTP API: every endpoint against the generator itself, bit for bit, and bad input."""

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys

import imageio.v2 as imageio
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, StderrLines, tiny_config, trained_run

import utils
from runtime.errors import UserError
from tools import export, serve, visualize
from training.inference import InferenceGenerator, fixed_z, restored_generator

v1 = tf.compat.v1


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny conditional (mnist, 10 classes) generator trained 2 steps."""
    return trained_run(tmp_path_factory.mktemp("serve"), max_steps=2, z_dim=4)


@pytest.fixture(scope="module")
def server(trained):
    with restored_generator(trained) as restored:
        explorer = serve.checkpoint_explorer(restored)
        with serve.serving_in_background(explorer) as running:
            yield running, explorer


def request(server, method, path, body=None, headers=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type"), answer.read()
    finally:
        connection.close()


def get(server, path):
    return request(server[0], "GET", path)


def png(data):
    image = imageio.imread(io.BytesIO(data))
    return image[..., np.newaxis] if image.ndim == 2 else image


def z_param(z):
    return ",".join(repr(float(v)) for v in z)


def test_info_describes_the_generator(server):
    status, kind, body = get(server, "/api/info")
    assert status == 200 and kind == "application/json"
    info = json.loads(body)
    assert {k: info[k] for k in ("z_dim", "z_dist", "height", "width", "channels", "classes", "truncation")} == {
        "z_dim": 4, "z_dist": "uniform", "height": 16, "width": 16, "channels": 1, "classes": 10,
        "truncation": False}


def test_samples_and_grid_are_the_seeded_z_and_their_images(server):
    explorer = server[1]
    status, _, body = get(server, "/api/samples?count=5&seed=9")
    samples = json.loads(body)
    expected_z = fixed_z(5, explorer.config, 9)
    assert status == 200 and np.allclose(samples["z"], expected_z, atol=1e-6)
    assert samples["labels"] == [0, 1, 2, 3, 4]  # every class in turn
    status, kind, body = get(server, "/api/grid?count=5&seed=9")
    assert status == 200 and kind == "image/png"
    expected = utils.image_grid(explorer.generate(expected_z, np.arange(5) % 10))
    assert np.array_equal(png(body), expected)  # 2 rows x 3 columns, the page's click layout
    _, _, one_class = get(server, "/api/grid?count=5&seed=9&label=7")
    assert np.array_equal(png(one_class), utils.image_grid(explorer.generate(expected_z, np.full(5, 7))))


def test_image_shows_the_z_of_the_url(server):
    explorer = server[1]
    z = np.array([0.25, -0.5, 0.75, -1.0], np.float32)
    status, kind, body = get(server, f"/api/image?z={z_param(z)}&label=3")
    assert status == 200 and kind == "image/png"
    assert np.array_equal(png(body), explorer.generate(z[np.newaxis], np.array([3]))[0])
    moved = z.copy()
    moved[1] = 0.9  # what a slider does
    _, _, other = get(server, f"/api/image?z={z_param(moved)}&label=3")
    assert np.array_equal(png(other), explorer.generate(moved[np.newaxis], np.array([3]))[0])


def test_interpolation_ends_at_a_and_b_and_slerp_is_spherical(server):
    explorer = server[1]
    a, b = fixed_z(2, explorer.config, 4)
    labels = np.array([2])

    def image(t, mode):
        status, _, body = get(server, f"/api/interpolate?a={z_param(a)}&b={z_param(b)}&t={t}&mode={mode}&label=2")
        assert status == 200
        return png(body)

    assert np.array_equal(image(0, "linear"), explorer.generate(a[np.newaxis], labels)[0])
    assert np.array_equal(image(1, "slerp"), explorer.generate(b[np.newaxis], labels)[0])
    halfway = visualize.slerp(a, b, 0.5).astype(np.float32)
    assert np.array_equal(image(0.5, "slerp"), explorer.generate(halfway[np.newaxis], labels)[0])
    assert np.array_equal(image(0.5, "linear"), explorer.generate(((a + b) / 2)[np.newaxis], labels)[0])


def test_arithmetic_z_is_a_minus_b_plus_c_with_bounded_noise():
    a = np.array([[1.0, 0.0], [3.0, 2.0]], np.float32)  # mean (2, 1)
    b = np.array([[0.5, 0.5]], np.float32)
    c = np.array([[0.0, -1.0], [0.0, 1.0], [0.3, 0.0]], np.float32)  # mean (0.1, 0)
    z = visualize.arithmetic_z(a, b, c, seed=0)
    assert z.shape == (9, 2) and np.allclose(z[0], [1.6, 0.5])
    assert np.all(np.abs(z[1:] - z[0]) <= 0.25) and len(np.unique(z[1:, 0])) == 8


def test_arithmetic_endpoint_draws_the_result_and_its_variants(server):
    explorer = server[1]
    groups = {name: fixed_z(3, explorer.config, seed).tolist() for name, seed in (("a", 1), ("b", 2), ("c", 3))}
    status, kind, body = request(server[0], "POST", "/api/arithmetic", json.dumps({**groups, "label": 5, "seed": 2}))
    assert status == 200 and kind == "image/png"
    z = visualize.arithmetic_z(*(np.array(groups[name], np.float32) for name in "abc"), seed=2)
    assert np.array_equal(png(body), utils.image_grid(explorer.generate(z, np.full(9, 5))))


def test_page_and_its_files_are_served_and_nothing_else(server):
    status, kind, body = get(server, "/")
    assert status == 200 and kind.startswith("text/html") and b'src="/static/app.js"' in body
    for name, kind_prefix in (("app.js", "text/javascript"), ("style.css", "text/css")):
        status, kind, _ = get(server, f"/static/{name}")
        assert status == 200 and kind.startswith(kind_prefix)
    for path in ("/static/../serve.py", "/static/%2e%2e/serve.py", "/static/..%2fserve.py", "/../../etc/passwd",
                 "/static/", "/static/index.html/x", "/serve.py", "/api/nothing"):
        status, kind, body = get(server, path)
        assert status == 404 and kind == "application/json" and json.loads(body)["error"], path


Z_OK = "0.1,0.2,0.3,0.4"


@pytest.mark.parametrize("path, message", [
    ("/api/image", "z: missing"),
    ("/api/image?z=0.1,0.2,0.3", "z: 3 numbers given, this generator takes z_dim=4"),
    ("/api/image?z=a,b,c,d", "z: give 4 comma-separated numbers"),
    ("/api/image?z=nan,0,0,0", "z: values must be finite numbers within"),
    ("/api/image?z=1e9,0,0,0", "z: values must be finite numbers within"),
    (f"/api/image?z={Z_OK}&label=10", "label: 10 is outside 0..9"),
    (f"/api/image?z={Z_OK}&label=cat", "label: 'cat' is not an integer"),
    (f"/api/image?z={Z_OK}&z={Z_OK}", "z: given 2 times"),
    (f"/api/image?z={Z_OK}&psi=0.7", "psi: this generator (--arch dcgan) has no truncation; psi applies to "
                                     "--arch style"),
    ("/api/grid?count=4&psi=0.7", "psi: this generator (--arch dcgan) has no truncation"),
    ("/api/grid?count=1000000", "count: 1000000 is outside 1..64"),
    ("/api/grid?count=0", "count: 0 is outside 1..64"),
    ("/api/grid?count=4&seed=-1", "seed: -1 is outside"),
    ("/api/samples?count=2.5", "count: '2.5' is not an integer"),
    (f"/api/interpolate?a={Z_OK}&b={Z_OK}&t=2", "t: 2 is outside 0..1"),
    (f"/api/interpolate?a={Z_OK}&b={Z_OK}&t=inf", "t: inf is outside 0..1"),
    (f"/api/interpolate?a={Z_OK}&b={Z_OK}&t=0.5&mode=cubic", "mode: 'cubic'; choose linear or slerp"),
    (f"/api/interpolate?a={Z_OK}&t=0.5", "b: missing"),
])
def test_bad_requests_get_400_and_a_message(server, path, message):
    status, kind, body = get(server, path)
    assert status == 400 and kind == "application/json"
    assert json.loads(body)["error"].startswith(message)


@pytest.mark.parametrize("body, headers, status, message", [
    (b"{not json", {}, 400, "body: not JSON"),
    (b"[1, 2]", {}, 400, "body: give a JSON object"),
    (json.dumps({"a": [], "b": [[0, 0, 0, 0]], "c": [[0, 0, 0, 0]]}).encode(), {}, 400, "a: give a list of 1 to 64"),
    (json.dumps({"a": [[0, 0, 0, 0]], "b": [["x", 0, 0, 0]], "c": [[0, 0, 0, 0]]}).encode(), {}, 400,
     "b: give each z as a list of 4 numbers"),
    (json.dumps({"a": [[0, 0, 0, 0]], "b": [[0, 0, 0]], "c": [[0, 0, 0, 0]]}).encode(), {}, 400,
     "b: 3 numbers given"),
    (json.dumps({"a": [[0] * 4], "b": [[0] * 4], "c": [[0] * 4], "label": 12}).encode(), {}, 400,
     "label: 12 is outside 0..9"),
    (b"{}", {"Content-Length": str(1 << 30)}, 413, "body of 1073741824 bytes"),
    (json.dumps({"a": [[0] * 4], "b": [[0] * 4], "c": [[0] * 4], "psi": 0.5}).encode(), {}, 400,
     "psi: this generator (--arch dcgan) has no truncation"),
])
def test_bad_arithmetic_requests(server, body, headers, status, message):
    answer_status, _, answer = request(server[0], "POST", "/api/arithmetic", body, headers)
    assert answer_status == status and json.loads(answer)["error"].startswith(message)


def test_post_elsewhere_is_404_and_garbage_does_not_stop_the_server(server):
    assert request(server[0], "POST", "/api/image", b"{}")[0] == 404
    with socket.create_connection(server[0].server_address[:2], timeout=60) as raw:
        raw.sendall(b"GET /api/info HTTP/banana\r\n\r\n")  # answered as HTTP/0.9: the page, no status line
        assert b"Error code: 400" in b"".join(iter(lambda: raw.recv(4096), b""))
    with socket.create_connection(server[0].server_address[:2], timeout=60) as raw:
        raw.sendall(b"\x00\xff /api/info HTTP/1.1\r\n\r\n")
        assert raw.recv(1024).startswith(b"HTTP/1.0 501 Unsupported method")
    with socket.create_connection(server[0].server_address[:2], timeout=60) as raw:
        raw.sendall(b"GET /api/info HTTP/1.1\r\n")  # half a request, then the client goes away
    assert get(server, "/api/info")[0] == 200


def untrained_explorer(config, session):
    generator = InferenceGenerator(config)
    session.run(v1.global_variables_initializer())
    return serve.Explorer(session, generator.z, generator.labels, generator.images_uint8, config, "untrained")


def test_unconditional_generator_refuses_a_label(tmp_path):
    config = tiny_config(tmp_path, dataset="faces", y_dim=0, c_dim=3, z_dim=4)
    with tf.Graph().as_default(), v1.Session() as session:
        with serve.serving_in_background(untrained_explorer(config, session)) as running:
            status, _, body = request(running, "GET", f"/api/image?z={Z_OK}&label=0")
            assert status == 400 and json.loads(body)["error"].startswith("label: this generator is unconditional")
            status, _, body = request(running, "GET", "/api/samples?count=2&seed=0")
            assert status == 200 and json.loads(body)["labels"] is None
            status, _, body = request(running, "GET", f"/api/image?z={Z_OK}")
            assert status == 200 and png(body).shape == (16, 16, 3)


def test_exported_saved_model_serves_the_same_images(trained, server, tmp_path):
    directory = str(tmp_path / "saved")
    export.export_saved_model(trained, directory)
    config = tiny_config(tmp_path, serve_model=directory, z_dim=100, y_dim=0)  # the export's flags win
    with tf.Graph().as_default(), v1.Session() as session:
        explorer = serve.saved_model_explorer(config, session)
        assert (explorer.config.z_dim, explorer.config.y_dim) == (4, 10)
        with serve.serving_in_background(explorer) as running:
            path = "/api/grid?count=9&seed=3"
            assert request(running, "GET", path)[2] == get(server, path)[2]


def test_a_port_in_use_is_one_line(server):
    port = server[0].server_address[1]
    with pytest.raises(UserError, match=f"--host 127.0.0.1 --port {port}: cannot listen"):
        serve.make_server(server[1], "127.0.0.1", port)


@pytest.mark.parametrize("sigint_at_start", [signal.SIG_DFL, signal.SIG_IGN], ids=["terminal", "nohup"])
def test_main_serve_starts_on_loopback_and_stops_on_ctrl_c(trained, sigint_at_start):
    # SIG_IGN: started as nohup or a background job does, where Python installs no KeyboardInterrupt handler.
    command = [sys.executable, str(REPO / "main.py"), "--serve", "--port", "0", "--dataset", "mnist",
               "--out_dir", trained.out_dir, "--batch_size", "4", "--output_height", "16"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                               preexec_fn=lambda: signal.signal(signal.SIGINT, sigint_at_start))
    try:
        lines = StderrLines(process)
        host, port = lines.wait_for(r"explorer of \S+DCGAN.model-2 on http://([\d.]+):(\d+)/").groups()
        assert host == "127.0.0.1"
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("GET", "/api/info")
        assert json.loads(connection.getresponse().read())["z_dim"] == 4
        connection.close()
        process.send_signal(signal.SIGINT)
        assert "stopped" in lines.read_to_end()
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
