"""Ray Serve's defaults for the settings a Serve config may leave out, in one place.

Read from ray-project/ray@ray-2.60.0 (commit b7f4259e944bf6959f721b106adc366ddfa0c356, the
installed Ray):
- python/ray/serve/config.py: `AutoscalingConfig`'s field defaults, `DEFAULT_METRICS_INTERVAL_S`,
  and `AutoscalingConfig.default()`, the config `num_replicas: "auto"` starts from;
- python/ray/serve/_private/constants.py: `DEFAULT_MAX_ONGOING_REQUESTS`,
  `DEFAULT_TARGET_ONGOING_REQUESTS`;
- python/ray/serve/_private/config.py: `DeploymentConfig`'s num_replicas and max_queued_requests,
  and the num_cpus `ReplicaConfig` gives a replica whose ray_actor_options set none;
- python/ray/serve/batching.py (`@serve.batch`) and python/ray/serve/api.py (`@serve.multiplexed`).
"""

from __future__ import annotations

from target_app.compute import ComputeConfig

MAX_ONGOING_REQUESTS = 5
MAX_QUEUED_REQUESTS = -1  # no limit
NUM_REPLICAS = 1
NUM_CPUS = 1.0

MIN_REPLICAS = 1
MAX_REPLICAS = 1
TARGET_ONGOING_REQUESTS = 2.0
METRICS_INTERVAL_S = 10.0
LOOK_BACK_PERIOD_S = 30.0
SMOOTHING_FACTOR = 1.0
UPSCALE_DELAY_S = 30.0
DOWNSCALE_DELAY_S = 600.0
# `num_replicas: "auto"`: these, under whatever the deployment's autoscaling_config sets.
AUTO_AUTOSCALING = {"min_replicas": 1, "max_replicas": 100, "target_ongoing_requests": TARGET_ONGOING_REQUESTS}

MAX_BATCH_SIZE = 10
BATCH_WAIT_TIMEOUT_S = 0.01
MAX_MODELS_PER_REPLICA = 3

# The value Serve runs each field at when a config leaves it out, an optional autoscaling field
# as Serve resolves it (initial_replicas to min_replicas, downscale_to_zero_delay_s to
# downscale_delay_s, the scaling factors to smoothing_factor).
EFFECTIVE = {
    "min_replicas": MIN_REPLICAS, "max_replicas": MAX_REPLICAS, "initial_replicas": MIN_REPLICAS,
    "target_ongoing_requests": TARGET_ONGOING_REQUESTS, "upscale_delay_s": UPSCALE_DELAY_S,
    "downscale_delay_s": DOWNSCALE_DELAY_S, "downscale_to_zero_delay_s": DOWNSCALE_DELAY_S,
    "upscaling_factor": SMOOTHING_FACTOR, "downscaling_factor": SMOOTHING_FACTOR,
    "look_back_period_s": LOOK_BACK_PERIOD_S, "max_ongoing_requests": MAX_ONGOING_REQUESTS,
    "max_queued_requests": MAX_QUEUED_REQUESTS, "num_replicas": NUM_REPLICAS, "max_batch_size": MAX_BATCH_SIZE,
    "batch_wait_timeout_s": BATCH_WAIT_TIMEOUT_S, "max_models_per_replica": MAX_MODELS_PER_REPLICA,
    "num_cpus": NUM_CPUS,
    # not Serve's: the emulated accelerator a replica owns (a GPU replica asks Ray for one card)
    "devices": ComputeConfig.model_fields["devices"].default,
}
