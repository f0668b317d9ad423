"""End-to-end tests of the LLM emulator running as a real server subprocess."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REPO_ROOT = Path(__file__).resolve().parents[2]

VLLM_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"emulator exited early with code {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"emulator at {url} not healthy after {timeout_s} s")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "target_app.llm_server.server", "--port", str(port),
         "--log-level", "warning"],
        cwd=REPO_ROOT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, timeout_s=20, proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(autouse=True)
def no_fault_after_test(base_url: str) -> Iterator[None]:
    yield
    # A failed refuse test may leave the port closed for a moment.
    _wait_healthy(base_url, timeout_s=10)
    httpx.post(f"{base_url}/admin/fault", json={"mode": "none"}).raise_for_status()


def _client(base_url: str, timeout: float = 10.0) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{base_url}/v1", api_key="EMPTY", max_retries=0,
                       timeout=timeout)


def _metric(text: str, name: str, label_filter: str = "") -> float:
    """Sum of the samples of ``name`` whose label set contains ``label_filter``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series.split("{", 1)[0] == name and label_filter in series:
            total += float(value)
    return total


def _metrics(base_url: str) -> str:
    response = httpx.get(f"{base_url}/metrics")
    response.raise_for_status()
    return response.text


def _set_fault(base_url: str, **fault: Any) -> dict[str, Any]:
    response = httpx.post(f"{base_url}/admin/fault", json=fault)
    response.raise_for_status()
    return dict(response.json())


def test_non_streaming_chat_and_completions(base_url: str) -> None:
    async def scenario() -> None:
        async with _client(base_url) as client:
            chat = await client.chat.completions.create(
                model="my-model", max_tokens=7,
                messages=[{"role": "system", "content": "be brief"},
                          {"role": "user", "content": "one two three four"}])
            assert chat.model == "my-model"
            assert chat.choices[0].finish_reason == "length"
            content = chat.choices[0].message.content
            assert content is not None and len(content.split()) == 7
            assert chat.usage is not None
            assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (6, 7)
            again = await client.chat.completions.create(
                model="my-model", max_tokens=7,
                messages=[{"role": "user", "content": "something else entirely"}])
            assert again.choices[0].message.content == content

            completion = await client.completions.create(
                model="other", prompt="a b c", max_tokens=5)
            assert len(completion.choices[0].text.split()) == 5
            assert completion.usage is not None
            assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (3, 8)

            default = await client.completions.create(model="other", prompt="x")
            assert default.usage is not None
            assert default.usage.completion_tokens == 128  # profile.default_max_tokens

            models = await client.models.list()
            assert [m.id for m in models.data] == ["emulated-llama-3.1-8b"]

            with pytest.raises(openai.BadRequestError, match="maximum context length"):
                await client.completions.create(model="m", prompt="x y", max_tokens=8191)

    asyncio.run(scenario())


def test_streaming_chat_yields_max_tokens_chunks_then_done(base_url: str) -> None:
    async def scenario() -> None:
        async with _client(base_url) as client:
            stream = await client.chat.completions.create(
                model="m", max_tokens=12, stream=True,
                stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "stream please"}])
            contents, usage = [], None
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    contents.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:
                    usage = chunk.usage
            assert len(contents) == 12
            assert usage is not None and usage.completion_tokens == 12

    asyncio.run(scenario())

    body = {"model": "m", "max_tokens": 4, "stream": True, "prompt": "raw sse"}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in events[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None, None, None, "length"]


def test_metrics_expose_vllm_names_with_counts(base_url: str) -> None:
    async def scenario() -> None:
        async with _client(base_url) as client:
            await client.completions.create(model="m", prompt="count me", max_tokens=3)

    asyncio.run(scenario())
    text = _metrics(base_url)
    for name in VLLM_METRICS:
        sample = rf'^{re.escape(name)}(_bucket|_count|_sum)?{{.*model_name="emulated-llama-3.1-8b"'
        assert re.search(sample, text, re.MULTILINE), name
    for histogram in VLLM_METRICS[2:7]:
        assert _metric(text, f"{histogram}_count") > 0, histogram
    assert _metric(text, "vllm:prompt_tokens_total") >= 2
    assert _metric(text, "vllm:generation_tokens_total") >= 3
    assert _metric(text, "vllm:request_success_total", 'finished_reason="length"') >= 1


