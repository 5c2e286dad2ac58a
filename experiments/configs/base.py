"""The base config every experiment config imports and overrides.

Sections with a ``name`` (data, model, optimizer, schedule) are passed to the
matching registry; ``None``-valued optimizer / schedule fields mean "the
constructor's default"; they are typed placeholders, so flags can set them.
Every registered hyperparameter exists as a field, so
``--config.optimizer.b2=0.99`` works for any optimizer that takes ``b2``, and
a field the chosen optimizer does not take is an error — unless
``--config.optimizer.name`` is given on the command line: then the file's
hyperparameters the new optimizer does not take are dropped with a note
(``experiments/_cli.fit_optimizer``).
"""

import ml_collections
from ml_collections import config_dict

from optim_lab.optimizers import registry as optimizer_registry
from optim_lab.schedules import registry as schedule_registry


def optimizer_config(name: str = "adamw", learning_rate: float = 1e-3,
                     **hparams) -> ml_collections.ConfigDict:
    """``name``, ``learning_rate`` and every registered hyperparameter."""
    cfg = ml_collections.ConfigDict(
        {k: config_dict.placeholder(t)
         for k, t in optimizer_registry.hyperparameter_types().items()})
    cfg.name, cfg.learning_rate = name, learning_rate
    # 64: keep the optimizer state in float64 (optim_lab.with_state_dtype; needs
    # enable_x64). XLA:CPU flushes float32 subnormals to zero, so tiny-eps Adam
    # state (eps 1e-25) underflows where torch's does not.
    cfg.state_dtype = config_dict.placeholder(int)
    cfg.update(hparams)
    return cfg


def schedule_config(name: str = "constant", **kwargs) -> ml_collections.ConfigDict:
    """``name`` and every registered schedule's keyword (None = default)."""
    cfg = ml_collections.ConfigDict(
        {k: config_dict.placeholder(t)
         for k, t in schedule_registry.hyperparameter_types().items()})
    cfg.name = name
    cfg.update(kwargs)
    return cfg


def rescaling_config(**kwargs) -> ml_collections.ConfigDict:
    """Weight rescaling (None = off): LIR init std and the TVR post-step."""
    cfg = ml_collections.ConfigDict({
        "lir_base_std": config_dict.placeholder(float),
        "tvr_target": config_dict.placeholder(float),
        "tvr_interval": config_dict.placeholder(int),
        "tvr_threshold": config_dict.placeholder(float),
        "tvr_scale_with_depth": config_dict.placeholder(bool),
        "tvr_mode": config_dict.placeholder(str)})
    cfg.update(kwargs)
    return cfg


def get_base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all experiments (a tiny modular-addition MLP run)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.steps = 100
    c.batch_size = 0  # 0: full batch
    c.log_every = 10
    c.eval_every = 10
    c.checkpoint_every = 100
    c.loss = "softmax"  # softmax | stablemax
    c.loss_dtype = 32  # 16 | 32 | 64 (64 needs enable_x64)
    c.enable_x64 = False
    c.data_parallel = True  # split batches over all local devices (no-op on one)
    c.sharding = "replicated"  # params + optimizer state: replicated | fsdp (over the data axis)
    c.max_nonfinite_steps = 20  # consecutive rejected (non-finite) steps before the run stops
    c.steps_per_call = 1  # >1: that many steps per jitted call (lax.scan), same results
    c.hessian_iters = 0  # >0: log probe/hessian_top_eig (HVP power iteration) at each eval
    c.log_state_fields = ("tau",)  # scalar optimizer-state fields logged as opt/<name>
    # split_from / init_from: a start file (e.g. tests/golden/grokking_start.npz,
    # the grokking reference's seed-42 split and initial weights); None = off.
    c.data = ml_collections.ConfigDict(dict(
        name="modular", modulus=113, op="add", train_fraction=0.4, split_seed=0,
        split_from=config_dict.placeholder(str)))
    c.model = ml_collections.ConfigDict(dict(
        name="mlp", hidden=(200, 200), use_bias=False, init="torch",
        init_from=config_dict.placeholder(str)))
    c.rescaling = rescaling_config()
    c.optimizer = optimizer_config()
    c.schedule = schedule_config()
    return c


def get_config() -> ml_collections.ConfigDict:
    return get_base_config()
