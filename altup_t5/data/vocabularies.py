"""The vocabularies tasks can use, and the process-wide choice for T5-format tasks.

C4, GLUE and SuperGLUE are registered once, on import, with `CHOSEN`: a vocabulary
that forwards to whichever one `choose()` selected (gin binds `choose` in the entry
points). TPU users keep T5's SentencePiece model on GCS; offline runs and tests choose
the project's own vocabulary or seqio's `ByteVocabulary`.
"""

from __future__ import annotations

import hashlib

import seqio
import tensorflow as tf

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


# ------------------------------------------------------------------ identity and fit

def _unwrapped(vocab: seqio.Vocabulary) -> seqio.Vocabulary:
  return vocab.target if isinstance(vocab, ChosenVocabulary) else vocab


def identity(vocab: seqio.Vocabulary) -> dict:
  """What makes two vocabularies give the same ids (t5x's `verify_matching_vocabs`
  compares the same): the kind, the size with extra ids, the extra ids, and for
  SentencePiece the SHA-256 of the model proto (two paths to one model are one
  vocabulary; a retrained model of the same size is not)."""
  vocab = _unwrapped(vocab)
  if isinstance(vocab, seqio.SentencePieceVocabulary):
    kind = "sentencepiece"
  elif isinstance(vocab, seqio.ByteVocabulary):
    kind = "byte"
  else:
    kind = type(vocab).__name__
  out = {"kind": kind, "size": int(vocab.vocab_size), "extra_ids": int(vocab.extra_ids)}
  if kind == "sentencepiece":
    out["sha256"] = _model_sha256(vocab)
  return out


def _model_sha256(vocab: seqio.SentencePieceVocabulary) -> str:
  """SHA-256 of the model file as written (seqio's `sp_model` is the proto with the
  extra ids added, so it is hashed only for a vocabulary built from a proto)."""
  proto = vocab.sp_model  # loads the model first (the local one is prepared on first use)
  path = vocab.sentencepiece_model_file
  if not path:
    return hashlib.sha256(proto).hexdigest()
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def describe(ident: dict) -> str:
  """One phrase for messages: `sentencepiece of 8100 ids (100 extra, sha256 1a2b3c4d5e6f)`."""
  extra = f"{ident.get('extra_ids')} extra"
  if ident.get("sha256"):
    extra += f", sha256 {ident['sha256'][:12]}"
  return f"{ident.get('kind')} of {ident.get('size')} ids ({extra})"


def check_fits(vocab: seqio.Vocabulary, vocab_size: int, what: str) -> None:
  """A `ValueError` naming both sizes when `vocab`'s ids (with extra ids) do not all
  have a row in an embedding of `vocab_size` rows: reading past the table gives NaN
  losses or garbage, never an error, on accelerators."""
  size = int(_unwrapped(vocab).vocab_size)
  if size > vocab_size:
    raise ValueError(f"{what} has {size} ids (with {vocab.extra_ids} extra ids), more "
                     f"than the model's vocab_size={vocab_size}: choose a model with "
                     f"vocab_size >= {size} or another vocabulary")
