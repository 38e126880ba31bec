"""The page's server without a browser: its endpoints over real HTTP on 127.0.0.1."""

import base64
import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from funcnet._src.playground import server as server_module
from funcnet._src.playground.cli import main
from funcnet._src.playground.server import PlaygroundHTTPServer
from funcnet.playground import run_playground


@pytest.fixture(scope="module")
def url():
    server = PlaygroundHTTPServer(0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server.url
    server.shutdown()
    server.server_close()
    thread.join()


def post(url, action, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}api/{action}", data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def picture(encoded, side):
    values = np.frombuffer(base64.b64decode(encoded), np.uint8)
    assert values.shape == (side * side,)
    return values.reshape(side, side) / 127.5 - 1


def test_start_step_change_reset_stop(url):
    status, started = post(url, "start", {"fragment": "dataset=gauss&networkShape=3"})
    assert status == 200
    key, frame = started["session"], started["frame"]
    assert frame["epoch"] == 0 and len(frame["test_loss"]) == 1  # the panel at epoch 0
    assert len(started["points"]["train"]) == 250 and len(started["points"]["train"][0]) == 3
    # One picture per node: the two input features, three hidden units, the output.
    assert [len(column) for column in frame["nodes"]] == [2, 3, 1]
    assert [np.shape(w) for w in frame["weights"]] == [(2, 3), (3, 1)]
    output = picture(frame["output"], 100)
    # The x feature's picture grows left to right; rows go from y = +6 down.
    x_node = picture(frame["nodes"][0][0], 10)
    assert x_node[0, 0] == pytest.approx(-1) and x_node[0, -1] == pytest.approx(1)

    status, stepped = post(url, "step", {"session": key, "epochs": 4, "since": 1})
    frame = stepped["frame"]
    assert status == 200 and frame["epoch"] == 4 and frame["since"] == 1
    # The same numbers as the command line's run of the same link.
    expected = run_playground("dataset=gauss&networkShape=3", epochs=4).history["test_loss"][1:]
    np.testing.assert_allclose(frame["test_loss"], expected, rtol=1e-5)
    assert not np.allclose(picture(frame["output"], 100), output)

    # A live setting keeps the weights (as on the site); the fragment follows.
    status, changed = post(
        url,
        "change",
        {
            "session": key,
            "fragment": frame["fragment"].replace("learningRate=0.03", "learningRate=0.1"),
        },
    )
    assert status == 200 and changed["frame"]["epoch"] == 4 and "points" not in changed
    assert "learningRate=0.1" in changed["frame"]["fragment"]
    # Another data set starts again, with new points.
    status, changed = post(
        url, "change", {"session": key, "fragment": "dataset=xor&networkShape=3"}
    )
    assert status == 200 and changed["frame"]["epoch"] == 0 and "points" in changed
    assert "dataset=xor" in changed["frame"]["fragment"]
    post(url, "step", {"session": key, "epochs": 2})
    status, reset = post(url, "reset", {"session": key})
    assert status == 200 and reset["frame"]["epoch"] == 0
    assert post(url, "stop", {"session": key}) == (200, {"stopped": True})
    status, answer = post(url, "step", {"session": key})
    assert status == 404 and "unknown session" in answer["error"]


def test_a_link_from_the_site_keeps_its_seed_and_layout_flags(url):
    link = "https://playground.tensorflow.org/#dataset=xor&seed=0.59680&x_hide=true&hideText=true"
    status, started = post(url, "start", {"fragment": link})
    fragment = started["frame"]["fragment"]
    assert status == 200 and "dataset=xor" in fragment
    assert "&seed=0.59680&" in fragment and fragment.endswith("&x_hide=true&hideText=true")
    post(url, "stop", {"session": started["session"]})


def test_playing_trains_within_the_time_budget(url):
    _, started = post(url, "start", {"fragment": ""})
    _, stepped = post(url, "step", {"session": started["session"]})
    assert stepped["frame"]["epoch"] >= 1
    post(url, "stop", {"session": started["session"]})


@pytest.mark.parametrize(
    "action, body, status, message",
    [
        ("start", {"fragment": "dataset=moons"}, 400, r"unknown dataset 'moons'"),
        ("start", {"fragment": "networkShape=8,8,8,8,8,8,8"}, 400, r"networkShape has 7 hidden layers; the Playground allows at most 6"),
        ("start", {"fragment": "networkShape=4,9"}, 400, r"more than 8 neurons, the Playground's limit"),
        ("start", {"fragment": "batchSize=31"}, 400, r"batchSize 31 is above the Playground's 30"),
        ("start", {"fragment": "noise=loud"}, 400, r"noise='loud' is not a number"),
        ("start", {"fragment": 3}, 400, r"fragment must be a string, got int"),
        ("start", {"fragment": "", "speed": 2}, 400, r"unknown fields for /api/start: speed\. Known: fragment"),
        ("start", [1, 2], 400, r"the request body must be a JSON object"),
        ("fly", {}, 404, r"unknown endpoint /api/fly"),
        ("step", {"session": "nope"}, 404, r"unknown session 'nope'"),
    ],
)  # fmt: skip
def test_bad_requests_get_clear_errors(url, action, body, status, message):
    got_status, answer = post(url, action, body)
    assert got_status == status
    assert set(answer) == {"error"}
    assert re.search(message, answer["error"]), answer["error"]


def test_bad_steps_and_bodies(url):
    _, started = post(url, "start", {"fragment": "networkShape="})
    key = started["session"]
    status, answer = post(url, "step", {"session": key, "epochs": -1})
    assert status == 400 and "epochs must be an integer from 0 to 1000, got -1" in answer["error"]
    status, answer = post(url, "change", {"session": key, "fragment": "activation=swish"})
    assert status == 400 and "unknown activation 'swish'" in answer["error"]
    assert post(url, "step", {}, raw=b"{not json")[0] == 400
    status, answer = post(url, "step", {}, raw=b" " * (server_module.MAX_BODY + 1))
    assert status == 413
    # The server still answers after all of that.
    assert post(url, "step", {"session": key, "epochs": 1})[0] == 200
    post(url, "stop", {"session": key})


def test_idle_sessions_expire(url, monkeypatch):
    _, started = post(url, "start", {"fragment": "networkShape="})
    monkeypatch.setattr(server_module, "IDLE_SECONDS", -1.0)
    status, answer = post(url, "step", {"session": started["session"]})
    assert status == 404 and "expired" in answer["error"]


def test_the_page_and_its_files_are_served(url):
    for path, kind in (
        ("", "text/html"),
        ("playground.js", "javascript"),
        ("playground.css", "css"),
    ):
        with urllib.request.urlopen(url + path, timeout=10) as response:
            assert kind in response.headers["Content-Type"] and response.read()
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(url + "secret.txt", timeout=10)
    assert error.value.code == 404


def test_cli_serve_checks_the_page_limits(capsys):
    with pytest.raises(SystemExit):
        main(["playground", "--serve", "networkShape=9"])
    assert "more than 8 neurons" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["playground", "--serve", "--port", "70000"])
    assert "--port must be from 0 to 65535, got 70000" in capsys.readouterr().err


def test_serve_prints_the_address_answers_and_stops_on_ctrl_c():
    command = [sys.executable, "-m", "funcnet", "playground", "--serve", "dataset=xor"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("Playground page: http://127.0.0.1:") and "dataset=xor" in line
        address = line.split(": ", 1)[1].split("#")[0]
        with urllib.request.urlopen(address, timeout=30) as response:
            assert b"playground.js" in response.read()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == "Stopped." and "Traceback" not in err
