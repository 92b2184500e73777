"""Annotation tasks: one sentence each, from raw text or a corpus, with the spans suggested
for it (a model's predictions, pattern matches, or a corpus's own spans to correct), in the
order they are shown.

A task's id is a hash of its text and where it is (the file's name relative to the input, the
line or page, the sentence's number in that document), so the same input gives the same ids
from any working directory, and a restarted server knows what was answered."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tagshift.corpus import Sentence, read_corpus
from tagshift.errors import TagshiftError, quoted
from tagshift.patterns import Matcher
from tagshift.rawtext import RawReport, read_raw

Order = Literal["input", "uncertain"]
ORDERS: tuple[Order, ...] = ("input", "uncertain")
BATCH = 64  # sentences the model tags at once
_CORPUS_KEYS = ("spans", "entities", "label", "labels", "tags", "ner_tags", "tokens", "annotations")


@dataclass(frozen=True)
class Suggestion:
    """A span offered for a task, over tokens [start, end), with where it came from (model,
    pattern or corpus) and the model's confidence in it, when it has one."""

    start: int
    end: int
    label: str
    origin: str
    confidence: float | None = None


@dataclass(frozen=True)
class Task:
    """One sentence to annotate: its text, tokens with character offsets into the text, where
    it came from, and the spans suggested for it."""

    id: str
    text: str
    tokens: list[str]
    offsets: list[tuple[int, int]]
    source: str
    suggestions: list[Suggestion] = field(default_factory=list)

    def token_records(self) -> list[dict[str, Any]]:
        return [{"text": t, "start": s, "end": e} for t, (s, e) in zip(self.tokens, self.offsets)]

    def span_record(self, start: int, end: int, label: str) -> dict[str, Any]:
        """A span over tokens [start, end) as stored and exported: character offsets into the
        text and token indices, `token_end` inclusive as Prodigy writes it."""
        return {"start": self.offsets[start][0], "end": self.offsets[end - 1][1], "label": label,
                "token_start": start, "token_end": end - 1}

    @property
    def uncertainty(self) -> float | None:
        """The lowest confidence among the model's suggestions; None without any."""
        found = [s.confidence for s in self.suggestions if s.origin == "model" and s.confidence is not None]
        return min(found) if found else None


def task_id(source: str, text: str) -> str:
    """A task's stable id: the hash of where the sentence is and its text.

    >>> task_id("news.txt:1 #1", "Angela Merkel met Emmanuel Macron.")
    '95d517c3f025eeb5'
    """
    return hashlib.sha256(f"{source}\n{text}".encode()).hexdigest()[:16]


def parse_labels(value: str) -> list[str]:
    """`--labels PER,ORG,LOC` as a list; empty names, names with spaces and repeats are refused.

    >>> parse_labels("PER, ORG,LOC")
    ['PER', 'ORG', 'LOC']
    """
    labels = [label.strip() for label in value.split(",")]
    if not value.strip() or not all(labels):
        raise TagshiftError(f"--labels {quoted(value)}: give entity types separated by commas, e.g. --labels PER,ORG,LOC")
    for label in labels:
        if any(c.isspace() for c in label):
            raise TagshiftError(f"--labels: {quoted(label)} holds whitespace; a type name has none "
                                f"(e.g. {quoted('_'.join(label.split()))})")
    repeated = sorted(label for label, n in Counter(labels).items() if n > 1)
    if repeated:
        raise TagshiftError(f"--labels: {', '.join(repeated)} given twice; give each type once")
    return labels


def check_suggesters(labels: Sequence[str], model_name: str | None, model_types: Sequence[str] | None,
                     pattern_labels: Sequence[str] | None) -> list[str]:
    """Refuse a model or patterns that could suggest none of `labels` (one of them is surely
    the wrong file); return warnings for the types they have that will not be suggested."""
    warnings = []
    for what, types in ((f"--model {model_name}", model_types), ("--patterns", pattern_labels)):
        if types is None:
            continue
        if not set(types) & set(labels):
            raise TagshiftError(f"{what} has the types {', '.join(types)}, none of --labels {','.join(labels)}: "
                                "give --labels it has, or leave it out")
        left_out = [t for t in types if t not in labels]
        if left_out:
            warnings.append(f"{what}: {', '.join(left_out)} not in --labels, not suggested")
    return warnings


def is_raw_text(path: Path) -> bool:
    """Whether INPUT is raw text (a directory, .txt, .pdf, or .jsonl of {"text"} alone) rather
    than a corpus (a column file, or JSONL with tags or spans)."""
    if path.is_dir() or path.suffix.lower() in (".txt", ".pdf"):
        return True
    if path.suffix.lower() != ".jsonl" or not path.is_file():
        return False
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    record = json.loads(line)
                except ValueError:
                    return False  # the corpus reader says what is wrong with it
                return isinstance(record, dict) and not any(key in record for key in _CORPUS_KEYS)
    return False


@dataclass
class TaskReport:
    """What building the tasks found."""

    sentences: int = 0
    suggested: Counter[str] = field(default_factory=Counter)  # "LABEL (origin)"
    left_out: Counter[str] = field(default_factory=Counter)  # corpus or model spans of types not in --labels
    overlaps: int = 0  # model or corpus suggestions dropped where a pattern match overlaps them
    raw: RawReport | None = None

    def render(self) -> str:
        lines = [self.raw.render()] if self.raw is not None else []
        lines.append(f"{self.sentences} tasks; suggested: "
                     + (", ".join(f"{k} {n}" for k, n in sorted(self.suggested.items())) or "nothing"))
        if self.left_out:
            lines.append("spans of types not in --labels, not suggested: "
                         + ", ".join(f"{k} {n}" for k, n in sorted(self.left_out.items())))
        if self.overlaps:
            lines.append(f"suggestions overlapping a pattern match, left out (the match is kept): {self.overlaps}")
        return "\n".join(lines)


