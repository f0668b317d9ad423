"""The autoscaling controllers as pure, clock-injected decisions: plain data in, plain data
out. The simulator, the tuner and the tests call the same functions."""
