"""A WASI 0.2 command component in Python (built by componentize-py): greets and echoes its arguments."""
import os
import sys

from wit_world import exports


class Run(exports.Run):
    def run(self) -> None:
        version = sys.version.split()[0]
        print(f"Hello from Python {version} in WebAssembly!")
        print("args:", " ".join(sys.argv[1:]) or "(none)")
        if "GREETING" in os.environ:
            print("GREETING:", os.environ["GREETING"])
