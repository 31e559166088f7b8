#!/usr/bin/env python3
"""Does dynamic batching help, and does it cost a lone request anything?

    python bench/batching.py [--model DIR] [--preset fast] [--requests 4]

Through the same `GenerationWorker` the server uses: the latency of one request alone with
`max_batch` 1 and 4, and the wall time of N requests submitted together with each setting.
"""

from __future__ import annotations

import argparse
import statistics
import time

from pixeldrop.generation import GenerationWorker, load_generator
from pixeldrop.settings import Settings


def lone_latency(worker: GenerationWorker, runs: int) -> float:
    times = []
    for i in range(runs):
        start = time.perf_counter()
        worker.submit(worker.admit(), "a red apple", i).result()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def burst(worker: GenerationWorker, n: int) -> float:
    start = time.perf_counter()
    futures = [worker.submit(worker.admit(), f"prompt {i}", i) for i in range(n)]
    for future in futures:
        future.result()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    generator = load_generator(Settings(model=args.model, preset=args.preset, compile=False, _env_file=None))
    generator.generate(["warm-up"] * args.requests, list(range(args.requests)))
    for max_batch in (1, args.requests):
        worker = GenerationWorker(generator, queue_size=64, max_batch=max_batch, batch_wait_ms=5).start()
        lone = lone_latency(worker, args.runs)
        together = burst(worker, args.requests)
        worker.stop()
        print(f"max_batch {max_batch}: one request alone {lone:.3f} s; {args.requests} together "
              f"{together:.2f} s ({together / args.requests:.3f} s/image)")


if __name__ == "__main__":
    main()
