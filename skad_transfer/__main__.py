"""python -m skad_transfer"""

import sys

from .cli import main

sys.exit(main())
