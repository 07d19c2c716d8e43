"""Conditional Similarity Networks (Veit, thesis ch. 3; specs/seed_004.md M3): models, condition
masks, the triplet dataset and the triplet task. `garden.registry.import_all()` imports the modules."""
