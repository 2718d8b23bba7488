"""The dataset build's stages (the `scenetg build` command): shots, scenes, captions, filter, export."""
