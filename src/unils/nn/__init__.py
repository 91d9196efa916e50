"""Neural network modules: shared layers, motion codec, quantizer, generator and audio encoders."""
