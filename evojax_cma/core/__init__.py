"""Interface types, fitness shaping, termination criteria and shared numerics."""
