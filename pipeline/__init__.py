"""distill-edge: teacher answers -> filtered data -> distilled student -> quantized GGUF -> report.

Example:
    distill-edge build --target cpu-int4
"""
