"""Evaluation of the T1-map U-Net: held-out phantoms, Sunnybrook, benchmark
(:mod:`.evaluate`) and the conservative-core bias study (:mod:`.core_bias`)."""
