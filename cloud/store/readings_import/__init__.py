"""The historical import: a meter-data-management CSV export of interval energy into `readings`
(docs/historical-import.md). In the order a file goes through it:

    columns.py    the header: which names mean what, the column plan (pure)
    scan.py       the Numba tokeniser: the bytes to typed columns in one pass
    parse.py      the rows checked and sorted, every problem with its line (pure)
    limits.py     the plausible-value windows the checks use
    cumulate.py   interval energies to the cumulative registers `readings` stores (pure)
    load.py       `import_readings_csv`: the one transaction that writes them
"""
