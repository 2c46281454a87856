"""Distillation: turn strong models' answers into training data for small models (export, generate, mix, scrub,
preference pairs, synthetic narrow tasks); training, conversion and registration live beside them."""
