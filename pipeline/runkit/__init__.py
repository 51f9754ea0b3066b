"""The code a bundle runs with (shipped inside every bundle as `runkit/`, beside run.py):
`run` answers a prompt with the bundle's artifact, `grammar` is the constrained-decoding
engine (also used by the bench and `distill-edge serve`), `dates` the date rules it reads.
Standard library, the artifact's runtime and llguidance only; modules import each other
relatively, so the folder works without distill-edge installed.

Example:
    >>> from pipeline.runkit.run import messages
    >>> messages({"system": "S", "user_template": "{prompt}"}, "hi")[1]
    {'role': 'user', 'content': 'hi'}
"""
