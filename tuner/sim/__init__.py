"""The simulator: a discrete-event model of the Serve app and both autoscaling layers (pure)."""
