"""Rendering the build report (the report stage's and the CLI's library): Markdown and
self-contained HTML from report.json's data (`render`), plots (`plots`), and the diff of two
builds (`compare`).

Example:
    distill-edge report build/cpu-int4      # re-renders report.md and report.html
"""
