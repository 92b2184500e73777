"""Taggers: one model class (`Tagger`) over the families declared in `backends`."""

from tagshift.taggers.backends import BACKENDS, Backend, get_backend
from tagshift.taggers.bilstm import BiLSTMConfig
from tagshift.taggers.tagger import Entity, Tagged, Tagger
from tagshift.taggers.transformer import DEFAULT_ENCODER, TransformerConfig

__all__ = ["BACKENDS", "Backend", "BiLSTMConfig", "DEFAULT_ENCODER", "Entity", "Tagged", "Tagger", "TransformerConfig",
           "get_backend"]
