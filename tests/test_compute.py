import asyncio
import time

import numpy as np
import pytest
from pydantic import ValidationError

from target_app.compute import ComputeConfig, ServiceTimeTable, packaged_accelerators, table_rows
from target_app.emulated import (
    DecodeEngine,
    EmulatedDevice,
    EntityVectors,
    standin_completion,
    standin_index,
    standin_label,
    standin_vector,
)
from target_app.user_config import LORA_TABLES, check_deployment, compute_tables


def test_interpolates_between_points_and_extends_last_slope():
    p = ServiceTimeTable([(1, 10.0), (5, 20.0), (9, 40.0)])
    assert p.milliseconds(1) == 10.0
    assert p.milliseconds(3) == pytest.approx(15.0)
    assert p.milliseconds(5) == 20.0
    assert p.milliseconds(7) == pytest.approx(30.0)
    assert p.milliseconds(13) == pytest.approx(60.0)  # slope 5 ms/item continues
    assert p.milliseconds(0) == 10.0


def test_single_point_table_is_flat_and_refuses_larger_batches():
    t = ServiceTimeTable([(4, 7.5)])
    assert t.milliseconds(2) == 7.5
    t.check_batch(4)
    with pytest.raises(ValueError, match="no slope"):
        t.check_batch(5)
    ServiceTimeTable([(1, 1.0), (4, 7.5)]).check_batch(1000)  # two points extrapolate


def test_packaged_accelerators_include_h100_and_a_smaller_class():
    assert {"h100", "l4"} <= set(packaged_accelerators())


def test_h100_rows_load_by_name():
    rows = table_rows("h100", "bge-reranker-large-seq256", None, "median_ms")
    assert (20, 13.211) in rows
    t = ServiceTimeTable.from_config(ComputeConfig(mode="emulated", accelerator="h100", stage="bge-reranker-large-seq256"))
    assert 13.0 < t.milliseconds(20) < 14.0
    assert t.milliseconds(64) == pytest.approx(24.903)


def test_l4_is_slower_than_h100_for_every_stage():
    for stage in ("bge-reranker-large-seq256", "bert-base-cls-seq128", "llama-3.1-8b-lora-decode"):
        h, l4 = (ServiceTimeTable(table_rows(a, stage, None, "median_ms")) for a in ("h100", "l4"))
        for b in h.batches:
            assert l4.milliseconds(b) >= h.milliseconds(b), (stage, b)


def test_stage_with_two_dtypes_needs_dtype():
    with pytest.raises(ValueError, match="set compute.dtype"):
        table_rows("h100", "minilm-l6-embed-seq64", None, "median_ms")
    assert table_rows("h100", "minilm-l6-embed-seq64", "float16", "p90_ms")


@pytest.mark.parametrize("bad", [
    {"mode": "emulated"},
    {"mode": "emulated", "accelerator": "h100"},
    {"mode": "emulated", "table": []},
    {"mode": "emulated", "table": [[0, 1.0]]},
    {"mode": "emulated", "table": [[1, -2.0]]},
    {"mode": "emulated", "table": [[1, float("inf")]]},
    {"mode": "emulated", "table": [[1, 1.0]], "devices": 0},
    {"mode": "emulated", "table": [[1, 1.0]], "devices": 0.1},
    {"mode": "emulated", "table": [[1, 1.0]], "devices": 1.5},
    {"mode": "gpu"},
    {"mode": "profile", "table": [[1, 1.0]]},
    {"mode": "local", "unknown": 1},
])
def test_invalid_compute_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        ComputeConfig.model_validate(bad)


def test_unknown_accelerator_or_stage_names_the_choices():
    with pytest.raises(ValueError, match="compute.accelerator 'tpu'.*packaged: .*h100"):
        table_rows("tpu", "x", None, "median_ms")
    with pytest.raises(ValueError, match="compute.stage 'no-such-stage'.*it has"):
        table_rows("h100", "no-such-stage", None, "median_ms")


@pytest.mark.parametrize("name,deployment,field", [
    ("Reranker", {"user_config": {"compute": {"mode": "emulated", "accelerator": "a100", "stage": "x"}}},
     "compute.accelerator"),
    ("Reranker", {"user_config": {"compute": {"mode": "emulated", "accelerator": "h100", "stage": "nope"}}},
     "compute.stage"),
    ("QueryRewriter", {"user_config": {"compute": {"mode": "emulated", "accelerator": "h100",
                                                   "stage": "minilm-l6-embed-seq64", "dtype": "int4"}}},
     "compute.stage"),
    ("Reranker", {"user_config": {"batch": {"max_batch_size": 8},
                                  "compute": {"mode": "emulated", "table": [[4, 10.0]]}}},
     "batch.max_batch_size"),
    ("MultiLoRAModel", {"max_ongoing_requests": 64, "user_config": {"compute": {
        "mode": "emulated", "accelerator": "h100", "stage": "no-such-model"}}}, "compute.stage"),
])
def test_check_deployment_names_the_bad_compute_field(name, deployment, field):
    with pytest.raises(ValueError, match=field):
        check_deployment(name, deployment)


def test_check_deployment_refuses_an_inline_table_for_the_lora_model():
    with pytest.raises(ValidationError, match="compute.table"):
        check_deployment("MultiLoRAModel", {"user_config": {"compute": {"mode": "emulated", "table": [[1, 1.0]]}}})


def test_lora_stage_has_all_its_tables():
    cfg = ComputeConfig(mode="emulated", accelerator="l4", stage="llama-3.1-8b-lora")
    tables = compute_tables(cfg, LORA_TABLES)
    assert set(tables) == set(LORA_TABLES)
    assert tables["-decode"].milliseconds(16) >= tables["-decode"].milliseconds(1)


