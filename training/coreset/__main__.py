# SPDX-License-Identifier: GPL-3.0-or-later
"""`python -m training.coreset ...` (./dev.sh env python -m training.coreset --help)."""
import sys

from training.coreset.cli import main

sys.exit(main())
