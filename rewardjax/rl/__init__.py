"""Online KL-constrained RL, pure (layer 1): advantages, policy losses, loss aggregation, KL
placement and controllers, constrained multi-reward Lagrangians, group filtering and overlong
shaping. Arrays in, arrays out: no models, no data, no train."""
