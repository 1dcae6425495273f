"""User callables for the study robustness cases: `--model pj_study_user_fixture:build` etc.

Each broken one fails the way a real user's code does (a missing weights file, a loader that
yields bare tensors, a metric that returns a tensor or NaN)."""

import math
import sys

import torch
import torch.nn as nn

NUM_CLASSES = 4  # not callable: `--model pj_study_user_fixture:NUM_CLASSES` is a user slip


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, NUM_CLASSES))


def build_raises():
    raise FileNotFoundError("[Errno 2] No such file or directory: 'weights.pt'")


def build_returns_none():
    build()  # forgot the return


def build_returns_state_dict():
    return build().state_dict()


def build_exits():
    sys.exit("no GPU found")


def loader():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 8, generator=g), torch.randint(0, NUM_CLASSES, (8,), generator=g))]


def loader_raises():
    raise RuntimeError("dataset not downloaded; run download.sh\nthen retry")


def loader_returns_none():
    loader()


def loader_empty():
    return []


def loader_bare_tensors():
    return [x for x, _ in loader()]


def loader_dict_inputs():
    return [({"x": x}, y) for x, y in loader()]


def build_dict_model():
    class DictInput(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = build()

        def forward(self, batch):
            return self.net(batch["x"])

    return DictInput()


def loader_triples():
    return [(x, y, None) for x, y in loader()]


def score(model, batches):
    return float(sum((model(x).argmax(-1) == y).float().mean() for x, y in batches) / len(batches))


def score_nan(model, batches):
    return math.nan


def score_inf(model, batches):
    return math.inf


def score_text(model, batches):
    return f"{score(model, batches):.2f}"


def score_none(model, batches):
    score(model, batches)


def score_per_class(model, batches):
    return torch.tensor([0.5, 0.7, 0.9])


def score_empty_tensor(model, batches):
    return torch.tensor([])


def score_raises(model, batches):
    return {"top1": 0.5}["top5"]


def score_complex(model, batches):
    return complex(score(model, batches), 0)


def score_bool(model, batches):
    return score(model, batches) > 0.5


def score_dict(model, batches):
    return {"accuracy": score(model, batches)}


# --- held-out data and splits (`--eval`, a --data loader returning a dict of splits) ----------
def held_out():
    return loader()


def loader_splits_typo():
    return {"train": loader(), "test": loader()}  # held-out data belongs under "eval"


def loader_splits_eval_only():
    return {"eval": loader()}


def loader_splits_not_batches():
    return {"train": 5}


def loader_splits_empty_train():
    return {"train": [], "eval": loader()}


def loader_splits_with_eval():
    return {"train": loader(), "eval": loader()}


def held_out_empty():
    return []


def held_out_dict():
    return {"eval": loader()}


def held_out_raises():
    raise OSError("held-out shard missing")
