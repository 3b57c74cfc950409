"""Metric definitions: the paper's Table 3 (paper), Table 6 (genai), emissions and model characteristics."""
