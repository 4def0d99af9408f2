"""``python -m explorer`` is the same as ``diffusion-explorer``."""
import sys

from explorer.cli import main

sys.exit(main())
