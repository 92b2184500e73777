"""The package's shape, as issue 21 asks it to stay: no import cycle, the model families
named in one module, unknown families and heads refused with the known ones listed, and
bundles saved by earlier versions loading and predicting as they did."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import tagshift
from tagshift.corpus import Corpus, read_corpus
from tagshift.errors import TagshiftError
from tagshift.taggers.backends import BACKENDS, get_backend
from tagshift.taggers.heads import make_head

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tagshift"
FIXTURES = Path(__file__).parent / "fixtures"


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that `path` imports when it runs, at any depth of the file
    (imports inside functions count: they close a cycle as surely at call time); imports
    under `if TYPE_CHECKING:` never run and do not count."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
               for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a.b import c` imports the module a.b.c when there is one, else a.b (a
            # package's __init__ runs before any of its modules: that edge every import has)
            for alias in node.names:
                found.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module)
    return found & modules


def test_the_package_has_no_import_cycle():
    files = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: _runtime_imports(path, set(files)) - {name} for name, path in files.items()}
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            pytest.fail("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, path + [name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_the_cycle_check_sees_a_cycle(tmp_path):
    """The walker above, on a two-module cycle written for it (a check that cannot fail checks nothing)."""
    (tmp_path / "a.py").write_text("def f():\n    from tagshift.b import g\n")
    modules = {"tagshift.a", "tagshift.b"}
    assert _runtime_imports(tmp_path / "a.py", modules) == {"tagshift.b"}
    (tmp_path / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tagshift.a import f\n")
    assert _runtime_imports(tmp_path / "b.py", modules) == set()


def test_a_family_is_named_in_one_module_only():
    """A backend's name as a string appears only in taggers/backends.py: everything else reads
    the family's record, so a new family is one module and one table entry."""
    outside = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "taggers" / "backends.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in BACKENDS:
                outside.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not outside, "backend names outside taggers/backends.py:\n" + "\n".join(outside)


def test_an_unknown_family_or_head_is_refused_with_the_known_ones():
    with pytest.raises(TagshiftError, match="unknown backend 'lstm'; choose one of bilstm-crf, transformer"):
        get_backend("lstm")
    with pytest.raises(TagshiftError, match="unknown head 'crf2'; choose one of crf, softmax"):
        make_head("crf2", 8, ["O", "B-X", "I-X"], "iob2")
    family = get_backend("bilstm-crf")
    with pytest.raises(TagshiftError, match="head = 'Softmax' should be 'crf' or 'softmax'"):  # nor can a config
        family.new_config(head="Softmax")


def test_a_bundle_saved_by_tagshift_0_1_0_before_the_redesign_predicts_as_it_did():
    """tests/fixtures/bilstm-0.1.0 was saved by the code before issue 21's redesign (a tiny
    BiLSTM-CRF, 12 epochs on 150 wikigold sentences), with its predictions on 60 held-out
    sentences (105 entities). Loading it must give them back: the tags, and the confidences to float
    rounding (1e-4 relative: the saved ones were rounded to 6 places, and another CPU's
    BLAS may round the last bits of the marginals differently)."""
    expected = json.loads((FIXTURES / "bilstm-0.1.0.predictions.json").read_text())
    corpus = read_corpus(ROOT / "data" / "wikigold" / "wikigold.slice.conll")
    test = Corpus(corpus.sentences[200:260])
    tagged = tagshift.load(FIXTURES / "bilstm-0.1.0").predict([s.tokens for s in test.sentences])
    assert sum(len(entities) for _, entities in expected) >= 100  # a comparison of something, not of all-O
    assert [t.tags for t in tagged] == [tags for tags, _ in expected]
    for t, (_, entities) in zip(tagged, expected):
        assert [(e.start, e.end, e.label) for e in t.entities] == [tuple(e[:3]) for e in entities]
        assert [e.confidence for e in t.entities] == pytest.approx([e[3] for e in entities], rel=1e-4, abs=1e-6)
