#!/usr/bin/env python3
"""What the server adds to each image: a paid request to a real `pixeldrop` API process whose
generator answers at once, against the time of one image.

    .venv/bin/python bench/overhead.py --image-seconds 2.5 [--requests 200]

One client sends requests one after another (nothing queues), so each latency is the server's
whole work for one image: HTTP parsing, key check, rate limit, admission, reservation, the hop to
the generation thread and back, settling, encoding, and the answer, on SQLite (the default
database). The generator returns a detailed 512x512 picture (fractal, noise and a gradient), not
a blank one: encoding a flat image would flatter the server. Printed per route and format: p50
and p90 latency, the encoding's own share (measured alone), and the p50 as a share of
`--image-seconds`, the fast preset's time per image as bench/generate.py printed it in the same
session. Issue 16's goal: under 5%.
"""

from __future__ import annotations

import argparse
import base64
import io
import multiprocessing
import statistics
import tempfile
import time
from collections.abc import Callable

import httpx
from PIL import Image
from scale import InstantGenerator, api_process, describe_cpu, free_port, make_keys, wait_healthy

PROMPT = "a red apple"


def picture() -> Image.Image:
    """Detail an encoder has to work for, the same every run."""
    size = (512, 512)
    return Image.merge("RGB", [Image.effect_mandelbrot(size, (-2.0, -1.25, 0.75, 1.25), 100),
                               Image.effect_noise(size, 40), Image.linear_gradient("L").resize(size)])


def _latencies(send: Callable[[], httpx.Response], requests: int) -> list[float]:
    for _ in range(10):  # warm-up: connections, first-call allocations
        send().raise_for_status()
    times = []
    for _ in range(requests):
        started = time.perf_counter()
        response = send()
        times.append(time.perf_counter() - started)
        response.raise_for_status()
    return sorted(times)


def _encoding_seconds(fmt: str) -> float:
    from pixeldrop.generation.formats import FORMATS

    image = picture()
    times = []
    for _ in range(30):
        started = time.perf_counter()
        FORMATS[fmt].encode(image, 92, "a red apple\nSteps: 1, Seed: 1, Size: 512x512, Model: instant")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-seconds", type=float, required=True,
                        help="the fast preset's seconds per image on this machine (bench/generate.py)")
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(describe_cpu())

    home = tempfile.mkdtemp(prefix="pixeldrop-overhead-")
    env = {"PIXELDROP_HOME": home, "PIXELDROP_DATABASE_URL": f"sqlite:///{home}/pixeldrop.db"}
    port = free_port()
    server = multiprocessing.get_context("spawn").Process(
        target=api_process, args=(port, env, InstantGenerator(picture())), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, 120)
        with httpx.Client(base_url=url, timeout=60) as http:
            [key] = make_keys(env["PIXELDROP_DATABASE_URL"], 1)
            routes = {
                "ClipDrop route, JPEG": ("jpeg", lambda: http.post(
                    "/text-to-image/v1", files={"prompt": (None, PROMPT)},
                    headers={"x-api-key": key, "accept": "image/jpeg"})),
                "ClipDrop route, PNG": ("png", lambda: http.post(
                    "/text-to-image/v1", files={"prompt": (None, PROMPT)},
                    headers={"x-api-key": key, "accept": "image/png"})),
                "OpenAI route, b64 PNG": ("png", lambda: http.post(
                    "/v1/images/generations", json={"prompt": PROMPT},
                    headers={"authorization": f"Bearer {key}"})),
            }
            worst = 0.0
            for name, (fmt, send) in routes.items():
                times = _latencies(send, args.requests)
                p50, p90 = statistics.median(times), times[int(len(times) * 0.9)]
                encoding = _encoding_seconds(fmt)
                share = p50 / args.image_seconds
                worst = max(worst, share)
                print(f"{name:24} p50 {p50 * 1000:6.1f} ms  p90 {p90 * 1000:6.1f} ms  (encoding alone "
                      f"{encoding * 1000:5.1f} ms)  = {share:.1%} of a {args.image_seconds:.2f} s image", flush=True)
            check = http.post("/v1/images/generations", json={"prompt": PROMPT},
                              headers={"authorization": f"Bearer {key}"}).json()
            Image.open(io.BytesIO(base64.b64decode(check["data"][0]["b64_json"]))).verify()
    finally:
        server.terminate()
        server.join()
    print(f"server overhead: at most {worst:.1%} of an image's time (goal: under 5%)")


if __name__ == "__main__":
    main()
