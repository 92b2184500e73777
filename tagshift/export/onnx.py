"""`tagshift export --format onnx`: a model's network as an ONNX graph, for fast CPU tagging
with onnxruntime (taggers/onnx_runtime.py runs it; `load_onnx` is re-exported here).

The graph computes the emissions, (batch, words, tags), from the tensors the encoder's
`featurize` gives (its inputs are named for the batch's fields, every axis dynamic). What is
not arithmetic on tensors stays in Python, as tagshift's own code: featurizing (vocabulary and
character look-ups, a transformer's tokenizer and first-piece windows) before the graph, and
decoding (Viterbi under the scheme's constraints, CRF marginals) after it, by the head's own
`decode`. Decoding is a loop over words with a backtrack in Python lists; in a graph it would be
a Loop operator that onnxruntime runs no faster, and a second implementation to keep equal.

The exporter is torch's TorchScript tracer (`dynamo=False`), for both families. torch 2.13's
default, the torch.export-based exporter (which needs onnxscript), specializes `nn.LSTM`'s
sequence length: measured, the first BiLSTM export in a process annotated the traced length
on the graph's output, and a second one failed outright. Neither exporter can trace packed
sequences (their batch sizes are data), so the BiLSTM is traced as `UnpackedBiLSTM`, which
computes the same function on padded sequences. A tracer records one path through the code,
and a branch on shapes taken while tracing would be frozen in: so every export is checked
before it is written, the fp32 graph's emissions on probe sentences of other shapes than the
traced ones against torch's.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from tagshift.bundle import CONFIG, LINEAGE, WEIGHTS, bundle_config, load, write_directory
from tagshift.errors import TagshiftError
from tagshift.lineage import file_sha256, step_record
from tagshift.taggers.bilstm import BiLSTMEncoder, CharLSTM, WordBatch
from tagshift.taggers.onnx_runtime import (
    DECODE, EXTRA, FORMAT_VERSION, GRAPH, OUTPUT, RECORD, OnnxTagger, decode_weights, import_onnxruntime,
    is_onnx_export, load_onnx,
)
from tagshift.taggers.tagger import Tagger
from tagshift.taggers.transformer import TransformerEncoder
from tagshift.version import __version__

__all__ = ["OnnxExport", "OnnxTagger", "export_onnx", "is_onnx_export", "load_onnx"]

# Sentences the export is traced on (the first two) and checked on (all, in one batch: other
# shapes than the traced ones): unknown words, digits, accents, a token longer than the
# BiLSTM's 50 characters, one word alone.
PROBES = [
    ["Angela", "Merkel", "met", "Emmanuel", "Macron", "in", "Paris", "on", "Monday", "."],
    ["The", "European", "Union", "fined", "Google", "2.4", "billion", "euros", "."],
    ["Zürich"],
    ["FC", "Barcelona", "signed", "Lionel", "Messi", "from", "Newell", "'s", "Old", "Boys", "in", "2000", ",",
     "aged", "13", ",", "after", "a", "trial", "at", "La", "Masia", "."],
    ["See", "https://example.org/a/very/long/path/that/goes/on/and/on/for/more/than/fifty/characters", "."],
    ["São", "Paulo", "and", "Rio", "de", "Janeiro", "are", "in", "Brazil"],
    ["UNICEF", "'s", "report", "(", "p.", "12", ")", "was", "cited", "by", "Reuters", "."],
]
# The fp32 graph's emissions may differ from torch's by float rounding (measured: ~3e-6 on
# emissions of magnitude ~10); more than this, relative to the largest emission, means the
# graph computes something else.
TOLERANCE = 1e-4
OPSET = 17  # onnxruntime 1.16 and later run it; it has LayerNormalization, which transformers use


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote."""

    path: Path
    int8: bool
    graph_bytes: int
    max_difference: float  # the fp32 graph's emissions against torch's on the probe sentences


