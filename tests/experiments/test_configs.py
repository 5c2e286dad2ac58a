"""One config, any optimizer: every experiment config builds every registered optimizer.

``--config.optimizer.name=X`` on any ``experiments/configs/*.py`` must work for
every registered ``X`` (``experiments/_cli.fit_optimizer`` drops the file's
hyperparameters ``X`` does not take); built and initialised here, not trained.
"""

import importlib
import pathlib

import jax
import jax.numpy as jnp
import pytest

from experiments import _cli
from optim_lab.optimizers import registry as optimizer_registry
from optim_lab.training import train

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIGS = sorted(p.stem for p in (ROOT / "experiments" / "configs").glob("*.py")
                 if p.stem != "__init__")
OPTIMIZERS = optimizer_registry.names(with_orthograd=True)


def _config(module_name: str):
    config = importlib.import_module(f"experiments.configs.{module_name}").get_config()
    config.lock()  # as the binaries load it: no new fields
    return config


def test_the_test_sees_every_config_and_optimizer():
    assert {"base", "grokking", "adamp_digits", "polyak_digits"} <= set(CONFIGS)
    assert len(OPTIMIZERS) == 2 * len(optimizer_registry.names()) >= 16


@pytest.mark.parametrize("config_name", CONFIGS)
def test_every_config_builds_every_registered_optimizer(config_name):
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
    for name in OPTIMIZERS:
        config = _config(config_name)
        hyper = {"learning_rate", *optimizer_registry.hyperparameter_names()}
        from_file = {k: v for k, v in config.optimizer.items()
                     if v is not None and k in hyper}  # not name, state_dtype
        config.optimizer.name = name
        dropped = _cli.fit_optimizer(config, {"optimizer.name"})
        taken = {"learning_rate", *optimizer_registry.hyperparameters_of(name)}
        assert set(dropped) == set(from_file) - taken, name
        for key in set(from_file) & taken:  # kept as the file set it
            assert config.optimizer[key] == from_file[key], (name, key)
        train.check_config(config)
        with train.x64_context(config):  # optimizer.state_dtype=64 needs it
            tx = train.build_optimizer(config)
            updates, _ = tx.update(params, tx.init(params), params,
                                   value=jnp.asarray(1.0))
        assert all(bool(jnp.all(jnp.isfinite(u))) for u in jax.tree.leaves(updates)), name


def test_without_the_switch_the_registry_stays_strict():
    config = _config("grokking")
    config.optimizer.name = "sgd"
    with pytest.raises(ValueError, match="optimizer.b1: optimizer 'sgd' does not take 'b1'"):
        train.build_optimizer(config)


def test_the_file_fields_are_dropped_only_when_the_command_line_names_the_optimizer():
    config = _config("grokking")
    config.optimizer.name = "sgd"  # e.g. changed by a variant config file
    assert _cli.fit_optimizer(config, set()) == ()
    assert config.optimizer.b1 == 0.9  # left for the registry to reject
    assert _cli.fit_optimizer(config, {"optimizer.name"}) == ("b1", "b2", "eps")
    assert (config.optimizer.b1, config.optimizer.weight_decay) == (None, 0.0)


def test_command_line_hyperparameter_the_optimizer_does_not_take_is_an_error():
    config = _config("grokking")
    config.optimizer.name = "sgd"
    with pytest.raises(_cli.ConfigError,
                       match=r"--config.optimizer.b2: optimizer 'sgd' does not take 'b2'"):
        _cli.fit_optimizer(config, {"optimizer.name", "optimizer.b2"})
    config.optimizer.b2 = None  # --config.optimizer.b2=None: unset, not an error
    assert _cli.fit_optimizer(config, {"optimizer.name", "optimizer.b2"}) == ("b1", "eps")


def test_switching_away_from_orthograd_drops_its_options():
    config = _config("grokking_released")
    config.optimizer.orthograd_scope = "global"
    config.optimizer.name = "adamw"
    assert _cli.fit_optimizer(config, {"optimizer.name"}) == ("orthograd_scope",)
    config.optimizer.name = "orthograd_adamw"
    config.optimizer.orthograd_scope = "global"
    assert _cli.fit_optimizer(config, {"optimizer.name"}) == ()
    assert config.optimizer.orthograd_scope == "global"


def test_unknown_optimizer_name_suggests_the_closest():
    config = _config("grokking")
    config.optimizer.name = "adamww"
    with pytest.raises(ValueError, match=r"optimizer.name: unknown optimizer 'adamww' "
                                         r"\(did you mean 'adamw'\?\)"):
        _cli.fit_optimizer(config, {"optimizer.name"})


def test_section_fields_that_are_no_hyperparameter_are_kept():
    config = importlib.import_module("experiments.configs.grokking").get_config()
    config.optimizer.state_dtype = 64  # a training option kept in the section
    config.optimizer.name = "sgd"
    given = {"optimizer.name", "optimizer.state_dtype", "optimizer.learning_rate"}
    assert _cli.fit_optimizer(config, given) == ("b1", "b2", "eps")
    assert (config.optimizer.state_dtype, config.optimizer.learning_rate) == (64, 1e-2)
