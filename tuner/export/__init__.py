"""`tuner export` (issue 06): manifests from a tuned configuration, and their offline checks."""