# --- graphs the exporter can trace ---------------------------------------------------------


def _reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence of `x` (batch, steps, dim) reversed within its own length; the padding
    after it stays where it is. Its own inverse."""
    steps = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # (1, steps)
    ends = lengths.unsqueeze(1)  # (batch, 1)
    index = torch.where(steps < ends, ends - 1 - steps, steps)  # (batch, steps)
    return x.gather(1, index.unsqueeze(2).expand(-1, -1, x.size(2)))


def _one_direction(lstm: nn.LSTM, layer: int, suffix: str) -> nn.LSTM:
    """One direction of one layer of `lstm` as a unidirectional LSTM with the same weights."""
    inputs = lstm.input_size if layer == 0 else 2 * lstm.hidden_size
    single = nn.LSTM(inputs, lstm.hidden_size, batch_first=True)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(single, f"{name}_l0").copy_(getattr(lstm, f"{name}_l{layer}{suffix}"))
    return single


class UnpackedLSTM(nn.Module):
    """A bidirectional batch-first `nn.LSTM` run over padded, left-aligned sequences without
    packing them. The forward direction reads the padding only after a sequence's last word,
    so its outputs at the words are the packed ones; the backward direction reads each
    sequence reversed within its own length. The same function as the packed LSTM on the
    words (to float rounding), in operations an exporter can trace."""

    def __init__(self, lstm: nn.LSTM):
        super().__init__()
        if not (lstm.bidirectional and lstm.batch_first) or lstm.proj_size:
            raise TagshiftError("only bidirectional, batch-first LSTMs without projections export to ONNX")
        self.ahead = nn.ModuleList(_one_direction(lstm, layer, "") for layer in range(lstm.num_layers))
        self.behind = nn.ModuleList(_one_direction(lstm, layer, "_reverse") for layer in range(lstm.num_layers))

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs (batch, steps, 2 * hidden), zero past each sequence's end as
        `pad_packed_sequence` leaves them, and the top layer's final states (batch, 2 * hidden):
        the forward direction's after the last word, the backward one's after the first."""
        for ahead, behind in zip(self.ahead, self.behind):  # (dropout between layers: off in eval)
            forward_states, _ = ahead(x)  # (batch, steps, hidden)
            backward_states, _ = behind(_reverse_within(x, lengths))  # in reversed time
            x = torch.cat([forward_states, _reverse_within(backward_states, lengths)], dim=-1)
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, forward_states.size(2))  # (batch, 1, hidden)
        final = torch.cat([forward_states.gather(1, last), backward_states.gather(1, last)], dim=-1).squeeze(1)
        real = torch.arange(x.size(1), device=x.device).unsqueeze(0) < lengths.unsqueeze(1)
        return x * real.unsqueeze(2), final


class UnpackedBiLSTM(nn.Module):
    """`BiLSTMEncoder.forward` in eval mode, with its LSTMs (words, and characters when the
    character model is an LSTM) as `UnpackedLSTM`s. It shares the encoder's embeddings and
    character CNN; tests/test_onnx.py checks it against the encoder for every option."""

    def __init__(self, encoder: BiLSTMEncoder):
        super().__init__()
        self.encoder = encoder
        char_lstm = encoder.char_encoder.lstm if isinstance(encoder.char_encoder, CharLSTM) else None
        self.char_lstm = UnpackedLSTM(char_lstm) if char_lstm is not None else None
        self.lstm = UnpackedLSTM(encoder.lstm)

    def spellings(self, batch: WordBatch) -> Tensor:
        """Each distinct word's character features (distinct words, char features)."""
        if self.char_lstm is None:
            return self.encoder.char_encoder(batch.chars, batch.char_lengths)
        _, final = self.char_lstm(self.encoder.char_encoder.embedding(batch.chars), batch.char_lengths)
        return final

    def forward(self, batch: WordBatch) -> Tensor:
        parts = [
            self.encoder.word_embedding(batch.words),  # (batch, words, word_dim)
            self.spellings(batch)[batch.token_index],  # (batch, words, char)
        ]
        if self.encoder.casing is not None:
            parts.append(self.encoder.casing(batch.shapes))
        output, _ = self.lstm(torch.cat(parts, dim=-1), batch.mask.sum(dim=1))
        return output  # (batch, words, 2 * hidden)


