"""`tagshift annotate`: people annotating in the browser must never lose an answer (a killed
server keeps everything answered, a restart continues where each annotator stopped), must never
overwrite each other, and what they accepted must come out as a corpus train reads, span for
span. Driven through the API with FastAPI's TestClient, and once through a live server that is
killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="tagshift annotate needs fastapi (pip install fastapi uvicorn)")
pytest.importorskip("uvicorn")
import httpx
from fastapi.testclient import TestClient

import tagshift.cli.annotate  # noqa: F401  (registers `annotate` on the app)
from tagshift.annotate.app import create_app
from tagshift.annotate.export import ExportReport, export_annotations
from tagshift.annotate.store import AnnotationStore
from tagshift.annotate.tasks import build_tasks, task_id
from tagshift.bundle import load_source
from tagshift.corpus import Corpus, read_corpus, write_corpus
from tagshift.patterns import Matcher, read_patterns

REPO = Path(__file__).resolve().parents[1]
NEWS = REPO / "demo" / "news.txt"
MODEL = Path(__file__).parent / "fixtures" / "bilstm-0.1.0"  # types LOC MISC ORG PER
LABELS = ["PER", "ORG", "LOC"]


@pytest.fixture(scope="module")
def model():
    return load_source(MODEL)


def client(tasks, db: Path, labels=LABELS) -> TestClient:
    """A fresh app and store on `db`: a new one on the same file is a restarted server."""
    return TestClient(create_app(tasks, AnnotationStore(db), labels))


def answer(api: TestClient, who: str, task: dict, kind: str = "accept", spans=()) -> dict:
    response = api.post("/api/answer", json={"task_id": task["id"], "annotator": who, "answer": kind,
                                            "spans": [{"token_start": s, "token_end": e, "label": l}
                                                      for s, e, l in spans]})
    assert response.status_code == 200, response.text
    return response.json()


def next_task(api: TestClient, who: str) -> dict:
    response = api.get("/api/next", params={"annotator": who})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_is_self_contained_and_has_its_stable_ids(tmp_path):
    page = client(build_tasks(NEWS, LABELS), tmp_path / "a.sqlite").get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for anchor in ('id="accept"', 'id="reject"', 'id="skip"', 'id="undo"', 'id="progress"', 'id="tokens"',
                   'id="labels"', 'id="message"', 'id="annotator-form"', 'id="annotator-input"', "data-i"):
        assert anchor in page.text
    assert "src=" not in page.text and "href=" not in page.text and "@import" not in page.text  # no CDN, no assets


def test_answers_survive_a_restart_and_the_next_task_skips_them(tmp_path):
    """Each answer is committed as it is given: a new app and store on the same file (a restarted
    server) know it, and the annotator goes on from the first task they have not answered."""
    tasks = build_tasks(NEWS, LABELS)
    assert [t.source for t in tasks] == ["news.txt:1 #1", "news.txt:2 #1", "news.txt:3 #1"]
    db = tmp_path / "answers.sqlite"
    api = client(tasks, db)
    first = next_task(api, "ana")
    assert first["task"]["id"] == tasks[0].id and first["progress"] == {"answered": 0, "total": 3}
    after = answer(api, "ana", first["task"], "accept", [(0, 1, "PER")])
    assert after["task"]["id"] == tasks[1].id and after["progress"]["answered"] == 1
    answer(api, "ana", after["task"], "skip")

    restarted = client(build_tasks(NEWS, LABELS), db)
    resumed = next_task(restarted, "ana")
    assert resumed["task"]["id"] == tasks[2].id and resumed["progress"] == {"answered": 2, "total": 3}
    assert next_task(restarted, "ben")["task"]["id"] == tasks[0].id  # another annotator starts at the start
    done = answer(restarted, "ana", resumed["task"], "reject")
    assert done["task"] is None and done["progress"] == {"answered": 3, "total": 3}
    stored = AnnotationStore(db).answers("ana")
    assert [(a.task_id, a.answer) for a in stored] == [(tasks[0].id, "accept"), (tasks[1].id, "skip"),
                                                       (tasks[2].id, "reject")]
    assert stored[0].spans == [{"start": 0, "end": 13, "label": "PER", "token_start": 0, "token_end": 1}]
    assert stored[0].text == tasks[0].text and stored[0].source == "news.txt:1 #1"


def test_task_ids_do_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    ids = [t.id for t in build_tasks(NEWS, LABELS)]
    monkeypatch.chdir(NEWS.parent)
    assert [t.id for t in build_tasks(Path("news.txt"), LABELS)] == ids
    assert ids[0] == task_id("news.txt:1 #1", NEWS.read_text().splitlines()[0])


def test_two_annotators_answering_one_task_both_keep_their_answers(tmp_path):
    tasks = build_tasks(NEWS, LABELS)
    db = tmp_path / "answers.sqlite"
    api = client(tasks, db)
    task = next_task(api, "ana")["task"]
    answer(api, "ana", task, "accept", [(0, 1, "PER")])
    answer(api, "ben", task, "accept", [(0, 1, "PER"), (6, 6, "LOC")])
    rows = {(a.annotator, a.task_id): [s["label"] for s in a.spans] for a in AnnotationStore(db).answers()}
    assert rows == {("ana", tasks[0].id): ["PER"], ("ben", tasks[0].id): ["PER", "LOC"]}
    assert next_task(api, "ana")["progress"]["answered"] == 1 and next_task(api, "ben")["progress"]["answered"] == 1
    # export: each annotator's own, and without --annotator the latest decision, with the conflict counted
    for who, labels in (("ana", ["PER"]), ("ben", ["PER", "LOC"])):
        export_annotations(AnnotationStore(db), tmp_path / f"{who}.jsonl", "jsonl", who)
        assert [s.label for s in read_corpus(tmp_path / f"{who}.jsonl").sentences[0].spans] == labels
    report = export_annotations(AnnotationStore(db), tmp_path / "all.jsonl", "jsonl")
    assert report.conflicts == [tasks[0].id] and report.accepted == 1
    assert [s.label for s in read_corpus(tmp_path / "all.jsonl").sentences[0].spans] == ["PER", "LOC"]


def test_undo_removes_only_the_last_answer_of_that_annotator(tmp_path):
    tasks = build_tasks(NEWS, LABELS)
    db = tmp_path / "answers.sqlite"
    api = client(tasks, db)
    t0 = next_task(api, "ana")["task"]
    t1 = answer(api, "ana", t0, "accept", [(0, 1, "PER")])["task"]
    answer(api, "ana", t1, "accept", [(2, 2, "ORG")])
    answer(api, "ben", t0, "reject")

    undone = api.post("/api/undo", json={"annotator": "ana"}).json()
    assert undone["undone"] == {"task_id": tasks[1].id, "answer": "accept"}
    assert undone["task"]["id"] == tasks[1].id  # back to that task, showing the answer that was removed
    assert [(s["token_start"], s["token_end"], s["label"]) for s in undone["task"]["spans"]] == [(2, 2, "ORG")]
    assert undone["progress"]["answered"] == 1
    left = {(a.annotator, a.task_id, a.answer) for a in AnnotationStore(db).answers()}
    assert left == {("ana", tasks[0].id, "accept"), ("ben", tasks[0].id, "reject")}
    assert next_task(api, "ana")["task"]["id"] == tasks[1].id

    api.post("/api/undo", json={"annotator": "ben"})
    assert {(a.annotator, a.task_id) for a in AnnotationStore(db).answers()} == {("ana", tasks[0].id)}
    assert api.post("/api/undo", json={"annotator": "ben"}).json()["undone"] is None  # nothing left to undo
    # an answer to a sentence of other input (the same database served another file) is not undone from here
    AnnotationStore(db).add("elsewhere", "ana", "accept", [], "Other text.", [], "other.txt:1 #1")
    assert api.post("/api/undo", json={"annotator": "ana"}).json()["undone"]["task_id"] == tasks[0].id
    assert [a.task_id for a in AnnotationStore(db).answers()] == ["elsewhere"]


def test_export_gives_a_corpus_with_exactly_the_accepted_spans(tmp_path):
    tasks = build_tasks(NEWS, LABELS)
    db = tmp_path / "answers.sqlite"
    api = client(tasks, db)
    given = {tasks[0].id: [(0, 1, "PER"), (3, 4, "PER"), (6, 6, "LOC"), (12, 13, "ORG")],
             tasks[2].id: [(1, 2, "ORG"), (6, 6, "LOC")]}
    answer(api, "ana", next_task(api, "ana")["task"], "accept", given[tasks[0].id])
    answer(api, "ana", next_task(api, "ana")["task"], "reject", [(2, 2, "ORG")])  # rejected: not exported
    answer(api, "ana", next_task(api, "ana")["task"], "accept", given[tasks[2].id])
    answer(api, "ben", {"id": tasks[1].id}, "skip")

    jsonl, conll = tmp_path / "out.jsonl", tmp_path / "out.conll"
    report = ExportReport()
    export_annotations(AnnotationStore(db, create=False), jsonl, "jsonl", report=report)
    assert (report.tasks, report.accepted, report.rejected, report.skipped, report.conflicts) == (3, 2, 1, 0, [])
    export_annotations(AnnotationStore(db, create=False), conll, "conll")
    by_text = {t.text: t for t in tasks}
    read_back = read_corpus(jsonl).sentences
    assert [s.text for s in read_back] == [tasks[0].text, tasks[2].text]
    for sentence in read_back:
        task = by_text[sentence.text]
        assert sentence.tokens == task.tokens and sentence.offsets == task.offsets
        assert [(s.start, s.end - 1, s.label) for s in sentence.spans] == given[task.id]
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for record in records:  # character offsets index the text
        task = by_text[record["text"]]
        assert [record["text"][s["start"]:s["end"]] for s in record["spans"]] == \
               [" ".join(task.tokens[a:b + 1]) for a, b, _ in given[task.id]]
        assert record["meta"]["annotator"] == "ana" and record["meta"]["task"] == task.id
    columns = read_corpus(conll).sentences
    assert [s.tokens for s in columns] == [s.tokens for s in read_back]
    assert [s.spans for s in columns] == [s.spans for s in read_back]


def test_model_suggestions_are_the_models_predictions(tmp_path, model):
    tasks = build_tasks(NEWS, ["LOC", "MISC", "ORG", "PER"], model=model)
    predicted = model.predict([t.tokens for t in tasks])
    assert sum(len(p.entities) for p in predicted) >= 3  # a comparison of something
    for task, tagged in zip(tasks, predicted):
        assert [(s.start, s.end, s.label, s.confidence) for s in task.suggestions] == \
               [(e.start, e.end, e.label, e.confidence) for e in tagged.entities]
        assert {s.origin for s in task.suggestions} <= {"model"}
    shown = next_task(client(tasks, tmp_path / "a.sqlite", ["LOC", "MISC", "ORG", "PER"]), "ana")["task"]
    assert [(s["token_start"], s["token_end"] + 1, s["label"]) for s in shown["spans"]] == \
           [(e.start, e.end, e.label) for e in predicted[0].entities]
    # only --labels are suggested
    only_per = build_tasks(NEWS, ["PER"], model=model)
    assert [[(s.start, s.label) for s in t.suggestions] for t in only_per] == \
           [[(e.start, e.label) for e in p.entities if e.label == "PER"] for p in predicted]


def test_pattern_matches_are_suggested_and_win_over_the_model(tmp_path, model):
    patterns = tmp_path / "p.jsonl"
    patterns.write_text("\n".join(json.dumps(r) for r in [
        {"label": "LOC", "pattern": "Paris"},
        {"label": "ORG", "pattern": [{"LOWER": "siemens"}]},
        {"label": "ORG", "pattern": "United Nations"},
        {"label": "MISC", "pattern": "Monday"},  # not in --labels: never suggested
    ]) + "\n")
    matcher = Matcher(read_patterns(patterns))
    alone = build_tasks(NEWS, LABELS, matcher=matcher)
    assert [[(s.start, s.end, s.label, s.origin) for s in t.suggestions] for t in alone] == [
        [(6, 7, "LOC", "pattern")], [(2, 3, "ORG", "pattern")], [(1, 3, "ORG", "pattern")]]

    both = build_tasks(NEWS, LABELS, model=model, matcher=matcher)
    for task, patterned, tagged in zip(both, alone, model.predict([t.tokens for t in alone])):
        matches = [(s.start, s.end, s.label) for s in patterned.suggestions]
        kept = [(e.start, e.end, e.label) for e in tagged.entities if e.label in LABELS
                and not any(e.start < b and a < e.end for a, b, _ in matches)]
        assert sorted((s.start, s.end, s.label) for s in task.suggestions) == sorted(matches + kept)


def test_uncertain_order_puts_the_least_confident_sentences_first(model):
    tasks = build_tasks(NEWS, ["LOC", "MISC", "ORG", "PER"], model=model, order="uncertain")
    predicted = model.predict([t.tokens for t in build_tasks(NEWS, LABELS)])
    lowest = [min((e.confidence for e in p.entities), default=None) for p in predicted]
    with_entities = sorted((c, i) for i, c in enumerate(lowest) if c is not None)
    expected = [i for _, i in with_entities] + [i for i, c in enumerate(lowest) if c is None]
    assert [t.source for t in tasks] == [f"news.txt:{i + 1} #1" for i in expected]
    assert [t.uncertainty for t in tasks] == [lowest[i] for i in expected]


def test_a_corpus_is_corrected_with_its_own_spans_suggested(tmp_path):
    corpus = read_corpus(REPO / "data" / "wikigold" / "wikigold.slice.conll")
    small = tmp_path / "gold.conll"
    write_corpus(Corpus(corpus.sentences[:6]), small, "conll")
    tasks = build_tasks(small, ["PER", "ORG", "LOC"])
    assert len(tasks) == 6
    for task, sentence in zip(tasks, corpus.sentences[:6]):
        assert task.tokens == sentence.tokens and task.text == " ".join(sentence.tokens)
        assert [(s.start, s.end, s.label) for s in task.suggestions] == \
               [tuple(s) for s in sentence.spans if s.label != "MISC"]


def test_bad_answers_are_refused_with_one_readable_line(tmp_path):
    tasks = build_tasks(NEWS, LABELS)
    api = client(tasks, tmp_path / "a.sqlite")
    task = {"task_id": tasks[0].id, "annotator": "ana", "answer": "accept"}
    cases = [
        ({**task, "spans": [{"token_start": 0, "token_end": 1, "label": "GPE"}]}, "not one of this session's labels"),
        ({**task, "spans": [{"token_start": 0, "token_end": 2, "label": "PER"},
                            {"token_start": 2, "token_end": 3, "label": "ORG"}]}, "overlap"),
        ({**task, "spans": [{"token_start": 5, "token_end": 99, "label": "PER"}]}, "outside the sentence"),
        ({**task, "answer": "maybe"}, "give one of accept, reject, skip"),
        ({**task, "annotator": "  "}, "give an annotator name"),
        ({**task, "task_id": "nope"}, "no task 'nope'"),
        ({"annotator": "ana"}, "task_id: Field required"),
    ]
    for body, message in cases:
        response = api.post("/api/answer", json=body)
        assert 400 <= response.status_code < 500
        error = response.json()["error"]
        assert message in error and "\n" not in error and "Traceback" not in error
    assert AnnotationStore(tmp_path / "a.sqlite").answers() == []  # nothing half-stored


def test_concurrent_answers_are_all_stored(tmp_path):
    tasks = build_tasks(NEWS, LABELS)
    db = tmp_path / "a.sqlite"
    app = create_app(tasks, AnnotationStore(db), LABELS)
    errors = []

    def annotate(who: str) -> None:
        api = TestClient(app)
        try:
            for _ in range(2):  # answer all three, twice over (a second answer replaces the first)
                for task in tasks:
                    answer(api, who, {"id": task.id}, "accept", [(0, 0, "PER")])
        except Exception as err:  # noqa: BLE001  (reported below)
            errors.append(err)

    threads = [threading.Thread(target=annotate, args=(f"a{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    stored = AnnotationStore(db).answers()
    assert len(stored) == 18 and len({(a.annotator, a.task_id) for a in stored}) == 18


def test_bad_options_are_one_line_errors(cli, tmp_path):
    db = tmp_path / "a.sqlite"
    cases = [
        (["annotate", NEWS, "--labels", "", "--db", db], "--labels"),
        (["annotate", NEWS, "--labels", "PER,,ORG", "--db", db], "separated by commas"),
        (["annotate", NEWS, "--labels", "PER,New Type", "--db", db], "holds whitespace"),
        (["annotate", NEWS, "--labels", "PER", "--db", tmp_path], "is a directory"),
        (["annotate", NEWS, "--labels", "PER", "--db", tmp_path / "no" / "a.sqlite"], "does not exist"),
        (["annotate", NEWS, "--labels", "Disease,Drug", "--model", MODEL, "--db", db],
         "has the types LOC, MISC, ORG, PER, none of --labels Disease,Drug"),
        (["annotate", NEWS, "--labels", "PER", "--order", "uncertain", "--db", db], "give --model too"),
        (["annotate", tmp_path / "missing.txt", "--labels", "PER", "--db", db], "no such file"),
        (["annotate", "export", "--db", tmp_path / "none.sqlite", "--out", tmp_path / "o.jsonl"], "no such file"),
        (["annotate", "export", "--db", db, "--out", tmp_path / "o.txt"], "cannot tell the format"),
    ]
    (tmp_path / "not.sqlite").write_text("hello, not a database\n" * 100)
    cases.append((["annotate", NEWS, "--labels", "PER", "--db", tmp_path / "not.sqlite"], "cannot use it"))
    for args, message in cases:
        result = cli(*args)
        assert result.exit_code == 1, (args, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, result.stderr)
    AnnotationStore(db)  # an empty store: nothing to export, said in one line
    result = cli("annotate", "export", "--db", db, "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 1 and "no accepted answers" in result.stderr and not (tmp_path / "o.jsonl").exists()


def test_export_command_writes_the_corpus(cli, tmp_path):
    tasks = build_tasks(NEWS, LABELS)
    db = tmp_path / "a.sqlite"
    api = client(tasks, db)
    answer(api, "ana", {"id": tasks[0].id}, "accept", [(0, 1, "PER")])
    answer(api, "ben", {"id": tasks[0].id}, "reject")
    result = cli("annotate", "export", "--db", db, "--out", tmp_path / "o.conll", "--annotator", "ana")
    assert result.exit_code == 0, result.stderr
    assert "wrote" in result.stderr
    written = read_corpus(tmp_path / "o.conll").sentences
    assert [(s.tokens, [tuple(x) for x in s.spans]) for s in written] == [(tasks[0].tokens, [(0, 2, "PER")])]
    result = cli("annotate", "export", "--db", db, "--out", tmp_path / "all.jsonl")  # ben's reject is the latest
    assert result.exit_code == 1 and "no accepted answers" in result.stderr and "1 rejected" in result.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start(db: Path, port: int) -> subprocess.Popen:
    code = "import tagshift.cli.annotate; from tagshift.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, "annotate", str(NEWS), "--labels", ",".join(LABELS),
                             "--db", str(db), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_ready(process: subprocess.Popen, url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"tagshift annotate exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/api/config", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"tagshift annotate did not answer on {url} within {seconds} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)
    process.stderr.close()


def test_a_killed_server_loses_no_answer_and_a_restart_continues(tmp_path):
    """The whole path, over a socket: answers posted to a live `tagshift annotate`, the process
    killed with SIGKILL (no shutdown, no flush), restarted on the same database."""
    db = tmp_path / "answers.sqlite"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _start(db, port)
    try:
        _wait_ready(process, url)
        assert "<html" in httpx.get(url + "/").text
        task = httpx.get(url + "/api/next", params={"annotator": "ana"}).json()["task"]
        for kind, spans in (("accept", [{"token_start": 0, "token_end": 1, "label": "PER"}]), ("skip", [])):
            reply = httpx.post(url + "/api/answer", json={"task_id": task["id"], "annotator": "ana",
                                                          "answer": kind, "spans": spans})
            assert reply.status_code == 200, reply.text
            task = reply.json()["task"]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        _stop(process)

    process = _start(db, port)
    try:
        _wait_ready(process, url)
        resumed = httpx.get(url + "/api/next", params={"annotator": "ana"}).json()
        assert resumed["progress"] == {"answered": 2, "total": 3} and resumed["task"]["id"] == task["id"]
    finally:
        _stop(process)
    stored = AnnotationStore(db).answers()
    assert [(a.answer, a.spans) for a in stored] == [
        ("accept", [{"start": 0, "end": 13, "label": "PER", "token_start": 0, "token_end": 1}]), ("skip", [])]
