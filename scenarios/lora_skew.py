"""LoRA skew: multi-LoRA completions only, adapters drawn from Zipf(--zipf) over the app's adapters,
with the popular set moving every --shift-every seconds.

`locust -f scenarios/lora_skew.py --headless -t 120s --rate 2 --zipf 1.2 --shift-every 30`
"""

from loadgen.openloop import OpenLoopShape, OpenLoopUser  # noqa: F401 - Locust finds the user and shape here
from loadgen.scenario import option, scenario
from loadgen.shapes import Steady


@scenario(
    option("--shift-every", type=float, default=30.0, help="seconds between shifts of the popular adapters (0: never)"),
    defaults={"mix": "lora=1", "zipf": 1.1},
)
def traffic(opts, seconds):
    return Steady(rps=opts.rate, seconds=seconds)
