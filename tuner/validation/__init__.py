"""Checks of the simulator's models against the real systems they stand for.

`tuner.validate` (the `tuner validate` command) compares whole trials, real against simulated;
`ray_autoscaler` compares the simulator's Ray autoscaler with the real one on Ray's fake
multi-node cluster.
"""
