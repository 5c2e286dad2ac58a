"""Weight rescaling (Owen et al. 2025): LIR init patch and TVR post-step transform.

Pure JAX functions of a params pytree; they know nothing about models or
training. ``lir.py`` re-initialises a freshly built model (``lir_reinit``);
``tvr.py`` is a ``(params, step) -> params`` transform for the jitted train
step (``tvr``, ``tvr_with_stats``, ``make_tvr_post_step``). Both are exported
from the top-level ``optim_lab`` namespace.
"""
