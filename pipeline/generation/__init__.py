"""Generating text with a model (the teacher stage's library): a GGUF in llama.cpp (`llm`,
batched decoding with a shared prefix in `llm_batch`) and the teacher backends
(`backends`: llama.cpp, transformers, an OpenAI-compatible endpoint).

Example:
    >>> from pipeline.generation.llm_batch import common_prefix
    >>> common_prefix([[1, 2, 3], [1, 2, 4]])
    2
"""
