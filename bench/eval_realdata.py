"""The real-data evaluation: `python bench/eval_realdata.py --help` (wattrail/evaluation/realdata.py)."""

from wattrail.evaluation.realdata import main

if __name__ == "__main__":
    raise SystemExit(main())
