"""``python -m animbench`` (and ``torchrun -m animbench``): the `animbench` command."""

import sys

from animbench.cli import main

sys.exit(main())
