"""Bad input: every parser of user input takes anything to a valid object or to one usage error
with a one-line message (never another exception), each reaches the CLI as exit 2 with one line
on stderr and no traceback, and an --out folder that holds files is refused unless --force."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import re
import socket
import subprocess
import sys
from argparse import Namespace
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loadgen import options
from loadgen.mix import parse_weights
from loadgen.traces import MAX_TOKENS, TraceError, load_trace
from tuner.bench import Suite, load_suite
from tuner.calibration_file import load_calibration
from tuner.cost import Prices
from tuner.deploy import load_serve_config
from tuner.errors import UsageError, first_problem
from tuner.export.settings import ExportSettings
from tuner.optimize.space import Space, load_space
from tuner.optimize.study import open_storage
from tuner.prices_file import load_prices
from tuner.sim.calibration import Calibration
from tuner.simulate import load_cluster
from tuner.target import Target, TargetError, parse_target

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = yaml.safe_load((ROOT / "target_app" / "serve_config.yaml").read_text())
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def one_line(e: Exception) -> str:
    msg = str(e)
    assert msg and len(msg.splitlines()) == 1 and "Traceback" not in msg, repr(msg)
    return msg


def usage_error(e: Exception) -> str:
    assert isinstance(e, UsageError) and e.exit_code == 2, repr(e)
    return one_line(e)


def tuner(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tuner.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def refused(r: subprocess.CompletedProcess) -> str:
    """The one line of a usage error on stderr (exit 2, no traceback)."""
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 1, (r.returncode, r.stderr[-2000:])
    return lines[0]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A folder the properties write their generated files to (function-scoped tmp_path and
    hypothesis do not mix)."""
    return tmp_path_factory.mktemp("bad-input")


# ---- what the properties generate

LEAF = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(), st.text(max_size=10))
VALUE = st.recursive(LEAF, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                     max_leaves=8)


@st.composite
def mutated(draw, base):
    """`base` with one to three values, anywhere in it, replaced by arbitrary YAML values."""
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], (dict, list)) and node[key] and draw(st.booleans()):
                node = node[key]
                continue
            node[key] = draw(VALUE)
            break
    return doc


def dump(value) -> bytes:
    return yaml.safe_dump(value, allow_unicode=True).encode()


def yaml_file(base) -> st.SearchStrategy[bytes]:
    """The bytes of a YAML file: random bytes, random text, any YAML document, or `base` mutated."""
    return st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode), VALUE.map(dump),
                     mutated(base).map(dump))


