"""Times one peer's feature computation on the bars a krxflow benchmark wrote, and writes the
peer's result for the benchmark's agreement check.

    python harness.py ENGINE BARS.parquet OUT.parquet RUNS

ENGINE is a module beside this file (features_pandas, features_polars). Prints one JSON line:
the load time, every run's compute time in seconds, the rows written and the thread count.
The first run is a warm-up and is not reported."""

import importlib
import json
import sys
import time


def main() -> None:
    engine, bars_path, out_path, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    peer = importlib.import_module(engine)
    t = time.perf_counter()
    bars = peer.load(bars_path)
    load_s = time.perf_counter() - t
    result = peer.compute(bars)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = peer.compute(bars)
        times.append(time.perf_counter() - t)
    peer.save(result, out_path)
    print(
        json.dumps(
            {
                "engine": peer.name,
                "load_s": load_s,
                "compute_s": times,
                "rows": peer.rows(result),
                "threads": peer.threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
