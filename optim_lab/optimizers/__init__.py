"""optax GradientTransformations, one algorithm per module."""
