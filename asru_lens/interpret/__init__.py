"""Reading and steering the residual stream: ``activations`` (nnsight traces), ``probe`` (difference-in-means
refusal directions at every layer) and ``steer`` (add, ablate, conditional)."""
