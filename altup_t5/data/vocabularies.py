"""The vocabularies tasks can use, and the process-wide choice for T5-format tasks.

C4, GLUE and SuperGLUE are registered once, on import, with `CHOSEN`: a vocabulary
that forwards to whichever one `choose()` selected (gin binds `choose` in the entry
points). TPU users keep T5's SentencePiece model on GCS; offline runs and tests choose
the project's own vocabulary or seqio's `ByteVocabulary`.
"""

from __future__ import annotations

import seqio

from altup_t5.data import local_corpus
from altup_t5.data import paths

T5_VOCAB_PATH = "gs://t5-data/vocabs/cc_all.32000.100extra/sentencepiece.model"
EXTRA_IDS = 100  # sentinels <extra_id_0> .. <extra_id_99> for span corruption
KINDS = ("t5", "local", "byte")


def t5_vocabulary(path: str = T5_VOCAB_PATH) -> seqio.Vocabulary:
  """T5's 32000-piece SentencePiece model + 100 extra ids (32100; models pad to 32128)."""
  return seqio.SentencePieceVocabulary(path, extra_ids=EXTRA_IDS)


class LocalVocabulary(seqio.SentencePieceVocabulary):
  """The SentencePiece model `python -m altup_t5.data.prepare` trains offline.

  Tasks are registered on import, before anyone has chosen a data directory, and a
  fresh machine has no model yet: so the directory is resolved, and the corpus prepared
  if missing, on first use of the model rather than at construction.
  """

  def __init__(self, data_dir: str | None = None):
    self._data_dir = data_dir
    super().__init__("", extra_ids=EXTRA_IDS)

  def _model_context(self):
    if not self._model:
      local_corpus.ensure_prepared(self._data_dir)
      self._sentencepiece_model_file = local_corpus.vocab_model_path(self._data_dir)
    return super()._model_context()

  @property
  def sentencepiece_model_file(self) -> str:
    return local_corpus.vocab_model_path(self._data_dir)

  def __eq__(self, other):
    return (isinstance(other, LocalVocabulary)
            and paths.data_dir(self._data_dir) == paths.data_dir(other._data_dir))

  def __hash__(self):
    return hash(LocalVocabulary)  # equality depends on the resolved directory

  def __str__(self):
    return f"LocalVocabulary({self.sentencepiece_model_file}, extra_ids={EXTRA_IDS})"


def local_vocabulary(data_dir: str | None = None) -> seqio.Vocabulary:
  """The offline SentencePiece vocabulary (8000 pieces + 100 extra ids), prepared on
  first use; `data_dir` defaults to `paths.data_dir()` at that time."""
  return LocalVocabulary(data_dir)


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
