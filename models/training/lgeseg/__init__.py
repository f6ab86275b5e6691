"""Training of the LGE networks: the one-stage U-Net (:mod:`.data`, :mod:`.train`), the LGE +
cine U-Net (:mod:`.fusion_data`, :mod:`.train_fusion`), the sim-to-real two-stage segmenter
(:mod:`.synth_cache`, :mod:`.synth`, :mod:`.train_real`) and site fine-tuning
(:mod:`.site_data`, :mod:`.finetune`)."""
