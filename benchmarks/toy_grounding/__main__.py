"""`python -m toy_grounding [--quick] [--seeds N]` from benchmarks/."""

import sys

from toy_grounding import main

main(sys.argv[1:])
