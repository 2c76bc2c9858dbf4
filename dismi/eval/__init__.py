"""Evaluation: held-out probes (probes, metrics), the S-E dependence by fresh critics (dependence), the
published numbers (published), tables, figures (plotting) and studies over many runs (studies).
Imports dismi.model, dismi.data, dismi.util; never dismi.train."""
