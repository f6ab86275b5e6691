# cmr-node — quick start: `make run` (set up and run the node), `make test` (set up and test).
SHELL := /bin/bash
VENV := .venv/bin
CONFIG ?=

.PHONY: setup run orthanc test test-fast test-viewer lint bench train-models warmup-series demo clean

setup:
	@deploy/setup.sh

run: setup
	$(VENV)/cmr-node run $(if $(CONFIG),--config $(CONFIG),)

# Second way to run: Debian's Orthanc with the cmr-node Python plugin (orthanc/README.md).
orthanc: setup
	orthanc/run.sh --data $(or $(ORTHANC_DATA),./orthanc-data) $(if $(CONFIG),--config $(CONFIG))

test: setup
	$(VENV)/python -m pytest -ra $(PYTEST_ARGS)

# The proof in a real viewer: OHIF in headless Chromium draws the node's SEG and SR.
test-viewer: setup
	$(VENV)/python -m pytest -ra tests/viewer $(PYTEST_ARGS)

test-fast: setup
	$(VENV)/python -m pytest -ra -m "not e2e and not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/ruff check node plugins models tests bench
	$(VENV)/mypy

bench: setup
	$(VENV)/python -m bench.run

# The phantom series the node rehearses its analyses on at start (node/defaults/warmup,
# committed; tests/node/test_warmup.py checks they are what the phantom generator writes).
warmup-series: setup
	OMP_NUM_THREADS=1 $(VENV)/python -m models.phantoms.warmup --out node/defaults/warmup

# Reproduce the committed weights on one CPU thread (phantom caches in /tmp; about 4 h in
# all): T1 U-Net 1.0.0, its four-chamber fine-tuning (1.1.0); LGE U-Net 1.0.0, three
# fine-tunings of it on the fusion cache's LGE images (the last two with extra weight on scar
# bordering the blood pool) ending in LGE U-Net 1.1.0, and the LGE + cine U-Net 1.1.0
# started from the first of them; then evaluate.
train-models: setup
	mkdir -p build/train
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.t1seg.train --weights build/train/t1map_unet_1.0.pt
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.t1seg.train --steps 1800 --max-minutes 30 \
		--long-axis-views 750 --init-weights build/train/t1map_unet_1.0.pt --learning-rate 1e-3
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train --weights build/train/lge_unet_1.0.pt
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train_fusion --lge-only-control \
		--init-weights build/train/lge_unet_1.0.pt --model-version 1.0.1 \
		--weights build/train/lge_only_control.pt
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train_fusion --lge-only-control \
		--init-weights build/train/lge_only_control.pt --border-scar-weight 3 \
		--model-version 1.0.3 --max-minutes 45 --weights build/train/lge_unet_1.0.3.pt
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train_fusion --lge-only-control \
		--init-weights build/train/lge_unet_1.0.3.pt --border-scar-weight 3 \
		--model-version 1.1.0 --max-minutes 45 --weights models/weights/lge_unet.pt
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train_fusion \
		--init-weights build/train/lge_only_control.pt --model-version 1.1.0
	OMP_NUM_THREADS=1 $(VENV)/python -m models.evaluation.t1seg.evaluate --long-axis-views 40
	OMP_NUM_THREADS=1 $(VENV)/python -m models.evaluation.lgeseg.evaluate
	# Sim-to-real two-stage LGE segmenter (issue 14): label maps, then localiser and segmenter.
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.synth_cache --out build/train/lgereal_cache --part 0 --parts 2
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.synth_cache --out build/train/lgereal_cache --part 1 --parts 2
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train_real --stage locate --steps 1500 \
		--max-minutes 35 --cache build/train/lgereal_cache --out models/weights/lge_real_locate.pt
	OMP_NUM_THREADS=1 $(VENV)/python -m models.training.lgeseg.train_real --stage segment --steps 1200 \
		--max-minutes 40 --cache build/train/lgereal_cache --out models/weights/lge_real_segment.pt

# Send a synthetic MOLLI T1 map study to a running node (make run in another terminal).
demo: setup
	$(VENV)/python -m models.phantoms --out build/demo --seed 7 --vendor siemens
	$(VENV)/cmr-node send build/demo --port 11112 --called-aet CMRNODE

clean:
	rm -rf build cmr-data .pytest_cache
