"""The paper's networks (Tables I-V), its loss terms (eq. 2-10) and the objectives built from them.
Imports only dismi.data and dismi.util."""
