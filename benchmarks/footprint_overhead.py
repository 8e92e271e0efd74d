"""What measuring a trial's footprint costs the trial: FootprintMeter's start + stop around a
short piece of work, in a fresh process (the first meter pays CodeCarbon's hardware detection,
later ones reuse it, as trials on one Ray worker do), and the CPU time its background sampling
takes while a meter runs idle. Also checks that it opens no network connection and writes no
file into the working directory. Prints the figures; writes nothing.

    python benchmarks/footprint_overhead.py [--meters N] [--idle-seconds S]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time


def _refuse(*args, **kwargs):
    raise AssertionError(f"the footprint meter tried to open a network connection: {args}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10, help="meters started and stopped in a row")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="how long a meter runs idle")
    args = parser.parse_args()
    # Any connection attempt fails loudly instead of leaving the machine.
    socket.socket.connect = socket.socket.connect_ex = _refuse
    socket.create_connection = _refuse
    before = set(os.listdir("."))

    from bitnas.evaluators.footprint import FootprintMeter

    costs = []
    for _ in range(args.meters):
        meter = FootprintMeter()
        started = time.perf_counter()
        meter.start()
        running = time.perf_counter()
        sum(range(1_000_000))  # a little work, so that there is something to measure
        stopping = time.perf_counter()
        footprint = meter.stop()
        costs.append((running - started) + (time.perf_counter() - stopping))
        assert footprint is not None and not footprint.source.startswith("unavailable"), footprint
    print(f"source: {footprint.source}")
    print(f"first meter in this process: start + stop {costs[0]:.3f} s (CodeCarbon's hardware detection)")
    print(f"each later meter: start + stop median {statistics.median(costs[1:]):.3f} s, max {max(costs[1:]):.3f} s")

    meter = FootprintMeter()
    meter.start()
    cpu = time.process_time()
    time.sleep(args.idle_seconds)
    idle = time.process_time() - cpu
    meter.stop()
    print(f"background sampling while a meter runs: {idle / args.idle_seconds * 1000:.1f} ms of CPU per second")
    added = set(os.listdir(".")) - before
    assert not added, f"files written into the working directory: {added}"
    print("no network connection attempted; no file written into the working directory")


if __name__ == "__main__":
    main()
