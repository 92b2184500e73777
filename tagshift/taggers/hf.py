"""Hugging Face token classifiers tagshift did not train, as tagshift models.

A directory `save_pretrained` wrote for `AutoModelForTokenClassification` (or `hf:NAME`, a
hub name, where a hub is reachable) becomes a transformer tagger: its encoder as it is, its
labels from `config.id2label`, its scheme read off the label strings, and its classifier's
rows copied into a softmax head in tagshift's label order. Decoding keeps to the scheme, so
the tagger predicts the model's own argmax tags wherever those are a valid sequence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tagshift.errors import SchemeError, TagshiftError
from tagshift.lineage import file_sha256, state_sha256, step_record
from tagshift.schemes import label_set, scheme_of_labels, split_tag
from tagshift.taggers.backends import TRANSFORMER
from tagshift.taggers.heads import make_head
from tagshift.taggers.tagger import Network, Tagger
from tagshift.taggers.transformer import TransformerConfig, TransformerEncoder, quiet_transformers

HUB = "hf:"  # a hub name (or any from_pretrained argument), said explicitly: never guessed from a path
GENERIC_LABEL = re.compile(r"LABEL_\d+")  # what transformers names labels a config never got
QUIET_BELOW = 20.0  # a row the model lacks starts this far below its lowest bias: never predicted


def is_token_classifier(path: str | Path) -> bool:
    """A local directory holding a Hugging Face config with labels and no tagshift section."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "tagshift" not in data and isinstance(data.get("id2label"), dict)


def model_labels(id2label: dict[Any, str], label_names: list[str] | None, source: str) -> list[str]:
    """The classifier's labels in row order: `label_names` if given, else `id2label`'s, which
    must be names, not transformers' LABEL_0 placeholders.

    >>> model_labels({"0": "O", "1": "B-PER", "2": "I-PER"}, None, "m")
    ['O', 'B-PER', 'I-PER']
    """
    rows = len(id2label)
    if label_names is not None:
        if len(label_names) != rows:
            raise TagshiftError(f"{source}: --label-names gives {len(label_names)} labels; the classifier has {rows} rows")
        return list(label_names)
    try:
        labels = [id2label[key] for key in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        raise TagshiftError(f"{source}: config.json's id2label keys are not row numbers") from None
    if all(GENERIC_LABEL.fullmatch(label) for label in labels):
        raise TagshiftError(
            f"{source}: its labels are {labels[0]}, {labels[1] if rows > 1 else ''}... (the config never got names): "
            f"give them in row order with --label-names, e.g. --label-names O,B-PER,I-PER,..."
        )
    return labels


def tagshift_labels(labels: list[str], source: str) -> tuple[list[str], str]:
    """The model's labels as tagshift names them (a bare type is its IO tag) and their scheme."""
    if "O" not in labels:
        raise TagshiftError(f"{source}: no 'O' label among {', '.join(labels[:8])}; a tagger needs one for words outside entities")
    try:
        scheme = scheme_of_labels(labels)
        named = [label if label == "O" or split_tag(label)[0] else f"I-{label}" for label in labels]
    except SchemeError as err:
        raise TagshiftError(f"{source}: {err}") from None
    if len(set(named)) != len(named):
        raise TagshiftError(f"{source}: a label is named twice in id2label; each row needs its own label")
    return named, scheme


def import_hf(source: str | Path, label_names: list[str] | None = None) -> Tagger:
    """The tagger a Hugging Face token classifier makes, with an `import` step as its lineage."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer

    name = str(source).removeprefix(HUB)
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise TagshiftError(f"{source}: not a Hugging Face model ({str(err).splitlines()[0]})") from None
    if not isinstance(getattr(config, "id2label", None), dict) or not config.id2label:
        raise TagshiftError(f"{source}: config.json has no id2label: it is not a token classifier")
    raw = model_labels(config.id2label, label_names, str(source))
    named, scheme = tagshift_labels(raw, str(source))
    try:
        with quiet_transformers():
            # safetensors only: a pickled checkpoint (pytorch_model.bin) could run code on load
            model = AutoModelForTokenClassification.from_pretrained(name, use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise TagshiftError(
            f"{source}: transformers could not load it as a token classifier with safetensors weights "
            f"({str(err).splitlines()[0]}); re-save a pickled checkpoint with save_pretrained(safe_serialization=True)"
        ) from None
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Linear) or classifier.out_features != len(raw):
        raise TagshiftError(f"{source}: no linear 'classifier' with one row per label; tagshift reads that head only")
    model.eval()
    encoder = TransformerEncoder(TransformerConfig(encoder=str(source)), model.base_model, tokenizer)
    labels = label_set({split_tag(label)[1] for label in named} - {""}, scheme)
    head = make_head("softmax", encoder.output_dim, labels, scheme, TRANSFORMER.head_dropout(encoder))
    added = _copy_rows(classifier, named, head.linear, labels)
    step = step_record("import", source=str(source), weights_sha256=_weights_sha256(name, model),
                       labels=raw, scheme=scheme, rows_added=added)
    tagger = Tagger(TRANSFORMER, encoder.config, labels, scheme, Network(encoder, head), [step])
    tagger.network.eval()
    return tagger


def _copy_rows(classifier: nn.Linear, named: list[str], linear: nn.Linear, labels: list[str]) -> list[str]:
    """The classifier's rows in `labels`' order; a tag the model lacks (a B- without its I-)
    gets a quiet row, so predictions stay the model's. Returns the tags added."""
    row = {label: i for i, label in enumerate(named)}
    floor = float(classifier.bias.detach().min()) - QUIET_BELOW
    added = []
    with torch.no_grad():
        for i, label in enumerate(labels):
            if label in row:
                linear.weight[i] = classifier.weight[row[label]]
                linear.bias[i] = classifier.bias[row[label]]
            else:
                linear.weight[i] = 0.0
                linear.bias[i] = floor
                added.append(label)
    return added


def _weights_sha256(name: str, model: nn.Module) -> str:
    """The sha256 of a local model's weights file; of its tensors when it came from a hub."""
    files = sorted(Path(name).glob("*.safetensors")) if Path(name).is_dir() else []
    return file_sha256(files[0]) if len(files) == 1 else state_sha256(model.state_dict())
