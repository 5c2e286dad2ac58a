"""Learning-rate schedules usable as optax schedules and from configs."""
