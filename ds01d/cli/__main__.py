"""``python -m ds01d.cli``: the same as ``ds01``."""

import sys

from ds01d.cli import main

sys.exit(main())