def build_tasks(path: str | Path, labels: Sequence[str], model: Any = None, matcher: Matcher | None = None,
                order: Order = "input", report: TaskReport | None = None) -> list[Task]:
    """The tasks of INPUT `path` in the order they are shown. Suggestions: a corpus's own spans,
    the model's entities, the patterns' matches (a pattern match wins over a model entity it
    overlaps), of `labels` only. `order="uncertain"` puts first the sentences whose least
    confident model suggestion is least confident, and those without model suggestions last,
    each group in input order."""
    if order not in ORDERS:
        raise TagshiftError(f"--order {order!r}: choose one of {', '.join(ORDERS)}")
    if order == "uncertain" and model is None:
        raise TagshiftError("--order uncertain ranks sentences by the model's confidence: give --model too")
    report = report if report is not None else TaskReport()
    wanted = set(labels)
    tasks, seen = [], set()
    for source, sentence, given in _sentences(Path(path), report):
        text, offsets = _text_and_offsets(sentence)
        tid = task_id(source, text)
        if tid in seen:  # the same text at the same place: only a repeated input file could do this
            continue
        seen.add(tid)
        report.left_out.update(f"{s.label} (corpus)" for s in given if s.label not in wanted)
        tasks.append(Task(tid, text, list(sentence.tokens), offsets, source,
                          [s for s in given if s.label in wanted]))
    report.sentences = len(tasks)
    if model is not None:
        tasks = _with_model(tasks, model, wanted, report)
    if matcher is not None:
        tasks = [_with_patterns(task, matcher, wanted, report) for task in tasks]
    for task in tasks:
        report.suggested.update(f"{s.label} ({s.origin})" for s in task.suggestions)
    if order == "uncertain":
        if model is not None and any(s.origin == "model" and s.confidence is None for t in tasks for s in t.suggestions):
            raise TagshiftError("--order uncertain: the model gives no confidences (spaCy pipelines give none); "
                                "use --order input, or a tagshift model")
        ranked = sorted((t for t in tasks if t.uncertainty is not None), key=lambda t: t.uncertainty)
        tasks = ranked + [t for t in tasks if t.uncertainty is None]
    return tasks


def _sentences(path: Path, report: TaskReport) -> Iterator[tuple[str, Sentence, list[Suggestion]]]:
    """(source, sentence, the corpus's own spans) for each sentence of the input."""
    if is_raw_text(path):
        report.raw = RawReport()
        previous, number = None, 0
        for location, sentence in read_raw(path, report.raw):
            number = number + 1 if location == previous else 1
            previous = location
            where = f"{_relative(Path(location.file), path)}{str(location)[len(location.file):]}"
            yield f"{where} #{number}", sentence, []
        return
    corpus = read_corpus(path)
    for index, sentence in enumerate(corpus.sentences):
        place = f"{path.name}:{sentence.line}" if sentence.line is not None else f"{path.name} sentence {index + 1}"
        yield place, sentence, [Suggestion(s.start, s.end, s.label, "corpus") for s in sentence.spans]


def _relative(file: Path, root: Path) -> str:
    """A file's name as ids use it: relative to the input directory, or its bare name."""
    if root.is_dir():
        return file.relative_to(root).as_posix()
    return file.name


def _text_and_offsets(sentence: Sentence) -> tuple[str, list[tuple[int, int]]]:
    """The sentence's text and token offsets; a column file's tokens are joined by spaces."""
    if sentence.text is not None and sentence.offsets is not None:
        return sentence.text, list(sentence.offsets)
    offsets, cursor = [], 0
    for token in sentence.tokens:
        offsets.append((cursor, cursor + len(token)))
        cursor += len(token) + 1
    return " ".join(sentence.tokens), offsets


def _with_model(tasks: list[Task], model: Any, wanted: set[str], report: TaskReport) -> list[Task]:
    out = []
    for begin in range(0, len(tasks), BATCH):
        chunk = tasks[begin : begin + BATCH]
        for task, tagged in zip(chunk, model.predict([t.tokens for t in chunk], BATCH)):
            report.left_out.update(f"{e.label} (model)" for e in tagged.entities if e.label not in wanted)
            found = [Suggestion(e.start, e.end, e.label, "model", e.confidence)
                     for e in tagged.entities if e.label in wanted]
            out.append(_merged(task, found))
    return out


def _with_patterns(task: Task, matcher: Matcher, wanted: set[str], report: TaskReport) -> Task:
    kept, _ = matcher.matches(task.tokens)
    matches = [Suggestion(span.start, span.end, span.label, "pattern") for span, _ in kept if span.label in wanted]
    others = [s for s in task.suggestions if not any(_overlap(s, m) for m in matches)]
    report.overlaps += len(task.suggestions) - len(others)
    return Task(task.id, task.text, task.tokens, task.offsets, task.source,
                sorted(others + matches, key=lambda s: s.start))


def _merged(task: Task, found: list[Suggestion]) -> Task:
    """A task's suggestions with the model's added where they overlap none already there (a
    corpus's own spans come first)."""
    added = [s for s in found if not any(_overlap(s, t) for t in task.suggestions)]
    return Task(task.id, task.text, task.tokens, task.offsets, task.source,
                sorted(task.suggestions + added, key=lambda s: s.start))


def _overlap(a: Suggestion, b: Suggestion) -> bool:
    return a.start < b.end and b.start < a.end
