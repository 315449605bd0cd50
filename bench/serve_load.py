"""The explorer under a small concurrent load on loopback: requests/s and latency of a 16-image grid.

The server (tools/serve.py, as `python main.py --serve` runs it) serves a generator of full size with its
initial weights (speed does not depend on the weights' values): the 64x64 RGB celebA generator and the
28x28 conditional MNIST one.  Each of C client threads sends GET /api/grid?count=16&seed=i (a different
z batch each time, so nothing is cached) --requests times, one after the other, on its own connection.

    python -m bench.serve_load [--requests 40] [--concurrency 1,4,8] [--model celebA|mnist|both]

Prints a markdown table: completed requests per second over the whole run, and the median and 99th
percentile of the per-request latency seen by the clients.
"""

import argparse
import http.client
import os
import threading
import time

import numpy as np

import config as config_lib
from bench import harness
from runtime.tf_runtime import tf
from tools import serve
from training.inference import InferenceGenerator

v1 = tf.compat.v1
MODELS = {"celebA": dict(dataset="celebA", c_dim=3), "mnist": dict(dataset="mnist")}
GRID = 16


def client(address, first_seed, requests, latencies, failures):
    connection = http.client.HTTPConnection(*address, timeout=600)
    try:
        for seed in range(first_seed, first_seed + requests):
            start = time.perf_counter()
            connection.request("GET", f"/api/grid?count={GRID}&seed={seed}")
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                failures.append(answer.status)
            latencies.append(time.perf_counter() - start)
    finally:
        connection.close()


def load(address, concurrency, requests):
    """(requests/s, median s, p99 s, failures) of `concurrency` clients sending `requests` each."""
    latencies, failures = [], []
    threads = [threading.Thread(target=client, args=(address, c * requests, requests, latencies, failures))
               for c in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    return len(latencies) / elapsed, np.median(latencies), np.percentile(latencies, 99), len(failures)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=40, help="requests per client")
    parser.add_argument("--concurrency", default="1,4,8", help="comma-separated numbers of clients")
    parser.add_argument("--model", default="both", choices=["celebA", "mnist", "both"])
    args = parser.parse_args()
    print(f"CPU cores: {os.cpu_count()}, load average before: {os.getloadavg()[0]:.1f}")
    print(harness.table_header(["model", "clients", "requests", "grid/s", "median latency", "p99 latency", "failed"],
                               "lrrrrrr"))
    for name in ("celebA", "mnist") if args.model == "both" else (args.model,):
        config = config_lib.resolve(config_lib.Config(**MODELS[name]))
        with tf.Graph().as_default(), v1.Session() as session:
            generator = InferenceGenerator(config)
            session.run(v1.global_variables_initializer())
            explorer = serve.Explorer(session, generator.z, generator.labels, generator.images_uint8, config, name)
            with serve.serving_in_background(explorer) as server:
                address = server.server_address[:2]
                client(address, 10 ** 6, 2, [], [])  # warm-up: TensorFlow's first run of the graph
                for concurrency in (int(c) for c in args.concurrency.split(",")):
                    rate, median, p99, failed = load(address, concurrency, args.requests)
                    print(harness.table_row([
                        f"{name} {config.output_height}x{config.output_width}x{config.c_dim}", concurrency,
                        concurrency * args.requests, f"{rate:.1f}", f"{median * 1000:.0f} ms", f"{p99 * 1000:.0f} ms",
                        failed]), flush=True)


if __name__ == "__main__":
    main()