def test_label_says_which_mode_answered():
    assert ComputeConfig().label == "local"
    assert ComputeConfig(mode="emulated", accelerator="l4", stage="s").label == "emulated:l4"
    assert ComputeConfig(mode="emulated", table=[[1, 1.0]]).label == "emulated:table"


def test_device_queues_batches_in_order_and_counts_busy_time():
    async def main():
        dev = EmulatedDevice(1)
        t0, ends = time.perf_counter(), []

        async def batch(i):
            await dev.run(50)
            ends.append((i, time.perf_counter() - t0))

        await asyncio.gather(*(batch(i) for i in range(3)))
        return dev, ends

    dev, ends = asyncio.run(main())
    assert [i for i, _ in ends] == [0, 1, 2]
    assert ends[-1][1] >= 0.15  # three batches of 50 ms one after another on one device
    assert dev.busy_s == pytest.approx(0.15)


def test_two_devices_run_two_batches_at_once():
    """A batch adds its time to `busy_s` as it takes a device: once both batches have started,
    two devices hold both, one device only the first (the second waits for it)."""
    async def main(count):
        dev = EmulatedDevice(count)
        tasks = [asyncio.create_task(dev.run(80)) for _ in range(2)]
        await asyncio.sleep(0)  # each task runs to its first wait
        holding = dev.busy_s
        await asyncio.gather(*tasks)
        return holding, dev.busy_s

    assert asyncio.run(main(2)) == pytest.approx((0.16, 0.16))
    assert asyncio.run(main(1)) == pytest.approx((0.08, 0.16))


def test_decode_engine_batches_concurrent_sequences():
    """Device time, not wall time (which a busy host stretches): eight sequences share each
    decode step, so they hold the device far less than eight times one sequence does."""
    prefill, decode = ServiceTimeTable([(1, 5.0)]), ServiceTimeTable([(1, 10.0), (8, 12.0)])

    async def run(n):
        engine = DecodeEngine(EmulatedDevice(1), prefill, decode)
        t0 = time.perf_counter()
        await asyncio.gather(*(engine.generate(10, 11) for _ in range(n)))
        return time.perf_counter() - t0, engine.device.busy_s, engine.num_running

    one_s, one, left = asyncio.run(run(1))
    _, eight, _ = asyncio.run(run(8))
    assert left == 0
    assert one == pytest.approx(0.005 + 10 * 0.010) and one_s >= one  # a prefill, then ten steps
    assert eight < 3 * one


def test_decode_engine_drops_a_cancelled_sequence():
    async def main():
        engine = DecodeEngine(EmulatedDevice(1), ServiceTimeTable([(1, 1.0)]), ServiceTimeTable([(1, 20.0)]))
        task = asyncio.create_task(engine.generate(1, 100))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.03)
        return engine.num_running

    assert asyncio.run(main()) == 0


def test_standins_are_deterministic():
    v = standin_vector("hello")
    assert v == standin_vector("hello") and v != standin_vector("hello!")
    assert abs(sum(x * x for x in v) - 1.0) < 1e-5
    assert standin_index("abc", 4) == standin_index("abc", 4) < 4
    text = standin_completion("Summarise the contract", "lora-03", 5)
    assert len(text.split()) == 5 and text == standin_completion("Summarise the contract", "lora-03", 5)


def test_standin_label_is_the_label_whose_keywords_the_text_names():
    from target_app.models.build import DOMAIN_LABELS

    assert standin_label("merchant refund on a card payment", DOMAIN_LABELS["finance"]) == "payments"
    assert standin_label("the defendant faces a fraud charge", DOMAIN_LABELS["legal"]) == "criminal"
    assert standin_label("nothing known", DOMAIN_LABELS["medical"]) in DOMAIN_LABELS["medical"]


def test_entity_vectors_return_the_named_passages_vector():
    vectors = np.eye(3, dtype="float32")
    ev = EntityVectors({"Vorhalzan": 1, "Kelmora": 2}, vectors)
    assert ev.vector("When was Vorhalzan introduced?") == vectors[1].tolist()
    assert ev.vector("no entity here") == standin_vector("no entity here")


def test_a_share_of_a_card_does_a_batch_in_the_time_the_card_takes_for_the_batch_over_the_share():
    """An SM partition: launch-bound batches (the flat start) slow little, saturating ones by
    1 / share; the whole card is the table itself."""
    whole = ServiceTimeTable([(1, 4.0), (16, 5.0), (64, 17.0)])
    quarter = whole.on_share(0.25)
    assert quarter.milliseconds(1) == pytest.approx(whole.milliseconds(4))
    assert quarter.milliseconds(4) == pytest.approx(5.0)
    assert quarter.milliseconds(16) == pytest.approx(17.0)
    assert quarter.milliseconds(32) == pytest.approx(whole.milliseconds(128)) == pytest.approx(33.0)  # the slope goes on
    assert whole.on_share(1.0) is whole
    cfg = ComputeConfig(mode="emulated", table=[[1, 4.0], [16, 5.0], [64, 17.0]], devices=0.25)
    assert (cfg.cards, cfg.share) == (1, 0.25)
    assert compute_tables(cfg)[""].milliseconds(16) == pytest.approx(17.0)  # what the replica holds its device for
    assert (ComputeConfig(devices=2).cards, ComputeConfig(devices=2).share) == (2, 1.0)


def test_the_lora_model_refuses_a_share_of_a_card():
    with pytest.raises(ValueError, match="compute.devices 0.5: the LoRA model needs whole cards"):
        check_deployment("MultiLoRAModel", {"user_config": {"compute": {
            "mode": "emulated", "accelerator": "l4", "stage": "llama-3.2-1b-lora", "devices": 0.5}}})
