"""The LLM judge against a real HTTP server on 127.0.0.1 that speaks /v1/chat/completions.

The server's verdicts follow from the request: a response's score is its word count (clipped to
1..10) and of two responses the longer wins (equal lengths: "A", a position bias the evaluator's
swap must cancel). Scripts make it rate-limit, fail, stall or babble.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from harness import hookimpl
from harness._core.config import load_experiment
from harness._core.contracts import Components, EvalSamples, Prompt
from harness._core.errors import ConfigError, HarnessError
from harness._core.plugins import get_plugin_manager
from harness_builtins.evaluators.win_rate import WinRate, WinRateOptions
from harness_builtins.judges.pairwise_llm import PAIRWISE_TEMPLATE, PairwiseJudgeOptions, parse_verdict
from harness_builtins.judges.client import VerdictError
from harness_builtins.judges.scoring_llm import GRADING_TEMPLATE, parse_score
from harness_builtins.rewards.llm_judge import LLMJudgeOptions, LLMJudgeReward
from tests.fakes import FakePlugin, judge_builder, make_context

KEY_ENV = "HARNESS_TEST_JUDGE_KEY"
SECRET = "sk-test-DO-NOT-LEAK-4242"
MODEL = "test-judge"
SCORE_TEMPLATE = "Grade it.\nPROMPT<<{prompt}>>\nRESPONSE<<{response}>>\nEnd with: Score: <1-10>"
PAIR_TEMPLATE = "Compare.\nPROMPT<<{prompt}>>\nA<<{response_a}>>\nB<<{response_b}>>\nEnd with: Verdict: A|B|tie"


# --------------------------------------------------------------------------- the fake endpoint
def honest_verdict(content: str) -> str:
    pair = re.search(r"A<<(.*)>>\nB<<(.*)>>", content, re.S)
    if pair:
        a, b = pair.groups()
        return "Longer is better.\nVerdict: " + ("B" if len(b) > len(a) else "A")
    response = re.search(r"RESPONSE<<(.*)>>", content, re.S).group(1)
    return f"It has {len(response.split())} words.\nScore: {min(10, max(1, len(response.split())))}"


class Reply:
    def __init__(self, status=200, content=None, headers=(), delay=0.0, error="boom", raw=None):
        self.status, self.content, self.headers, self.delay, self.error = status, content, dict(headers), delay, error
        self.raw = raw  # bytes sent as text/html instead of the protocol's JSON


class FakeJudge:
    """Counts requests, in-flight requests and their arrival times; ``script(n, body)`` may override a reply."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.auth: list[str] = []
        self.arrivals: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.script = lambda n, body: None
        judge = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    n = len(judge.requests)
                    judge.requests.append(body)
                    judge.auth.append(self.headers.get("Authorization", ""))
                    judge.arrivals.append(time.monotonic())
                    judge.in_flight += 1
                    judge.max_in_flight = max(judge.max_in_flight, judge.in_flight)
                try:
                    reply = judge.script(n, body) or Reply()
                    judge.closing.wait(reply.delay)
                    self._send(body, reply)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with judge.lock:
                        judge.in_flight -= 1

            def _send(self, body, reply):
                if reply.status == 200:
                    content = reply.content if reply.content is not None else honest_verdict(body["messages"][0]["content"])
                    payload = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": content}}]}
                else:
                    payload = {"error": {"message": reply.error, "type": "server_error", "code": None}}
                data = json.dumps(payload).encode() if reply.raw is None else reply.raw
                kind = "application/json" if reply.raw is None else "text/html"
                self.send_response(reply.status)
                for name, value in {"Content-Type": kind, **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def judge():
    server = FakeJudge()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(autouse=True)
def env(monkeypatch, tmp_path):
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))


def options(judge, **kw):
    base = dict(base_url=judge.url, model=MODEL, api_key_env=KEY_ENV, template=SCORE_TEMPLATE,
                backoff_s=0.001, max_backoff_s=2.0, timeout_s=5.0)
    return LLMJudgeOptions(**{**base, **kw})


def scorer(judge, **kw) -> LLMJudgeReward:
    source = LLMJudgeReward(options(judge, **kw))
    source.prepare(make_context(build=judge_builder()))
    return source


def prompts(n):
    return [Prompt(id=f"p{i}", kind="test", text=f"question {i}") for i in range(n)]


RESPONSES = ["one", "one two", "one two three four five", "a b c d e f g h i j k l", "x y z", "a b c d e f g"]


def expected_rewards(responses):
    return torch.tensor([(min(10, len(r.split())) - 5.5) / 4.5 for r in responses])


