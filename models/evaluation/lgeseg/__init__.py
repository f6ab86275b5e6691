"""Evaluation of the LGE segmenters: held-out phantom stacks (:mod:`.evaluate`), real images
(:mod:`.evaluate_real`) and the two-stage / cascade comparison (:mod:`.evaluate_two_stage`)."""
