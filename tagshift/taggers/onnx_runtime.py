"""Tagging with an ONNX export (`tagshift export --format onnx`): the network's emissions
come from the exported graph, run by onnxruntime on the CPU; everything around it is
tagshift's own code, so the results are the torch model's.

    tagger = load_onnx("models/ner.onnx")
    tagger.predict([["Angela", "Merkel", "met", "Emmanuel", "Macron", "."]])

An `OnnxTagger` is a `Tagger` whose `emissions` run the graph: featurizing (the BiLSTM's
vocabularies and characters, a transformer's tokenizer with first-piece alignment and
windows) is the encoder's own `featurize`, and decoding (Viterbi under the scheme's
constraints, CRF marginals for confidences) is the head's own `decode`, in torch. The graph's
inputs are the featurized batch's tensors, by their field names; its output is `emissions`
(batch, words, tags). The encoder is built on the meta device: it only featurizes, and its
weights live in the graph.

An export directory holds `model.onnx`, `onnx.json` (what the export is: the graph's sha256,
its inputs, whether it is int8), the bundle's `config.json`, `lineage.json` (with an `export`
step) and encoder files (`vocab.json`, or the tokenizer's), and `decode.safetensors` (the
head's decoding weights: a CRF's transitions; empty for a softmax head): safetensors and JSON only.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from tagshift.bundle import CONFIG, WEIGHTS, read_config, read_lineage
from tagshift.errors import BundleError, TagshiftError
from tagshift.lineage import file_sha256
from tagshift.taggers.backends import get_backend
from tagshift.taggers.heads import MappingHead, head_kind_of_class, make_head
from tagshift.taggers.tagger import Network, Tagger, usable_device

GRAPH = "model.onnx"
RECORD = "onnx.json"  # the export's own record; its presence says "an ONNX export"
DECODE = "decode.safetensors"
OUTPUT = "emissions"
FORMAT_VERSION = 1
EXTRA = "the 'onnx' extra: pip install 'tagshift[onnx]'"


def is_onnx_export(path: str | Path) -> bool:
    """Whether `path` is a directory `tagshift export --format onnx` wrote."""
    return (Path(path) / RECORD).is_file()


def import_onnxruntime() -> Any:
    """onnxruntime, or a one-line error naming the extra that brings it."""
    try:
        import onnxruntime
    except ImportError:
        raise TagshiftError(f"the ONNX runtime needs onnxruntime, {EXTRA}") from None
    return onnxruntime


def decode_weights(head: Any) -> dict[str, Tensor]:
    """What decoding reads of a head besides its output layer (which the graph holds): a CRF's
    start, transition and end scores and its constraints; nothing for a softmax head. A
    mapping head decodes with the head inside it."""
    inner = head.inner if isinstance(head, MappingHead) else head
    return {k: v.detach().cpu().contiguous() for k, v in inner.state_dict().items() if not k.startswith("linear.")}


class OnnxTagger(Tagger):
    """A Tagger whose emissions come from an ONNX graph (onnxruntime, CPU). Featurizing,
    decoding, batching and the results (`Tagged`, entity confidences) are `Tagger`'s."""

    def __init__(self, *args: Any, session: Any, record: dict[str, Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.session = session
        self.record = record
        self.int8 = bool(record.get("int8"))
        self._inputs = [i.name for i in session.get_inputs()]

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp32"

    @precision.setter
    def precision(self, value: str) -> None:
        if value not in ("fp32", self.precision):
            raise TagshiftError(
                f"precision '{value}' applies to the torch runtime; this ONNX export computes in {self.precision} "
                "(export again with or without --int8 to change it)"
            )

    def to(self, device: str | torch.device) -> OnnxTagger:
        if usable_device(device).type != "cpu":
            raise TagshiftError(
                f"device '{device}': an ONNX export runs on the CPU (onnxruntime's CPU provider); "
                "use the torch runtime (the bundle) for other devices"
            )
        return self

    def emissions(self, sentences: Sequence[list[str]]) -> tuple[Tensor, Tensor]:
        """Tag scores (batch, words, tags) from the graph, and the mask of real words."""
        batch = self.featurize(sentences)
        feeds = {name: getattr(batch, name).numpy() for name in self._inputs}
        (scores,) = self.session.run([OUTPUT], feeds)
        return torch.from_numpy(scores), batch.mask

    def describe(self) -> str:
        return f"{super().describe()}; ONNX {self.precision}"


def read_record(path: str | Path) -> dict[str, Any]:
    """`onnx.json` of an export, checked; a directory that is not an export is a one-line
    error saying what it is instead."""
    path = Path(path)
    file = path / RECORD
    if not file.is_file():
        if (path / CONFIG).is_file() and (path / WEIGHTS).is_file():
            raise BundleError(f"{path}: a tagshift bundle, not an ONNX export: export it with "
                              f"'tagshift export {path} --format onnx --out DIR', or use the torch runtime")
        if not path.exists():
            raise BundleError(f"{path}: no such directory")
        raise BundleError(f"{path}: not an ONNX export (no {RECORD}); make one with "
                          "'tagshift export MODEL --format onnx --out DIR'")
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise BundleError(f"{file}: not readable as JSON ({err}); export the model again") from None
    if not isinstance(record, dict):
        raise BundleError(f"{file}: holds {type(record).__name__}, not an object: export the model again")
    for key, kind in (("format_version", int), ("graph_sha256", str), ("int8", bool)):
        value = record.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            found = repr(value)[:40] if key in record else "missing"
            raise BundleError(f"{file}: field '{key}' is {found}; expected {kind.__name__}: export the model again")
    if record["format_version"] > FORMAT_VERSION:
        raise BundleError(f"{file}: ONNX export format {record['format_version']}; this tagshift reads "
                          f"{FORMAT_VERSION} and older: upgrade tagshift")
    return record


def load_onnx(path: str | Path, device: str = "cpu", precision: str | None = None,
              threads: int | None = None) -> OnnxTagger:
    """The ONNX export at `path` as a tagger (`predict` as `Tagger.predict`). onnxruntime uses
    `threads` threads (default: torch's count, which `tagshift --threads` sets). `device` and
    `precision` are there to be refused when they are not what the export runs: the CPU, and
    the export's own precision (fp32, or int8 when exported with --int8)."""
    ort = import_onnxruntime()
    path = Path(path)
    record = read_record(path)
    graph = path / GRAPH
    if not graph.is_file():
        raise BundleError(f"{path}: no {GRAPH}; the export is incomplete: export the model again")
    if file_sha256(graph) != record["graph_sha256"]:
        raise BundleError(f"{graph}: changed since tagshift exported it (its checksum differs from {RECORD}'s); "
                          "the file is damaged or was replaced: export the model again")
    fields = read_config(path)
    try:
        backend = get_backend(fields["backend"])
        config = backend.new_config(**{**backend.legacy_options, **fields["model"]})
    except TagshiftError as err:
        raise BundleError(f"{path / CONFIG}: {err}") from None
    with torch.device("meta"):  # featurizing only: the weights are in the graph
        encoder = backend.load_encoder(config, path)
    mapped = fields.get("head") == MappingHead.__name__
    kind = head_kind_of_class(fields.get("inner_head" if mapped else "head", "SoftmaxHead"))
    head = make_head(kind, encoder.output_dim, fields["labels"], fields["scheme"])
    _load_decode_weights(head, path / DECODE)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: ORT's warnings are not the user's to act on
    try:
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001  (onnxruntime raises its own untyped errors)
        raise BundleError(f"{graph}: onnxruntime cannot load it ({' '.join(str(err).split())[:200]}); "
                          "export the model again") from None
    missing = sorted({i.name for i in session.get_inputs()} - set(_batch_fields(encoder)))
    if missing or OUTPUT not in {o.name for o in session.get_outputs()}:
        raise BundleError(f"{graph}: the graph's inputs ({', '.join(i.name for i in session.get_inputs())}) "
                          f"or output do not fit this tagshift's {type(encoder).__name__}: export the model again")
    tagger = OnnxTagger(backend, config, fields["labels"], fields["scheme"], Network(encoder, head),
                        read_lineage(path), session=session, record=record)
    tagger.network.eval()
    tagger.to(device)
    if precision is not None:
        tagger.precision = precision
    return tagger


def _batch_fields(encoder: Any) -> list[str]:
    """The names of the tensors the encoder's `featurize` gives (the graph's inputs)."""
    probe = encoder.featurize([["a"]])
    return [f.name for f in dataclasses.fields(probe)]


def _load_decode_weights(head: Any, file: Path) -> None:
    """Put the decoding weights into `head`, checking that they are exactly what it decodes with."""
    try:
        weights = load_file(file)
    except (SafetensorError, OSError, ValueError) as err:
        raise BundleError(f"{file}: not a readable safetensors file ({err}); export the model again") from None
    expected = decode_weights(head)
    shapes = {k: tuple(v.shape) for k, v in weights.items()}
    if shapes != {k: tuple(v.shape) for k, v in expected.items()}:
        raise BundleError(f"{file}: holds {sorted(shapes) or 'nothing'}, the config's head decodes with "
                          f"{sorted(expected) or 'nothing'}: export the model again")
    head.load_state_dict(weights, strict=False)
