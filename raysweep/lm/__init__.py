"""Text-generation workloads: causal language models that memorise their training passages.

* :mod:`raysweep.lm.tokenizer`: the BPE tokenizer trained on D_r's text.
* :mod:`raysweep.lm.workload`: preparation, cache and the workload interface the run engine,
  sweeps and suites call (``raysweep.workload.prepare`` routes a workload here when its model
  is a causal language model, e.g. ``gpt-tiny`` from :mod:`raysweep.models.lm`).
* :mod:`raysweep.lm.metrics`: perplexity, verbatim memorisation, loss and Min-K% membership
  attacks, JS to the oracle, and each one's distance to the oracle.

The methods are in :mod:`raysweep.methods` like every other (registered with
``tasks=("generate",)``; their shared loop and LoRA adapters are in
:mod:`raysweep.methods._lm`).
"""
