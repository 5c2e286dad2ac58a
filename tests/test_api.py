"""Guards of the public API a newcomer can break without noticing.

Config flags come from each alias's signature (the optimizer registry reads
it), so an argument added only to a ``scale_by_*`` rule silently gets no flag;
and a public constructor missing from ``optim_lab.__all__`` is invisible to
``from optim_lab import *`` and to the docs.
"""

import importlib
import inspect
import pkgutil

import pytest

import optim_lab
from optim_lab.optimizers import registry

# alias -> its bare rule (the optax ``x`` / ``scale_by_x`` convention). The
# Polyak transforms have no bare rule: their lr is a cap inside the step.
PAIRS = [("adamp", "scale_by_adamp"), ("sgdp", "scale_by_sgdp"),
         ("fadam", "scale_by_fadam")]


def _params(fn):
    return [(p.name, p.default, p.kind) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("alias, rule", PAIRS)
def test_alias_signature_is_learning_rate_plus_its_rule(alias, rule):
    alias_params = _params(getattr(optim_lab, alias))
    assert alias_params[0][0] == "learning_rate"
    assert alias_params[1:] == _params(getattr(optim_lab, rule))


def test_every_alias_with_a_rule_is_listed():
    rules = {n for n in optim_lab.__all__ if n.startswith("scale_by_")}
    assert rules == {rule for _, rule in PAIRS}


def _returns(fn, *needles) -> bool:
    try:
        ann = inspect.signature(fn).return_annotation
    except (TypeError, ValueError):
        return False
    ann = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    return any(n in ann for n in needles)


# A public constructor: a function defined in an algorithm module that returns
# a transformation (optimizers), a schedule (schedules), or is one of the
# pure losses / rescaling functions.
KINDS = {"optimizers": ("GradientTransformation",), "schedules": ("Schedule",),
         "losses": ("Array",), "rescaling": ("", )}


def _public_constructors():
    found = set()
    for pkg, needles in KINDS.items():
        package = importlib.import_module(f"optim_lab.{pkg}")
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_") or info.name in ("registry", "baselines"):
                continue
            module = importlib.import_module(f"optim_lab.{pkg}.{info.name}")
            for name, obj in vars(module).items():
                if (name.startswith("_") or not inspect.isfunction(obj)
                        or obj.__module__ != module.__name__):
                    continue
                if _returns(obj, *needles):
                    found.add((module.__name__, name))
    return found


def test_every_public_constructor_is_exported():
    found = _public_constructors()
    assert {"optim_lab.optimizers.adamp.adamp", "optim_lab.rescaling.tvr.tvr"} <= {
        f"{m}.{n}" for m, n in found}  # the scan itself finds things
    missing = sorted(f"{m}.{n}" for m, n in found if n not in optim_lab.__all__)
    assert not missing, f"add to optim_lab/__init__.py and __all__: {missing}"


def test_all_names_resolve():
    for name in optim_lab.__all__:
        assert hasattr(optim_lab, name), name


def test_every_registered_optimizer_constructor_is_exported():
    for name in registry.names():
        fn = registry.get(name).constructor
        if fn.__module__.startswith("optim_lab.optimizers.baselines"):
            continue  # optax's own optimizers, wrapped for the registry
        assert fn.__name__ in optim_lab.__all__, name
