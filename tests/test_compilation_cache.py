"""The persistent compilation cache is opt-in; fit changes no JAX setting."""

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


def test_enable_sets_a_bounded_cache_in_the_folder(tmp_path):
    run_python(
        f"""
        import jax, jax.numpy as jnp
        import funcnet as fn
        folder = fn.enable_compilation_cache({str(tmp_path / "cache")!r}, max_bytes=1 << 20)
        assert folder == {str(tmp_path / "cache")!r}
        assert jax.config.values["jax_compilation_cache_dir"] == folder
        assert jax.config.values["jax_compilation_cache_max_size"] == 1 << 20
        assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] == 0.0
        jax.jit(lambda x: x + 1)(jnp.ones(3))
        """
    )
    assert any((tmp_path / "cache").iterdir())  # the program was written there


def test_enable_keeps_a_cache_the_user_configured(tmp_path):
    run_python(
        f"""
        import jax
        import funcnet as fn
        jax.config.update("jax_compilation_cache_dir", {str(tmp_path / "mine")!r})
        assert fn.enable_compilation_cache({str(tmp_path / "other")!r}) == {str(tmp_path / "mine")!r}
        assert jax.config.values["jax_compilation_cache_dir"] == {str(tmp_path / "mine")!r}
        assert jax.config.values["jax_compilation_cache_max_size"] == -1
        """
    )
    assert not (tmp_path / "other").exists()


def test_an_unwritable_folder_warns_and_trains_without(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    run_python(
        f"""
        import warnings, jax
        import funcnet as fn
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert fn.enable_compilation_cache({str(blocker / "cache")!r}) is None
        assert "cannot create the cache folder" in str(caught[0].message)
        assert "without the persistent cache" in str(caught[0].message)
        assert jax.config.values["jax_compilation_cache_dir"] is None
        """
    )


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
