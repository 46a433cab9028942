"""`python -m proctor.serve PATH ...`: the same as `proctor serve PATH ...`."""

import sys

from proctor.serve.cli import main

sys.exit(main())
