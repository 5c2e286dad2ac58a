"""optim_lab: optax-compatible optimizers, losses, schedules and probes.

Everything public is re-exported here, flat, and listed in ``__all__``.
"""

from optim_lab.dynamics.alignment import grad_weight_cosine as grad_weight_cosine
from optim_lab.dynamics.collapse import softmax_collapse_frac as softmax_collapse_frac
from optim_lab.dynamics.collapse import zero_loss_frac as zero_loss_frac
from optim_lab.dynamics.norms import effective_step as effective_step
from optim_lab.dynamics.norms import tree_norms as tree_norms
from optim_lab.losses.softmax import softmax_cross_entropy as softmax_cross_entropy
from optim_lab.losses.stablemax import log_stablemax as log_stablemax
from optim_lab.losses.stablemax import stablemax as stablemax
from optim_lab.losses.stablemax import stablemax_cross_entropy as stablemax_cross_entropy
from optim_lab.optimizers.adamp import AdamPDims as AdamPDims
from optim_lab.optimizers.adamp import adamp as adamp
from optim_lab.optimizers.adamp import scale_by_adamp as scale_by_adamp
from optim_lab.optimizers.adamp import scale_by_sgdp as scale_by_sgdp
from optim_lab.optimizers.adamp import sgdp as sgdp
from optim_lab.optimizers.fadam import fadam as fadam
from optim_lab.optimizers.fadam import scale_by_fadam as scale_by_fadam
from optim_lab.optimizers.perpgrad import orthograd as orthograd
from optim_lab.optimizers.polyak import alr_hb as alr_hb
from optim_lab.optimizers.polyak import alr_smag as alr_smag
from optim_lab.optimizers.state_dtype import with_state_dtype as with_state_dtype
from optim_lab.rescaling.lir import lir_reinit as lir_reinit
from optim_lab.rescaling.tvr import make_tvr_post_step as make_tvr_post_step
from optim_lab.rescaling.tvr import tvr as tvr
from optim_lab.rescaling.tvr import tvr_with_stats as tvr_with_stats
from optim_lab.schedules.decay import cosine_decay as cosine_decay
from optim_lab.schedules.decay import from_table as from_table
from optim_lab.schedules.decay import linear_decay as linear_decay
from optim_lab.schedules.decay import wsd as wsd
from optim_lab.schedules.norm_log import load_grad_norms as load_grad_norms
from optim_lab.schedules.norm_log import log_grad_norm as log_grad_norm
from optim_lab.schedules.norm_log import write_grad_norm_csv as write_grad_norm_csv
from optim_lab.schedules.refined import LatePeakWarning as LatePeakWarning
from optim_lab.schedules.refined import refine_schedule as refine_schedule
from optim_lab.schedules.refined import refined_from_run as refined_from_run

__version__ = "0.1.0"

__all__ = [
    "AdamPDims",
    "LatePeakWarning",
    "adamp",
    "alr_hb",
    "alr_smag",
    "cosine_decay",
    "effective_step",
    "fadam",
    "from_table",
    "grad_weight_cosine",
    "lir_reinit",
    "linear_decay",
    "load_grad_norms",
    "log_grad_norm",
    "log_stablemax",
    "make_tvr_post_step",
    "orthograd",
    "refine_schedule",
    "refined_from_run",
    "scale_by_adamp",
    "scale_by_fadam",
    "scale_by_sgdp",
    "sgdp",
    "softmax_collapse_frac",
    "softmax_cross_entropy",
    "stablemax",
    "stablemax_cross_entropy",
    "tree_norms",
    "tvr",
    "tvr_with_stats",
    "with_state_dtype",
    "write_grad_norm_csv",
    "wsd",
    "zero_loss_frac",
]
