"""Taggers: one interface (`Tagger`) over two backends, the BiLSTM-CRF and the transformer."""

from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.taggers.tagger import Entity, Tagged, Tagger, label_set
from tagshift.taggers.transformer import DEFAULT_ENCODER, TransformerConfig

__all__ = ["BiLSTMConfig", "DEFAULT_ENCODER", "Entity", "Tagged", "Tagger", "TransformerConfig", "label_set"]
