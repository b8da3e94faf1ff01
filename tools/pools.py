"""Create the Airflow pools the pipeline config names (e.g. the Aurora connection cap).

    python tools/pools.py [config.yaml]   # writes pools.json and runs `airflow pools import`

On MWAA, create the same pools in the UI (Admin → Pools) or through the MWAA CLI endpoint.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins")]

from cdc_sync.config import load_pipelines, pools  # noqa: E402


def main(argv: list[str]) -> int:
    wanted = pools(load_pipelines(argv[1] if len(argv) > 1 else None))
    if not wanted:
        print("no pools to create")
        return 0
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(wanted, handle, indent=2)
    print(json.dumps(wanted, indent=2))
    return subprocess.run([str(REPO / ".venv" / "bin" / "airflow"), "pools", "import", handle.name]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
