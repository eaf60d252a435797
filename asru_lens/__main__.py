"""``python -m asru_lens ...`` is the ``asru-lens`` command (e.g. under ``torchrun`` or ``accelerate launch``)."""
import sys

from asru_lens.cli import main

sys.exit(main())
