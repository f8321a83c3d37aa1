# Two entry points, both idempotent on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.prolab-installed
MMSEG_STAMP := $(VENV)/.prolab-mmseg-installed
TORCH  ?= torch==2.13.0
# llama-cpp-python has no Linux wheel: build only the library its Python binding loads (no tools,
# server, examples, tests, BLAS, OpenMP or curl). GGML_NATIVE is off and the instruction sets are
# named (AVX2, FMA, F16C): on a host whose CPU reports AMX, the native build of 0.3.36 segfaults in
# llama_decode on its first call, and pip's wheel cache would hand that build to every later
# install on the same machine.
LLAMA_CMAKE_ARGS ?= -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_BLAS=OFF -DLLAVA_BUILD=OFF \
	-DGGML_OPENMP=OFF -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON \
	-DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install demo test cuda-check clean label-spaces

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The CPU build of torch goes in first, so no later requirement can pull a CUDA build.
$(STAMP): pyproject.toml | $(BIN)/python
	@echo "installing prolab and its extras into $(VENV) (pip -q; the first time compiles llama.cpp, ~10 min)"
	$(BIN)/python -m pip install -q $(TORCH)
	CMAKE_ARGS="$${CMAKE_ARGS:-$(LLAMA_CMAKE_ARGS)}" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
		$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@

# The MMSegmentation 1.x plugin's extra (pure-Python wheels, ~25 s), which `make test` exercises.
# mmcv-lite pulls opencv-python (GUI build, needs libGL/libxcb), which overwrites the cv2 package of the
# seg extra's opencv-python-headless: put the headless files back last.
$(MMSEG_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[mmseg]'
	$(BIN)/python -m pip install -q --force-reinstall --no-deps 'opencv-python-headless>=4.5'
	$(BIN)/python -c "import cv2"
	touch $@

install: $(STAMP)

# DEMO_QUICK=1: the same stages on fewer images and iterations (CI runs it so)
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" bash bench/demo.sh

test: $(STAMP) $(MMSEG_STAMP)
	$(BIN)/python -m pytest tests

# Rebuild the shipped label spaces from their recipes (reviewed descriptions, MiniLM, k-means, written names).
# Each from an empty cache, as the tests rebuild them: MiniLM's vectors differ in the last bits with the
# batch a text is encoded in, so a warm cache could move a point near a k-means boundary.
label-spaces: $(STAMP)
	for recipe in label_spaces/recipes/*.yaml; do \
		PROLAB_CACHE=$$(mktemp -d) $(BIN)/prolab pipeline $$recipe --force -q || exit 1; done

# Compile-only check of the CUDA kernels against the CUDA build of torch (no GPU needed).
cuda-check:
	bash .ci/cuda_check.sh

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .pytest_build
