"""``python -m stereoforge.cli``: the same command line as ``stereoforge``."""

import sys

from . import main

sys.exit(main(sys.argv[1:]))