# --------------------------------------------------------------------------- scoring
def test_scores_are_the_judges_verdicts_centred(judge):
    source = scorer(judge, concurrency=2)
    rewards = source.score(prompts(6), RESPONSES)
    assert torch.allclose(rewards, expected_rewards(RESPONSES))
    assert len(judge.requests) == 6
    sent = judge.requests[0]
    assert sent["model"] == MODEL and sent["temperature"] == 0 and sent["messages"][0]["role"] == "user"
    assert {a for a in judge.auth} == {f"Bearer {SECRET}"}
    assert source.diagnostics() == {"judge/calls": 6.0, "judge/cache_hits": 0.0, "judge/retries": 0.0,
                                    "judge/parse_failures": 0.0}
    raw = scorer(judge, scale="raw", template=SCORE_TEMPLATE + " ").score(prompts(2), RESPONSES[:2])
    assert raw.tolist() == [1.0, 2.0]


def test_verdict_parsing_is_strict():
    assert parse_score("reasons\nScore: 7\n") == 7 and parse_score("score:10") == 10
    for bad in ("Score: 7 out of 10", "Score: 11", "Score: 0", "Score: 7\nthanks", "7", "", "**Score: 7**"):
        with pytest.raises(VerdictError):
            parse_score(bad)
    assert [parse_verdict(f"x\nVerdict: {v}") for v in ("A", "b", "tie")] == [1.0, 0.0, 0.5]
    for bad in ("Verdict: C", "Verdict: A or B", "A", "Verdict: A\nbecause"):
        with pytest.raises(VerdictError):
            parse_verdict(bad)


def test_a_rerun_pays_no_call_twice(judge, tmp_path):
    first = scorer(judge)
    first.score(prompts(6), RESPONSES)
    files = list((tmp_path / "cache" / "llm_judge").glob("*.jsonl"))  # the default: $HARNESS_CACHE_DIR/llm_judge
    assert len(files) == 1 and len(files[0].read_text().splitlines()) == 6
    again = scorer(judge).score(prompts(6), RESPONSES)
    assert len(judge.requests) == 6 and torch.equal(again, first.score(prompts(6), RESPONSES))
    assert first.diagnostics()["judge/cache_hits"] == 6 and first.diagnostics()["judge/calls"] == 0
    scorer(judge, model="other-judge").score(prompts(1), RESPONSES[:1])  # the key holds the model …
    scorer(judge, template="v2 " + SCORE_TEMPLATE).score(prompts(1), RESPONSES[:1])  # … and the template
    assert len(judge.requests) == 8
    duplicated = scorer(judge, cache_dir=str(tmp_path / "elsewhere"))
    duplicated.score(prompts(1) * 3, ["same answer"] * 3)
    assert len(judge.requests) == 9 and duplicated.diagnostics()["judge/calls"] == 1


def test_cache_tolerates_a_torn_last_line(judge, tmp_path):
    scorer(judge).score(prompts(3), RESPONSES[:3])
    (path,) = (tmp_path / "cache" / "llm_judge").glob("*.jsonl")
    with path.open("a") as fh:
        fh.write('{"key": "abc", "text": "Sco')  # a crash mid-write
    source = scorer(judge)
    assert torch.allclose(source.score(prompts(4), RESPONSES[:4]), expected_rewards(RESPONSES[:4]))
    assert len(judge.requests) == 4 and source.diagnostics()["judge/cache_hits"] == 3
    lines = path.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[-1])["model"] == MODEL  # new verdict on a line of its own
    scorer(judge).score(prompts(4), RESPONSES[:4])
    assert len(judge.requests) == 4


def test_verdicts_before_a_failure_are_kept(judge):
    judge.script = lambda n, body: Reply(500) if "poison" in body["messages"][0]["content"] else None
    answers = RESPONSES[:3] + ["poison pill"]
    with pytest.raises(HarnessError):
        scorer(judge, max_retries=0, concurrency=1).score(prompts(4), answers)
    judge.script = lambda n, body: None  # the endpoint recovers; the rerun pays only for what failed
    source = scorer(judge, concurrency=1)
    assert torch.allclose(source.score(prompts(4), answers), expected_rewards(answers))
    assert len(judge.requests) == 5 and source.diagnostics()["judge/cache_hits"] == 3


