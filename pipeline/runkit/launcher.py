"""Answer a prompt with this bundle: python run.py "your prompt".

Needs only this folder (its `runkit/` package) and the model's runtime. Written into every
bundle as run.py by distill-edge (pipeline/runkit/launcher.py).
"""

import sys
from pathlib import Path

if __name__ == "__main__":
    HERE = Path(__file__).resolve().parent
    sys.path.insert(0, str(HERE))  # the runkit package beside this file
    from runkit.run import main

    main(HERE)
