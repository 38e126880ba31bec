"""How live the page is: ``python -m funcnet._src.playground.measure [seconds]``.

Starts the page's server on 127.0.0.1, plays the default network the way the
page does (ask for a frame, then ask again) for a few seconds, and prints the
frames (picture updates) per second and epochs per second; then, while it
keeps playing, changes controls and prints how long each change takes to come
back with its new frame (learning rate and batch size: live changes; data
set and ratio: a reset with new data), each to a value the session has not
seen. Numbers for docs/playground.md.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
import urllib.request

from funcnet._src.playground.server import PlaygroundHTTPServer


def _post(url: str, action: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}api/{action}", json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def measure(seconds: float = 5.0) -> dict[str, float]:
    """Frames per second, epochs per second and change latencies (ms) of the default page."""
    server = PlaygroundHTTPServer(0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = server.url
    try:
        key = _post(url, "start", {"fragment": ""})["session"]
        _post(url, "step", {"session": key})  # compiled before timing
        frames, start = 0, time.perf_counter()
        epoch0 = _post(url, "step", {"session": key})["frame"]["epoch"]
        while time.perf_counter() - start < seconds:
            epoch = _post(url, "step", {"session": key})["frame"]["epoch"]
            frames += 1
        elapsed = time.perf_counter() - start
        results = {
            "frames_per_second": frames / elapsed,
            "epochs_per_second": (epoch - epoch0) / elapsed,
        }

        playing = threading.Event()
        playing.set()

        def play() -> None:
            while playing.is_set():
                _post(url, "step", {"session": key})

        player = threading.Thread(target=play)
        player.start()
        # Every value is new to the session: nothing here may need a new compilation.
        for name, fragments in (
            (
                "learning_rate_change_ms",
                [f"learningRate={r}" for r in (0.1, 0.3, 0.01, 0.003, 1, 0.03)],
            ),
            ("batch_size_change_ms", [f"batchSize={b}" for b in (7, 13, 30, 1, 22, 10)]),
            ("dataset_change_ms", [f"dataset={d}" for d in ("xor", "gauss", "spiral", "circle")]),
            ("ratio_change_ms", [f"percTrainData={p}" for p in (30, 70, 90, 10, 50)]),
        ):
            times = []
            for fragment in fragments:
                begin = time.perf_counter()
                _post(url, "change", {"session": key, "fragment": fragment})
                times.append(1000 * (time.perf_counter() - begin))
            results[name] = statistics.median(times)
            results[name.replace("_ms", "_max_ms")] = max(times)
        playing.clear()
        player.join()
        return results
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    for name, value in measure(float(sys.argv[1]) if len(sys.argv) > 1 else 5.0).items():
        print(f"{name}: {value:.1f}")
