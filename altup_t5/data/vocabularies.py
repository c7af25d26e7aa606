"""The vocabularies tasks can use, and the process-wide choice for T5-format tasks.

C4, GLUE and SuperGLUE are registered once, on import, with `CHOSEN`: a vocabulary
that forwards to whichever one `choose()` selected (gin binds `choose` in the entry
points). TPU users keep T5's SentencePiece model on GCS; offline runs and tests choose
the project's own vocabulary or seqio's `ByteVocabulary`.
"""

from __future__ import annotations

import seqio

from altup_t5.data import paths

T5_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
EXTRA_IDS = 100  # sentinels <extra_id_0> .. <extra_id_99> for span corruption
KINDS = ("t5", "local", "byte")


def t5_vocabulary(path: str = T5_VOCAB_PATH) -> seqio.Vocabulary:
  """T5's 32000-piece SentencePiece model + 100 extra ids (32100; models pad to 32128)."""
  return seqio.SentencePieceVocabulary(path, extra_ids=EXTRA_IDS)


def local_vocabulary(data_dir: str | None = None) -> seqio.Vocabulary:
  """The SentencePiece model `python -m altup_t5.data.prepare` trains offline."""
  from altup_t5.data import local_corpus  # pylint: disable=g-import-not-at-top
  return seqio.SentencePieceVocabulary(
      local_corpus.vocab_model_path(paths.data_dir(data_dir)), extra_ids=EXTRA_IDS)


def byte_vocabulary() -> seqio.Vocabulary:
  """UTF-8 bytes: needs no file at all (tests)."""
  return seqio.ByteVocabulary(extra_ids=EXTRA_IDS)


def make(kind: str, path: str | None = None) -> seqio.Vocabulary:
  if kind == "t5":
    return t5_vocabulary(path or T5_VOCAB_PATH)
  if kind == "local":
    return local_vocabulary(path)
  if kind == "byte":
    return byte_vocabulary()
  raise ValueError(f"vocabulary kind={kind!r} is not one of {', '.join(map(repr, KINDS))}")


_chosen: seqio.Vocabulary = t5_vocabulary()


def choose(kind: str = "t5", path: str | None = None) -> seqio.Vocabulary:
  """Selects the vocabulary of T5-format tasks; `path` is the model file (t5) or the
  data directory (local)."""
  global _chosen
  _chosen = make(kind, path)
  return _chosen


def chosen() -> seqio.Vocabulary:
  return _chosen


class ChosenVocabulary(seqio.Vocabulary):
  """Forwards every call to the vocabulary last passed to `choose()`."""

  def __init__(self):
    super().__init__(extra_ids=0)

  @property
  def target(self) -> seqio.Vocabulary:
    return _chosen

  # Public API (seqio's base class adds extra-id handling we must not repeat).
  def encode(self, s):
    return self.target.encode(s)

  def decode(self, ids):
    return self.target.decode(ids)

  def encode_tf(self, s):
    return self.target.encode_tf(s)

  def decode_tf(self, ids):
    return self.target.decode_tf(ids)

  @property
  def vocab_size(self):
    return self.target.vocab_size

  @property
  def extra_ids(self):
    return self.target.extra_ids

  @property
  def eos_id(self):
    return self.target.eos_id

  @property
  def pad_id(self):
    return self.target.pad_id

  @property
  def unk_id(self):
    return self.target.unk_id

  @property
  def bos_id(self):
    return getattr(self.target, "bos_id", None)

  # Abstract hooks, unused because the public methods above are forwarded whole.
  @property
  def _base_vocab_size(self):
    return self.target.vocab_size - self.target.extra_ids

  def _encode(self, s):
    return self.target.encode(s)

  def _decode(self, ids):
    return self.target.decode(ids)

  def _encode_tf(self, s):
    return self.target.encode_tf(s)

  def _decode_tf(self, ids):
    return self.target.decode_tf(ids)

  def __eq__(self, other):
    return isinstance(other, ChosenVocabulary) or self.target == other

  def __hash__(self):
    return hash(ChosenVocabulary)


CHOSEN = ChosenVocabulary()
