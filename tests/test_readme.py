"""The README's tour runs as written."""

import pathlib

from tests.test_docs import python_blocks, run_block

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tour_runs_and_learns(capsys, tmp_path, monkeypatch):
    # Every Python block of the README, as tests/test_docs.py runs the docs' pages
    # (which leaves the README to this test).
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__main__"}
    for block in python_blocks(README):
        run_block(README, block, namespace)
    assert namespace["result"].history["loss"][-1] < 0.01
    assert "Total params: 17" in capsys.readouterr().out


def test_readme_quickstart_commands_are_the_ones_ci_runs():
    text = README.read_text()
    assert 'pip install -e ".[plot]" && python -m funcnet playground' in text
    assert 'pip install -e ".[test]" && python -m pytest' in text
    ci = (README.parent / ".ci" / "run").read_text()
    # .ci/run calls pytest through run_pytest, which runs "$python" -m pytest "$@"
    # (and fails on "no test collected"): with python and no arguments, the README's command.
    assert '"$python" -m pytest "$@"' in ci and "\nrun_pytest python\n" in ci
    assert '-e ".[test]"' in ci
