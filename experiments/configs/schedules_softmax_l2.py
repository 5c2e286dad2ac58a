"""Softmax regression on digits with L2 regularisation (SGD, coupled wd 1e-3).

Digits are linearly separable, so unregularised softmax regression drives
the loss (and the gradient norms) towards 0: the refinement degenerates. The
L2 term gives the objective a positive floor and a gradient-noise plateau,
the convex stochastic regime the refinement theory is about.
"""

from experiments.configs import schedules_softmax


def get_config():
    c = schedules_softmax.get_config()
    c.optimizer.weight_decay = 1e-3
    return c
