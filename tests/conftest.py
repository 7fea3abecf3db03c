from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

import torch

# Two cores on CI: one intra-op thread per test process avoids oversubscription.
torch.set_num_threads(1)
