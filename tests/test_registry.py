"""The shared registry mechanism and the optimizer registry's config surface."""

import pytest

from optim_lab import _registry
from optim_lab.optimizers import registry as optimizers


def _fn(base, n: int = 3, x: float = 0.5, mode: str = "a", flag: bool = False,
        extra=None):
    return base, n, x, mode, flag, extra


def test_build_checks_kwargs_and_prefixes_errors():
    table = {"f": _fn}
    built = _registry.build("thing", "f", table, 1, x=2.0, extra=None)
    assert built == (1, 3, 2.0, "a", False, None)
    with pytest.raises(ValueError, match="thing.y: thing 'f' does not take 'y'"):
        _registry.build("thing", "f", table, 1, y=1)
    with pytest.raises(ValueError, match="thing.name must be one of 'f'; got 'g'"):
        _registry.build("thing", "g", table, 1)

    def bad(base, x=1.0):
        raise ValueError("x must be positive")
    with pytest.raises(ValueError, match=r"thing \(bad\): x must be positive"):
        _registry.build("thing", "bad", {"bad": bad}, 1)


def test_kwarg_types_from_defaults():
    def other(base, n: float = 1.0, mode: int = 1):
        return base
    types = _registry.kwarg_types([_fn, other], reserved=("base",))
    assert types == {"extra": object, "flag": bool, "mode": object, "n": float,
                     "x": float}


def test_optimizer_config_surface():
    types = optimizers.hyperparameter_types()
    assert types["b2"] is float and types["orthograd_scope"] is str
    assert "learning_rate" not in types
    for name in optimizers.names():
        assert optimizers.get("orthograd_" + name) is optimizers.get(name)
    with pytest.raises(ValueError, match="optimizer.orthograd_scope: only valid"):
        optimizers.build("adamw", 1e-3, orthograd_scope="leaf")


def test_misspelt_names_get_a_suggestion():
    with pytest.raises(ValueError, match=r"optimizer 'adamww' \(did you mean 'adamw'\?\)"):
        optimizers.get("adamww")
    with pytest.raises(ValueError, match=r"does not take 'eps2' \(did you mean 'eps'\?\)"):
        optimizers.build("adamw", 1e-3, eps2=1e-8)
    with pytest.raises(ValueError, match=r"got 'ff' \(did you mean 'f'\?\)"):
        _registry.lookup("thing", "ff", {"f": _fn})


def test_hyperparameters_of_is_what_build_accepts():
    assert optimizers.hyperparameters_of("sgd") == ("momentum", "nesterov", "weight_decay")
    assert "orthograd_scope" in optimizers.hyperparameters_of("orthograd_sgd")
    assert "orthograd_scope" not in optimizers.hyperparameters_of("sgd")
    for name in optimizers.names(with_orthograd=True):
        taken = set(optimizers.hyperparameters_of(name))
        for field in optimizers.hyperparameter_names():
            if field not in taken:  # build stays strict: an untaken field is an error
                value = optimizers.hyperparameter_types()[field]
                with pytest.raises(ValueError, match=field):
                    optimizers.build(name, 1e-3, **{field: _a_value(value)})


def test_build_errors_name_the_full_optimizer_name():
    """optimizers.build goes through _registry.build, for the optimizer and for
    its ⊥Grad wrapper; messages keep the name the config gave."""
    with pytest.raises(ValueError, match=r"optimizer \(orthograd_adamw\): b1 must be in"):
        optimizers.build("orthograd_adamw", 1e-3, b1=1.5)
    with pytest.raises(ValueError,
                       match=r"optimizer \(orthograd_adamw\): scope must be one of"):
        optimizers.build("orthograd_adamw", 1e-3, orthograd_scope="x")
    with pytest.raises(ValueError,
                       match=r"optimizer.eps2: optimizer 'orthograd_adamw' does not take"):
        optimizers.build("orthograd_adamw", 1e-3, eps2=1.0)
    with pytest.raises(ValueError, match=r"unknown optimizer 'orthograd_adamww' "
                                         r"\(did you mean 'orthograd_adamw'\?\)"):
        optimizers.build("orthograd_adamww", 1e-3)


def test_lookup_names_the_config_field():
    with pytest.raises(ValueError, match=r"^loss must be one of 'f'; got 'g'"):
        _registry.lookup("thing", "g", {"f": _fn}, field="loss")


def _a_value(kind):
    return {bool: True, str: "x", float: 0.5, int: 1}.get(kind, 1)