# --------------------------------------------------------------------------- retries and errors
def test_429_is_retried_after_the_servers_retry_after(judge):
    judge.script = lambda n, body: Reply(429, headers={"Retry-After": "0.3"}, error="rate limited") if n == 0 else None
    source = scorer(judge, backoff_s=0.001)
    assert torch.allclose(source.score(prompts(1), RESPONSES[:1]), expected_rewards(RESPONSES[:1]))
    assert len(judge.requests) == 2 and judge.arrivals[1] - judge.arrivals[0] >= 0.3
    assert source.diagnostics()["judge/retries"] == 1 and source.diagnostics()["judge/calls"] == 2


def test_server_errors_until_retries_run_out(judge):
    judge.script = lambda n, body: Reply(500, error="upstream exploded")
    with pytest.raises(HarnessError) as err:
        scorer(judge, max_retries=2).score(prompts(1), RESPONSES[:1])
    msg = str(err.value)
    assert len(judge.requests) == 3
    assert judge.url in msg and MODEL in msg and "HTTP 500" in msg and "upstream exploded" in msg
    assert "failed 3 time(s)" in msg and "base_url" in msg and SECRET not in msg


def test_a_slow_server_times_out(judge):
    judge.script = lambda n, body: Reply(delay=30.0)  # the fixture's close ends the wait: the test never waits 30 s
    start = time.monotonic()
    with pytest.raises(HarnessError, match=r"timed out after 0.2 s") as err:
        scorer(judge, timeout_s=0.2, max_retries=1).score(prompts(1), RESPONSES[:1])
    # both tries gave up long before one reply would have come (a bound loose enough for a busy machine:
    # under load a 1.5 s bound on a 2 s reply failed at 3.1 s)
    assert len(judge.requests) == 2 and time.monotonic() - start < 15
    assert "timeout_s" in str(err.value)


def test_garbage_verdicts_are_reasked_then_quoted(judge):
    babble = "I really liked this answer, it is lovely. " * 20
    judge.script = lambda n, body: Reply(content=babble)
    source = scorer(judge, parse_retries=2)
    with pytest.raises(HarnessError) as err:
        source.score(prompts(1), RESPONSES[:1])
    msg = str(err.value)
    assert len(judge.requests) == 3 and source.diagnostics()["judge/parse_failures"] == 3
    assert "I really liked this answer" in msg and f"({len(babble)} chars)" in msg and len(msg) < len(babble)
    assert "Score: <integer 1-10>" in msg
    assert not source.judge.client.cache_path().exists()  # nothing unparseable is cached


def test_a_bad_verdict_then_a_good_one_is_a_retry_not_an_error(judge):
    judge.script = lambda n, body: Reply(content="Score: eleven") if n == 0 else None
    source = scorer(judge)
    assert torch.allclose(source.score(prompts(1), RESPONSES[:1]), expected_rewards(RESPONSES[:1]))
    assert source.diagnostics()["judge/retries"] == 1 and source.diagnostics()["judge/parse_failures"] == 1


