"""When a trial's deploy counts as settled, shared by the real deploy (tuner.deploy) and the
simulator's start (tuner.sim.run), which must agree on it.

The deploy waits until every deployment runs exactly its starting replicas and has stayed so for
`STABLE_S`, polling Serve every `POLL_S`. Serve's controller took the trial's config (its
autoscaler state fresh) at the start of that wait, so when the first request comes the
controller has counted about `LEAD_S` towards its upscale and downscale delays. The simulator's
controller starts that early: with the shipped LoRA model's 60 s downscale delay, a start at
the prime instead put its scale-down 2.5 s later than Serve's, on the other side of a burst
(BENCHMARKS.md, "Simulator fidelity").
"""

STABLE_S = 2.0
POLL_S = 0.5
LEAD_S = STABLE_S + POLL_S
