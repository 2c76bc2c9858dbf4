"""The data contracts: the factors, the Shapes3D file (download, validation), the pair dataset and its
file, and the shape of a result (results.py). Imports only dismi.util."""