def test_endpoint_down(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    source = LLMJudgeReward(LLMJudgeOptions(base_url=url, model=MODEL, api_key_env=KEY_ENV, max_retries=1, backoff_s=0.0))
    source.prepare(make_context(build=judge_builder()))
    with pytest.raises(HarnessError) as err:
        source.score(prompts(1), RESPONSES[:1])
    msg = str(err.value)
    assert url in msg and MODEL in msg and "APIConnectionError" in msg and "server is up" in msg and SECRET not in msg


def test_an_endpoint_that_is_not_the_api_is_named(judge):
    judge.script = lambda n, body: Reply(raw=b"<html>please log in</html>")
    with pytest.raises(HarnessError, match=r"did not answer with a chat completion \(got '<html>please log in") as err:
        scorer(judge).score(prompts(1), RESPONSES[:1])
    assert judge.url in str(err.value) and "/v1" in str(err.value) and len(judge.requests) == 1


def test_missing_key_variable_is_named(judge, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(HarnessError, match=rf"environment variable {KEY_ENV} is not set"):
        scorer(judge)
    assert judge.requests == []


def test_the_key_never_leaks(judge, tmp_path):
    scorer(judge).score(prompts(3), RESPONSES[:3])
    judge.script = lambda n, body: Reply(401, error=f"Incorrect API key provided: {SECRET}")
    with pytest.raises(HarnessError) as err:
        scorer(judge, template="v2 " + SCORE_TEMPLATE).score(prompts(1), RESPONSES[:1])
    assert len(judge.requests) == 4  # 401 is not retried
    assert SECRET not in str(err.value) and "***" in str(err.value) and f"${KEY_ENV}" in str(err.value)
    cached = "".join(p.read_text() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cached and SECRET not in cached
    assert SECRET not in json.dumps(options(judge).model_dump())


def test_concurrency_is_bounded(judge):
    judge.script = lambda n, body: Reply(delay=0.05)
    source = scorer(judge, concurrency=3)
    many = [f"answer {'x ' * i}" for i in range(12)]
    source.score(prompts(12), many)
    assert len(judge.requests) == 12 and 2 <= judge.max_in_flight <= 3


# --------------------------------------------------------------------------- win rate
def samples():
    policy = ("a much longer answer", "longer one", "also longer here", "short", "same")
    sft = ("short", "short", "tiny", "this one is longer", "same")
    return EvalSamples(prompts=tuple(prompts(5)), policy=policy, sft=sft, kl=(0.0,) * 5)


def test_win_rate_with_an_llm_judge(judge):
    llm = dict(base_url=judge.url, model=MODEL, api_key_env=KEY_ENV, template=PAIR_TEMPLATE, concurrency=2)
    evaluator = WinRate(WinRateOptions(judge="llm", llm=llm))
    result = evaluator.evaluate(make_context(build=judge_builder()), samples())["win_rate_vs_sft"]
    # 3 wins, 1 loss, and one equal pair the judge always calls "A": swapped, that is a tie
    assert result["rate"] == pytest.approx(3.5 / 5) and result["ties"] == 1 and result["n"] == 5
    assert result["judge"] == f"llm:{MODEL}" and result["ci_low"] < result["rate"] < result["ci_high"]
    assert len(judge.requests) == 9  # 5 pairs × 2 orders, the equal pair's two orders are one request
    assert result["judge_stats"]["judge/calls"] == 9
    again = WinRate(WinRateOptions(judge="llm", llm=llm)).evaluate(make_context(build=judge_builder()),
                                                                   samples())["win_rate_vs_sft"]
    assert len(judge.requests) == 9 and again["rate"] == result["rate"]


def test_win_rate_with_the_reward_judge_still_swaps_positions():
    class Length:
        def score(self, prompts, responses):
            return torch.tensor([float(len(r)) for r in responses])

    ctx = make_context(components=Components(reward=Length()), build=judge_builder())
    result = WinRate(WinRateOptions(judge="reward")).evaluate(ctx, samples())["win_rate_vs_sft"]
    assert result["rate"] == pytest.approx(3.5 / 5) and result["ties"] == 1 and result["judge"] == "reward"


# --------------------------------------------------------------------------- config
class FakesWithoutWinRate(FakePlugin):
    @hookimpl
    def register_evaluators(self, register):
        register("rewards", FakePlugin)


@pytest.fixture
def registry():
    builtins = ("harness_builtins.rewards.llm_judge", "harness_builtins.evaluators.win_rate", "harness_builtins.judges.pairwise_llm",
                "harness_builtins.judges.scoring_llm")
    return get_plugin_manager(builtins=builtins, extra=[FakesWithoutWinRate()], autoload=False).registry


JUDGED = """
[experiment]
name = "judged"
[reward]
name = "llm_judge"
[reward.llm_judge]
base_url = "http://127.0.0.1:8000/v1"
model = "judge-7b"
api_key_env = "JUDGE_KEY"
concurrency = 2
{extra}
[evaluation]
evaluators = ["win_rate"]
[evaluation.win_rate]
judge = "llm"
[evaluation.win_rate.llm]
base_url = "http://127.0.0.1:8000/v1"
model = "judge-7b"
"""


def test_an_llm_judged_experiment_validates(tmp_path, registry):
    path = tmp_path / "exp.toml"
    path.write_text(JUDGED.format(extra=""))
    exp = load_experiment(path, registry)
    reward = exp.choice("reward")
    assert reward.name == "llm_judge" and reward.options.concurrency == 2 and reward.options.template == GRADING_TEMPLATE
    assert exp.evaluators["win_rate"].llm.template == PAIRWISE_TEMPLATE
    assert exp.to_dict()["reward"]["llm_judge"]["api_key_env"] == "JUDGE_KEY"
    assert PairwiseJudgeOptions(base_url="u", model="m", template=PAIRWISE_TEMPLATE).template == PAIRWISE_TEMPLATE
    assert LLMJudgeOptions(base_url="u", model="m", template=GRADING_TEMPLATE).template == GRADING_TEMPLATE


@pytest.mark.parametrize("extra, expected", [
    ('template = "Rate {answer} to {prompt}"', r"\[reward.llm_judge\] template = .*unknown placeholder\(s\) \{answer\}"),
    ('template = "Rate {prompt}"', r"\[reward.llm_judge\] template = .*lacks placeholder\(s\) \{response\}"),
    ('template = "Rate {prompt!r} {response}"', r"\[reward.llm_judge\] template = .*no format spec"),
    ('template = "Rate {prompt} {response} }"', r"\[reward.llm_judge\] template = .*not a valid format string"),
    ('scale = "log"', r"\[reward.llm_judge\] scale = 'log': expected 'centered' or 'raw'"),
])
def test_bad_judge_options_name_the_field(tmp_path, registry, extra, expected):
    path = tmp_path / "exp.toml"
    path.write_text(JUDGED.format(extra=extra))
    with pytest.raises(ConfigError, match=expected):
        load_experiment(path, registry)


def test_a_key_pasted_into_api_key_env_is_refused_and_not_echoed(tmp_path, registry):
    path = tmp_path / "exp.toml"
    path.write_text(JUDGED.format(extra="").replace('"JUDGE_KEY"', f'"{SECRET}"'))
    with pytest.raises(ConfigError, match="api_key_env must be the NAME") as err:
        load_experiment(path, registry)
    assert SECRET not in str(err.value)


def test_llm_win_rate_needs_its_table(tmp_path, registry):
    path = tmp_path / "exp.toml"
    path.write_text(JUDGED.format(extra="").split("[evaluation.win_rate.llm]")[0])
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate\].*needs an \[evaluation.win_rate.llm\] table"):
        load_experiment(path, registry)
    path.write_text(JUDGED.format(extra="") + 'template = "{prompt} {response_a}"\n')
    with pytest.raises(ConfigError, match=r"\[evaluation.win_rate.llm\] template.*lacks placeholder\(s\) \{response_b\}"):
        load_experiment(path, registry)


def test_the_first_hard_failure_cancels_the_rest_of_the_batch(judge):
    """Time to fail stays within one request's budget: waiting retries give up, no new prompts start."""
    judge.script = lambda n, body: (Reply(401, error="bad key") if n == 0
                                    else Reply(429, headers={"Retry-After": "1.0"}, error="rate limited"))
    with pytest.raises(HarnessError, match="refused the request: HTTP 401"):
        scorer(judge, concurrency=3, max_retries=3, backoff_s=1.0).score(prompts(9), RESPONSES[:1] * 9)
    assert time.monotonic() - judge.arrivals[0] < 0.5 and len(judge.requests) <= 3


# --------------------------------------------------------------------------- the reward source's judge, by name
def test_the_reward_source_builds_its_judge_by_name_and_needs_one_that_grades(judge):
    source = scorer(judge)
    assert source.judge.name == f"llm_score:{MODEL}" and source.options.judge_options()["model"] == MODEL
    pairwise = LLMJudgeReward(LLMJudgeOptions(judge="llm", base_url=judge.url, model=MODEL, api_key_env=KEY_ENV,
                                              template=PAIR_TEMPLATE))
    with pytest.raises(HarnessError, match=r"judge = 'llm': that judge compares two responses but grades none"):
        pairwise.prepare(make_context(build=judge_builder()))


def test_the_judges_options_sit_beside_judge_and_scale(tmp_path, registry):
    path = tmp_path / "exp.toml"
    path.write_text(JUDGED.format(extra="bogus = 1"))
    with pytest.raises(ConfigError, match=r"\[reward.llm_judge\] unknown key 'bogus'. Allowed keys: judge, scale, base_url"):
        load_experiment(path, registry)
    path.write_text(JUDGED.format(extra='judge = "oracle"'))
    with pytest.raises(ConfigError, match=r"\[reward.llm_judge\] judge = 'oracle': no judge of that name.*llm_score"):
        load_experiment(path, registry)


def test_the_grading_judge_decides_a_win_rate_too(judge):
    llm_score = dict(base_url=judge.url, model=MODEL, api_key_env=KEY_ENV, template=SCORE_TEMPLATE)
    result = WinRate(WinRateOptions(judge="llm_score", llm_score=llm_score)).evaluate(
        make_context(build=judge_builder()), samples())["win_rate_vs_sft"]
    # the longer answer gets the higher grade: 3 wins, 1 loss, 1 tie (the equal pair), as with the pairwise judge
    assert result["rate"] == pytest.approx(3.5 / 5) and result["ties"] == 1 and result["judge"] == f"llm_score:{MODEL}"
    assert len(judge.requests) == 9 and result["judge_stats"]["judge/calls"] == 9  # each distinct response graded once
