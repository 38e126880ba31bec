"""The README's tour runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def test_readme_tour_runs_and_learns(capsys):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["result"].history["loss"][-1] < 0.01
    assert "Total params: 17" in capsys.readouterr().out


def test_readme_quickstart_commands_are_the_ones_ci_runs():
    text = README.read_text()
    assert 'pip install -e ".[plot]" && python -m funcnet playground' in text
    assert 'pip install -e ".[test]" && python -m pytest' in text
    ci = (README.parent / ".ci" / "run").read_text()
    assert "python -m pytest\n" in ci and '-e ".[test]"' in ci
