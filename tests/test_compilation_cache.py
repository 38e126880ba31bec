"""The persistent compilation cache is opt-in; fit changes no JAX setting."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest

import funcnet as fn


def run_python(script, **env_vars):
    """Runs ``script`` in a fresh process: JAX initialises its cache once per process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION", "FUNCNET_"))}
    env.update(env_vars)
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out


def test_fit_leaves_every_jax_setting_alone(monkeypatch):
    monkeypatch.delenv("FUNCNET_COMPILATION_CACHE", raising=False)
    before = dict(jax.config.values)
    x = np.linspace(-1, 1, 8, dtype=np.float32)[:, None]
    fn.fit(fn.Dense(1), x, 2 * x, loss="mse", optimizer=optax.sgd(0.1), epochs=2, verbose=0)
    assert dict(jax.config.values) == before


@pytest.fixture(scope="module")
def seen(tmp_path_factory):
    """What enable_compilation_cache did in one fresh process (JAX starts once for the three cases).

    The cases run in an order where each starts from JAX's defaults: the two
    that leave no cache first, and nothing compiles before the bounded cache.
    """
    folder = tmp_path_factory.mktemp("cache")
    blocker = folder / "file"
    blocker.write_text("")
    out = run_python(
        f"""
        import json, warnings, jax, jax.numpy as jnp
        import funcnet as fn
        seen = {{}}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            seen["unwritable"] = fn.enable_compilation_cache({str(blocker / "cache")!r})
        seen["warnings"] = [str(w.message) for w in caught]
        seen["dir_after_unwritable"] = jax.config.values["jax_compilation_cache_dir"]

        jax.config.update("jax_compilation_cache_dir", {str(folder / "mine")!r})
        seen["kept"] = fn.enable_compilation_cache({str(folder / "other")!r})
        seen["kept_dir"] = jax.config.values["jax_compilation_cache_dir"]
        seen["kept_max_size"] = jax.config.values["jax_compilation_cache_max_size"]
        jax.config.update("jax_compilation_cache_dir", None)

        seen["bounded"] = fn.enable_compilation_cache({str(folder / "cache")!r}, max_bytes=1 << 20)
        seen["bounded_dir"] = jax.config.values["jax_compilation_cache_dir"]
        seen["bounded_max_size"] = jax.config.values["jax_compilation_cache_max_size"]
        seen["min_compile_time"] = jax.config.values["jax_persistent_cache_min_compile_time_secs"]
        jax.jit(lambda x: x + 1)(jnp.ones(3))
        print(json.dumps(seen))
        """
    )
    return folder, json.loads(out.stdout.strip().splitlines()[-1])


def test_enable_sets_a_bounded_cache_in_the_folder(seen):
    folder, seen = seen
    assert seen["bounded"] == seen["bounded_dir"] == str(folder / "cache")
    assert seen["bounded_max_size"] == 1 << 20
    assert seen["min_compile_time"] == 0.0
    assert any((folder / "cache").iterdir())  # the program was written there


def test_enable_keeps_a_cache_the_user_configured(seen):
    folder, seen = seen
    assert seen["kept"] == seen["kept_dir"] == str(folder / "mine")
    assert seen["kept_max_size"] == -1
    assert not (folder / "other").exists()


def test_an_unwritable_folder_warns_and_trains_without(seen):
    _, seen = seen
    assert seen["unwritable"] is None
    assert "cannot create the cache folder" in seen["warnings"][0]
    assert "without the persistent cache" in seen["warnings"][0]
    assert seen["dir_after_unwritable"] is None


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "1GB"])
def test_max_bytes_must_be_a_positive_integer(bad):
    with pytest.raises(ValueError, match=r"max_bytes must be a positive integer, got"):
        fn.enable_compilation_cache(max_bytes=bad)


def test_the_environment_variable_turns_it_on_at_the_first_fit(tmp_path):
    out = run_python(
        """
        import jax, numpy as np, optax
        import funcnet as fn
        assert not jax.config.values["jax_compilation_cache_dir"]
        x = np.ones((4, 1), np.float32)
        fn.fit(fn.Dense(1), x, x, loss="mse", optimizer=optax.sgd(0.1), epochs=1, verbose=0)
        print(jax.config.values["jax_compilation_cache_dir"])
        """,
        FUNCNET_COMPILATION_CACHE="1",
        FUNCNET_COMPILATION_CACHE_DIR=str(tmp_path / "c"),
    )
    assert out.stdout.strip() == str(tmp_path / "c")
    assert any((tmp_path / "c").iterdir())  # programs were written
