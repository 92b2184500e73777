"""Accepted answers out of the store as a corpus train and adapt read: JSON lines of text,
tokens and character spans (the tokens given, so the corpus reads back token for token), or a
column file in IOB2.

Which answer of a task is exported: with an annotator named, that annotator's, when it is an
accept. Without, the task's latest decision across annotators (an accept or a reject; a skip
decides nothing): exported when it is an accept. A task whose annotators decided differently
(one accepted, another rejected, or they accepted different spans) is a conflict: counted and
named in the report, and decided as above."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagshift.annotate.store import AnnotationStore, Answer
from tagshift.atomic import write_text_atomic
from tagshift.corpus import Corpus, Sentence, format_corpus
from tagshift.errors import TagshiftError, quoted
from tagshift.schemes import SCHEMES, Span, encode

# The output format from --out's suffix when --format is not given.
SUFFIX_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".conll": "conll", ".tsv": "conll", ".bio": "conll",
                  ".iob": "conll"}
EXPORT_FORMATS = ("jsonl", "conll")


@dataclass
class ExportReport:
    """What the store held and what was written."""

    annotators: dict[str, int] = field(default_factory=dict)  # answers each
    tasks: int = 0  # tasks with an answer (of the annotator asked for)
    accepted: int = 0  # exported
    rejected: int = 0
    skipped: int = 0  # tasks only skipped
    conflicts: list[str] = field(default_factory=list)  # task ids

    def render(self) -> str:
        lines = [(f"{self.tasks} tasks answered: {self.accepted} accepted (exported), {self.rejected} rejected, "
                  f"{self.skipped} only skipped")]
        if self.conflicts:
            lines.append(f"conflicts: {len(self.conflicts)} tasks answered differently by different annotators "
                         f"(the latest decision exported), e.g. {', '.join(self.conflicts[:5])}; compare with "
                         f"--annotator NAME for each of {', '.join(self.annotators)}")
        return "\n".join(lines)


def chosen_answers(answers: list[Answer], annotator: str | None = None,
                   report: ExportReport | None = None) -> list[Answer]:
    """The accepted answer exported for each task, in the order the tasks were first answered."""
    report = report if report is not None else ExportReport()
    by_task: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:  # in the order given
        if annotator is None or answer.annotator == annotator:
            by_task[answer.task_id].append(answer)
    report.tasks = len(by_task)
    chosen = []
    for task_answers in by_task.values():
        decisions = [a for a in task_answers if a.answer != "skip"]
        if not decisions:
            report.skipped += 1
            continue
        if len({_decision(a) for a in decisions}) > 1:
            report.conflicts.append(decisions[0].task_id)
        latest = decisions[-1]
        if latest.answer == "accept":
            chosen.append(latest)
        else:
            report.rejected += 1
    report.accepted = len(chosen)
    return chosen


def _decision(answer: Answer) -> tuple[str, frozenset[tuple[int, int, str]]]:
    spans = frozenset((s["start"], s["end"], s["label"]) for s in answer.spans) if answer.answer == "accept" else frozenset()
    return answer.answer, spans


def record(answer: Answer) -> dict[str, Any]:
    """The JSONL record of an accepted answer: text, tokens (with offsets), spans (character
    offsets into the text, token_end inclusive), and where it came from."""
    return {"text": answer.text,
            "tokens": [{**token, "id": i} for i, token in enumerate(answer.tokens)],
            "spans": answer.spans,
            "meta": {"task": answer.task_id, "source": answer.source, "annotator": answer.annotator,
                     "answered_at": answer.answered_at}}


def sentence(answer: Answer) -> Sentence:
    """An accepted answer as a sentence tagged in IOB2."""
    tokens = [t["text"] for t in answer.tokens]
    spans = [Span(s["token_start"], s["token_end"] + 1, s["label"]) for s in answer.spans]
    return Sentence(tokens, encode(spans, len(tokens), SCHEMES["iob2"]), text=answer.text,
                    offsets=[(t["start"], t["end"]) for t in answer.tokens])


def export_format(out: Path, fmt: str | None) -> str:
    """The format to write: `fmt`, else from --out's suffix."""
    if fmt is not None:
        if fmt not in EXPORT_FORMATS:
            raise TagshiftError(f"--format {quoted(fmt)}: choose one of {', '.join(EXPORT_FORMATS)}")
        return fmt
    found = SUFFIX_FORMATS.get(out.suffix.lower())
    if found is None:
        raise TagshiftError(f"--out {out}: cannot tell the format from the suffix {quoted(out.suffix)}; name it "
                            ".jsonl or .conll, or give --format jsonl|conll")
    return found


def export_annotations(store: AnnotationStore, out: str | Path, fmt: str, annotator: str | None = None,
                       report: ExportReport | None = None) -> ExportReport:
    """Write the accepted answers in `store` to `out` as a corpus (whole, or not at all)."""
    report = report if report is not None else ExportReport()
    report.annotators = store.annotators()
    if annotator is not None and annotator not in report.annotators:
        raise TagshiftError(f"--annotator {quoted(annotator)}: no answers by them in {store.path}; annotators: "
                            + (", ".join(f"{a} ({n})" for a, n in report.annotators.items()) or "none yet"))
    chosen = chosen_answers(store.answers(), annotator, report)
    if not chosen:
        raise TagshiftError(f"{store.path}: no accepted answers" + (f" by {annotator}" if annotator else "")
                            + f" ({report.render().splitlines()[0]}); nothing to export")
    if fmt == "jsonl":
        text = "".join(json.dumps(record(a), ensure_ascii=False) + "\n" for a in chosen)
    else:
        text = format_corpus(Corpus([sentence(a) for a in chosen], str(out)), "conll")
    write_text_atomic(out, text)
    return report
