"""atheris: the receive path of the partner's FA controlling server (receive_path.py with
``MCACM_FUZZ_NODE=fa``), so that ``make fuzz`` runs it as one more target.

    python fuzz/receive_path_fa.py -runs=1000000 -rss_limit_mb=1024 -timeout=10
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

if __name__ == "__main__":
    os.environ["MCACM_FUZZ_NODE"] = "fa"
    runpy.run_path(str(Path(__file__).with_name("receive_path.py")), run_name="__main__")
