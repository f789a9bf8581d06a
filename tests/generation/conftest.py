"""The generation tests import their helpers (gen_configs, gen_fault_server) from this folder."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
