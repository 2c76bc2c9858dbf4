"""Training: the loop and both stages' trainers (training), model files and checkpoints (modelfile).
Imports dismi.model, dismi.data, dismi.util; never dismi.eval."""
