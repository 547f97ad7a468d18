"""The end-to-end demo (`make demo`, `python -m demo`): train -> anonymize -> evaluate.

It sits above everything else: it drives the core (`deid`), the methods (`ciagan`, later
`vqgan`) and the evaluation suite (`deid_eval`) through their configs, exactly as a user would
run `train.py`, `anonymize.py` and `evaluate.py`. Nothing imports it.

- `main`: the stages in order, timings, the command line;
- `methods`: the trained methods it runs (a new method joins with one line);
- `perception`, `stages`, `scenes`, `report`: the stages, the demo inputs, report.md.
"""