def test_concurrent_requests_batch_and_slow_down_tokens(base_url: str) -> None:
    def itl_stats() -> tuple[float, float]:
        text = _metrics(base_url)
        return (_metric(text, "vllm:inter_token_latency_seconds_sum"),
                _metric(text, "vllm:inter_token_latency_seconds_count"))

    async def scenario() -> tuple[float, float, float]:
        async with _client(base_url) as client:
            async def one() -> None:
                await client.completions.create(model="m", prompt="p " * 100, max_tokens=100)

            before = itl_stats()
            await one()
            single = itl_stats()
            batch = asyncio.gather(*(one() for _ in range(128)))
            max_running = 0.0
            while not batch.done():
                running = _metric(await asyncio.to_thread(_metrics, base_url),
                                  "vllm:num_requests_running")
                max_running = max(max_running, running)
                await asyncio.sleep(0.05)
            await batch
            after = itl_stats()
        single_itl = (single[0] - before[0]) / (single[1] - before[1])
        batch_itl = (after[0] - single[0]) / (after[1] - single[1])
        return max_running, single_itl, batch_itl

    max_running, single_itl, batch_itl = asyncio.run(scenario())
    assert max_running > 1
    # Model: 6.56 ms alone vs 6.5 + 0.06 * 128 = 14.2 ms at 128 running.
    assert batch_itl > 1.5 * single_itl, (single_itl, batch_itl)


def test_stream_disconnect_cancels_the_sequence(base_url: str) -> None:
    aborted_before = _metric(_metrics(base_url), "vllm:request_success_total",
                             'finished_reason="abort"')
    body = {"model": "m", "max_tokens": 5000, "stream": True, "prompt": "long one"}
    with httpx.stream("POST", f"{base_url}/v1/completions", json=body) as response:
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        text = _metrics(base_url)
        if _metric(text, "vllm:num_requests_running") == 0:
            break
        time.sleep(0.05)
    assert _metric(text, "vllm:num_requests_running") == 0
    assert _metric(text, "vllm:request_success_total", 'finished_reason="abort"') == (
        aborted_before + 1)


def test_fault_error_returns_status_at_the_given_rate(base_url: str) -> None:
    _set_fault(base_url, mode="error", status_code=503, error_rate=0.5)

    async def scenario() -> tuple[list[int], int | None]:
        statuses = []
        async with _client(base_url) as client:
            for _ in range(10):
                try:
                    await client.completions.create(model="m", prompt="x", max_tokens=1)
                    statuses.append(200)
                except openai.APIStatusError as exc:
                    statuses.append(exc.status_code)
            _set_fault(base_url, mode="error", status_code=429)
            with pytest.raises(openai.RateLimitError):
                await client.completions.create(model="m", prompt="x", max_tokens=1)
            _set_fault(base_url, mode="none")
            ok = await client.completions.create(model="m", prompt="x", max_tokens=1)
        return statuses, ok.usage.completion_tokens if ok.usage else None

    statuses, tokens = asyncio.run(scenario())
    assert statuses.count(503) == 5 and statuses.count(200) == 5
    assert tokens == 1


def test_fault_hang_times_out_until_cleared(base_url: str) -> None:
    fault = _set_fault(base_url, mode="hang")
    assert fault["mode"] == "hang" and fault["expires_in_s"] is None
    assert httpx.get(f"{base_url}/admin/fault").json()["mode"] == "hang"

    async def scenario() -> float:
        async with _client(base_url, timeout=1.0) as client:
            with pytest.raises(openai.APITimeoutError):
                await client.completions.create(model="m", prompt="x", max_tokens=2)
            _set_fault(base_url, mode="none")
            await client.completions.create(model="m", prompt="x", max_tokens=2)
            # A timed hang releases the requests it held once it expires.
            _set_fault(base_url, mode="hang", duration_s=0.5)
            start = time.monotonic()
            await client.completions.create(model="m", prompt="x", max_tokens=2)
            return time.monotonic() - start

    held_s = asyncio.run(scenario())
    assert 0.35 < held_s < 1.0


def test_fault_refuse_closes_the_port_then_reopens(base_url: str) -> None:
    generated_before = _metric(_metrics(base_url), "vllm:generation_tokens_total")
    missing = httpx.post(f"{base_url}/admin/fault", json={"mode": "refuse"})
    assert missing.status_code == 422
    start = time.monotonic()
    _set_fault(base_url, mode="refuse", duration_s=1.5)
    port = int(base_url.rsplit(":", 1)[1])

    refused_at = None
    while refused_at is None and time.monotonic() - start < 1.0:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            time.sleep(0.02)
        except ConnectionRefusedError:
            refused_at = time.monotonic()
    assert refused_at is not None, "port still accepting connections"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/health")

    _wait_healthy(base_url, timeout_s=5)
    reopened_after = time.monotonic() - start
    assert 1.3 < reopened_after < 3.0
    # Same app behind the new socket: counters were not reset, fault cleared itself.
    assert _metric(_metrics(base_url), "vllm:generation_tokens_total") == generated_before
    assert httpx.get(f"{base_url}/admin/fault").json()["mode"] == "none"


def test_fault_slow_stretches_latency(base_url: str) -> None:
    async def timed() -> float:
        async with _client(base_url) as client:
            start = time.monotonic()
            await client.completions.create(model="m", prompt="x", max_tokens=40)
            return time.monotonic() - start

    normal = asyncio.run(timed())
    _set_fault(base_url, mode="slow", slow_factor=4)
    slow = asyncio.run(timed())
    assert slow > 2.5 * normal, (normal, slow)