def eager_attention(encoder: TransformerEncoder) -> TransformerEncoder:
    """The transformer with attention as plain matrix products and a softmax (transformers'
    'eager' implementation, the same function) instead of torch's fused SDPA kernel, which
    the tracer spells out in more operators: onnxruntime runs the plain graph faster
    (measured on MiniLM, int8: 1.2x). Only the exported copy is changed."""
    model = encoder.model
    if getattr(model.config, "_attn_implementation", "eager") != "eager" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    return encoder


# What the exporter traces of each encoder.
TRACEABLE: dict[type, Callable[[Any], nn.Module]] = {
    BiLSTMEncoder: UnpackedBiLSTM,
    TransformerEncoder: eager_attention,
}


class EmissionsGraph(nn.Module):
    """The network as the exporter sees it: the featurized batch's tensors in (in the order
    of its fields), emissions (batch, words, tags) out."""

    def __init__(self, tagger: Tagger):
        super().__init__()
        if tagger.guide is not None:
            raise TagshiftError("no ONNX export for a stacked model (adapt --labels stack or --guide): its input "
                                "includes its guide's tag probabilities, which a second model computes; serve or "
                                "predict it with tagshift, or adapt with --labels map and no --guide for an "
                                "exportable model")
        make = TRACEABLE.get(type(tagger.encoder))
        if make is None:
            known = ", ".join(c.__name__ for c in TRACEABLE)
            raise TagshiftError(f"no ONNX export for a {type(tagger.encoder).__name__} encoder; "
                                f"tagshift exports {known}")
        self.features = make(tagger.encoder)
        self.head = tagger.head
        self.batch_type = type(tagger.featurize(PROBES[:1]))

    def forward(self, *tensors: Tensor) -> Tensor:
        return self.head(self.features(self.batch_type(*tensors)))


# --- export ----------------------------------------------------------------------------------


def _import_export_tools() -> Any:
    """onnx (which onnxruntime's quantizer needs) and onnxruntime, or a one-line error naming
    the extra."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise TagshiftError(f"ONNX export needs onnx, {EXTRA}") from None
    return import_onnxruntime()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's and quantizer's warnings and notes kept off the user's screen (the
    TorchScript exporter's deprecation among them: see the module's docstring); a failure
    is raised all the same."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # onnxruntime's quantizer logs advice through the root logger
        try:
            yield
        finally:
            root.setLevel(level)


def export_graph(tagger: Tagger, file: Path) -> list[str]:
    """The tagger's emissions as an fp32 ONNX graph in `file` (one file, weights inside), every
    axis of every input dynamic; returns the graph's input names."""
    graph = EmissionsGraph(tagger).eval()
    batch = tagger.featurize(PROBES[:2])
    names = [f.name for f in fields(batch)]
    tensors = tuple(getattr(batch, name) for name in names)
    axes: dict[str, Any] = {name: list(range(t.dim())) for name, t in zip(names, tensors)}
    axes[OUTPUT] = {0: "batch", 1: "words"}
    try:
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(graph, tensors, str(file), input_names=names, output_names=[OUTPUT],
                              dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    except Exception as err:  # noqa: BLE001  (the tracer raises many kinds; each means "cannot export")
        text = " ".join(str(err).split())[:300]
        raise TagshiftError(
            f"torch could not export this model's network to ONNX ({type(err).__name__}: {text})") from None
    import onnx

    # the tracer leaves out the inputs the network does not read (a BiLSTM without casing: `shapes`)
    return [i.name for i in onnx.load_model(str(file)).graph.input]


def quantize_int8(source: Path, target: Path) -> None:
    """onnxruntime's dynamic int8 quantization of `source`'s weights (matrix products, LSTMs,
    embeddings) into `target`; activations are quantized on the fly, per batch. Weights get a
    scale per output channel: on a MiniLM tagger (tests/test_onnx.py's) that kept 98.1% of
    words' tags where one scale per matrix kept 95.6%, at the same speed."""
    _import_export_tools()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_exporter():
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)


