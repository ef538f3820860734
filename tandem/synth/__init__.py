"""Synthetic clinic data with a known truth: ``tandem generate``.

Every other part of Tandem is tested and benchmarked against what this package writes:
clinic files in the four source formats (with the mess real exports have), the clinic
contracts that describe them, and a ground-truth manifest to score the pipeline against.
See ``docs/generator.md``.
"""

from tandem.synth.generate import GenerateResult, generate
from tandem.synth.options import EffectSizes, FaultRates, GenerateOptions

__all__ = ["EffectSizes", "FaultRates", "GenerateOptions", "GenerateResult", "generate"]
