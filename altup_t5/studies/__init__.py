"""Studies (`python -m altup_t5.compare`): `study` (the TOML study files), `runner`
(one training process per run, resumable), `results` (reading runs back), `timing`
(each run's inference speed after training), `stats` (intervals over seeds),
`speedup` (the paper's speedup at equal quality), `aggregate` (runs grouped over
seeds), `report` (the tables) and `plots`.

May import: model (configs), training (summaries), data, inference and jobs (the
timing phase loads each run's checkpoint into the one predict path), and
`altup_t5.cli` to check each run's gin configuration before any starts; runs train
through the `altup_t5.train` command, never in-process.
"""
