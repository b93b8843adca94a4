"""The real-data evaluation: `python bench/eval_realdata.py --help` (wattrail/evaluate_real.py)."""

from wattrail.evaluate_real import main

if __name__ == "__main__":
    raise SystemExit(main())
