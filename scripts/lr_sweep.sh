#!/usr/bin/env bash
# The learning-rate sweep behind docs/REPRODUCTION.md: dense and the 2x-wide model at
# `tiny`, with cpu_full.toml's budget and schedule shape, one seed, at three base
# learning rates (the warm-up rate is base / 10). One study per rate, each in
# OUT/lr_<rate>:
#
#   bash scripts/lr_sweep.sh /tmp/lr_sweep
#
# Hardware: 2 CPU cores. Expected time: 13 minutes measured here at 200 steps, cores
# shared with other jobs (6 runs).
# The study's rate is chosen from the dense model alone: the rate of dense's lowest
# held-out loss.
set -euo pipefail
out="${1:?usage: scripts/lr_sweep.sh OUT_DIR}"
here="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$out"
for rate in 0.1 0.3 1.0; do
  study="$out/lr_$rate.toml"
  # cpu_full.toml at one size, dense and wide, one seed, no fine-tuning, another rate.
  python - "$here/configs/cpu_full.toml" "$study" "$rate" <<'PY'
import re, sys
source, target, rate = sys.argv[1:]
text = open(source, encoding="utf-8").read()
text = text.replace('sizes = ["micro", "tiny", "tiny2x"]', 'sizes = ["tiny"]')
text = re.sub(r'\nvariants = \[[^\]]*\]', '\nvariants = ["dense", "wide"]', text)
text = re.sub(r'\nseeds = \[[^\]]*\]', '\nseeds = [0]', text)
text = re.sub(r"\n\[finetune\].*?(?=\n\[gin\.bindings\])", "\n", text, flags=re.S)
text = text.replace('"optimizer.OptimizerSettings.base_learning_rate" = 0.3',
                    f'"optimizer.OptimizerSettings.base_learning_rate" = {rate}')
text = text.replace('[study]\n', f'[study]\nname = "lr_{rate}"\n', 1)
assert f"base_learning_rate\" = {rate}" in text and "[finetune]" not in text
assert 'sizes = ["tiny"]' in text and "seeds = [0]" in text
open(target, "w", encoding="utf-8").write(text)
PY
  python -m altup_t5.compare "$study" --out "$out/lr_$rate"
done
python - "$out" <<'PY'
import csv, os, sys
out = sys.argv[1]
print("| base rate | method | held-out accuracy (%) | non-sentinel accuracy (%) | held-out loss |")
print("|---|---|---|---|---|")
for rate in ("0.1", "0.3", "1.0"):
  with open(os.path.join(out, f"lr_{rate}", "results.csv"), newline="") as f:
    for row in csv.DictReader(f):
      fmt = lambda key, scale=1.0: (f"{scale * float(row[key]):.2f}" if row[key] else "—")
      loss = f"{float(row['final_eval_loss']):.4f}" if row["final_eval_loss"] else "—"
      print(f"| {rate} | {row['method']} | {fmt('final_accuracy', 100)} | "
            f"{fmt('final_nonsentinel_accuracy', 100)} | {loss} |")
PY
