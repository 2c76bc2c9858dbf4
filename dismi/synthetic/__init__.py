"""The offline Shapes3D renderer: ray-traced geometry (raytrace), hues composed onto it (compose), the
file the download stage writes (render). Imports only dismi.data and dismi.util."""
