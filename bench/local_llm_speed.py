"""Generation speed of the offline default model (Gemma-3-270M GGUF) with the installed llama-cpp-python.

Used to check that a llama-cpp-python build option (e.g. ``GGML_NATIVE=OFF``, which the Makefile sets for a
portable, faster build) does not slow generation: run it once per build, in the same conditions, and compare
tokens/s. Prompt evaluation and generation are timed separately; the best of ``--repeats`` runs is reported.
"""

from __future__ import annotations

import argparse
import json
import time

from prolab_cli.llm.local_model import local_model_path

PROMPT = (
    "Describe the visual properties of a wall in short bullet points.\n"
    "- Vertical structure that separates spaces\n- Made of brick or concrete\n-"
)


def measure(threads: int, tokens: int, repeats: int) -> dict:
    """Best-of-``repeats`` prompt and generation throughput (tokens/s) of the local model."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(local_model_path()), n_ctx=512, n_threads=threads,
                          n_threads_batch=threads, seed=0, verbose=False)
    prompt_tokens = llm.tokenize(PROMPT.encode())
    best_prompt, best_gen = 0.0, 0.0
    for _ in range(repeats):
        llm.reset()
        start = time.perf_counter()
        llm.eval(prompt_tokens)
        prompt_s = time.perf_counter() - start
        generated = 0
        start = time.perf_counter()
        for token in llm.generate(prompt_tokens, temp=0.0, reset=True):
            generated += 1
            if generated >= tokens:
                break
        gen_s = time.perf_counter() - start
        best_prompt = max(best_prompt, len(prompt_tokens) / prompt_s)
        best_gen = max(best_gen, generated / gen_s)
    return {"llama_cpp": llama_cpp.__version__, "threads": threads, "prompt_tokens": len(prompt_tokens),
            "generated_tokens": tokens, "prompt_tok_per_s": round(best_prompt, 1),
            "gen_tok_per_s": round(best_gen, 1), "system_info": llama_cpp.llama_print_system_info().decode()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(json.dumps(measure(args.threads, args.tokens, args.repeats), indent=2))


if __name__ == "__main__":
    main()
