"""`python -m wattrail.demo` (what `make demo` runs)."""

import sys

from wattrail.demo.run import main

sys.exit(main())
