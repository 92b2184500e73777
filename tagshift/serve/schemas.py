"""The JSON the server reads and writes, as pydantic models: FastAPI checks requests against
them and documents both in the OpenAPI schema (/docs, /openapi.json)."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from tagshift.errors import quoted
from tagshift.schemes import SCHEMES

SchemeName = Enum("SchemeName", {name: name for name in SCHEMES}, type=str)  # type: ignore[misc]
INPUTS = ("text", "texts", "tokens")


class PredictRequest(BaseModel):
    """Give exactly one of `text`, `texts` or `tokens`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Angela Merkel met Emmanuel Macron in Paris."},
        {"texts": ["EU rejects German call.", "Peter Blackburn reports from Brussels."], "scheme": "iob2"},
        {"tokens": [["Angela", "Merkel", "visited", "Paris", "."]], "confidence": False},
    ]})

    text: str | None = Field(None, description="One raw text; it is tokenized and split into sentences.")
    texts: list[str] | None = Field(None, description="Several raw texts, each tagged as `text` is.")
    tokens: list[list[str]] | None = Field(
        None, description="Pre-tokenized texts, each a list of tokens tagged as one sentence; offsets index the "
        "tokens joined by single spaces.")
    scheme: SchemeName | None = Field(  # type: ignore[valid-type]
        None, description="Tag scheme of the returned `tags`. Default: the model's.")
    confidence: StrictBool = Field(True, description="Give each span the model's confidence (false is faster "
                                   "with a CRF head; spaCy pipelines give none either way).")

    @field_validator("scheme", mode="before")
    @classmethod
    def _known_scheme(cls, value: Any) -> Any:
        if value is not None and (not isinstance(value, str) or value not in SCHEMES):
            raise ValueError(f"{quoted(value)} is not a tag scheme; choose one of {', '.join(SCHEMES)}")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> PredictRequest:
        given = [name for name in INPUTS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of text, texts or tokens (this request has {' and '.join(given) or 'none'}), "
                             'e.g. {"text": "Angela Merkel visited Paris."}')
        return self

    def inputs(self) -> tuple[str, list[str] | list[list[str]]]:
        """The input's kind and its texts (a single `text` as a list of one)."""
        if self.text is not None:
            return "text", [self.text]
        if self.texts is not None:
            return "texts", self.texts
        return "tokens", self.tokens  # type: ignore[return-value]


class Token(BaseModel):
    text: str
    start: int = Field(description="Character offset of the token in the text (code points, as Python counts).")
    end: int
    id: int = Field(description="The token's index in the text.")


class Entity(BaseModel):
    start: int = Field(description="Character offset of the span in the text: text[start:end] is the span.")
    end: int
    label: str
    text: str = Field(description="The span's characters.")
    token_start: int = Field(description="Index of the span's first token.")
    token_end: int = Field(description="Index of the span's last token (inclusive, as Prodigy has it).")
    confidence: float | None = Field(description="The lowest probability the model gives any tag of the "
                                        "span; null when not asked for or the model gives none (spaCy).")


class TextResult(BaseModel):
    text: str = Field(description="The text as given (for `tokens`: the tokens joined by spaces).")
    tokens: list[Token]
    tags: list[str] = Field(description="One tag per token, in the response's `scheme`.")
    spans: list[Entity]


class PredictResponse(BaseModel):
    model: str | None = Field(description="The model the server was started with.")
    scheme: str = Field(description="Scheme of the tags.")
    results: list[TextResult] = Field(description="One result per text, in the order given.")


class Health(BaseModel):
    status: Literal["ok"]
    model: str | None
    loaded: bool


class LimitsRecord(BaseModel):
    max_body_bytes: int
    max_texts: int
    max_tokens: int


class Info(BaseModel):
    source: str | None = Field(description="The model as given to tagshift serve.")
    description: str
    scheme: str
    types: list[str]
    labels: list[str]
    limits: LimitsRecord
    config: dict[str, Any] | None = Field(description="As `tagshift info --json` gives it; null for spaCy.")
    lineage: list[dict[str, Any]] | None = Field(description="As `tagshift info --json` gives it.")
    bytes: int | None = Field(description="Size of the model directory.")
    text: str | None = Field(description="What `tagshift info` prints.")


class Error(BaseModel):
    error: str = Field(description="What was wrong, and what to do instead.")
