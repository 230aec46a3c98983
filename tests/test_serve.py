"""`nlp-lstm serve` over real HTTP: a uvicorn server on 127.0.0.1 (in this process, on a
thread) and an httpx client. The answers are those of `nlp-lstm tag`, `score` and
`generate` on the same input; every error is a status with a one-line JSON message."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

import nlp_lstm  # noqa: E402
from helpers.runs import run_cli  # noqa: E402
from helpers.serve import jsonl, thread_server  # noqa: E402
from nlp_lstm.serve.app import create_app  # noqa: E402
from nlp_lstm.serve.settings import ServeSettings  # noqa: E402

LINES = [
    "the old cat saw a dog near the river .",
    "",
    "Alice likes the red house .",
    "every happy man chased Bob with a small bird .",
    "  the report ,  ( London ) ... xylophone !  ",
]
PARAGRAPHS = ["The cat saw a dog. Alice likes the red house. Bob reads a report.", "", "a man found London ."]


def served(run_dir, **options):
    return thread_server(create_app(ServeSettings(model=str(run_dir / "model"), device="cpu", **options)))


@pytest.fixture(scope="module")
def tagger_url(trained_tagger):
    with served(trained_tagger["run_dir"]) as url:
        yield url


@pytest.fixture(scope="module")
def lm_url(trained_lm):
    with served(trained_lm["run_dir"]) as url:
        yield url


def post(url: str, body, **kwargs) -> httpx.Response:
    return httpx.post(url, json=body, timeout=60, **kwargs)


def cli_records(model, tmp_path, lines, *options):
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli(
        ["tag", str(model), str(source), "--input", "text", "--format", "jsonl", "--device", "cpu", *options]
    )
    assert proc.returncode == 0, proc.stderr
    return jsonl(proc.stdout)


# ------------------------------------------------------------------ answers
def test_health_names_the_tagger_its_labels_and_precision(tagger_url, trained_tagger):
    answer = httpx.get(tagger_url + "/health").json()
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    assert answer["status"] == "ok" and answer["kind"] == "tagger"
    assert answer["labels"] == tagger.labels and answer["spans"] is True and answer["crf"] is True
    assert answer["precision"] == tagger.precision


def test_tag_answers_are_the_records_of_nlp_lstm_tag(tagger_url, trained_tagger, tmp_path):
    model = trained_tagger["run_dir"] / "model"
    answer = post(tagger_url + "/tag", {"texts": LINES})
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"] == cli_records(model, tmp_path, LINES)
    assert any(r.get("spans") for r in answer.json()["results"])  # the chunker found chunks


def test_split_sentences_nbest_and_marginals_match_nlp_lstm_tag(tagger_url, trained_tagger, tmp_path):
    model = trained_tagger["run_dir"] / "model"
    answer = post(
        tagger_url + "/tag", {"texts": PARAGRAPHS, "split_sentences": True, "nbest": 3, "marginals": True}
    ).json()["results"]
    expected = cli_records(model, tmp_path, PARAGRAPHS, "--split-sentences", "--nbest", "3", "--marginals")
    assert [len(r) for r in answer] == [3, 1, 1]  # one result per input: its sentences' records
    assert [record for per_input in answer for record in per_input] == expected


def test_token_lists_are_tagged_as_conll_input(tagger_url, trained_tagger, tmp_path):
    sentences = [["the", "old", "cat", "saw", "Paris", "."], ["Bob", "reads", "a", "report", "."]]
    answer = post(tagger_url + "/tag", {"tokens": sentences}).json()["results"]
    source = tmp_path / "in.conll"
    source.write_text("".join("\n".join(s) + "\n\n" for s in sentences), encoding="utf-8")
    proc = run_cli(
        [
            "tag",
            str(trained_tagger["run_dir"] / "model"),
            str(source),
            "--input",
            "conll",
            "--format",
            "jsonl",
            "--device",
            "cpu",
        ]
    )
    # the same records; only "line" differs (the request's input number, the file's first word line)
    assert [r["line"] for r in answer] == [1, 2]
    assert [{**r, "line": 0} for r in answer] == [{**r, "line": 0} for r in jsonl(proc.stdout)]


def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(trained_tagger):
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    texts = [
        f"{w} saw the {n} near {c} ."
        for w, n, c in zip(
            ["Alice", "Bob", "the man"] * 10, ["cat", "dog", "bird", "river", "house"] * 6, ["Paris", "London"] * 15
        )
    ]
    expected = [[t["tag"] for t in tokens] for tokens in tagger.tag(texts)]

    async def clients(url):
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(url + "/tag", json={"texts": [t]}) for t in texts))

    with served(trained_tagger["run_dir"], max_wait_ms=500) as url:
        answers = asyncio.run(clients(url))
        batches = metric_samples(url, "nlp_lstm_batch_sentences")
    assert [a.status_code for a in answers] == [200] * len(texts)
    assert [[t["tag"] for t in a.json()["results"][0]["tokens"]] for a in answers] == expected
    assert batches["nlp_lstm_batch_sentences_sum"] == len(texts)
    assert batches["nlp_lstm_batch_sentences_count"] < len(texts) / 2  # requests were batched together


def test_a_sentence_longer_than_a_batch_is_tagged_whole(trained_tagger):
    long = " ".join(["the old cat saw a dog near the river ."] * 60)  # 600 tokens
    with served(trained_tagger["run_dir"], max_batch_tokens=50, max_batch_size=4) as url:
        answer = post(url + "/tag", {"texts": [long, "Bob reads .", long]})
    assert answer.status_code == 200
    assert [len(r["tokens"]) for r in answer.json()["results"]] == [600, 3, 600]


def test_lm_scores_each_text_as_nlp_lstm_score_does(lm_url, trained_lm, tmp_path):
    texts = ["the cat sat on the mat .", "a dog found the bridge again ."]
    answer = post(lm_url + "/score", {"texts": texts}).json()
    for text, result in zip(texts, answer["results"]):
        (tmp_path / "one.txt").write_text(text + "\n")
        proc = run_cli(["score", str(trained_lm["run_dir"] / "model"), str(tmp_path / "one.txt"), "--device", "cpu"])
        expected = json.loads(proc.stdout)
        del expected["file"]
        assert {k: v for k, v in result.items() if k != "nll"} == pytest.approx(expected, rel=1e-9)
        assert result["nll"] == pytest.approx(result["loss"] * result["tokens"])
    total = answer["total"]
    assert total["tokens"] == sum(r["tokens"] for r in answer["results"])
    assert total["nll"] == pytest.approx(sum(r["nll"] for r in answer["results"]))


def test_lm_generates_what_nlp_lstm_generate_does(lm_url, trained_lm):
    body = {"prompt": "the old man", "max_tokens": 12, "temperature": 0.8, "top_p": 0.9, "seed": 4}
    answer = post(lm_url + "/generate", body)
    proc = run_cli(
        [
            "generate",
            str(trained_lm["run_dir"] / "model"),
            "--prompt",
            "the old man",
            "--max-tokens",
            "12",
            "--temperature",
            "0.8",
            "--top-p",
            "0.9",
            "--seed",
            "4",
            "--device",
            "cpu",
        ]
    )
    assert answer.status_code == 200 and answer.json()["text"] == proc.stdout.strip()
    health = httpx.get(lm_url + "/health").json()
    assert health["kind"] == "lm" and health["precision"] == "fp32"


# ------------------------------------------------------------------ errors
BAD_TAG_BODIES = [
    (b'{"texts": [', "not JSON"),
    (b"\xff\xfe", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object"),
    (b"{}", 'either "texts"'),
    (b'{"texts": ["a"], "tokens": [["a"]]}', "not both"),
    (b'{"texts": "one string"}', "texts must be a list of strings; got a string"),
    (b'{"texts": ["fine", 3]}', "texts[1] must be a string; got a number"),
    (b'{"tokens": [["a"], "b"]}', "tokens[1] must be a list of strings"),
    (b'{"tokens": [["a", ""]]}', "tokens[0][1] is empty"),
    (b'{"texts": ["a"], "nbest": 0}', "nbest must be in [1, 100]; got 0"),
    (b'{"texts": ["a"], "nbest": true}', "nbest must be an integer"),
    (b'{"texts": ["a"], "marginals": "yes"}', "marginals must be true or false"),
    (b'{"tokens": [["a"]], "split_sentences": true}', "split_sentences splits raw text"),
    (b'{"texts": ["a"], "text": "a"}', "unknown field 'text'"),
]


@pytest.mark.parametrize("body, message", BAD_TAG_BODIES, ids=[m for _, m in BAD_TAG_BODIES])
def test_a_malformed_request_is_400_with_one_line_saying_what(tagger_url, body, message):
    answer = httpx.post(tagger_url + "/tag", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert message in error and "\n" not in error


@pytest.mark.parametrize(
    "body, message",
    [
        ({"prompt": 3}, "prompt must be a string"),
        ({"max_tokens": 0}, "max_tokens must be in [1, 2048]"),
        ({"max_tokens": 10**6}, "max_tokens must be in [1, 2048]"),
        ({"temperature": -1}, "temperature must be >= 0"),
        ({"top_p": 1.5}, "top_p must be in (0, 1]"),
        ({"seed": "x"}, "seed must be an integer"),
        ({"texts": ["a"]}, "unknown field 'texts'"),
    ],
)
def test_a_bad_generate_request_is_400(lm_url, body, message):
    answer = post(lm_url + "/generate", body)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_routes_of_the_other_kind_and_wrong_methods_are_json_errors(tagger_url, lm_url):
    answer = post(tagger_url + "/score", {"texts": ["a"]})
    assert answer.status_code == 404 and "it answers /tag, not /score" in answer.json()["error"]
    answer = post(lm_url + "/tag", {"texts": ["a"]})
    assert answer.status_code == 404 and "/score, /generate" in answer.json()["error"]
    answer = httpx.get(tagger_url + "/tag")
    assert answer.status_code == 405 and answer.json()["error"] == "/tag takes POST, not GET"
    assert httpx.get(tagger_url + "/nothing/here").status_code == 404


def test_a_body_over_the_limit_is_413_declared_or_streamed(trained_tagger):
    body = json.dumps({"texts": ["the cat saw a dog ."] * 4000}).encode()  # about 100 kB

    def chunks():
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    with served(trained_tagger["run_dir"], max_body_mb=0.05) as url:
        declared = httpx.post(url + "/tag", content=body)
        streamed = httpx.post(url + "/tag", content=chunks())  # chunked: no Content-Length
        fine = post(url + "/tag", {"texts": ["the cat saw a dog ."]})
    for answer in (declared, streamed):
        assert answer.status_code == 413 and "--max-body-mb" in answer.json()["error"]
    assert fine.status_code == 200


def test_more_sentences_than_the_queue_holds_is_413(trained_tagger):
    with served(trained_tagger["run_dir"], max_queue=5) as url:
        answer = post(url + "/tag", {"texts": ["a cat ."] * 6})
        fine = post(url + "/tag", {"texts": ["a cat ."] * 5})
    assert answer.status_code == 413 and "at most 5 in one request (--max-queue)" in answer.json()["error"]
    assert fine.status_code == 200


def test_a_full_queue_is_503_with_retry_after_and_the_others_are_answered(trained_tagger):
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    long = " ".join(["every happy man chased Bob with a small bird ."] * 80)
    expected = [t["tag"] for t in tagger.tag([long])[0]]

    async def clients(url):
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(url + "/tag", json={"texts": [long] * 3}) for _ in range(12)))

    # One sentence a batch: while a request's sentences wait, no other request fits.
    with served(trained_tagger["run_dir"], max_queue=3, max_batch_size=1) as url:
        answers = asyncio.run(clients(url))
        after = post(url + "/tag", {"texts": [long]})
    statuses = [a.status_code for a in answers]
    assert 503 in statuses and 200 in statuses and set(statuses) <= {200, 503}
    for answer in answers:
        if answer.status_code == 503:
            assert int(answer.headers["Retry-After"]) >= 1 and "queue is full" in answer.json()["error"]
        else:
            assert [[t["tag"] for t in r["tokens"]] for r in answer.json()["results"]] == [expected] * 3
    assert after.status_code == 200  # the queue drained: served again


def test_a_failure_inside_the_model_is_500_for_its_request_only(trained_tagger):
    tagger = nlp_lstm.load(trained_tagger["run_dir"] / "model", device="cpu")
    poison = tagger.vocabs.words.get_stoi()["committee"]
    forward = tagger.model.forward

    def failing_forward(batch):  # a fault inside the model, for sentences holding one word
        if bool((batch.words == poison).any()):
            raise RuntimeError("injected fault")
        return forward(batch)

    tagger.model.forward = failing_forward

    async def together(url):
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(
                client.post(url + "/tag", json={"texts": ["the committee saw a dog ."]}),
                client.post(url + "/tag", json={"texts": ["Alice saw a dog ."]}),
            )

    # a long wait puts both requests in one batch: the good one must still be answered
    app = create_app(ServeSettings(model="unused", max_wait_ms=300), model=tagger)
    with thread_server(app) as url:
        failed, good = asyncio.run(together(url))
        after = post(url + "/tag", {"texts": ["Bob reads a report ."]})
        counts = metric_samples(url, "nlp_lstm_requests")
    assert failed.status_code == 500 and "the model failed" in failed.json()["error"]
    assert good.status_code == 200 and len(good.json()["results"][0]["tokens"]) == 5
    assert after.status_code == 200
    assert counts[("nlp_lstm_requests_total", "/tag", "500")] == 1
    assert counts[("nlp_lstm_requests_total", "/tag", "200")] == 2


# ------------------------------------------------------------------ metrics, CORS, page
def metric_samples(url: str, family: str) -> dict:
    """name (and route, status labels where present) -> value, for one metric family."""
    out = {}
    for metrics in text_string_to_metric_families(httpx.get(url + "/metrics").text):
        if metrics.name != family:
            continue
        for s in metrics.samples:
            labels = tuple(s.labels[k] for k in ("route", "status") if k in s.labels)
            if "le" not in s.labels:
                out[(s.name, *labels) if labels else s.name] = s.value
    return out


def test_metrics_count_requests_latency_batches_and_queue(trained_tagger):
    with served(trained_tagger["run_dir"]) as url:
        post(url + "/tag", {"texts": ["a cat .", "Bob reads ."]})
        post(url + "/tag", {"texts": 3})
        text = httpx.get(url + "/metrics").text
        requests = metric_samples(url, "nlp_lstm_requests")
    assert requests[("nlp_lstm_requests_total", "/tag", "200")] == 1
    assert requests[("nlp_lstm_requests_total", "/tag", "400")] == 1
    assert 'nlp_lstm_request_seconds_bucket{le="0.5",route="/tag"}' in text
    assert "nlp_lstm_batch_sentences_sum 2.0" in text and "nlp_lstm_batch_tokens_count 1.0" in text
    assert "nlp_lstm_queue_depth 0.0" in text


def test_no_cors_unless_asked(tagger_url, trained_tagger):
    origin = {"Origin": "https://example.org"}
    assert "access-control-allow-origin" not in httpx.get(tagger_url + "/health", headers=origin).headers
    with served(trained_tagger["run_dir"], cors=["https://example.org"]) as url:
        answer = httpx.get(url + "/health", headers=origin)
    assert answer.headers["access-control-allow-origin"] == "https://example.org"


def test_the_page_is_self_contained(tagger_url):
    answer = httpx.get(tagger_url + "/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    for external in ("http://", "https://", "//cdn", "src="):
        assert external not in answer.text, external