def _difference(exported: OnnxTagger, theirs: Tensor) -> float:
    """The largest difference between the export's emissions on the probe sentences and
    torch's (`theirs`), relative to the largest emission (at least 1)."""
    ours, mask = exported.emissions(PROBES)
    scale = max(1.0, float(theirs[mask].abs().max()))
    return float((ours - theirs)[mask].abs().max()) / scale


def _source_weights_sha256(model: str | Path, tagger: Tagger) -> str | None:
    """The digest of the weights exported: the bundle's file, or an imported model's."""
    if (Path(model) / WEIGHTS).is_file():
        return file_sha256(Path(model) / WEIGHTS)
    return next((step.get("weights_sha256") for step in tagger.lineage if step.get("weights_sha256")), None)


def export_onnx(model: str | Path, out: str | Path, int8: bool = False, command: str | None = None) -> OnnxExport:
    """Write the model at `model` (a bundle, a Hugging Face token classifier or hf:NAME) as an
    ONNX export directory at `out`, atomically, after checking that the graph computes the
    model's emissions. `int8` quantizes the graph's weights (onnxruntime's dynamic int8)."""
    _import_export_tools()
    tagger = load(model)  # refused here, before anything is written, if it is no model
    tagger.network.eval()
    with torch.no_grad():
        reference, _ = tagger.emissions(PROBES)  # before the graph is built: it may change how the copy computes
    source_sha256 = _source_weights_sha256(model, tagger)
    result: dict[str, Any] = {}

    def write(tmp: Path) -> None:
        graph = tmp / GRAPH
        inputs = export_graph(tagger, graph)
        save_file(decode_weights(tagger.head), tmp / DECODE)
        config = bundle_config(tagger, source_sha256 or "")
        (tmp / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tagger.backend.save_files(tagger.encoder, tmp)
        record = {"format_version": FORMAT_VERSION, "tagshift": __version__, "graph": GRAPH, "int8": False,
                  "graph_sha256": file_sha256(graph), "inputs": inputs, "output": OUTPUT,
                  "opset": OPSET, "torch": torch.__version__, "onnxruntime": import_onnxruntime().__version__}
        _write_record(tmp, record)
        difference = _difference(load_onnx(tmp, threads=1), reference)
        if not difference <= TOLERANCE:
            raise TagshiftError(
                f"the exported graph's emissions differ from the model's by {difference:.2g} (relative) on probe "
                f"sentences, more than float rounding ({TOLERANCE:g}): this encoder does not export faithfully"
            )
        record["fp32_max_difference"] = difference
        if int8:
            quantized = tmp / f".{GRAPH}.int8"
            quantize_int8(graph, quantized)
            os.replace(quantized, graph)
            record.update(int8=True, graph_sha256=file_sha256(graph))
        _write_record(tmp, record)
        load_onnx(tmp, threads=1).predict(PROBES)  # it loads and tags
        step = step_record("export", command=command, format="onnx", source=str(model),
                           source_weights_sha256=source_sha256, onnx_sha256=record["graph_sha256"], int8=int8)
        (tmp / LINEAGE).write_text(json.dumps([*tagger.lineage, step], indent=2) + "\n", encoding="utf-8")
        result.update(bytes=graph.stat().st_size, difference=difference)

    write_directory(out, write)
    return OnnxExport(Path(out), int8, result["bytes"], result["difference"])


def _write_record(directory: Path, record: dict[str, Any]) -> None:
    (directory / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

