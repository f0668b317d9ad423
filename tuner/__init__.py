"""rayserve-tuner: load-test and tune Ray Serve autoscaling."""

from __future__ import annotations


def project_version() -> str:
    """This project's version as installed (reports and manifests name it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rayserve-tuner")
    except PackageNotFoundError:
        return "dev"
