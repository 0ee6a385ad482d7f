"""Malformed API and label-file input: it lives in `bench/fuzz_inputs.py`, which `bench/faults.py`
uses too (bench imports nothing from tests/)."""

from bench.fuzz_inputs import PLAIN_CSV, SDN_XML, VALID_FILES, LabelFile, label_files, refusal_problem

__all__ = ["PLAIN_CSV", "SDN_XML", "VALID_FILES", "LabelFile", "label_files", "refusal_problem"]
