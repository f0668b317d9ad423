"""The simulator's emulated stages: the card the LoRA model holds, batched stages' tables, and
what an emulated replica costs."""

import pytest

from target_app.compute import ServiceTimeTable, table_rows
from target_app.user_config import RAGConfig
from tuner.calibration_file import accelerator_tables, load_calibration
from tuner.cost import Prices, deployment_resources, hourly
from tuner.deploy import load_serve_config
from tuner.paths import SERVE_CONFIG
from tuner.sim.app import SimApp
from tuner.sim.calibration import StageTiming
from tuner.sim.cluster import ClusterSpec
from tuner.sim.emulated import EmulatedLoRA, SimCard, emulated_stage
from tuner.sim.engine import Engine

LORA = EmulatedLoRA(prefill=ServiceTimeTable([(1, 30.0)]), decode=ServiceTimeTable([(1, 20.0), (8, 27.0)]),
                    load_ms=160.0)


def finished(card_calls) -> dict[str, float]:
    e = Engine()
    card, done = SimCard(e, LORA), {}
    for name, at, miss in card_calls:
        def go(_, name=name, miss=miss):
            def gen():
                card.generate(10, 8, lambda: done.setdefault(name, e.now))
            if miss:
                card.load(gen)
            else:
                gen()
        e.at(at, go)
    e.run()
    return done


def test_one_sequence_is_its_prefill_and_a_decode_step_per_further_token():
    assert finished([("a", 0.0, False)])["a"] == pytest.approx(0.030 + 7 * 0.020)
    assert finished([("a", 0.0, True)])["a"] == pytest.approx(0.160 + 0.030 + 7 * 0.020)


def test_concurrent_sequences_share_decode_steps():
    done = finished([(str(i), 0.0, False) for i in range(8)])
    one = 0.030 + 7 * 0.020
    assert max(done.values()) < 3 * one  # eight sequences, far less than eight times one


def test_an_adapter_load_holds_the_card_for_everyone_on_it():
    alone = finished([("a", 0.0, False)])["a"]
    behind = finished([("a", 0.0, False), ("b", 0.05, True)])["a"]
    assert behind >= alone + 0.160 - 0.021  # a's steps wait while b's adapter loads


def test_a_batched_stage_takes_its_accelerator_tables_points_off_the_host():
    cfg = {"applications": [{"name": "a", "deployments": [{"name": "Reranker", "user_config": {"compute": {
        "mode": "emulated", "accelerator": "l4", "stage": "bge-reranker-large-seq256"}}}]}]}
    t = emulated_stage(accelerator_tables(cfg)["Reranker"], StageTiming(start_s=7.0), largest_batch=80)
    assert not t.cpu_bound and t.start_s == 7.0 and t.service_ms[0][0] == 1
    assert t.mean_ms(80) == pytest.approx(ServiceTimeTable([(64, 115.0), (160, 285.98)]).milliseconds(80), rel=0.01)
    local = {"applications": [{"name": "a", "deployments": [{"name": "Reranker", "user_config": {"compute": {
        "mode": "local"}}}]}]}
    assert accelerator_tables(local) == {}
    assert emulated_stage(accelerator_tables(local).get("Reranker"), StageTiming(), 8) is None


def test_a_stage_on_a_share_of_a_card_takes_the_apps_own_time_at_every_batch_size():
    """The simulator interpolates between whole batch sizes; on a share the table's breakpoints
    fall between them, so the sizes around each are kept and every size matches the app's."""
    cfg = {"applications": [{"name": "a", "deployments": [{"name": "Reranker", "user_config": {"compute": {
        "mode": "emulated", "accelerator": "l4", "stage": "bge-reranker-large-seq256", "devices": 0.3}}}]}]}
    table = accelerator_tables(cfg)["Reranker"][""]
    t = emulated_stage({"": table}, StageTiming(), largest_batch=16)
    for b in range(1, 17):
        assert t.mean_ms(b) == pytest.approx(table.milliseconds(b)), b
    assert t.mean_ms(6) == pytest.approx(41.367)  # the whole card's batch of 20 (6 / 0.3)


def test_an_emulated_replica_costs_the_card_it_stands_for():
    cfg = {"applications": [{"name": "a", "deployments": [
        {"name": "x", "ray_actor_options": {"num_cpus": 0.25},
         "user_config": {"compute": {"mode": "emulated", "accelerator": "l4", "stage": "s", "devices": 2}}},
        {"name": "y", "ray_actor_options": {"num_cpus": 0.25},
         "user_config": {"compute": {"mode": "emulated", "table": [[1, 1.0]]}}},
        {"name": "w", "ray_actor_options": {"num_cpus": 0.25},
         "user_config": {"compute": {"mode": "emulated", "accelerator": "l4", "stage": "s", "devices": 0.25}}},
        {"name": "z", "ray_actor_options": {"num_cpus": 0.25}, "user_config": {"compute": {"mode": "local"}}}]}]}
    prices = Prices(cpu_hour=0.04, gpu_hour=3.0, memory_gib_hour=0.0, accelerator_hour={"l4": 0.8})
    r = deployment_resources(cfg)
    assert hourly(r["a/x"], prices) == pytest.approx(0.01 + 2 * 0.8)
    assert hourly(r["a/y"], prices) == pytest.approx(0.01 + 3.0)  # an unpriced class costs a GPU-hour
    assert hourly(r["a/z"], prices) == pytest.approx(0.01)
    assert hourly(r["a/w"], prices) == pytest.approx(0.01 + 0.25 * 0.8)  # a share of a card, its share of the price


def test_a_rerank_batch_holds_the_card_for_every_candidate_of_its_requests():
    """The app's emulated reranker holds its card for the table's time of all the pairs in the
    batch (each request's search_top_k candidates), so the simulator's batch of b requests takes
    the table's time at b x top_k, at every batch size."""
    table = ServiceTimeTable(table_rows("l4", "bge-reranker-large-seq256", None, "median_ms"))
    t = emulated_stage({"": table}, StageTiming(), largest_batch=8, items=20)
    for b in range(1, 9):
        assert t.mean_ms(b) == pytest.approx(table.milliseconds(20 * b)), b

    shipped = load_serve_config(SERVE_CONFIG)
    rag = next(d for a in shipped["applications"] for d in a["deployments"] if d["name"] == "RAGService")

    def rerank_ms(top_k):
        rag["user_config"].pop("search_top_k", None)
        if top_k is not None:
            rag["user_config"]["search_top_k"] = top_k
        app = SimApp(shipped, load_calibration(), ClusterSpec(), seed=0, start=0.0, until=1.0,
                     tables=accelerator_tables(shipped))
        return app._timings["Reranker"].mean_ms(1)

    assert rerank_ms(10) == pytest.approx(table.milliseconds(10))
    assert rerank_ms(None) == pytest.approx(table.milliseconds(RAGConfig().search_top_k))  # the app's default
