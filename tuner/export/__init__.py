"""`tuner export`: manifests from a tuned configuration, and their offline checks."""