def written(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def loads_or_refuses(load, *args):
    """What `load(*args)` returns, or None after checking its refusal is one usage error of one line."""
    try:
        return load(*args)
    except UsageError as e:
        usage_error(e)
        return None


# ---- 1. the target grammar (fuzzed in tests/test_target.py; the gap: numbers too long for a float)

@FUZZ
@given(st.text("0123456789", min_size=1, max_size=400), st.sampled_from(["p99<{}ms", "throughput>{}rps", "itl_p50<={}s"]))
def test_any_bound_parses_to_a_finite_threshold_or_one_line_target_error(digits, form):
    try:
        target = parse_target(form.format(digits))
    except TargetError as e:
        assert re.search(r"(too large|above 0).* at column \d+$", usage_error(e)), str(e)
    else:
        assert isinstance(target, Target) and math.isfinite(target.clauses[0].threshold) and target.clauses[0].threshold > 0


# ---- 2. the Serve config (tuner/deploy.py)

@FUZZ
@given(yaml_file(SHIPPED))
def test_any_serve_config_file_loads_valid_or_is_one_usage_error(scratch, data):
    from ray.serve.schema import ServeDeploySchema

    raw = loads_or_refuses(load_serve_config, written(scratch, "serve.yaml", data))
    if raw is not None:
        ServeDeploySchema.model_validate(raw)


def _serve_config(edit) -> bytes:
    cfg = copy.deepcopy(SHIPPED)
    edit(cfg)
    return dump(cfg)


def _deployment(cfg: dict, name: str) -> dict:
    return next(d for a in cfg["applications"] for d in a["deployments"] if d["name"] == name)


@pytest.mark.parametrize("data, message", [
    (b"applications: [\n", "serve.yaml: not YAML at line 2: expected the node content, but found '<stream end>'"),
    (b"\xff\xfe\x00garbage\x80", "serve.yaml: not UTF-8 text"),
    (b"a: " + b"[" * 5000, "serve.yaml: not YAML: nested too deeply"),
    (b"- rag\n- router\n", "serve.yaml: must be a mapping with 'applications'"),
    (b"", "serve.yaml: must be a mapping with 'applications'"),
    (_serve_config(lambda c: _deployment(c, "Reranker").update(name="Rerankr")),
     "applications.0.deployments.3.name: 'Rerankr' is not a deployment of target_app.app:rag_app (it has LLMGenerator, "
     "QueryRewriter, RAGService, Reranker, VectorSearch)"),
    (_serve_config(lambda c: _deployment(c, "Reranker")["autoscaling_config"].update(min_replicas=4, max_replicas=2)),
     "rag/Reranker.autoscaling_config: max_replicas (2) must be greater than or equal to min_replicas (4)"),
    (_serve_config(lambda c: _deployment(c, "VectorSearch").update(max_ongoing_requests=-1)),
     "applications.0.deployments.2.max_ongoing_requests: Input should be greater than 0"),
    (_serve_config(lambda c: c["applications"][0].update(deployments=[7])),
     "applications.0.deployments.0: must be a mapping with a name (got int)"),
    (_serve_config(lambda c: c.update(logging_config={"a\nb": 1})), "logging_config.'a\\nb': unknown field"),
    (_serve_config(lambda c: _deployment(c, "VectorSearch").update(max_ongoing_request=32)),
     "applications.0.deployments.2.max_ongoing_request: unknown field; did you mean max_ongoing_requests?"),
    (_serve_config(lambda c: _deployment(c, "Reranker")["autoscaling_config"].update(min_replica=1)),
     "applications.0.deployments.3.autoscaling_config.min_replica: unknown field; did you mean min_replicas?"),
    (_serve_config(lambda c: _deployment(c, "Reranker")["ray_actor_options"].update(num_cpu=1)),
     "applications.0.deployments.3.ray_actor_options.num_cpu: unknown field; did you mean num_cpus?"),
    (_serve_config(lambda c: c["http_options"].update(hots="127.0.0.1")), "http_options.hots: unknown field; did you mean host?"),
    (_serve_config(lambda c: c["applications"][1].update(rout_prefix="/x")),
     "applications.1.rout_prefix: unknown field; did you mean route_prefix?"),
    (dump({"applications": [{"name": "a\nb", "import_path": "m:app", "route_prefix": "/x", "deployments": [
        {"name": "D", "autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}]}]}),
     "'a\\nb/D'.autoscaling_config: max_replicas (1) must be"),
])
def test_bad_serve_configs_name_the_field(tmp_path, data, message):
    with pytest.raises(UsageError) as info:
        load_serve_config(written(tmp_path, "serve.yaml", data))
    assert message in usage_error(info.value)


@pytest.mark.parametrize("user_config, message", [
    ({"batch": {"max_batch_size": 0}}, "rag/QueryRewriter: max_batch_size: Input should be greater than 0"),
    ({"batch": {"max_batch_size": None}}, "rag/QueryRewriter: user_config: int() argument must be"),
    ({"batch": [4]}, "rag/QueryRewriter: user_config: batch must be a mapping (got list)"),
])
def test_the_simulator_names_the_deployment_whose_user_config_it_cannot_take(user_config, message):
    from tuner.sim.app import deployments_from_config

    cfg = copy.deepcopy(SHIPPED)
    _deployment(cfg, "QueryRewriter")["user_config"] = user_config
    with pytest.raises(ValueError) as info:  # Serve's schema keeps user_config a free-form dict
        deployments_from_config(cfg)
    assert message in one_line(info.value)


# ---- 3. the search space (tuner/optimize/space.py)

SPACE = yaml.safe_load((ROOT / "tuner" / "data" / "search_space.yaml").read_text())


@FUZZ
@given(yaml_file(SPACE))
def test_any_space_file_loads_valid_or_is_one_usage_error(scratch, data):
    space = loads_or_refuses(load_space, written(scratch, "space.yaml", data), SHIPPED)
    if space is not None:
        assert isinstance(space, Space) and space.names()
        for key in space.names():
            p = space.param(key)
            assert p.choices if p.type == "categorical" else math.isfinite(p.low) and math.isfinite(p.high) and p.low <= p.high


@pytest.mark.parametrize("text, message", [
    ("serve: {Reranker: {max_replicas: {type: int, low: 1, high: .inf}}}", "serve.Reranker.max_replicas.high: Input should "
                                                                           "be a finite number"),
    ("serve: {Reranker: {num_cpus: {type: categorical, choices: [[1, 2]]}}}", "choices must be numbers, strings, booleans "
                                                                              "or null (got [1, 2])"),
    ("serve: {Rerankr: {max_replicas: {type: int, low: 1, high: 3}}}", "serve.Rerankr: no such deployment"),
    ("serve: {Reranker: {max_replicas: {type: int, low: 4, high: 2}}}", "low (4) must be <= high (2)"),
])
def test_bad_spaces_name_the_field(tmp_path, text, message):
    with pytest.raises(UsageError) as info:
        load_space(written(tmp_path, "space.yaml", text.encode()), SHIPPED)
    assert message in usage_error(info.value)


# ---- 4. trace files (loadgen/traces.py)

TRACE_COLUMNS = ["time_s", "timestamp", "TIMESTAMP", "prompt_tokens", "output_tokens", "input_length", "ContextTokens"]
CELL = st.one_of(st.integers(-10**6, 10**12).map(str), st.floats().map(repr), st.sampled_from(["", "nan", "inf", "-1",
                 "1.5", "soon", "2023-11-16 18:00:00", "2023-11-16 18:00:00+05:00", "1e400"]), st.text(max_size=6))


@st.composite
def trace_file(draw) -> tuple[str, bytes]:
    """(name, bytes): a table of trace-like columns as CSV or JSON lines, or random bytes or text."""
    suffix = draw(st.sampled_from([".csv", ".jsonl", ".json"]))
    kind = draw(st.sampled_from(["table", "bytes", "text"]))
    if kind == "bytes":
        return "trace" + suffix, draw(st.binary(max_size=200))
    if kind == "text":
        return "trace" + suffix, draw(st.text(max_size=200)).encode()
    columns = draw(st.lists(st.sampled_from(TRACE_COLUMNS), min_size=1, max_size=4, unique=True))
    cell = CELL if suffix == ".csv" else st.one_of(CELL, LEAF)  # JSON also has numbers, NaN, null, booleans
    rows = draw(st.lists(st.lists(cell, min_size=len(columns), max_size=len(columns)), max_size=6))
    if suffix == ".csv":
        text = ",".join(columns) + "\n" + "".join(",".join(c.replace(",", ";") for c in row) + "\n" for row in rows)
    else:
        text = "".join(json.dumps(dict(zip(columns, row))) + "\n" for row in rows)
        text = text if suffix == ".jsonl" else "[" + text.replace("\n", ",").rstrip(",") + "]"
    return "trace" + suffix, text.encode()


@FUZZ
@given(trace_file())
def test_any_trace_file_loads_replayable_or_is_one_trace_error(scratch, file):
    path = written(scratch, *file)
    try:
        data = load_trace(path)
    except TraceError as e:
        assert isinstance(e, ValueError) and str(path) in one_line(e)
        return
    times = data.times_s
    assert times.size and times[0] == 0 and np.isfinite(times).all() and (np.diff(times) >= 0).all()
    for tokens in (data.prompt_tokens, data.output_tokens):
        assert tokens is None or (tokens.size == times.size and tokens.dtype == np.int64
                                  and ((tokens >= 0) & (tokens <= MAX_TOKENS)).all())


@pytest.mark.parametrize("name, text, message", [
    ("cols.csv", "when,prompt_tokens\n1,2\n", "no arrival-time column"),
    ("words.csv", "time_s\n1\nsoon\n", "arrival times must be numbers"),
    ("nan.jsonl", '{"timestamp": 1}\n{"timestamp": NaN}\n', "arrival times must be numbers"),
    ("empty.csv", "", "cannot read trace"),
    ("inf.csv", "time_s,prompt_tokens\n0,inf\n", "column prompt_tokens must hold non-negative whole numbers up to 1e+09"),
    ("frac.csv", "time_s,output_tokens\n0,2.5\n", "column output_tokens must hold non-negative whole numbers"),
    ("mixed.jsonl", '{"timestamp": 1}\n[1, 2]\n', "cannot read trace"),
])
def test_unusable_traces_say_why(tmp_path, name, text, message):
    with pytest.raises(TraceError) as info:
        load_trace(written(tmp_path, name, text.encode()))
    assert message in one_line(info.value) and name in str(info.value)


@pytest.mark.parametrize("text, times", [
    ("time_s\n5\n-3\n1\n", [0, 4, 8]),  # negative and unsorted: offsets from the earliest, sorted
    ("TIMESTAMP\n2023-11-16 18:00:01+01:00\n2023-11-16 18:00:00+00:00\n", [0, 3599]),  # offsets differ per row
])
def test_unsorted_negative_or_zoned_times_are_replayed_in_order(tmp_path, text, times):
    assert load_trace(written(tmp_path, "t.csv", text.encode())).times_s.tolist() == times


# ---- 5. scenario options (loadgen/options.py, loadgen/mix.py; Locust's parser runs in loadgen.check)

NUMBER = st.one_of(st.floats(), st.integers(-10**7, 10**7))


@FUZZ
@given(st.fixed_dictionaries({name: NUMBER for name in options.RANGES}))
def test_any_shared_option_values_are_in_range_or_one_value_error_naming_the_option(values):
    try:
        options.check_options(Namespace(**values))
    except ValueError as e:
        assert re.match(r"--[a-z-]+ must be ", one_line(e)), str(e)
        return
    for name, (low, low_allowed, high) in options.RANGES.items():
        v = values[name]
        assert (v >= low if low_allowed else v > low) and v <= (math.inf if high is None else high) and math.isfinite(v)


@FUZZ
@given(st.one_of(st.text(max_size=40), st.text("rag=predict,lora.0123456789-e", max_size=40)))
def test_any_mix_is_weights_or_one_value_error(text):
    try:
        weights = parse_weights(text)
    except ValueError as e:
        assert one_line(e).startswith("mix: ")
        return
    assert weights and sum(weights.values()) > 0 and all(0 <= w <= 1e6 for w in weights.values())


def test_a_shared_option_out_of_range_is_refused_by_the_scenario_check():
    r = subprocess.run([sys.executable, "-m", "loadgen.check", "scenarios/steady.py", "-t", "10s", "--request-timeout", "0"],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused(r) == "error: --request-timeout must be > 0 and <= 86400 (got 0)"


# ---- 6. URLs

def _fake_getaddrinfo(real):
    """A resolver with no DNS: numeric addresses as the real one; a name is IDNA-encoded as the
    real one does (which may raise UnicodeError), then unknown."""
    def resolve(host, port, *args, **kwargs):
        try:
            return real(host, port, 0, 0, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            host.encode("idna")
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    return resolve


URLISH = st.one_of(st.text(max_size=40), st.builds(lambda s, h, p: f"{s}{h}{p}",
                                                   st.sampled_from(["", "http://", "https://", "ftp://", "//"]),
                                                   st.text("[]:%.abc127.0.1x-", max_size=70),
                                                   st.sampled_from(["", ":8000", ":99999", ":x", "/v1"])))


@FUZZ
@given(URLISH)
def test_any_target_host_is_loopback_or_gets_one_reason(host):
    with mock.patch.object(options.socket, "getaddrinfo", _fake_getaddrinfo(socket.getaddrinfo)):
        reason = options.non_loopback_reason(host)
    assert reason is None or (reason and len(reason.splitlines()) == 1)


@FUZZ
@given(st.sampled_from(["llm_url", "milvus_uri", "redis_address"]), URLISH)
def test_any_export_endpoint_is_an_address_or_one_error_naming_the_option(field, value):
    try:
        settings_ = ExportSettings(**{field: value})
    except ValidationError as e:
        assert first_problem(e).startswith(f"{field}: ") and len(first_problem(e).splitlines()) == 1
        return
    assert getattr(settings_, field) == value and not any(c.isspace() for c in value)


@settings(max_examples=40, deadline=None)
@given(st.builds(lambda s, r: s + r, st.sampled_from(["", "sqlite:///", "sqlite:////nonexistent/", "postgresql://",
                                                       "mysql://", "http://", "nope+x://"]),
                 st.text("abcxyz.:/%@?=", max_size=20)))
def test_any_storage_url_opens_or_is_one_usage_error(scratch, url):
    with contextlib.chdir(scratch):  # relative SQLite paths land here
        storage = loads_or_refuses(open_storage, url)
    if storage is None:
        return
    assert storage.get_all_studies() == []


# ---- 7. the fault spec: fuzzed in tests/test_faults.py

# ---- 8. the suite, price table, cluster layers and calibration files

SUITE = yaml.safe_load((ROOT / "tuner" / "data" / "suites" / "nightly.yaml").read_text())
PRICES = yaml.safe_load((ROOT / "tuner" / "data" / "prices.yaml").read_text())
CLUSTERS = yaml.safe_load((ROOT / "tuner" / "data" / "cluster.yaml").read_text())
CALIBRATION = yaml.safe_load((ROOT / "tuner" / "data" / "calibration" / "local.yaml").read_text())


@FUZZ
@given(yaml_file(SUITE))
def test_any_suite_file_loads_valid_or_is_one_usage_error(scratch, data):
    suite = loads_or_refuses(load_suite, str(written(scratch, "suite.yaml", data)))
    if suite is not None:
        assert isinstance(suite, Suite) and all(p is None or (p.cases and p.seed >= 0) for p in (suite.real, suite.sim))


@FUZZ
@given(yaml_file(PRICES))
def test_any_price_table_loads_finite_prices_or_is_one_usage_error(scratch, data):
    prices = loads_or_refuses(load_prices, written(scratch, "prices.yaml", data))
    if prices is not None:
        assert isinstance(prices, Prices)
        assert all(math.isfinite(v) and v >= 0 for v in (prices.cpu_hour, prices.gpu_hour, prices.memory_gib_hour,
                                                        *prices.node_hour.values()))


@FUZZ
@given(yaml_file(CLUSTERS), st.sampled_from(["fixed", "ray-autoscaler", "hpa"]), st.booleans())
def test_any_cluster_file_loads_a_layer_or_is_one_usage_error(scratch, data, layer, llm_hpa):
    loaded = loads_or_refuses(load_cluster, layer, written(scratch, "cluster.yaml", data), llm_hpa)
    if loaded is not None:
        spec, hpa = loaded
        assert spec.layer == layer and (hpa is not None) == llm_hpa


@FUZZ
@given(yaml_file(CALIBRATION))
def test_any_calibration_file_loads_or_is_one_usage_error(scratch, data):
    cal = loads_or_refuses(load_calibration, written(scratch, "cal.yaml", data))
    assert cal is None or isinstance(cal, Calibration)


@pytest.mark.parametrize("load, option", [
    (load_serve_config, "serve config"),
    (load_prices, "--prices"),
    (load_calibration, "--calibration"),
    (lambda path: load_space(path, SHIPPED), "--space"),
    (lambda path: load_suite(str(path)), "--suite"),
])
@pytest.mark.parametrize("name, data, problem", [
    ("missing.yaml", None, "does not exist"),
    ("folder.yaml", "folder", "is not a file"),
    ("bad.yaml", b"a: [1,\n", "not YAML at line 2: expected the node content, but found '<stream end>'"),
    ("tab.yaml", b"a:\n\t- b\n", "not YAML at line 2: found character '\\t' that cannot start any token"),
    ("bytes.yaml", b"\xff\xfe\x00garbage\x80", "not UTF-8 text"),
    ("deep.yaml", b"a: " + b"[" * 5000, "not YAML: nested too deeply"),
])
def test_every_user_yaml_file_is_refused_alike(tmp_path, load, option, name, data, problem):
    path = tmp_path / name
    if data == "folder":
        path.mkdir()
    elif data is not None:
        path.write_bytes(data)
    with pytest.raises(UsageError) as info:
        load(path)
    assert usage_error(info.value) == f"{option} {path}: {problem}"


# ---- every parser through the CLI: exit 2, one line, no traceback, nothing written

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad-files")
    files = {
        "bytes.yaml": b"\xff\xfe\x00garbage\x80",
        "unknown.yaml": _serve_config(lambda c: _deployment(c, "Reranker").update(name="Rerankr")),
        "typo.yaml": _serve_config(lambda c: _deployment(c, "Reranker").update(max_ongoing_request=32)),
        "space.yaml": b"serve: {Reranker: {max_replicas: {type: int, low: 1, high: .inf}}}\n",
        "trace.csv": b"time_s,prompt_tokens\n0,12\n1,inf\n",
        "prices.yaml": b"cpu_hour: .inf\n",
        "cluster.yaml": b"hpa: [1, 2]\n",
        "suite.yaml": yaml.safe_dump({"name": "s", "sim": {"duration_s": 10, "cases": [
            {"name": "steady", "scenario": "steady", "target": "p99<"}]}}).encode(),
    }
    return {name.partition(".")[0]: written(folder, name, data) for name, data in files.items()}


SIM = ["sim", "--duration", "10", "--warmup", "0"]
OPTIMIZE = ["optimize", "--backend", "sim", "--target", "p99<1s", "--scenario", "steady"]


@pytest.mark.parametrize("args, message", [
    ([*SIM, "--target", "p99<" + "9" * 400 + "ms"], "bound is too large (a number of 400 characters) at column 5"),
    ([*SIM, "--config", "{bytes}"], "bytes.yaml: not UTF-8 text"),
    ([*SIM, "--config", "{unknown}"], "'Rerankr' is not a deployment of target_app.app:rag_app"),
    ([*SIM, "--config", "{typo}"], "deployments.3.max_ongoing_request: unknown field; did you mean max_ongoing_requests?"),
    ([*OPTIMIZE, "--space", "{space}"], "serve.Reranker.max_replicas.high: Input should be a finite number"),
    ([*SIM, "--scenario", "trace_replay", "--trace", "{trace}"], "column prompt_tokens must hold non-negative whole"),
    ([*SIM, "--scenario", "steady", "--max-in-flight", "0"], "--max-in-flight must be >= 1 and <= 1e+06 (got 0) "
                                                             "(scenario steady.py)"),
    (["export", "--config", "target_app/serve_config.yaml", "--llm-url", "ftp://llm"],
     "--llm-url: 'ftp://llm' is not a URL (http or https) such as http://llm:8000/v1"),
    ([*OPTIMIZE, "--storage", "nope://x"], "--storage 'nope://x': cannot open it: Can't load plugin"),
    (["bench", "--suite", "{suite}", "--history", "{out}-history"], "--suite s: sim case steady: --target 'p99<'"),
    ([*SIM, "--prices", "{prices}"], "cpu_hour: Input should be a finite number (got inf)"),
    ([*SIM, "--cluster", "hpa", "--cluster-file", "{cluster}"], "hpa: must be a mapping of the layer's settings"),
    ([*SIM, "--duration", "soon"], "Invalid value for '--duration'"),
    # a margin of half the bound is the most a real pass may be asked for (the sampler's
    # constraints add it to every shortfall)
    ([*OPTIMIZE, "--noise-floor", "0.8"], "Invalid value for '--noise-floor': Input should be less than or equal to 0.5"),
], ids=["target", "serve-config-bytes", "serve-config-name", "serve-config-typo", "space", "trace", "scenario-option", "llm-url", "storage",
        "suite", "prices", "cluster-file", "typer-option", "noise-floor"])
def test_bad_input_exits_2_with_one_line_before_anything_is_written(tmp_path, bad_files, args, message):
    out = tmp_path / "out"
    names = {**{k: str(v) for k, v in bad_files.items()}, "out": str(out)}
    r = tuner(*[a.format(**names) if a.startswith("{") else a for a in args], "--out", str(out))
    assert message in refused(r)
    assert not out.exists() or not any(out.iterdir())


def test_a_target_host_locust_cannot_read_is_refused_before_any_request(tmp_path):
    r = subprocess.run([sys.executable, "-m", "locust", "-f", "scenarios/steady.py", "--headless", "-t", "2s",
                        "-H", "http://[::1", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    ours = [x for x in r.stderr.splitlines() if not re.match(r"\[\d{4}-\d\d-\d\d ", x)]  # Locust's own log lines aside
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(ours) == 1, r.stderr
    assert "cannot read a host name from 'http://[::1': Invalid IPv6 URL" in ours[0]
    assert not list(tmp_path.iterdir())


# ---- output folders that exist: refused, or replaced with --force

def _holding_a_file(folder: Path) -> Path:
    folder.mkdir()
    (folder / "earlier.json").write_text("{}")
    return folder


def test_sim_refuses_an_out_folder_with_files_and_replaces_them_with_force(tmp_path):
    out = _holding_a_file(tmp_path / "out")
    args = [*SIM, "--scenario", "steady", "--rate", "1", "--target", "p99<60s", "--out", str(out)]
    assert refused(tuner(*args)).endswith(f"--out {out} already holds files; choose another folder or pass --force")
    assert [p.name for p in out.iterdir()] == ["earlier.json"]
    r = tuner(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["records.parquet", "result.json", "serve_config.yaml"]


def test_an_out_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "result.json"
    out.write_text("{}")
    r = tuner(*SIM, "--scenario", "steady", "--out", str(out))
    assert refused(r).endswith(f"--out {out} is a file; give a folder") and out.read_text() == "{}"


def test_export_refuses_a_folder_with_files_unless_force_and_check_alone_only_reads(tmp_path):
    out = _holding_a_file(tmp_path / "k8s")
    args = ["export", "--config", "target_app/serve_config.yaml", "--format", "serve", "--out", str(out)]
    assert f"--out {out} already holds files" in refused(tuner(*args))
    assert [p.name for p in out.iterdir()] == ["earlier.json"]
    r = tuner(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in out.iterdir()] == ["serve_config.yaml"]
    written_before = (out / "serve_config.yaml").stat().st_mtime_ns
    r = tuner("export", "--check", "--out", str(out))
    assert r.returncode == 0 and "checks passed" in r.stdout, r.stdout + r.stderr
    assert [p.name for p in out.iterdir()] == ["serve_config.yaml"]
    assert (out / "serve_config.yaml").stat().st_mtime_ns == written_before


def test_bench_refuses_a_night_folder_with_files_unless_force(tmp_path):
    out = _holding_a_file(tmp_path / "night")
    args = ["bench", "--analyze-only", "--no-report", "--history", str(tmp_path / "history"), "--out", str(out)]
    assert f"--out {out} already holds files" in refused(tuner(*args))
    assert [p.name for p in out.iterdir()] == ["earlier.json"]
    r = tuner(*args, "--force")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in out.iterdir()] == ["bench.json"]


def test_profile_refuses_a_folder_with_files_but_derives_again_from_it(tmp_path):
    out = _holding_a_file(tmp_path / "calib")
    r = tuner("profile", "--out", str(out), "--state-dir", str(tmp_path / "no-stack"))
    assert f"--out {out} already holds files" in refused(r)
    r = tuner("profile", "--from-measurements", "--out", str(out))
    assert refused(r).startswith("error: --from-measurements:") and "measurements.json does not exist" in r.stderr
    assert [p.name for p in out.iterdir()] == ["earlier.json"]


def test_report_says_its_out_file_is_replaced():
    r = tuner("report", "--help")
    assert r.returncode == 0 and "an existing file is replaced" in " ".join(r.stdout.replace("│", " ").split())


@pytest.mark.parametrize("deployment,compute,field", [
    ("Reranker", {"mode": "emulated", "accelerator": "a100", "stage": "bge-reranker-large-seq256"}, "compute.accelerator"),
    ("Reranker", {"mode": "emulated", "accelerator": "l4", "stage": "bge-reranker-xl"}, "compute.stage"),
    ("QueryRewriter", {"mode": "emulated", "accelerator": "h100", "stage": "minilm-l6-embed-seq64", "dtype": "int8"},
     "compute.stage"),
    ("Reranker", {"mode": "emulated", "table": [[1, 5.0]]}, "batch.max_batch_size"),
    ("LegalClassifier", {"mode": "emulated", "table": [[1, -3.0]]}, "compute.table"),
    ("MultiLoRAModel", {"mode": "emulated", "accelerator": "l4", "stage": "llama-70b-lora"}, "compute.stage"),
])
def test_bad_compute_settings_are_refused_before_anything_deploys(tmp_path, deployment, compute, field):
    """`tuner run` checks every user_config with its deployment's own model first: exit 2, one
    line naming the deployment and field, nothing written, no stack needed."""
    cfg = yaml.safe_load(open("target_app/serve_config.yaml"))
    dep = next(d for a in cfg["applications"] for d in a["deployments"] if d["name"] == deployment)
    dep["user_config"]["compute"] = compute
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    for cmd in (("run", "--state-dir", str(tmp_path / "no-stack")), ("sim",)):
        r = tuner(*cmd, "--config", str(path), "--scenario", "steady", "--target", "p99<1s", "--duration", "5",
                  "--out", str(tmp_path / "out"))
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert f"{deployment}.user_config" in r.stderr and field in r.stderr, r.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--scrape-interval", "0.1"], "scrape_interval_s: Input should be greater than or equal to 0.5"),
    (["--metrics-report-ms", "50"], "ray_metrics_report_ms: Input should be greater than or equal to 100"),
    (["--ray-gcs-port", "80"], "ports.ray_gcs: Input should be greater than or equal to 1024"),
    (["--llm-port", "9090"], "ports.prometheus and ports.llm are both 9090"),
])
def test_bad_stack_settings_are_refused_before_anything_starts(tmp_path, args, message):
    state = tmp_path / "state"
    r = tuner("stack", "up", "--no-app", "--state-dir", str(state), *args)
    assert message in refused(r)
    assert not state.exists()


def test_a_trial_that_never_measured_does_not_block_its_rerun(tmp_path):
    from tuner.plan import make_plan, result_header, write_config
    from tuner.result import write_result

    out = tmp_path / "out"
    # What a trial that stopped at its check (Prometheus down) leaves: its config and an unmeasured result.
    plan = make_plan(config=None, serve_config={"applications": []}, scenario="steady", target="p99<1s", duration_s=5,
                     out=out, check=False)
    write_config(plan)
    write_result(out / "result.json", result_header(plan, "real"))
    args = ["run", "--state-dir", str(tmp_path / "no-stack"), "--target", "p99<1s", "--scenario", "steady", "--rate", "1",
            "--duration", "5", "--warmup", "0", "--out", str(out)]
    for _ in range(2):  # refused for the missing stack, not for the folder, and before it writes anything
        r = tuner(*args)
        assert r.returncode == 3 and "tuner run needs the stack: no stack is running" in r.stderr, r.stderr[-2000:]
        assert not any(out.iterdir())
    (out / "records.parquet").write_bytes(b"recorded")  # anything recorded is kept: refused again
    assert "already holds files" in refused(tuner(*args))
